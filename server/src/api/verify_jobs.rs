//! Online verification as jobs: `POST /api/audit/verify` starts one (or
//! waits for it with `"wait": true`), `GET /api/audit/verify/{job}` shows
//! its progress and, when done, its report. Jobs live in this process's
//! memory (the 50 most recent are kept); the verification itself is
//! recorded in the ledger (action `audit.verify`) when it ends.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use custos_engine::events::{OwnAction, OwnEvent};
use custos_engine::ledger::verify::{Progress, VerifyReport, VerifyScope};
use custos_model::{ErrorBody, ErrorCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApiError, Ctx};
use crate::http::AppState;

const KEPT: usize = 50;

/// What a verification job is doing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// Job id.
    pub id: Uuid,
    /// running, done or failed.
    pub state: String,
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

/// The jobs of this process.
#[derive(Debug, Clone, Default)]
pub struct Jobs(Arc<Mutex<VecDeque<JobView>>>);

impl Jobs {
    fn update(&self, id: Uuid, f: impl FnOnce(&mut JobView)) {
        let mut jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(j) = jobs.iter_mut().find(|j| j.id == id) {
            f(j);
        }
    }

    fn progress(&self, id: Uuid, p: Progress) {
        let mut jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(j) = jobs.iter_mut().find(|j| j.id == id) {
            j.checked = p.checked;
            j.total = p.total;
        }
    }

    fn insert(&self, job: JobView) {
        let mut jobs = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while jobs.len() >= KEPT {
            // Drop the oldest finished job (or the oldest if all run).
            let i = jobs.iter().position(|j| j.state != "running").unwrap_or(0);
            jobs.remove(i);
        }
        jobs.push_back(job);
    }

    fn get(&self, id: Uuid) -> Option<JobView> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|j| j.id == id).cloned()
    }
}

/// The record of a verification's end (`audit.verify`): its requested
/// scope (both null: the whole ledger) and its report, or why it could not
/// run. Used by the API's jobs and the scheduled verification.
pub fn verification_event(
    ledger: &custos_engine::ledger::Ledger,
    actor: custos_model::Actor,
    request_id: Option<String>,
    scope: VerifyScope,
    result: &Result<VerifyReport, custos_engine::ledger::LedgerError>,
    job: Option<Uuid>,
    channel: &str,
) -> OwnEvent {
    let outcome = match result {
        Ok(r) if r.is_intact() => "success",
        Ok(_) => "failure",
        Err(_) => "error",
    };
    let asked = serde_json::json!({ "from_seq": scope.from_seq, "to_seq": scope.to_seq });
    let details = match result {
        Ok(r) => serde_json::json!({ "job": job, "scope": asked, "report": r }),
        Err(e) => serde_json::json!({ "job": job, "scope": asked, "error": e.to_string() }),
    };
    OwnEvent::new(OwnAction::Verify, actor, channel)
        .outcome(outcome)
        .resource("ledger", Some(ledger.origin().into()))
        .request(request_id)
        .details(details)
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
    request_body(content = VerifyRequest, content_type = "application/json"),
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
    if let (Some(a), Some(b)) = (req.from_seq, req.to_seq)
        && (a == 0 || b < a)
    {
        return Err(ApiError::field("to_seq", "must be at least from_seq (seqs start at 1)"));
    }
    if req.from_seq == Some(0) {
        return Err(ApiError::field("from_seq", "seqs start at 1"));
    }
    // A range past the end cannot run: refused here rather than recorded as
    // a verification that "could not run" (which the compliance page counts).
    let head = s.ledger.head().await.map_err(|e| ApiError::ledger(&e))?.seq;
    if let Some(from) = req.from_seq
        && from > head
    {
        return Err(ApiError::field("from_seq", format!("is beyond the ledger's last entry (seq {head})")));
    }
    let slot = s.busy.start(crate::limits::Work::Verify, &ctx.principal())?;
    let id = Uuid::now_v7();
    let job = JobView {
        id,
        state: "running".into(),
        checked: 0,
        total: 0,
        report: None,
        intact: None,
        error: None,
        status_url: format!("/api/audit/verify/{id}"),
    };
    s.verify_jobs.insert(job);
    let (jobs, ledger, events) = (s.verify_jobs.clone(), s.ledger.clone(), s.events.clone());
    let scope = VerifyScope { from_seq: req.from_seq, to_seq: req.to_seq };
    let actor = ctx.actor();
    let request_id = ctx.request_id.clone();
    let task = tokio::spawn(async move {
        let _slot = slot;
        let progress_jobs = jobs.clone();
        let result = ledger.verify(scope, move |p: Progress| progress_jobs.progress(id, p)).await;
        let event = verification_event(&ledger, actor, request_id, scope, &result, Some(id), "api");
        if let Err(e) = events.record_own(event).await {
            tracing::error!(error = %e, "could not record the end of a verification");
        }
        jobs.update(id, |j| match result {
            Ok(r) => {
                j.state = "done".into();
                j.checked = r.entries_checked;
                j.total = j.total.max(r.entries_checked);
                j.intact = Some(r.is_intact());
                j.report = Some(r);
            }
            Err(e) => {
                j.state = "failed".into();
                j.error = Some(e.to_string());
            }
        });
    });
    let status = if req.wait {
        let _ = task.await;
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    match s.verify_jobs.get(id) {
        Some(j) => Ok((status, axum::Json(j))),
        None => Err(ApiError::failed(ErrorCode::JobLost, "the verification job is gone", &format!("job {id}"))),
    }
}

/// A verification job's progress and result.
#[utoipa::path(
    get, path = "/api/audit/verify/{job}", tag = "verification",
    params(("job" = String, Path, description = "Job id from POST /api/audit/verify")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "No such job (jobs live in one process's memory)", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn status(State(s): State<AppState>, Path(job): Path<String>) -> Result<axum::Json<JobView>, ApiError> {
    let Ok(id) = Uuid::parse_str(&job) else {
        return Err(ApiError::field("job", "must be a job id (UUID)"));
    };
    let found = s.verify_jobs.get(id);
    found.map(axum::Json).ok_or_else(|| ApiError::not_found(format!("no verification job `{job}` on this server")))
}
