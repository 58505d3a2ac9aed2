//! Notifications (issue 16): the durable outbox of messages about alerts,
//! and the log of every delivery attempt.
//!
//! - `notification_outbox`: one row per message and channel; its
//!   `idempotency_key` (the alert and the channel) is unique, so an alert
//!   is never queued twice for a channel, and receivers get the key to
//!   drop a repeat delivery (delivery is at least once). A row is pending
//!   until delivered or, after a day of retries, dead (with the reason).
//!   Rows are never deleted.
//! - `notification_attempts`: append-only (no update, no delete): each try
//!   with its time, channel, status, response code, latency and error.
//! - `alerts.notified_at`: when the alert's messages were queued.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn tables(int: &str, serial: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE notification_outbox (
            id TEXT PRIMARY KEY NOT NULL,
            idempotency_key TEXT NOT NULL UNIQUE,
            alert_id TEXT,
            rule_id TEXT,
            channel_id TEXT NOT NULL,
            channel_type TEXT NOT NULL,
            channels_version {int} NOT NULL,
            payload TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
            attempts {int} NOT NULL DEFAULT 0,
            next_at {int} NOT NULL,
            created_at {int} NOT NULL,
            delivered_at {int},
            last_error TEXT)"
        ),
        "CREATE INDEX notification_outbox_due ON notification_outbox (status, next_at)".into(),
        format!(
            "CREATE TABLE notification_attempts (
            id {serial},
            outbox_id TEXT NOT NULL,
            alert_id TEXT,
            rule_id TEXT,
            channel_id TEXT NOT NULL,
            channel_type TEXT NOT NULL,
            attempt {int} NOT NULL,
            at {int} NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('delivered', 'failed', 'dead')),
            response_code {int},
            latency_ms {int} NOT NULL,
            error TEXT)"
        ),
        "CREATE INDEX notification_attempts_at ON notification_attempts (at)".into(),
        format!("ALTER TABLE alerts ADD COLUMN notified_at {int}"),
    ]
}

fn sqlite() -> Vec<String> {
    let mut s = tables("INTEGER", "INTEGER PRIMARY KEY AUTOINCREMENT");
    s.extend([
        "CREATE TRIGGER notification_attempts_no_update BEFORE UPDATE ON notification_attempts \
         BEGIN SELECT RAISE(ABORT, 'notification_attempts is append-only'); END"
            .to_owned(),
        "CREATE TRIGGER notification_attempts_no_delete BEFORE DELETE ON notification_attempts \
         BEGIN SELECT RAISE(ABORT, 'notification_attempts is append-only'); END"
            .to_owned(),
        "CREATE TRIGGER notification_outbox_no_delete BEFORE DELETE ON notification_outbox \
         BEGIN SELECT RAISE(ABORT, 'notification_outbox rows are kept'); END"
            .to_owned(),
    ]);
    s
}

fn postgres() -> Vec<String> {
    let mut s = tables("BIGINT", "BIGSERIAL PRIMARY KEY");
    s.extend([
        "CREATE TRIGGER notification_attempts_no_change BEFORE UPDATE OR DELETE ON notification_attempts \
         FOR EACH ROW EXECUTE FUNCTION custos_refuse()"
            .to_owned(),
        "CREATE TRIGGER notification_attempts_no_truncate BEFORE TRUNCATE ON notification_attempts \
         FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()"
            .to_owned(),
        "CREATE TRIGGER notification_outbox_no_delete BEFORE DELETE ON notification_outbox \
         FOR EACH ROW EXECUTE FUNCTION custos_refuse()"
            .to_owned(),
    ]);
    s
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            DbBackend::Sqlite => sqlite(),
            DbBackend::Postgres => postgres(),
            other => return Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        };
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        crate::run_all(manager, &refs).await
    }
}
