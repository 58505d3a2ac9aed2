//! `/api/reports`: compliance evidence reports. One framework over a
//! period of whole UTC days, from the daily compliance snapshots and the
//! ledger; a PDF and its JSON twin, each with a manifest signed by the
//! ledger's key (`custos verify-export FILE MANIFEST --public-key KEY`).
//! Everything here needs `report:generate`; reports are the
//! organisation's evidence, so everyone with it sees the history.
//! `/api/compliance/history`: the snapshots' statuses over a period.
//! `/api/reports/schedules` and `/api/reports/runs`: the schedules in
//! force (the `report_schedules` policy, changed through policy review)
//! and their runs.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use custos_engine::reports::{ReportFile, period};
use custos_model::{
    Channel, ComplianceHistory, ErrorBody, ReportFramework, ReportInfo, ReportRequest, ReportRun, SchedulesView,
};
use serde::Deserialize;
use uuid::Uuid;

use super::{ApiError, Ctx};
use crate::http::AppState;

/// Paging of the history.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many (1-500, default 50), newest first.
    pub limit: Option<u64>,
}

/// The frameworks reports are made for.
#[utoipa::path(
    get, path = "/api/reports/frameworks", tag = "reports",
    responses((status = 200, description = "Frameworks", body = Vec<ReportFramework>)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn frameworks() -> axum::Json<Vec<ReportFramework>> {
    axum::Json(custos_engine::reports::frameworks())
}

/// The reports generated, newest first.
#[utoipa::path(
    get, path = "/api/reports", tag = "reports",
    params(ListQuery),
    responses((status = 200, description = "Reports", body = Vec<ReportInfo>)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    super::ApiQuery(q): super::ApiQuery<ListQuery>,
) -> Result<axum::Json<Vec<ReportInfo>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "between 1 and 500"));
    }
    Ok(axum::Json(s.reports.list(limit).await?))
}

/// Generates a report now (a few seconds: every day's snapshot is checked
/// against its sealed record, the period's events are counted and
/// sampled). Recorded (`custos.report.generated`, with both digests).
#[utoipa::path(
    post, path = "/api/reports", tag = "reports",
    request_body = ReportRequest,
    responses(
        (status = 201, description = "Generated", body = ReportInfo),
        (status = 400, description = "A field is wrong (named)", body = ErrorBody),
        (status = 409, description = "Too many reports are being generated", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn generate(
    State(s): State<AppState>,
    ctx: Ctx,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, axum::Json<ReportInfo>), ApiError> {
    may_read_contents(&ctx)?;
    let req: ReportRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::field("body", format!("not a report request: {e}")))?;
    let r = s.reports.generate(&ctx.requester(Channel::Api), &req, "manual", None).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(r)))
}

/// A report shows sampled events, verifications and policy changes: making
/// or reading one needs the permissions that show those too.
fn may_read_contents(ctx: &Ctx) -> Result<(), ApiError> {
    use custos_engine::identity::permission::Permission as P;
    for (p, name) in [(P::AuditRead, "audit:read"), (P::AuditVerify, "audit:verify"), (P::PolicyRead, "policy:read")] {
        if !ctx.caller.allows(p) {
            return Err(ApiError::forbidden(format!(
                "a report shows events, verifications and policy changes: it needs {name} as well as report:generate"
            )));
        }
    }
    Ok(())
}

/// Which runs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only this schedule's.
    pub schedule: Option<String>,
    /// At most this many (1-500, default 50), newest due first.
    pub limit: Option<u64>,
}

/// The report schedules in force (the `report_schedules` policy), each
/// with its next run and its latest run that ended. Needs what reading a
/// report needs (they name the recipients). Change them through
/// `POST /api/policies/report_schedules/proposals`.
#[utoipa::path(
    get, path = "/api/reports/schedules", tag = "reports",
    responses((status = 200, description = "The schedules", body = SchedulesView)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn schedules(State(s): State<AppState>, ctx: Ctx) -> Result<axum::Json<SchedulesView>, ApiError> {
    // They name who receives the reports.
    may_read_contents(&ctx)?;
    Ok(axum::Json(s.reports.schedules().await?))
}

/// The schedules' runs, newest due first: planned, running, done (with the
/// report and each recipient's delivery), failed, missed or cancelled.
#[utoipa::path(
    get, path = "/api/reports/runs", tag = "reports",
    params(RunsQuery),
    responses(
        (status = 200, description = "The runs", body = Vec<ReportRun>),
        (status = 400, description = "A parameter is wrong (named)", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn runs(
    State(s): State<AppState>,
    ctx: Ctx,
    super::ApiQuery(q): super::ApiQuery<RunsQuery>,
) -> Result<axum::Json<Vec<ReportRun>>, ApiError> {
    may_read_contents(&ctx)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "between 1 and 500"));
    }
    if q.schedule.as_ref().is_some_and(|id| id.is_empty() || id.len() > 64) {
        return Err(ApiError::field("schedule", "a schedule's id (1 to 64 characters)"));
    }
    Ok(axum::Json(s.reports.runs(q.schedule.as_deref(), limit).await?))
}

fn report_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| ApiError::field("id", "not a report id (a UUID)"))
}

fn file_kind(file: &str) -> Result<ReportFile, ApiError> {
    ReportFile::parse(file).ok_or_else(|| ApiError::field("file", "must be pdf or json"))
}

/// One report.
#[utoipa::path(
    get, path = "/api/reports/{id}", tag = "reports",
    params(("id" = String, Path, description = "The report's id")),
    responses(
        (status = 200, description = "The report", body = ReportInfo),
        (status = 404, description = "No such report", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn read(State(s): State<AppState>, Path(id): Path<String>) -> Result<axum::Json<ReportInfo>, ApiError> {
    Ok(axum::Json(s.reports.get(report_id(&id)?).await?))
}

/// A report's file: `pdf` or `json` (the JSON twin).
#[utoipa::path(
    get, path = "/api/reports/{id}/{file}", tag = "reports",
    params(
        ("id" = String, Path, description = "The report's id"),
        ("file" = String, Path, description = "pdf or json"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/pdf"),
        (status = 404, description = "No such report", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn download(
    State(s): State<AppState>,
    ctx: Ctx,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    may_read_contents(&ctx)?;
    let (id, kind) = (report_id(&id)?, file_kind(&file)?);
    let (name, body) = s.reports.file(id, kind).await?;
    Ok((
        [
            (header::CONTENT_TYPE, kind.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        body,
    )
        .into_response())
}

/// A report file's signed manifest (as an export's): check the file with
/// `custos verify-export FILE MANIFEST --public-key KEY`.
#[utoipa::path(
    get, path = "/api/reports/{id}/{file}/manifest", tag = "reports",
    params(
        ("id" = String, Path, description = "The report's id"),
        ("file" = String, Path, description = "pdf or json"),
    ),
    responses(
        (status = 200, description = "The signed manifest", content_type = "text/plain"),
        (status = 404, description = "No such report", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn manifest(
    State(s): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (id, kind) = (report_id(&id)?, file_kind(&file)?);
    let info = s.reports.get(id).await?;
    let note = s.reports.manifest(id, kind).await?;
    let name =
        format!("custos-report-{}-{}-{}.{}.manifest", info.framework, info.period_from, info.period_to, kind.ext());
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        note,
    )
        .into_response())
}

/// The period asked for.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// A named period (previous_month, previous_quarter, last_30_days,
    /// last_90_days, last_365_days, month_to_date); or `from` and `to`.
    pub period: Option<String>,
    /// First day (YYYY-MM-DD).
    pub from: Option<String>,
    /// Last day, included (YYYY-MM-DD).
    pub to: Option<String>,
}

/// The daily compliance snapshots over a period: each day's failing
/// checks (or a gap), each check's days by status.
#[utoipa::path(
    get, path = "/api/compliance/history", tag = "reports",
    params(HistoryQuery),
    responses(
        (status = 200, description = "The period", body = ComplianceHistory),
        (status = 400, description = "A parameter is wrong (named)", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn history(
    State(s): State<AppState>,
    super::ApiQuery(q): super::ApiQuery<HistoryQuery>,
) -> Result<axum::Json<ComplianceHistory>, ApiError> {
    let today = period::day_of(s.ledger.now_us());
    let (from, to) = period::resolve(q.period.as_deref(), q.from.as_deref(), q.to.as_deref(), today)
        .map_err(|fe| ApiError::fields(vec![fe]))?;
    Ok(axum::Json(s.reports.history(from, to).await?))
}
