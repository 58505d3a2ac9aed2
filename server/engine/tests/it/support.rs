//! Test support: the test kit's databases and entries under the names the
//! tests use.

pub use custos_testkit::both_backends;
pub use custos_testkit::db::{Backend, KEK, StaticKek, TestDb, config, open_ledger};
pub use custos_testkit::events::{entry as event, fill};
