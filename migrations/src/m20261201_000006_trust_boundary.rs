//! The trust boundary (issue 13):
//! - `users.session_epoch`: bumped when a user's credentials or roles
//!   change; sessions started under an older epoch have ended.
//! - `ledger_purges.note`: the purge record as a note signed with the
//!   ledger's key (anchor, range, chain value, frontier, archive digest);
//!   `custos verify` refuses a purge without a valid one.
//! - a purge may only be anchored on an entry the server wrote itself
//!   (action `ledger.purge` by actor `custos`, kind `system`, application
//!   `custos`, channel `system`: values ingest refuses from clients), and
//!   must carry its signed note; once written, nothing of it but `active`
//!   (1 -> 0) may change.
//!
//! (SQLite: the replaced triggers get new names; sqlx prepares a statement
//! against the schema it saw before the DROP in the same migration.)

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: &[&str] = &[
    "ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE ledger_purges ADD COLUMN note TEXT",
    "DROP TRIGGER ledger_purges_need_anchor",
    r#"CREATE TRIGGER ledger_purges_need_signed_anchor BEFORE INSERT ON ledger_purges
       WHEN NOT EXISTS (SELECT 1 FROM ledger_entries e
                        WHERE e.seq = NEW.anchor_seq AND e.action = 'ledger.purge'
                          AND e.actor_id = 'custos' AND e.actor_kind = 'system'
                          AND e.source_app = 'custos' AND e.channel = 'system')
         OR NEW.active <> 1 OR NEW.note IS NULL OR length(NEW.note) = 0
       BEGIN SELECT RAISE(ABORT, 'custos: a purge needs its signed record and an anchor written by the server'); END"#,
    "DROP TRIGGER ledger_purges_only_close",
    r#"CREATE TRIGGER ledger_purges_only_close_signed BEFORE UPDATE ON ledger_purges
       WHEN NOT (OLD.active = 1 AND NEW.active = 0
                 AND NEW.anchor_seq = OLD.anchor_seq AND NEW.from_seq = OLD.from_seq
                 AND NEW.through_seq = OLD.through_seq AND NEW.chain_hash = OLD.chain_hash
                 AND NEW.frontier = OLD.frontier AND NEW.archive_sha256 = OLD.archive_sha256
                 AND NEW.archive_name = OLD.archive_name AND NEW.created_at = OLD.created_at
                 AND NEW.note IS OLD.note)
       BEGIN SELECT RAISE(ABORT, 'custos: a purge record can only be closed'); END"#,
];

const POSTGRES: &[&str] = &[
    "ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE ledger_purges ADD COLUMN note TEXT",
    r#"CREATE OR REPLACE FUNCTION custos_guard_purge_insert() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.active <> 1 OR NEW.note IS NULL OR length(NEW.note) = 0
            OR NOT EXISTS (SELECT 1 FROM ledger_entries e
                        WHERE e.seq = NEW.anchor_seq AND e.action = 'ledger.purge'
                          AND e.actor_id = 'custos' AND e.actor_kind = 'system'
                          AND e.source_app = 'custos' AND e.channel = 'system') THEN
           RAISE EXCEPTION 'custos: a purge needs its signed record and an anchor written by the server'
             USING ERRCODE = 'P0001';
         END IF;
         RETURN NEW;
       END $$"#,
    r#"CREATE OR REPLACE FUNCTION custos_guard_purge_update() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT (OLD.active = 1 AND NEW.active = 0
                 AND NEW.anchor_seq = OLD.anchor_seq AND NEW.from_seq = OLD.from_seq
                 AND NEW.through_seq = OLD.through_seq AND NEW.chain_hash = OLD.chain_hash
                 AND NEW.frontier = OLD.frontier AND NEW.archive_sha256 = OLD.archive_sha256
                 AND NEW.archive_name = OLD.archive_name AND NEW.created_at = OLD.created_at
                 AND NEW.note IS NOT DISTINCT FROM OLD.note) THEN
           RAISE EXCEPTION 'custos: a purge record can only be closed' USING ERRCODE = 'P0001';
         END IF;
         RETURN NEW;
       END $$"#,
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
