//! Retention, legal hold, archival and backup (issue 18).
//!
//! Deletion that keeps the proofs: an expired entry is replaced by a
//! **tombstone** (`ledger_tombstones`: its seq, leaf hash and chain value),
//! so the hash chain and every Merkle proof of the entries that stay still
//! verify. Tombstones are written under a **retention record**
//! (`ledger_retentions`): the set of seqs removed (its digest), the archive
//! holding them, as a note signed with the ledger's key, anchored on a
//! `ledger.retention` entry the server wrote. The database enforces:
//! - a retention record needs its anchor (written by the server) and its
//!   signed note; once written only `active` may change, from 1 to 0;
//!   records are never deleted;
//! - a tombstone needs an *active* record covering its seq, and must carry
//!   the leaf hash and chain value of the entry it replaces (which must
//!   not be an anchor); tombstones are never changed or deleted;
//! - an entry may be deleted by a purge (as before) or when a tombstone of
//!   an active record replaces it.
//!
//! `retention_runs`: the history of runs (scheduled, on demand, erasures)
//! with their progress. `archives`: the catalogue of archive bundles
//! (where, range, size, digest, last verified). `backups`: the catalogue
//! of backups. These three are bookkeeping: what they describe is in the
//! ledger (anchors, run records) and in the files themselves.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn tables(int: &str, blob: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE ledger_retentions (
            anchor_seq {int} PRIMARY KEY NOT NULL,
            from_seq {int} NOT NULL,
            through_seq {int} NOT NULL,
            removed {int} NOT NULL,
            tombstones_sha256 {blob} NOT NULL,
            archive_sha256 {blob} NOT NULL,
            archive_name TEXT NOT NULL,
            reason TEXT NOT NULL,
            run_id TEXT NOT NULL,
            active {int} NOT NULL,
            created_at {int} NOT NULL,
            note TEXT NOT NULL,
            CHECK (from_seq >= 1 AND through_seq >= from_seq AND through_seq < anchor_seq AND removed >= 1)
        )"
        ),
        format!(
            "CREATE TABLE ledger_tombstones (
            seq {int} PRIMARY KEY NOT NULL,
            anchor_seq {int} NOT NULL,
            leaf_hash {blob} NOT NULL,
            chain_hash {blob} NOT NULL
        )"
        ),
        "CREATE INDEX ledger_tombstones_anchor ON ledger_tombstones (anchor_seq, seq)".into(),
        format!(
            "CREATE TABLE retention_runs (
            id TEXT PRIMARY KEY NOT NULL,
            kind TEXT NOT NULL,
            trigger TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            started_at {int} NOT NULL,
            finished_at {int},
            state TEXT NOT NULL,
            scanned {int} NOT NULL DEFAULT 0,
            total {int} NOT NULL DEFAULT 0,
            removed {int} NOT NULL DEFAULT 0,
            held {int} NOT NULL DEFAULT 0,
            archives {int} NOT NULL DEFAULT 0,
            detail TEXT,
            error TEXT
        )"
        ),
        "CREATE INDEX retention_runs_started ON retention_runs (started_at)".into(),
        format!(
            "CREATE TABLE archives (
            name TEXT PRIMARY KEY NOT NULL,
            location TEXT NOT NULL,
            uri TEXT NOT NULL,
            anchor_seq {int},
            from_seq {int} NOT NULL,
            through_seq {int} NOT NULL,
            entries {int} NOT NULL,
            bytes {int} NOT NULL,
            sha256 TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_at {int} NOT NULL,
            verified_at {int},
            verified_ok {int},
            verified_detail TEXT
        )"
        ),
        format!(
            "CREATE TABLE backups (
            name TEXT PRIMARY KEY NOT NULL,
            location TEXT NOT NULL,
            uri TEXT NOT NULL,
            trigger TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            started_at {int} NOT NULL,
            finished_at {int},
            state TEXT NOT NULL,
            bytes {int} NOT NULL DEFAULT 0,
            sha256 TEXT,
            head_seq {int},
            checkpoint_size {int},
            error TEXT,
            removed_at {int}
        )"
        ),
    ]
}

const SQLITE_GUARDS: &[&str] = &[
    r#"CREATE TRIGGER ledger_retentions_need_signed_anchor BEFORE INSERT ON ledger_retentions
       WHEN NOT EXISTS (SELECT 1 FROM ledger_entries e
                        WHERE e.seq = NEW.anchor_seq AND e.action = 'ledger.retention'
                          AND e.actor_id = 'custos' AND e.actor_kind = 'system'
                          AND e.source_app = 'custos' AND e.channel = 'system')
         OR NEW.active <> 1 OR length(NEW.note) = 0
       BEGIN SELECT RAISE(ABORT, 'custos: a retention record needs its signed note and an anchor written by the server'); END"#,
    r#"CREATE TRIGGER ledger_retentions_only_close BEFORE UPDATE ON ledger_retentions
       WHEN NOT (OLD.active = 1 AND NEW.active = 0
                 AND NEW.anchor_seq = OLD.anchor_seq AND NEW.from_seq = OLD.from_seq
                 AND NEW.through_seq = OLD.through_seq AND NEW.removed = OLD.removed
                 AND NEW.tombstones_sha256 = OLD.tombstones_sha256 AND NEW.archive_sha256 = OLD.archive_sha256
                 AND NEW.archive_name = OLD.archive_name AND NEW.reason = OLD.reason AND NEW.run_id = OLD.run_id
                 AND NEW.created_at = OLD.created_at AND NEW.note = OLD.note)
       BEGIN SELECT RAISE(ABORT, 'custos: a retention record can only be closed'); END"#,
    r#"CREATE TRIGGER ledger_retentions_no_delete BEFORE DELETE ON ledger_retentions
       BEGIN SELECT RAISE(ABORT, 'custos: retention records are append-only (DELETE refused)'); END"#,
    r#"CREATE TRIGGER ledger_tombstones_need_record BEFORE INSERT ON ledger_tombstones
       WHEN NOT EXISTS (SELECT 1 FROM ledger_retentions r
                        WHERE r.anchor_seq = NEW.anchor_seq AND r.active = 1
                          AND NEW.seq BETWEEN r.from_seq AND r.through_seq)
         OR NOT EXISTS (SELECT 1 FROM ledger_entries e
                        WHERE e.seq = NEW.seq AND e.leaf_hash = NEW.leaf_hash AND e.chain_hash = NEW.chain_hash
                          AND e.action NOT IN ('ledger.purge', 'ledger.retention'))
       BEGIN SELECT RAISE(ABORT, 'custos: a tombstone needs an active retention record and must keep its entry''s hashes'); END"#,
    r#"CREATE TRIGGER ledger_tombstones_no_update BEFORE UPDATE ON ledger_tombstones
       BEGIN SELECT RAISE(ABORT, 'custos: tombstones are append-only (UPDATE refused)'); END"#,
    r#"CREATE TRIGGER ledger_tombstones_no_delete BEFORE DELETE ON ledger_tombstones
       BEGIN SELECT RAISE(ABORT, 'custos: tombstones are append-only (DELETE refused)'); END"#,
    "DROP TRIGGER ledger_entries_guarded_delete",
    r#"CREATE TRIGGER ledger_entries_delete_purged_or_tombstoned BEFORE DELETE ON ledger_entries
       WHEN NOT EXISTS (SELECT 1 FROM ledger_purges p
                        WHERE p.active = 1 AND OLD.seq BETWEEN p.from_seq AND p.through_seq)
        AND NOT EXISTS (SELECT 1 FROM ledger_tombstones t JOIN ledger_retentions r ON r.anchor_seq = t.anchor_seq
                        WHERE t.seq = OLD.seq AND r.active = 1)
       BEGIN SELECT RAISE(ABORT, 'custos: ledger entries are deleted only by the retention purge path or replaced by tombstones'); END"#,
];

const POSTGRES_GUARDS: &[&str] = &[
    r#"CREATE FUNCTION custos_guard_retention_insert() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.active <> 1 OR length(NEW.note) = 0
            OR NOT EXISTS (SELECT 1 FROM ledger_entries e
                        WHERE e.seq = NEW.anchor_seq AND e.action = 'ledger.retention'
                          AND e.actor_id = 'custos' AND e.actor_kind = 'system'
                          AND e.source_app = 'custos' AND e.channel = 'system') THEN
           RAISE EXCEPTION 'custos: a retention record needs its signed note and an anchor written by the server'
             USING ERRCODE = 'P0001';
         END IF;
         RETURN NEW;
       END $$"#,
    r#"CREATE FUNCTION custos_guard_retention_update() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT (OLD.active = 1 AND NEW.active = 0
                 AND NEW.anchor_seq = OLD.anchor_seq AND NEW.from_seq = OLD.from_seq
                 AND NEW.through_seq = OLD.through_seq AND NEW.removed = OLD.removed
                 AND NEW.tombstones_sha256 = OLD.tombstones_sha256 AND NEW.archive_sha256 = OLD.archive_sha256
                 AND NEW.archive_name = OLD.archive_name AND NEW.reason = OLD.reason AND NEW.run_id = OLD.run_id
                 AND NEW.created_at = OLD.created_at AND NEW.note = OLD.note) THEN
           RAISE EXCEPTION 'custos: a retention record can only be closed' USING ERRCODE = 'P0001';
         END IF;
         RETURN NEW;
       END $$"#,
    r#"CREATE FUNCTION custos_guard_tombstone_insert() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT EXISTS (SELECT 1 FROM ledger_retentions r
                        WHERE r.anchor_seq = NEW.anchor_seq AND r.active = 1
                          AND NEW.seq BETWEEN r.from_seq AND r.through_seq)
            OR NOT EXISTS (SELECT 1 FROM ledger_entries e
                        WHERE e.seq = NEW.seq AND e.leaf_hash = NEW.leaf_hash AND e.chain_hash = NEW.chain_hash
                          AND e.action NOT IN ('ledger.purge', 'ledger.retention')) THEN
           RAISE EXCEPTION 'custos: a tombstone needs an active retention record and must keep its entry''s hashes'
             USING ERRCODE = 'P0001';
         END IF;
         RETURN NEW;
       END $$"#,
    r#"CREATE OR REPLACE FUNCTION custos_guard_ledger_delete() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT EXISTS (SELECT 1 FROM ledger_purges p
                        WHERE p.active = 1 AND OLD.seq BETWEEN p.from_seq AND p.through_seq)
            AND NOT EXISTS (SELECT 1 FROM ledger_tombstones t JOIN ledger_retentions r ON r.anchor_seq = t.anchor_seq
                        WHERE t.seq = OLD.seq AND r.active = 1) THEN
           RAISE EXCEPTION 'custos: ledger entries are deleted only by the retention purge path or replaced by tombstones'
             USING ERRCODE = 'P0001';
         END IF;
         RETURN OLD;
       END $$"#,
    "CREATE TRIGGER ledger_retentions_need_anchor BEFORE INSERT ON ledger_retentions FOR EACH ROW EXECUTE FUNCTION custos_guard_retention_insert()",
    "CREATE TRIGGER ledger_retentions_only_close BEFORE UPDATE ON ledger_retentions FOR EACH ROW EXECUTE FUNCTION custos_guard_retention_update()",
    "CREATE TRIGGER ledger_retentions_no_delete BEFORE DELETE ON ledger_retentions FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER ledger_retentions_no_truncate BEFORE TRUNCATE ON ledger_retentions FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER ledger_tombstones_need_record BEFORE INSERT ON ledger_tombstones FOR EACH ROW EXECUTE FUNCTION custos_guard_tombstone_insert()",
    "CREATE TRIGGER ledger_tombstones_no_change BEFORE UPDATE OR DELETE ON ledger_tombstones FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER ledger_tombstones_no_truncate BEFORE TRUNCATE ON ledger_tombstones FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (ddl, guards) = match manager.get_database_backend() {
            DbBackend::Sqlite => (tables("INTEGER", "BLOB"), SQLITE_GUARDS),
            DbBackend::Postgres => (tables("BIGINT", "BYTEA"), POSTGRES_GUARDS),
            other => return Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        };
        let conn = manager.get_connection();
        for sql in &ddl {
            conn.execute_unprepared(sql).await?;
        }
        crate::run_all(manager, guards).await
    }
}
