//! Audit the auditors: every request to `/api/*`, every server function
//! (`/rpc/*`) and every page a signed-in user opens is recorded in the
//! ledger (actor, action, resource, outcome, status code, latency, request
//! id) before its response leaves. If the record cannot be committed, the
//! response is replaced by 503: no data goes out unrecorded. Accepted
//! ingest requests are counted into a summary per caller instead
//! (`summaries`): their events, committed before the answer, each
//! with its submitter, are their own record. A signed-in user's repeated
//! reads of the endpoints pages poll are counted into one presence record
//! per period, after the first is recorded on its own (`summaries`). Anonymous
//! calls are the exception that keeps a flood from filling the ledger: the
//! first per address, endpoint and minute is recorded, the others counted
//! into a summary (`auth::gate_anonymous`); they are refused anyway, or
//! read only public endpoints. A panicking handler's 500 is recorded
//! whatever the route.
//!
//! Changes themselves are recorded by the code that makes them, before it
//! makes them (identity, masking policy; ingested events are their own
//! record), so a change never happens without its record: with the ledger
//! down, a changing request fails with 503 and nothing changes.
//!
//! Never recorded: request bodies, headers (API keys, cookies, session
//! ids, tokens) and query values of parameters named like secrets.

use custos_model::{Channel, Outcome};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use custos_engine::events::{OwnAction, OwnEvent};

use custos_engine::identity::noise::Verdict;

use super::Ctx;
use super::summaries::{Counted, IngestTally, MAX_COUNTED_PATH, MAX_COUNTED_QUERY};
use crate::access::{self, Kind};
use crate::http::AppState;

fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "token", "key", "auth", "cookie", "session", "credential"].iter().any(|s| n.contains(s))
}

/// Query parameters as recorded: values of secret-looking names replaced,
/// each value cut at 256 characters, at most 40 parameters.
fn recorded_query(raw: Option<&str>) -> Option<serde_json::Value> {
    let pairs = serde_urlencoded::from_str::<Vec<(String, String)>>(raw?).ok()?;
    let list: Vec<serde_json::Value> = pairs
        .into_iter()
        .take(40)
        .map(|(k, v)| {
            let v = if is_secret_name(&k) { "[secret]".to_owned() } else { v.chars().take(256).collect() };
            serde_json::json!([k.chars().take(64).collect::<String>(), v])
        })
        .collect();
    (!list.is_empty()).then_some(serde_json::Value::Array(list))
}

/// The middleware (inside `load_caller`, outside `enforce`, so refused
/// requests are recorded too). Anonymous callers are gated per source and
/// minute first: only the first of a minute is recorded on its own, the
/// others are counted in a summary, and a flood is refused with 429 before
/// it costs anything (`auth::gate_anonymous`).
pub async fn record(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let route = access::find(&method, &path);
    let unknown_endpoint = route.is_none() && access::is_endpoint_path(&path);
    let anonymous =
        !req.extensions().get::<custos_engine::identity::service::Caller>().is_some_and(|c| c.is_authenticated());
    let wanted = match route.map(|r| r.kind) {
        Some(Kind::Api | Kind::Rpc) => true,
        Some(Kind::Page) => !anonymous,
        Some(Kind::Form | Kind::Ops) => false,
        // Probes of endpoints that do not exist are recorded too.
        None => unknown_endpoint,
    };
    let mut wanted_alone = wanted;
    if wanted && anonymous {
        let topic = match route {
            Some(r) => format!("{method} {}", r.path),
            None => "unknown endpoint".to_owned(),
        };
        let public = route.is_some_and(|r| r.need == access::Need::Public);
        match crate::auth::gate_anonymous(&s, &req, &topic, public) {
            Ok(Verdict::Record) => {}
            Ok(_) => wanted_alone = false,
            Err(refused) => return axum::response::IntoResponse::into_response(refused),
        }
    }
    let (parts, body) = req.into_parts();
    let ctx = Ctx::of(&parts);
    let query = recorded_query(parts.uri.query());
    let query_len = parts.uri.query().map_or(0, str::len);

    let started = Instant::now();
    let response = next.run(Request::from_parts(parts, body)).await;
    // A panic is recorded whatever the route.
    if !wanted_alone && response.extensions().get::<crate::http::Panicked>().is_none() {
        return response;
    }
    let status = response.status().as_u16();
    let outcome = match status {
        200..=399 => Outcome::Success,
        401 | 403 => Outcome::Denied,
        400..=499 => Outcome::Failure,
        _ => Outcome::Error,
    };
    // Pages the catch-all row covers are recorded by their path, not "/{*page}".
    let template: String = match route {
        Some(r) if r.path != access::NOT_FOUND_PAGE => r.path.to_owned(),
        _ => path.chars().take(200).collect(),
    };
    let (category, action) = match route {
        Some(r) => r.audit_name(),
        None => ("data_access", "api.unknown".to_owned()),
    };
    let channel =
        if matches!(route.map(|r| r.kind), Some(Kind::Page | Kind::Rpc)) { Channel::Ui } else { Channel::Api };
    let duration_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    // Accepted ingest requests with a caller are counted into a summary
    // per caller (`summaries`): their events, committed before this
    // answer, are their own record. Refusals are recorded one by one.
    if let Some(tally) = response.extensions().get::<IngestTally>().copied()
        && (200..300).contains(&status)
        && !anonymous
        && route.is_some_and(|r| matches!(r.audit, access::Audit::Named("audit.ingest", _)))
        && response.extensions().get::<crate::http::Panicked>().is_none()
    {
        let route = format!("{method} {template}");
        let counted = Counted {
            actor: ctx.actor(),
            status,
            tally,
            duration_ms,
            request_id: ctx.request_id.clone(),
            endpoint: route.clone(),
            route,
        };
        if s.ingest_summaries.add(counted, s.ledger.now_us()) {
            return response;
        }
    }
    // A signed-in user's successful read of an endpoint pages poll: counted
    // when the same read (the same path and decoded query, short enough to
    // be kept whole, no secret-looking parameter) was recorded once already.
    let polled = (route.is_some_and(|r| r.polled())
        && (200..300).contains(&status)
        && matches!(ctx.caller, custos_engine::identity::service::Caller::User(_))
        && response.extensions().get::<crate::http::Panicked>().is_none()
        && path.len() <= MAX_COUNTED_PATH
        && query_len <= MAX_COUNTED_QUERY
        && !query.as_ref().is_some_and(|q| q.to_string().contains("[secret]")))
    .then(|| match &query {
        Some(q) => format!("{method} {path} {q}"),
        None => format!("{method} {path}"),
    });
    if let Some(endpoint) = &polled {
        let counted = Counted {
            actor: ctx.actor(),
            status,
            tally: IngestTally::default(),
            duration_ms,
            request_id: ctx.request_id.clone(),
            route: format!("{method} {template}"),
            endpoint: endpoint.clone(),
        };
        if s.presence.add(counted, s.ledger.now_us()) {
            return response;
        }
    }
    let event = OwnEvent::new(OwnAction::Request { action, category }, ctx.actor(), channel)
        .outcome(outcome)
        .resource("endpoint", Some(format!("{method} {template}")))
        .request(ctx.request_id.clone())
        .timing(duration_ms, status)
        .details(serde_json::json!({ "method": method, "path": template, "query": query }));
    let failures = s.presence.failures();
    match s.events.record_own(event).await {
        Ok(_) => {
            s.presence.ledger_recorded(failures, true);
            if let Some(endpoint) = polled {
                s.presence.recorded_alone(&ctx.actor(), endpoint, s.ledger.now_us());
            }
            response
        }
        // Saying why when it is the caller's to act on (a clock ahead: try
        // another replica).
        Err(e) => {
            s.presence.ledger_recorded(failures, false);
            super::ApiError::from(e).into_response()
        }
    }
}
