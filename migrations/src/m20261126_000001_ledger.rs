//! The ledger: sealed entries, the chain head, stored Merkle nodes, signed
//! checkpoints, wrapped keys and purge anchors.
//!
//! Append-only is enforced here, by the database (docs/ARCHITECTURE.md §3, invariant 2):
//! - `ledger_entries`, `merkle_nodes`, `checkpoints` and `ledger_keys` refuse
//!   every UPDATE; `checkpoints` and `ledger_keys` refuse every DELETE.
//! - a DELETE of ledger entries or Merkle nodes is refused unless an *active*
//!   row of `ledger_purges` covers it. Such a row can only be inserted when its
//!   anchor (an entry with action `ledger.purge`) is already in the ledger, and
//!   afterwards only its `active` flag may change, from 1 to 0.
//! - PostgreSQL also refuses TRUNCATE of these tables.
//!
//! Times are microseconds since the Unix epoch (UTC) in BIGINT columns: exact,
//! portable, cheap to compare, and the form the canonical encoding hashes.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SQLITE: &[&str] = &[
    r#"CREATE TABLE ledger_meta (
        name TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    )"#,
    r#"CREATE TABLE ledger_entries (
        seq INTEGER PRIMARY KEY NOT NULL CHECK (seq >= 1),
        event_id BLOB NOT NULL,
        occurred_at INTEGER NOT NULL,
        recorded_at INTEGER NOT NULL,
        category TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        severity TEXT NOT NULL,
        actor_id TEXT,
        actor_kind TEXT,
        resource_type TEXT,
        resource_id TEXT,
        tenant TEXT,
        channel TEXT,
        source_app TEXT,
        key_id INTEGER NOT NULL,
        iv BLOB NOT NULL,
        ciphertext BLOB NOT NULL,
        mac BLOB NOT NULL,
        leaf_hash BLOB NOT NULL,
        chain_hash BLOB NOT NULL
    )"#,
    "CREATE UNIQUE INDEX ledger_entries_event_id ON ledger_entries (event_id)",
    "CREATE INDEX ledger_entries_occurred_at ON ledger_entries (occurred_at, seq)",
    r#"CREATE TABLE ledger_head (
        id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
        seq INTEGER NOT NULL,
        chain_hash BLOB NOT NULL,
        frontier BLOB NOT NULL
    )"#,
    "INSERT INTO ledger_head (id, seq, chain_hash, frontier) VALUES (1, 0, zeroblob(32), X'')",
    r#"CREATE TABLE merkle_nodes (
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    )"#,
    r#"CREATE TABLE checkpoints (
        tree_size INTEGER PRIMARY KEY NOT NULL,
        root_hash BLOB NOT NULL,
        note TEXT NOT NULL,
        created_at INTEGER NOT NULL
    )"#,
    r#"CREATE TABLE ledger_keys (
        key_id INTEGER PRIMARY KEY NOT NULL,
        purpose TEXT NOT NULL CHECK (purpose IN ('data', 'signing')),
        wrapped BLOB NOT NULL,
        public_key BLOB,
        created_at INTEGER NOT NULL
    )"#,
    r#"CREATE TABLE ledger_purges (
        anchor_seq INTEGER PRIMARY KEY NOT NULL,
        from_seq INTEGER NOT NULL,
        through_seq INTEGER NOT NULL,
        chain_hash BLOB NOT NULL,
        frontier BLOB NOT NULL,
        archive_sha256 BLOB NOT NULL,
        archive_name TEXT NOT NULL,
        active INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        CHECK (from_seq >= 1 AND through_seq >= from_seq AND through_seq < anchor_seq)
    )"#,
    // Append-only guards.
    r#"CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
       BEGIN SELECT RAISE(ABORT, 'custos: ledger entries are append-only (UPDATE refused)'); END"#,
    r#"CREATE TRIGGER ledger_entries_guarded_delete BEFORE DELETE ON ledger_entries
       WHEN NOT EXISTS (SELECT 1 FROM ledger_purges p
                        WHERE p.active = 1 AND OLD.seq BETWEEN p.from_seq AND p.through_seq)
       BEGIN SELECT RAISE(ABORT, 'custos: ledger entries are deleted only by the retention purge path'); END"#,
    r#"CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes
       BEGIN SELECT RAISE(ABORT, 'custos: merkle nodes are append-only (UPDATE refused)'); END"#,
    r#"CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes
       BEGIN SELECT RAISE(ABORT, 'custos: merkle nodes are append-only (DELETE refused)'); END"#,
    r#"CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
       BEGIN SELECT RAISE(ABORT, 'custos: checkpoints are append-only (UPDATE refused)'); END"#,
    r#"CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
       BEGIN SELECT RAISE(ABORT, 'custos: checkpoints are append-only (DELETE refused)'); END"#,
    r#"CREATE TRIGGER ledger_keys_no_update BEFORE UPDATE ON ledger_keys
       BEGIN SELECT RAISE(ABORT, 'custos: ledger keys are append-only (UPDATE refused)'); END"#,
    r#"CREATE TRIGGER ledger_keys_no_delete BEFORE DELETE ON ledger_keys
       BEGIN SELECT RAISE(ABORT, 'custos: ledger keys are append-only (DELETE refused)'); END"#,
    r#"CREATE TRIGGER ledger_meta_no_update BEFORE UPDATE ON ledger_meta
       BEGIN SELECT RAISE(ABORT, 'custos: ledger metadata is write-once (UPDATE refused)'); END"#,
    r#"CREATE TRIGGER ledger_meta_no_delete BEFORE DELETE ON ledger_meta
       BEGIN SELECT RAISE(ABORT, 'custos: ledger metadata is write-once (DELETE refused)'); END"#,
    r#"CREATE TRIGGER ledger_purges_need_anchor BEFORE INSERT ON ledger_purges
       WHEN NOT EXISTS (SELECT 1 FROM ledger_entries e
                        WHERE e.seq = NEW.anchor_seq AND e.action = 'ledger.purge')
         OR NEW.active <> 1
       BEGIN SELECT RAISE(ABORT, 'custos: a purge needs its anchor in the ledger first'); END"#,
    r#"CREATE TRIGGER ledger_purges_only_close BEFORE UPDATE ON ledger_purges
       WHEN NOT (OLD.active = 1 AND NEW.active = 0
                 AND NEW.anchor_seq = OLD.anchor_seq AND NEW.from_seq = OLD.from_seq
                 AND NEW.through_seq = OLD.through_seq AND NEW.chain_hash = OLD.chain_hash
                 AND NEW.frontier = OLD.frontier AND NEW.archive_sha256 = OLD.archive_sha256
                 AND NEW.archive_name = OLD.archive_name AND NEW.created_at = OLD.created_at)
       BEGIN SELECT RAISE(ABORT, 'custos: a purge record can only be closed'); END"#,
    r#"CREATE TRIGGER ledger_purges_no_delete BEFORE DELETE ON ledger_purges
       BEGIN SELECT RAISE(ABORT, 'custos: purge records are append-only (DELETE refused)'); END"#,
];

const POSTGRES: &[&str] = &[
    r#"CREATE TABLE ledger_meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )"#,
    r#"CREATE TABLE ledger_entries (
        seq BIGINT PRIMARY KEY CHECK (seq >= 1),
        event_id UUID NOT NULL,
        occurred_at BIGINT NOT NULL,
        recorded_at BIGINT NOT NULL,
        category TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        severity TEXT NOT NULL,
        actor_id TEXT,
        actor_kind TEXT,
        resource_type TEXT,
        resource_id TEXT,
        tenant TEXT,
        channel TEXT,
        source_app TEXT,
        key_id INTEGER NOT NULL,
        iv BYTEA NOT NULL,
        ciphertext BYTEA NOT NULL,
        mac BYTEA NOT NULL,
        leaf_hash BYTEA NOT NULL,
        chain_hash BYTEA NOT NULL
    )"#,
    "CREATE UNIQUE INDEX ledger_entries_event_id ON ledger_entries (event_id)",
    "CREATE INDEX ledger_entries_occurred_at ON ledger_entries (occurred_at, seq)",
    r#"CREATE TABLE ledger_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        chain_hash BYTEA NOT NULL,
        frontier BYTEA NOT NULL
    )"#,
    r#"INSERT INTO ledger_head (id, seq, chain_hash, frontier)
       VALUES (1, 0, decode(repeat('00', 32), 'hex'), ''::bytea)"#,
    r#"CREATE TABLE merkle_nodes (
        level SMALLINT NOT NULL,
        idx BIGINT NOT NULL,
        hash BYTEA NOT NULL,
        PRIMARY KEY (level, idx)
    )"#,
    r#"CREATE TABLE checkpoints (
        tree_size BIGINT PRIMARY KEY,
        root_hash BYTEA NOT NULL,
        note TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )"#,
    r#"CREATE TABLE ledger_keys (
        key_id INTEGER PRIMARY KEY,
        purpose TEXT NOT NULL CHECK (purpose IN ('data', 'signing')),
        wrapped BYTEA NOT NULL,
        public_key BYTEA,
        created_at BIGINT NOT NULL
    )"#,
    r#"CREATE TABLE ledger_purges (
        anchor_seq BIGINT PRIMARY KEY,
        from_seq BIGINT NOT NULL,
        through_seq BIGINT NOT NULL,
        chain_hash BYTEA NOT NULL,
        frontier BYTEA NOT NULL,
        archive_sha256 BYTEA NOT NULL,
        archive_name TEXT NOT NULL,
        active SMALLINT NOT NULL,
        created_at BIGINT NOT NULL,
        CHECK (from_seq >= 1 AND through_seq >= from_seq AND through_seq < anchor_seq)
    )"#,
    r#"CREATE FUNCTION custos_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'custos: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
           USING ERRCODE = 'P0001';
       END $$"#,
    r#"CREATE FUNCTION custos_guard_ledger_delete() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT EXISTS (SELECT 1 FROM ledger_purges p
                        WHERE p.active = 1 AND OLD.seq BETWEEN p.from_seq AND p.through_seq) THEN
           RAISE EXCEPTION 'custos: ledger entries are deleted only by the retention purge path'
             USING ERRCODE = 'P0001';
         END IF;
         RETURN OLD;
       END $$"#,
    r#"CREATE FUNCTION custos_guard_purge_insert() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.active <> 1 OR NOT EXISTS (SELECT 1 FROM ledger_entries e
                        WHERE e.seq = NEW.anchor_seq AND e.action = 'ledger.purge') THEN
           RAISE EXCEPTION 'custos: a purge needs its anchor in the ledger first'
             USING ERRCODE = 'P0001';
         END IF;
         RETURN NEW;
       END $$"#,
    r#"CREATE FUNCTION custos_guard_purge_update() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT (OLD.active = 1 AND NEW.active = 0
                 AND NEW.anchor_seq = OLD.anchor_seq AND NEW.from_seq = OLD.from_seq
                 AND NEW.through_seq = OLD.through_seq AND NEW.chain_hash = OLD.chain_hash
                 AND NEW.frontier = OLD.frontier AND NEW.archive_sha256 = OLD.archive_sha256
                 AND NEW.archive_name = OLD.archive_name AND NEW.created_at = OLD.created_at) THEN
           RAISE EXCEPTION 'custos: a purge record can only be closed' USING ERRCODE = 'P0001';
         END IF;
         RETURN NEW;
       END $$"#,
    "CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER ledger_entries_guarded_delete BEFORE DELETE ON ledger_entries FOR EACH ROW EXECUTE FUNCTION custos_guard_ledger_delete()",
    "CREATE TRIGGER merkle_nodes_no_change BEFORE UPDATE OR DELETE ON merkle_nodes FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER checkpoints_no_change BEFORE UPDATE OR DELETE ON checkpoints FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER ledger_keys_no_change BEFORE UPDATE OR DELETE ON ledger_keys FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER ledger_meta_no_change BEFORE UPDATE OR DELETE ON ledger_meta FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER ledger_purges_need_anchor BEFORE INSERT ON ledger_purges FOR EACH ROW EXECUTE FUNCTION custos_guard_purge_insert()",
    "CREATE TRIGGER ledger_purges_only_close BEFORE UPDATE ON ledger_purges FOR EACH ROW EXECUTE FUNCTION custos_guard_purge_update()",
    "CREATE TRIGGER ledger_purges_no_delete BEFORE DELETE ON ledger_purges FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER merkle_nodes_no_truncate BEFORE TRUNCATE ON merkle_nodes FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER ledger_keys_no_truncate BEFORE TRUNCATE ON ledger_keys FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER ledger_purges_no_truncate BEFORE TRUNCATE ON ledger_purges FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()",
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
