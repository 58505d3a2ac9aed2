//! Events in and out: the indexes that search filters use, the rollups that
//! statistics read (maintained in the commit's own transaction), and the
//! masking policy as an append-only list of versions (its history).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Filter indexes, both backends. Each ends in `seq`, so that a filtered
/// page is an index range read in keyset order.
const INDEXES: &[&str] = &[
    "CREATE INDEX ledger_entries_action ON ledger_entries (action, seq)",
    "CREATE INDEX ledger_entries_actor ON ledger_entries (actor_id, seq)",
    "CREATE INDEX ledger_entries_category ON ledger_entries (category, seq)",
    "CREATE INDEX ledger_entries_outcome ON ledger_entries (outcome, seq)",
    "CREATE INDEX ledger_entries_resource ON ledger_entries (resource_type, resource_id, seq)",
    "CREATE INDEX ledger_entries_tenant ON ledger_entries (tenant, seq)",
];

const SQLITE: &[&str] = &[
    // Counts per minute (`bucket` = minutes since the epoch of `occurred_at`)
    // per dimension value; dimension `total` has the value ''.
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
