//! Events in and out: the indexes that search filters use, the rollups that
//! statistics read (maintained in the commit's own transaction), and the
//! masking policy as an append-only list of versions (its history).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Filter indexes, both backends. Every filter column rides in one index
/// led by `occurred_at`: a time-bounded search reads one index range and
/// filters inside it, touching rows only for the page it returns; inserts
/// land at the index's right edge (events arrive roughly in time order),
/// so the index costs ingest little. Searches without a time bound walk the
/// table newest first (`seq`), which finds common values at once and rare
/// ones after a scan; a per-column index each would cut ingest by a third.
/// (Migration 019 rebuilds it as `(occurred_at, seq, …)`, the order of the
/// API's event-time pages, which read it with or without a time bound.)
const INDEXES: &[&str] = &[
    "DROP INDEX ledger_entries_occurred_at",
    "CREATE INDEX ledger_entries_time_filters ON ledger_entries \
     (occurred_at, action, outcome, category, tenant, actor_id, resource_type, seq)",
];

const SQLITE: &[&str] = &[
    // Counts per dimension value and bucket (minutes since the epoch of
    // `occurred_at`: each minute for `total`, whose value is '', and whole
    // hours for the ranked dimensions).
    r#"CREATE TABLE audit_rollups (
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (dimension, value, bucket)
    ) WITHOUT ROWID"#,
    r#"CREATE TABLE masking_policy_versions (
        version INTEGER PRIMARY KEY NOT NULL CHECK (version >= 1),
        rules TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT ''
    )"#,
    r#"CREATE TRIGGER masking_policy_versions_no_update BEFORE UPDATE ON masking_policy_versions
       BEGIN SELECT RAISE(ABORT, 'masking_policy_versions is append-only'); END"#,
    r#"CREATE TRIGGER masking_policy_versions_no_delete BEFORE DELETE ON masking_policy_versions
       BEGIN SELECT RAISE(ABORT, 'masking_policy_versions is append-only'); END"#,
];

const POSTGRES: &[&str] = &[
    r#"CREATE TABLE audit_rollups (
        dimension TEXT NOT NULL,
        value TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (dimension, value, bucket)
    )"#,
    r#"CREATE TABLE masking_policy_versions (
        version BIGINT PRIMARY KEY NOT NULL CHECK (version >= 1),
        rules TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT ''
    )"#,
    "CREATE TRIGGER masking_policy_versions_no_change BEFORE UPDATE OR DELETE ON masking_policy_versions \
     FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER masking_policy_versions_no_truncate BEFORE TRUNCATE ON masking_policy_versions \
     FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_all(manager, INDEXES).await?;
        match manager.get_database_backend() {
            DbBackend::Sqlite => crate::run_all(manager, SQLITE).await,
            DbBackend::Postgres => crate::run_all(manager, POSTGRES).await,
            other => Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        }
    }
}
