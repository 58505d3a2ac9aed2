//! Server-side context of the UI (compiled with `ssr` only).

use std::time::Instant;

use custos_engine::ledger::Ledger;
use leptos::prelude::ServerFnError;

use crate::models::SystemStatus;

/// What server functions may use; provided per request by the server.
#[derive(Clone, Debug)]
pub struct ServerContext {
    /// The ledger (and through it, the database).
    pub ledger: Ledger,
    /// When the server started.
    pub started: Instant,
}

/// The one mapping from an internal failure to what a browser sees: a stable
/// code, a sentence and an operation id. The cause is logged under that id
/// and never sent.
pub fn internal_error(code: &'static str, message: &str, cause: &dyn std::fmt::Display) -> ServerFnError {
    let operation_id = uuid::Uuid::now_v7().simple().to_string();
    tracing::error!(code, operation_id, error = %cause, "{message}");
    ServerFnError::new(format!("{code}: {message} (operation {operation_id})"))
}

impl ServerContext {
    /// Reads the status shown on the home page.
    pub async fn status(&self) -> Result<SystemStatus, ServerFnError> {
        let head = self.ledger.head().await.map_err(|e| internal_error("CU1001", "cannot read the ledger head", &e))?;
        let checkpoint = self
            .ledger
            .latest_checkpoint()
            .await
            .map_err(|e| internal_error("CU1002", "cannot read checkpoints", &e))?;
        let (_, current_key_id) = self.ledger.keys().data_key_ids();
        Ok(SystemStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            database: self.ledger.db().kind().as_str().to_owned(),
            origin: self.ledger.origin().to_owned(),
            ledger_entries: head.seq,
            checkpoint_tree_size: checkpoint.as_ref().map(|c| c.tree_size),
            checkpoint_signed_at: checkpoint.as_ref().and_then(|c| {
                chrono::DateTime::from_timestamp_micros(c.created_at_us)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }),
            current_key_id,
            uptime_seconds: self.started.elapsed().as_secs(),
        })
    }
}
