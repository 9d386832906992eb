//! `sql.exec` and `sql.assert`: run SQL against a connection URL; assert on a scalar result.

use serde::{Deserialize, Serialize};
use tokio_postgres::SimpleQueryMessage;

use super::{Fields, Step, StepCtx, StepError, With, WithError};
use crate::pg;
use crate::template::is_template;

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct ExecWith {
    /// connection URL (password from the URL or PGPASSWORD)
    url: String,
    /// SQL to run; several statements run as one batch
    sql: Option<String>,
    /// SQL file to run (relative to the runbook)
    #[field(ty = "path")]
    file: Option<String>,
}

impl With for ExecWith {
    fn check(&self) -> Result<(), WithError> {
        match (&self.sql, &self.file) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            (Some(_), Some(_)) => Err(WithError::new("", "give either `sql` or `file`, not both")),
            (None, None) => Err(WithError::new("", "missing field `sql` (or `file`)")),
        }
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct ExecOutputs {
    /// rows returned or affected by the last statement
    rows: u64,
    /// first column of the first row returned
    value: Option<String>,
}

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct AssertWith {
    /// connection URL
    url: String,
    /// query whose first column of the first row is checked
    query: String,
    /// `> 0`, `>= n`, `== 42`, `!= x`, `between a and b`, `is null`, `is not null`
    expect: String,
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct AssertOutputs {
    /// the value the query returned
    value: Option<String>,
}

impl With for AssertWith {
    fn check(&self) -> Result<(), WithError> {
        if is_template(&self.expect) {
            return Ok(());
        }
        Expect::parse(&self.expect).map(|_| ()).map_err(|m| WithError {
            path: "expect".into(),
            message: m,
            help: Some("write `> 0`, `>= 1`, `== 42`, `!= 0`, `between 1 and 10`, `is null` or a bare value".into()),
        })
    }
}

pub struct Exec;

impl Step for Exec {
    const NAME: &'static str = "sql.exec";
    const SUMMARY: &'static str = "Run SQL statements (inline or from a file) against a database.";
    type With = ExecWith;
    type Outputs = ExecOutputs;

    async fn run(ctx: StepCtx, w: ExecWith) -> Result<ExecOutputs, StepError> {
        let sql = match (&w.sql, &w.file) {
            (Some(s), _) => s.clone(),
            (None, Some(f)) => {
                let path = ctx.resolve(f);
                tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|e| StepError::invalid(format!("cannot read SQL file {}: {e}", path.display())))?
            }
            (None, None) => return Err(StepError::invalid("missing field `sql` (or `file`)")),
        };
        let (rows, value) = batch(&w.url, &sql).await?;
        ctx.log(format!("{} on {}: {rows} row(s)", first_line(&sql), pg::display_url(&w.url)));
        Ok(ExecOutputs { rows, value })
    }
}

pub struct Assert;

impl Step for Assert {
    const NAME: &'static str = "sql.assert";
    const SUMMARY: &'static str = "Run a query returning one value and check it against an expectation.";
    type With = AssertWith;
    type Outputs = AssertOutputs;

    async fn run(ctx: StepCtx, w: AssertWith) -> Result<AssertOutputs, StepError> {
        let expect = Expect::parse(&w.expect).map_err(StepError::invalid)?;
        let (_, value) = batch(&w.url, &w.query).await?;
        let shown = value.clone().unwrap_or_else(|| "NULL".into());
        ctx.log(format!("{} -> {shown} (expect {})", first_line(&w.query), w.expect));
        expect.holds(value.as_deref()).map_err(|why| {
            StepError::failed(format!("`{}` returned {shown}, expected {}{why}", first_line(&w.query), w.expect.trim()))
        })?;
        Ok(AssertOutputs { value })
    }
}

/// Results of a batch: (rows of the last statement, first value returned).
async fn batch(url: &str, sql: &str) -> Result<(u64, Option<String>), StepError> {
    let client = pg::connect(url).await?;
    let msgs =
        client.simple_query(sql).await.map_err(|e| StepError::failed(format!("SQL failed: {}", pg::describe(&e))))?;
    let mut rows = 0;
    let mut first: Option<Option<String>> = None;
    for m in msgs {
        match m {
            SimpleQueryMessage::Row(r) if first.is_none() => first = Some(r.get(0).map(str::to_string)),
            SimpleQueryMessage::CommandComplete(n) => rows = n,
            _ => {}
        }
    }
    Ok((rows, first.flatten()))
}

fn first_line(sql: &str) -> String {
    let line = sql.trim().lines().next().unwrap_or("");
    if line.chars().count() > 80 {
        format!("{}...", line.chars().take(77).collect::<String>())
    } else {
        line.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// An expectation on a scalar; also what a step's generic `assert:` is written in.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expect {
    Cmp(Op, String),
    Between(String, String),
    Null(bool),
}

impl Expect {
    pub(crate) fn parse(s: &str) -> Result<Expect, String> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        if lower == "is null" {
            return Ok(Expect::Null(true));
        }
        if lower == "is not null" {
            return Ok(Expect::Null(false));
        }
        if let Some(rest) = lower.strip_prefix("between ") {
            let start = t.len() - rest.len();
            let rest_orig = &t[start..];
            let Some(i) = rest.find(" and ") else {
                return Err(format!("`{t}`: `between` needs `between LOW and HIGH`"));
            };
            let (lo, hi) = (unquote(&rest_orig[..i]), unquote(&rest_orig[i + 5..]));
            if lo.parse::<f64>().is_err() || hi.parse::<f64>().is_err() {
                return Err(format!("`{t}`: `between` needs two numbers"));
            }
            return Ok(Expect::Between(lo, hi));
        }
        for (tok, op) in [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("!=", Op::Ne),
            ("<>", Op::Ne),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ] {
            if let Some(rest) = t.strip_prefix(tok) {
                let v = unquote(rest);
                if v.is_empty() {
                    return Err(format!("`{t}`: nothing to compare with after `{tok}`"));
                }
                if matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le) && v.parse::<f64>().is_err() {
                    return Err(format!("`{t}`: `{tok}` compares numbers, and `{v}` is not a number"));
                }
                return Ok(Expect::Cmp(op, v));
            }
        }
        if t.is_empty() {
            return Err("the expectation is empty".into());
        }
        Ok(Expect::Cmp(Op::Eq, unquote(t)))
    }

    /// Ok if the value satisfies the expectation, else a reason suffix.
    pub(crate) fn holds(&self, value: Option<&str>) -> Result<(), String> {
        let ok = match (self, value) {
            (Expect::Null(want_null), v) => v.is_none() == *want_null,
            (_, None) => false,
            (Expect::Between(lo, hi), Some(v)) => {
                let x = num(v)?;
                x >= num(lo)? && x <= num(hi)?
            }
            (Expect::Cmp(op, want), Some(v)) => {
                let v = normalize_bool(v, want);
                match (v.parse::<f64>(), want.parse::<f64>()) {
                    (Ok(a), Ok(b)) => match op {
                        Op::Eq => a == b,
                        Op::Ne => a != b,
                        Op::Gt => a > b,
                        Op::Ge => a >= b,
                        Op::Lt => a < b,
                        Op::Le => a <= b,
                    },
                    _ => match op {
                        Op::Eq => v == want.as_str(),
                        Op::Ne => v != want.as_str(),
                        _ => return Err(format!(" (`{v}` is not a number)")),
                    },
                }
            }
        };
        if ok {
            Ok(())
        } else {
            Err(String::new())
        }
    }
}

fn num(s: &str) -> Result<f64, String> {
    s.trim().parse::<f64>().map_err(|_| format!(" (`{s}` is not a number)"))
}

/// PostgreSQL's text form of booleans is `t`/`f`; let `== true` match it.
fn normalize_bool<'a>(v: &'a str, want: &str) -> &'a str {
    match (v, want) {
        ("t", "true") => "true",
        ("f", "false") => "false",
        _ => v,
    }
}

fn unquote(s: &str) -> String {
    let t = s.trim();
    for q in ['\'', '"'] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return t[1..t.len() - 1].to_string();
        }
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_parse_and_hold() {
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("> 0", Some("3"), true),
            ("> 0", Some("0"), false),
            ("== 42", Some("42"), true),
            ("42", Some("42.0"), true),
            ("!= 0", Some("1"), true),
            ("between 1 and 10", Some("10"), true),
            ("between 1 and 10", Some("11"), false),
            ("is null", None, true),
            ("is not null", None, false),
            ("== 'erp'", Some("erp"), true),
            ("== true", Some("t"), true),
            (">= 5", None, false),
        ];
        for (e, v, want) in cases {
            let x = Expect::parse(e).unwrap_or(Expect::Null(true));
            assert_eq!(x.holds(*v).is_ok(), *want, "{e} on {v:?}");
        }
    }

    #[test]
    fn bad_expectations_are_rejected() {
        assert!(Expect::parse("> abc").is_err());
        assert!(Expect::parse("between 1").is_err());
        assert!(Expect::parse("==").is_err());
    }
}
