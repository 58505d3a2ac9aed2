//! Exports over HTTP, two ways:
//!
//! - `GET /api/audit/export?format=…&<filters>` streams the file as it is
//!   written (API clients, scripts);
//! - `POST /api/audit/exports?format=…&<filters>` starts a background export
//!   to a file under `<data_dir>/exports`; `GET /api/audit/exports/{id}`
//!   reports its progress and `…/file` downloads it (the UI's way: a
//!   progress bar, then the download). Files are deleted after 24 hours.
//!
//! Either way the export is bounded by a checkpoint signed at its start, and
//! when it ends its manifest (SHA-256, rows, seq range, filters, checkpoint)
//! is signed with the ledger's key, kept as `<id>.manifest` and recorded in
//! the ledger (`audit.export.completed`, or `audit.export.failed`).
//! `GET /api/audit/exports/{id}/manifest` returns it.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_engine::events::SearchFilter;
use custos_engine::events::export::{ExportFormat, ExportProgress, ExportSpec, PreparedExport, manifest_note};
use custos_model::{ApiError, ExportJob, ExportManifest};
use uuid::Uuid;

use super::audit::query_pairs;
use super::{Ctx, bad_field, bad_fields, error, events_error};
use crate::http::AppState;

/// Files of finished exports are deleted after this long.
const FILE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Finished jobs kept in memory.
const KEPT: usize = 200;

/// A background export.
struct Job {
    owner: String,
    format: ExportFormat,
    total: Option<u64>,
    progress: ExportProgress,
    outcome: Mutex<Option<Result<(String, ExportManifest), String>>>,
}

/// Exports of this process, and where their files and manifests go.
#[derive(Clone)]
pub struct Exports {
    dir: PathBuf,
    jobs: Arc<Mutex<HashMap<Uuid, Arc<Job>>>>,
    /// Excel rows per sheet (Excel's limit; smaller only in tests).
    pub xlsx_rows_per_sheet: u32,
}

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exports").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Exports {
    /// Exports under `dir` (created when first needed).
    pub fn new(dir: PathBuf) -> Exports {
        Exports { dir, jobs: Arc::default(), xlsx_rows_per_sheet: custos_engine::events::export::xlsx::EXCEL_MAX_ROWS }
    }

    fn manifest_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.manifest"))
    }

    fn file_path(&self, id: Uuid, format: ExportFormat) -> PathBuf {
        self.dir.join(format!("{id}.{}", format.ext()))
    }

    /// Deletes export files older than the TTL (manifests stay).
    fn sweep(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "manifest") {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|a| a > FILE_TTL);
            if old {
                let _ = std::fs::remove_file(path);
            }
        }
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.len() > KEPT {
            let finished: Vec<Uuid> = jobs
                .iter()
                .filter(|(_, j)| j.outcome.lock().map(|o| o.is_some()).unwrap_or(true))
                .map(|(id, _)| *id)
                .collect();
            let mut sorted = finished;
            sorted.sort();
            for id in sorted.iter().take(jobs.len() - KEPT) {
                jobs.remove(id);
            }
        }
    }
}

/// An export request's format, its search, and the filters as given.
type Request = (ExportFormat, SearchFilter, Vec<(String, String)>);

/// The export a request asks for, checked.
fn parse_request(raw: Option<&str>) -> Result<Request, Response> {
    let pairs = query_pairs(raw)?;
    let mut format = None;
    let mut filters = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        match k.as_str() {
            "format" => format = Some(v),
            "limit" | "cursor" => return Err(bad_field(&k, "an export has no row cap and no paging; remove it")),
            _ => filters.push((k, v)),
        }
    }
    let Some(format) = format.as_deref().and_then(ExportFormat::parse) else {
        return Err(bad_field("format", "must be csv, json, ndjson, xlsx or pdf"));
    };
    let mut filter = SearchFilter::from_pairs(&filters).map_err(bad_fields)?;
    // Oldest first unless asked otherwise: the order an auditor reads in.
    if !filters.iter().any(|(k, _)| k == "order") {
        filter.descending = false;
    }
    Ok((format, filter, filters))
}

async fn prepare(s: &AppState, ctx: &Ctx, raw: Option<&str>) -> Result<PreparedExport, Response> {
    let (format, filter, filters) = parse_request(raw)?;
    let spec = ExportSpec {
        id: Uuid::now_v7(),
        format,
        filter,
        filters,
        generated_by: owner(ctx),
        xlsx_rows_per_sheet: s.exports.xlsx_rows_per_sheet,
    };
    s.events.prepare_export(spec).await.map_err(events_error)
}

fn owner(ctx: &Ctx) -> String {
    let a = ctx.actor();
    match a.name {
        Some(name) if name != a.id => format!("{} ({name})", a.id),
        _ => a.id,
    }
}

/// Signs and keeps the manifest, and records the export in the ledger.
async fn finish(
    s: &AppState,
    ctx: &Ctx,
    id: Uuid,
    format: ExportFormat,
    result: Result<ExportManifest, String>,
) -> Result<ExportManifest, String> {
    let (outcome, details, manifest) = match &result {
        Ok(m) => {
            let note = manifest_note(m, s.ledger.keys().signer());
            let path = s.exports.manifest_path(id);
            if let Err(e) = tokio::fs::create_dir_all(&s.exports.dir).await {
                tracing::error!(error = %e, "cannot create the exports directory");
            }
            if let Err(e) = tokio::fs::write(&path, note).await {
                tracing::error!(error = %e, path = %path.display(), "cannot keep an export manifest");
            }
            ("success", serde_json::to_value(m).unwrap_or_default(), Some(m.clone()))
        }
        Err(e) => ("failure", serde_json::json!({ "format": format.ext(), "error": e }), None),
    };
    let event = custos_model::Event {
        id: Uuid::now_v7(),
        occurred_at_us: s.ledger.now_us(),
        category: "data_access".into(),
        action: if manifest.is_some() { "audit.export.completed" } else { "audit.export.failed" }.into(),
        outcome: outcome.into(),
        reason: None,
        severity: "notice".into(),
        actor: ctx.actor(),
        resource: Some(custos_model::Resource { kind: "export".into(), id: Some(id.to_string()), name: None }),
        tenant: None,
        source: custos_model::Source { application: Some("custos".into()), host: None, channel: "api".into() },
        correlation: custos_model::Correlation { request_id: ctx.request_id.clone(), trace_id: None, parent_id: None },
        metrics: None,
        details: Some(details),
    };
    if let Err(e) = s.events.record(event).await {
        // The file exists but its record could not be written: fail closed.
        tracing::error!(error = %e, export = %id, "an export's record could not be committed");
        let _ = tokio::fs::remove_file(s.exports.file_path(id, format)).await;
        let _ = tokio::fs::remove_file(s.exports.manifest_path(id)).await;
        return Err("the export could not be recorded in the ledger; its file was discarded".into());
    }
    result
}

/// Writes into a bounded channel of chunks (the HTTP body): the export
/// runs no faster than the client reads.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Export the events a search selects, streamed.
///
/// Takes the search filters of `GET /api/audit` (without `limit` and
/// `cursor`: an export has no row cap), oldest first unless `order=desc`,
/// and `format`: `csv` (RFC 4180; cells a spreadsheet would run as a
/// formula get a leading `'`), `json` (an array of full events), `ndjson`,
/// `xlsx` (Excel; a new sheet every 1,048,575 rows) or `pdf` (a report:
/// title page, summary with a chart, the table). The export covers the
/// ledger up to a checkpoint signed when it starts. The response's
/// `X-Custos-Export-Id` names it; its signed manifest is at
/// `/api/audit/exports/{id}/manifest` once the download ends.
#[utoipa::path(
    get, path = "/api/audit/export", tag = "audit",
    params(
        ("format" = String, Query, description = "csv, json, ndjson, xlsx or pdf"),
        ("action" = Option<Vec<String>>, Query, description = "Any filter of GET /api/audit"),
    ),
    responses(
        (status = 200, description = "The file, streamed", content_type = "text/csv"),
        (status = 400, description = "A bad parameter, named", body = ApiError),
        (status = 403, description = "Needs audit:export", body = ApiError),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn export(State(s): State<AppState>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    let prepared = match prepare(&s, &ctx, raw.as_deref()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (id, format, name) = (prepared.spec().id, prepared.spec().format, prepared.file_name());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let state = s.clone();
    tokio::spawn(async move {
        let error_tx = tx.clone();
        let run = tokio::task::spawn_blocking(move || {
            let progress = ExportProgress::default();
            prepared.run(&mut ChannelWriter { tx }, &progress).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the export stopped: {e}")));
        if let Err(e) = &run {
            tracing::warn!(export = %id, error = %e, "a streamed export did not finish");
            let _ = error_tx.send(Err(std::io::Error::other("export failed"))).await;
        }
        let _ = finish(&state, &ctx, id, format, run).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    (
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::HeaderName::from_static("x-custos-export-id"), id.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

fn job_view(id: Uuid, j: &Job) -> ExportJob {
    let outcome = j.outcome.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (state, error, file_name, manifest) = match outcome {
        None => ("running", None, None, None),
        Some(Ok((name, m))) => ("done", None, Some(name), Some(m)),
        Some(Err(e)) => ("failed", Some(e), None, None),
    };
    ExportJob {
        id,
        format: j.format.ext().into(),
        state: state.into(),
        rows: j.progress.rows.load(Ordering::Relaxed),
        total: j.total,
        bytes: j.progress.bytes.load(Ordering::Relaxed),
        error,
        file_name,
        manifest,
    }
}

/// Start a background export.
///
/// The same parameters as `GET /api/audit/export`. Answers 202 with the
/// job; poll `GET /api/audit/exports/{id}` for progress, then download
/// `…/file`. Only the user who started an export sees it.
#[utoipa::path(
    post, path = "/api/audit/exports", tag = "audit",
    params(
        ("format" = String, Query, description = "csv, json, ndjson, xlsx or pdf"),
        ("action" = Option<Vec<String>>, Query, description = "Any filter of GET /api/audit"),
    ),
    responses(
        (status = 202, description = "Started", body = ExportJob),
        (status = 400, description = "A bad parameter, named", body = ApiError),
        (status = 403, description = "Needs audit:export", body = ApiError),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn start(State(s): State<AppState>, ctx: Ctx, RawQuery(raw): RawQuery) -> Response {
    s.exports.sweep();
    if let Err(e) = tokio::fs::create_dir_all(&s.exports.dir).await {
        tracing::error!(error = %e, "cannot create the exports directory");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "export_failed",
            "the export directory cannot be created",
            vec![],
        );
    }
    let prepared = match prepare(&s, &ctx, raw.as_deref()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (id, format, name) = (prepared.spec().id, prepared.spec().format, prepared.file_name());
    let job = Arc::new(Job {
        owner: owner(&ctx),
        format,
        total: prepared.total(),
        progress: ExportProgress::default(),
        outcome: Mutex::new(None),
    });
    s.exports.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(id, job.clone());
    let state = s.clone();
    let view = job_view(id, &job);
    tokio::spawn(async move {
        let path = state.exports.file_path(id, format);
        let part = path.with_extension("part");
        let worker = job.clone();
        let run = tokio::task::spawn_blocking(move || -> Result<ExportManifest, String> {
            let mut file = std::fs::File::create(&part).map_err(|e| format!("cannot create the file: {e}"))?;
            let m = prepared.run(&mut file, &worker.progress).map_err(|e| e.to_string())?;
            file.sync_all().map_err(|e| format!("cannot write the file: {e}"))?;
            std::fs::rename(&part, &path).map_err(|e| format!("cannot write the file: {e}"))?;
            Ok(m)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the export stopped: {e}")));
        if run.is_err() {
            let _ = tokio::fs::remove_file(state.exports.file_path(id, format).with_extension("part")).await;
        }
        let done = finish(&state, &ctx, id, format, run).await;
        *job.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(done.map(|m| (name, m)));
    });
    (StatusCode::ACCEPTED, axum::Json(view)).into_response()
}

fn own_job(s: &AppState, ctx: &Ctx, id: &str) -> Result<(Uuid, Arc<Job>), Response> {
    let not_found = || error(StatusCode::NOT_FOUND, "not_found", "no such export of yours", vec![]);
    let id = Uuid::parse_str(id).map_err(|_| bad_field("id", "must be an export id (UUID)"))?;
    let job = s.exports.jobs.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned().ok_or_else(not_found)?;
    if job.owner != owner(ctx) {
        return Err(not_found());
    }
    Ok((id, job))
}

/// A background export's progress.
#[utoipa::path(
    get, path = "/api/audit/exports/{id}", tag = "audit",
    params(("id" = String, Path, description = "Export id")),
    responses(
        (status = 200, description = "Progress, or the outcome", body = ExportJob),
        (status = 404, description = "No such export of yours", body = ApiError),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn status(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    match own_job(&s, &ctx, &id) {
        Ok((id, job)) => axum::Json(job_view(id, &job)).into_response(),
        Err(r) => r,
    }
}

/// Download a finished background export.
#[utoipa::path(
    get, path = "/api/audit/exports/{id}/file", tag = "audit",
    params(("id" = String, Path, description = "Export id")),
    responses(
        (status = 200, description = "The file"),
        (status = 404, description = "No such export of yours, or not finished", body = ApiError),
        (status = 410, description = "Deleted (older than 24 hours)", body = ApiError),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn file(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let (id, job) = match own_job(&s, &ctx, &id) {
        Ok(j) => j,
        Err(r) => return r,
    };
    let name = match &*job.outcome.lock().unwrap_or_else(|p| p.into_inner()) {
        Some(Ok((name, _))) => name.clone(),
        _ => return error(StatusCode::NOT_FOUND, "not_ready", "the export has not finished", vec![]),
    };
    let file = match tokio::fs::File::open(s.exports.file_path(id, job.format)).await {
        Ok(f) => f,
        Err(_) => return error(StatusCode::GONE, "gone", "the file was deleted (exports are kept 24 hours)", vec![]),
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    (
        [
            (header::CONTENT_TYPE, job.format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// An export's signed manifest.
///
/// The manifest's JSON signed as a note by the ledger's key (the key of
/// `GET /api/audit/checkpoints`): check a file with
/// `custos verify-export FILE MANIFEST --key KEY`.
#[utoipa::path(
    get, path = "/api/audit/exports/{id}/manifest", tag = "audit",
    params(("id" = String, Path, description = "Export id")),
    responses(
        (status = 200, description = "The signed manifest", content_type = "text/plain"),
        (status = 404, description = "No finished export with this id", body = ApiError),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn manifest(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return bad_field("id", "must be an export id (UUID)");
    };
    match tokio::fs::read_to_string(s.exports.manifest_path(id)).await {
        Ok(note) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"custos-export-{id}.manifest\"")),
            ],
            note,
        )
            .into_response(),
        Err(_) => error(StatusCode::NOT_FOUND, "not_found", "no finished export with this id", vec![]),
    }
}
