//! Secret values never leave the process in clear: every event, report and error message
//! passes through a `Redactor` that knows the values of declared secrets and of secrets
//! steps create at run time (generated passwords).

use std::sync::{Arc, RwLock};

/// What a redacted value is replaced with.
pub const MASK: &str = "********";

/// Shared list of secret values; cloning shares it.
#[derive(Clone, Default, Debug)]
pub struct Redactor(Arc<RwLock<Vec<String>>>);

impl Redactor {
    /// Register a secret value (and the forms it takes inside URLs).
    pub fn add(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        // The forms a value takes inside URLs and query strings: fully percent-encoded,
        // with `/` or `/:` left alone (as template filters and URL libraries do), and with
        // `+` for spaces (form encoding).
        let mut forms = vec![secret.to_string()];
        for keep in ["", "/", "/:"] {
            let enc = percent_encode_keep(secret, keep);
            forms.push(enc.replace("%20", "+"));
            forms.push(enc);
        }
        let Ok(mut list) = self.0.write() else { return };
        for f in forms {
            if !list.contains(&f) {
                list.push(f);
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Whether `text` contains a known secret value (in any of its forms).
    pub fn holds_secret(&self, text: &str) -> bool {
        let Ok(list) = self.0.read() else { return true };
        list.iter().any(|s| text.contains(s.as_str()))
    }

    /// `text` with every known secret value masked.
    pub fn redact(&self, text: &str) -> String {
        let Ok(list) = self.0.read() else { return text.to_string() };
        let mut out = text.to_string();
        for s in list.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    /// Mask secrets in every string of a JSON value.
    pub fn redact_json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => *s = self.redact(s),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| self.redact_json(i)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|i| self.redact_json(i)),
            _ => {}
        }
    }
}

/// RFC 3986 percent-encoding of everything but unreserved characters, as URLs carry passwords.
pub fn percent_encode(s: &str) -> String {
    percent_encode_keep(s, "")
}

/// Percent-encoding that leaves the characters in `keep` as they are.
fn percent_encode_keep(s: &str, keep: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_plain_and_url_encoded_forms() {
        let r = Redactor::default();
        r.add("p@ss word");
        assert_eq!(r.redact("pw=p@ss word"), format!("pw={MASK}"));
        assert_eq!(r.redact("postgres://u:p%40ss%20word@h/db"), format!("postgres://u:{MASK}@h/db"));
        assert_eq!(r.redact("q=p%40ss+word"), format!("q={MASK}"));
        r.add("a/b:c d");
        assert_eq!(r.redact("x a/b%3Ac%20d y a/b:c%20d"), format!("x {MASK} y {MASK}"));
    }
}
