//! Scheduled reports (issue 19).
//!
//! `report_runs`: one row per schedule and due time (unique: a run is
//! planned once, however many replicas plan it). A run is `planned`, then
//! `running` on the replica that claimed it, then `done` (with its report)
//! or `failed` (with the reason); `missed` when the server was not running
//! at its time and a later occurrence has passed too; `cancelled` when its
//! schedule was changed, turned off or removed before it ran. Rows are
//! never deleted: they are the schedule's history (the reports they made
//! may be pruned, their records stay in the ledger).
//! `notification_outbox.report_id`: the report a message carries.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn tables(int: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE report_runs (
            id TEXT PRIMARY KEY NOT NULL,
            schedule_id TEXT NOT NULL,
            schedule_sha256 TEXT NOT NULL,
            policy_version {int} NOT NULL,
            due_at {int} NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('planned', 'running', 'done', 'failed', 'missed', 'cancelled')),
            next_at {int} NOT NULL,
            attempts {int} NOT NULL DEFAULT 0,
            started_at {int},
            finished_at {int},
            report_id TEXT,
            error TEXT,
            UNIQUE (schedule_id, due_at)
        )"
        ),
        "CREATE INDEX report_runs_by_state ON report_runs (state, next_at)".into(),
        "CREATE INDEX report_runs_by_due ON report_runs (due_at)".into(),
        "CREATE INDEX reports_by_schedule ON reports (schedule, generated_at)".into(),
        "ALTER TABLE notification_outbox ADD COLUMN report_id TEXT".into(),
        "CREATE INDEX notification_outbox_by_report ON notification_outbox (report_id)".into(),
    ]
}

const SQLITE_GUARDS: &[&str] = &[r#"CREATE TRIGGER report_runs_no_delete BEFORE DELETE ON report_runs
       BEGIN SELECT RAISE(ABORT, 'custos: report runs are the schedules'' history (DELETE refused)'); END"#];

const POSTGRES_GUARDS: &[&str] = &[
    "CREATE TRIGGER report_runs_no_delete BEFORE DELETE ON report_runs FOR EACH ROW EXECUTE FUNCTION custos_refuse()",
    "CREATE TRIGGER report_runs_no_truncate BEFORE TRUNCATE ON report_runs FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let (ddl, guards) = match manager.get_database_backend() {
            DbBackend::Sqlite => (tables("INTEGER"), SQLITE_GUARDS),
            DbBackend::Postgres => (tables("BIGINT"), POSTGRES_GUARDS),
            other => return Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        };
        let conn = manager.get_connection();
        for sql in &ddl {
            conn.execute_unprepared(sql).await?;
        }
        crate::run_all(manager, guards).await
    }
}
