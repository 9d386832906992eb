//! Secret values never leave the process in clear: every event, report and error message
//! passes through a `Redactor` that knows the values of declared secrets, of secrets steps
//! create at run time (generated passwords), of whatever reaches a field that takes a key
//! or password (wherever it came from: `--var`, env, a literal), and of passwords inside
//! connection URLs and `password=` settings.
//!
//! Masking must not rewrite ordinary words: a value of fewer than `ANYWHERE_CHARS` characters
//! is masked only where it stands as a word of its own, and one of fewer than `MIN_CHARS` is
//! not masked by value at all (the passwords of URLs and `password=` are masked by their
//! position whatever their length). Keys and passphrases are refused below
//! `MIN_KEY_CHARS`, so a key is always long enough to be masked everywhere.

use std::ops::Range;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value as Json};
use serde_yaml::Value as Yaml;

use crate::util::{percent_decode, percent_encode_keep};

/// What a redacted value is replaced with.
pub const MASK: &str = "********";

/// The fewest characters a key or passphrase may have.
pub const MIN_KEY_CHARS: usize = 12;

/// Values at least this long are masked wherever they appear, even inside a word.
const ANYWHERE_CHARS: usize = 12;

/// Shorter values are not masked by value: "a", "on" or "1" would garble every message.
const MIN_CHARS: usize = 4;

/// Why a key or passphrase is refused, if it is. Each key of a keyring (one per line) is held
/// to it.
pub fn check_key(key: &str) -> Result<(), String> {
    let lines = crate::archive::crypto::keyring_lines(key);
    if lines.len() > 1 {
        return lines.into_iter().try_for_each(check_key);
    }
    let n = key.chars().count();
    if n == 0 || n >= MIN_KEY_CHARS {
        return Ok(());
    }
    Err(format!(
        "the key is {n} characters long; keys and passphrases need at least {MIN_KEY_CHARS}: \
         use 64 hex digits (`openssl rand -hex 32`) or a longer passphrase"
    ))
}

/// Shared list of secret values; cloning shares it.
#[derive(Clone, Default, Debug)]
pub struct Redactor(Arc<RwLock<Vec<String>>>);

impl Redactor {
    /// Register a secret value (and the forms it takes inside URLs).
    pub fn add(&self, secret: &str) {
        if secret.chars().count() < MIN_CHARS {
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

    /// Whether `text` holds a known secret value (in any of its forms): contains a long one,
    /// or is a short one (a short one inside, say, PATH is a coincidence, not a leak).
    pub fn holds_secret(&self, text: &str) -> bool {
        let Ok(list) = self.0.read() else { return true };
        list.iter().any(|s| if s.chars().count() >= ANYWHERE_CHARS { text.contains(s.as_str()) } else { text == s })
    }

    /// `text` with every known secret value masked, and every password inside a URL or a
    /// `password=` setting.
    pub fn redact(&self, text: &str) -> String {
        let mut out = mask_spans(text, &credential_spans(text));
        let Ok(list) = self.0.read() else { return out };
        for s in list.iter() {
            if out.contains(s.as_str()) {
                out = replace_value(&out, s);
            }
        }
        out
    }

    /// Register the passwords that `text` holds in URLs and `password=` settings.
    pub fn add_credentials_in(&self, text: &str) {
        for r in credential_spans(text) {
            let raw = &text[r];
            self.add(raw);
            self.add(&percent_decode(raw));
        }
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

/// `text` with `secret` masked: everywhere when it is long, only where it is a word of its
/// own when it is short (so the key "b" never turns "backup" into "********ackup").
fn replace_value(text: &str, secret: &str) -> String {
    if secret.chars().count() >= ANYWHERE_CHARS {
        return text.replace(secret, MASK);
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let starts_word = word(secret.chars().next());
    let ends_word = word(secret.chars().next_back());
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, _) in text.match_indices(secret) {
        if i < last {
            continue;
        }
        let end = i + secret.len();
        let glued_before = starts_word && word(text[..i].chars().next_back());
        let glued_after = ends_word && word(text[end..].chars().next());
        if glued_before || glued_after {
            continue;
        }
        out.push_str(&text[last..i]);
        out.push_str(MASK);
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// `text` with each span replaced by the mask (spans sorted, not overlapping).
fn mask_spans(text: &str, spans: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for r in spans {
        out.push_str(&text[last..r.start]);
        out.push_str(MASK);
        last = r.end;
    }
    out.push_str(&text[last..]);
    out
}

/// Where passwords stand in `text`: after `user:` in a URL's authority
/// (`postgres://u:PW@host`) and as the value of a `password=` setting (`password=PW`,
/// `password='P W'`). Already masked ones are left out.
fn credential_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let ends_authority = |c: char| c.is_whitespace() || "/?#\"'<>`,;".contains(c);
    let mut from = 0;
    while let Some(at) = text[from..].find("://") {
        let start = from + at + 3;
        let end = text[start..].find(ends_authority).map_or(text.len(), |e| start + e);
        // The values of credential query parameters (`?api_key=...&sig=...`).
        let url_end =
            text[start..].find(|c: char| c.is_whitespace() || "#\"'<>`".contains(c)).map_or(text.len(), |e| start + e);
        if let Some(q) = text[start..url_end].find('?') {
            let mut at = start + q + 1;
            for pair in text[at..url_end].split(['&', ';']) {
                if let Some((k, v)) = pair.split_once('=') {
                    let r = at + k.len() + 1..at + pair.len();
                    if !v.is_empty() && v != MASK && is_credential_param(k) {
                        spans.push(r);
                    }
                }
                at += pair.len() + 1;
            }
        }
        if let Some(amp) = text[start..end].rfind('@') {
            let userinfo = &text[start..start + amp];
            if let Some(colon) = userinfo.find(':') {
                let r = start + colon + 1..start + amp;
                if !r.is_empty() && &text[r.clone()] != MASK {
                    spans.push(r);
                }
            }
        }
        from = end.max(start);
    }
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("password=") {
        let key_start = from + at;
        let value_start = key_start + "password=".len();
        from = value_start;
        let glued = lower[..key_start].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
        if glued {
            continue;
        }
        let rest = &text[value_start..];
        let r = if let Some(quoted) = rest.strip_prefix('\'') {
            // libpq quoting: backslash escapes, a single quote ends the value.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '\'' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let len = end.unwrap_or(quoted.len());
            value_start + 1..value_start + 1 + len
        } else {
            let len = rest.find(|c: char| c.is_whitespace() || "&\"',;".contains(c)).unwrap_or(rest.len());
            value_start..value_start + len
        };
        if !r.is_empty() && &text[r.clone()] != MASK {
            spans.push(r);
        }
    }
    spans.sort_by_key(|r| r.start);
    spans.dedup_by(|b, a| b.start < a.end);
    spans
}

/// Query parameters that carry a credential (compared lowercased, `-` read as `_`): libpq's
/// passwords, tokens and API keys, and the signatures and credentials of presigned S3, GCS
/// and Azure SAS URLs.
const SECRET_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "sslpassword",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "auth_token",
    "api_key",
    "apikey",
    "key",
    "access_key",
    "secret_key",
    "account_key",
    "sig",
    "signature",
    "x_amz_signature",
    "x_amz_credential",
    "x_amz_security_token",
    "x_goog_signature",
    "x_goog_credential",
];

/// Whether a URL query parameter named `name` carries a credential.
pub fn is_credential_param(name: &str) -> bool {
    let n = percent_decode(name).to_ascii_lowercase().replace('-', "_");
    SECRET_PARAMS.contains(&n.as_str())
        || ["password", "secret", "token", "signature", "credential"].iter().any(|s| n.ends_with(s))
}

/// Register, before a run's first event, the secrets its values hold: the passwords in its
/// variables' and `let:` values' URLs, libpq's `PGPASSWORD` and every password of its
/// `PGPASSFILE`. The values that reach steps' key and password fields are the caller's to
/// add (`runbook::register_run_inputs` renders them): this module knows values, not runbooks.
pub fn register_run_values(r: &Redactor, vars: &Map<String, Json>, env: &Map<String, Json>, lets: &Map<String, Json>) {
    for v in vars.values() {
        each_string(v, &mut |s| r.add_credentials_in(s));
    }
    // libpq's own password variable reaches connections whose URL has none.
    if let Some(Json::String(pw)) = env.get("PGPASSWORD") {
        r.add(pw);
    }
    // And its password file (a fleet's `passfile`): every password in it, before a step
    // can print one or a `shell.run` child can inherit it.
    if let Some(Json::String(f)) = env.get("PGPASSFILE") {
        for pw in std::fs::read_to_string(f).unwrap_or_default().lines().filter_map(passfile_password) {
            r.add(&pw);
        }
    }
    // `let` values are built from vars: a URL put together there may carry a password.
    for v in lets.values() {
        each_string(v, &mut |s| r.add_credentials_in(s));
    }
}

/// Register the rendered values of a step's key and password fields (`secret_fields`: each
/// field's name and whether it is a key, named by the caller, which knows the step's kind)
/// and the passwords in its URLs; refuse a key or passphrase that is too short (the message
/// names the field).
pub fn register_step_inputs<'a>(
    r: &Redactor,
    secret_fields: impl IntoIterator<Item = (&'a str, bool)>,
    with: &Yaml,
) -> Result<(), (String, String)> {
    for (name, is_key) in secret_fields {
        if let Some(Yaml::String(v)) = with.get(name) {
            r.add(v);
            if is_key {
                // Each key of a keyring is masked on its own, wherever one turns up alone.
                for k in crate::archive::crypto::keyring_lines(v) {
                    r.add(k);
                }
                check_key(v).map_err(|m| (format!("with.{name}"), m))?;
            }
        }
    }
    each_yaml_string(with, &mut |s| r.add_credentials_in(s));
    Ok(())
}

/// The password of a `.pgpass` line (`host:port:database:user:password`, `\\` and `\:`
/// escaped), none for a comment.
fn passfile_password(line: &str) -> Option<String> {
    if line.starts_with('#') {
        return None;
    }
    let mut field = 0;
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let n = chars.next()?;
                if field == 4 {
                    out.push(n);
                }
            }
            ':' if field < 4 => field += 1,
            _ if field == 4 => out.push(c),
            _ => {}
        }
    }
    (field == 4 && !out.is_empty()).then_some(out)
}

fn each_string(v: &Json, f: &mut dyn FnMut(&str)) {
    match v {
        Json::String(s) => f(s),
        Json::Array(items) => items.iter().for_each(|i| each_string(i, f)),
        Json::Object(m) => m.values().for_each(|i| each_string(i, f)),
        _ => {}
    }
}

fn each_yaml_string(v: &Yaml, f: &mut dyn FnMut(&str)) {
    match v {
        Yaml::String(s) => f(s),
        Yaml::Sequence(items) => items.iter().for_each(|i| each_yaml_string(i, f)),
        Yaml::Mapping(m) => m.values().for_each(|i| each_yaml_string(i, f)),
        _ => {}
    }
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

    /// Before: the one-letter key "b" turned "runbook `backup`" into "runboo******** `bac********up`".
    #[test]
    fn masking_never_rewrites_parts_of_ordinary_words() {
        let r = Redactor::default();
        r.add("b");
        r.add("pass");
        assert_eq!(r.redact("runbook `backup`"), "runbook `backup`");
        assert_eq!(r.redact("passed, bypass, password"), "passed, bypass, password");
        assert_eq!(r.redact("PGPASSWORD=pass (pass)"), format!("PGPASSWORD={MASK} ({MASK})"));
        // Long values (every key, every generated password) are masked even inside words.
        let generated = crate::pg::native::generate_password();
        r.add(&generated);
        assert_eq!(r.redact(&format!("x{generated}y")), format!("x{MASK}y"));
    }

    #[test]
    fn url_and_conninfo_passwords_are_masked_whatever_their_length() {
        let r = Redactor::default();
        assert_eq!(r.redact("postgres://app:pw@db:5432/shop"), format!("postgres://app:{MASK}@db:5432/shop"));
        assert_eq!(
            r.redact("see https://u:p%40ss@h/x and s3://bucket/key"),
            format!("see https://u:{MASK}@h/x and s3://bucket/key")
        );
        assert_eq!(r.redact("host=db password='a b\\'c' user=x"), format!("host=db password='{MASK}' user=x"));
        assert_eq!(r.redact("host=db password=hunter2 user=x"), format!("host=db password={MASK} user=x"));
        assert_eq!(r.redact("postgres://app@db/shop http://h:8080/"), "postgres://app@db/shop http://h:8080/");
        // Registered from a URL, the password is masked wherever else it shows up.
        r.add_credentials_in("postgres://app:s%40cret-pw@db/shop");
        assert_eq!(r.redact("auth failed for s@cret-pw"), format!("auth failed for {MASK}"));
    }

    /// Before: `http.check` logged `GET https://h/health?api_key=...` in clear.
    #[test]
    fn credential_query_parameters_are_masked_like_userinfo() {
        let r = Redactor::default();
        assert_eq!(
            r.redact("GET https://h/health?api_key=k1&x=1&X-Amz-Signature=abc -> 200"),
            format!("GET https://h/health?api_key={MASK}&x=1&X-Amz-Signature={MASK} -> 200")
        );
        assert_eq!(
            r.redact("see http://h/p?token=t0k#frag and ?key=notaurl"),
            format!("see http://h/p?token={MASK}#frag and ?key=notaurl")
        );
        assert_eq!(r.redact("http://h/?page=2&sort=name"), "http://h/?page=2&sort=name");
        assert_eq!(r.redact("https://é/?sig=ç"), format!("https://é/?sig={MASK}"));
    }

    #[test]
    fn a_variable_holds_a_secret_when_it_contains_a_long_one_or_is_a_short_one() {
        let r = Redactor::default();
        r.add("test");
        r.add("a-long-api-token-value");
        assert!(r.holds_secret("test"));
        assert!(!r.holds_secret("/usr/test/bin:/bin"), "a short secret inside PATH hides PATH");
        assert!(r.holds_secret("https://x:a-long-api-token-value@h"));
    }

    #[test]
    fn passfile_passwords_are_read_with_their_escapes() {
        assert_eq!(passfile_password("db:5432:*:app:pa\\:ss\\\\w"), Some("pa:ss\\w".into()));
        assert_eq!(passfile_password("# db:5432:*:app:pw"), None);
        assert_eq!(passfile_password("db:5432:*:app"), None);
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(check_key("short-key").is_err());
        assert!(check_key("twelve chars").is_ok());
        assert!(check_key("").is_ok(), "no key means no encryption, not a short key");
        let e = check_key("abc").expect_err("short");
        assert!(e.contains("3 characters") && e.contains("at least 12"), "{e}");
    }
}
