//! `database.size`: how big a database is as the server counts it, and its largest tables,
//! changing nothing: the check the classic runbooks run by hand before a backup or a restore
//! (`select pg_size_pretty(pg_database_size('erp'))` and the table-size query beside it), as
//! outputs a later step or an `assert:` can read (`bytes: "< 50000000000"`).

use serde::{Deserialize, Serialize};

use super::{pg_error, step, Fields, StepCtx, StepError, With};
use crate::pg;

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct SizeWith {
    /// connection URL of the database to measure (password from the URL or PGPASSWORD)
    #[field(conninfo)]
    url: String,
    /// how many of the largest tables to list (default 10; 0: none)
    #[serde(default = "ten")]
    top: u32,
}

fn ten() -> u32 {
    10
}

impl With for SizeWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct SizeOutputs {
    /// the database's name
    database: String,
    /// its size in bytes (`pg_database_size`)
    bytes: u64,
    /// the same for people, e.g. `1.6 GiB`
    size: String,
    /// the largest tables, largest first: `table` (schema and name, quoted where SQL needs
    /// it), `bytes` (with its indexes and TOAST), `table_bytes`, `index_bytes`
    tables: Vec<serde_json::Value>,
}

/// The size of a database and its largest tables, as the server counts them; nothing is changed.
#[step(name = "database.size")]
impl Size {
    async fn run(ctx: StepCtx, w: SizeWith) -> Result<SizeOutputs, StepError> {
        let client = pg::connect(&w.url).await?;
        let row = client
            .query_one("select current_database(), pg_database_size(current_database())", &[])
            .await
            .map_err(pg_error)?;
        let (database, bytes): (String, i64) = (row.get(0), row.get(1));
        // Names are data: `format('%I.%I')` quotes them as SQL would, never by hand. Plain and
        // materialized tables; the system's own schemas are not the team's data.
        let rows = client
            .query(
                "select format('%I.%I', n.nspname, c.relname), pg_total_relation_size(c.oid), \
                 pg_relation_size(c.oid), pg_indexes_size(c.oid) \
                 from pg_class c join pg_namespace n on n.oid = c.relnamespace \
                 where c.relkind in ('r', 'm') and n.nspname not in ('pg_catalog', 'information_schema') \
                 and n.nspname not like 'pg\\_toast%' \
                 order by 2 desc, 1 limit $1",
                &[&i64::from(w.top)],
            )
            .await
            .map_err(pg_error)?;
        let unsigned = |v: i64| u64::try_from(v).unwrap_or_default();
        let tables = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "table": r.get::<_, String>(0),
                    "bytes": unsigned(r.get(1)),
                    "table_bytes": unsigned(r.get(2)),
                    "index_bytes": unsigned(r.get(3)),
                })
            })
            .collect::<Vec<_>>();
        let bytes = unsigned(bytes);
        ctx.fact(crate::facts::Fact::Database { name: database.clone() });
        ctx.log(format!(
            "database {} is {} ({bytes} bytes){}",
            crate::util::visible(&database),
            crate::util::human_bytes(bytes),
            tables
                .first()
                .map(|t| format!("; largest table {} ({})", crate::util::visible(t["table"].as_str().unwrap_or("")), crate::util::human_bytes(t["bytes"].as_u64().unwrap_or(0))))
                .unwrap_or_default()
        ));
        Ok(SizeOutputs { database, bytes, size: crate::util::human_bytes(bytes), tables })
    }
}
