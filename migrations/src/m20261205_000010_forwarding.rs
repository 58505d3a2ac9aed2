//! SIEM forwarding (issue 17): the state of each destination.
//!
//! `forward_state`: one row per destination id (kept when a destination is
//! removed, so a destination added again under the same id resumes where
//! it was). The cursor itself (the last ledger position delivered) is the
//! destination's lease row (`leases`, name `forward:<id>`), written only
//! by the replica holding it. Here: whether people paused it, a replay
//! they asked for (applied by the holder), how many checkpoints went out,
//! and its health (state, failures, last success and error, events
//! delivered, messages cut), and whether its failing was recorded (so a
//! flapping destination records at most one failure and one recovery
//! every five minutes). Rows are never deleted: a destination added again
//! under the same id resumes at its cursor.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn table(int: &str) -> String {
    format!(
        "CREATE TABLE forward_state (
        destination_id TEXT PRIMARY KEY NOT NULL,
        paused {int} NOT NULL DEFAULT 0,
        replay_seq {int},
        checkpoint_size {int} NOT NULL DEFAULT 0,
        state TEXT NOT NULL DEFAULT 'starting',
        failures {int} NOT NULL DEFAULT 0,
        failing_since {int},
        failed_recorded {int} NOT NULL DEFAULT 0,
        failed_recorded_at {int},
        next_at {int} NOT NULL DEFAULT 0,
        last_success_at {int},
        last_error TEXT,
        last_error_at {int},
        delivered {int} NOT NULL DEFAULT 0,
        truncated {int} NOT NULL DEFAULT 0,
        updated_at {int} NOT NULL DEFAULT 0)"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            DbBackend::Sqlite => vec![
                table("INTEGER"),
                "CREATE TRIGGER forward_state_no_delete BEFORE DELETE ON forward_state \
                 BEGIN SELECT RAISE(ABORT, 'forward_state rows are kept'); END"
                    .to_owned(),
            ],
            DbBackend::Postgres => vec![
                table("BIGINT"),
                "CREATE TRIGGER forward_state_no_delete BEFORE DELETE ON forward_state \
                 FOR EACH ROW EXECUTE FUNCTION custos_refuse()"
                    .to_owned(),
            ],
            other => return Err(DbErr::Migration(format!("unsupported database backend {other:?}"))),
        };
        let refs: Vec<&str> = statements.iter().map(String::as_str).collect();
        crate::run_all(manager, &refs).await
    }
}
