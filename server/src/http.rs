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
use custos_engine::identity::service::Identity;
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
    /// Users, roles, sessions, keys.
    pub identity: Arc<Identity>,
    /// Clients reach it over HTTPS, directly or through a TLS proxy
    /// (cookies `Secure`, HSTS).
    pub https: bool,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub proxies: Arc<crate::auth::client::TrustedProxies>,
    /// Expensive work in progress, bounded per principal.
    pub busy: Arc<crate::limits::Busy>,
    /// A session ends this long after sign-in, active or not (µs).
    pub session_absolute_us: i64,
    /// A session ends after this much inactivity (seconds).
    pub session_idle_secs: i64,
    /// Ingest, search, statistics, masking policy.
    pub events: Arc<custos_engine::events::Events>,
    /// The policy store.
    pub policies: Arc<custos_engine::policies::PolicyStore>,
    /// The alerts the rules opened.
    pub alerts: Arc<custos_engine::alerts::store::Alerts>,
    /// Notifications: the delivery log and channel tests (delivery itself
    /// is a background task with its own notifier).
    pub notifier: Arc<custos_engine::notify::Notifier>,
    /// SIEM forwarding: destinations' health, tests, previews, pauses and
    /// replays (the background task forwards through the same forwarder).
    pub forwarder: Arc<custos_engine::forward::Forwarder>,
    /// Retention runs, their history and the archive catalogue.
    pub retention: Arc<custos_engine::retention::Retention>,
    /// Backups (SQLite), their schedule and catalogue.
    pub backups: Arc<custos_engine::backup::Backups>,
    /// Compliance snapshots and evidence reports.
    pub reports: Arc<custos_engine::reports::Reports>,
    /// This process's name among replicas (its leases).
    pub replica: String,
    /// Online verification jobs.
    pub verifications: Arc<custos_engine::events::verification::Verifications>,
    /// Largest ingest body (bytes).
    pub ingest_max_body: usize,
    /// How long a write waits for its commit (`ledger.commit_timeout_secs`);
    /// an ingest request is answered 503 a second after it at the latest.
    pub commit_timeout: Duration,
    /// How long an API read may take before its answer starts
    /// (`server.read_timeout_secs`).
    pub read_timeout: Duration,
    /// The disk watermark for new events (SQLite).
    pub disk: Arc<crate::disk::DiskGuard>,
    /// Background exports, their files and manifests.
    pub exports: std::sync::Arc<custos_engine::events::export::ExportJobs>,
    /// Ingest requests counted into summaries (the self-audit's).
    pub ingest_summaries: Arc<crate::api::summaries::Summaries>,
    /// Repeated reads of polled endpoints, counted per user (`audit.presence`).
    pub presence: Arc<crate::api::summaries::Summaries>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(s: &AppState) -> Self {
        s.leptos.clone()
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The application: routes, then (outside routing, so that a refused page
/// can be re-routed to the 403 page) sessions, caller, access control,
/// CSRF, security headers, tracing and request ids.
pub fn app(
    state: AppState,
) -> axum::extract::connect_info::IntoMakeServiceWithConnectInfo<Router, std::net::SocketAddr> {
    let routed = routes(state.clone());
    wrap(state, routed)
}

/// Wraps routes in the layers every request passes (sessions, caller,
/// self-audit, panic catching, access control, CSRF, headers, tracing).
/// Tests wrap their own routes with it to see a panic answered and recorded.
pub fn wrap(
    state: AppState,
    routed: Router,
) -> axum::extract::connect_info::IntoMakeServiceWithConnectInfo<Router, std::net::SocketAddr> {
    let session_store =
        crate::auth::session_store::DbSessionStore::new(state.ledger.db().clone(), state.identity.clone());
    let sessions = tower_sessions::SessionManagerLayer::new(session_store)
        .with_name("custos_session")
        .with_http_only(true)
        .with_same_site(tower_sessions::cookie::SameSite::Strict)
        .with_secure(state.https)
        .with_path("/")
        .with_always_save(true)
        .with_expiry(tower_sessions::Expiry::OnInactivity(tower_sessions::cookie::time::Duration::seconds(
            state.session_idle_secs,
        )));
    let wrapped = Router::new()
        .fallback_service(routed)
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::enforce))
        // Inside the self-audit: a panicking handler answers 500 and is recorded.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state.clone(), crate::api::self_audit::record))
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::load_caller))
        .layer(sessions)
        .layer(tower_http::csrf::CsrfLayer::new())
        // Outside every layer that may wait on the database (sessions, the
        // caller's key or user, the self-audit), inside the request trace
        // and the security headers: a request given up is logged and
        // answered like any other.
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .layer(middleware::from_fn_with_state(state.clone(), crate::auth::security_headers))
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
        .layer(middleware::map_request(sanitize_request_id));
    wrapped.into_make_service_with_connect_info::<std::net::SocketAddr>()
}

/// The routes (health, auth forms, API, UI and server functions).
pub fn routes(state: AppState) -> Router {
    let leptos_routes = route_list();
    let ctx = ServerContext {
        ledger: state.ledger.clone(),
        identity: state.identity.clone(),
        policies: state.policies.clone(),
        events: state.events.clone(),
        started: state.started,
    };
    let leptos_options = state.leptos.clone();
    let mut router = Router::new();
    // Rows sharing a path (GET and POST /api/searches) merge.
    for (_, path, handler) in registered_routes() {
        router = router.route(path, handler);
    }
    router
        .leptos_routes_with_context(
            &state,
            leptos_routes,
            move || provide_context(ctx.clone()),
            move || custos_app::shell(leptos_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(custos_app::shell))
        .layer(middleware::from_fn(record_metrics))
        .with_state(state)
}

/// The UI's routes, generated once per process. Generating them runs the
/// app with resource loading suppressed by a process-global flag: a page
/// whose resource first polls meanwhile, in another server of the same
/// process, would hang forever (leptos-rs/leptos#4773). One server per
/// process generates before it serves; tests run many servers at once.
pub fn route_list() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(custos_app::App)).clone()
}

/// The routes registered outside Leptos: (method, path, handler): health,
/// metrics and the sign-in forms, then every REST route of
/// `routes::table`. The router is built from this list, and the access test
/// reads it.
pub fn registered_routes() -> Vec<(&'static str, &'static str, axum::routing::MethodRouter<AppState>)> {
    use axum::routing::post;
    let mut all = vec![
        ("GET", "/healthz", get(healthz)),
        ("GET", "/readyz", get(readyz)),
        ("GET", "/metrics", get(metrics)),
        ("POST", "/auth/login", post(crate::auth::login)),
        ("POST", "/auth/mfa", post(crate::auth::mfa)),
        ("POST", "/auth/logout", post(crate::auth::logout)),
    ];
    all.extend(crate::routes::table().iter().map(|r| (r.method, r.path, r.router.clone())));
    all
}

/// Marks a response made from a panic, so that the self-audit records it
/// whatever the route.
#[derive(Debug, Clone, Copy)]
pub struct Panicked;

/// The answer to a panicking handler: 500 in the API's error shape, with an
/// operation id; the panic's message goes to the log only.
fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    metrics::counter!("custos_http_panics_total").increment(1);
    let mut res = crate::api::ApiError::internal("the server failed to handle this request", &detail).into_response();
    res.extensions_mut().insert(Panicked);
    res
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

/// Requests never hang on the database. An ingest request is answered
/// within the commit timeout and a second, whatever it waits on (an API key
/// or session read, the commit itself): applications get a 503 to retry,
/// not a connection held open; its work is dropped, and a commit already
/// handed to the database may still land (a retry with the same ids gets
/// the stored receipts). An API read is answered 503 when its answer has
/// not started within `server.read_timeout_secs`: no data was returned
/// (a streamed body, once started, is not bounded), and `Retry-After` is
/// the bound (the given-up query may still run).
async fn deadline(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path());
    let ingest = method == axum::http::Method::POST && path == "/api/audit/events";
    let read = matches!(method, axum::http::Method::GET | axum::http::Method::HEAD) && path.starts_with("/api/");
    let bound = match (ingest, read) {
        (true, _) => s.commit_timeout + Duration::from_secs(1),
        (_, true) => s.read_timeout,
        _ => return next.run(req).await,
    };
    match tokio::time::timeout(bound, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            let message = if ingest {
                metrics::counter!("custos_ingest_deadline_exceeded_total").increment(1);
                format!(
                    "the audit ledger did not answer within {} s (the database is down, hung or slow); the events \
                     may still be recorded: retry with the same ids",
                    bound.as_secs()
                )
            } else {
                metrics::counter!("custos_read_deadline_exceeded_total").increment(1);
                format!(
                    "the answer did not start within {} s (the database or the object store is down, hung or \
                     slow); no data was returned. Try again later",
                    bound.as_secs()
                )
            };
            // A read given up may still run in the database for a while:
            // a client that waits the bound before retrying does not pile
            // new ones on it.
            let retry_after = if ingest { 5 } else { bound.as_secs().max(5) };
            crate::api::ApiError::retry_later(message, retry_after, &"request deadline exceeded").into_response()
        }
    }
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
    // Failed closed: restarting the server is what brings it back.
    if let Some(why) = s.ledger.refusing_commits() {
        return unready(why.into());
    }
    if s.ledger.sequencer_stopped() {
        return unready(
            "the ledger's sequencer has stopped (or, on PostgreSQL, its committer): nothing is committed until the \
             server restarts"
                .into(),
        );
    }
    let db = s.ledger.db();
    // Bounded: a hung database makes the replica unready, not the probe hang.
    match tokio::time::timeout(Duration::from_secs(2), db.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            return unready("database unreachable".into());
        }
        Err(_) => return unready("the database did not answer within 2 s".into()),
    }
    match tokio::time::timeout(Duration::from_secs(2), db.pending_migrations()).await {
        Ok(Ok(p)) if p.is_empty() => {}
        Ok(Ok(p)) => return unready(format!("{} migration(s) pending", p.len())),
        Err(_) => return unready("the database did not answer within 2 s".into()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: cannot read migration state");
            return unready("cannot read migration state".into());
        }
    }
    // A clock so far ahead that the ledger refuses its commits: out of
    // the load balancer's rotation, saying why.
    if let Ok(Some(ahead)) = tokio::time::timeout(Duration::from_secs(2), s.ledger.clock_too_far_ahead()).await {
        return unready(format!(
            "this server's clock is {ahead} s ahead of the database server's (more than \
             ledger.max_clock_ahead_secs): it records nothing until one of them is set right"
        ));
    }
    // The leases this replica holds now. The route is public: names only,
    // and the SIEM destinations counted, not named.
    let mut leases: Vec<String> = Vec::new();
    let mut forwarding = 0;
    for l in custos_engine::lease::held_by(&s.ledger, &s.replica).into_iter().filter(|l| l.held) {
        if l.name.starts_with("forward:") {
            forwarding += 1;
        } else {
            leases.push(l.name);
        }
    }
    if forwarding > 0 {
        leases.push(format!("forward ({forwarding} destination(s))"));
    }
    (
        StatusCode::OK,
        axum::Json(json!({
            "status": "ready", "database": db.kind().as_str(), "migrations": "current", "leases": leases,
        })),
    )
        .into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut res = s.metrics.render().into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    res
}
