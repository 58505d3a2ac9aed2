//! Rollups held in memory (issue 21).
//!
//! On SQLite the sequencer no longer writes the dashboards' counts
//! (`audit_rollups`) in every commit: it adds them up in memory and writes
//! them about once a second, in one transaction (since migration 21, in
//! chunks: see `ledger_rollup_progress`). `ledger_rollup_pending`
//! says, in the same transaction as each commit, which entries are
//! committed but not yet counted: one row per commit whose counts are
//! held, `from_seq` to
//! `through_seq`, under the writing process's `owner` id. A write of the
//! counts deletes its owner's rows in the same transaction, so that an
//! entry is counted exactly when no row covers it. Rows left by a process
//! that stopped without writing (a crash) are counted from the ledger by
//! the next writer to start, or by a running one within 5 s. PostgreSQL replicas leave this table
//! empty (they wrote their counts in each commit; since migration 20, as one row of
//! `audit_rollup_deltas`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn tables(int: &str) -> Vec<String> {
    vec![format!(
        "CREATE TABLE ledger_rollup_pending (
            owner TEXT NOT NULL,
            from_seq {int} NOT NULL,
            through_seq {int} NOT NULL,
            PRIMARY KEY (owner, from_seq)
        )"
    )]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let ddl = match manager.get_database_backend() {
            DbBackend::Sqlite => tables("INTEGER"),
            DbBackend::Postgres => tables("BIGINT"),
            other => return Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        };
        let conn = manager.get_connection();
        for sql in &ddl {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
