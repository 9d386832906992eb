//! Where each node of a runbook sits in its file.
//!
//! serde_yaml reports a location for syntax errors but not for nodes it parsed successfully,
//! so semantic checks (duplicate ids, dangling references, a bad `with:` value) would have
//! nowhere to point. This module walks the YAML event stream once and records, for every
//! node, its key path (`steps[2].with.jobs`) and the 1-based line and column of the key and
//! of the value. It reads nothing but the text it is given.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in a runbook file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// Positions of every node, by key path.
#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

impl SpanIndex {
    /// Index `text`. A syntax error yields an empty index: serde_yaml reports those itself.
    pub fn build(text: &str) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut walker, false).is_err() {
            return Self::default();
        }
        walker.index
    }

    /// Where `text` first nests collections deeper than `max`, found in one linear pass over
    /// the event stream before anything builds paths or trees (each of which costs the
    /// depth again per node, so a deep file would take quadratic time to reject). `None`
    /// when it does not, or on a syntax error (reported by the real parse).
    pub fn too_deep(text: &str, max: usize) -> Option<Pos> {
        // Both YAML parsers scan flow collections (`[[[[...`) in time quadratic in their
        // depth before yielding the first event, so flow depth is bounded lexically first.
        if let Some(p) = flow_too_deep(text, max) {
            return Some(p);
        }
        let mut parser = Parser::new_from_str(text);
        let mut depth = 0usize;
        loop {
            match parser.next_token() {
                Ok((Event::MappingStart(..) | Event::SequenceStart(..), mark)) => {
                    depth += 1;
                    if depth > max {
                        return Some(pos(&mark));
                    }
                }
                Ok((Event::MappingEnd | Event::SequenceEnd, _)) => depth = depth.saturating_sub(1),
                Ok((Event::StreamEnd, _)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Position of the value at `path`, or of its closest indexed ancestor.
    pub fn value(&self, path: &str) -> Pos {
        self.lookup(&self.values, path)
    }

    /// Position of the key that names `path` (falls back to the value, then ancestors).
    pub fn key(&self, path: &str) -> Pos {
        if let Some(p) = self.keys.get(path) {
            return *p;
        }
        self.value(path)
    }

    fn lookup(&self, map: &HashMap<String, Pos>, path: &str) -> Pos {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = map.get(&p) {
                return *pos;
            }
            match parent(&p) {
                Some(up) => p = up,
                None => return self.values.get("").copied().unwrap_or(Pos { line: 1, col: 1 }),
            }
        }
    }
}

/// Where `[` and `{` nest deeper than `max`, read lexically in one pass: brackets inside
/// quoted scalars, comments and block scalars do not count; a bracket inside a plain scalar
/// may (which only ever makes the bound stricter).
fn flow_too_deep(text: &str, max: usize) -> Option<Pos> {
    #[derive(PartialEq)]
    enum In {
        Plain,
        Single,
        Double,
    }
    let mut state = In::Plain;
    let mut depth = 0usize;
    // Indentation of the line that opened a block scalar (`key: |`), while inside it.
    let mut block_parent: Option<usize> = None;
    for (n, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        if let Some(parent) = block_parent {
            if line.trim().is_empty() || indent > parent {
                continue;
            }
            block_parent = None;
        }
        let mut prev = ' ';
        let mut chars = line.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match state {
                In::Single => {
                    if c == '\'' {
                        if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                            chars.next();
                        } else {
                            state = In::Plain;
                        }
                    }
                }
                In::Double => match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => state = In::Plain,
                    _ => {}
                },
                In::Plain => {
                    let at_start = prev.is_whitespace() || matches!(prev, '[' | '{' | ',' | ':');
                    match c {
                        '#' if prev.is_whitespace() => break,
                        '\'' if at_start => state = In::Single,
                        '"' if at_start => state = In::Double,
                        '[' | '{' => {
                            depth += 1;
                            if depth > max {
                                return Some(Pos { line: n + 1, col: line[..i].chars().count() + 1 });
                            }
                        }
                        ']' | '}' => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                }
            }
            prev = c;
        }
        // `key: |`, `- >-`: the lines after it, indented deeper, are text.
        if state == In::Plain && depth == 0 {
            let t = line.split(" #").next().unwrap_or_default().trim_end();
            let indicator = t.rsplit(' ').next().unwrap_or_default();
            if indicator.starts_with(['|', '>']) && indicator.len() <= 3 {
                block_parent = Some(indent);
            }
        }
    }
    None
}

/// `steps[2].with.x` -> `steps[2].with` -> `steps[2]` -> `steps` -> ``.
pub fn parent(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(path[..cut].to_string())
}

fn pos(m: &Marker) -> Pos {
    // yaml-rust2 lines are 1-based and columns 0-based.
    Pos { line: m.line(), col: m.col() + 1 }
}

enum Frame {
    Map { path: String, pending_key: Option<(String, Pos)>, first: bool },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    index: SpanIndex,
}

impl Walker {
    /// The path of the node that starts now, or None when this scalar is a mapping key.
    fn child_path(&mut self, is_scalar: Option<&str>, at: Pos) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, pending_key, first }) => match pending_key.take() {
                Some((k, kpos)) => {
                    let p = if path.is_empty() { k } else { format!("{path}.{k}") };
                    self.index.keys.insert(p.clone(), kpos);
                    Some(p)
                }
                None => {
                    // A block mapping's start mark sits oddly (at its first colon); its
                    // first key is where a reader looks for it.
                    if std::mem::take(first) {
                        self.index.values.insert(path.clone(), at);
                    }
                    // Only scalar keys are tracked; complex keys are rejected later by serde.
                    *pending_key = Some((is_scalar.unwrap_or("?").to_string(), at));
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = pos(&mark);
        match ev {
            Event::Scalar(ref s, ..) => {
                if let Some(p) = self.child_path(Some(s), at) {
                    self.index.values.insert(p, at);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.child_path(Some("*"), at) {
                    self.index.values.insert(p, at);
                }
            }
            Event::MappingStart(..) => {
                let p = self.child_path(None, at).unwrap_or_default();
                self.index.values.insert(p.clone(), at);
                self.stack.push(Frame::Map { path: p, pending_key: None, first: true });
            }
            Event::SequenceStart(..) => {
                let p = self.child_path(None, at).unwrap_or_default();
                self.index.values.insert(p.clone(), at);
                self.stack.push(Frame::Seq { path: p, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keys_values_and_sequence_items() {
        let text = "name: x\nsteps:\n  - id: a\n    with:\n      jobs: 2\n  - id: b\n";
        let idx = SpanIndex::build(text);
        assert_eq!(idx.key("name"), Pos { line: 1, col: 1 });
        assert_eq!(idx.value("name"), Pos { line: 1, col: 7 });
        assert_eq!(idx.value("steps[0].with.jobs"), Pos { line: 5, col: 13 });
        assert_eq!(idx.key("steps[1].id"), Pos { line: 6, col: 5 });
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(idx.value("steps[0].with.nope"), Pos { line: 5, col: 7 });
    }
}
