//! Alerting (issue 16): the alerts the rules open, and the leases that
//! give background work to exactly one replica.
//!
//! - `leases`: one row per kind of background work; its holder (a replica)
//!   keeps it by renewing before `until_us`, and stores how far it got
//!   (`cursor_seq`, -1 before the first save) so the next holder continues there.
//! - `alerts`: none is deleted; what opened one (rule, group, trigger,
//!   time, the ledger entry of its opening once set) never changes; a
//!   resolved alert stays resolved. `trigger_key` (rule, group and the
//!   ledger position that made it fire) is unique, so evaluating the same
//!   events again (a restart, a new lease holder) opens nothing twice.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What an alert may never change; `same` compares nullable columns.
fn alert_fixed(same: &str) -> String {
    format!(
        "NEW.id <> OLD.id OR NEW.rule_id <> OLD.rule_id OR NEW.group_key <> OLD.group_key \
         OR NEW.trigger_key <> OLD.trigger_key OR NEW.opened_at <> OLD.opened_at OR NEW.created_at <> OLD.created_at \
         OR NEW.rules_version <> OLD.rules_version \
         OR (OLD.opened_seq IS NOT NULL AND NOT (NEW.opened_seq {same} OLD.opened_seq)) \
         OR (OLD.status = 'resolved' AND NEW.status <> 'resolved')"
    )
}

fn tables(int: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE leases (
            name TEXT PRIMARY KEY NOT NULL,
            holder TEXT NOT NULL,
            until_us {int} NOT NULL,
            taken_at {int} NOT NULL,
            cursor_seq {int} NOT NULL DEFAULT -1)"
        ),
        format!(
            "CREATE TABLE alerts (
            id TEXT PRIMARY KEY NOT NULL,
            rule_id TEXT NOT NULL,
            rule_name TEXT NOT NULL,
            severity TEXT NOT NULL,
            group_key TEXT NOT NULL,
            trigger_key TEXT NOT NULL UNIQUE,
            status TEXT NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
            matches {int} NOT NULL,
            seqs TEXT NOT NULL,
            filter TEXT NOT NULL,
            since_us {int} NOT NULL,
            opened_at {int} NOT NULL,
            last_at {int} NOT NULL,
            last_seq {int} NOT NULL,
            updated_at {int} NOT NULL,
            created_at {int} NOT NULL,
            opened_seq {int},
            rules_version {int} NOT NULL,
            history TEXT NOT NULL DEFAULT '[]')"
        ),
        "CREATE INDEX alerts_by_status ON alerts (status, opened_at)".into(),
        "CREATE INDEX alerts_by_group ON alerts (rule_id, group_key, opened_at)".into(),
    ]
}

fn sqlite() -> Vec<String> {
    let mut s = tables("INTEGER");
    s.extend([
        format!(
            "CREATE TRIGGER alerts_fixed BEFORE UPDATE ON alerts WHEN {} \
             BEGIN SELECT RAISE(ABORT, 'custos: what opened an alert cannot change, and a resolved alert stays resolved'); END",
            alert_fixed("IS")
        ),
        "CREATE TRIGGER alerts_no_delete BEFORE DELETE ON alerts \
         BEGIN SELECT RAISE(ABORT, 'alerts are kept'); END"
            .to_owned(),
    ]);
    s
}

fn postgres() -> Vec<String> {
    let mut s = tables("BIGINT");
    s.extend([
        format!(
            "CREATE FUNCTION custos_guard_alert() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF TG_OP = 'DELETE' THEN
                 RAISE EXCEPTION 'alerts are kept' USING ERRCODE = 'P0001';
               END IF;
               IF {} THEN
                 RAISE EXCEPTION 'custos: what opened an alert cannot change, and a resolved alert stays resolved' USING ERRCODE = 'P0001';
               END IF;
               RETURN NEW;
             END $$",
            alert_fixed("IS NOT DISTINCT FROM")
        ),
        "CREATE TRIGGER alerts_guard BEFORE UPDATE OR DELETE ON alerts \
         FOR EACH ROW EXECUTE FUNCTION custos_guard_alert()"
            .to_owned(),
        "CREATE TRIGGER alerts_no_truncate BEFORE TRUNCATE ON alerts \
         FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()"
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
