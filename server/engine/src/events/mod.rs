//! Audit events: validation, masking, ingest, search, statistics. The event's
//! shape itself is shared with the UI (`custos-model`).

pub use custos_model as model;

pub mod compliance;
pub mod dashboards;
pub mod export;
pub mod mask;
pub mod own;
pub mod saved;
pub mod search;
pub mod service;
pub mod validate;
pub mod verification;

pub use own::{OwnAction, OwnEvent, Requester};
pub use search::SearchFilter;
pub use service::{Events, EventsError, Submitter};
