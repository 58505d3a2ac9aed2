//! Exports over HTTP, two ways:
//!
//! - `GET /api/audit/export?format=…&<filters>` streams the file as it is
//!   written (API clients, scripts);
//! - `POST /api/audit/exports?format=…&<filters>` starts a background export
//!   to a file under `<data_dir>/exports`; `GET /api/audit/exports/{id}`
//!   reports its progress and `…/file` downloads it (the UI's way: a
//!   progress bar, then the download). Files are deleted after 24 hours.
//!   Any replica answers the polls (the job's row) and, with an object
//!   store for exports, serves the download.
//!
//! Either way the export is bounded by a checkpoint signed at its start, and
//! when it ends its manifest (SHA-256, rows, seq range, filters, checkpoint)
//! is signed with the ledger's key, kept in the database and recorded in
//! the ledger (`audit.export.completed`, or `audit.export.failed`).
//! `GET /api/audit/exports/{id}/manifest` returns it.

use custos_model::Channel;
use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_engine::events::SearchFilter;
use custos_engine::events::export::{
    ExportFormat, ExportProgress, ExportSpec, FileError, PreparedExport, export_filter,
};
use custos_model::{ErrorBody, ErrorCode, ExportJob};
use uuid::Uuid;

use super::audit::query_pairs;
use super::{ApiError, Ctx};
use crate::http::AppState;

/// An export request's format, its search, and the filters as given.
type Request = (ExportFormat, SearchFilter, Vec<(String, String)>);

/// The export a request asks for, checked.
fn parse_request(raw: Option<&str>) -> Result<Request, ApiError> {
    let pairs = query_pairs(raw)?;
    let mut format = None;
    let mut filters = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        match k.as_str() {
            "format" => format = Some(v),
            _ => filters.push((k, v)),
        }
    }
    let Some(format) = format.as_deref().and_then(ExportFormat::parse) else {
        return Err(ApiError::field("format", "must be csv, json, ndjson, xlsx or pdf"));
    };
    let filter = export_filter(&filters).map_err(ApiError::fields)?;
    Ok((format, filter, filters))
}

async fn prepare(s: &AppState, ctx: &Ctx, raw: Option<&str>) -> Result<PreparedExport, ApiError> {
    let (format, filter, filters) = parse_request(raw)?;
    let spec = ExportSpec { id: Uuid::now_v7(), format, filter, filters, generated_by: author(ctx) };
    Ok(s.events.prepare_export(spec).await?)
}

/// Who an export is by, for its title page and manifest.
fn author(ctx: &Ctx) -> String {
    let a = ctx.actor();
    match a.name {
        Some(name) if name != a.id => format!("{} ({name})", a.id),
        _ => a.id,
    }
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
        (status = 400, description = "A bad parameter, named", body = ErrorBody),
        (status = 403, description = "Needs audit:export", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn export(State(s): State<AppState>, ctx: Ctx, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let slot = s.busy.start(crate::limits::Work::Export, &ctx.principal())?;
    let prepared = prepare(&s, &ctx, raw.as_deref()).await?;
    let (id, format, name) = (prepared.spec().id, prepared.spec().format, prepared.file_name());
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let state = s.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let error_tx = tx.clone();
        let jobs = state.exports.clone();
        let run = tokio::task::spawn_blocking(move || {
            let progress = ExportProgress::default();
            prepared.run(jobs.formats(), &mut ChannelWriter { tx }, &progress).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the export stopped: {e}")));
        if let Err(e) = &run {
            tracing::warn!(export = %id, error = %e, "a streamed export did not finish");
            let _ = error_tx.send(Err(std::io::Error::other("export failed"))).await;
        }
        let _ = state.exports.complete(&state.events, id, format, &ctx.requester(Channel::Api), run).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::HeaderName::from_static("x-custos-export-id"), id.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
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
        (status = 400, description = "A bad parameter, named", body = ErrorBody),
        (status = 403, description = "Needs audit:export", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn start(
    State(s): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> Result<(StatusCode, axum::Json<ExportJob>), ApiError> {
    let slot = s.busy.start(crate::limits::Work::Export, &ctx.principal())?;
    let prepared = prepare(&s, &ctx, raw.as_deref()).await?;
    let job = s.exports.start(s.events.clone(), prepared, ctx.requester(Channel::Api), slot).await;
    Ok((StatusCode::ACCEPTED, axum::Json(job)))
}

fn export_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::field("id", "must be an export id (UUID)"))
}

impl From<FileError> for ApiError {
    fn from(e: FileError) -> ApiError {
        let code = match e {
            FileError::NotFound => ErrorCode::NotFound,
            FileError::NotReady => ErrorCode::NotReady,
            FileError::Gone => ErrorCode::Gone,
            FileError::Elsewhere | FileError::NotUploaded => ErrorCode::Conflict,
            FileError::Unavailable(_) => {
                return ApiError::retry_later(e.to_string(), 5, &e);
            }
        };
        ApiError::new(code, e.to_string())
    }
}

/// A background export's progress.
#[utoipa::path(
    get, path = "/api/audit/exports/{id}", tag = "audit",
    params(("id" = String, Path, description = "Export id")),
    responses(
        (status = 200, description = "Progress, or the outcome", body = ExportJob),
        (status = 404, description = "No such export of yours", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn status(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<axum::Json<ExportJob>, ApiError> {
    let job = s.exports.status(&ctx.principal(), export_id(&id)?).await;
    let job = job.map_err(|e| ApiError::database("cannot read the export's job", &e))?;
    job.map(axum::Json).ok_or_else(|| ApiError::not_found("no such export of yours"))
}

/// Download a finished background export.
#[utoipa::path(
    get, path = "/api/audit/exports/{id}/file", tag = "audit",
    params(("id" = String, Path, description = "Export id")),
    responses(
        (status = 200, description = "The file"),
        (status = 404, description = "No such export of yours, or not finished", body = ErrorBody),
        (status = 409, description = "Written by another replica and not in the object store (object_store.exports off, or its upload failed)", body = ErrorBody),
        (status = 410, description = "Deleted (older than 24 hours)", body = ErrorBody),
        (status = 503, description = "The database or the object store did not answer", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn file(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let (source, name, content_type) = s.exports.file(&ctx.principal(), export_id(&id)?).await?;
    source_response(source, &name, content_type).await.ok_or_else(|| ApiError::from(FileError::Gone))
}

/// A download of an archive or a backup: the local file, or passed through
/// from the object store.
pub(crate) async fn source_response(
    source: custos_engine::objstore::Source,
    name: &str,
    content_type: &str,
) -> Option<Response> {
    match source {
        custos_engine::objstore::Source::Local(path) => file_response(&path, name, content_type).await,
        custos_engine::objstore::Source::Remote(len, stream) => Some(
            (
                [
                    (header::CONTENT_TYPE, content_type.to_owned()),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
                    (header::CONTENT_LENGTH, len.to_string()),
                ],
                Body::from_stream(stream),
            )
                .into_response(),
        ),
    }
}

/// A file streamed as an attachment named `name`; `None` when it cannot
/// be opened.
pub(crate) async fn file_response(path: &std::path::Path, name: &str, content_type: &str) -> Option<Response> {
    let file = tokio::fs::File::open(path).await.ok()?;
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
    Some(
        (
            [
                (header::CONTENT_TYPE, content_type.to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
                (header::CONTENT_LENGTH, len.to_string()),
            ],
            Body::from_stream(stream),
        )
            .into_response(),
    )
}

/// An export's signed manifest.
///
/// The manifest's JSON signed as a note by the ledger's key (the key of
/// `GET /api/audit/checkpoints`): check a file with
/// `custos verify-export FILE MANIFEST --public-key KEY`. Only the user (or
/// key) that made the export may read it.
#[utoipa::path(
    get, path = "/api/audit/exports/{id}/manifest", tag = "audit",
    params(("id" = String, Path, description = "Export id")),
    responses(
        (status = 200, description = "The signed manifest", content_type = "text/plain"),
        (status = 404, description = "No finished export of yours with this id", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn manifest(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = export_id(&id)?;
    let note = s
        .exports
        .manifest(&ctx.principal(), id)
        .await
        .map_err(|e| ApiError::database("cannot read the export's manifest", &e))?
        .ok_or_else(|| ApiError::not_found("no finished export of yours with this id"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"custos-export-{id}.manifest\"")),
        ],
        note,
    )
        .into_response())
}
