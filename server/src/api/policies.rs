//! `/api/policies`: the policy store. Every kind with its version in force
//! and pending proposals, versions and diffs, proposals and their review
//! (four eyes), dry-runs against recent history, and the trail of every
//! step from the ledger.
//!
//! Reading needs `policy:read`; deciding needs `policy:approve`; proposing
//! and testing need also the kind's own permission (masking:
//! `policy:manage`), checked by the store.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use custos_engine::identity::permission::PermissionSet;
use custos_engine::policies::review::Decision;
use custos_engine::policies::{NewProposal, Sample, TrailQuery};
use custos_model::{
    Channel, ErrorBody, PolicyDiff, PolicyKindView, PolicyOverview, PolicyVersion, Proposal, TestReport, TrailPage,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiError, Ctx};
use crate::http::AppState;

fn held(ctx: &Ctx) -> PermissionSet {
    ctx.caller.permissions()
}

/// Every policy kind: its version in force, review rule and pending proposals.
#[utoipa::path(
    get, path = "/api/policies", tag = "policies",
    responses((status = 200, description = "Every kind", body = PolicyOverview)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn overview(State(s): State<AppState>) -> Result<axum::Json<PolicyOverview>, ApiError> {
    Ok(axum::Json(s.policies.overview().await?))
}

/// The trail: every policy step the ledger holds, newest first.
///
/// The store's own steps (`custos.policy.proposed`, `tested`, `approved`,
/// `rejected`, `withdrawn`, `expired`, `activated`, `rolled_back`, `rule_set`; masking
/// changes saved before the store as `activated`) and the `policy` events
/// applications sent (their `details.before`/`after` as a diff). Filters:
/// `kind`, `actor`, `step`, `from`, `to` (RFC 3339), `source` (`custos` or
/// `applications`), `limit` (default 50), `cursor` (keyset paging). The
/// events applications send are audit events: only for holders of
/// `audit:read` too.
#[utoipa::path(
    get, path = "/api/policies/trail", tag = "policies",
    params(
        ("kind" = Option<String>, Query, description = "A kind, e.g. masking"),
        ("actor" = Option<String>, Query, description = "Who (actor id)"),
        ("step" = Option<String>, Query, description = "proposed, tested, approved, rejected, withdrawn, expired, activated, rolled_back, rule_set"),
        ("from" = Option<String>, Query, description = "From (RFC 3339)"),
        ("to" = Option<String>, Query, description = "Until (RFC 3339)"),
        ("source" = Option<String>, Query, description = "custos or applications"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000"),
        ("cursor" = Option<String>, Query, description = "From the previous page"),
    ),
    responses(
        (status = 200, description = "A page of steps", body = TrailPage),
        (status = 400, description = "A filter is wrong", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn trail(
    State(s): State<AppState>,
    ctx: Ctx,
    RawQuery(q): RawQuery,
) -> Result<axum::Json<TrailPage>, ApiError> {
    let pairs = super::audit::query_pairs(q.as_deref())?;
    let applications = ctx.caller.allows(custos_engine::identity::permission::Permission::AuditRead);
    Ok(axum::Json(s.policies.trail(&TrailQuery { pairs, applications }).await?))
}

/// One proposal.
#[utoipa::path(
    get, path = "/api/policies/proposals/{id}", tag = "policies",
    params(("id" = String, Path, description = "The proposal's id")),
    responses(
        (status = 200, description = "The proposal", body = Proposal),
        (status = 404, description = "No such proposal", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn proposal(State(s): State<AppState>, Path(id): Path<String>) -> Result<axum::Json<Proposal>, ApiError> {
    Ok(axum::Json(s.policies.proposal(&id).await?))
}

/// A decision's comment.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Why (required to reject; at most 1,000 characters).
    #[serde(default)]
    pub comment: String,
}

async fn decide(
    s: &AppState,
    ctx: &Ctx,
    id: &str,
    decision: Decision,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<Proposal>, ApiError> {
    let b: DecisionBody = super::read_json(body, headers, 8 * 1024, Some(DecisionBody::default())).await?;
    let by = ctx.requester(Channel::Api);
    Ok(axum::Json(s.policies.decide(&by, &held(ctx), id, decision, &b.comment).await?))
}

/// Approves someone else's proposal. The approval that completes it makes
/// the next version, in force at once.
#[utoipa::path(
    post, path = "/api/policies/proposals/{id}/approve", tag = "policies",
    params(("id" = String, Path, description = "The proposal's id")),
    request_body(content = Option<DecisionBody>, description = "Optional (an empty body takes the defaults)", content_type = "application/json"),
    responses(
        (status = 200, description = "The proposal after the decision", body = Proposal),
        (status = 403, description = "Your own proposal, or not a person with policy:approve", body = ErrorBody),
        (status = 409, description = "Decided already, approved by you already, or based on a version no longer in force", body = ErrorBody),
        (status = 410, description = "Expired", body = ErrorBody),
    ),
    security(("session" = []))
)]
pub async fn approve(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<Proposal>, ApiError> {
    decide(&s, &ctx, &id, Decision::Approve, &headers, body).await
}

/// Rejects someone else's proposal (it ends there); a comment is required.
#[utoipa::path(
    post, path = "/api/policies/proposals/{id}/reject", tag = "policies",
    params(("id" = String, Path, description = "The proposal's id")),
    request_body(content = DecisionBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The proposal, rejected", body = Proposal),
        (status = 400, description = "No comment", body = ErrorBody),
        (status = 403, description = "Your own proposal, or not a person with policy:approve", body = ErrorBody),
        (status = 409, description = "Decided already", body = ErrorBody),
        (status = 410, description = "Expired", body = ErrorBody),
    ),
    security(("session" = []))
)]
pub async fn reject(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<Proposal>, ApiError> {
    decide(&s, &ctx, &id, Decision::Reject, &headers, body).await
}

/// The author activates their proposal alone: only while fewer people than
/// the rule needs can approve it (a fresh installation with one admin).
/// Recorded, and shown in the trail, as approved without a second person.
#[utoipa::path(
    post, path = "/api/policies/proposals/{id}/activate", tag = "policies",
    params(("id" = String, Path, description = "The proposal's id")),
    responses(
        (status = 200, description = "The proposal, approved; its version is in force", body = Proposal),
        (status = 403, description = "Not the author, or others can approve it", body = ErrorBody),
        (status = 409, description = "Decided already, or based on a version no longer in force", body = ErrorBody),
        (status = 410, description = "Expired", body = ErrorBody),
    ),
    security(("session" = []))
)]
pub async fn activate(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<axum::Json<Proposal>, ApiError> {
    let by = ctx.requester(Channel::Api);
    Ok(axum::Json(s.policies.activate_alone(&by, &held(&ctx), &id).await?))
}

/// The author withdraws their pending proposal (an optional comment).
#[utoipa::path(
    post, path = "/api/policies/proposals/{id}/withdraw", tag = "policies",
    params(("id" = String, Path, description = "The proposal's id")),
    request_body(content = Option<DecisionBody>, description = "Optional (an empty body takes the defaults)", content_type = "application/json"),
    responses(
        (status = 200, description = "The proposal, withdrawn", body = Proposal),
        (status = 403, description = "Not its author", body = ErrorBody),
        (status = 409, description = "No longer pending", body = ErrorBody),
        (status = 410, description = "Expired", body = ErrorBody),
    ),
    security(("session" = []))
)]
pub async fn withdraw(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<Proposal>, ApiError> {
    let b: DecisionBody = super::read_json(body, &headers, 8 * 1024, Some(DecisionBody::default())).await?;
    let by = ctx.requester(Channel::Api);
    Ok(axum::Json(s.policies.withdraw(&by, &id, &b.comment).await?))
}

/// A kind: its version in force, review rule and pending proposals.
#[utoipa::path(
    get, path = "/api/policies/{kind}", tag = "policies",
    params(("kind" = String, Path, description = "The kind, e.g. masking")),
    responses(
        (status = 200, description = "The kind", body = PolicyKindView),
        (status = 404, description = "No such kind", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn kind(State(s): State<AppState>, Path(kind): Path<String>) -> Result<axum::Json<PolicyKindView>, ApiError> {
    s.policies.refresh().await?;
    Ok(axum::Json(s.policies.kind(&kind).await?))
}

/// Paging of versions.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VersionsQuery {
    /// Versions older than this one (the last of the previous page).
    pub before: Option<u64>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u64>,
}

/// Versions of a kind, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionList {
    /// Newest first; version 0, the built-in defaults, last.
    pub versions: Vec<PolicyVersion>,
}

/// A kind's versions, newest first.
#[utoipa::path(
    get, path = "/api/policies/{kind}/versions", tag = "policies",
    params(("kind" = String, Path, description = "The kind"), VersionsQuery),
    responses(
        (status = 200, description = "Versions", body = VersionList),
        (status = 404, description = "No such kind", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn versions(
    State(s): State<AppState>,
    Path(kind): Path<String>,
    super::ApiQuery(q): super::ApiQuery<VersionsQuery>,
) -> Result<axum::Json<VersionList>, ApiError> {
    Ok(axum::Json(VersionList { versions: s.policies.versions(&kind, q.before, q.limit.unwrap_or(50)).await? }))
}

/// One version of a kind (0: its built-in defaults).
#[utoipa::path(
    get, path = "/api/policies/{kind}/versions/{n}", tag = "policies",
    params(("kind" = String, Path, description = "The kind"), ("n" = u64, Path, description = "The version")),
    responses(
        (status = 200, description = "The version", body = PolicyVersion),
        (status = 404, description = "No such kind or version", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn version(
    State(s): State<AppState>,
    Path((kind, n)): Path<(String, String)>,
) -> Result<axum::Json<PolicyVersion>, ApiError> {
    let n: u64 = n.parse().map_err(|_| ApiError::field("n", "must be a version number"))?;
    Ok(axum::Json(s.policies.version(&kind, n).await?))
}

/// Which versions to compare.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    /// From this version.
    pub from: u64,
    /// To this one.
    pub to: u64,
}

/// Two versions and the RFC 6902 patch between them.
#[utoipa::path(
    get, path = "/api/policies/{kind}/diff", tag = "policies",
    params(("kind" = String, Path, description = "The kind"), DiffQuery),
    responses(
        (status = 200, description = "Both documents and the patch", body = PolicyDiff),
        (status = 400, description = "from or to missing or not a number", body = ErrorBody),
        (status = 404, description = "No such kind or version", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn diff(
    State(s): State<AppState>,
    Path(kind): Path<String>,
    super::ApiQuery(q): super::ApiQuery<DiffQuery>,
) -> Result<axum::Json<PolicyDiff>, ApiError> {
    Ok(axum::Json(s.policies.diff(&kind, q.from, q.to).await?))
}

/// A proposed change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalBody {
    /// The whole new document (masking: `{"rules": [...]}`); leave out for
    /// a rollback.
    #[serde(default)]
    pub content: Option<Value>,
    /// The version in force you read: a change made meanwhile is refused
    /// (409), not overwritten.
    pub based_on: u64,
    /// Why (required, at most 1,000 characters).
    #[serde(default)]
    pub reason: String,
    /// A rollback: propose this older version's content again.
    #[serde(default)]
    pub restores: Option<u64>,
}

/// Proposes a change (or a rollback). It waits for the kind's approvals;
/// under a rule of 0 approvals it takes effect at once (200). A dry-run is
/// made and attached.
#[utoipa::path(
    post, path = "/api/policies/{kind}/proposals", tag = "policies",
    params(("kind" = String, Path, description = "The kind")),
    request_body(content = ProposalBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Proposed; waits for approval", body = Proposal),
        (status = 200, description = "In force at once (no approval needed)", body = Proposal),
        (status = 400, description = "Invalid content or reason", body = ErrorBody),
        (status = 403, description = "Not allowed to change this kind", body = ErrorBody),
        (status = 409, description = "based_on is not the version in force", body = ErrorBody),
    ),
    security(("session" = []))
)]
pub async fn propose(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, axum::Json<Proposal>), ApiError> {
    let b: ProposalBody = super::read_json(body, &headers, 256 * 1024, None).await?;
    let by = ctx.requester(Channel::Api);
    let p = NewProposal { content: b.content, based_on: b.based_on, reason: b.reason, restores: b.restores };
    let made = s.policies.propose(&by, &held(&ctx), &kind, p).await?;
    let status = if made.state == "approved" { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, axum::Json(made)))
}

/// A document to try.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestBody {
    /// The document (masking: `{"rules": [...]}`).
    pub content: Value,
    /// Events to look at, newest first (default 1,000, at most 5,000).
    #[serde(default)]
    pub limit: Option<u64>,
    /// How far back (days, default 7, at most 90).
    #[serde(default)]
    pub days: Option<u32>,
}

/// A dry-run: the document over recent events, with the live feature's
/// code; for masking, per rule the values it would mask, with examples
/// masked by the policy in force. Recorded (`custos.policy.tested`).
#[utoipa::path(
    post, path = "/api/policies/{kind}/test", tag = "policies",
    params(("kind" = String, Path, description = "The kind")),
    request_body(content = TestBody, content_type = "application/json"),
    responses(
        (status = 200, description = "What it would do", body = TestReport),
        (status = 400, description = "Invalid document or sample", body = ErrorBody),
        (status = 403, description = "Not allowed to change this kind", body = ErrorBody),
    ),
    security(("session" = []))
)]
pub async fn test(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<axum::Json<TestReport>, ApiError> {
    let b: TestBody = super::read_json(body, &headers, 256 * 1024, None).await?;
    let days = b.days.unwrap_or(custos_engine::policies::store::DEFAULT_SAMPLE_DAYS as u32);
    if !(1..=90).contains(&days) {
        return Err(ApiError::field("days", "must be between 1 and 90"));
    }
    let now = s.ledger.now_us();
    let sample = Sample {
        since_us: now - i64::from(days) * custos_engine::time::DAY_US,
        limit: b.limit.unwrap_or(custos_engine::policies::store::DEFAULT_SAMPLE),
    };
    let by = ctx.requester(Channel::Api);
    Ok(axum::Json(s.policies.test(&by, &held(&ctx), &kind, &b.content, Some(sample)).await?))
}
