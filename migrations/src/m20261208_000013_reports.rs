//! Compliance evidence over time (issue 19).
//!
//! `compliance_snapshots`: one row per UTC day, the compliance checks as
//! the server computed them that day. Each row is anchored on the
//! `custos.compliance.snapshot` entry the server wrote for it (the entry
//! carries the row's digest), so a row edited afterwards no longer matches
//! its sealed record, and the database refuses to change or delete rows:
//! a missing day stays missing. `reports`: the evidence reports generated
//! (by whom, when, the digests and signed manifests, the files). Their
//! generation is in the ledger; the table is their catalogue and store.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn tables(int: &str, blob: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE compliance_snapshots (
            day {int} PRIMARY KEY NOT NULL,
            taken_at {int} NOT NULL,
            seq {int} NOT NULL,
            sha256 TEXT NOT NULL,
            checks TEXT NOT NULL
        )"
        ),
        format!(
            "CREATE TABLE reports (
            id TEXT PRIMARY KEY NOT NULL,
            framework TEXT NOT NULL,
            period_from TEXT NOT NULL,
            period_to TEXT NOT NULL,
            trigger TEXT NOT NULL,
            schedule TEXT,
            requested_by TEXT NOT NULL,
            generated_at {int} NOT NULL,
            state TEXT NOT NULL,
            error TEXT,
            seed TEXT NOT NULL,
            status TEXT,
            pdf {blob},
            pdf_sha256 TEXT,
            pdf_manifest TEXT,
            json {blob},
            json_sha256 TEXT,
            json_manifest TEXT
        )"
        ),
        "CREATE INDEX reports_by_time ON reports (generated_at)".into(),
    ]
}

const SQLITE_GUARDS: &[&str] = &[
    r#"CREATE TRIGGER compliance_snapshots_need_anchor BEFORE INSERT ON compliance_snapshots
       WHEN NOT EXISTS (SELECT 1 FROM ledger_entries e
                        WHERE e.seq = NEW.seq AND e.action = 'custos.compliance.snapshot'
                          AND e.actor_id = 'custos' AND e.actor_kind = 'system'
                          AND e.source_app = 'custos' AND e.channel = 'system')
       BEGIN SELECT RAISE(ABORT, 'custos: a compliance snapshot needs its record written by the server'); END"#,
    r#"CREATE TRIGGER compliance_snapshots_no_update BEFORE UPDATE ON compliance_snapshots
       BEGIN SELECT RAISE(ABORT, 'custos: compliance snapshots are append-only (UPDATE refused)'); END"#,
    r#"CREATE TRIGGER compliance_snapshots_no_delete BEFORE DELETE ON compliance_snapshots
       BEGIN SELECT RAISE(ABORT, 'custos: compliance snapshots are append-only (DELETE refused)'); END"#,
];

const POSTGRES_GUARDS: &[&str] = &[
    r#"CREATE FUNCTION custos_guard_snapshot_insert() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NOT EXISTS (SELECT 1 FROM ledger_entries e
                        WHERE e.seq = NEW.seq AND e.action = 'custos.compliance.snapshot'
                          AND e.actor_id = 'custos' AND e.actor_kind = 'system'
                          AND e.source_app = 'custos' AND e.channel = 'system') THEN
           RAISE EXCEPTION 'custos: a compliance snapshot needs its record written by the server'
             USING ERRCODE = 'P0001';
         END IF;
         RETURN NEW;
       END $$"#,
    "CREATE TRIGGER compliance_snapshots_need_anchor BEFORE INSERT ON compliance_snapshots FOR EACH ROW EXECUTE FUNCTION custos_guard_snapshot_insert()",
    "CREATE TRIGGER compliance_snapshots_no_change BEFORE UPDATE OR DELETE ON compliance_snapshots FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER compliance_snapshots_no_truncate BEFORE TRUNCATE ON compliance_snapshots FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()",
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
