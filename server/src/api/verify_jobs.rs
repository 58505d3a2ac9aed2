//! Online verification as jobs: `POST /api/audit/verify` starts one (or
//! waits for it with `"wait": true`), `GET /api/audit/verify/{job}` shows
//! its progress and, when done, its report. The jobs are the engine's
//! ([`custos_engine::events::verification`]): each is a row in the
//! database too, so any replica answers its status (kept 30 days), and
//! each verification is recorded in the ledger (`audit.verify`) when it
//! ends.

use custos_model::Channel;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use custos_engine::events::verification::Verification;
use custos_engine::jobs::{Job, JobState};
use custos_engine::ledger::verify::{VerifyReport, VerifyScope};
use custos_model::ErrorBody;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApiError, Ctx};
use crate::http::AppState;

/// What a verification job is doing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// Job id.
    pub id: Uuid,
    /// running, done or failed.
    pub state: JobState,
    /// Entries checked so far.
    pub checked: u64,
    /// Entries to check.
    pub total: u64,
    /// When done: the report (`failure` names the first bad seq and why).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub report: Option<VerifyReport>,
    /// When done: true if nothing failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intact: Option<bool>,
    /// When the job could not run to the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where to poll.
    pub status_url: String,
}

impl JobView {
    fn of(job: &Job<Verification>) -> JobView {
        let (state, outcome) = job.snapshot();
        let (report, error) = match outcome {
            None => (None, None),
            Some(Ok(r)) => (Some(r), None),
            Some(Err(e)) => (None, Some(e)),
        };
        JobView {
            id: job.id,
            state,
            checked: job.progress.checked.load(Ordering::Relaxed),
            total: job.progress.total.load(Ordering::Relaxed),
            intact: report.as_ref().map(VerifyReport::is_intact),
            report,
            error,
            status_url: format!("/api/audit/verify/{}", job.id),
        }
    }
}

/// What to verify.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// First seq (default: the start of the retained ledger).
    pub from_seq: Option<u64>,
    /// Last seq (default: the head).
    pub to_seq: Option<u64>,
    /// Answer only when done (for small ranges and scripts).
    #[serde(default)]
    pub wait: bool,
}

/// Verify the ledger (a range or all of it).
///
/// Recomputes every leaf and chain value, checks every MAC and decryption
/// and every signed checkpoint's root. Answers 202 with a job to poll, or
/// with `wait: true` 200 with the finished job.
#[utoipa::path(
    post, path = "/api/audit/verify", tag = "verification",
    request_body(content = Option<VerifyRequest>, description = "Optional (an empty body takes the defaults)", content_type = "application/json"),
    responses(
        (status = 202, description = "Started; poll status_url", body = JobView),
        (status = 200, description = "Finished (wait: true)", body = JobView),
        (status = 400, description = "Bad range", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn start(
    State(s): State<AppState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, axum::Json<JobView>), ApiError> {
    let req: VerifyRequest = super::read_json(body, &headers, 4096, Some(VerifyRequest::default())).await?;
    let scope = VerifyScope { from_seq: req.from_seq, to_seq: req.to_seq };
    // A range that cannot run is refused here rather than recorded as a
    // verification that "could not run" (which the compliance page counts).
    s.events.check_verify_scope(scope).await?;
    let slot = s.busy.start(crate::limits::Work::Verify, &ctx.principal())?;
    let (job, task) = s.verifications.start(s.events.clone(), scope, ctx.requester(Channel::Api), slot).await;
    let status = if req.wait {
        let _ = task.await;
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, axum::Json(JobView::of(&job))))
}

/// A verification job's progress and result.
#[utoipa::path(
    get, path = "/api/audit/verify/{job}", tag = "verification",
    params(("job" = String, Path, description = "Job id from POST /api/audit/verify")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job (on any replica)", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn status(State(s): State<AppState>, Path(job): Path<String>) -> Result<axum::Json<JobView>, ApiError> {
    let Ok(id) = Uuid::parse_str(&job) else {
        return Err(ApiError::field("job", "must be a job id (UUID)"));
    };
    let found = s.verifications.get(id).await.map_err(|e| ApiError::database("cannot read the job", &e))?;
    found
        .map(|j| axum::Json(JobView::of(&j)))
        .ok_or_else(|| ApiError::not_found(format!("no verification job `{job}`")))
}
