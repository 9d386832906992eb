//! Templating with minijinja, strict about undefined names.
//!
//! Values are rendered one field at a time, at execution time, from the parsed YAML tree;
//! rendered text is never parsed as YAML again, so a value can never inject structure. A
//! field that is exactly one `{{ expression }}` keeps the expression's type: a number, a
//! boolean, a list or a map (`expect: "{{ steps.pick.outputs.fingerprint }}"`); a field with
//! text around or between expressions renders to text. Numeric and boolean fields still
//! accept text (see `steps::de`) for values that arrive as text, such as a `--var` of a
//! variable without a typed default.
//!
//! Beyond minijinja's own, one test: `location is local` (see `is_local`), so that a runbook
//! asks storage whether a location is a directory here instead of reading its text.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde_yaml::Value as Yaml;

/// The names a template may start from.
pub const ROOTS: [&str; 6] = ["vars", "let", "env", "secrets", "steps", "run"];

/// A fresh environment with pgdrill's settings.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_test("local", is_local);
    env
}

/// The `local` test: whether a location is a directory on this machine (a path, `file://`)
/// rather than an object store's URL, as storage itself tells them apart (its one table of
/// backends): `restore.yaml` keeps safety snapshots beside a local storage, never by testing
/// the text for `://`. Anything but text is no location.
fn is_local(location: minijinja::Value) -> bool {
    location.as_str().is_some_and(|l| crate::storage::local_dir(l).is_some())
}

/// Whether a string holds template syntax.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// `{{ expr }}` and nothing else around it: returns `expr`.
pub fn whole_expression(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

/// A `when:` condition: a bare expression, or one wrapped in `{{ }}`.
pub fn condition_source(s: &str) -> &str {
    whole_expression(s).unwrap_or(s.trim())
}

/// Dotted names a template reads (`steps.pick.path`, `vars.storage`).
pub fn references(env: &Environment<'_>, source: &str) -> Result<BTreeSet<String>, minijinja::Error> {
    let names = match whole_expression(source) {
        Some(expr) => env.compile_expression(expr)?.undeclared_variables(true),
        None => env.template_from_str(source)?.undeclared_variables(true),
    };
    Ok(names.into_iter().collect())
}

/// Dotted names a `when:` condition reads.
pub fn condition_references(env: &Environment<'_>, source: &str) -> Result<BTreeSet<String>, minijinja::Error> {
    let names = env.compile_expression(condition_source(source))?.undeclared_variables(true);
    Ok(names.into_iter().collect())
}

/// Render one string field.
pub fn render_str(env: &Environment<'_>, source: &str, ctx: &minijinja::Value) -> Result<Yaml, minijinja::Error> {
    if !is_template(source) {
        return Ok(Yaml::String(source.to_string()));
    }
    if let Some(expr) = whole_expression(source) {
        let v = env.compile_expression(expr)?.eval(ctx)?;
        if v.is_undefined() {
            return Err(minijinja::Error::new(minijinja::ErrorKind::UndefinedError, format!("`{expr}` is undefined")));
        }
        // One expression and nothing around it keeps its type: `"{{ vars.jobs }}"` is the
        // number 4, `"{{ vars.jobs > 1 }}"` a boolean, a map stays a map.
        return Ok(to_yaml(&v));
    }
    let out = env.render_str(source, ctx)?;
    Ok(Yaml::String(out))
}

/// Evaluate a `when:` condition.
pub fn eval_condition(env: &Environment<'_>, source: &str, ctx: &minijinja::Value) -> Result<bool, minijinja::Error> {
    let v = env.compile_expression(condition_source(source))?.eval(ctx)?;
    Ok(v.is_true())
}

fn to_yaml(v: &minijinja::Value) -> Yaml {
    // Going through serde keeps numbers, booleans, sequences and maps typed.
    serde_yaml::to_value(v).unwrap_or_else(|_| Yaml::String(v.to_string()))
}

/// Render every string in a YAML tree. On error, returns the dotted path of the field.
pub fn render_tree(
    env: &Environment<'_>,
    value: &Yaml,
    ctx: &minijinja::Value,
    path: &str,
) -> Result<Yaml, (String, minijinja::Error)> {
    Ok(match value {
        Yaml::String(s) => render_str(env, s, ctx).map_err(|e| (path.to_string(), e))?,
        Yaml::Sequence(items) => Yaml::Sequence(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| render_tree(env, v, ctx, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(map) => {
            let mut out = serde_yaml::Mapping::new();
            for (k, v) in map {
                let key = k.as_str().map(str::to_string).unwrap_or_else(|| format!("{k:?}"));
                out.insert(k.clone(), render_tree(env, v, ctx, &join(path, &key))?);
            }
            Yaml::Mapping(out)
        }
        Yaml::Tagged(t) => render_tree(env, &t.value, ctx, path)?,
        other => other.clone(),
    })
}

/// Every templated string in a tree, with its dotted path.
pub fn templated_strings<'a>(value: &'a Yaml, path: &str, out: &mut Vec<(String, &'a str)>) {
    match value {
        Yaml::String(s) if is_template(s) => out.push((path.to_string(), s)),
        Yaml::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                templated_strings(v, &format!("{path}[{i}]"), out);
            }
        }
        Yaml::Mapping(map) => {
            for (k, v) in map {
                if let Some(key) = k.as_str() {
                    templated_strings(v, &join(path, key), out);
                }
            }
        }
        Yaml::Tagged(t) => templated_strings(&t.value, path, out),
        _ => {}
    }
}

/// `a` + `b` -> `a.b`, with an empty prefix giving `b`.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The first line of a minijinja error, without its debug dump.
pub fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    if let Some(detail) = e.detail() {
        if !s.contains(detail) {
            s = format!("{s}: {detail}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> minijinja::Value {
        minijinja::context! { vars => minijinja::context!{ jobs => 4, name => "erp" }, steps => minijinja::context!{} }
    }

    #[test]
    fn whole_expression_keeps_its_type_and_mixed_text_renders_to_text() {
        let env = environment();
        assert_eq!(render_str(&env, "{{ vars.jobs }}", &ctx()).ok(), Some(Yaml::Number(4.into())));
        assert_eq!(render_str(&env, "{{ vars.jobs > 1 }}", &ctx()).ok(), Some(Yaml::Bool(true)));
        assert_eq!(render_str(&env, "{{ vars.name }}", &ctx()).ok(), Some(Yaml::String("erp".into())));
        assert_eq!(render_str(&env, "{{ vars.jobs }} ", &ctx()).ok(), Some(Yaml::Number(4.into())));
        assert_eq!(render_str(&env, "x{{ vars.jobs }}", &ctx()).ok(), Some(Yaml::String("x4".into())));
        let map = render_str(&env, "{{ vars }}", &ctx()).ok();
        assert!(matches!(map, Some(Yaml::Mapping(_))), "{map:?}");
        assert_eq!(render_str(&env, "db-{{ vars.name }}", &ctx()).ok(), Some(Yaml::String("db-erp".into())));
    }

    #[test]
    fn undefined_is_an_error() {
        let env = environment();
        assert!(render_str(&env, "{{ vars.nope }}", &ctx()).is_err());
        assert!(render_str(&env, "x{{ steps.a.b }}", &ctx()).is_err());
    }

    #[test]
    fn a_location_is_local_as_storage_says_not_by_its_text() {
        let env = environment();
        let local = |l: &str| {
            let c = minijinja::context! { vars => minijinja::context!{ storage => l } };
            render_str(&env, "{{ vars.storage is local }}", &c).ok()
        };
        for l in ["/srv/backups", "backups", "", "file:///srv/backups", "/srv/a://b"] {
            assert_eq!(local(l), Some(Yaml::Bool(true)), "{l}");
        }
        for l in ["s3://b/app", "S3://b/app", " gs://b", "az://c/app", "azure://c", "s3://b/app?region=eu-west-1"] {
            assert_eq!(local(l), Some(Yaml::Bool(false)), "{l}");
        }
        let c = minijinja::context! { vars => minijinja::context!{ storage => (), jobs => 4 } };
        assert_eq!(render_str(&env, "{{ vars.storage is local }}", &c).ok(), Some(Yaml::Bool(false)));
        assert_eq!(render_str(&env, "{{ vars.jobs is local }}", &c).ok(), Some(Yaml::Bool(false)));
        // A test is no name a template reads: `pgdrill validate` has nothing to say of it.
        let r = references(&env, "{{ vars.storage is local }}").unwrap_or_default();
        assert_eq!(r.into_iter().collect::<Vec<_>>(), ["vars.storage"]);
    }

    #[test]
    fn references_are_dotted() {
        let env = environment();
        let r = references(&env, "{{ steps.pick.path }}/{{ vars.x }}").unwrap_or_default();
        assert!(r.contains("steps.pick.path"), "{r:?}");
        assert!(r.contains("vars.x"), "{r:?}");
    }
}
