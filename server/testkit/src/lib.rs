//! The test kit: everything that makes data or databases for tests, benches
//! and the CLI's `demo` and `bench` commands, in one place.
//!
//! - [`demo`]: the realistic data set (applications, people, services;
//!   sign-ins, admin and policy changes, MCP, tools, notifications…),
//!   deterministic per seed;
//! - [`events`]: ledger entries for the ledger's own tests and benchmarks;
//! - [`db`]: a fresh, migrated database per test (a SQLite file, or a new
//!   database on the PostgreSQL server of `CUSTOS_TEST_POSTGRES_URL`), a
//!   fixed KEK, and `both_backends!`;
//! - [`fuzz`]: the fuzz targets' bodies (run by `cargo test` on generated
//!   inputs, and by `cargo fuzz` in `fuzz/`);
//! - [`smtp`], [`s3`]: real servers tests talk to (an SMTP sink, moto's
//!   S3 API);
//! - [`Rng`]: the one seeded generator (fastrand's).

pub mod db;
pub mod demo;
pub mod events;
#[doc(hidden)]
pub mod fuzz;
pub mod s3;
pub mod smtp;

pub use fastrand::Rng;

/// A file of this repository (`rel` from its root, e.g.
/// `scripts/smtp-sink.py`), found from the directory of the package under
/// test (cargo sets `CARGO_MANIFEST_DIR` when it runs a test), not from
/// where this crate was compiled: a shared target directory may hold this
/// crate built from another checkout (a CI clone since removed).
pub fn repo_file(rel: &str) -> std::path::PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let root = start
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .unwrap_or_else(|| panic!("no workspace (Cargo.lock) above {}", start.display()));
    let file = root.join(rel);
    assert!(file.exists(), "{} not found", file.display());
    file
}

/// A generator for `seed`: the same values for the same seed, every run.
pub fn rng(seed: u64) -> Rng {
    Rng::with_seed(seed)
}
