//! The job's one view of the database: a `REPEATABLE READ` transaction that exported its
//! snapshot (`pg_export_snapshot()`) and stays open while any task may still read. Every task
//! enters it with `SET TRANSACTION SNAPSHOT`, so rows that move during the export are seen
//! exactly once, and totals are those of one instant.

use super::connect::Database;
use crate::Result;
use tokio_postgres::Client;

pub struct Snapshot {
    id: String,
    client: Client,
    /// The database, as messages show it.
    shown: String,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snapshot {} of {}", self.id, self.shown)
    }
}

impl Snapshot {
    /// Open the transaction and export its snapshot.
    pub async fn export(database: &Database) -> Result<Self> {
        let client = database.connect().await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| database.error("starting a transaction", &e))?;
        let row = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| database.error("exporting a snapshot", &e))?;
        let id: String = row.get(0);
        tracing::info!(
            database = database.shown(),
            snapshot = id,
            "snapshot exported"
        );
        Ok(Self {
            id,
            client,
            shown: database.shown().to_string(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The exporting transaction: planning queries run in it, so they see what tasks will.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// False once the transaction is gone (database restart, connection cut): tasks can no
    /// longer enter the snapshot.
    pub fn is_alive(&self) -> bool {
        !self.client.is_closed()
    }

    /// Whether the transaction still answers within `patience`: a host that vanished without
    /// closing the connection (no FIN) is noticed too.
    pub async fn answers(&self, patience: std::time::Duration) -> bool {
        if !self.is_alive() {
            return false;
        }
        matches!(
            tokio::time::timeout(patience, self.client.simple_query("SELECT 1")).await,
            Ok(Ok(_))
        )
    }
}
