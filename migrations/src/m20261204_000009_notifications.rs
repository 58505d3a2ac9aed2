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
//! - `alerts.notified_at`: when the alert's messages were queued;
//!   `alerts.silenced_by`: the silence that kept it from being sent.
//! - `alert_silences`: while in force, the alerts a silence covers are not
//!   sent. None is deleted; only `ended_at` (ending one early) is set.

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
        "ALTER TABLE alerts ADD COLUMN silenced_by TEXT".into(),
        format!(
            "CREATE TABLE alert_silences (
            id TEXT PRIMARY KEY NOT NULL,
            rule_id TEXT,
            group_key TEXT NOT NULL,
            starts_at {int} NOT NULL,
            ends_at {int} NOT NULL,
            ended_at {int},
            reason TEXT NOT NULL CHECK (length(reason) > 0),
            author TEXT NOT NULL,
            author_name TEXT NOT NULL,
            created_seq {int} NOT NULL)"
        ),
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
        "CREATE TRIGGER alert_silences_no_delete BEFORE DELETE ON alert_silences \
         BEGIN SELECT RAISE(ABORT, 'alert_silences are kept'); END"
            .to_owned(),
        "CREATE TRIGGER alert_silences_fixed BEFORE UPDATE ON alert_silences \
         WHEN OLD.ended_at IS NOT NULL OR NEW.id <> OLD.id OR NOT (NEW.rule_id IS OLD.rule_id) \
           OR NEW.group_key <> OLD.group_key OR NEW.starts_at <> OLD.starts_at OR NEW.ends_at <> OLD.ends_at \
           OR NEW.reason <> OLD.reason OR NEW.author <> OLD.author OR NEW.created_seq <> OLD.created_seq \
         BEGIN SELECT RAISE(ABORT, 'custos: a silence only ends early, once'); END"
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
        "CREATE FUNCTION custos_guard_silence() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF TG_OP = 'DELETE' THEN
             RAISE EXCEPTION 'alert_silences are kept' USING ERRCODE = 'P0001';
           END IF;
           IF OLD.ended_at IS NOT NULL OR NEW.id <> OLD.id OR NEW.rule_id IS DISTINCT FROM OLD.rule_id
              OR NEW.group_key <> OLD.group_key OR NEW.starts_at <> OLD.starts_at OR NEW.ends_at <> OLD.ends_at
              OR NEW.reason <> OLD.reason OR NEW.author <> OLD.author OR NEW.created_seq <> OLD.created_seq THEN
             RAISE EXCEPTION 'custos: a silence only ends early, once' USING ERRCODE = 'P0001';
           END IF;
           RETURN NEW;
         END $$"
            .to_owned(),
        "CREATE TRIGGER alert_silences_guard BEFORE UPDATE OR DELETE ON alert_silences \
         FOR EACH ROW EXECUTE FUNCTION custos_guard_silence()"
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
