//! The policy store's shapes: kinds, versions, proposals, dry-runs and the
//! trail, as the API answers them and the pages show them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One operation of an RFC 6902 JSON Patch (the subset diffs produce).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOp {
    /// Adds `value` at `path` (an array index inserts).
    Add {
        /// JSON Pointer (RFC 6901).
        path: String,
        /// The value added.
        value: Value,
    },
    /// Removes what is at `path`.
    Remove {
        /// JSON Pointer (RFC 6901).
        path: String,
    },
    /// Replaces what is at `path` with `value`.
    Replace {
        /// JSON Pointer (RFC 6901).
        path: String,
        /// The new value.
        value: Value,
    },
}

/// Someone's decision on a proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Decided {
    /// The principal (`user:<id>`).
    pub principal: String,
    /// Their name when they decided.
    pub name: String,
    /// `approved`, `rejected`, `activated_alone` or `withdrawn`.
    pub decision: String,
    /// When (RFC 3339).
    pub at: String,
    /// What they said (masked by the policy in force).
    #[serde(default)]
    pub comment: String,
}

/// How a kind's proposals are reviewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewRuleView {
    /// Approvals needed from people other than the author.
    pub approvals: u32,
    /// Days a proposal waits for them.
    pub ttl_days: u32,
}

/// An immutable version of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyVersion {
    /// The kind, e.g. `masking`.
    pub kind: String,
    /// 1, 2, …; 0 is the kind's built-in defaults.
    pub version: u64,
    /// The document.
    pub content: Value,
    /// SHA-256 of the document's canonical JSON (hex).
    pub sha256: String,
    /// One line for people.
    pub summary: String,
    /// Who proposed it (principal); empty for the defaults.
    pub author: String,
    /// Their name.
    pub author_name: String,
    /// Who approved it.
    pub approvers: Vec<Decided>,
    /// Activated by its author while nobody else could approve.
    pub alone: bool,
    /// Why.
    pub reason: String,
    /// The proposal it came from (none for the defaults and for masking
    /// versions saved before the policy store).
    pub proposal: Option<String>,
    /// A rollback: the version whose content it repeats.
    pub restores: Option<u64>,
    /// When it took effect (RFC 3339); none for the defaults.
    pub created_at: Option<String>,
    /// The ledger entry recording its activation.
    pub ledger_seq: Option<u64>,
}

/// A proposed change of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Proposal {
    /// Its id.
    pub id: String,
    /// The kind.
    pub kind: String,
    /// The version it changes.
    pub based_on: u64,
    /// The proposed document.
    pub content: Value,
    /// SHA-256 of its canonical JSON (hex).
    pub sha256: String,
    /// One line for people.
    pub summary: String,
    /// From `based_on` to `content`.
    pub diff: Vec<PatchOp>,
    /// Why (masked by the policy in force).
    pub reason: String,
    /// A rollback to this version.
    pub restores: Option<u64>,
    /// Who proposed it (principal).
    pub author: String,
    /// Their name.
    pub author_name: String,
    /// When (RFC 3339).
    pub proposed_at: String,
    /// When it expires unless decided (RFC 3339).
    pub expires_at: String,
    /// Approvals it needs.
    pub approvals_needed: u32,
    /// `pending`, `approved`, `rejected`, `expired` or `withdrawn`.
    pub state: String,
    /// Every decision so far, in order.
    pub decisions: Vec<Decided>,
    /// Activated by its author alone.
    pub alone: bool,
    /// The version it became.
    pub version: Option<u64>,
    /// The dry-run made when it was proposed (counts only).
    pub test: Option<TestReport>,
}

/// A kind with its active version and open proposals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyKindView {
    /// The kind, e.g. `masking`.
    pub kind: String,
    /// For people.
    pub title: String,
    /// What proposing a change needs.
    pub permission: String,
    /// Its review rule.
    pub review: ReviewRuleView,
    /// The version in force (0: the built-in defaults).
    pub active: PolicyVersion,
    /// Proposals waiting for a decision.
    pub pending: Vec<Proposal>,
}

/// Every kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyOverview {
    /// The kinds, in registry order.
    pub kinds: Vec<PolicyKindView>,
}

/// Two versions of a kind and the patch between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyDiff {
    /// The kind.
    pub kind: String,
    /// From this version.
    pub from: u64,
    /// To this one.
    pub to: u64,
    /// Its document.
    pub before: Value,
    /// Its document.
    pub after: Value,
    /// RFC 6902, from `before` to `after`.
    pub patch: Vec<PatchOp>,
}

/// A before/after example of a dry-run, both already masked by the policy
/// in force (no value it hides is ever shown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestExample {
    /// The event.
    pub event_id: String,
    /// As stored today.
    pub before: String,
    /// Under the proposal.
    pub after: String,
}

/// One line of a dry-run: a rule (or part) of the proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestRow {
    /// What it is, e.g. `email: redact`.
    pub label: String,
    /// Values (or events) it affects under the policy in force.
    pub current: u64,
    /// Under the proposal.
    pub proposed: u64,
    /// Up to three examples (none in the ledger's record of the test).
    #[serde(default)]
    pub examples: Vec<TestExample>,
}

/// A dry-run of a proposed document against recent history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TestReport {
    /// The kind.
    pub kind: String,
    /// SHA-256 of the document tested (hex).
    pub sha256: String,
    /// Events looked at.
    pub events: u64,
    /// The oldest one's time (RFC 3339).
    pub from: Option<String>,
    /// The newest one's time (RFC 3339).
    pub to: Option<String>,
    /// One row per rule or part.
    pub rows: Vec<TestRow>,
    /// What to keep in mind reading it.
    pub notes: Vec<String>,
}

/// One step of a policy's life, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrailEntry {
    /// The ledger sequence number.
    pub seq: u64,
    /// The event id (its proof: `GET /api/audit/{id}?proof=true`).
    pub event_id: String,
    /// When (RFC 3339).
    pub at: String,
    /// The step (`proposed`, `tested`, `approved`, `rejected`, `expired`,
    /// `activated`, `rolled_back`, `rule_set`, `withdrawn`), or the action of an event an
    /// application sent.
    pub step: String,
    /// The action recorded.
    pub action: String,
    /// The outcome.
    pub outcome: String,
    /// The kind (or, for an application's event, its resource).
    pub kind: String,
    /// Who (id).
    pub actor: String,
    /// Who (name).
    pub actor_name: Option<String>,
    /// The application (`custos` for the store's own steps).
    pub application: Option<String>,
    /// The version made, if any.
    pub version: Option<u64>,
    /// The proposal, if any.
    pub proposal: Option<String>,
    /// SHA-256 of the document (hex).
    pub sha256: Option<String>,
    /// The change (RFC 6902), when recorded.
    pub diff: Vec<PatchOp>,
    /// An application's `details.before`, when sent.
    pub before: Option<Value>,
    /// An application's `details.after`, when sent.
    pub after: Option<Value>,
    /// Reason or comment.
    pub text: Option<String>,
    /// Approved without a second person.
    pub alone: bool,
    /// The approvers named.
    pub approvers: Vec<String>,
    /// The severity recorded.
    pub severity: String,
    /// Everything recorded (`details`).
    pub details: Option<Value>,
}

/// A page of the trail, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrailPage {
    /// The steps.
    pub items: Vec<TrailEntry>,
    /// Pass as `cursor` for the next page; none at the end.
    pub next_cursor: Option<String>,
}
