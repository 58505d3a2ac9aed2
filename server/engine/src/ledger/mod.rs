//! The ledger: sealed, hash-chained, Merkle-checkpointed, append-only.
//!
//! `types`, `encoding`, `crypto`, `merkle` and `note` are the pure core: no
//! I/O, no clock, no randomness (callers pass IVs and keys in). The key ring,
//! the SQL store, the sequencer (`service`) and verification are layers above.

pub mod crypto;
pub mod encoding;
pub mod error;
pub mod keyring;
pub mod merkle;
pub mod note;
pub mod pg_direct;
pub mod purge;
pub mod purge_record;
pub mod raw_page;
pub mod rollup;
pub mod rollup_buffer;
pub mod service;
pub mod sqlite_direct;
pub mod store;
pub mod tombstone;
pub mod types;
pub mod verify;

pub use error::LedgerError;
pub(crate) use service::Synced;
pub use service::{Ledger, LedgerConfig, LedgerTasks, NewEntry, Receipt};
pub use verify::{EntryVerification, InclusionCheck};
