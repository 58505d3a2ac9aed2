//! `/api/retention`: retention as it stands, what a run would remove now
//! (the dry-run), the runs (history, progress, run now), and the archive
//! catalogue (verify, download). The rules and legal holds themselves are
//! the `retention` and `legal_holds` policies (`/api/policies/…`):
//! versioned, tried and reviewed like any policy. Reading needs
//! `policy:read`; running, verifying and downloading archives need
//! `retention:manage`.

use axum::extract::{Path, State};
use axum::response::Response;
use custos_model::{ArchiveInfo, Channel, ErrorBody, RetentionPlan, RetentionRun, RetentionStatus};
use serde::Deserialize;

use super::{ApiError, Ctx};
use crate::http::AppState;

/// Retention as it stands: the policy in force (summary), the floor, legal
/// holds in force, the schedule and next run, the last run, the oldest
/// event still kept, how many events were removed so far, and where
/// archives go.
#[utoipa::path(
    get, path = "/api/retention", tag = "retention",
    responses((status = 200, description = "Retention as it stands", body = RetentionStatus)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn status(State(s): State<AppState>) -> Result<axum::Json<RetentionStatus>, ApiError> {
    Ok(axum::Json(s.retention.status().await?))
}

/// What a run would remove now under the policies in force (a dry-run:
/// nothing is removed): counts by category and month of recording, by
/// rule, and the expired events legal holds keep.
#[utoipa::path(
    get, path = "/api/retention/plan", tag = "retention",
    responses(
        (status = 200, description = "What a run would do now", body = RetentionPlan),
        (status = 409, description = "The policies cannot be read or a hold cannot be evaluated", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn plan(State(s): State<AppState>) -> Result<axum::Json<RetentionPlan>, ApiError> {
    Ok(axum::Json(s.retention.plan().await?))
}

/// Paging of the runs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// At most this many (1-500, default 50), newest first.
    pub limit: Option<u64>,
}

/// The latest runs (scheduled and on demand), newest first, with their
/// progress and outcome.
#[utoipa::path(
    get, path = "/api/retention/runs", tag = "retention",
    params(RunsQuery),
    responses((status = 200, description = "The runs", body = Vec<RetentionRun>)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn runs(
    State(s): State<AppState>,
    super::ApiQuery(q): super::ApiQuery<RunsQuery>,
) -> Result<axum::Json<Vec<RetentionRun>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "between 1 and 500"));
    }
    Ok(axum::Json(s.retention.runs(limit).await?))
}

/// One run, with its progress (`scanned` of `total` ledger positions).
#[utoipa::path(
    get, path = "/api/retention/runs/{id}", tag = "retention",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = RetentionRun),
        (status = 404, description = "No such run", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn run(State(s): State<AppState>, Path(id): Path<String>) -> Result<axum::Json<RetentionRun>, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found("no such run"));
    }
    Ok(axum::Json(s.retention.get_run(&id).await?))
}

/// Runs retention now, in the background: expired events not under a
/// legal hold are archived, then replaced by tombstones under a signed
/// record. Recorded (`custos.retention.run_started`, then
/// `…run_completed` or `…run_failed`). Follow it at
/// `/api/retention/runs/{id}`.
#[utoipa::path(
    post, path = "/api/retention/runs", tag = "retention",
    responses(
        (status = 202, description = "Started", body = RetentionRun),
        (status = 409, description = "A run is going on, or the policies cannot be read", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn start(
    State(s): State<AppState>,
    ctx: Ctx,
) -> Result<(axum::http::StatusCode, axum::Json<RetentionRun>), ApiError> {
    let run = s.retention.start(&ctx.requester(Channel::Api)).await?;
    Ok((axum::http::StatusCode::ACCEPTED, axum::Json(run)))
}

/// The archive catalogue, newest first: where each bundle is, its range,
/// size, digest, and when it was last verified.
#[utoipa::path(
    get, path = "/api/retention/archives", tag = "retention",
    responses((status = 200, description = "The archives", body = Vec<ArchiveInfo>)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn archives(State(s): State<AppState>) -> Result<axum::Json<Vec<ArchiveInfo>>, ApiError> {
    Ok(axum::Json(s.retention.archives().await?))
}

fn archive_name(name: &str) -> Result<&str, ApiError> {
    Ok(custos_engine::storage::plain_file_name(name, ".ndjson")?)
}

/// Verifies an archive with the ledger's public key (every entry proven
/// against the signed checkpoint in it) and that it holds exactly the
/// entries its signed retention record removed. Recorded
/// (`custos.retention.archive_verified`); the result is kept in the
/// catalogue.
#[utoipa::path(
    post, path = "/api/retention/archives/{name}/verify", tag = "retention",
    params(("name" = String, Path, description = "The archive's file name")),
    responses(
        (status = 200, description = "The archive with the verification's result", body = ArchiveInfo),
        (status = 404, description = "No such archive", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn verify(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(name): Path<String>,
) -> Result<axum::Json<ArchiveInfo>, ApiError> {
    Ok(axum::Json(s.retention.verify_archive(archive_name(&name)?, &ctx.requester(Channel::Api)).await?))
}

/// Downloads an archive bundle (NDJSON: a header with the signed
/// checkpoint, then the entries as sealed). Check it offline with
/// `custos verify --archive FILE --public-key KEY`.
#[utoipa::path(
    get, path = "/api/retention/archives/{name}/download", tag = "retention",
    params(("name" = String, Path, description = "The archive's file name")),
    responses(
        (status = 200, description = "The archive", content_type = "application/x-ndjson"),
        (status = 404, description = "No such archive, or its file is gone", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn download(State(s): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let name = archive_name(&name)?;
    let source = s.retention.archive_source(name).await?;
    super::exports::source_response(source, name, "application/x-ndjson")
        .await
        .ok_or_else(|| ApiError::not_found("the archive's file is not where the catalogue says"))
}
