//! The ledger: sealed, hash-chained, Merkle-checkpointed, append-only.
//!
//! `types`, `encoding`, `crypto`, `merkle` and `note` are the pure core: no
//! I/O, no clock, no randomness (callers pass IVs and keys in). Storage, the
//! sequencer, checkpointing and verification are layers above.

pub mod crypto;
pub mod encoding;
pub mod merkle;
pub mod note;
pub mod types;
