//! The policy store (issue 15): every policy kind's versions, the proposals
//! that become them, and the review rule each kind was last set to.
//!
//! - `policy_versions` is append-only (UPDATE, DELETE, TRUNCATE refused), and
//!   a version can only be inserted together with the ledger entry that
//!   records its activation: `ledger_seq` (each entry backs one version)
//!   must name a successful entry the server sealed (`source_app` `custos`,
//!   a value ingest refuses from clients) with action
//!   `custos.policy.activated` or `custos.policy.rolled_back` on resource
//!   `policy`/`<kind>` (or, for the masking versions written before the
//!   store, their `policy.masking.update` entry); versions follow each other
//!   without gaps.
//! - a new `masking_policy_versions` row needs its `policy_versions` row
//!   (the masking kind writes both in one transaction).
//! - a proposal changes only while pending; what was proposed (kind, base,
//!   content, hash, diff, reason, author, time) never changes; none is deleted.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The activation entry a version needs (both backends): a successful
/// entry the server sealed, naming this kind, and the next version number.
const NEEDS_RECORD: &str = "EXISTS (SELECT 1 FROM ledger_entries e WHERE e.seq = NEW.ledger_seq AND e.source_app = 'custos' \
     AND e.outcome = 'success' \
     AND ((e.action IN ('custos.policy.activated', 'custos.policy.rolled_back') \
           AND e.resource_type = 'policy' AND e.resource_id = NEW.kind) \
       OR (NEW.kind = 'masking' AND e.action = 'policy.masking.update' \
           AND e.resource_type = 'masking_policy' AND e.resource_id = CAST(NEW.version AS TEXT)))) \
     AND NEW.version = COALESCE((SELECT MAX(p.version) FROM policy_versions p WHERE p.kind = NEW.kind), 0) + 1";

/// What a proposal may never change; `same` compares nullable columns
/// (`IS` in SQLite, `IS NOT DISTINCT FROM` in PostgreSQL).
fn proposal_fixed(same: &str) -> String {
    format!(
        "OLD.state <> 'pending' OR NEW.id <> OLD.id OR NEW.kind <> OLD.kind \
         OR NEW.based_on <> OLD.based_on OR NEW.content <> OLD.content OR NEW.sha256 <> OLD.sha256 \
         OR NEW.diff <> OLD.diff OR NEW.reason <> OLD.reason OR NEW.author <> OLD.author \
         OR NEW.proposed_at <> OLD.proposed_at OR NEW.proposed_seq <> OLD.proposed_seq \
         OR NEW.approvals_needed <> OLD.approvals_needed OR NEW.expires_at <> OLD.expires_at \
         OR NEW.eligible <> OLD.eligible OR NOT (NEW.restores {same} OLD.restores)"
    )
}

fn tables(int: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE policy_versions (
            kind TEXT NOT NULL,
            version {int} NOT NULL CHECK (version >= 1),
            content TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            author TEXT NOT NULL,
            author_name TEXT NOT NULL,
            approvers TEXT NOT NULL,
            alone {int} NOT NULL DEFAULT 0,
            reason TEXT NOT NULL,
            proposal_id TEXT,
            restores {int},
            ledger_seq {int} NOT NULL UNIQUE,
            created_at {int} NOT NULL,
            PRIMARY KEY (kind, version))"
        ),
        format!(
            "CREATE TABLE policy_proposals (
            id TEXT PRIMARY KEY NOT NULL,
            kind TEXT NOT NULL,
            based_on {int} NOT NULL,
            content TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            diff TEXT NOT NULL,
            reason TEXT NOT NULL CHECK (length(reason) > 0),
            restores {int},
            author TEXT NOT NULL,
            author_name TEXT NOT NULL,
            proposed_at {int} NOT NULL,
            expires_at {int} NOT NULL,
            approvals_needed {int} NOT NULL,
            eligible {int} NOT NULL DEFAULT 0,
            state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'withdrawn')),
            approvers TEXT NOT NULL DEFAULT '[]',
            decisions TEXT NOT NULL DEFAULT '[]',
            alone {int} NOT NULL DEFAULT 0,
            decided_at {int},
            version {int},
            revision {int} NOT NULL DEFAULT 0,
            proposed_seq {int} NOT NULL,
            test_report TEXT)"
        ),
        "CREATE INDEX policy_proposals_open ON policy_proposals (state, kind, expires_at)".into(),
        format!(
            "CREATE TABLE policy_review_rules (
            kind TEXT PRIMARY KEY NOT NULL,
            approvals {int} NOT NULL,
            ttl_us {int} NOT NULL,
            set_at {int} NOT NULL,
            ledger_seq {int} NOT NULL)"
        ),
    ]
}

fn sqlite() -> Vec<String> {
    let mut s = tables("INTEGER");
    s.extend([
        "CREATE TRIGGER policy_versions_no_update BEFORE UPDATE ON policy_versions \
         BEGIN SELECT RAISE(ABORT, 'policy_versions is append-only'); END"
            .to_owned(),
        "CREATE TRIGGER policy_versions_no_delete BEFORE DELETE ON policy_versions \
         BEGIN SELECT RAISE(ABORT, 'policy_versions is append-only'); END"
            .to_owned(),
        format!(
            "CREATE TRIGGER policy_versions_need_record BEFORE INSERT ON policy_versions WHEN NOT {NEEDS_RECORD} \
             BEGIN SELECT RAISE(ABORT, 'custos: a policy version needs the ledger entry of its activation'); END"
        ),
        "CREATE TRIGGER masking_versions_need_policy BEFORE INSERT ON masking_policy_versions \
         WHEN NOT EXISTS (SELECT 1 FROM policy_versions p WHERE p.kind = 'masking' AND p.version = NEW.version) \
         BEGIN SELECT RAISE(ABORT, 'custos: a masking version needs its policy version'); END"
            .to_owned(),
        format!(
            "CREATE TRIGGER policy_proposals_only_pending BEFORE UPDATE ON policy_proposals WHEN {} \
             BEGIN SELECT RAISE(ABORT, 'custos: a decided proposal, or what was proposed, cannot change'); END",
            proposal_fixed("IS")
        ),
        "CREATE TRIGGER policy_proposals_no_delete BEFORE DELETE ON policy_proposals \
         BEGIN SELECT RAISE(ABORT, 'policy_proposals are kept'); END"
            .to_owned(),
    ]);
    s
}

fn postgres() -> Vec<String> {
    let mut s = tables("BIGINT");
    s.extend([
        "CREATE TRIGGER policy_versions_no_change BEFORE UPDATE OR DELETE ON policy_versions \
         FOR EACH ROW EXECUTE FUNCTION custos_refuse()"
            .to_owned(),
        "CREATE TRIGGER policy_versions_no_truncate BEFORE TRUNCATE ON policy_versions \
         FOR EACH STATEMENT EXECUTE FUNCTION custos_refuse()"
            .to_owned(),
        format!(
            "CREATE FUNCTION custos_guard_policy_version() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NOT {NEEDS_RECORD} THEN
                 RAISE EXCEPTION 'custos: a policy version needs the ledger entry of its activation' USING ERRCODE = 'P0001';
               END IF;
               RETURN NEW;
             END $$"
        ),
        "CREATE TRIGGER policy_versions_need_record BEFORE INSERT ON policy_versions \
         FOR EACH ROW EXECUTE FUNCTION custos_guard_policy_version()"
            .to_owned(),
        "CREATE FUNCTION custos_guard_masking_version() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NOT EXISTS (SELECT 1 FROM policy_versions p WHERE p.kind = 'masking' AND p.version = NEW.version) THEN
             RAISE EXCEPTION 'custos: a masking version needs its policy version' USING ERRCODE = 'P0001';
           END IF;
           RETURN NEW;
         END $$"
            .to_owned(),
        "CREATE TRIGGER masking_versions_need_policy BEFORE INSERT ON masking_policy_versions \
         FOR EACH ROW EXECUTE FUNCTION custos_guard_masking_version()"
            .to_owned(),
        format!(
            "CREATE FUNCTION custos_guard_policy_proposal() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF TG_OP = 'DELETE' THEN
                 RAISE EXCEPTION 'policy_proposals are kept' USING ERRCODE = 'P0001';
               END IF;
               IF {} THEN
                 RAISE EXCEPTION 'custos: a decided proposal, or what was proposed, cannot change' USING ERRCODE = 'P0001';
               END IF;
               RETURN NEW;
             END $$",
            proposal_fixed("IS NOT DISTINCT FROM")
        ),
        "CREATE TRIGGER policy_proposals_guard BEFORE UPDATE OR DELETE ON policy_proposals \
         FOR EACH ROW EXECUTE FUNCTION custos_guard_policy_proposal()"
            .to_owned(),
        "CREATE TRIGGER policy_proposals_no_truncate BEFORE TRUNCATE ON policy_proposals \
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
