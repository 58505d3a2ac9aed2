//! Jobs visible from every replica (issue 20).
//!
//! `jobs`: one row per background job (`kind`: `export`, `verification`),
//! written by the replica that runs it: what it was asked (`info`), its
//! progress (updated every couple of seconds with `heartbeat_at`), and its
//! outcome once it ends. Any replica answers a job's status from this row;
//! a running job whose row has not been updated for a while is reported
//! failed (its replica stopped). `cancel` asks the running replica to stop
//! it. `file_uri` is where a finished export's file is kept in the shared
//! object store (for 24 hours); `note` an export's signed manifest (rows of
//! kind `export-streamed` hold the manifests of streamed exports, which
//! have no job). Times are the database server's clock (µs). Jobs are not
//! records (every export and verification is in the ledger): rows without
//! a manifest are deleted after 30 days; manifests are kept, as their
//! files were before.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn tables(int: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE jobs (
            id TEXT PRIMARY KEY NOT NULL,
            kind TEXT NOT NULL,
            owner TEXT NOT NULL,
            replica TEXT NOT NULL,
            info TEXT NOT NULL,
            progress TEXT NOT NULL,
            outcome TEXT,
            cancel {int} NOT NULL DEFAULT 0,
            started_at {int} NOT NULL,
            heartbeat_at {int} NOT NULL,
            finished_at {int},
            file_uri TEXT,
            note TEXT
        )"
        ),
        // The sweeps: rows past their time, store copies past 24 hours.
        "CREATE INDEX jobs_to_sweep ON jobs (heartbeat_at) WHERE note IS NULL".into(),
        "CREATE INDEX jobs_with_files ON jobs (finished_at) WHERE file_uri IS NOT NULL".into(),
    ]
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
