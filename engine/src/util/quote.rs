//! Values put into text that something else reads: a POSIX shell, a libpq key=value string,
//! a URL, a terminal.

use std::borrow::Cow;

/// One word for a POSIX shell: left bare when it holds only characters no shell (nor cron,
/// which cuts a command at `%`) gives a meaning to, else single-quoted with each `'` written
/// `'\''`. The empty word is `''`.
pub fn shell_quote(s: &str) -> String {
    // `%`, `+` and `,` are plain to the shell but not to every reader of a command line
    // (cron, some `sudo` and `ssh` wrappers): quoting them costs nothing.
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=:@".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A value for a libpq key=value connection string: single-quoted, with `\` and `'`
/// backslash-escaped, so spaces, quotes and `=` travel as data.
pub fn conninfo_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// RFC 3986 percent-encoding of everything but unreserved characters, as URLs carry passwords.
pub fn percent_encode(s: &str) -> String {
    percent_encode_keep(s, "")
}

/// Percent-encoding that leaves the characters in `keep` as they are.
pub fn percent_encode_keep(s: &str, keep: &str) -> String {
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

/// Percent-decoding that takes what it can: a `%` not followed by two hex digits stays as
/// it is, and bytes that are not UTF-8 become U+FFFD. For text that is shown or matched
/// (a secret's forms, a storage option), where refusing would help nobody.
pub fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&decode(s, false).unwrap_or_default()).into_owned()
}

/// Percent-decoding that refuses: `None` when a `%` is not followed by two hex digits or
/// the bytes are not UTF-8. For names that must mean one thing (a connection URL's parts,
/// a folder's database).
pub fn percent_decode_strict(s: &str) -> Option<String> {
    String::from_utf8(decode(s, true)?).ok()
}

/// The bytes `s` stands for. Works on bytes, never slices the `str`: the two characters after
/// a `%` may be the start of a multibyte character (`%aé`), which is then no escape.
fn decode(s: &str, strict: bool) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let hex = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16));
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ if strict => return None,
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Some(out)
}

/// Text from data (names, messages, logs) made safe for a terminal: control characters
/// (ESC, BEL, ...) are shown as `\x1b` instead of acting on the terminal. Newlines and tabs
/// stay.
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else if is_bidi_control(c) {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text from data (a name, a message) on one line of pgdrill's own output (the terminal, an
/// alert's text): every control character, line breaks and carriage returns too, is shown
/// escaped (`\n`, `\x1b`), and so are the bidirectional overrides, so a name cannot print a
/// line that looks like another event, act on a terminal, or display as what it is not.
pub fn one_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| (c.is_control() && c != '\t') || is_bidi_control(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push(c),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_bidi_control(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The Unicode bidirectional embeddings, overrides and isolates (U+202A..U+202E,
/// U+2066..U+2069): not control characters to Rust, but they reorder the text a reader sees
/// after them (a name that displays as something it is not), so they are shown escaped.
pub fn is_bidi_control(c: char) -> bool {
    ('\u{202A}'..='\u{202E}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_bare_and_quotes_the_rest() {
        assert_eq!(shell_quote("/usr/bin/pgdrill"), "/usr/bin/pgdrill");
        assert_eq!(shell_quote("user@db-1:5432"), "user@db-1:5432");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        // Plain to sh but not to cron (`%` ends its command) nor to every wrapper.
        assert_eq!(shell_quote("50%"), "'50%'");
        assert_eq!(shell_quote("a+b,c"), "'a+b,c'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn conninfo_values_are_quoted_with_backslash_escapes() {
        assert_eq!(conninfo_quote("shop"), "'shop'");
        assert_eq!(conninfo_quote("it's"), "'it\\'s'");
        assert_eq!(conninfo_quote("a\\b c=d"), "'a\\\\b c=d'");
    }

    #[test]
    fn percent_encoding_keeps_unreserved_characters_only() {
        assert_eq!(percent_encode("p@ss word/ç~-._"), "p%40ss%20word%2F%C3%A7~-._");
        assert_eq!(percent_encode_keep("a/b:c", "/"), "a/b%3Ac");
        for s in ["", "%", "p@ss word", "Grüße/ç", "100%"] {
            assert_eq!(percent_decode(&percent_encode(s)), s);
            assert_eq!(percent_decode_strict(&percent_encode(s)).as_deref(), Some(s));
        }
    }

    /// Before: a decoder that sliced the `str` after a `%` could split `é` (two bytes) and
    /// panic on a storage location like `s3://b/p?region=%aé`.
    #[test]
    fn percent_decoding_a_location_like_region_percent_a_e_acute_does_not_panic() {
        assert_eq!(percent_decode("?region=%aé"), "?region=%aé");
        assert_eq!(percent_decode("%é"), "%é");
        assert_eq!(percent_decode("é%"), "é%");
        assert_eq!(percent_decode_strict("%aé"), None);
        assert_eq!(percent_decode_strict("é%4"), None);
        for s in ["%", "%%", "%a", "%aé", "%éa", "a%\u{10ffff}", "%C3", "%C3%A7%zz%c3"] {
            let _ = percent_decode(s);
            let _ = percent_decode_strict(s);
        }
    }

    #[test]
    fn percent_decoding_takes_hex_digits_only() {
        assert_eq!(percent_decode("%C3%A7%zz%c3"), "ç%zz\u{fffd}");
        // `u8::from_str_radix` takes a sign: `%+1` is no escape.
        assert_eq!(percent_decode("%+1%-1"), "%+1%-1");
        assert_eq!(percent_decode_strict("%+1"), None);
        assert_eq!(percent_decode_strict("p%40ss%20word").as_deref(), Some("p@ss word"));
        assert_eq!(percent_decode_strict("%ff"), None, "not UTF-8");
    }

    #[test]
    fn visible_shows_control_characters_escaped() {
        assert_eq!(visible("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(visible("a\x1b[31mred"), "a\\x1b[31mred");
        assert!(matches!(visible("ok"), Cow::Borrowed(_)));
    }

    #[test]
    fn one_line_keeps_a_name_on_one_line() {
        assert_eq!(one_line("a\nb\tc\x1b жур\r"), "a\\nb\tc\\x1b жур\\r");
        assert!(matches!(one_line("ok (x)"), Cow::Borrowed(_)));
    }
}
