//! `/api/audit`: ingest, search, read one event with its proof, checkpoints,
//! statistics.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use custos_engine::events::service::{EventRef, Unmask};
use custos_engine::events::validate::{FieldError, parse_json, parse_ndjson_lines};
use custos_engine::events::{EventsError, SearchFilter, Submitter};
use custos_engine::identity::permission::Permission;
use custos_engine::identity::service::Caller;
use custos_engine::time::{DAY_US, HOUR_US};
use custos_engine::time::{parse_rfc3339, rfc3339};
use custos_model::Channel;
use custos_model::{ErrorBody, ErrorCode, EventView, IngestReceipt, SearchPage, Stats};
use serde::Serialize;

use super::{ApiError, Ctx};
use crate::http::AppState;

/// Receipts for an ingest request, in the order the events were sent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestResponse {
    /// One per event.
    pub events: Vec<IngestReceipt>,
}

fn submitter(caller: &Caller) -> Submitter {
    let principal = match caller {
        Caller::ApiKey(k) => format!("api_key:{}", k.prefix),
        Caller::User(p) => format!("user:{}", p.user_id),
        Caller::Anonymous => "anonymous".into(),
    };
    Submitter { principal }
}

/// Reads a body up to `limit` bytes; 413 beyond.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let too_large = || {
        ApiError::new(ErrorCode::PayloadTooLarge, format!("the body is larger than {limit} bytes; nothing was stored"))
            .with_fields(vec![custos_model::FieldProblem {
                path: "body".into(),
                reason: format!("at most {limit} bytes"),
            }])
    };
    if let Some(len) =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|_| too_large())
}

/// Record audit events.
///
/// One event (a JSON object), a batch (a JSON array), or NDJSON (one event
/// per line, `Content-Type: application/x-ndjson`). All events are
/// validated first: any problem refuses the whole request and stores
/// nothing. The answer comes after the commit (fail closed). An event whose
/// `id` is already committed returns the stored receipt (`duplicate: true`)
/// instead of a second copy; if its content differs from the stored one,
/// the receipt also says `conflict: true` and the answer is 409.
#[utoipa::path(
    post, path = "/api/audit/events", tag = "audit",
    request_body(content = custos_model::EventInput, description = "An event, an array of events (at most 1,000), or NDJSON with one event per line.",
        content_type = "application/json"),
    responses(
        (status = 201, description = "Committed", body = IngestResponse),
        (status = 200, description = "Every event was already committed (retries)", body = IngestResponse),
        (status = 409, description = "An id was already used for a different event: that event was not stored \
            (`conflict: true`); the others are as their receipts say", body = IngestResponse),
        (status = 400, description = "Malformed JSON or empty body", body = ErrorBody),
        (status = 413, description = "Body or batch too large", body = ErrorBody),
        (status = 415, description = "Unsupported content type", body = ErrorBody),
        (status = 422, description = "Invalid events: each problem with its field path", body = ErrorBody),
        (status = 503, description = "The ledger cannot commit; nothing stored", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn ingest(State(s): State<AppState>, ctx: Ctx, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let ndjson = match headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        None => false,
        Some(ct) => {
            let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            match mime.as_str() {
                "application/json" => false,
                "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/json-seq" => true,
                m if m.ends_with("+json") => false,
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::UnsupportedMediaType,
                        format!("Content-Type `{mime}` is not accepted; use application/json or application/x-ndjson"),
                    )
                    .with_fields(vec![custos_model::FieldProblem {
                        path: "Content-Type".into(),
                        reason: "must be application/json or application/x-ndjson".into(),
                    }]));
                }
            }
        }
    };
    s.disk.check()?;
    let bytes = read_body(body, &headers, s.ingest_max_body).await?;
    // Counted before anything is built: a body of a million tiny events is
    // refused without materialising them.
    let max = s.events.limits().max_batch;
    let n = custos_engine::events::validate::count_events(&bytes, ndjson);
    if n > max {
        return Err(EventsError::Body(custos_engine::events::validate::BodyError::TooMany { max, got: n }).into());
    }
    let parsed = if ndjson {
        parse_ndjson_lines(&bytes).map(|(v, l)| (v, Some(l)))
    } else {
        parse_json(&bytes).map(|v| (v, None))
    };
    let (items, lines) = parsed.map_err(EventsError::Body)?;
    let receipts = s.events.ingest(&items, lines.as_deref(), &submitter(&ctx.caller)).await?;
    let status = if receipts.iter().any(|r| r.conflict) {
        StatusCode::CONFLICT
    } else if receipts.iter().all(|r| r.duplicate) {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    metrics::counter!("custos_events_ingested_total")
        .increment(receipts.iter().filter(|r| !r.duplicate).count() as u64);
    let tally = super::summaries::IngestTally::of(&receipts, bytes.len());
    let mut response = (status, axum::Json(IngestResponse { events: receipts })).into_response();
    // For the self-audit's summary of ingest requests.
    response.extensions_mut().insert(tally);
    Ok(response)
}

/// Decoded query pairs, or a 400.
pub fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    match raw {
        None => Ok(Vec::new()),
        Some(q) => serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .map_err(|e| ApiError::field("query", format!("cannot be decoded: {e}"))),
    }
}

/// Search events.
///
/// Filters are ANDed; values of one filter are ORed and may be repeated
/// (`action=a&action=b`) or comma-separated (`action=a,b`). `action` takes
/// exact actions or prefixes such as `user.*`. `from`/`to` bound
/// `occurred_at` (RFC 3339; `from` inclusive, `to` exclusive). `q` looks for
/// text in the decrypted, masked events within the filtered set; it examines
/// at most 10,000 entries per request and then returns what it found with a
/// `next_cursor` to continue (`scanned` says how many it examined). Pages
/// come in event time, newest first unless `order=asc`: by `occurred_at`,
/// then by seq (ledger order) among equal times, so an event sent late
/// appears where its time puts it. Pages are keyset-based: pass
/// `next_cursor` back as `cursor`. (The live tail and exports read in
/// ledger order.)
#[utoipa::path(
    get, path = "/api/audit", tag = "audit",
    params(
        ("actor" = Option<Vec<String>>, Query, description = "Actor ids (masked values match too)"),
        ("action" = Option<Vec<String>>, Query, description = "Actions, exact or `prefix.*`"),
        ("resource_type" = Option<Vec<String>>, Query, description = "Resource types"),
        ("resource_id" = Option<Vec<String>>, Query, description = "Resource ids"),
        ("outcome" = Option<Vec<String>>, Query, description = "success, failure, denied, error"),
        ("category" = Option<Vec<String>>, Query, description = "Categories"),
        ("channel" = Option<Vec<String>>, Query, description = "Channels"),
        ("severity" = Option<Vec<String>>, Query, description = "Severities"),
        ("tenant" = Option<Vec<String>>, Query, description = "Tenants"),
        ("from" = Option<String>, Query, description = "occurred_at >= from (RFC 3339)"),
        ("to" = Option<String>, Query, description = "occurred_at < to (RFC 3339)"),
        ("q" = Option<String>, Query, description = "Free text (at most 200 characters)"),
        ("own" = Option<String>, Query, description = "`exclude`: leave out Custos's own activity (what it records about itself: page views, API reads, policy steps); `include` (default)"),
        ("order" = Option<String>, Query, description = "desc (default) or asc"),
        ("limit" = Option<u32>, Query, description = "1..1000, default 50"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of events", body = SearchPage),
        (status = 400, description = "A bad parameter, named", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn search(
    State(s): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<SearchPage>, ApiError> {
    let pairs = query_pairs(raw.as_deref())?;
    let mut filter = SearchFilter::from_pairs(&pairs).map_err(ApiError::fields)?;
    filter.by_time = true;
    // Free text decrypts what it scans: bounded per caller.
    let _slot = match filter.q {
        Some(_) => Some(s.busy.start(crate::limits::Work::TextScan, &ctx.principal())?),
        None => None,
    };
    Ok(axum::Json(s.events.search(&filter).await?))
}

/// An event with its proof.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventWithProof {
    /// The event (masked unless unmasked on request).
    pub event: EventView,
    /// The entry's verification: stored fields vs leaf hash, MAC,
    /// decryption, and its inclusion proof against a signed checkpoint.
    #[schema(value_type = Object)]
    pub verification: custos_engine::ledger::EntryVerification,
    /// The leaf hash (hex) the inclusion proof starts from.
    pub leaf_hash: String,
    /// The checkpoint signer's public key (C2SP vkey), to check the note.
    pub public_key: String,
}

/// Read one event.
///
/// `{id}` is the event id (UUID) or its seq. The event comes decrypted
/// and masked, with its inclusion proof and the signed checkpoint it
/// verifies against. With `unmask=true` and a `reason`, a caller holding
/// `audit:unmask` also gets the original values the masking rules kept;
/// the unmasking is recorded in the ledger first (action `audit.unmask`).
#[utoipa::path(
    get, path = "/api/audit/{id}", tag = "audit",
    params(
        ("id" = String, Path, description = "Event id (UUID) or seq"),
        ("unmask" = Option<bool>, Query, description = "Return kept originals (needs audit:unmask)"),
        ("reason" = Option<String>, Query, description = "Why (required with unmask; 5..500 characters)"),
    ),
    responses(
        (status = 200, description = "The event, its proof and checkpoint", body = EventWithProof),
        (status = 400, description = "Bad id or parameters", body = ErrorBody),
        (status = 403, description = "Unmask without audit:unmask", body = ErrorBody),
        (status = 404, description = "No such event", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn read_one(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<EventWithProof>, ApiError> {
    let pairs = query_pairs(raw.as_deref())?;
    let mut unmask = false;
    let mut reason = None;
    let mut errors = Vec::new();
    for (k, v) in &pairs {
        match k.as_str() {
            "unmask" => match v.as_str() {
                "true" | "1" => unmask = true,
                "false" | "0" => unmask = false,
                _ => errors.push(FieldError { path: "unmask".into(), reason: "must be true or false".into() }),
            },
            "reason" => reason = Some(v.as_str()),
            other => errors
                .push(FieldError { path: other.into(), reason: "unknown parameter; known: unmask, reason".into() }),
        }
    }
    let unmask = match unmask.then(|| Unmask::new(ctx.requester(Channel::Api), reason)) {
        Some(Err(e)) => {
            errors.push(e);
            None
        }
        Some(Ok(u)) => Some(u),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    if unmask.is_some() && !ctx.caller.allows(Permission::AuditUnmask) {
        return Err(ApiError::forbidden("unmasking needs the permission `audit:unmask`").with_fields(vec![
            custos_model::FieldProblem { path: "unmask".into(), reason: "needs audit:unmask".into() },
        ]));
    }
    let at: EventRef = id.parse().map_err(|e| ApiError::fields(vec![e]))?;
    let proven = s.events.read_with_proof(at, unmask.as_ref()).await?;
    let proven = proven.ok_or_else(|| ApiError::not_found(format!("no event `{id}`")))?;
    Ok(axum::Json(EventWithProof {
        event: proven.event,
        verification: proven.verification,
        leaf_hash: hex::encode(proven.leaf_hash),
        public_key: s.ledger.verifier_key(),
    }))
}

/// A signed checkpoint.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckpointView {
    /// Entries it covers.
    pub tree_size: u64,
    /// RFC 6962 root (hex).
    pub root_hash: String,
    /// When it was signed.
    pub created_at: String,
    /// The C2SP signed note.
    pub note: String,
    /// The note's signature verifies with the ledger's public key and it
    /// signs this tree size and root.
    pub signature_verified: bool,
}

/// Checkpoints, newest first, with the key that checks them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckpointsResponse {
    /// Log origin (the note's first line).
    pub origin: String,
    /// Ed25519 verifier key (C2SP vkey form): `custos verify --public-key`.
    pub public_key: String,
    /// The page.
    pub checkpoints: Vec<CheckpointView>,
    /// Pass as `before` for older ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<u64>,
}

/// Signed checkpoints and the public key.
///
/// Newest first; `limit` (1..1000, default 100) and `before` (a tree size)
/// page through older ones.
#[utoipa::path(
    get, path = "/api/audit/checkpoints", tag = "verification",
    params(
        ("limit" = Option<u32>, Query, description = "1..1000, default 100"),
        ("before" = Option<u64>, Query, description = "Only checkpoints with a smaller tree size"),
    ),
    responses(
        (status = 200, description = "Checkpoints", body = CheckpointsResponse),
        (status = 400, description = "Bad parameter", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn checkpoints(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<CheckpointsResponse>, ApiError> {
    let pairs = query_pairs(raw.as_deref())?;
    let mut limit = 100u64;
    let mut before = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "limit" => match v.parse::<u64>() {
                Ok(n) if (1..=1000).contains(&n) => limit = n,
                _ => return Err(ApiError::field("limit", "must be a whole number from 1 to 1000")),
            },
            // A tree size is a seq: at most 2^63 - 1, as the document says.
            "before" => match v.parse::<u64>() {
                Ok(n) if i64::try_from(n).is_ok() => before = Some(n),
                _ => return Err(ApiError::field("before", "must be a tree size (a whole number below 2^63)")),
            },
            other => return Err(ApiError::field(other, "unknown parameter; known: limit, before")),
        }
    }
    let rows = s.ledger.checkpoints_page(limit, before).await.map_err(|e| ApiError::ledger(&e))?;
    let next_before = (rows.len() as u64 == limit).then(|| rows.last().map(|r| r.tree_size)).flatten();
    let verifier = s.ledger.verifier();
    Ok(axum::Json(CheckpointsResponse {
        origin: s.ledger.origin().to_owned(),
        public_key: s.ledger.verifier_key(),
        checkpoints: rows
            .into_iter()
            .map(|r| CheckpointView {
                tree_size: r.tree_size,
                root_hash: hex::encode(r.root_hash),
                created_at: rfc3339(r.created_at_us),
                signature_verified: verifier
                    .open_checkpoint(&r.note)
                    .is_ok_and(|c| c.tree_size == r.tree_size && c.root_hash == r.root_hash),
                note: r.note,
            })
            .collect(),
        next_before,
    }))
}

/// The dimensions `stats` can rank.
pub const STAT_DIMENSIONS: [&str; 7] = ["action", "actor", "outcome", "category", "severity", "channel", "tenant"];

/// Counts over time and top values.
///
/// Read from the rollups (per minute and dimension, exact at the read),
/// never from a scan of the ledger. `from`/`to` (RFC 3339) default to the
/// last 24 hours; `bucket` (minute, hour, day) defaults to a width that
/// gives at most a few hundred points; `top` (1..100, default 10) values per
/// dimension in `dimensions` (comma list; default all).
#[utoipa::path(
    get, path = "/api/audit/stats", tag = "audit",
    params(
        ("from" = Option<String>, Query, description = "RFC 3339, default now - 24h"),
        ("to" = Option<String>, Query, description = "RFC 3339, default now"),
        ("bucket" = Option<String>, Query, description = "minute, hour or day"),
        ("top" = Option<u32>, Query, description = "1..100, default 10"),
        ("dimensions" = Option<Vec<String>>, Query, description = "action, actor, outcome, category, severity, channel, tenant"),
    ),
    responses(
        (status = 200, description = "Statistics", body = Stats),
        (status = 400, description = "Bad parameter", body = ErrorBody),
    ),
    security(("api_key" = []), ("session" = []))
)]
pub async fn stats(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Result<axum::Json<Stats>, ApiError> {
    let pairs = query_pairs(raw.as_deref())?;
    let now = s.ledger.now_us();
    let (mut from, mut to, mut bucket, mut top) = (None, None, None, 10u64);
    let mut dims: Vec<&str> = Vec::new();
    let mut errors = Vec::new();
    let mut err = |p: &str, r: &str| errors.push(FieldError { path: p.into(), reason: r.into() });
    for (k, v) in &pairs {
        match k.as_str() {
            "from" | "to" => match parse_rfc3339(v.trim()) {
                Some(t) if k == "from" => from = Some(t),
                Some(t) => to = Some(t),
                None => err(k, "must be an RFC 3339 date-time, e.g. 2026-11-26T14:03:00Z"),
            },
            "bucket" => bucket = Some(v.clone()),
            "top" => match v.parse::<u64>() {
                Ok(n) if (1..=100).contains(&n) => top = n,
                _ => err("top", "must be a whole number from 1 to 100"),
            },
            "dimensions" => {
                for d in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
                    match STAT_DIMENSIONS.iter().find(|x| **x == d) {
                        Some(x) if !dims.contains(x) => dims.push(x),
                        Some(_) => {}
                        None => err(
                            "dimensions",
                            "each must be one of action, actor, outcome, category, severity, channel, tenant",
                        ),
                    }
                }
            }
            other => err(other, "unknown parameter; known: from, to, bucket, top, dimensions"),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::fields(errors));
    }
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - DAY_US);
    let bucket = bucket.unwrap_or_else(|| {
        let span = to.saturating_sub(from);
        if span <= 6 * HOUR_US {
            "minute".into()
        } else if span <= 14 * DAY_US {
            "hour".into()
        } else {
            "day".into()
        }
    });
    if dims.is_empty() {
        dims = STAT_DIMENSIONS.to_vec();
    }
    Ok(axum::Json(s.events.stats(from, to, &bucket, top, &dims).await?))
}
