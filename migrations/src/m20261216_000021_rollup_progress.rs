//! Held counts written in chunks (issue 21).
//!
//! SQLite's writer wrote all the counts it held (a second's worth) in one
//! transaction under the writer's lock: 25-100 ms during which every commit
//! waited, the whole tail of single-event ingest at 1,000 events/s. It now
//! writes them in key order, about a millisecond's worth per transaction,
//! letting commits in between. `ledger_rollup_progress` says, in each
//! chunk's transaction, how far such a write got: the owner's counts of
//! the commits whose rows in `ledger_rollup_pending` end at or before
//! `through_seq` are in `audit_rollups` for every key up to and including
//! (`dimension`, `bucket`, `value`), in that order (the table's key order,
//! compared byte by byte). The last chunk deletes those rows and this one.
//! Whoever counts a stopped writer's rows from the ledger skips, for the
//! rows it covers, the keys it says are written; so an entry is still
//! counted exactly once, whichever chunk a crash follows. One row per
//! owner at most; PostgreSQL leaves the table empty (its commits' counts
//! wait in `audit_rollup_deltas`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn table(int: &str) -> String {
    format!(
        "CREATE TABLE ledger_rollup_progress (
            owner TEXT PRIMARY KEY,
            through_seq {int} NOT NULL,
            dimension TEXT NOT NULL,
            bucket {int} NOT NULL,
            value TEXT NOT NULL
        )"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let ddl = match manager.get_database_backend() {
            DbBackend::Sqlite => table("INTEGER"),
            DbBackend::Postgres => table("BIGINT"),
            other => return Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        };
        manager.get_connection().execute_unprepared(&ddl).await?;
        Ok(())
    }
}
