//! The layers of the crate, bottom to top (ARCHITECTURE.md, "Layers"), and the test that
//! holds the code to them: a module may name (`crate::x`) modules of lower layers only, never
//! one of its own layer nor one above. Circles between modules cannot form under that rule.
//! Test-only: nothing here is compiled into pgdrill.

/// Bottom first. Every top-level module of `engine/src` stands in exactly one layer.
const LAYERS: &[&[&str]] = &[
    // Helpers that use nothing of pgdrill's own: units, quoting, times, the host's name;
    // diagnostics (file:line:col, spans of YAML nodes, "did you mean").
    &["util", "diag"],
    // The error class and type every layer returns.
    &["error"],
    // Leaves: the archive format, child processes, what the process removes at exit,
    // progress, shipped runbooks.
    &["archive", "child", "on_exit", "progress", "shipped"],
    // PostgreSQL and storage.
    &["pg", "storage"],
    // The backup pipeline, the restore journal, the redactor; templates (above storage,
    // which answers their `local` test).
    &["backup", "restore", "redact", "wal", "template"],
    // Physical backups recovered to a point in time in a throwaway server, and proven.
    &["physical"],
    // What steps tell the reports (outcomes, facts).
    &["facts"],
    // The step catalogue.
    &["steps"],
    // The runbook model.
    &["runbook"],
    // The plan built from the runbook model (and `pgdrill plan`'s text of it).
    &["plan"],
    // Running a runbook's plan.
    &["exec"],
    // Signed evidence: statements, the chained log, its checks (the reporters feed it).
    &["evidence"],
    // Reporters.
    &["report"],
    // Commands built on runs and reports.
    &["doctor", "fleet", "manpages"],
    // The command line.
    &["cli", "testkit"],
];

/// Upward imports tolerated while they are being removed: each is (file, module it may
/// name). None today; the test fails when one is no longer there, so that it is deleted
/// with the import.
const KNOWN_EXCEPTIONS: &[(&str, &str)] = &[];

/// Files that are not modules of the library's layers: the crate root declares them, the
/// binary is another crate, and this file's samples are no imports.
const NOT_LAYERED: &[&str] = &["lib.rs", "main.rs", "layers.rs"];

/// Names the crate root re-exports from `error`.
const ROOT_REEXPORTS: &[(&str, &str)] = &[("Error", "error"), ("ExitCode", "error"), ("Result", "error")];

/// One `crate::<module>` reference: its 1-based line and the module it names.
#[derive(Debug, PartialEq, Eq)]
struct Reference {
    line: usize,
    module: String,
}

/// The top-level modules `text` names through `crate::`: `use crate::a::b;`, `crate::a::f()`,
/// and each item of `use crate::{a, b::c}` (over several lines too). Comment lines and
/// trailing comments are not read.
fn references(text: &str) -> Vec<Reference> {
    let lines: Vec<String> = text.lines().map(code_of).collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let mut rest = line.as_str();
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().next_back();
            let after = &rest[i + "crate::".len()..];
            rest = after;
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `mycrate::`, not this crate
            }
            if after.starts_with('{') {
                // The group may run over the next lines: read up to its closing brace.
                let mut group = String::new();
                let mut depth = 0usize;
                'lines: for part in std::iter::once(after).chain(lines[n + 1..].iter().map(String::as_str)) {
                    for c in part.chars() {
                        match c {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break 'lines;
                                }
                            }
                            ',' if depth == 1 => group.push(','),
                            _ if depth == 1 => group.push(c),
                            _ => {}
                        }
                    }
                    group.push(' ');
                }
                for item in group.split(',') {
                    let name = ident(item.trim_start().trim_start_matches('{'));
                    if !name.is_empty() && name != "self" {
                        out.push(Reference { line: n + 1, module: name.to_string() });
                    }
                }
            } else {
                let name = ident(after);
                if !name.is_empty() {
                    out.push(Reference { line: n + 1, module: name.to_string() });
                }
            }
        }
    }
    out
}

/// A line without its comment: nothing of a `//` line, and nothing after a `//` that stands
/// after whitespace (a URL's `://` stays).
fn code_of(line: &str) -> String {
    let t = line.trim_start();
    if t.starts_with("//") {
        return String::new();
    }
    let cut = line.match_indices("//").find(|(i, _)| line[..*i].ends_with(char::is_whitespace)).map(|(i, _)| i);
    line[..cut.unwrap_or(line.len())].to_string()
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

fn layer_of(module: &str) -> Option<usize> {
    let module = ROOT_REEXPORTS.iter().find(|(name, _)| *name == module).map_or(module, |(_, m)| m);
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every `.rs` file under `dir`, as paths relative to `root` with `/` separators.
fn rust_files(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(root, &p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            let rel = p.strip_prefix(root).expect("under the root");
            out.push(rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
        }
    }
}

#[test]
fn no_module_imports_from_its_own_layer_or_one_above() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &src, &mut files);
    assert!(files.len() > 50, "found only {} files under {}", files.len(), src.display());
    let mut problems = Vec::new();
    let mut used_exceptions = Vec::new();
    for file in files.iter().filter(|f| !NOT_LAYERED.contains(&f.as_str())) {
        let module = file.split('/').next().unwrap_or_default().trim_end_matches(".rs");
        let Some(own) = layer_of(module) else {
            problems.push(format!("engine/src/{file}: module `{module}` stands in no layer: add it to LAYERS (layers.rs) and to ARCHITECTURE.md"));
            continue;
        };
        let text = std::fs::read_to_string(src.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        for r in references(&text) {
            if r.module == module {
                continue;
            }
            let Some(theirs) = layer_of(&r.module) else {
                problems.push(format!("engine/src/{file}:{}: `crate::{}` is in no layer", r.line, r.module));
                continue;
            };
            if theirs < own {
                continue;
            }
            if let Some(e) = KNOWN_EXCEPTIONS.iter().find(|(f, m)| *f == file && *m == r.module) {
                used_exceptions.push(*e);
                continue;
            }
            let how = if theirs == own { "its own layer" } else { "a higher layer" };
            problems.push(format!(
                "engine/src/{file}:{}: `{module}` (layer {}) imports `crate::{}` from {how} (layer {}): move what it needs down, or turn the dependency around",
                r.line,
                own + 1,
                r.module,
                theirs + 1
            ));
        }
    }
    for e in KNOWN_EXCEPTIONS.iter().filter(|e| !used_exceptions.contains(e)) {
        problems
            .push(format!("known exception {e:?} is no longer needed: delete it from KNOWN_EXCEPTIONS (layers.rs)"));
    }
    assert!(problems.is_empty(), "the layers are broken:\n{}", problems.join("\n"));
}

#[test]
fn every_module_stands_in_exactly_one_layer() {
    let all: Vec<&str> = LAYERS.iter().flat_map(|l| l.iter().copied()).collect();
    for m in &all {
        assert_eq!(all.iter().filter(|x| *x == m).count(), 1, "`{m}` stands in more than one layer");
    }
    let lib = include_str!("lib.rs");
    for line in lib.lines() {
        // Modules the binary and the tests do not reach are `pub(crate)`: layered all the same.
        let declared = line.trim().strip_prefix("pub mod ").or_else(|| line.trim().strip_prefix("pub(crate) mod "));
        if let Some(m) = declared.and_then(|m| m.strip_suffix(';')) {
            assert!(all.contains(&m), "`{m}` (lib.rs) stands in no layer");
        }
    }
}

#[test]
fn references_are_read_from_paths_groups_and_uses_but_not_comments() {
    let text = "use crate::error::Failure;\n\
                // use crate::cli::x;\n\
                use crate::{\n    steps::{self, Step},\n    template, Error,\n};\n\
                let x = crate::pg::connect(\"postgres://h/db\"); // crate::fleet\n\
                let y = mycrate::fleet::f();\n\
                /// [`crate::report::visible`]\n\
                use crate::{self as me};\n";
    let got: Vec<(usize, String)> = references(text).into_iter().map(|r| (r.line, r.module)).collect();
    let want: Vec<(usize, String)> = [(1, "error"), (3, "steps"), (3, "template"), (3, "Error"), (7, "pg")]
        .iter()
        .map(|(l, m)| (*l, m.to_string()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(layer_of("Error"), layer_of("error"));
    assert!(layer_of("util") < layer_of("error") && layer_of("steps") < layer_of("exec"));
}
