//! Sign-in throttles shared by replicas (issue 20).
//!
//! `throttle_hits`: one row per counted sign-in attempt (a failure, or a
//! slot taken before a password is checked) per throttle (`scope`: the
//! client address, the typed name, the unknown name) and key, at its time.
//! A throttle refuses a key once it has its limit of rows within its
//! window, whichever replica counted them. Keys are keyed pseudonyms.
//! Rows older than the window are deleted when the key is next counted and
//! by the identity service's sweep every 10 minutes; they are counters,
//! not records (each refused or failed sign-in is in the ledger), so on
//! PostgreSQL the table is UNLOGGED (no WAL; emptied after a crash). Used
//! on PostgreSQL, where several replicas share the database; a SQLite
//! database has one process, which counts in memory.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn tables(table: &str, id: &str, int: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE {table} throttle_hits (
            id {id},
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            at_us {int} NOT NULL
        )"
        ),
        "CREATE INDEX throttle_hits_by_key ON throttle_hits (scope, key, at_us)".into(),
        "CREATE INDEX throttle_hits_by_time ON throttle_hits (at_us)".into(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let ddl = match manager.get_database_backend() {
            DbBackend::Sqlite => tables("TABLE", "INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
            DbBackend::Postgres => tables("UNLOGGED TABLE", "BIGSERIAL PRIMARY KEY", "BIGINT"),
            other => return Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        };
        let conn = manager.get_connection();
        for sql in &ddl {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
