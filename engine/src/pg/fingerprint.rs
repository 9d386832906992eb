//! A fingerprint of a database: its schema and, per table, the row count and an
//! order-independent, duplicate-sensitive content hash.
//!
//! The content hash of a table is the sum (as numeric, so it never overflows) of
//! `hashtextextended(row::text, 0)` over its rows: adding, removing or changing a row
//! changes it, duplicates count, order does not. Row text depends on session settings, so
//! they are pinned (`SESSION_SETTINGS`) both when a backup is taken and when a restore is
//! verified. Everything is read in the caller's transaction, which for backups is the
//! repeatable-read transaction whose snapshot pg_dump uses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// Session settings that make text forms identical on every server.
pub const SESSION_SETTINGS: &str = "set local timezone = 'UTC'; set local datestyle = 'ISO, YMD'; \
     set local intervalstyle = 'postgres'; set local extra_float_digits = 3; set local bytea_output = 'hex'; \
     set local search_path = pg_catalog";

/// How much to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Full,
    Counts,
    Off,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "full" => Ok(Mode::Full),
            "counts" => Ok(Mode::Counts),
            "off" => Ok(Mode::Off),
            o => Err(format!("unknown fingerprint mode `{o}`: use full, counts or off")),
        }
    }
}

/// One table's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablePrint {
    pub rows: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

/// The whole fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub mode: Mode,
    /// SHA-256 over every schema line.
    pub schema_hash: String,
    /// Schema lines by kind (tables, columns, constraints, indexes, sequences, views,
    /// functions, extensions), each sorted.
    pub schema: BTreeMap<String, Vec<String>>,
    /// By `schema.table` (quoted as needed).
    pub tables: BTreeMap<String, TablePrint>,
}

const USER_NS: &str = "n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'";

fn schema_queries() -> Vec<(&'static str, String)> {
    vec![
        ("tables", format!("select format('%I.%I %s', n.nspname, c.relname, c.relkind) from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('r','p','v','m','S','f') and {USER_NS}")),
        ("columns", format!("select format('%I.%I %s %I %s%s%s', n.nspname, c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), case when a.attnotnull then ' not null' else '' end, coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')) from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum where a.attnum > 0 and not a.attisdropped and c.relkind in ('r','p','v','m','f') and {USER_NS}")),
        ("constraints", format!("select format('%I.%I %I %s', n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid)) from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace where {USER_NS}")),
        ("indexes", format!("select pg_get_indexdef(i.indexrelid) from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace where {USER_NS}")),
        ("sequences", "select format('%I.%I last_value=%s increment=%s', schemaname, sequencename, coalesce(last_value::text, 'null'), increment_by) from pg_sequences where schemaname not in ('pg_catalog', 'information_schema')".into()),
        ("views", format!("select format('%I.%I %s', n.nspname, c.relname, md5(pg_get_viewdef(c.oid))) from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('v','m') and {USER_NS}")),
        ("functions", format!("select format('%I.%I(%s) %s', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), md5(coalesce(p.prosrc, ''))) from pg_proc p join pg_namespace n on n.oid = p.pronamespace where {USER_NS} and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')")),
        ("extensions", "select format('%s %s', extname, extversion) from pg_extension where extname <> 'plpgsql'".into()),
    ]
}

/// Compute the fingerprint in the caller's current transaction (settings are `set local`).
pub async fn compute(client: &Client, mode: Mode) -> Result<Option<Fingerprint>, tokio_postgres::Error> {
    if mode == Mode::Off {
        return Ok(None);
    }
    let (schema_hash, schema) = compute_schema(client).await?;
    let tables = compute_tables(client, mode).await?;
    Ok(Some(Fingerprint { mode, schema_hash, schema, tables }))
}

/// The schema part: lines by kind and their hash.
pub async fn compute_schema(client: &Client) -> Result<(String, BTreeMap<String, Vec<String>>), tokio_postgres::Error> {
    client.batch_execute(SESSION_SETTINGS).await?;
    let mut schema = BTreeMap::new();
    let mut hasher = Sha256::new();
    for (kind, q) in schema_queries() {
        let mut lines: Vec<String> =
            client.query(q.as_str(), &[]).await?.iter().map(|r| r.get::<_, String>(0)).collect();
        lines.sort();
        for l in &lines {
            hasher.update(kind.as_bytes());
            hasher.update(b" ");
            hasher.update(l.as_bytes());
            hasher.update(b"\n");
        }
        schema.insert(kind.to_string(), lines);
    }
    Ok((crate::archive::hex(&hasher.finalize()), schema))
}

/// The per-table part: row counts, and content hashes in `Full` mode.
pub async fn compute_tables(
    client: &Client,
    mode: Mode,
) -> Result<BTreeMap<String, TablePrint>, tokio_postgres::Error> {
    client.batch_execute(SESSION_SETTINGS).await?;
    let tables: Vec<String> = client
        .query(
            format!("select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relkind = 'r' and {USER_NS} order by 1").as_str(),
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let mut prints = BTreeMap::new();
    for t in tables {
        let p = match mode {
            Mode::Full => {
                let q = format!(
                    "select count(*), coalesce(sum(hashtextextended(x::text, 0)::numeric), 0)::text from {t} x"
                );
                let row = client.query_one(q.as_str(), &[]).await?;
                TablePrint { rows: row.get(0), hash: Some(row.get::<_, String>(1)) }
            }
            _ => {
                let row = client.query_one(format!("select count(*) from {t}").as_str(), &[]).await?;
                TablePrint { rows: row.get(0), hash: None }
            }
        };
        prints.insert(t, p);
    }
    Ok(prints)
}

/// A schema line as it is compared. A sequence's position is recorded but not compared:
/// sequences are not transactional, so pg_dump and the fingerprint read `last_value` outside
/// their shared snapshot, and under concurrent writes the two legitimately differ.
fn comparable(kind: &str, line: &str) -> String {
    if kind != "sequences" {
        return line.to_string();
    }
    line.split(' ').filter(|w| !w.starts_with("last_value=")).collect::<Vec<_>>().join(" ")
}

/// Schema differences, as readable lines ("missing: ...", "unexpected: ..."), by kind.
pub fn schema_differences(
    expected: &BTreeMap<String, Vec<String>>,
    actual: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let mut out = Vec::new();
    let kinds: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    let empty = Vec::new();
    for kind in kinds {
        let e: std::collections::BTreeSet<String> =
            expected.get(kind).unwrap_or(&empty).iter().map(|l| comparable(kind, l)).collect();
        let a: std::collections::BTreeSet<String> =
            actual.get(kind).unwrap_or(&empty).iter().map(|l| comparable(kind, l)).collect();
        for l in e.difference(&a) {
            out.push(format!("{kind}: missing {l}"));
        }
        for l in a.difference(&e) {
            out.push(format!("{kind}: unexpected {l}"));
        }
    }
    out
}

/// Per-table differences by table name. Hashes are compared only when both sides have one.
pub fn table_differences(
    expected: &BTreeMap<String, TablePrint>,
    actual: &BTreeMap<String, TablePrint>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (t, e) in expected {
        match actual.get(t) {
            None => out.push(format!("{t}: missing from the restore ({} rows expected)", e.rows)),
            Some(a) if a.rows != e.rows => out.push(format!("{t}: {} rows, expected {}", a.rows, e.rows)),
            Some(a) => {
                if let (Some(eh), Some(ah)) = (&e.hash, &a.hash) {
                    if eh != ah {
                        out.push(format!("{t}: content differs ({} rows, hash {ah}, expected {eh})", a.rows));
                    }
                }
            }
        }
    }
    for (t, a) in actual {
        if !expected.contains_key(t) {
            out.push(format!("{t}: not in the source ({} rows)", a.rows));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::schema_differences;
    use std::collections::BTreeMap;

    fn one(kind: &str, line: &str) -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([(kind.to_string(), vec![line.to_string()])])
    }

    #[test]
    fn sequence_positions_are_not_compared_but_everything_else_is() {
        let e = one("sequences", "public.hb_id_seq last_value=1 increment=1");
        assert!(schema_differences(&e, &one("sequences", "public.hb_id_seq last_value=9 increment=1")).is_empty());
        assert_eq!(schema_differences(&e, &one("sequences", "public.hb_id_seq last_value=1 increment=2")).len(), 2);
        let c = one("columns", "public.t.a last_value=1");
        assert_eq!(schema_differences(&c, &one("columns", "public.t.a last_value=2")).len(), 2);
    }
}
