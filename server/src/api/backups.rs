//! `/api/backups`: backups of the embedded SQLite database (encrypted under
//! a key derived from the KEK): the schedule and last success, the list,
//! take one now, download one. On PostgreSQL the database's own tools back
//! it up (see the README) and taking one here is refused (409). Reading
//! needs `policy:read`; taking and downloading need `retention:manage`.

use axum::extract::{Path, State};
use axum::response::Response;
use custos_model::{BackupInfo, BackupStatus, Channel, ErrorBody};
use serde::{Deserialize, Serialize};

use super::{ApiError, Ctx};
use crate::http::AppState;

/// Backups as they stand, with the latest ones.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupsView {
    /// Schedule, last success, where they go.
    pub status: BackupStatus,
    /// The latest backups, newest first (deleted ones marked).
    pub backups: Vec<BackupInfo>,
}

/// Paging of the list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many (1-500, default 50), newest first.
    pub limit: Option<u64>,
}

/// The schedule, the last success and the latest backups.
#[utoipa::path(
    get, path = "/api/backups", tag = "backups",
    params(ListQuery),
    responses((status = 200, description = "Backups", body = BackupsView)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(
    State(s): State<AppState>,
    super::ApiQuery(q): super::ApiQuery<ListQuery>,
) -> Result<axum::Json<BackupsView>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "between 1 and 500"));
    }
    Ok(axum::Json(BackupsView { status: s.backups.status().await?, backups: s.backups.list(limit).await? }))
}

/// Takes a backup now, in the background (a signed checkpoint, then a
/// consistent copy of the database while ingest goes on, encrypted).
/// Recorded (`custos.backup.created` or `…failed`). Follow it at
/// `/api/backups/{name}`.
#[utoipa::path(
    post, path = "/api/backups", tag = "backups",
    responses(
        (status = 202, description = "Started", body = BackupInfo),
        (status = 409, description = "One is being taken, or the database is PostgreSQL", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn start(
    State(s): State<AppState>,
    ctx: Ctx,
) -> Result<(axum::http::StatusCode, axum::Json<BackupInfo>), ApiError> {
    let b = s.backups.start(&ctx.requester(Channel::Api)).await?;
    Ok((axum::http::StatusCode::ACCEPTED, axum::Json(b)))
}

fn backup_name(name: &str) -> Result<&str, ApiError> {
    Ok(custos_engine::storage::plain_file_name(name, ".cbk")?)
}

/// One backup.
#[utoipa::path(
    get, path = "/api/backups/{name}", tag = "backups",
    params(("name" = String, Path, description = "The backup's file name")),
    responses(
        (status = 200, description = "The backup", body = BackupInfo),
        (status = 404, description = "No such backup", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn read(State(s): State<AppState>, Path(name): Path<String>) -> Result<axum::Json<BackupInfo>, ApiError> {
    Ok(axum::Json(s.backups.get(backup_name(&name)?).await?))
}

/// Downloads a backup file (encrypted: it opens only with the KEK, through
/// `custos backup restore FILE --to DIR`).
#[utoipa::path(
    get, path = "/api/backups/{name}/download", tag = "backups",
    params(("name" = String, Path, description = "The backup's file name")),
    responses(
        (status = 200, description = "The backup file", content_type = "application/octet-stream"),
        (status = 404, description = "No such backup, or its file was deleted", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn download(State(s): State<AppState>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let name = backup_name(&name)?;
    // Passed through from the object store when not kept locally.
    let source = s.backups.source_of(name).await?;
    super::exports::source_response(source, name, "application/octet-stream")
        .await
        .ok_or_else(|| ApiError::not_found("the backup's file is not where the catalogue says"))
}
