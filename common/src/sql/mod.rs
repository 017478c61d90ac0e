//! The PostgreSQL source. Planning (`plan`) exports one snapshot for the whole job and cuts each
//! table into ctid page ranges (or a query into value ranges of a column); every task reads its
//! slice with binary COPY inside a transaction on that snapshot (`copy`), decoded straight into
//! Arrow (`decode`, `types`). Connections resolve credentials as libpq does (`connect`).

mod connect;
mod copy;
mod decode;
mod plan;
mod snapshot;
mod tls;
mod types;

pub use connect::{Database, is_sql_url, remember_password};
pub use copy::CopyRows;
pub use plan::{SqlPlan, SqlRequest, plan_sql};
pub use snapshot::Snapshot;
pub use types::{ColumnType, SqlColumn, UNCONSTRAINED_NUMERIC};

use serde::{Deserialize, Serialize};

/// One task's share of a table or query: a complete `SELECT`, and the snapshot it must see
/// (filled when the task is handed out: a job may have to take a new one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SqlSlice {
    /// The table (`public.users`) or `query`, and which part of it, for messages.
    pub relation: String,
    pub select: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// `"name"` with inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
