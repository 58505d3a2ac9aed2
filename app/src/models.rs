//! Plain serde models shared by the server and the browser.

use serde::{Deserialize, Serialize};

/// What the home page shows about the running server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// Custos version.
    pub version: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// The ledger's origin (log identity).
    pub origin: String,
    /// Number of entries ever committed (the head seq).
    pub ledger_entries: u64,
    /// Tree size of the latest signed checkpoint.
    pub checkpoint_tree_size: Option<u64>,
    /// When that checkpoint was signed (RFC 3339, UTC).
    pub checkpoint_signed_at: Option<String>,
    /// Id of the data key sealing new events.
    pub current_key_id: u32,
    /// Seconds since the server started.
    pub uptime_seconds: u64,
}
