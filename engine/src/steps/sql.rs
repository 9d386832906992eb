//! `sql.exec` and `sql.assert`: run SQL against a connection URL; assert on a scalar result.

use serde::{Deserialize, Serialize};
use tokio_postgres::SimpleQueryMessage;

use super::{Fields, step, StepCtx, StepError, With, WithError};
use crate::pg;
use crate::template::is_template;

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct ExecWith {
    /// connection URL (password from the URL or PGPASSWORD)
    #[field(conninfo)]
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
    #[field(conninfo)]
    url: String,
    /// query whose first column of the first row is checked
    query: String,
    /// `> 0`, `>= n`, `== 42`, `!= x`, `between a and b`, `is null`, `is not null`
    expect: String,
    /// which rows the expectation judges: `all` (the default: every row's first column must
    /// hold it), `any` (one row is enough) or `first`; no rows is judged as one NULL
    #[serde(default)]
    #[field(ty = "all|any|first")]
    rows: Rows,
}

/// Which rows of a query `sql.assert` judges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rows {
    /// Every row must hold the expectation: the safe default, since a query that returns
    /// one bad row among good ones is a failure.
    #[default]
    All,
    /// At least one row must hold it.
    Any,
    /// Only the first row is judged (the order is the query's `order by`).
    First,
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct AssertOutputs {
    /// the value the query returned (first column of the first row)
    value: Option<String>,
    /// how many rows the query returned
    rows: u64,
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

/// Run SQL statements (inline or from a file) against a database.
#[step(name = "sql.exec")]
impl Exec {
    async fn run(ctx: StepCtx, w: ExecWith) -> Result<ExecOutputs, StepError> {
        let sql = match (&w.sql, &w.file) {
            (Some(s), _) => s.clone(),
            (None, Some(f)) => {
                let path = ctx.local("file", f)?;
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

/// Run a query returning one value and check it against an expectation.
#[step(name = "sql.assert")]
impl Assert {
    async fn run(ctx: StepCtx, w: AssertWith) -> Result<AssertOutputs, StepError> {
        let expect = Expect::parse(&w.expect).map_err(StepError::invalid)?;
        let (values, _) = rows_of(&w.url, &w.query).await?;
        let value = values.first().cloned().flatten();
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
        let q = first_line(&w.query);
        let how_many = values.len();
        ctx.log(format!(
            "{q} -> {}{} (expect {}, rows: {})",
            shown(&value),
            if how_many > 1 { format!(" and {} more row(s)", how_many - 1) } else { String::new() },
            w.expect,
            w.rows.as_str()
        ));
        // No row at all is judged as one NULL, as a scalar subquery would be.
        let judged: Vec<Option<String>> = if values.is_empty() { vec![None] } else { values };
        let expected = w.expect.trim();
        let failed = |i: usize, v: &Option<String>, why: String| {
            let which = if how_many > 1 { format!(" in row {}", i + 1) } else { String::new() };
            StepError::failed(format!("`{q}` returned {}{which}, expected {expected}{why}", shown(v)))
        };
        match w.rows {
            Rows::First => {
                expect.holds(judged[0].as_deref()).map_err(|why| failed(0, &judged[0], why))?;
            }
            Rows::All => {
                for (i, v) in judged.iter().enumerate() {
                    expect.holds(v.as_deref()).map_err(|why| failed(i, v, why))?;
                }
            }
            Rows::Any => {
                if !judged.iter().any(|v| expect.holds(v.as_deref()).is_ok()) {
                    return Err(StepError::failed(format!(
                        "`{q}` returned {how_many} row(s), none of them {expected} (first: {}; rows: any)",
                        shown(&judged[0])
                    )));
                }
            }
        }
        Ok(AssertOutputs { value, rows: how_many as u64 })
    }
}

impl Rows {
    fn as_str(self) -> &'static str {
        match self {
            Rows::All => "all",
            Rows::Any => "any",
            Rows::First => "first",
        }
    }
}

/// The first column of every row a query returned (of every statement of it), and the rows
/// the last statement returned or affected.
async fn rows_of(url: &str, sql: &str) -> Result<(Vec<Option<String>>, u64), StepError> {
    let client = pg::connect(url).await?;
    let msgs =
        client.simple_query(sql).await.map_err(|e| StepError::failed(format!("SQL failed: {}", pg::describe(&e))))?;
    let mut rows = 0;
    let mut values = Vec::new();
    for m in msgs {
        match m {
            SimpleQueryMessage::Row(r) => values.push(r.get(0).map(str::to_string)),
            SimpleQueryMessage::CommandComplete(n) => rows = n,
            _ => {}
        }
    }
    Ok((values, rows))
}

/// Results of a batch: (rows of the last statement, first value returned).
async fn batch(url: &str, sql: &str) -> Result<(u64, Option<String>), StepError> {
    let (values, rows) = rows_of(url, sql).await?;
    Ok((rows, values.into_iter().next().flatten()))
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
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// An expectation on a scalar; also what a step's generic `assert:` is written in. Parsed
/// once: the numbers it compares with are held as numbers ([`Num`], exact), never re-read
/// from text at each comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Cmp(Op, Operand),
    Between(Num, Num),
    Null(bool),
}

/// What an expectation compares with: its text as written (unquoted), and the number it
/// spells, if it spells one.
#[derive(Debug, Clone, PartialEq)]
pub struct Operand {
    pub text: String,
    pub num: Option<Num>,
}

impl Operand {
    fn new(text: String) -> Operand {
        Operand { num: Num::parse(&text), text }
    }
}

impl Expect {
    pub fn parse(s: &str) -> Result<Expect, String> {
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
            let (Some(lo), Some(hi)) = (Num::parse(&lo), Num::parse(&hi)) else {
                return Err(format!("`{t}`: `between` needs two numbers"));
            };
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
                let v = Operand::new(unquote(rest));
                if v.text.is_empty() {
                    return Err(format!("`{t}`: nothing to compare with after `{tok}`"));
                }
                if matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le) && v.num.is_none() {
                    return Err(format!("`{t}`: `{tok}` compares numbers, and `{}` is not a number", v.text));
                }
                return Ok(Expect::Cmp(op, v));
            }
        }
        if t.is_empty() {
            return Err("the expectation is empty".into());
        }
        Ok(Expect::Cmp(Op::Eq, Operand::new(unquote(t))))
    }

    /// Ok if the value satisfies the expectation, else a reason suffix.
    pub fn holds(&self, value: Option<&str>) -> Result<(), String> {
        let ok = match (self, value) {
            (Expect::Null(want_null), v) => v.is_none() == *want_null,
            (_, None) => false,
            (Expect::Between(lo, hi), Some(v)) => {
                let x = num(v)?;
                x >= *lo && x <= *hi
            }
            (Expect::Cmp(op, want), Some(v)) => {
                let v = normalize_bool(v, &want.text);
                match (Num::parse(v), &want.num) {
                    (Some(a), Some(b)) => match op {
                        Op::Eq => a == *b,
                        Op::Ne => a != *b,
                        Op::Gt => a > *b,
                        Op::Ge => a >= *b,
                        Op::Lt => a < *b,
                        Op::Le => a <= *b,
                    },
                    _ => match op {
                        Op::Eq => v == want.text,
                        Op::Ne => v != want.text,
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

fn num(s: &str) -> Result<Num, String> {
    Num::parse(s).ok_or_else(|| format!(" (`{s}` is not a number)"))
}

/// A number as PostgreSQL's `numeric` compares it, parsed exactly from its text (never
/// through a float, which made `9007199254740993 == 9007199254740992` hold): integers and
/// decimals of any length, an exponent (`1.5e-07`, as `float8` prints), `Infinity`,
/// `-Infinity` and `NaN`. Ordered as PostgreSQL orders them: -Infinity, the finite numbers,
/// Infinity, then NaN, which equals NaN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Num {
    NegInf,
    /// `-0.d1d2d3... x 10^exp` and its positive twin; zero is `Pos` with no digits.
    Neg(Mag),
    Pos(Mag),
    PosInf,
    NaN,
}

/// The magnitude of a finite number: `0.DIGITS x 10^exp`, digits without leading or trailing
/// zeros (none for zero). Ordered by magnitude: for non-zero values a larger exponent is
/// larger, then the digits compare as text (a prefix is smaller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mag {
    exp: i64,
    digits: Vec<u8>,
}

impl Ord for Mag {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            (false, false) => self.exp.cmp(&other.exp).then_with(|| self.digits.cmp(&other.digits)),
        }
    }
}

impl PartialOrd for Mag {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn rank(n: &Num) -> u8 {
            match n {
                Num::NegInf => 0,
                Num::Neg(_) => 1,
                Num::Pos(_) => 2,
                Num::PosInf => 3,
                Num::NaN => 4,
            }
        }
        match (self, other) {
            (Num::Pos(a), Num::Pos(b)) => a.cmp(b),
            // The larger magnitude is the smaller negative number.
            (Num::Neg(a), Num::Neg(b)) => b.cmp(a),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

/// The longest number text compared (PostgreSQL's numeric holds 131072 digits before the
/// point and 16383 after); longer is not taken as a number.
const MAX_NUMBER_TEXT: usize = 150_000;

impl Num {
    /// The number `text` spells, or `None` when it is not one.
    pub fn parse(text: &str) -> Option<Num> {
        let t = text.trim();
        if t.len() > MAX_NUMBER_TEXT {
            return None;
        }
        let (neg, body) = match t.as_bytes().first()? {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let lower = body.to_ascii_lowercase();
        match lower.as_str() {
            "nan" => return Some(Num::NaN),
            "inf" | "infinity" => return Some(if neg { Num::NegInf } else { Num::PosInf }),
            _ => {}
        }
        let (mantissa, exp) = match body.find(['e', 'E']) {
            Some(i) => {
                let e = &body[i + 1..];
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                // An exponent of more than 18 digits is no number anything returns.
                if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (&body[..i], e.parse::<i64>().ok()?)
            }
            None => (body, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        // 0.DIGITS x 10^point: the point sits after the integer part's digits.
        let all: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
        let lead = all.iter().take_while(|d| **d == 0).count();
        let mut digits = all[lead..].to_vec();
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Num::Pos(Mag { exp: 0, digits }));
        }
        let exp = (int.len() as i64 - lead as i64).checked_add(exp)?;
        let mag = Mag { exp, digits };
        Some(if neg { Num::Neg(mag) } else { Num::Pos(mag) })
    }
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

    /// Regression: numbers were compared as f64, so `9007199254740993` equalled
    /// `9007199254740992` and `NaN` equalled nothing. They compare as PostgreSQL's numeric.
    #[test]
    fn numbers_compare_exactly_and_nan_and_infinities_as_postgresql_does() {
        let holds = |e: &str, v: &str| Expect::parse(e).map(|x| x.holds(Some(v)).is_ok()).unwrap_or(false);
        assert!(!holds("== 9007199254740992", "9007199254740993"));
        assert!(holds("!= 9007199254740992", "9007199254740993"));
        assert!(holds("> 9007199254740992", "9007199254740993"));
        assert!(holds("== 123456789012345678901234567890.5", "123456789012345678901234567890.50"));
        assert!(!holds("== 0.1", "0.10000000000000001"));
        assert!(holds("== NaN", "NaN"));
        assert!(holds("> 1e300", "NaN"));
        assert!(holds("> Infinity", "NaN"));
        assert!(holds("> 1e300", "Infinity"));
        assert!(holds("< -1e300", "-Infinity"));
        assert!(holds("== 1e3", "1000"));
        assert!(holds("== 0", "-0"));
        assert!(holds("== 1.5e-07", "0.00000015"));
        assert!(holds("< 0", "-0.000001"));
        assert!(holds("< -1", "-2"));
        assert!(holds("between -1 and 1", "0"));
        assert!(!holds("between 1 and NaN", "Infinity") || holds("< NaN", "Infinity"));
    }

    /// A generated table over the number grammar: parsing and comparing never panic, the
    /// order is total and consistent (antisymmetric, transitive over the table), and it
    /// agrees with f64 wherever f64 is exact (small integers and halves).
    #[test]
    fn the_number_order_is_total_and_agrees_with_exact_floats() {
        let mut texts: Vec<String> = vec![
            "NaN",
            "nan",
            "-NaN",
            "Infinity",
            "-Infinity",
            "inf",
            "+inf",
            "0",
            "-0",
            "0.0",
            "00",
            ".5",
            "5.",
            "-.5",
            "1e999999999999999999",
            "1e-999999999999999999",
            "1e18446744073709551616",
            "e5",
            "1e",
            "1e+",
            ".",
            "-",
            "+",
            "",
            "1..2",
            "1e5e5",
            "0x10",
            "1_0",
            " 7 ",
            "9007199254740993",
            "9007199254740992",
            "-9007199254740993",
            "1.5e-07",
            "1E3",
            "123456789012345678901234567890",
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        for i in -20..=20 {
            texts.push(format!("{}", f64::from(i) / 2.0));
            texts.push(format!("{i}e1"));
        }
        texts.push("1".repeat(MAX_NUMBER_TEXT + 1));
        let nums: Vec<(String, Num)> = texts.iter().filter_map(|t| Num::parse(t).map(|n| (t.clone(), n))).collect();
        for (ta, a) in &nums {
            for (tb, b) in &nums {
                assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{ta} vs {tb}");
                let short = ta.len() <= 10 && tb.len() <= 10;
                if let (true, Ok(x), Ok(y)) = (short, ta.trim().parse::<f64>(), tb.trim().parse::<f64>()) {
                    let exact = |v: f64| v.is_finite() && v.abs() < 1e6 && (v * 2.0).fract() == 0.0;
                    if exact(x) && exact(y) {
                        assert_eq!(a.cmp(b), x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal), "{ta} vs {tb}");
                    }
                }
                for (tc, c) in &nums {
                    if a <= b && b <= c {
                        assert!(a <= c, "{ta} <= {tb} <= {tc}");
                    }
                }
            }
            for e in ["==", "!=", ">", ">=", "<", "<=", "between 0 and"] {
                if let Ok(x) = Expect::parse(&format!("{e} {ta}")) {
                    let _ = x.holds(Some(ta));
                }
            }
        }
        assert!(Num::parse(&"1".repeat(MAX_NUMBER_TEXT + 1)).is_none());
        assert!(Num::parse("1e9999999999999999999").is_none());
        assert!(Num::parse("1e-999999999999999999") > Num::parse("0"));
    }

    #[test]
    fn bad_expectations_are_rejected() {
        assert!(Expect::parse("> abc").is_err());
        assert!(Expect::parse("between 1").is_err());
        assert!(Expect::parse("==").is_err());
    }
}
