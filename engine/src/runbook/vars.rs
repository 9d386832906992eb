//! A run's variables: `--var` pairs typed like the declared default (`--var skip=false` is
//! false, not the text "false"), declared defaults rendered against the environment, and the
//! `let:` values computed once from them (those that read step outputs are the executor's).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};
use serde_yaml::Value as Yaml;

use super::{suggest, Diagnostics, Runbook};
use crate::{template, Error};

/// `--var k=v` pairs as a mapping of strings.
pub fn overrides_from_pairs(pairs: &[(String, String)]) -> serde_yaml::Mapping {
    let mut m = serde_yaml::Mapping::new();
    for (k, v) in pairs {
        m.insert(Yaml::String(k.clone()), Yaml::String(v.clone()));
    }
    m
}

/// Declared defaults, overridden by `--var`; every declared variable must end with a value.
pub fn resolve_vars(
    rb: &Runbook,
    overrides: &serde_yaml::Mapping,
    env: &Map<String, Json>,
) -> Result<Map<String, Json>, Error> {
    for k in overrides.keys() {
        let k = k.as_str().unwrap_or_default();
        if !rb.vars.contains_key(k) {
            let help =
                suggest::help(k, rb.vars.keys().map(String::as_str)).map(|h| format!("; {h}")).unwrap_or_default();
            let declared = if rb.vars.is_empty() {
                "it declares none".to_string()
            } else {
                format!("it declares {}", rb.vars.keys().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", "))
            };
            return Err(Error::invalid(format!(
                "--var {k}: runbook `{}` has no variable `{k}` ({declared}){help}",
                rb.name
            )));
        }
    }
    let tenv = template::environment();
    let ctx = minijinja::Value::from_serialize(json!({ "env": env }));
    let mut out = Map::new();
    for (name, default) in &rb.vars {
        let ty = rb.var_types.get(name).unwrap_or(&VarType::Text);
        let value: Yaml = match overrides.get(name.as_str()) {
            Some(v) => fit(v, ty).map_err(|e| misfit(rb, name, format!("--var {name}: {e}")))?,
            None => match default {
                Some(d) => template::render_tree(&tenv, d, &ctx, &format!("vars.{name}")).map_err(|(_, e)| {
                    Error::invalid(format!(
                        "runbook `{}`, default of variable `{name}`: {}",
                        rb.name,
                        template::describe(&e)
                    ))
                })?,
                None => {
                    return Err(Error::invalid(format!(
                        "runbook `{}` needs a value for variable `{name}`: pass --var {name}=VALUE",
                        rb.name
                    )))
                }
            },
        };
        // A default from a template (an environment variable's) is checked once rendered.
        let value = match overrides.get(name.as_str()) {
            Some(_) => value,
            None => fit(&value, ty).map_err(|e| misfit(rb, name, format!("the default of `{name}`: {e}")))?,
        };
        out.insert(name.clone(), serde_json::to_value(&value).unwrap_or(Json::Null));
    }
    Ok(out)
}

/// The `let:` values known before any step runs, in the order written, each from vars, env
/// and the values above it. A value that reads step outputs (`Runbook::let_reads`) is left
/// out: the executor computes it once the steps it reads have run. A value that is one
/// expression keeps its type, like any field.
pub fn resolve_lets(
    rb: &Runbook,
    vars: &Map<String, Json>,
    env: &Map<String, Json>,
) -> Result<Map<String, Json>, Error> {
    let tenv = template::environment();
    let mut lets = Map::new();
    for (name, value) in rb.lets.iter().filter(|(n, _)| !rb.let_reads.contains_key(n)) {
        let ctx = minijinja::Value::from_serialize(json!({ "vars": vars, "env": env, "let": lets }));
        let v = template::render_tree(&tenv, value, &ctx, &format!("let.{name}")).map_err(|(_, e)| {
            Error::invalid(format!(
                "runbook `{}`, `let.{name}` ({}): {}",
                rb.name,
                rb.location(&format!("let.{name}")),
                template::describe(&e)
            ))
        })?;
        lets.insert(name.clone(), serde_json::to_value(&v).unwrap_or(Json::Null));
    }
    Ok(lets)
}

/// A `--var` value is text; a variable whose default is a boolean or a number takes the
/// value as one, so `--var skip=false` is false (the text "false" would be true in `when:`).
fn typed_like(v: &Yaml, default: Option<&Yaml>) -> Result<Yaml, String> {
    let Yaml::String(text) = v else { return Ok(v.clone()) };
    let t = text.trim();
    match default {
        Some(Yaml::Bool(_)) => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Yaml::Bool(true)),
            "false" | "no" | "off" | "0" | "" => Ok(Yaml::Bool(false)),
            _ => Err(format!("`{text}` is not true or false")),
        },
        // The README promises a number: `abc` is refused here, before any step starts,
        // not found by the step that reads it after servers were started.
        Some(Yaml::Number(_)) => t
            .parse::<i64>()
            .map(|n| Yaml::Number(n.into()))
            .or_else(|_| t.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| Yaml::Number(f.into())).ok_or(()))
            .map_err(|_| format!("`{text}` is not a number")),
        _ => Ok(v.clone()),
    }
}

/// What a variable takes: declared under `vars:` as `NAME: { type: ..., values: [...],
/// default: ... }`, or told by its plain default (`jobs: 2` takes a number). `pgdrill plan`
/// shows it; a value that does not fit is refused before any step starts, at the declaration.
#[derive(Debug, Clone, PartialEq)]
pub enum VarType {
    Text,
    Number,
    Boolean,
    /// One of a fixed set (`values:`), compared by their text: `--var` gives text, and
    /// `values: [ask, "true"]` keeps each member's own YAML type for the templates.
    OneOf(Vec<Yaml>),
}

impl VarType {
    /// The type a plain default tells: a boolean or a number, else text.
    pub fn of_default(default: Option<&Yaml>) -> VarType {
        match default {
            Some(Yaml::Bool(_)) => VarType::Boolean,
            Some(Yaml::Number(_)) => VarType::Number,
            _ => VarType::Text,
        }
    }

    /// For people: `text`, `number`, `boolean`, `one of: a, b, ""`.
    pub fn describe(&self) -> String {
        match self {
            VarType::Text => "text".into(),
            VarType::Number => "number".into(),
            VarType::Boolean => "boolean".into(),
            VarType::OneOf(values) => format!("one of: {}", list_values(values)),
        }
    }
}

/// The declaration keys of a variable written as a mapping.
const DECLARATION_FIELDS: &[&str] = &["type", "values", "default"];
/// The names `type:` takes.
const TYPE_NAMES: &[&str] = &["text", "number", "boolean", "enum"];

/// A member of `values:` as `--var` would spell it; `None` for what cannot be a member.
fn member_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `drop_database, destroy_server`, with the empty text shown as `""` so it can be seen.
fn list_values(values: &[Yaml]) -> String {
    values
        .iter()
        .filter_map(member_text)
        .map(|t| if t.is_empty() || t.contains([',', ' ']) { format!("{t:?}") } else { t })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `v` fits `ty`, and the value the run sees: for `OneOf`, the declared member whose
/// text `v`'s text equals (its YAML type, not the `--var` text's); for the others, `v` typed.
/// A value `typed_like` already turned into a number or boolean is left as it is.
pub(super) fn fit(v: &Yaml, ty: &VarType) -> Result<Yaml, String> {
    match ty {
        VarType::OneOf(values) => {
            let text = member_text(v).map(|t| t.trim().to_string());
            match text.and_then(|t| values.iter().find(|m| member_text(m).as_deref() == Some(t.as_str()))) {
                Some(m) => Ok(m.clone()),
                None => Err(format!(
                    "`{}` is not one of {}",
                    member_text(v).unwrap_or_else(|| "a list or mapping".into()),
                    list_values(values)
                )),
            }
        }
        VarType::Number => match v {
            Yaml::Number(_) => Ok(v.clone()),
            Yaml::String(_) => typed_like(v, Some(&Yaml::Number(0.into()))),
            _ => Err("it is not a number".into()),
        },
        VarType::Boolean => match v {
            Yaml::Bool(_) => Ok(v.clone()),
            Yaml::String(_) => typed_like(v, Some(&Yaml::Bool(false))),
            _ => Err("it is not true or false".into()),
        },
        VarType::Text => Ok(v.clone()),
    }
}

/// The error for a value that does not fit variable `name`, at its declaration (where the
/// allowed values are written), so the operator sees both what they gave and what it takes.
fn misfit(rb: &Runbook, name: &str, what: String) -> Error {
    let at = match rb.var_types.get(name) {
        Some(VarType::OneOf(_)) => format!("vars.{name}.values"),
        _ => format!("vars.{name}"),
    };
    let ty = rb.var_types.get(name).map(VarType::describe).unwrap_or_else(|| "text".into());
    let d = rb.diagnostic_at(&at, what).with_help(Some(format!("`{name}` takes {ty}")));
    let mut diags = Diagnostics::default();
    diags.push(d);
    Error::Runbook(diags)
}

impl super::Checker<'_> {
    /// `vars:` as written: each a plain default, or a declaration (`{ type, values, default }`)
    /// checked here, so a default outside its own `values:` is found by `validate`.
    pub(super) fn vars(
        &mut self,
        raw: BTreeMap<String, Yaml>,
    ) -> (BTreeMap<String, Option<Yaml>>, BTreeMap<String, VarType>) {
        let mut defaults = BTreeMap::new();
        let mut types = BTreeMap::new();
        for (name, v) in raw {
            let path = format!("vars.{name}");
            let (default, ty) = match v {
                Yaml::Mapping(m) => self.var_declaration(&path, &m),
                Yaml::Null => (None, VarType::Text),
                other => {
                    let ty = VarType::of_default(Some(&other));
                    (Some(other), ty)
                }
            };
            defaults.insert(name.clone(), default);
            types.insert(name, ty);
        }
        (defaults, types)
    }

    fn var_declaration(&mut self, path: &str, m: &serde_yaml::Mapping) -> (Option<Yaml>, VarType) {
        for k in m.keys() {
            let key = k.as_str().unwrap_or_default();
            if !DECLARATION_FIELDS.contains(&key) {
                let d = self.diag(
                    self.spans.key(&format!("{path}.{key}")),
                    format!("unknown field `{key}` in the declaration of `{path}`"),
                );
                let help = suggest::help(key, DECLARATION_FIELDS.iter().copied()).unwrap_or_else(|| {
                    format!(
                        "a variable is declared with {}; a plain value is its default",
                        DECLARATION_FIELDS.join(", ")
                    )
                });
                self.diags.push(d.with_help(Some(help)));
            }
        }
        let default = m.get("default").filter(|d| !d.is_null()).cloned();
        let type_name = match m.get("type") {
            None => None,
            Some(Yaml::String(t)) if TYPE_NAMES.contains(&t.as_str()) => Some(t.as_str()),
            Some(t) => {
                let t = member_text(t).unwrap_or_default();
                let d = self.diag(self.spans.value(&format!("{path}.type")), format!("unknown variable type `{t}`"));
                let help = suggest::help(&t, TYPE_NAMES.iter().copied())
                    .unwrap_or_else(|| format!("the types are {}", TYPE_NAMES.join(", ")));
                self.diags.push(d.with_help(Some(help)));
                return (default, VarType::Text);
            }
        };
        let ty = match (type_name, m.get("values")) {
            (None | Some("enum"), Some(values)) => match self.var_values(path, values) {
                Some(v) => VarType::OneOf(v),
                None => return (default, VarType::Text),
            },
            (Some("enum"), None) => {
                let d = self.diag(
                    self.spans.value(&format!("{path}.type")),
                    format!("`{path}` is an enumeration without `values:`"),
                );
                self.diags.push(d.with_help(Some("list what it takes: `values: [a, b]`".into())));
                return (default, VarType::Text);
            }
            (Some(t), Some(_)) => {
                let d = self.diag(self.spans.key(&format!("{path}.values")), format!("`values:` with `type: {t}`"));
                self.diags.push(d.with_help(Some(
                    "`values:` makes the variable an enumeration: drop `type:` or write `type: enum`".into(),
                )));
                return (default, VarType::Text);
            }
            (Some("number"), None) => VarType::Number,
            (Some("boolean"), None) => VarType::Boolean,
            (Some(_), None) => VarType::Text,
            (None, None) => VarType::of_default(default.as_ref()),
        };
        // A templated default is known at run time, and checked then.
        let templated = matches!(&default, Some(Yaml::String(s)) if s.contains("{{"));
        if let (Some(d), false) = (&default, templated) {
            if let Err(e) = fit(d, &ty) {
                let diag =
                    self.diag(self.spans.value(&format!("{path}.default")), format!("the default of `{path}`: {e}"));
                self.diags.push(diag.with_help(Some(format!("`{path}` takes {}", ty.describe()))));
            }
        }
        (default, ty)
    }

    /// `values:`: a non-empty list of distinct texts, numbers or booleans.
    fn var_values(&mut self, path: &str, values: &Yaml) -> Option<Vec<Yaml>> {
        let at = format!("{path}.values");
        let Yaml::Sequence(items) = values else {
            let d = self.diag(self.spans.value(&at), format!("`{at}` is not a list"));
            self.diags.push(d.with_help(Some("for example `values: [drop_database, destroy_server]`".into())));
            return None;
        };
        if items.is_empty() {
            let d = self.diag(self.spans.value(&at), format!("`{at}` is empty: no value would fit"));
            self.diags.push(d.with_help(Some("list what the variable takes, or drop `values:`".into())));
            return None;
        }
        let mut seen: Vec<String> = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let here = self.spans.value(&format!("{at}[{i}]"));
            match member_text(item) {
                None => {
                    self.diags.push(self.diag(here, format!("`{at}[{i}]` is not a text, number or boolean")));
                    ok = false;
                }
                Some(t) if seen.contains(&t) => {
                    self.diags.push(self.diag(here, format!("`{t}` is listed twice in `{at}`")));
                    ok = false;
                }
                Some(t) => seen.push(t),
            }
        }
        ok.then(|| items.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn runbook(vars: &str) -> Result<Runbook, String> {
        let text = format!("name: t\nvars:\n{vars}steps:\n  - uses: sleep\n    with: {{ duration: 1ms }}\n");
        super::super::parse("t.yaml", &text, PathBuf::new()).map_err(|d| d.to_string())
    }

    fn resolve(rb: &Runbook, pairs: &[(&str, &str)]) -> Result<Map<String, Json>, String> {
        let pairs: Vec<_> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        resolve_vars(rb, &overrides_from_pairs(&pairs), &Map::new()).map_err(|e| e.to_string())
    }

    /// Regression: a variable that takes a fixed set (`disaster=flood`) could not say so; a
    /// value outside it was found by the step that read it, after servers had started.
    #[test]
    fn a_declared_enumeration_refuses_other_values_at_its_declaration() {
        let rb = runbook("  disaster: { default: drop_database, values: [drop_database, destroy_server] }\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            rb.var_types.get("disaster"),
            Some(&VarType::OneOf(vec![Yaml::String("drop_database".into()), Yaml::String("destroy_server".into())]))
        );
        assert_eq!(rb.vars.get("disaster"), Some(&Some(Yaml::String("drop_database".into()))));
        assert_eq!(resolve(&rb, &[]).ok().and_then(|v| v.get("disaster").cloned()), Some(json!("drop_database")));
        assert_eq!(
            resolve(&rb, &[("disaster", "destroy_server")]).ok().and_then(|v| v.get("disaster").cloned()),
            Some(json!("destroy_server"))
        );
        let e = resolve(&rb, &[("disaster", "flood")]).err().unwrap_or_default();
        assert!(e.contains("--var disaster: `flood` is not one of drop_database, destroy_server"), "{e}");
        assert!(e.contains("t.yaml:3:"), "names the declaration: {e}");
    }

    #[test]
    fn members_keep_their_declared_yaml_type_and_are_matched_by_text() {
        let rb = runbook("  roles: { default: ask, values: [ask, \"true\", \"false\"] }\n  n: { values: [1, 2, 4] }\n  b: { values: [true, false], default: true }\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let v = resolve(&rb, &[("roles", "true"), ("n", "4"), ("b", "false")]).unwrap_or_default();
        assert_eq!(v.get("roles"), Some(&json!("true")), "text, as the templates compare it");
        assert_eq!(v.get("n"), Some(&json!(4)));
        assert_eq!(v.get("b"), Some(&json!(false)));
        assert!(resolve(&rb, &[("n", "3")]).is_err());
        assert!(resolve(&rb, &[("roles", "yes")]).is_err(), "a mistyped value never falls back to the default");
    }

    #[test]
    fn declared_types_type_values_without_a_default() {
        let rb = runbook(
            "  scale: { type: number }\n  force: { type: boolean }\n  name: { type: text }\n  plain: 3\n  none: ~\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rb.var_types.get("scale"), Some(&VarType::Number));
        assert_eq!(rb.var_types.get("force"), Some(&VarType::Boolean));
        assert_eq!(rb.var_types.get("name"), Some(&VarType::Text));
        assert_eq!(rb.var_types.get("plain"), Some(&VarType::Number), "told by the default");
        assert_eq!(rb.var_types.get("none"), Some(&VarType::Text));
        assert_eq!(rb.vars.get("scale"), Some(&None), "no default: a value must be given");
        let all = [("scale", "12"), ("force", "yes"), ("name", "x"), ("none", "y")];
        let v = resolve(&rb, &all).unwrap_or_default();
        assert_eq!(v.get("scale"), Some(&json!(12)));
        assert_eq!(v.get("force"), Some(&json!(true)));
        let e =
            resolve(&rb, &[("scale", "abc"), ("force", "yes"), ("name", "x"), ("none", "y")]).err().unwrap_or_default();
        assert!(e.contains("--var scale: `abc` is not a number") && e.contains("t.yaml:3:"), "{e}");
    }

    #[test]
    fn a_templated_default_is_checked_once_rendered() {
        let rb = runbook(
            "  mode: { default: \"{{ env.PGDRILL_TEST_NOPE | default('flood') }}\", values: [fast, spread] }\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let e = resolve(&rb, &[]).err().unwrap_or_default();
        assert!(e.contains("the default of `mode`: `flood` is not one of fast, spread"), "{e}");
    }

    #[test]
    fn bad_declarations_are_refused_where_written() {
        for (vars, says) in [
            ("  m: { default: c, values: [a, b] }\n", "`c` is not one of a, b"),
            ("  m: { values: [] }\n", "is empty"),
            ("  m: { values: a }\n", "is not a list"),
            ("  m: { values: [a, a] }\n", "listed twice"),
            ("  m: { values: [a, [b]] }\n", "is not a text, number or boolean"),
            ("  m: { type: enum }\n", "without `values:`"),
            ("  m: { type: number, values: [1] }\n", "`values:` with `type: number`"),
            ("  m: { type: integer }\n", "unknown variable type `integer`"),
            ("  m: { type: number, default: many }\n", "`many` is not a number"),
            ("  m: { type: boolean, default: 3 }\n", "not true or false"),
            ("  m: { defualt: 1 }\n", "did you mean `default`?"),
        ] {
            let e = runbook(vars).err().unwrap_or_default();
            assert!(e.contains(says) && e.contains("t.yaml:3:"), "{vars}: {e}");
        }
    }

    #[test]
    fn describe_shows_the_empty_text_so_it_can_be_seen() {
        let t = VarType::OneOf(vec![Yaml::String(String::new()), Yaml::String("rollback".into())]);
        assert_eq!(t.describe(), "one of: \"\", rollback");
        assert_eq!(VarType::Number.describe(), "number");
    }

    /// The shipped runbooks and drills declare the variables that take a fixed set as such.
    #[test]
    fn shipped_variables_with_a_fixed_set_are_enumerations() {
        let expect = [
            ("drills/disaster-recovery.yaml", "disaster"),
            ("drills/disaster-recovery.yaml", "provider"),
            ("drills/quickstart.yaml", "provider"),
            ("drills/ab.yaml", "provider"),
            ("drills/upgrade.yaml", "provider"),
            ("runbooks/restore.yaml", "create_roles"),
            ("runbooks/restore.yaml", "recover"),
            ("runbooks/verify.yaml", "fingerprint"),
            ("runbooks/verify.yaml", "provider"),
            ("runbooks/backup.yaml", "format"),
            ("runbooks/backup.yaml", "compression"),
            ("runbooks/backup.yaml", "fingerprint"),
            ("runbooks/predeploy.yaml", "format"),
            ("runbooks/base-backup.yaml", "wal"),
            ("runbooks/base-backup.yaml", "checkpoint"),
            ("runbooks/offsite.yaml", "copy"),
        ];
        for (path, var) in expect {
            let s = crate::shipped::all().iter().find(|s| s.path.ends_with(path));
            let rb = s.map(|s| super::super::parse(s.path, s.text, PathBuf::new()).map_err(|d| d.to_string()));
            let ty = rb.as_ref().and_then(|r| r.as_ref().ok()).and_then(|r| r.var_types.get(var).cloned());
            assert!(
                matches!(ty, Some(VarType::OneOf(_))),
                "{path}: `{var}` is {ty:?} ({:?})",
                rb.and_then(|r| r.err())
            );
        }
    }
}
