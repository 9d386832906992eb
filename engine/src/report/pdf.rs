//! A minimal PDF writer for the evidence pack's compliance report: pages of monospaced text
//! (Courier, a standard font every reader has, so nothing is embedded), long lines wrapped.
//! Written by hand rather than through a crate: text objects are all the report needs, and
//! no browser or renderer is needed on the host.

/// Points per page (A4) and the layout.
const WIDTH: u32 = 595;
const HEIGHT: u32 = 842;
const MARGIN: u32 = 50;
const SIZE: u32 = 9;
const LEADING: u32 = 12;
/// Courier is 0.6 em wide: 9 pt characters in 495 pt.
const COLUMNS: usize = 90;

/// Text as a PDF literal string in WinAnsi: `\`, `(` and `)` escaped, Latin-1 letters as
/// their WinAnsi byte, and any other character as its code point (`\u{436}`, `\x1b` for a
/// control character, which never reaches a reader): names are data, and two names that
/// differ must never print alike (all of `жур` and `шур` were `???`).
fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('(');
    for c in s.chars() {
        match c {
            '\\' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            // WinAnsi is Latin-1 from 0xA0 up: an octal escape keeps the file ASCII.
            '\u{a0}'..='\u{ff}' => out.push_str(&format!("\\{:03o}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\\\u{{{:x}}}", c as u32)),
        }
    }
    out.push(')');
    out
}

/// `line` cut into pieces of at most `COLUMNS` characters, at spaces where it can.
fn wrap(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest: Vec<char> = line.chars().collect();
    while rest.len() > COLUMNS {
        let cut = rest[..COLUMNS].iter().rposition(|c| *c == ' ').filter(|i| *i > COLUMNS / 2).unwrap_or(COLUMNS);
        out.push(rest[..cut].iter().collect());
        rest = rest[cut..].iter().skip_while(|c| **c == ' ').copied().collect();
        // Continuation lines are indented so a reader sees they belong together.
        if !rest.is_empty() {
            rest.splice(0..0, "    ".chars());
        }
    }
    out.push(rest.into_iter().collect());
    out
}

/// A PDF of `lines`, titled `title`.
pub fn render(title: &str, lines: &[String]) -> Vec<u8> {
    let wrapped: Vec<String> = lines.iter().flat_map(|l| wrap(l)).collect();
    let per_page = ((HEIGHT - 2 * MARGIN) / LEADING) as usize;
    let pages: Vec<&[String]> = if wrapped.is_empty() { vec![&[][..]] } else { wrapped.chunks(per_page).collect() };
    // Objects: 1 catalog, 2 pages, 3 font, 4 info, then a page and its content per page.
    let mut objects: Vec<String> = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".into(),
        String::new(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>".into(),
        format!("<< /Title {} /Producer (pgdrill) >>", literal(title)),
    ];
    let mut kids = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let page_obj = objects.len() + 1;
        kids.push(format!("{page_obj} 0 R"));
        let mut content = format!("BT /F1 {SIZE} Tf {LEADING} TL {MARGIN} {} Td\n", HEIGHT - MARGIN);
        for l in page.iter() {
            content.push_str(&format!("{} Tj T*\n", literal(l)));
        }
        content.push_str(&format!(
            "ET\nBT /F1 8 Tf {} {} Td {} Tj ET\n",
            MARGIN,
            MARGIN / 2,
            literal(&format!("page {} of {}", i + 1, pages.len()))
        ));
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {WIDTH} {HEIGHT}] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            page_obj + 1
        ));
        objects.push(format!("<< /Length {} >>\nstream\n{content}endstream", content.len()));
    }
    objects[1] = format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), pages.len());
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R /Info 4 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1)
            .as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_control_characters_never_reach_the_reader() {
        assert_eq!(literal("a (b) \\ c"), "(a \\(b\\) \\\\ c)");
        assert_eq!(literal("db\u{1b}[31m é"), "(db\\\\x1b[31m \\351)");
        assert_ne!(literal("жур"), literal("шур"), "two names print alike");
        assert_eq!(literal("жур"), "(\\\\u{436}\\\\u{443}\\\\u{440})");
        // What a reader shows: poppler's text of a page with them.
        if std::process::Command::new("pdftotext").arg("-v").output().is_ok() {
            let t = tempfile::tempdir().expect("tmp");
            let pdf = t.path().join("a.pdf");
            std::fs::write(&pdf, render("t", &["café (x) \\ жур \u{1b}".to_string()])).expect("write");
            let o = std::process::Command::new("pdftotext").arg(&pdf).arg("-").output().expect("pdftotext");
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.contains("café (x) \\ \\u{436}\\u{443}\\u{440} \\x1b"), "{text}");
        } else {
            assert!(std::env::var_os("CI").is_none(), "pdftotext (poppler-utils) is missing (CI)");
        }
    }

    #[test]
    fn long_lines_wrap_and_pages_break() {
        let long = "word ".repeat(60);
        let w = wrap(&long);
        assert!(w.len() > 1 && w.iter().all(|l| l.chars().count() <= COLUMNS), "{w:?}");
        let lines: Vec<String> = (0..200).map(|i| format!("line {i}")).collect();
        let pdf = String::from_utf8_lossy(&render("t", &lines)).into_owned();
        assert!(pdf.contains("/Count 4"), "{pdf}");
        assert!(pdf.ends_with("%%EOF\n"));
    }
}
