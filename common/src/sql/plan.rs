//! Planning a database input: one snapshot for the job, the columns and their Arrow types, and
//! the slices tasks read: ctid page ranges of a table (no key column needed, as DuckDB's
//! scanner does), or value ranges of `--partition-column` with bounds found under the snapshot.
//! The first and last slices are open-ended, so a new snapshot (after a failover) still sees
//! every row through the same slices.

use super::connect::Database;
use super::snapshot::Snapshot;
use super::types::describe;
use super::{SqlSlice, quote_ident, quote_literal};
use crate::{Error, Result};
use arrow::datatypes::{Field, Schema};
use tokio_postgres::types::Type;

/// What a database input asks for (the job spec's `table` / `query` / … fields).
#[derive(Clone, Debug, Default)]
pub struct SqlRequest {
    pub table: Option<String>,
    pub query: Option<String>,
    pub partition_column: Option<String>,
    pub since_column: Option<String>,
    /// Export only rows whose `since_column` is above this (the last run's high-water mark).
    pub since: Option<String>,
    /// ... and at or below this (the range an earlier planning of the same job fixed).
    pub until: Option<String>,
    pub partition_size: u64,
    pub min_tasks: Option<u32>,
}

pub struct SqlPlan {
    pub slices: Vec<SqlSlice>,
    /// Bytes each slice is expected to read (for progress and packing), in slice order.
    pub sizes: Vec<u64>,
    pub schema: Schema,
    pub snapshot: Snapshot,
    /// `table public.users` or `query`.
    pub relation: String,
    /// The largest `since_column` value this run exports (recorded when it succeeds).
    pub high_water: Option<String>,
}

/// More slices than this make tasks too small to be worth their connection.
const MAX_SLICES: u64 = 10_000;

pub async fn plan_sql(url: &str, request: &SqlRequest) -> Result<SqlPlan> {
    let database = Database::parse(url)?;
    let snapshot = Snapshot::export(&database).await?;
    let client = snapshot.client();
    let shown = database.shown().to_string();
    let db_error = |doing: &str, e: tokio_postgres::Error| database.error(doing, &e);

    // What rows come from: a table (resolved and checked), or the query as a subquery.
    let (from, relation, table) = match (&request.table, &request.query) {
        (Some(name), None) => {
            let row = client
                .query_opt(
                    "SELECT c.oid::int8, quote_ident(n.nspname) || '.' || quote_ident(c.relname), \
                     c.relkind::text, has_table_privilege(c.oid, 'SELECT') \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.oid = to_regclass($1)",
                    &[name],
                )
                .await
                .map_err(|e| db_error(&format!("looking up table {name}"), e))?
                .ok_or_else(|| Error::config(format!("{shown}: table {name} does not exist")))?;
            let qualified: String = row.get(1);
            let kind: String = row.get(2);
            if !row.get::<_, bool>(3) {
                return Err(Error::AccessDenied {
                    url: shown,
                    detail: format!("permission denied for table {qualified}"),
                });
            }
            let oid: i64 = row.get(0);
            let relation = format!("table {qualified}");
            (qualified.clone(), relation, Some((oid, kind)))
        }
        (None, Some(query)) => {
            // A query as users write it: a trailing `;` or `-- comment` must not break the
            // subquery around it.
            let query = query.trim().trim_end_matches(';').trim_end();
            (format!("({query}\n) AS q"), "query".to_string(), None)
        }
        (Some(_), Some(_)) => {
            return Err(Error::config("give either --table or --query, not both"));
        }
        (None, None) => {
            return Err(Error::config(format!(
                "{shown}: a database input needs --table NAME or --query SQL"
            )));
        }
    };
    let described = client
        .prepare(&format!("SELECT * FROM {from}"))
        .await
        .map_err(|e| db_error(&format!("reading {relation}"), e))?;
    let columns = describe(&described, &format!("{shown} {relation}"))?;
    if columns.is_empty() {
        return Err(Error::config(format!("{shown} {relation} has no columns")));
    }
    let column_type = |name: &str| -> Result<Type> {
        columns
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.ty.clone())
            .ok_or_else(|| {
                Error::config(format!(
                    "{shown} {relation}: column {name} does not exist (it has {})",
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    };
    let select_list = columns
        .iter()
        .map(|c| quote_ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");

    // Incremental loads: only rows above the last run's mark; this run's mark is their max.
    let mut filter: Option<String> = None;
    let mut high_water = None;
    if let Some(column) = &request.since_column {
        let ty = column_type(column)?;
        if !orderable(&ty) {
            return Err(Error::config(format!(
                "{shown} {relation}: --since-column {column} is {}; it must be a number, date or timestamp",
                ty.name()
            )));
        }
        let col = quote_ident(column);
        let bound = |value: &str| format!("{}::{}", quote_literal(value), ty.name());
        let mut conditions = Vec::new();
        if let Some(since) = &request.since {
            conditions.push(format!("{col} > {}", bound(since)));
        }
        if let Some(until) = &request.until {
            // Planned before (a new snapshot after a failover): the same range again.
            conditions.push(format!("{col} <= {}", bound(until)));
            high_water = Some(until.clone());
        }
        filter = (!conditions.is_empty()).then(|| conditions.join(" AND "));
    }
    if let (Some(column), None) = (&request.since_column, &request.until) {
        let mark = client
            .query_one(
                &format!(
                    "SELECT max({})::text FROM {from}{}",
                    quote_ident(column),
                    where_clause(filter.as_deref(), None)
                ),
                &[],
            )
            .await
            .map_err(|e| db_error(&format!("reading {relation}"), e))?;
        high_water = mark
            .get::<_, Option<String>>(0)
            .or_else(|| request.since.clone());
        // Rows above the mark that commit later belong to the next run, not to this one.
        if let Some(mark) = &high_water {
            let ty = column_type(column)?;
            let upper = format!(
                "{} <= {}::{}",
                quote_ident(column),
                quote_literal(mark),
                ty.name()
            );
            filter = Some(match filter {
                Some(f) => format!("{f} AND {upper}"),
                None => upper,
            });
        }
    }

    let mut slices = Vec::new();
    let mut sizes = Vec::new();
    let select = |predicate: Option<&str>| {
        format!(
            "SELECT {select_list} FROM {from}{}",
            where_clause(filter.as_deref(), predicate)
        )
    };
    match (&request.partition_column, &table) {
        (Some(column), _) => {
            let ty = column_type(column)?;
            if !orderable(&ty) {
                return Err(Error::config(format!(
                    "{shown} {relation}: --partition-column {column} is {}; it must be a number, date or timestamp",
                    ty.name()
                )));
            }
            // The planner's estimate of the result; at least a slice per task slot, as the
            // column was asked for (ConnectorX's partition_num, Spark's numPartitions).
            let bytes = estimated_bytes(&database, client, &select(None), &relation).await?;
            let slots = u64::from(request.min_tasks.unwrap_or(1));
            let n = slice_count(bytes, request).max(slots.min(MAX_SLICES));
            let bounds = value_bounds(client, &from, column, &ty, filter.as_deref(), n)
                .await
                .map_err(|e| db_error(&format!("finding the bounds of {column}"), e))?;
            let col = quote_ident(column);
            let literal = |b: &str| format!("{}::{}", quote_literal(b), ty.name());
            let count = bounds.len() + 1;
            for i in 0..count {
                let predicate = match (i.checked_sub(1).map(|j| &bounds[j]), bounds.get(i)) {
                    (None, None) => None,
                    (None, Some(hi)) => Some(format!("({col} < {} OR {col} IS NULL)", literal(hi))),
                    (Some(lo), Some(hi)) => Some(format!(
                        "{col} >= {} AND {col} < {}",
                        literal(lo),
                        literal(hi)
                    )),
                    (Some(lo), None) => Some(format!("{col} >= {}", literal(lo))),
                };
                let part = match (i.checked_sub(1).map(|j| &bounds[j]), bounds.get(i)) {
                    (None, None) => String::new(),
                    (None, Some(hi)) => format!(", {column} < {hi} or null"),
                    (Some(lo), Some(hi)) => format!(", {column} in [{lo}, {hi})"),
                    (Some(lo), None) => format!(", {column} >= {lo}"),
                };
                slices.push(SqlSlice {
                    relation: format!("{relation}{part}"),
                    select: select(predicate.as_deref()),
                    snapshot: None,
                });
                sizes.push(bytes / count as u64);
            }
        }
        (None, Some((oid, kind))) if matches!(kind.as_str(), "r" | "m") => {
            let row = client
                .query_one(
                    "SELECT pg_relation_size($1::int8::oid)::int8, current_setting('block_size')::int8",
                    &[oid],
                )
                .await
                .map_err(|e| db_error(&format!("sizing {relation}"), e))?;
            // NULL when the table was dropped meanwhile.
            let bytes: i64 = row.try_get::<_, Option<i64>>(0).ok().flatten().unwrap_or(0);
            let block: i64 = row.try_get(1).unwrap_or(8192);
            let pages = (bytes / block.max(1)).max(0) as u64;
            let n = slice_count(bytes as u64, request).min(pages.max(1));
            let step = pages.div_ceil(n).max(1);
            let tid = |page: u64| format!("'({page},0)'::tid");
            for i in 0..n {
                let (lo, hi) = (i * step, (i + 1) * step);
                let last = i + 1 == n || hi >= pages;
                let predicate = match (i == 0, last) {
                    (true, true) => None,
                    (true, false) => Some(format!("ctid < {}", tid(hi))),
                    (false, false) => Some(format!("ctid >= {} AND ctid < {}", tid(lo), tid(hi))),
                    (false, true) => Some(format!("ctid >= {}", tid(lo))),
                };
                let part = if n == 1 {
                    String::new()
                } else if last {
                    format!(", pages {lo}..")
                } else {
                    format!(", pages {lo}..{hi}")
                };
                slices.push(SqlSlice {
                    relation: format!("{relation}{part}"),
                    select: select(predicate.as_deref()),
                    snapshot: None,
                });
                sizes.push(step * block as u64);
                if last {
                    break;
                }
            }
        }
        // Views, partitioned parents, foreign tables, queries: one slice.
        _ => {
            let bytes = estimated_bytes(&database, client, &select(None), &relation).await?;
            slices.push(SqlSlice {
                relation: relation.clone(),
                select: select(None),
                snapshot: None,
            });
            sizes.push(bytes);
        }
    }
    let schema = Schema::new(
        columns
            .iter()
            .map(|c| Field::new(&c.name, c.kind.arrow(), true))
            .collect::<Vec<_>>(),
    );
    Ok(SqlPlan {
        slices,
        sizes,
        schema,
        snapshot,
        relation: format!("{shown} {relation}"),
        high_water,
    })
}

fn where_clause(filter: Option<&str>, predicate: Option<&str>) -> String {
    match (filter, predicate) {
        (None, None) => String::new(),
        (Some(f), None) => format!(" WHERE {f}"),
        (None, Some(p)) => format!(" WHERE {p}"),
        (Some(f), Some(p)) => format!(" WHERE ({f}) AND ({p})"),
    }
}

/// How many slices: about one per `partition_size` bytes, at least `min_tasks` when the input
/// is worth splitting (8 MiB a slice at least), never more than `MAX_SLICES`.
fn slice_count(bytes: u64, request: &SqlRequest) -> u64 {
    let mut n = bytes.div_ceil(request.partition_size.max(1));
    if let Some(slots) = request.min_tasks {
        n = n.max(u64::from(slots).min(bytes / (8 * 1024 * 1024)));
    }
    n.clamp(1, MAX_SLICES)
}

fn orderable(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::NUMERIC
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::DATE
            | Type::TIMESTAMP
            | Type::TIMESTAMPTZ
    )
}

/// The planner's estimate of what a query returns, in bytes (rows × width). EXPLAIN also
/// checks the query's privileges (preparing it does not): a query on a table the role cannot
/// read fails here, at planning, in one line.
async fn estimated_bytes(
    database: &Database,
    client: &tokio_postgres::Client,
    select: &str,
    relation: &str,
) -> Result<u64> {
    // The simple protocol returns the plan as text (the extended one would need a json type).
    let messages = client
        .simple_query(&format!("EXPLAIN (FORMAT JSON) {select}"))
        .await
        .map_err(|e| database.error(&format!("reading {relation}"), &e))?;
    let plan = messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
        _ => None,
    });
    let estimate = plan
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|plan| {
            let top = plan.get(0)?.get("Plan")?.clone();
            let rows = top.get("Plan Rows")?.as_f64()?;
            let width = top.get("Plan Width")?.as_f64()?;
            Some((rows * width.max(1.0)) as u64)
        });
    Ok(estimate.unwrap_or(0))
}

/// Up to `n - 1` distinct cut points between the column's smallest and largest value, spread
/// evenly, computed by the database in the column's own type.
async fn value_bounds(
    client: &tokio_postgres::Client,
    from: &str,
    column: &str,
    ty: &Type,
    filter: Option<&str>,
    n: u64,
) -> std::result::Result<Vec<String>, tokio_postgres::Error> {
    let col = quote_ident(column);
    // The cut points lie between finite values: `infinity` end dates (history tables) and NaN
    // cannot be subtracted, and they fall into the first or last slice anyway (`< first cut`,
    // `>= last cut`).
    let finite = match *ty {
        Type::DATE | Type::TIMESTAMP | Type::TIMESTAMPTZ => Some(format!("isfinite({col})")),
        Type::FLOAT4 | Type::FLOAT8 => Some(format!(
            "{col} NOT IN ('NaN'::float8, 'Infinity'::float8, '-Infinity'::float8)"
        )),
        // (As text: `'Infinity'::numeric` is an error before PostgreSQL 14.)
        Type::NUMERIC => Some(format!(
            "{col}::text NOT IN ('NaN', 'Infinity', '-Infinity')"
        )),
        _ => None,
    };
    let row = client
        .query_one(
            &format!(
                "SELECT min({col})::text, max({col})::text FROM {from}{}",
                where_clause(filter, finite.as_deref())
            ),
            &[],
        )
        .await?;
    let (Some(lo), Some(hi)) = (
        row.get::<_, Option<String>>(0),
        row.get::<_, Option<String>>(1),
    ) else {
        return Ok(Vec::new());
    };
    if n <= 1 || lo == hi {
        return Ok(Vec::new());
    }
    let t = ty.name();
    let (lo, hi) = (quote_literal(&lo), quote_literal(&hi));
    let point = match *ty {
        Type::INT2 | Type::INT4 | Type::INT8 => {
            format!("floor({lo}::numeric + ({hi}::numeric - {lo}::numeric) * g / {n})::{t}")
        }
        Type::NUMERIC => format!("({lo}::numeric + ({hi}::numeric - {lo}::numeric) * g / {n})"),
        Type::FLOAT4 | Type::FLOAT8 => {
            format!("({lo}::float8 + ({hi}::float8 - {lo}::float8) * g / {n})::{t}")
        }
        Type::DATE => format!("({lo}::date + (({hi}::date - {lo}::date)::int8 * g / {n})::int)"),
        _ => format!("({lo}::{t} + ({hi}::{t} - {lo}::{t}) * g / {n})"),
    };
    let rows = client
        .query(
            &format!(
                "SELECT b::text FROM (SELECT DISTINCT {point} AS b FROM generate_series(1, {}) g) s \
                 WHERE s.b > {lo}::{t} ORDER BY s.b",
                n - 1
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
}
