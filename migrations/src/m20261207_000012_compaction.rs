//! Compaction of removed ranges (issue 18).
//!
//! Once a prefix of the ledger holds only tombstones and the anchors of
//! removals, a purge may take it whole: archived (the anchors as sealed,
//! the tombstones as their hashes), then deleted under the purge's active
//! record, tombstones included. Until now tombstones could never be
//! deleted; from this migration on a tombstone may be deleted only while
//! an active purge record covers its seq (as entries are). Tombstones are
//! still never changed.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: &[&str] = &[
    "DROP TRIGGER ledger_tombstones_no_delete",
    r#"CREATE TRIGGER ledger_tombstones_delete_purged BEFORE DELETE ON ledger_tombstones
       WHEN NOT EXISTS (SELECT 1 FROM ledger_purges p
                        WHERE p.active = 1 AND OLD.seq BETWEEN p.from_seq AND p.through_seq)
       BEGIN SELECT RAISE(ABORT, 'custos: tombstones are deleted only by a purge of their range'); END"#,
];

const POSTGRES: &[&str] = &[
    "DROP TRIGGER ledger_tombstones_no_change ON ledger_tombstones",
    "CREATE TRIGGER ledger_tombstones_no_update BEFORE UPDATE ON ledger_tombstones FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    r#"CREATE FUNCTION custos_guard_tombstone_delete() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT EXISTS (SELECT 1 FROM ledger_purges p
                        WHERE p.active = 1 AND OLD.seq BETWEEN p.from_seq AND p.through_seq) THEN
           RAISE EXCEPTION 'custos: tombstones are deleted only by a purge of their range' USING ERRCODE = 'P0001';
         END IF;
         RETURN OLD;
       END $$"#,
    "CREATE TRIGGER ledger_tombstones_delete_purged BEFORE DELETE ON ledger_tombstones FOR EACH ROW EXECUTE FUNCTION custos_guard_tombstone_delete()",
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
