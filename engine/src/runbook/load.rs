//! Finding and loading runbooks: a file or the name of a shipped runbook, and the nesting of
//! runbooks followed through every written-out `runbook` step, so a runbook that nests
//! itself is invalid input before anything runs.

use std::path::{Path, PathBuf};

use serde_yaml::Value as Yaml;

use super::{parse, suggest, Diagnostics, Runbook};
use crate::{shipped, steps, Error};

/// How deep runbooks may nest. A runbook that nests itself through a templated path (which
/// `validate` cannot follow) stops here with an error, so its rollbacks and `finally` run
/// instead of the process overflowing its stack.
pub const MAX_NESTING: usize = 16;

/// Whether a step of kind `uses` runs another runbook (`StepKind::nests`): what the step
/// contract declares, never a kind's name, so a second kind that nests is followed too.
fn nests(uses: &str) -> bool {
    steps::find(uses).is_some_and(|k| k.nests)
}

/// Read and check a runbook file, named in messages as the path was given.
pub fn load(path: &Path) -> Result<Runbook, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("cannot read runbook {}: {e}", path.display())))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&path.display().to_string(), &text, base).map_err(Error::Runbook)
}

/// A runbook file, or the name of a shipped runbook or drill (`backup`, `verify` ...).
pub fn load_runbook_ref(path: &Path) -> Result<Runbook, Error> {
    if path.exists() {
        return load(path);
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match shipped::find(name) {
        Some(s) => parse(&format!("<shipped>/{}", s.path), s.text, std::env::current_dir().unwrap_or_default())
            .map_err(Error::Runbook),
        None => {
            let help = suggest::help(name, shipped::names()).map(|h| format!(" ({h})")).unwrap_or_default();
            Err(Error::invalid(format!(
                "no runbook file `{}` and no shipped runbook of that name{help}",
                path.display()
            )))
        }
    }
}

/// A runbook to run or validate: loaded, and its nesting followed through every `runbook`
/// step whose path is written out (not templated), so a runbook that nests itself, directly
/// or through others, is invalid input before anything runs.
pub fn load_checked(path: &Path) -> Result<Runbook, Error> {
    let rb = load_runbook_ref(path)?;
    let mut chain = Vec::new();
    if let Some(cycle) = nesting_cycle(&rb, &mut chain, &mut Vec::new(), nests) {
        let hops: Vec<&str> = cycle.hops.iter().map(|(at, _)| at.as_str()).collect();
        let d =
            rb.diagnostic_at(&cycle.root_step, format!("runbook `{}` nests itself", rb.name)).with_help(Some(format!(
                "{} -> {}: a runbook that nests itself never ends; remove the step that closes the cycle",
                hops.join(" -> "),
                cycle.closes
            )));
        let mut all = Diagnostics::default();
        all.push(d);
        return Err(Error::Runbook(all));
    }
    let mut diags = Diagnostics::default();
    nested_vars(&rb, &mut Vec::new(), &mut diags, nests);
    if !diags.is_empty() {
        return Err(Error::Runbook(diags));
    }
    Ok(rb)
}

/// Every written-out `runbook` step's `vars:` against the nested runbook's declarations: a
/// name it does not declare, or a variable it needs (declared `~`) that is not given, is
/// found here, not when the nested runbook starts after the steps before it have run.
/// `nesting` tells the kinds that nest (`nests`; a test hands its own).
fn nested_vars(rb: &Runbook, done: &mut Vec<String>, diags: &mut Diagnostics, nesting: fn(&str) -> bool) {
    let key = nesting_key(rb);
    if done.contains(&key) || done.len() > MAX_NESTING {
        return;
    }
    done.push(key);
    for step in rb.all_steps().filter(|s| nesting(&s.uses)) {
        let Some(p) = step.with.get("path").and_then(Yaml::as_str).filter(|p| !p.contains("{{")) else { continue };
        let full = if Path::new(p).is_absolute() { PathBuf::from(p) } else { rb.base_dir.join(p) };
        let Ok(child) = load_runbook_ref(&full) else { continue };
        let given = match step.with.get("vars") {
            None => serde_yaml::Mapping::new(),
            Some(Yaml::Mapping(m)) => m.clone(),
            // A templated `vars:` is known only when the step runs.
            Some(_) => continue,
        };
        for k in given.keys().filter_map(Yaml::as_str) {
            if !child.vars.contains_key(k) {
                let help = suggest::help(k, child.vars.keys().map(String::as_str))
                    .or_else(|| Some(format!("runbook `{}` declares: {}", child.name, declared(&child))));
                let d = rb.diagnostic_at(
                    &format!("{}.with.vars.{k}", step.path),
                    format!("runbook `{}` ({p}) has no variable `{k}`", child.name),
                );
                diags.push(d.with_help(help));
            }
        }
        // A value written out is checked against what the child declares it takes (a
        // templated one when the step runs, by the child's own `resolve_vars`).
        for (k, v) in given.iter().filter_map(|(k, v)| Some((k.as_str()?, v))) {
            let Some(ty) = child.var_types.get(k) else { continue };
            if matches!(v, Yaml::String(s) if s.contains("{{")) {
                continue;
            }
            if let Err(e) = super::vars::fit(v, ty) {
                let d = rb.diagnostic_at(
                    &format!("{}.with.vars.{k}", step.path),
                    format!("runbook `{}` ({p}), variable `{k}`: {e}", child.name),
                );
                diags.push(d.with_help(Some(format!("`{k}` takes {}", ty.describe()))));
            }
        }
        for (name, default) in &child.vars {
            if default.is_none() && !given.contains_key(name.as_str()) {
                let at = if step.with.get("vars").is_some() { ".with.vars" } else { ".with" };
                let d = rb.diagnostic_at(
                    &format!("{}{at}", step.path),
                    format!("runbook `{}` ({p}) needs a value for variable `{name}`", child.name),
                );
                diags.push(d.with_help(Some(format!("give it under `vars:`, for example `{name}: ...`"))));
            }
        }
        nested_vars(&child, done, diags, nesting);
    }
}

fn declared(rb: &Runbook) -> String {
    if rb.vars.is_empty() {
        return "no variables".into();
    }
    rb.vars.keys().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
}

/// A nesting cycle: every hop as (`file:line:col` of the `path:` that nests, key of the
/// nesting file), the file that closes it, and the step of the outermost runbook it starts at.
struct Cycle {
    hops: Vec<(String, String)>,
    closes: String,
    root_step: String,
}

/// How a nested runbook's file is known: its canonical path, or its name for a shipped one.
fn nesting_key(rb: &Runbook) -> String {
    std::fs::canonicalize(&rb.file).map(|p| p.display().to_string()).unwrap_or_else(|_| rb.file.clone())
}

/// Depth-first over the written-out nestings of `rb`; `chain` holds the hops above it (see
/// [`Cycle`]), `done` the runbooks already followed to the end, `nesting` the kinds that nest.
fn nesting_cycle(
    rb: &Runbook,
    chain: &mut Vec<(String, String, String)>,
    done: &mut Vec<String>,
    nesting: fn(&str) -> bool,
) -> Option<Cycle> {
    let key = nesting_key(rb);
    if done.contains(&key) || chain.len() > MAX_NESTING {
        return None;
    }
    for step in rb.all_steps().filter(|s| nesting(&s.uses)) {
        let Some(p) = step.with.get("path").and_then(Yaml::as_str).filter(|p| !p.contains("{{")) else { continue };
        let full = if Path::new(p).is_absolute() { PathBuf::from(p) } else { rb.base_dir.join(p) };
        // A nested file that does not load is reported when it runs (or by its own validate).
        let Ok(child) = load_runbook_ref(&full) else { continue };
        let at = format!("{}.with.path", step.path);
        chain.push((rb.location(&at), key.clone(), at));
        let child_key = nesting_key(&child);
        let found = match chain.iter().position(|(_, k, _)| *k == child_key) {
            Some(start) => Some(Cycle {
                hops: chain[start..].iter().map(|(loc, k, _)| (loc.clone(), k.clone())).collect(),
                closes: child.file.clone(),
                root_step: chain.first().map(|(_, _, at)| at.clone()).unwrap_or_default(),
            }),
            None => nesting_cycle(&child, chain, done, nesting),
        };
        chain.pop();
        if found.is_some() {
            return found;
        }
    }
    done.push(key);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 37: the loader followed nested runbooks by comparing each step's `uses` with the
    /// `runbook` kind's name. Now it follows what the step contract declares (`nests`): the
    /// `runbook` kind says it nests, and the cycle and the handed-down `vars:` are found
    /// through that flag alone (a loader told no kind nests follows nothing).
    #[test]
    fn nesting_is_followed_by_the_kind_s_nests_flag_not_its_name() {
        let nesting: Vec<&str> = steps::names().filter(|n| nests(n)).collect();
        assert_eq!(nesting, ["runbook"]);
        let dir = tempfile::tempdir().expect("tempdir");
        let me = dir.path().join("me.yaml");
        std::fs::write(&me, "name: me\nsteps:\n  - uses: runbook\n    with: { path: me.yaml }\n").expect("write");
        let child = dir.path().join("child.yaml");
        std::fs::write(
            &child,
            "name: child\nvars:\n  needed: ~\nsteps:\n  - uses: sleep\n    with: { duration: 1ms }\n",
        )
        .expect("write");
        let parent = dir.path().join("parent.yaml");
        std::fs::write(
            &parent,
            "name: parent\nsteps:\n  - uses: runbook\n    with: { path: child.yaml, vars: { nope: 1 } }\n",
        )
        .expect("write");

        let err = load_checked(&me).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("runbook `me` nests itself"), "{err}");
        let err = load_checked(&parent).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("has no variable `nope`") && err.contains("needs a value for variable `needed`"), "{err}");

        let never: fn(&str) -> bool = |_| false;
        let rb = load(&me).expect("me loads");
        assert!(nesting_cycle(&rb, &mut Vec::new(), &mut Vec::new(), never).is_none());
        assert!(nesting_cycle(&rb, &mut Vec::new(), &mut Vec::new(), nests).is_some());
        let rb = load(&parent).expect("parent loads");
        let mut diags = Diagnostics::default();
        nested_vars(&rb, &mut Vec::new(), &mut diags, never);
        assert!(diags.is_empty(), "followed a step no kind declared nesting for");
    }
}
