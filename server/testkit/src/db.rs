//! A fresh real database per test (a SQLite file, or a new database on the
//! PostgreSQL server named by CUSTOS_TEST_POSTGRES_URL), a fixed KEK, a
//! ledger on it, and `both_backends!`.

use std::sync::Arc;

use custos_engine::clock::{OsRandom, SystemClock};
use custos_engine::keys::{KekError, KekProvider};
use custos_engine::ledger::crypto::Kek;
use custos_engine::ledger::{Ledger, LedgerConfig, LedgerTasks};
use custos_engine::storage::{Database, DbKind, PoolOptions};
use sea_orm::ConnectionTrait;
use secrecy::SecretString;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A new database on the test PostgreSQL server.
    Postgres,
}

/// A fresh, migrated database that lives as long as the value.
#[derive(Debug)]
pub struct TestDb {
    /// The connection pool.
    pub db: Database,
    /// Its URL.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// The PostgreSQL admin URL, if this run has one. `make test` sets
/// CUSTOS_REQUIRE_POSTGRES=1 so that a missing server fails instead of skipping.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("CUSTOS_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("CUSTOS_REQUIRE_POSTGRES").is_err(),
                "CUSTOS_REQUIRE_POSTGRES is set but CUSTOS_TEST_POSTGRES_URL is not"
            );
            eprintln!("CUSTOS_TEST_POSTGRES_URL is not set: skipping the PostgreSQL variant (make test runs it)");
            None
        }
    }
}

/// A new, empty PostgreSQL database on the test server (None: no server
/// configured, and none required).
pub async fn fresh_postgres() -> Option<String> {
    let admin = postgres_admin_url()?;
    let name = format!("custos_t_{}", uuid::Uuid::now_v7().simple());
    Some(custos_engine::storage::create_postgres_database(&admin, &name).await.unwrap())
}

impl TestDb {
    /// A fresh database, or None for PostgreSQL when no server is configured.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        let (url, dir) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                (format!("sqlite://{}/custos.db", dir.path().display()), Some(dir))
            }
            Backend::Postgres => (fresh_postgres().await?, None),
        };
        let db = Self::connect(&url).await;
        db.migrate().await.unwrap();
        Some(TestDb { db, url, _dir: dir })
    }

    /// Another connection pool on the same database.
    pub async fn connect(url: &str) -> Database {
        Database::connect(&SecretString::from(url.to_owned()), &PoolOptions::default()).await.unwrap()
    }

    /// SQLite or PostgreSQL.
    pub fn kind(&self) -> DbKind {
        self.db.kind()
    }

    /// Runs SQL as an attacker with write access to the database would.
    pub async fn sql(&self, sql: &str) {
        self.db.conn().execute_unprepared(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Removes the append-only triggers, as someone with raw database access could.
    pub async fn drop_guards(&self) {
        match self.kind() {
            DbKind::Sqlite => {
                for t in [
                    "ledger_entries_no_update",
                    "ledger_entries_delete_purged_or_tombstoned",
                    "ledger_tombstones_no_update",
                    "ledger_tombstones_delete_purged",
                    "ledger_tombstones_need_record",
                    "checkpoints_no_update",
                    "checkpoints_no_delete",
                    "ledger_keys_no_update",
                    "ledger_keys_no_delete",
                ] {
                    self.sql(&format!("DROP TRIGGER {t}")).await;
                }
            }
            DbKind::Postgres => {
                self.sql("DROP TRIGGER ledger_entries_no_update ON ledger_entries").await;
                self.sql("DROP TRIGGER ledger_entries_guarded_delete ON ledger_entries").await;
                self.sql("DROP TRIGGER ledger_tombstones_no_update ON ledger_tombstones").await;
                self.sql("DROP TRIGGER ledger_tombstones_delete_purged ON ledger_tombstones").await;
                self.sql("DROP TRIGGER ledger_tombstones_need_record ON ledger_tombstones").await;
                self.sql("DROP TRIGGER checkpoints_no_change ON checkpoints").await;
                self.sql("DROP TRIGGER ledger_keys_no_change ON ledger_keys").await;
            }
        }
    }

    /// SQL for a byte-string literal on this backend.
    pub fn blob(&self, bytes: &[u8]) -> String {
        match self.kind() {
            DbKind::Sqlite => format!("X'{}'", hex::encode(bytes)),
            DbKind::Postgres => format!("'\\x{}'::bytea", hex::encode(bytes)),
        }
    }
}

/// A fixed KEK held in memory.
#[derive(Debug, Clone)]
pub struct StaticKek(pub [u8; 32]);

impl KekProvider for StaticKek {
    fn describe(&self) -> String {
        "test key".into()
    }
    fn load(&self) -> Result<Kek, KekError> {
        Ok(Kek::from_bytes(&self.0))
    }
}

/// The tests' KEK.
pub const KEK: StaticKek = StaticKek([0x42; 32]);

/// The tests' ledger configuration.
pub fn config() -> LedgerConfig {
    // Tests move manual clocks to any time: no limit on a clock ahead of
    // the database server's (the test of that limit sets its own). Tests
    // sign checkpoints back to back: no spacing (its test sets its own).
    LedgerConfig {
        origin: "custos.test/ledger".into(),
        max_clock_ahead: std::time::Duration::ZERO,
        checkpoint_spacing: std::time::Duration::ZERO,
        ..LedgerConfig::default()
    }
}

/// A ledger on `db` with the tests' KEK, the system clock and OS randomness.
pub async fn open_ledger(db: &Database) -> (Ledger, LedgerTasks) {
    Ledger::open(db.clone(), &KEK, config(), Arc::new(SystemClock), Arc::new(OsRandom)).await.unwrap()
}

/// Declares a test that runs against SQLite and against PostgreSQL (the
/// test crate needs tokio's `macros` and `rt-multi-thread`).
#[macro_export]
macro_rules! both_backends {
    ($(#[$m:meta])* async fn $name:ident($b:ident: Backend) $body:block) => {
        $(#[$m])*
        async fn $name($b: $crate::db::Backend) $body
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name($crate::db::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name($crate::db::Backend::Postgres).await }
        }
    };
}
