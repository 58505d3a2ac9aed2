//! The Custos engine: everything but HTTP and UI.

pub mod ledger;
