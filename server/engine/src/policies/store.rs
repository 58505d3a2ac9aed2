//! The policy store: proposals, their review, the immutable versions they
//! become, and the ledger record of every step (docs/design/policy-store.md).
//!
//! Every change is recorded in the ledger before it is made; if the change
//! then fails (a race lost, the database down), the failure is recorded too,
//! pointing at the first record (`recorded_as`), and nothing changed. The
//! database refuses a version without its activation's ledger entry, any
//! change to a version, and any change to a decided proposal.
//!
//! Concurrency: on a replica, changes are serialised by a mutex; across
//! replicas a proposal's `revision` (compare-and-set) and the `(kind,
//! version)` key decide, and the loser answers 409.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use custos_model::{
    Decided, PatchOp, PolicyDiff, PolicyKindView, PolicyOverview, PolicyVersion, Proposal, ReviewRuleView, TestReport,
};
use sea_orm::{ConnectionTrait, QueryResult, TransactionTrait, Value as DbValue};
use serde_json::{Value, json};
use uuid::Uuid;

use super::kinds::{self, PolicyKind, Sample};
use super::patch;
use super::review::{Decision, Review, ReviewError, ReviewRule, ReviewState};
use super::{PolicyError, invalid};
use crate::events::model::{Outcome, Severity};
use crate::events::own::{OwnAction, OwnEvent};
use crate::events::{Events, Requester, SearchFilter};
use crate::identity::permission::{Permission, PermissionSet};
use crate::identity::service::Identity;
use crate::ledger::Receipt;
use crate::storage::stmt_for;
use crate::time::{DAY_US, rfc3339};

/// The ledger actions of the store's steps.
pub mod step {
    /// A change was proposed.
    pub const PROPOSED: &str = "custos.policy.proposed";
    /// A document was tried on recent history.
    pub const TESTED: &str = "custos.policy.tested";
    /// Someone approved a proposal.
    pub const APPROVED: &str = "custos.policy.approved";
    /// Someone rejected a proposal (it ends there).
    pub const REJECTED: &str = "custos.policy.rejected";
    /// A proposal's time ran out.
    pub const EXPIRED: &str = "custos.policy.expired";
    /// A proposal became the next version.
    pub const ACTIVATED: &str = "custos.policy.activated";
    /// A proposal repeating an older version became the next version.
    pub const ROLLED_BACK: &str = "custos.policy.rolled_back";
    /// A kind's review rule changed (configuration).
    pub const RULE_SET: &str = "custos.policy.rule_set";
    /// The author withdrew a pending proposal.
    pub const WITHDRAWN: &str = "custos.policy.withdrawn";
    /// Every step, in order.
    pub const ALL: [&str; 9] =
        [PROPOSED, TESTED, APPROVED, REJECTED, EXPIRED, ACTIVATED, ROLLED_BACK, RULE_SET, WITHDRAWN];
    /// The masking versions saved before the store.
    pub const LEGACY_MASKING: &str = "policy.masking.update";

    /// The steps' short names (`proposed`, …).
    pub fn names() -> Vec<&'static str> {
        ALL.iter().filter_map(|a| a.strip_prefix("custos.policy.")).collect()
    }
}

/// The longest reason or comment.
const MAX_TEXT: usize = 1000;
/// The default dry-run sample: 1,000 events of the last 7 days.
pub const DEFAULT_SAMPLE: u64 = 1000;
/// See [`DEFAULT_SAMPLE`].
pub const DEFAULT_SAMPLE_DAYS: i64 = 7;

/// A change to propose.
#[derive(Debug, Clone)]
pub struct NewProposal {
    /// The whole new document (ignored for a rollback: the old version's).
    pub content: Option<Value>,
    /// The version it changes (the one read).
    pub based_on: u64,
    /// Why (required).
    pub reason: String,
    /// A rollback: repeat this version's content.
    pub restores: Option<u64>,
}

/// Filters of the trail.
#[derive(Debug, Clone, Default)]
pub struct TrailQuery {
    /// Decoded query pairs: `kind`, `actor`, `step`, `from`, `to`,
    /// `source` (`custos` or `applications`), `cursor`, `limit`.
    pub pairs: Vec<(String, String)>,
    /// Whether the caller may see the policy events applications send
    /// (they are audit events: `audit:read`); without it, the store's own
    /// steps only.
    pub applications: bool,
}

struct KindState {
    kind: Arc<dyn PolicyKind>,
    rule: ReviewRule,
}

/// How long a replica's claim on an expired proposal holds before another
/// replica may take it (the first died between claim and record).
const CLAIM_US: i64 = 5 * 60 * 1_000_000;

/// The policy store.
pub struct PolicyStore {
    pub(super) events: Arc<Events>,
    identity: Arc<Identity>,
    kinds: Vec<KindState>,
    /// The newest version applied on this replica, per kind.
    applied: RwLock<BTreeMap<&'static str, u64>>,
    /// One change at a time on this replica.
    changing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore").field("kinds", &self.kinds.len()).finish_non_exhaustive()
    }
}

/// Whether a decision counts as an approval (an approver's, or the
/// author's activation alone).
fn approves(d: &Decided) -> bool {
    d.decision == "approved" || d.decision == "activated_alone"
}

fn decided_list(text: &str) -> Vec<Decided> {
    serde_json::from_str(text).unwrap_or_default()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

fn opt_u64(r: &QueryResult, col: &str) -> Result<Option<u64>, sea_orm::DbErr> {
    Ok(r.try_get::<Option<i64>>("", col)?.map(|v| v as u64))
}

fn review_error(e: ReviewError) -> PolicyError {
    match e {
        ReviewError::OwnProposal => PolicyError::Forbidden(e.to_string()),
        ReviewError::NotAlone(_) => PolicyError::Forbidden(e.to_string()),
        ReviewError::AlreadyApproved => PolicyError::Conflict(e.to_string()),
        ReviewError::NotPending("expired") => PolicyError::Gone(e.to_string()),
        ReviewError::NotPending(_) => PolicyError::Conflict(e.to_string()),
    }
}

/// A step of the store as an own event. The event is exempt from the
/// masking policy (its document and patch must stay byte for byte), so the
/// actor's name, address and user agent are masked here.
fn step_event(events: &Events, action: &'static str, by: &Requester, kind: &str) -> OwnEvent {
    let mut actor = by.actor.clone();
    for field in [&mut actor.name, &mut actor.ip, &mut actor.user_agent] {
        if let Some(v) = field.as_mut() {
            *v = events.mask_free_text(v);
        }
    }
    OwnEvent::new(OwnAction::PolicyStep(action), actor, by.channel)
        .resource("policy", Some(kind.to_owned()))
        .request(by.request_id.clone())
}

/// Records that a recorded change failed, pointing at its record.
async fn record_failure(
    events: &Events,
    action: &'static str,
    by: &Requester,
    kind: &str,
    first: &Receipt,
    e: &PolicyError,
) {
    let own = step_event(events, action, by, kind)
        .outcome(Outcome::Error)
        .reason(Some(e.to_string()))
        .details(json!({ "kind": kind, "recorded_as": first.event_id.to_string(), "error": e.to_string() }));
    if let Err(le) = events.record_own(own).await {
        tracing::error!(error = %le, "could not record the failure of a recorded policy change");
    }
}

/// Most proposals one person may have waiting per kind.
const MAX_PENDING_PER_AUTHOR: i64 = 10;

const VERSION_COLUMNS: &str = "kind, version, content, sha256, author, author_name, approvers, alone, reason, proposal_id, restores, ledger_seq, created_at";
const PROPOSAL_COLUMNS: &str = "id, kind, based_on, content, sha256, diff, reason, restores, author, author_name, \
     proposed_at, expires_at, approvals_needed, state, approvers, decisions, alone, decided_at, version, revision, \
     proposed_seq, test_report, eligible";

/// A proposal row and what the store needs of it.
struct ProposalRow {
    view: Proposal,
    approvers: Vec<String>,
    proposed_at_us: i64,
    expires_at_us: i64,
    revision: i64,
    /// Who else could approve it when it was proposed.
    eligible: usize,
}

impl ProposalRow {
    /// Refused unless still pending (expired: 410; decided: 409).
    fn pending(&self) -> Result<(), PolicyError> {
        match self.view.state.as_str() {
            "pending" => Ok(()),
            "expired" => Err(review_error(ReviewError::NotPending("expired"))),
            "approved" => Err(review_error(ReviewError::NotPending("approved"))),
            "withdrawn" => Err(review_error(ReviewError::NotPending("withdrawn"))),
            _ => Err(review_error(ReviewError::NotPending("rejected"))),
        }
    }

    /// Its rule (fixed when it was proposed) and its review so far.
    fn review(&self) -> (ReviewRule, Review) {
        let rule =
            ReviewRule { approvals: self.view.approvals_needed, ttl_us: self.expires_at_us - self.proposed_at_us };
        let mut review = Review::new(&self.view.author, self.proposed_at_us, rule);
        review.approvers = self.approvers.clone();
        (rule, review)
    }
}

impl PolicyStore {
    /// Opens the store over `events` (the ledger) with the configured
    /// review rules (`[policies.<kind>]`; a kind left out keeps its
    /// default). A rule different from the one last recorded is recorded
    /// (`custos.policy.rule_set`). The masking versions saved before the
    /// store are taken in as versions, and every kind is brought up to its
    /// newest version.
    pub async fn open(
        events: Arc<Events>,
        identity: Arc<Identity>,
        rules: &BTreeMap<String, ReviewRule>,
    ) -> Result<PolicyStore, PolicyError> {
        let mut kinds = Vec::new();
        for kind in kinds::all() {
            let rule = rules.get(kind.name()).copied().unwrap_or_else(|| kind.default_rule());
            kinds.push(KindState { kind, rule });
        }
        for name in rules.keys() {
            if !kinds.iter().any(|k| k.kind.name() == name) {
                return Err(invalid(&format!("policies.{name}"), "no such policy kind"));
            }
        }
        let store = PolicyStore {
            events,
            identity,
            kinds,
            applied: RwLock::new(BTreeMap::new()),
            changing: tokio::sync::Mutex::new(()),
        };
        store.import_masking().await?;
        store.reconcile().await?;
        store.record_rules().await?;
        store.refresh().await?;
        Ok(store)
    }

    pub(super) fn conn(&self) -> &sea_orm::DatabaseConnection {
        self.events.ledger().db().conn()
    }

    fn now(&self) -> i64 {
        self.events.ledger().now_us()
    }

    fn state(&self, name: &str) -> Result<&KindState, PolicyError> {
        self.kinds
            .iter()
            .find(|k| k.kind.name() == name)
            .ok_or_else(|| PolicyError::NotFound(format!("no policy kind `{name}`")))
    }

    /// The kinds, in display order.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn PolicyKind>> {
        self.kinds.iter().map(|k| &k.kind)
    }

    async fn record(&self, own: OwnEvent) -> Result<Receipt, PolicyError> {
        Ok(self.events.record_own(own).await?)
    }

    fn step(&self, action: &'static str, by: &Requester, kind: &str) -> OwnEvent {
        step_event(&self.events, action, by, kind)
    }

    /// Records that a recorded change failed, pointing at its record.
    async fn record_failure(&self, action: &'static str, by: &Requester, kind: &str, first: &Receipt, e: &PolicyError) {
        record_failure(&self.events, action, by, kind, first, e).await;
    }

    /// The people other than `author` (and those in `except`) who may
    /// approve now: enabled users holding `policy:approve`.
    async fn other_approvers(&self, author: &str, except: &[String]) -> Result<usize, PolicyError> {
        Ok(self
            .identity
            .holders_of(Permission::PolicyApprove)
            .await?
            .into_iter()
            .filter(|p| p != author && !except.contains(p))
            .count())
    }

    // --- reading ----------------------------------------------------------

    fn version_from_row(&self, r: &QueryResult) -> Result<PolicyVersion, PolicyError> {
        let kind: String = r.try_get("", "kind")?;
        let content: String = r.try_get("", "content")?;
        let content: Value = serde_json::from_str(&content)
            .map_err(|e| crate::ledger::LedgerError::Corrupt(format!("policy {kind}: {e}")))?;
        let summary = self.state(&kind).map(|k| k.kind.summary(&content)).unwrap_or_default();
        let created: i64 = r.try_get("", "created_at")?;
        Ok(PolicyVersion {
            version: r.try_get::<i64>("", "version")? as u64,
            sha256: r.try_get("", "sha256")?,
            summary,
            author: r.try_get("", "author")?,
            author_name: r.try_get("", "author_name")?,
            approvers: decided_list(&r.try_get::<String>("", "approvers")?),
            alone: r.try_get::<i64>("", "alone")? != 0,
            reason: r.try_get("", "reason")?,
            proposal: r.try_get("", "proposal_id")?,
            restores: opt_u64(r, "restores")?,
            created_at: Some(rfc3339(created)),
            ledger_seq: opt_u64(r, "ledger_seq")?,
            content,
            kind,
        })
    }

    fn defaults_version(&self, k: &KindState) -> PolicyVersion {
        let content = k.kind.defaults();
        PolicyVersion {
            kind: k.kind.name().into(),
            version: 0,
            sha256: patch::sha256_hex(&content),
            summary: k.kind.summary(&content),
            author: String::new(),
            author_name: "built-in defaults".into(),
            approvers: vec![],
            alone: false,
            reason: "built-in defaults".into(),
            proposal: None,
            restores: None,
            created_at: None,
            ledger_seq: None,
            content,
        }
    }

    /// Version `n` of a kind (0: its defaults).
    pub async fn version(&self, kind: &str, n: u64) -> Result<PolicyVersion, PolicyError> {
        let k = self.state(kind)?;
        if n == 0 {
            return Ok(self.defaults_version(k));
        }
        let b = self.conn().get_database_backend();
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                b,
                &format!("SELECT {VERSION_COLUMNS} FROM policy_versions WHERE kind = ? AND version = ?"),
                vec![kind.into(), (n as i64).into()],
            ))
            .await?;
        match row {
            Some(r) => self.version_from_row(&r),
            None => Err(PolicyError::NotFound(format!("{kind} has no version {n}"))),
        }
    }

    /// The version in force (0 when none was ever made).
    pub async fn active(&self, kind: &str) -> Result<PolicyVersion, PolicyError> {
        let n = self.stored_max(kind).await?;
        self.version(kind, n).await
    }

    /// The number of the version in force (one cheap query).
    pub async fn active_version(&self, kind: &str) -> Result<u64, PolicyError> {
        self.stored_max(kind).await
    }

    async fn stored_max(&self, kind: &str) -> Result<u64, PolicyError> {
        let b = self.conn().get_database_backend();
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                b,
                "SELECT MAX(version) AS v FROM policy_versions WHERE kind = ?",
                vec![kind.into()],
            ))
            .await?;
        Ok(row.map(|r| r.try_get::<Option<i64>>("", "v")).transpose()?.flatten().unwrap_or(0) as u64)
    }

    /// A kind's versions, newest first (version 0 last), `before` a version
    /// for the next page.
    pub async fn versions(
        &self,
        kind: &str,
        before: Option<u64>,
        limit: u64,
    ) -> Result<Vec<PolicyVersion>, PolicyError> {
        let k = self.state(kind)?;
        let limit = limit.clamp(1, 200);
        let b = self.conn().get_database_backend();
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                b,
                &format!(
                    "SELECT {VERSION_COLUMNS} FROM policy_versions WHERE kind = ? AND version < ? \
                     ORDER BY version DESC LIMIT ?"
                ),
                vec![kind.into(), (before.unwrap_or(i64::MAX as u64) as i64).into(), (limit as i64).into()],
            ))
            .await?;
        let mut out = rows.iter().map(|r| self.version_from_row(r)).collect::<Result<Vec<_>, _>>()?;
        if (out.len() as u64) < limit && before != Some(0) {
            out.push(self.defaults_version(k));
        }
        Ok(out)
    }

    /// Two versions and the patch between them.
    pub async fn diff(&self, kind: &str, from: u64, to: u64) -> Result<PolicyDiff, PolicyError> {
        let a = self.version(kind, from).await?;
        let b = self.version(kind, to).await?;
        Ok(PolicyDiff {
            kind: kind.into(),
            from,
            to,
            patch: patch::diff(&a.content, &b.content),
            before: a.content,
            after: b.content,
        })
    }

    fn proposal_from_row(&self, r: &QueryResult) -> Result<ProposalRow, PolicyError> {
        let kind: String = r.try_get("", "kind")?;
        let content: Value = serde_json::from_str(&r.try_get::<String>("", "content")?).unwrap_or(Value::Null);
        let diff: Vec<PatchOp> = serde_json::from_str(&r.try_get::<String>("", "diff")?).unwrap_or_default();
        let approvers: Vec<Decided> = decided_list(&r.try_get::<String>("", "approvers")?);
        let decisions: Vec<Decided> = decided_list(&r.try_get::<String>("", "decisions")?);
        let test: Option<TestReport> =
            r.try_get::<Option<String>>("", "test_report")?.and_then(|t| serde_json::from_str(&t).ok());
        let proposed_at_us: i64 = r.try_get("", "proposed_at")?;
        let expires_at_us: i64 = r.try_get("", "expires_at")?;
        let mut state: String = r.try_get("", "state")?;
        if state == "pending" && self.now() >= expires_at_us {
            state = "expired".into();
        }
        let summary = self.state(&kind).map(|k| k.kind.summary(&content)).unwrap_or_default();
        Ok(ProposalRow {
            approvers: approvers.iter().map(|a| a.principal.clone()).collect(),
            proposed_at_us,
            expires_at_us,
            revision: r.try_get("", "revision")?,
            eligible: r.try_get::<i64>("", "eligible")?.max(0) as usize,
            view: Proposal {
                id: r.try_get("", "id")?,
                based_on: r.try_get::<i64>("", "based_on")? as u64,
                sha256: r.try_get("", "sha256")?,
                summary,
                diff,
                reason: r.try_get("", "reason")?,
                restores: opt_u64(r, "restores")?,
                author: r.try_get("", "author")?,
                author_name: r.try_get("", "author_name")?,
                proposed_at: rfc3339(proposed_at_us),
                expires_at: rfc3339(expires_at_us),
                approvals_needed: r.try_get::<i64>("", "approvals_needed")? as u32,
                state,
                decisions,
                alone: r.try_get::<i64>("", "alone")? != 0,
                version: opt_u64(r, "version")?,
                test,
                content,
                kind,
            },
        })
    }

    async fn proposal_row(&self, id: &str) -> Result<ProposalRow, PolicyError> {
        let b = self.conn().get_database_backend();
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                b,
                &format!("SELECT {PROPOSAL_COLUMNS} FROM policy_proposals WHERE id = ?"),
                vec![id.into()],
            ))
            .await?;
        match row {
            Some(r) => self.proposal_from_row(&r),
            None => Err(PolicyError::NotFound(format!("no proposal `{id}`"))),
        }
    }

    /// One proposal.
    pub async fn proposal(&self, id: &str) -> Result<Proposal, PolicyError> {
        Ok(self.proposal_row(id).await?.view)
    }

    /// The pending proposals of a kind (all kinds: None), oldest first.
    pub async fn pending(&self, kind: Option<&str>) -> Result<Vec<Proposal>, PolicyError> {
        let b = self.conn().get_database_backend();
        let (cond, mut values): (&str, Vec<DbValue>) = match kind {
            Some(k) => ("AND kind = ?", vec![k.into()]),
            None => ("", vec![]),
        };
        values.insert(0, self.now().into());
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                b,
                &format!(
                    "SELECT {PROPOSAL_COLUMNS} FROM policy_proposals WHERE state = 'pending' AND expires_at > ? {cond} \
                     ORDER BY proposed_at LIMIT 200"
                ),
                values,
            ))
            .await?;
        rows.iter().map(|r| self.proposal_from_row(r).map(|p| p.view)).collect()
    }

    /// A kind: its version in force, rule and pending proposals.
    pub async fn kind(&self, name: &str) -> Result<PolicyKindView, PolicyError> {
        let k = self.state(name)?;
        Ok(PolicyKindView {
            kind: name.into(),
            title: k.kind.title().into(),
            permission: k.kind.permission().as_str().into(),
            review: ReviewRuleView { approvals: k.rule.approvals, ttl_days: (k.rule.ttl_us / DAY_US) as u32 },
            active: self.active(name).await?,
            pending: self.pending(Some(name)).await?,
        })
    }

    /// Every kind.
    pub async fn overview(&self) -> Result<PolicyOverview, PolicyError> {
        let mut kinds = Vec::new();
        for k in &self.kinds {
            kinds.push(self.kind(k.kind.name()).await?);
        }
        Ok(PolicyOverview { kinds })
    }

    // --- keeping up -------------------------------------------------------

    /// Brings every kind on this replica up to its newest stored version
    /// (another replica's activation takes effect here within one refresh).
    pub async fn refresh(&self) -> Result<(), PolicyError> {
        let b = self.conn().get_database_backend();
        let rows = self
            .conn()
            .query_all_raw(stmt_for(b, "SELECT kind, MAX(version) AS v FROM policy_versions GROUP BY kind", vec![]))
            .await?;
        for r in rows {
            let name: String = r.try_get("", "kind")?;
            let v = r.try_get::<i64>("", "v")? as u64;
            let Ok(k) = self.state(&name) else { continue };
            let known = self.applied.read().unwrap_or_else(|p| p.into_inner()).get(k.kind.name()).copied();
            if known.is_none_or(|n| n < v) {
                k.kind.apply(&self.events, &self.version(&name, v).await?).await?;
                self.applied.write().unwrap_or_else(|p| p.into_inner()).insert(k.kind.name(), v);
            }
        }
        Ok(())
    }

    /// Takes in the masking versions saved before the store (each with its
    /// `policy.masking.update` entry).
    async fn import_masking(&self) -> Result<(), PolicyError> {
        let conn = self.conn();
        let b = conn.get_database_backend();
        let rows = conn
            .query_all_raw(stmt_for(
                b,
                "SELECT m.version, m.rules, m.created_at, m.created_by, m.comment FROM masking_policy_versions m \
                 WHERE NOT EXISTS (SELECT 1 FROM policy_versions p WHERE p.kind = 'masking' AND p.version = m.version) \
                 ORDER BY m.version",
                vec![],
            ))
            .await?;
        for r in rows {
            let version: i64 = r.try_get("", "version")?;
            let rules: Value = serde_json::from_str(&r.try_get::<String>("", "rules")?).unwrap_or(Value::Null);
            let content = patch::canonical(&json!({ "rules": rules }));
            let entry = conn
                .query_one_raw(stmt_for(
                    b,
                    "SELECT seq FROM ledger_entries WHERE action = ? AND source_app = 'custos' \
                     AND resource_type = 'masking_policy' AND resource_id = ? ORDER BY seq LIMIT 1",
                    vec![step::LEGACY_MASKING.into(), version.to_string().into()],
                ))
                .await?;
            let Some(entry) = entry else {
                tracing::warn!(version, "masking version without its ledger entry: not taken into the policy store");
                continue;
            };
            let seq: i64 = entry.try_get("", "seq")?;
            let by: String = r.try_get("", "created_by")?;
            conn.execute_raw(stmt_for(
                b,
                &format!("INSERT INTO policy_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, '[]', 0, ?, NULL, NULL, ?, ?)"),
                vec![
                    "masking".into(),
                    version.into(),
                    String::from_utf8_lossy(&patch::canonical_bytes(&content)).into_owned().into(),
                    patch::sha256_hex(&content).into(),
                    by.clone().into(),
                    by.into(),
                    r.try_get::<String>("", "comment")?.into(),
                    seq.into(),
                    r.try_get::<i64>("", "created_at")?.into(),
                ],
            ))
            .await?;
        }
        Ok(())
    }

    /// Finds activations the ledger recorded whose version was never stored
    /// (the process stopped between the two) and records their failure, so
    /// the trail rebuilt from the ledger leaves them out. Only entries older
    /// than five minutes: another replica may be storing a newer one now.
    async fn reconcile(&self) -> Result<(), PolicyError> {
        let b = self.conn().get_database_backend();
        let backed: std::collections::BTreeSet<u64> = self
            .conn()
            .query_all_raw(stmt_for(b, "SELECT ledger_seq FROM policy_versions", vec![]))
            .await?
            .iter()
            .map(|r| r.try_get::<i64>("", "ledger_seq").map(|v| v as u64))
            .collect::<Result<_, _>>()?;
        let mut f = SearchFilter {
            categories: vec!["policy".into()],
            actions: vec![step::ACTIVATED.into(), step::ROLLED_BACK.into()],
            descending: false,
            limit: 1000,
            only_own: true,
            ..Default::default()
        };
        let mut done = std::collections::BTreeSet::new();
        let mut candidates = Vec::new();
        loop {
            let page = self.events.search(&f).await?;
            let last = page.items.last().map(|e| e.seq);
            for e in page.items {
                let d = e.details.clone().unwrap_or(Value::Null);
                if let Some(first) = d.get("recorded_as").and_then(Value::as_str) {
                    done.insert(first.to_owned());
                } else if e.outcome == "success" && !backed.contains(&e.seq) {
                    candidates.push(e);
                }
            }
            match (page.next_cursor, last) {
                (Some(_), Some(seq)) => f.after_seq = Some(seq),
                _ => break,
            }
        }
        let cutoff = self.now() - 5 * 60 * 1_000_000;
        let by = Requester::custos("policy store start-up");
        for e in candidates {
            let at = crate::time::parse_rfc3339(&e.recorded_at).unwrap_or(i64::MAX);
            if done.contains(&e.id.to_string()) || at > cutoff {
                continue;
            }
            let kind = e.details.as_ref().and_then(|d| d.get("kind")?.as_str().map(str::to_owned)).unwrap_or_default();
            let receipt = Receipt { seq: e.seq, event_id: e.id, recorded_at_us: at, duplicate: false };
            let err = PolicyError::Conflict("the version was not stored (the server stopped first)".into());
            tracing::warn!(seq = e.seq, kind, "a recorded policy activation has no version: recording its failure");
            self.record_failure(
                if e.action == step::ROLLED_BACK { step::ROLLED_BACK } else { step::ACTIVATED },
                &by,
                &kind,
                &receipt,
                &err,
            )
            .await;
        }
        Ok(())
    }

    /// Records each kind's rule when it differs from the one last recorded.
    async fn record_rules(&self) -> Result<(), PolicyError> {
        let conn = self.conn();
        let b = conn.get_database_backend();
        for k in &self.kinds {
            let name = k.kind.name();
            let row = conn
                .query_one_raw(stmt_for(
                    b,
                    "SELECT approvals, ttl_us FROM policy_review_rules WHERE kind = ?",
                    vec![name.into()],
                ))
                .await?;
            let previous = row
                .map(|r| -> Result<(i64, i64), sea_orm::DbErr> {
                    Ok((r.try_get("", "approvals")?, r.try_get("", "ttl_us")?))
                })
                .transpose()?;
            let now = (k.rule.approvals as i64, k.rule.ttl_us);
            if previous == Some(now) || (previous.is_none() && k.rule == k.kind.default_rule()) {
                continue;
            }
            let by = Requester::custos("configuration");
            let severity = if k.rule.approvals == 0 { Severity::Warning } else { Severity::Notice };
            let receipt = self
                .record(self.step(step::RULE_SET, &by, name).severity(severity).details(json!({
                    "kind": name,
                    "approvals": k.rule.approvals,
                    "ttl_days": k.rule.ttl_us / DAY_US,
                    "previous": previous.map(|(a, t)| json!({ "approvals": a, "ttl_days": t / DAY_US })),
                    "note": if k.rule.approvals == 0 { "changes take effect without a second person" } else { "" },
                })))
                .await?;
            let sql = if previous.is_some() {
                "UPDATE policy_review_rules SET approvals = ?, ttl_us = ?, set_at = ?, ledger_seq = ? WHERE kind = ?"
            } else {
                "INSERT INTO policy_review_rules (approvals, ttl_us, set_at, ledger_seq, kind) VALUES (?, ?, ?, ?, ?)"
            };
            conn.execute_raw(stmt_for(
                b,
                sql,
                vec![now.0.into(), now.1.into(), self.now().into(), (receipt.seq as i64).into(), name.into()],
            ))
            .await?;
        }
        Ok(())
    }

    // --- changing ---------------------------------------------------------

    fn text(&self, field: &str, text: &str, required: bool) -> Result<String, PolicyError> {
        let t = text.trim();
        if required && t.is_empty() {
            return Err(invalid(field, "is required: say why"));
        }
        if t.chars().count() > MAX_TEXT {
            return Err(invalid(field, format!("must be at most {MAX_TEXT} characters")));
        }
        Ok(self.events.mask_free_text(t))
    }

    fn sample(&self) -> Sample {
        Sample { since_us: self.now() - DEFAULT_SAMPLE_DAYS * DAY_US, limit: DEFAULT_SAMPLE }
    }

    /// A dry-run of `content` over recent history (default: 1,000 events
    /// of the last 7 days). Recorded (`custos.policy.tested`, counts only).
    pub async fn test(
        &self,
        by: &Requester,
        held: &PermissionSet,
        kind: &str,
        content: &Value,
        sample: Option<Sample>,
    ) -> Result<TestReport, PolicyError> {
        let k = self.state(kind)?;
        if !held.allows(k.kind.permission()) {
            return Err(PolicyError::Forbidden(format!("testing a {kind} policy needs {}", k.kind.permission())));
        }
        let content = &k.kind.prepare(&self.events, content.clone()).map_err(PolicyError::Invalid)?;
        let doc = k.kind.validate(content).map_err(PolicyError::Invalid)?;
        let sample = sample.unwrap_or_else(|| self.sample());
        if !(1..=5_000).contains(&sample.limit) {
            return Err(invalid("limit", "must be between 1 and 5000"));
        }
        let current = self.active(kind).await?;
        let mut report = k.kind.test(&self.events, &current.content, &doc, sample).await?;
        self.record_test(by, kind, None, &report).await?;
        if !held.allows(Permission::AuditRead) {
            // Examples are values from stored events: for readers of the log.
            for r in &mut report.rows {
                r.examples.clear();
            }
            report.notes.push("Examples are shown to holders of audit:read only.".into());
        }
        Ok(report)
    }

    async fn record_test(
        &self,
        by: &Requester,
        kind: &str,
        proposal: Option<&str>,
        report: &TestReport,
    ) -> Result<Receipt, PolicyError> {
        let counts: Vec<Value> = report
            .rows
            .iter()
            .map(|r| json!({ "label": r.label, "current": r.current, "proposed": r.proposed }))
            .collect();
        self.record(self.step(step::TESTED, by, kind).severity(Severity::Info).details(json!({
            "kind": kind,
            "proposal": proposal,
            "sha256": report.sha256,
            "sample": { "events": report.events, "from": report.from, "to": report.to },
            "counts": counts,
        })))
        .await
    }

    /// Proposes a change. Refused (409) when `based_on` is not the version
    /// in force. Under a rule needing no approval it takes effect at once.
    pub async fn propose(
        &self,
        by: &Requester,
        held: &PermissionSet,
        kind: &str,
        p: NewProposal,
    ) -> Result<Proposal, PolicyError> {
        let k = self.state(kind)?;
        if !held.allows(k.kind.permission()) {
            return Err(PolicyError::Forbidden(format!("proposing a {kind} policy needs {}", k.kind.permission())));
        }
        if by.actor.kind != "user" {
            return Err(PolicyError::Forbidden("only a signed-in person can propose a policy change".into()));
        }
        let reason = self.text("reason", &p.reason, true)?;
        let (field, content) = match (p.restores, &p.content) {
            (Some(_), Some(_)) => return Err(invalid("content", "leave it out for a rollback (`restores`)")),
            (Some(n), None) => {
                let old = match self.version(kind, n).await {
                    Err(PolicyError::NotFound(m)) => return Err(invalid("restores", m)),
                    other => other?,
                };
                // An old version must still be valid for this release.
                let valid = k.kind.validate(&old.content).map_err(|f| {
                    invalid("restores", format!("version {n} is no longer a valid policy: {}: {}", f.path, f.reason))
                })?;
                ("restores", valid)
            }
            (None, Some(c)) => {
                let c = k.kind.prepare(&self.events, c.clone()).map_err(PolicyError::Invalid)?;
                ("content", k.kind.validate(&c).map_err(PolicyError::Invalid)?)
            }
            (None, None) => return Err(invalid("content", "is required (or `restores`, for a rollback)")),
        };
        if let Some((needed, why)) = k.kind.needs(&content).into_iter().find(|(p, _)| !held.allows(*p)) {
            return Err(PolicyError::Forbidden(format!("{why}: it needs {needed}")));
        }
        // The dry-run is made before taking the change lock: it reads history.
        let in_force = self.active(kind).await?;
        let test = k.kind.test(&self.events, &in_force.content, &content, self.sample()).await?;
        let _one = self.changing.lock().await;
        let waiting = self
            .conn()
            .query_one_raw(stmt_for(
                self.conn().get_database_backend(),
                "SELECT COUNT(*) AS n FROM policy_proposals WHERE kind = ? AND author = ? AND state = 'pending' \
                 AND expires_at > ?",
                vec![kind.into(), by.owner.clone().into(), self.now().into()],
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if waiting >= MAX_PENDING_PER_AUTHOR {
            return Err(PolicyError::Conflict(format!(
                "you have {waiting} {kind} proposals waiting for review (at most {MAX_PENDING_PER_AUTHOR}); \
                 wait for their review or expiry"
            )));
        }
        let eligible = self.other_approvers(&by.owner, &[]).await?;
        self.refresh().await?;
        let current = self.active(kind).await?;
        if p.based_on != current.version {
            return Err(PolicyError::Conflict(format!(
                "based_on: version {} is not the version in force ({}); reload, and propose on top of it",
                p.based_on, current.version
            )));
        }
        let sha256 = patch::sha256_hex(&content);
        if sha256 == current.sha256 {
            return Err(invalid(
                field,
                format!("is the same as version {} in force: nothing to change", current.version),
            ));
        }
        let diff = patch::diff(&current.content, &content);
        let now = self.now();
        let rule = k.rule;
        let id = Uuid::now_v7().to_string();
        let expires = now + rule.ttl_us;
        let author_name = by.actor.name.clone().unwrap_or_else(|| by.actor.id.clone());
        let receipt = self
            .record(self.step(step::PROPOSED, by, kind).details(json!({
                "kind": kind,
                "proposal": id,
                "based_on": p.based_on,
                "sha256": sha256,
                "diff": diff,
                "reason": reason,
                "summary": k.kind.summary(&content),
                "restores": p.restores,
                "approvals_needed": rule.approvals,
                "expires_at": rfc3339(expires),
            })))
            .await?;
        let inserted = self
            .conn()
            .execute_raw(stmt_for(
                self.conn().get_database_backend(),
                &format!(
                    "INSERT INTO policy_proposals ({PROPOSAL_COLUMNS}) VALUES \
                          (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', '[]', '[]', 0, NULL, NULL, 0, ?, ?, ?)"
                ),
                vec![
                    id.clone().into(),
                    kind.into(),
                    (p.based_on as i64).into(),
                    String::from_utf8_lossy(&patch::canonical_bytes(&content)).into_owned().into(),
                    sha256.clone().into(),
                    to_json(&diff).into(),
                    reason.clone().into(),
                    p.restores.map(|v| v as i64).into(),
                    by.owner.clone().into(),
                    author_name.into(),
                    now.into(),
                    expires.into(),
                    (rule.approvals as i64).into(),
                    (receipt.seq as i64).into(),
                    to_json(&TestReport {
                        rows: test
                            .rows
                            .iter()
                            .map(|r| custos_model::TestRow { examples: vec![], ..r.clone() })
                            .collect(),
                        ..test.clone()
                    })
                    .into(),
                    (eligible as i64).into(),
                ],
            ))
            .await;
        if let Err(e) = inserted {
            let e = PolicyError::from(e);
            self.record_failure(step::PROPOSED, by, kind, &receipt, &e).await;
            return Err(e);
        }
        self.record_test(by, kind, Some(&id), &test).await?;
        let row = self.proposal_row(&id).await?;
        if rule.approvals == 0 {
            return self.make_version(by, k, row, Vec::new(), false, None).await;
        }
        Ok(row.view)
    }

    /// Approves or rejects someone else's proposal, with a comment. The
    /// approval that completes it makes the next version at once.
    pub async fn decide(
        &self,
        by: &Requester,
        held: &PermissionSet,
        id: &str,
        decision: Decision,
        comment: &str,
    ) -> Result<Proposal, PolicyError> {
        if !held.allows(Permission::PolicyApprove) || by.actor.kind != "user" {
            return Err(PolicyError::Forbidden("deciding on a proposal needs a person with policy:approve".into()));
        }
        let comment = self.text("comment", comment, decision == Decision::Reject)?;
        let _one = self.changing.lock().await;
        let row = self.proposal_row(id).await?;
        let k = self.state(&row.view.kind)?;
        row.pending()?;
        let (rule, mut review) = row.review();
        let now = self.now();
        let state = review.decide(rule, &by.owner, decision, now).map_err(review_error)?;
        // A second account made after the proposal (by its author, say)
        // cannot be the second person.
        let created = match by.owner.strip_prefix("user:").and_then(|id| id.parse::<i64>().ok()) {
            Some(id) => self.identity.user_created_at(id).await?,
            None => None,
        };
        if created.is_none_or(|t| t > row.proposed_at_us) {
            return Err(PolicyError::Forbidden(
                "your account was created after this proposal was made: only people whose accounts predate a \
                 proposal may decide on it"
                    .into(),
            ));
        }
        let name = by.actor.name.clone().unwrap_or_else(|| by.actor.id.clone());
        let word = if decision == Decision::Approve { "approved" } else { "rejected" };
        let entry = Decided { principal: by.owner.clone(), name, decision: word.into(), at: rfc3339(now), comment };
        if state == ReviewState::Approved {
            self.refresh().await?;
            self.stale_check(&row).await?;
        }
        let action = if decision == Decision::Approve { step::APPROVED } else { step::REJECTED };
        let receipt = self
            .record(self.step(action, by, &row.view.kind).details(json!({
                "kind": row.view.kind,
                "proposal": id,
                "sha256": row.view.sha256,
                "approvers": review.approvers,
                "needed": rule.approvals,
                "comment": entry.comment,
            })))
            .await?;
        let mut decisions = row.view.decisions.clone();
        decisions.push(entry);
        if state == ReviewState::Approved {
            return self.make_version(by, k, row, decisions, false, Some((action, &receipt))).await;
        }
        let approvers: Vec<&Decided> = decisions.iter().filter(|d| approves(d)).collect();
        let new_state = if state == ReviewState::Rejected { "rejected" } else { "pending" };
        let updated = self
            .conn()
            .execute_raw(stmt_for(
                self.conn().get_database_backend(),
                "UPDATE policy_proposals SET state = ?, approvers = ?, decisions = ?, decided_at = ?, \
                 revision = revision + 1 WHERE id = ? AND revision = ? AND state = 'pending'",
                vec![
                    new_state.into(),
                    to_json(&approvers).into(),
                    to_json(&decisions).into(),
                    (state == ReviewState::Rejected).then_some(now).into(),
                    id.into(),
                    row.revision.into(),
                ],
            ))
            .await;
        let e = match updated {
            Ok(r) if r.rows_affected() == 1 => return self.proposal(id).await,
            Ok(_) => PolicyError::Conflict("someone else decided on this proposal at the same time; reload".into()),
            Err(e) => e.into(),
        };
        self.record_failure(action, by, &row.view.kind, &receipt, &e).await;
        Err(e)
    }

    /// The author activates a proposal alone: allowed only while the
    /// approvals it has and could still get fall short of its rule (a fresh
    /// installation with one admin). Recorded as approved without a second
    /// person.
    pub async fn activate_alone(
        &self,
        by: &Requester,
        held: &PermissionSet,
        id: &str,
    ) -> Result<Proposal, PolicyError> {
        let _one = self.changing.lock().await;
        let row = self.proposal_row(id).await?;
        let k = self.state(&row.view.kind)?;
        if !held.allows(k.kind.permission()) {
            return Err(PolicyError::Forbidden(format!("activating needs {}", k.kind.permission())));
        }
        row.pending()?;
        let now_others = self.other_approvers(&row.view.author, &row.approvers).await?;
        // Who could approve when it was proposed counts too: disabling the
        // other approvers afterwards does not open the way alone.
        let others = now_others.max(row.eligible.saturating_sub(row.approvers.len()));
        let (rule, mut review) = row.review();
        let now = self.now();
        review.activate_alone(rule, &by.owner, others, now).map_err(|e| match e {
            ReviewError::NotAlone(_) if by.owner == row.view.author && now_others < others => {
                PolicyError::Forbidden(format!(
                    "{} other people could approve this when it was proposed: ask them, or propose it again if they no \
                 longer can",
                    row.eligible
                ))
            }
            e => review_error(e),
        })?;
        self.refresh().await?;
        self.stale_check(&row).await?;
        let mut decisions = row.view.decisions.clone();
        decisions.push(Decided {
            principal: by.owner.clone(),
            name: by.actor.name.clone().unwrap_or_else(|| by.actor.id.clone()),
            decision: "activated_alone".into(),
            at: rfc3339(now),
            comment: format!("approved without a second person: {others} other user(s) can approve {}", row.view.kind),
        });
        self.make_version(by, k, row, decisions, true, None).await
    }

    /// The author withdraws a pending proposal (recorded, with a comment).
    pub async fn withdraw(&self, by: &Requester, id: &str, comment: &str) -> Result<Proposal, PolicyError> {
        let comment = self.text("comment", comment, false)?;
        let _one = self.changing.lock().await;
        let row = self.proposal_row(id).await?;
        if by.owner != row.view.author {
            return Err(PolicyError::Forbidden("only its author may withdraw a proposal".into()));
        }
        row.pending()?;
        let now = self.now();
        let receipt = self
            .record(self.step(step::WITHDRAWN, by, &row.view.kind).details(json!({
                "kind": row.view.kind,
                "proposal": id,
                "sha256": row.view.sha256,
                "comment": comment,
            })))
            .await?;
        let mut decisions = row.view.decisions.clone();
        decisions.push(Decided {
            principal: by.owner.clone(),
            name: by.actor.name.clone().unwrap_or_else(|| by.actor.id.clone()),
            decision: "withdrawn".into(),
            at: rfc3339(now),
            comment,
        });
        let updated = self
            .conn()
            .execute_raw(stmt_for(
                self.conn().get_database_backend(),
                "UPDATE policy_proposals SET state = 'withdrawn', decisions = ?, decided_at = ?, \
                 revision = revision + 1 WHERE id = ? AND revision = ? AND state = 'pending'",
                vec![to_json(&decisions).into(), now.into(), id.into(), row.revision.into()],
            ))
            .await;
        let e = match updated {
            Ok(r) if r.rows_affected() == 1 => return self.proposal(id).await,
            Ok(_) => PolicyError::Conflict("someone decided on this proposal at the same time; reload".into()),
            Err(e) => e.into(),
        };
        self.record_failure(step::WITHDRAWN, by, &row.view.kind, &receipt, &e).await;
        Err(e)
    }

    async fn stale_check(&self, row: &ProposalRow) -> Result<(), PolicyError> {
        let in_force = self.stored_max(&row.view.kind).await?;
        if in_force != row.view.based_on {
            return Err(PolicyError::Conflict(format!(
                "this proposal changes version {} but version {in_force} is in force now; propose again on top of it",
                row.view.based_on
            )));
        }
        Ok(())
    }

    /// Makes the next version of an approved proposal: recorded
    /// (`activated` or `rolled_back`), then one transaction (the proposal
    /// closed by compare-and-set, the version, the kind's own row), then
    /// put in force.
    async fn make_version(
        &self,
        by: &Requester,
        k: &KindState,
        row: ProposalRow,
        decisions: Vec<Decided>,
        alone: bool,
        approval: Option<(&'static str, &Receipt)>,
    ) -> Result<Proposal, PolicyError> {
        let made = self.store_version(by, k, &row, decisions, alone).await;
        let made = match (made, approval) {
            (Err(e), Some((action, receipt))) => {
                // The approval's record said it worked: record that it did not.
                self.record_failure(action, by, k.kind.name(), receipt, &e).await;
                Err(e)
            }
            (r, _) => r,
        }?;
        k.kind.apply(&self.events, &made).await?;
        self.applied.write().unwrap_or_else(|p| p.into_inner()).insert(k.kind.name(), made.version);
        self.proposal(&row.view.id).await
    }

    /// Records the activation, then stores the version in one transaction
    /// run as its own task: a request that goes away meanwhile does not
    /// leave a recorded activation without its version (or without the
    /// record of its failure).
    async fn store_version(
        &self,
        by: &Requester,
        k: &KindState,
        row: &ProposalRow,
        decisions: Vec<Decided>,
        alone: bool,
    ) -> Result<PolicyVersion, PolicyError> {
        let kind = k.kind.name();
        let previous = self.version(kind, row.view.based_on).await?;
        let version = row.view.based_on + 1;
        let now = self.now();
        let approvers: Vec<Decided> = decisions.iter().filter(|d| approves(d)).cloned().collect();
        let action = if row.view.restores.is_some() { step::ROLLED_BACK } else { step::ACTIVATED };
        let severity = if alone || row.view.restores.is_some() { Severity::Warning } else { Severity::Notice };
        let receipt = self
            .record(self.step(action, by, kind).severity(severity).details(json!({
                "kind": kind,
                "version": version,
                "previous": previous.version,
                "previous_sha256": previous.sha256,
                "sha256": row.view.sha256,
                "diff": row.view.diff,
                "reason": row.view.reason,
                "author": row.view.author,
                "author_name": row.view.author_name,
                "approvers": approvers.iter().map(|a| json!({ "principal": a.principal, "name": a.name, "decision": a.decision })).collect::<Vec<_>>(),
                "alone": alone,
                "proposal": row.view.id,
                "restores": row.view.restores,
            })))
            .await?;
        let made = PolicyVersion {
            kind: kind.into(),
            version,
            content: row.view.content.clone(),
            sha256: row.view.sha256.clone(),
            summary: row.view.summary.clone(),
            author: row.view.author.clone(),
            author_name: row.view.author_name.clone(),
            approvers: approvers.clone(),
            alone,
            reason: row.view.reason.clone(),
            proposal: Some(row.view.id.clone()),
            restores: row.view.restores,
            created_at: Some(rfc3339(now)),
            ledger_seq: Some(receipt.seq),
        };
        let (conn, events, kind_impl, by_owned) =
            (self.conn().clone(), self.events.clone(), k.kind.clone(), by.clone());
        let (id, revision, made_out) = (row.view.id.clone(), row.revision, made.clone());
        let task = tokio::spawn(async move {
            let kind = kind_impl.name();
            let made = made_out;
            let result: Result<(), PolicyError> = async {
            let tx = conn.begin().await?;
            let b = tx.get_database_backend();
            let closed = tx
                .execute_raw(stmt_for(
                    b,
                    "UPDATE policy_proposals SET state = 'approved', approvers = ?, decisions = ?, alone = ?, \
                     decided_at = ?, version = ?, revision = revision + 1 WHERE id = ? AND revision = ? AND state = 'pending'",
                    vec![
                        to_json(&approvers).into(),
                        to_json(&decisions).into(),
                        i64::from(alone).into(),
                        now.into(),
                        (version as i64).into(),
                        id.clone().into(),
                        revision.into(),
                    ],
                ))
                .await?;
            if closed.rows_affected() != 1 {
                return Err(PolicyError::Conflict("someone else decided on this proposal at the same time; reload".into()));
            }
            tx.execute_raw(stmt_for(
                b,
                &format!("INSERT INTO policy_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                vec![
                    kind.into(),
                    (version as i64).into(),
                    String::from_utf8_lossy(&patch::canonical_bytes(&made.content)).into_owned().into(),
                    made.sha256.clone().into(),
                    made.author.clone().into(),
                    made.author_name.clone().into(),
                    to_json(&approvers).into(),
                    i64::from(alone).into(),
                    made.reason.clone().into(),
                    made.proposal.clone().into(),
                    made.restores.map(|v| v as i64).into(),
                    (receipt.seq as i64).into(),
                    now.into(),
                ],
            ))
            .await
            .map_err(|e| match e.sql_err() {
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => PolicyError::Conflict(format!(
                    "another change made version {version} of {kind} at the same time; propose again on top of it"
                )),
                _ => e.into(),
            })?;
            kind_impl.persist(&tx, &made).await?;
            tx.commit().await?;
            Ok(())
            }
            .await;
            if let Err(e) = &result {
                record_failure(&events, action, &by_owned, kind, &receipt, e).await;
            }
            result
        });
        task.await.map_err(|e| {
            PolicyError::Events(crate::ledger::LedgerError::Corrupt(format!("storing a policy version: {e}")).into())
        })??;
        Ok(made)
    }

    /// Closes the pending proposals whose time ran out (recorded as
    /// `custos.policy.expired` by Custos). Returns how many.
    pub async fn expire_due(&self) -> Result<usize, PolicyError> {
        let _one = self.changing.lock().await;
        let b = self.conn().get_database_backend();
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                b,
                &format!(
                    "SELECT {PROPOSAL_COLUMNS} FROM policy_proposals WHERE state = 'pending' AND expires_at <= ? \
                     AND (decided_at IS NULL OR decided_at < ?) ORDER BY expires_at LIMIT 100"
                ),
                vec![self.now().into(), (self.now() - CLAIM_US).into()],
            ))
            .await?;
        let by = Requester::custos("proposal expiry");
        let mut n = 0;
        for r in &rows {
            let row = self.proposal_from_row(r)?;
            // Claimed first (its revision, and `decided_at` as the claim's
            // time, so a replica reading it after the claim skips it; the
            // state changes after the record): on several replicas, one
            // records each expiry, the others skip it. A claim whose
            // replica died is taken again after CLAIM_US.
            let claimed = self
                .conn()
                .execute_raw(stmt_for(
                    b,
                    "UPDATE policy_proposals SET revision = revision + 1, decided_at = ? \
                     WHERE id = ? AND revision = ? AND state = 'pending'",
                    vec![self.now().into(), row.view.id.clone().into(), row.revision.into()],
                ))
                .await?;
            if claimed.rows_affected() != 1 {
                continue;
            }
            let revision = row.revision + 1;
            let receipt = self
                .record(self.step(step::EXPIRED, &by, &row.view.kind).severity(Severity::Info).details(json!({
                    "kind": row.view.kind,
                    "proposal": row.view.id,
                    "sha256": row.view.sha256,
                    "approvers": row.approvers,
                    "needed": row.view.approvals_needed,
                })))
                .await?;
            let done = self
                .conn()
                .execute_raw(stmt_for(
                    b,
                    "UPDATE policy_proposals SET state = 'expired', decided_at = ?, revision = revision + 1 \
                     WHERE id = ? AND revision = ? AND state = 'pending'",
                    vec![self.now().into(), row.view.id.clone().into(), revision.into()],
                ))
                .await;
            match done {
                Ok(r) if r.rows_affected() == 1 => n += 1,
                Ok(_) => {
                    let e = PolicyError::Conflict("decided meanwhile".into());
                    self.record_failure(step::EXPIRED, &by, &row.view.kind, &receipt, &e).await;
                }
                Err(e) => {
                    let e = PolicyError::from(e);
                    self.record_failure(step::EXPIRED, &by, &row.view.kind, &receipt, &e).await;
                    return Err(e);
                }
            }
        }
        Ok(n)
    }
}
