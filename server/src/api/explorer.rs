//! What the events explorer needs besides search and read: the histogram
//! of a search, the live tail (server-sent events) and saved searches.

use custos_engine::time::DAY_US;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use custos_engine::events::SearchFilter;
use custos_engine::identity::permission::Permission;
use custos_model::{ErrorBody, Histogram, SavedSearch};
use serde::Deserialize;

use super::audit::query_pairs;
use super::{ApiError, Ctx, read_json};
use crate::http::AppState;

/// Events per time bucket for a search.
///
/// The filters of `GET /api/audit` (free text `q` is not applied) over
/// `from`..`to` (default: the last 24 hours) in `buckets` buckets (1..500,
/// default 60).
#[utoipa::path(
    get, path = "/api/audit/histogram", tag = "audit",
    params(
        ("buckets" = Option<u32>, Query, description = "1..500, default 60"),
        ("action" = Option<Vec<String>>, Query, description = "Any filter of GET /api/audit"),
    ),
    responses(
        (status = 200, description = "Counts per bucket", body = Histogram),
        (status = 400, description = "A bad parameter, named", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn histogram(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Result<axum::Json<Histogram>, ApiError> {
    let pairs = query_pairs(raw.as_deref())?;
    let mut buckets = 60;
    let mut filters = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "buckets" => match v.parse::<u64>() {
                Ok(n) if (1..=500).contains(&n) => buckets = n,
                _ => return Err(ApiError::field("buckets", "must be a whole number from 1 to 500")),
            },
            "limit" | "cursor" | "order" => return Err(ApiError::field(&k, "not a histogram parameter")),
            _ => filters.push((k, v)),
        }
    }
    let mut f = SearchFilter::from_pairs(&filters).map_err(ApiError::fields)?;
    let now = s.ledger.now_us();
    let to = f.to_us.unwrap_or(now);
    let from = f.from_us.unwrap_or(to.saturating_sub(DAY_US));
    if from >= to {
        return Err(ApiError::field("from", "must be before `to` (which defaults to now)"));
    }
    f.to_us = Some(to);
    f.from_us = Some(from);
    Ok(axum::Json(s.events.histogram(&f, buckets).await?))
}

/// Live tail: new events matching a search, as server-sent events.
///
/// The filters of `GET /api/audit` (without `to`, `order`, `limit` and
/// `cursor`). The stream starts with an event `ready` (`{"head": seq}`);
/// then each new matching event is an event `audit` whose data is the
/// event (as `GET /api/audit` returns it), as soon as this replica hears of
/// its commit (at once for its own; on PostgreSQL, other replicas' are
/// announced by `NOTIFY`, with a 5-second read of the head as a fallback).
/// A comment line every 15 seconds keeps proxies from closing it.
#[utoipa::path(
    get, path = "/api/audit/tail", tag = "audit",
    params(("action" = Option<Vec<String>>, Query, description = "Any filter of GET /api/audit")),
    responses(
        (status = 200, description = "text/event-stream", content_type = "text/event-stream"),
        (status = 400, description = "A bad parameter, named", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn tail(
    State(s): State<AppState>,
    ctx: Ctx,
    credential: Option<axum::Extension<crate::auth::Credential>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(raw.as_deref())?;
    if let Some((k, _)) = pairs.iter().find(|(k, _)| matches!(k.as_str(), "to" | "order" | "limit" | "cursor")) {
        return Err(ApiError::field(k, "a live tail follows new events: remove it"));
    }
    let mut filter = SearchFilter::from_pairs(&pairs).map_err(ApiError::fields)?;
    filter.descending = false;
    filter.limit = 200;
    let slot = s.busy.start(crate::limits::Work::Tail, &ctx.principal())?;
    let credential = credential.map(|c| c.0).unwrap_or_default();
    let head = s.ledger.head().await.map_err(|e| ApiError::ledger(&e))?.seq;
    let (tx, response) = super::sse::channel(16);
    // One watch per replica, fed by its own commits and by the others'
    // (PostgreSQL LISTEN/NOTIFY): no tail reads the head itself.
    let mut heard = s.ledger.subscribe_head();
    tokio::spawn(async move {
        let _slot = slot;
        let mut upkeep = super::sse::Upkeep::new(s.clone(), credential, Permission::AuditRead);
        if tx.send(Ok(super::sse::event("ready", &format!("{{\"head\":{head}}}")))).await.is_err() {
            return;
        }
        let mut last = head;
        // A query that failed is tried again a second later.
        let mut behind = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)), if behind => {}
                changed = heard.changed() => {
                    if changed.is_err() {
                        return; // the ledger is shutting down
                    }
                }
                chore = upkeep.due() => {
                    if !upkeep.run(chore, &tx).await {
                        return;
                    }
                    continue;
                }
            }
            let head = *heard.borrow_and_update();
            if head > last {
                let mut f = filter.clone();
                f.max_seq = Some(head);
                let mut after = last;
                behind = false;
                loop {
                    f.after_seq = Some(after);
                    let page = match s.events.search(&f).await {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "live tail: a query failed; trying again in a second");
                            behind = true;
                            break;
                        }
                    };
                    for e in &page.items {
                        let Ok(json) = serde_json::to_string(e) else { continue };
                        let msg = format!("event: audit\nid: {}\ndata: {json}\n\n", e.seq);
                        if tx.send(Ok(Bytes::from(msg))).await.is_err() {
                            return;
                        }
                    }
                    match page.items.last() {
                        Some(e) if page.next_cursor.is_some() => after = e.seq,
                        _ => break,
                    }
                }
                last = if behind { after } else { head };
                upkeep.sent();
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    Ok(response)
}

fn owner(ctx: &Ctx) -> String {
    ctx.actor().id
}

/// The caller's saved searches and the shared ones.
#[utoipa::path(
    get, path = "/api/searches", tag = "audit",
    responses((status = 200, description = "Saved searches", body = Vec<SavedSearch>)),
    security(("api_key" = []), ("session" = []))
)]
pub async fn list(State(s): State<AppState>, ctx: Ctx) -> Result<axum::Json<Vec<SavedSearch>>, ApiError> {
    Ok(axum::Json(s.events.saved_searches(&owner(&ctx)).await?))
}

/// A search to save.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveSearch {
    /// Its name (saving under an existing name of yours replaces it).
    pub name: String,
    /// The explorer's query string.
    pub query: String,
    /// Visible to everyone who may search.
    #[serde(default)]
    pub shared: bool,
}

/// Save a search.
#[utoipa::path(
    post, path = "/api/searches", tag = "audit",
    request_body = SaveSearch,
    responses(
        (status = 201, description = "Saved", body = SavedSearch),
        (status = 400, description = "A bad field, named", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn save(
    State(s): State<AppState>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<(StatusCode, axum::Json<SavedSearch>), ApiError> {
    let req: SaveSearch = read_json(body, &headers, 16 * 1024, None).await?;
    let saved = s.events.save_search(&owner(&ctx), &req.name, &req.query, req.shared).await?;
    Ok((StatusCode::CREATED, axum::Json(saved)))
}

/// Delete one of your saved searches.
#[utoipa::path(
    delete, path = "/api/searches/{id}", tag = "audit",
    params(("id" = String, Path, description = "Saved search id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such saved search of yours", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn delete(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    match s.events.delete_saved_search(&owner(&ctx), &id).await? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found("no such saved search of yours")),
    }
}
