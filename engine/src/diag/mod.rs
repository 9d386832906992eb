//! Diagnostics about a user's file (a runbook, a fleet): message, file:line:col, a caret
//! snippet, a hint; with where each node of a YAML file sits (`spans`) and "did you mean"
//! (`suggest`). At the bottom: the error type carries them, and every layer may point into
//! a file.

use std::fmt;

pub mod spans;
pub mod suggest;

use spans::Pos;

/// One problem in a runbook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub pos: Pos,
    pub message: String,
    pub help: Option<String>,
    /// The source line the position points into, for the snippet.
    pub source_line: Option<String>,
    /// A warning (a deprecated form) does not make the runbook invalid.
    pub warning: bool,
}

impl Diagnostic {
    pub fn new(file: &str, text: &str, pos: Pos, message: impl Into<String>) -> Self {
        let source_line = text.lines().nth(pos.line.saturating_sub(1)).map(str::to_string);
        Diagnostic { file: file.to_string(), pos, message: message.into(), help: None, source_line, warning: false }
    }

    pub fn with_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// The same message as a warning: shown by `validate`, which still exits 0.
    pub fn into_warning(mut self) -> Self {
        self.warning = true;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", if self.warning { "warning" } else { "error" }, self.message)?;
        let line_no = self.pos.line.to_string();
        let pad = " ".repeat(line_no.len());
        writeln!(f, "{pad}--> {}:{}:{}", self.file, self.pos.line, self.pos.col)?;
        if let Some(src) = &self.source_line {
            let (src, col) = window(src, self.pos.col.max(1));
            let src = &src;
            let rest: String = src.chars().skip(col - 1).collect();
            // Underline the token at the position: up to whitespace or YAML punctuation.
            let width =
                rest.chars().take_while(|c| !c.is_whitespace() && !matches!(c, ':' | ',' | '}' | ']')).count().max(1);
            writeln!(f, "{pad} |")?;
            writeln!(f, "{line_no} | {src}")?;
            writeln!(f, "{pad} | {}{}", " ".repeat(col - 1), "^".repeat(width))?;
        }
        if let Some(h) = &self.help {
            writeln!(f, "{pad} = help: {h}")?;
        }
        Ok(())
    }
}

/// A long source line cut to the part around `col` (a 200 KB line must not fill the
/// terminal); returns the text to show and the column within it.
fn window(src: &str, col: usize) -> (String, usize) {
    const SIDE: usize = 60;
    let len = src.chars().count();
    if len <= 2 * SIDE + 20 {
        return (src.to_string(), col);
    }
    let start = col.saturating_sub(SIDE + 1);
    let end = (col + SIDE).min(len);
    let mut out = String::new();
    let mut col_in = col - start;
    if start > 0 {
        out.push_str("...");
        col_in += 3;
    }
    out.extend(src.chars().skip(start).take(end - start));
    if end < len {
        out.push_str("...");
    }
    (out, col_in)
}

/// All problems found in one or more files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
