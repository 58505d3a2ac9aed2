//! The Custos engine: everything but HTTP and UI.

pub mod alerts;
pub mod backup;
pub mod clock;
pub mod events;
pub mod forward;
pub mod identity;
pub mod jobs;
pub mod keys;
pub mod lease;
pub mod ledger;
pub mod notify;
pub mod objstore;
pub mod policies;
pub mod reports;
pub mod retention;
pub mod storage;
pub mod time;
