//! Errors of the ledger layers above the pure core.

use sea_orm::DbErr;

use crate::clock::RandomError;
use crate::keys::KekError;
use crate::storage::StorageError;

/// Why a ledger operation failed. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The KEK could not be loaded.
    #[error(transparent)]
    Kek(#[from] KekError),
    /// The KEK does not unwrap any stored key: it is not this database's KEK.
    #[error(
        "the key-encryption key from {0} does not match this database (no stored key unwraps with it); \
         refusing to start rather than write under a different key"
    )]
    WrongKek(String),
    /// One stored key fails authentication while others unwrap: tampering.
    #[error("stored key {key_id} ({purpose}) fails authentication under the KEK: the key table was altered")]
    KeyTampered {
        /// The key's id.
        key_id: u32,
        /// data or signing.
        purpose: String,
    },
    /// Entries exist but no keys do.
    #[error("the database holds ledger entries but no keys; refusing to create new keys for an existing ledger")]
    KeysMissing,
    /// An entry names a key that does not exist.
    #[error("entry seq {seq} names unknown key {key_id}")]
    UnknownKey {
        /// Entry position.
        seq: u64,
        /// The missing key.
        key_id: u32,
    },
    /// The sequencer has stopped (shutdown in progress).
    #[error("the ledger is shutting down and accepts no more events")]
    Closed,
    /// The batch holding this event could not be committed; nothing of it was stored.
    #[error("the ledger could not commit the batch; nothing of it was stored")]
    CommitFailed,
    /// The commit did not come within the configured time (the database
    /// down, hung or slow). The events may still be committed.
    #[error(
        "the ledger did not commit within {secs} s (the database is down, hung or slow); the events may still be \
         committed: retry with the same ids"
    )]
    TimedOut {
        /// The timeout.
        secs: f64,
    },
    /// This replica's clock runs ahead of the database server's by more
    /// than `ledger.max_clock_ahead_secs`: its commit times would hold every
    /// replica's back (times never go backwards), so it commits nothing.
    #[error(
        "this server's clock is {ahead_secs:.0} s ahead of the database server's (more than {limit_secs} s): it records \
         nothing until one of them is set right (NTP); nothing was stored. Other replicas go on recording"
    )]
    ClockAhead {
        /// How far ahead.
        ahead_secs: f64,
        /// The limit (`ledger.max_clock_ahead_secs`).
        limit_secs: u64,
    },
    /// Stored data is not in the shape the ledger wrote.
    #[error("ledger data is corrupt: {0}")]
    Corrupt(String),
    /// Randomness failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The request was invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Database failure.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Database failure on a direct SQLite connection.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A task of the ledger's own stopped unexpectedly (a bug, or a panic
    /// in it): nothing is concluded from the work it did not finish.
    #[error("internal error: {0}")]
    Internal(String),
    /// I/O failure (archives).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File concerned.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl From<DbErr> for LedgerError {
    fn from(e: DbErr) -> Self {
        LedgerError::Storage(StorageError::Db(e))
    }
}
