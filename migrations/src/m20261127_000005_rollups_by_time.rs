//! Rollups keyed by time first, `(dimension, bucket, value)`, so that a
//! dashboard reads a period as one range of the key whatever the number of
//! values. The dashboards' new dimensions (actions by outcome, resources,
//! latency) also get daily twins (`<dimension>:day`, bucket = the day's
//! first minute); they start with the events recorded from now on (the
//! durations of older events are only inside their sealed payloads).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: &[&str] = &[
    "ALTER TABLE audit_rollups RENAME TO audit_rollups_by_value",
    r#"CREATE TABLE audit_rollups (
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (dimension, bucket, value)
    ) WITHOUT ROWID"#,
    "INSERT INTO audit_rollups (dimension, value, bucket, count) \
     SELECT dimension, value, bucket, count FROM audit_rollups_by_value",
    "DROP TABLE audit_rollups_by_value",
];

const POSTGRES: &[&str] = &[
    "ALTER TABLE audit_rollups RENAME TO audit_rollups_by_value",
    "ALTER TABLE audit_rollups_by_value RENAME CONSTRAINT audit_rollups_pkey TO audit_rollups_by_value_pkey",
    r#"CREATE TABLE audit_rollups (
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (dimension, bucket, value)
    )"#,
    "INSERT INTO audit_rollups (dimension, value, bucket, count) \
     SELECT dimension, value, bucket, count FROM audit_rollups_by_value",
    "DROP TABLE audit_rollups_by_value",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        match manager.get_database_backend() {
            DbBackend::Sqlite => crate::run_all(manager, SQLITE).await,
            DbBackend::Postgres => crate::run_all(manager, POSTGRES).await,
            other => Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        }
    }
}
