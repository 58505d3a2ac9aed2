//! The HTTP surface: health, readiness, metrics, and the Leptos UI with its
//! server functions. Every request gets an `x-request-id` (kept if the client
//! sent a valid one) that is on every log line of that request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRef, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use custos_app::server::ServerContext;
use custos_engine::ledger::Ledger;
use leptos::prelude::{LeptosOptions, provide_context};
use leptos_axum::{LeptosRoutes, generate_route_list};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    /// Leptos rendering options.
    pub leptos: LeptosOptions,
    /// The ledger (and the database).
    pub ledger: Ledger,
    /// Prometheus exposition.
    pub metrics: PrometheusHandle,
    /// Start time, for uptime.
    pub started: Instant,
    /// Set when shutdown begins: readiness turns false.
    pub shutting_down: Arc<std::sync::atomic::AtomicBool>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(s: &AppState) -> Self {
        s.leptos.clone()
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(custos_app::App);
    let ctx = ServerContext { ledger: state.ledger.clone(), started: state.started };
    let leptos_options = state.leptos.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(ctx.clone()),
            move || custos_app::shell(leptos_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(custos_app::shell))
        .layer(middleware::from_fn(record_metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id =
                        req.extensions().get::<RequestId>().and_then(|r| r.header_value().to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
                })
                .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::info!(
                        status = res.status().as_u16(),
                        latency_ms = latency.as_secs_f64() * 1000.0,
                        "served"
                    );
                }),
        )
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), MakeRequestUuid))
        .layer(middleware::map_request(sanitize_request_id))
        .with_state(state)
}

/// Drops a client's `x-request-id` unless it is short and made of safe
/// characters, so that only ids fit for logs and headers are kept (a new one
/// is then made by `SetRequestIdLayer`, which keeps any id already present).
async fn sanitize_request_id(mut req: Request) -> Request {
    let valid = req.headers().get(&X_REQUEST_ID).is_some_and(|v| {
        !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if !valid {
        req.headers_mut().remove(&X_REQUEST_ID);
    }
    req
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    // Label by route template, never by raw path (bounded cardinality).
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("custos_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("custos_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, axum::Json(json!({ "status": "alive" })))
}

async fn readyz(State(s): State<AppState>) -> Response {
    let unready = |reason: String| {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "status": "unready", "reason": reason }))).into_response()
    };
    if s.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
        return unready("shutting down".into());
    }
    let db = s.ledger.db();
    if let Err(e) = db.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return unready("database unreachable".into());
    }
    match db.pending_migrations().await {
        Ok(p) if p.is_empty() => {}
        Ok(p) => return unready(format!("{} migration(s) pending", p.len())),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: cannot read migration state");
            return unready("cannot read migration state".into());
        }
    }
    (StatusCode::OK, axum::Json(json!({ "status": "ready", "database": db.kind().as_str(), "migrations": "current" })))
        .into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut res = s.metrics.render().into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    res
}
