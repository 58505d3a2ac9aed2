//! Events in and out, over HTTP like an outside client: ingest -> search
//! with every filter -> read one -> verify -> stats; idempotent retries;
//! every bad-input class; masking per built-in rule; the masking policy
//! API; the self-audit of every endpoint; a ledger that cannot record.

use custos_engine::identity::apikey::Scope;
use custos_engine::identity::service::Acting;
use custos_model::Channel;
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::support::{Backend, TestApp, both_backends};

pub(crate) struct Client {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) key: Option<String>,
}

impl Client {
    pub(crate) fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self.req(reqwest::Method::GET, path).send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let res = self.req(reqwest::Method::POST, path).json(body).send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (StatusCode, Value) {
        if body.len() > 8 * 1024 * 1024 {
            return self.post_declared_only(path, content_type, body.len()).await;
        }
        let res =
            self.req(reqwest::Method::POST, path).header("content-type", content_type).body(body).send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// A request that declares a body of `len` bytes and sends none: the
    /// server refuses by the declared length before reading, and an HTTP
    /// client writing the whole body would race the closed connection.
    async fn post_declared_only(&self, path: &str, content_type: &str, len: usize) -> (StatusCode, Value) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let host = self.base.trim_start_matches("http://");
        let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
        let auth = self.key.as_ref().map(|k| format!("authorization: Bearer {k}\r\n")).unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {host}\r\n{auth}content-type: {content_type}\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = tcp.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status: u16 = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        (StatusCode::from_u16(status).unwrap(), serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Every event matching a query, following cursors.
    pub(crate) async fn all(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if query.is_empty() { "" } else { "&" };
            let path = match &cursor {
                None => format!("/api/audit?{query}{sep}limit=1000"),
                Some(c) => format!("/api/audit?{query}{sep}limit=1000&cursor={c}"),
            };
            let (status, page) = self.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            out.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

pub(crate) async fn key_client(app: &TestApp, scopes: &[Scope]) -> Client {
    let (_, token) = app
        .running
        .identity
        .create_api_key(&Acting::system(Channel::Cli), &format!("{scopes:?}"), scopes, None)
        .await
        .unwrap();
    Client { base: app.base.clone(), http: reqwest::Client::new(), key: Some(token.expose_secret().to_owned()) }
}

pub(crate) async fn user_client(app: &TestApp, name: &str, roles: &[&str]) -> Client {
    Client { base: app.base.clone(), http: app.signed_in(name, roles).await, key: None }
}

fn ts(minutes_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn event(i: usize, minutes_ago: i64) -> Value {
    let actions = ["user.login", "user.logout", "policy.update", "tool.invoke"];
    let outcomes = ["success", "failure", "denied", "success"];
    let categories = ["authentication", "authentication", "policy", "tool"];
    json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "occurred_at": ts(minutes_ago),
        "category": categories[i % 4],
        "action": actions[i % 4],
        "outcome": outcomes[i % 4],
        "severity": if i.is_multiple_of(5) { "warning" } else { "info" },
        "actor": {"id": format!("user-{}", i % 3), "kind": "user", "name": format!("User {}", i % 3)},
        "resource": {"type": if i.is_multiple_of(2) { "document" } else { "server" }, "id": format!("r{}", i % 4)},
        "tenant": if i.is_multiple_of(2) { "acme" } else { "globex" },
        "source": {"application": "billing", "channel": if i.is_multiple_of(3) { "ui" } else { "api" }},
        "details": {"n": i, "note": format!("ticket T-{i}")}
    })
}

/// Rollups count exactly what was committed: once the counts held in
/// memory are written (SQLite writes them within a second, or when a
/// reader asks), their total as readers see it (with, on PostgreSQL, the
/// rows not yet folded) equals the ledger's entry count (failed and
/// duplicate batches count nothing).
async fn assert_rollups_match_ledger(app: &TestApp) {
    use sea_orm::ConnectionTrait as _;
    app.running.ledger.settle_rollups().await;
    let db = app.running.ledger.db().conn();
    let b = db.get_database_backend();
    let one = |sql: &str| {
        let stmt = sea_orm::Statement::from_string(b, sql.to_owned());
        async move { db.query_one_raw(stmt).await.unwrap().unwrap().try_get_by_index::<i64>(0).unwrap() }
    };
    let rolled =
        one("SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM audit_rollups_current WHERE dimension = 'total'")
            .await;
    let entries = one("SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_entries").await;
    assert_eq!(rolled, entries, "rollup total vs ledger entries");
}

/// (occurred_at µs, seq) of each item: the order of search pages.
fn time_keys(items: &[Value]) -> Vec<(i64, u64)> {
    items
        .iter()
        .map(|e| {
            (
                custos_engine::time::parse_rfc3339(e["occurred_at"].as_str().unwrap()).unwrap(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

both_backends! {
async fn ingest_search_read_verify_stats(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let ingest = key_client(&app, &[Scope::Ingest]).await;
    let reader = key_client(&app, &[Scope::Read]).await;

    // One event, a batch, NDJSON.
    let one = event(0, 30);
    let (status, body) = ingest.post_json("/api/audit/events", &one).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let r = &body["events"][0];
    assert_eq!(r["id"], one["id"]);
    assert!(r["seq"].as_u64().unwrap() > 0 && r["recorded_at"].as_str().unwrap().ends_with('Z'), "{r}");
    let batch: Vec<Value> = (1..40).map(|i| event(i, 60 - i as i64)).collect();
    let (status, body) = ingest.post_json("/api/audit/events", &json!(batch)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let receipts = body["events"].as_array().unwrap();
    assert_eq!(receipts.len(), 39);
    let batch_seqs: Vec<u64> = receipts.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(batch_seqs.windows(2).all(|w| w[1] == w[0] + 1), "one batch, consecutive seqs: {batch_seqs:?}");
    let nd: Vec<Value> = (40..43).map(|i| event(i, 5)).collect();
    let nd_body = nd.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n") + "\n";
    let (status, body) = ingest.post_raw("/api/audit/events", "application/x-ndjson", nd_body.into_bytes()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["events"].as_array().unwrap().len(), 3);
    let nd_seqs: Vec<u64> = body["events"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    let one_seq = r["seq"].as_u64().unwrap();

    // Idempotent retry: the stored receipts, no new entries.
    let head_before = app.running.ledger.head().await.unwrap().seq;
    let (status, body) = ingest.post_json("/api/audit/events", &json!(batch)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again: Vec<u64> = body["events"].as_array().unwrap().iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(again, batch_seqs);
    assert!(body["events"].as_array().unwrap().iter().all(|r| r["duplicate"] == true));
    let head_after = app.running.ledger.head().await.unwrap().seq;
    assert_eq!(head_after, head_before, "a retry adds nothing (it is counted in its caller's ingest summary)");
    // The same id with other content is a conflict: not stored, 409.
    let mut changed = one.clone();
    changed["action"] = json!("user.delete");
    let (status, body) = ingest.post_json("/api/audit/events", &changed).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["events"][0]["conflict"], true);
    assert_eq!(body["events"][0]["duplicate"], true);
    assert_eq!(body["events"][0]["seq"], r["seq"]);
    let (_, again) = ingest.post_json("/api/audit/events", &one).await;
    assert!(again["events"][0].get("conflict").is_none(), "a true retry is no conflict: {again}");

    // Search: every filter, against what was sent.
    let sent: Vec<Value> = std::iter::once(one.clone()).chain(batch.iter().cloned()).chain(nd.iter().cloned()).collect();
    let count = |f: &dyn Fn(&Value) -> bool| sent.iter().filter(|e| f(e)).count();
    let cases: Vec<(&str, usize)> = vec![
        ("actor=user-1", count(&|e| e["actor"]["id"] == "user-1")),
        ("action=user.login", count(&|e| e["action"] == "user.login")),
        ("action=user.*&resource_type=document", count(&|e| e["action"].as_str().unwrap().starts_with("user.") && e["resource"]["type"] == "document")),
        ("action=user.login&action=policy.update", count(&|e| e["action"] == "user.login" || e["action"] == "policy.update")),
        ("action=user.login,policy.update", count(&|e| e["action"] == "user.login" || e["action"] == "policy.update")),
        ("resource_type=server&resource_id=r1", count(&|e| e["resource"]["type"] == "server" && e["resource"]["id"] == "r1")),
        ("outcome=denied", count(&|e| e["outcome"] == "denied")),
        ("category=policy,tool&tenant=acme", count(&|e| (e["category"] == "policy" || e["category"] == "tool") && e["tenant"] == "acme")),
        ("channel=ui&tenant=globex", count(&|e| e["source"]["channel"] == "ui" && e["tenant"] == "globex")),
        ("severity=warning&tenant=acme,globex", count(&|e| e["severity"] == "warning")),
        ("tenant=acme", count(&|e| e["tenant"] == "acme")),
        ("q=T-17", 1),
        ("q=ticket&tenant=globex", count(&|e| e["tenant"] == "globex")),
    ];
    for (query, expected) in &cases {
        let got = reader.all(query).await;
        assert_eq!(got.len(), *expected, "{query}");
        assert!(*expected > 0, "the case `{query}` must match something");
    }
    // Time range: from inclusive, to exclusive, on occurred_at.
    let from = ts(45);
    let to = ts(20);
    let in_range = sent
        .iter()
        .filter(|e| {
            let t = e["occurred_at"].as_str().unwrap();
            t >= from.as_str() && t < to.as_str()
        })
        .count();
    let q = format!("tenant=acme,globex&from={}&to={}", custos_model::url::encode(&from), custos_model::url::encode(&to));
    assert_eq!(reader.all(&q).await.len(), in_range, "{q}");
    assert!(in_range > 5);

    // Paging: in event time (occurred_at, then seq), newest first by
    // default, oldest first on request; keyset cursors visit every event
    // once, whatever the page size.
    let mut cursor: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let path = match &cursor {
            None => "/api/audit?tenant=acme,globex&limit=7".to_owned(),
            Some(c) => format!("/api/audit?tenant=acme,globex&limit=7&cursor={c}"),
        };
        let (status, page) = reader.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 7);
        paged.extend(time_keys(items));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    // What was sent, with the seqs its receipts gave, by (time, seq).
    let sent_seqs = std::iter::once(one_seq).chain(batch_seqs.iter().copied()).chain(nd_seqs.iter().copied());
    let mut want: Vec<(i64, u64)> = sent
        .iter()
        .zip(sent_seqs)
        .map(|(e, seq)| (custos_engine::time::parse_rfc3339(e["occurred_at"].as_str().unwrap()).unwrap(), seq))
        .collect();
    want.sort_unstable();
    want.reverse();
    assert_eq!(paged, want, "newest event first, then the higher seq; each once");
    assert!(
        paged.windows(2).any(|w| w[0].1 < w[1].1),
        "the first event (30 minutes ago) sits among the batch's times: event time, not ledger order"
    );
    let asc = time_keys(&reader.all("tenant=acme,globex&order=asc").await);
    assert!(asc.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(asc.len(), sent.len());

    // Read one: decrypted, with its proof against a signed checkpoint.
    let id = one["id"].as_str().unwrap();
    let (status, got) = reader.get(&format!("/api/audit/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["event"]["details"]["note"], "ticket T-0");
    assert_eq!(got["event"]["actor"]["id"], "user-0");
    assert_eq!(got["verification"]["leaf_matches"], true);
    assert_eq!(got["verification"]["mac_valid"], true);
    assert_eq!(got["verification"]["inclusion"]["verified"], true, "{got}");
    let note = got["verification"]["inclusion"]["checkpoint"].as_str().unwrap();
    let origin = note.lines().next().unwrap();
    assert!(got["public_key"].as_str().unwrap().starts_with(&format!("{origin}+")), "{got}");
    let seq = got["event"]["seq"].as_u64().unwrap();
    let (status, by_seq) = reader.get(&format!("/api/audit/{seq}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_seq["event"]["id"], one["id"]);
    let (status, _) = reader.get(&format!("/api/audit/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Verify: full, waiting; and a range as a job with progress.
    let admin = user_client(&app, "ver_admin", &["admin"]).await;
    let (status, job) = admin.post_json("/api/audit/verify", &json!({"wait": true})).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["state"], "done");
    assert_eq!(job["intact"], true, "{job}");
    assert!(job["report"]["entries_checked"].as_u64().unwrap() >= sent.len() as u64);
    assert_eq!(job["report"]["macs_checked"], job["report"]["entries_checked"]);
    let (status, job) = admin.post_json("/api/audit/verify", &json!({"from_seq": 2, "to_seq": 20})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let url = job["status_url"].as_str().unwrap().to_owned();
    let mut done = Value::Null;
    for _ in 0..200 {
        let (status, j) = admin.get(&url).await;
        assert_eq!(status, StatusCode::OK);
        if j["state"] != "running" {
            done = j;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["report"]["entries_checked"], 19);
    assert_eq!(done["checked"], 19);
    assert_eq!(reader.post_json("/api/audit/verify", &json!({})).await.0, StatusCode::FORBIDDEN, "read keys cannot verify");

    // Checkpoints with the public key.
    let (status, cps) = reader.get("/api/audit/checkpoints?limit=5").await;
    assert_eq!(status, StatusCode::OK, "{cps}");
    assert!(!cps["checkpoints"].as_array().unwrap().is_empty());
    assert_eq!(cps["public_key"], got["public_key"]);
    assert!(cps["checkpoints"][0]["note"].as_str().unwrap().starts_with(&format!("{}\n", cps["origin"].as_str().unwrap())));
    // A tree size beyond the document's int64 is refused, not read as "all".
    let (status, err) = reader.get("/api/audit/checkpoints?before=9223372036854775808").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["fields"][0]["path"], "before");

    // Stats from rollups: totals and top values agree with what was sent.
    let (status, st) = reader.get(&format!("/api/audit/stats?from={}&bucket=minute&dimensions=action,tenant", custos_model::url::encode(&ts(120)))).await;
    assert_eq!(status, StatusCode::OK, "{st}");
    let tenants = st["top"]["tenant"].as_array().unwrap();
    let acme = tenants.iter().find(|t| t["value"] == "acme").unwrap();
    assert_eq!(acme["count"].as_u64().unwrap() as usize, count(&|e| e["tenant"] == "acme"));
    let logins = st["top"]["action"].as_array().unwrap().iter().find(|t| t["value"] == "user.login").unwrap();
    // The ledger's own count: the events sent plus the sign-in of `ver_admin`.
    let ledger_logins = reader.all("action=user.login").await.len();
    assert_eq!(ledger_logins, count(&|e| e["action"] == "user.login") + 1);
    assert_eq!(logins["count"].as_u64().unwrap() as usize, ledger_logins);
    let series_total: u64 = st["series"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(series_total, st["total"].as_u64().unwrap());
    assert!(st["total"].as_u64().unwrap() >= sent.len() as u64, "sent events plus self-audit records");
    assert_eq!(st["series"].as_array().unwrap().len(), 121, "two hours of minutes, empty ones included");

    // The self-audit record of each endpoint called (ingest requests in
    // their caller's summary).
    app.running.state.ingest_summaries.record(&app.running.events).await;
    for (action, outcome) in [
        ("audit.ingest.summary", "success"),
        ("audit.search", "success"),
        ("audit.read", "success"),
        ("audit.read", "failure"),
        ("audit.verify.start", "success"),
        ("audit.verify.start", "denied"),
        ("audit.verify.status", "success"),
        ("audit.checkpoints.read", "success"),
        ("audit.stats", "success"),
        ("audit.verify", "success"),
    ] {
        let found = reader.all(&format!("action={action}&outcome={outcome}")).await;
        assert!(!found.is_empty(), "no self-audit record {action} {outcome}");
        let e = &found[0];
        if action != "audit.verify" {
            if action == "audit.ingest.summary" {
                // A summary counts statuses and the slowest answer instead.
                assert!(e["details"]["statuses"].is_object() && e["details"]["slowest_ms"].is_number(), "{e}");
            } else {
                let timed =
                    e["metrics"]["status_code"].as_u64().is_some() && e["metrics"]["duration_ms"].as_f64().is_some();
                assert!(timed, "{e}");
            }
            assert!(e["correlation"]["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
            assert!(e["resource"]["id"].as_str().unwrap().contains("/api/"), "{e}");
        }
    }
    // The searches themselves are recorded with their filters (masked), and
    // no record anywhere carries a credential.
    let searches = reader.all("action=audit.search").await;
    assert!(searches.iter().any(|e| e["details"]["query"].to_string().contains("user.login")));
    let everything = reader.all("").await;
    let dump = serde_json::to_string(&everything).unwrap();
    assert!(!dump.contains(ingest.key.as_deref().unwrap()) && !dump.contains(reader.key.as_deref().unwrap()));
    assert!(!dump.contains("custos_session="), "no session cookie in any event");
    assert!(!dump.contains("signed in password 1"), "no password in any event");
    assert_rollups_match_ledger(&app).await;
    app.running.shutdown().await.unwrap();
}
}

both_backends! {
async fn bad_input_is_refused_with_the_field_and_stores_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let ingest = key_client(&app, &[Scope::Ingest]).await;
    let reader = key_client(&app, &[Scope::Read]).await;
    let good = event(1, 1);
    let (status, _) = ingest.post_json("/api/audit/events", &good).await;
    assert_eq!(status, StatusCode::CREATED);

    let mut wrong_type = event(2, 1);
    wrong_type["severity"] = json!(5);
    let mut missing = event(3, 1);
    missing.as_object_mut().unwrap().remove("action");
    let mut bad_date = event(4, 1);
    bad_date["occurred_at"] = json!("26/11/2026 10:00");
    let mut future = event(5, 1);
    future["occurred_at"] = json!("2099-01-01T00:00:00Z");
    let mut injection = event(6, 1);
    injection["action"] = json!("user.login'; DROP TABLE ledger_entries;--");
    let mut unicode_action = event(7, 1);
    unicode_action["actor"]["kind"] = json!("üser");
    let mut deep = event(8, 1);
    let mut d = json!("x");
    for _ in 0..20 {
        d = json!({ "a": d });
    }
    deep["details"] = d;
    let mut big = event(9, 1);
    big["details"] = json!({ "blob": "x".repeat(20_000) });
    let mut long_id = event(10, 1);
    long_id["actor"]["id"] = json!("a".repeat(300));
    let mut unknown = event(11, 1);
    unknown["colour"] = json!("blue");
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        ("malformed JSON", "application/json", b"{\"action\": ".to_vec(), StatusCode::BAD_REQUEST, "line 1"),
        ("not an object", "application/json", b"42".to_vec(), StatusCode::BAD_REQUEST, "body"),
        ("empty array", "application/json", b"[]".to_vec(), StatusCode::BAD_REQUEST, "body"),
        ("wrong type", "application/json", wrong_type.to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "severity"),
        ("missing field", "application/json", missing.to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "action"),
        ("bad date", "application/json", bad_date.to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "occurred_at"),
        ("future date", "application/json", future.to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "occurred_at"),
        ("injection", "application/json", injection.to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "action"),
        ("unicode kind", "application/json", unicode_action.to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "actor.kind"),
        ("too deep", "application/json", deep.to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "details"),
        ("details too big", "application/json", big.to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "details"),
        ("too long", "application/json", long_id.to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "actor.id"),
        ("unknown field", "application/json", unknown.to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "colour"),
        ("one bad in a batch", "application/json", json!([event(12, 1), bad_date]).to_string().into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "[1].occurred_at"),
        ("bad NDJSON line", "application/x-ndjson", format!("{}\n{{oops\n", event(13, 1)).into_bytes(), StatusCode::BAD_REQUEST, "line 2"),
        ("bad NDJSON event", "application/x-ndjson", format!("{}\n\n{}\n", event(14, 1), wrong_type).into_bytes(), StatusCode::UNPROCESSABLE_ENTITY, "line 3.severity"),
        ("too many", "application/json", json!((0..1001).map(|i| event(i, 1)).collect::<Vec<_>>()).to_string().into_bytes(), StatusCode::PAYLOAD_TOO_LARGE, "body"),
        ("oversize body", "application/json", vec![b' '; 9 * 1024 * 1024], StatusCode::PAYLOAD_TOO_LARGE, "body"),
        ("wrong content type", "text/plain", good.to_string().into_bytes(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
    ];
    for (name, ct, body, want, path) in cases {
        let before = app.running.ledger.head().await.unwrap().seq;
        let (status, err) = ingest.post_raw("/api/audit/events", ct, body).await;
        assert_eq!(status, want, "{name}: {err}");
        assert!(err["code"].is_string() && err["message"].is_string(), "{name}: {err}");
        if !path.is_empty() {
            let paths: Vec<&str> = err["fields"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
            assert!(paths.iter().any(|p| p.starts_with(path)), "{name}: wants a problem at `{path}`: {err}");
            assert!(err["fields"].as_array().unwrap().iter().all(|f| !f["reason"].as_str().unwrap().is_empty()));
        }
        // Nothing stored but the refused request's own self-audit record
        // (refusals are recorded one by one, not summarised).
        let after = app.running.ledger.head().await.unwrap().seq;
        assert_eq!(after, before + 1, "{name}");
        let (_, rec) = reader.get(&format!("/api/audit/{after}")).await;
        assert_eq!(rec["event"]["action"], "audit.ingest", "{name}");
        assert_eq!(rec["event"]["outcome"], "failure", "{name}");
    }
    // Unicode and injection-looking text where free text is allowed is
    // stored as sent and found again.
    let mut odd = event(20, 1);
    odd["details"] = json!({ "note": "Zoë ✓ 漢字 '; DROP TABLE x;-- <script>" });
    let (status, body) = ingest.post_json("/api/audit/events", &odd).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, got) = reader.get(&format!("/api/audit/{}", odd["id"].as_str().unwrap())).await;
    assert_eq!(got["event"]["details"]["note"], odd["details"]["note"]);
    assert_eq!(reader.all("q=%E6%BC%A2%E5%AD%97").await.len(), 1, "found by unicode text");
    // Nothing stored before is affected: the whole ledger still verifies.
    let report = app.running.ledger.verify(Default::default(), |_| {}).await.unwrap();
    assert!(report.is_intact(), "{report:?}");

    // Bad search parameters are named.
    for (q, field) in [
        ("limit=5000", "limit"),
        ("limit=abc", "limit"),
        ("from=yesterday", "from"),
        ("to=2026-13-01T00:00:00Z", "to"),
        ("order=sideways", "order"),
        ("cursor=forged", "cursor"),
        ("colour=blue", "colour"),
        ("action=*", "action"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
    ] {
        let (status, err) = reader.get(&format!("/api/audit?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {err}");
        assert_eq!(err["fields"][0]["path"], field, "{q}: {err}");
    }
    let (status, err) = reader.get("/api/audit/not-an-id").await;
    assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("id")));
    let (status, err) = reader.get("/api/audit/stats?bucket=week").await;
    assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("bucket")), "{err}");
    app.running.shutdown().await.unwrap();
}
}

both_backends! {
async fn masking_rules_mask_unmask_and_keep_a_history(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let ingest = key_client(&app, &[Scope::Ingest]).await;
    let viewer = user_client(&app, "m_viewer", &["viewer"]).await;
    let admin = user_client(&app, "m_admin", &["admin"]).await;
    let mut e = event(1, 1);
    e["actor"] = json!({"id": "ada@example.org", "kind": "user", "ip": "203.0.113.7"});
    e["details"] = json!({
        "email": "contact bob@example.com",
        "phone": "call +44 20 7946 0958",
        "card": "paid with 4111 1111 1111 1111",
        "iban": "to DE89370400440532013000",
        "ssn": "ssn 123-45-6789",
        "ipv6": "from 2001:db8::1",
        "password": "hunter2",
        "headers": {"Authorization": "Bearer abc.def", "cookie": "sid=1"},
        "plain": "nothing to hide"
    });
    let (status, body) = ingest.post_json("/api/audit/events", &e).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = e["id"].as_str().unwrap();
    let (status, got) = viewer.get(&format!("/api/audit/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let ev = &got["event"];
    let d = &ev["details"];
    assert!(ev["actor"]["id"].as_str().unwrap().starts_with("pseu:"), "{ev}");
    assert!(ev["actor"]["ip"].as_str().unwrap().starts_with("pseu:"), "{ev}");
    assert!(d["email"].as_str().unwrap().starts_with("contact pseu:"), "{d}");
    assert_eq!(d["phone"], "call +•• •• •••• ••58");
    assert_eq!(d["card"], "paid with •••• •••• •••• 1111");
    assert_eq!(d["iban"], "to ••••••••••••••••••3000");
    assert_eq!(d["ssn"], "ssn [us_ssn]");
    assert!(d["ipv6"].as_str().unwrap().starts_with("from pseu:"));
    assert_eq!(d["password"], "[secret]");
    assert_eq!(d["headers"]["Authorization"], "[secret]");
    assert_eq!(d["headers"]["cookie"], "[secret]");
    assert_eq!(d["plain"], "nothing to hide");
    assert!(got.get("unmasked").is_none() && ev.get("unmasked").is_none());
    // Pseudonyms stay searchable by the clear value.
    assert_eq!(viewer.all("actor=ada@example.org").await.len(), 1);
    assert_eq!(viewer.all("actor=ADA@example.org").await.len(), 1, "e-mail pseudonyms ignore case");
    // Unmasking: needs audit:unmask and a reason; it is recorded first.
    let (status, _) = viewer.get(&format!("/api/audit/{id}?unmask=true&reason=incident%2042")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, err) = admin.get(&format!("/api/audit/{id}?unmask=true")).await;
    assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("reason")));
    let (status, got) = admin.get(&format!("/api/audit/{id}?unmask=true&reason=incident%2042")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let un = &got["event"]["unmasked"];
    assert_eq!(un["actor.id"], "ada@example.org");
    assert_eq!(un["details.ssn"], "ssn 123-45-6789");
    assert!(un.get("details.password").is_none() && un.get("details.card").is_none(), "not kept: {un}");
    let unmasks = admin.all("action=audit.unmask").await;
    assert_eq!(unmasks.len(), 1);
    assert_eq!(unmasks[0]["details"]["justification"], "incident 42");
    assert_eq!(unmasks[0]["resource"]["id"], id);

    // The policy store: read, preview, propose, a second person approves.
    let (status, p) = admin.get("/api/policies/masking").await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["active"]["version"], 0);
    assert_eq!(viewer.get("/api/policies/masking").await.0, StatusCode::FORBIDDEN);
    let (status, pv) = admin.post_json("/api/policies/masking/preview", &json!({"text": "mail a@b.io, ssn 123-45-6789"})).await;
    assert_eq!(status, StatusCode::OK, "{pv}");
    assert!(pv["masked"].as_str().unwrap().contains("[us_ssn]") && !pv["masked"].as_str().unwrap().contains("a@b.io"));
    let mut rules = p["active"]["content"]["rules"].as_array().unwrap().clone();
    for r in &mut rules {
        if r["detector"] == "email" {
            r["action"] = json!({"type": "redact"});
            r["keep_original"] = json!(false);
        }
    }
    let (status, pv) = admin.post_json("/api/policies/masking/preview", &json!({"text": "mail a@b.io", "rules": rules})).await;
    assert_eq!((status, pv["masked"].as_str()), (StatusCode::OK, Some("mail [email]")));
    // The second person's account exists before the proposal is made.
    let approver = user_client(&app, "m_approver", &["admin"]).await;
    let propose = "/api/policies/masking/proposals";
    let (status, err) = admin.post_json(propose, &json!({"content": {"rules": rules}, "based_on": 7, "reason": "x"})).await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")), "{err}");
    let mut twice = rules.clone();
    twice.push(rules[0].clone());
    let (status, err) = admin.post_json(propose, &json!({"content": {"rules": twice}, "based_on": 0, "reason": "x"})).await;
    assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("content.rules")), "{err}");
    let (status, err) = admin.post_json(propose, &json!({"content": {"rules": [{"detector": "dna", "action": {"type": "redact"}}]}, "based_on": 0, "reason": "x"})).await;
    assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("content.rules[0]")), "{err}");
    let (status, err) = admin.post_json(propose, &json!({"content": {"rules": rules}, "based_on": 0})).await;
    assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("reason")), "a reason is required: {err}");
    let (status, prop) = admin.post_json(propose, &json!({"content": {"rules": rules}, "based_on": 0, "reason": "no e-mail pseudonyms"})).await;
    assert_eq!((status, prop["state"].as_str()), (StatusCode::CREATED, Some("pending")), "{prop}");
    let pid = prop["id"].as_str().unwrap();
    let (status, err) = admin.post_json(&format!("/api/policies/proposals/{pid}/approve"), &json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the author cannot approve: {err}");
    let (status, err) = admin.post_json(&format!("/api/policies/proposals/{pid}/activate"), &json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "others can approve: {err}");
    let (status, v1) = approver.post_json(&format!("/api/policies/proposals/{pid}/approve"), &json!({"comment": "fine"})).await;
    assert_eq!((status, v1["state"].as_str(), v1["version"].as_u64()), (StatusCode::OK, Some("approved"), Some(1)), "{v1}");
    let (_, k) = viewer.get("/api/policies/masking").await;
    assert_eq!(k["code"], "forbidden");
    let (_, k) = admin.get("/api/policies/masking").await;
    assert_eq!((k["active"]["version"].as_u64(), k["active"]["author_name"].as_str()), (Some(1), Some("m_admin")));
    let mut e2 = event(2, 1);
    e2["details"] = json!({"note": "reach me at carol@example.net"});
    assert_eq!(ingest.post_json("/api/audit/events", &e2).await.0, StatusCode::CREATED);
    let (_, got2) = viewer.get(&format!("/api/audit/{}", e2["id"].as_str().unwrap())).await;
    assert_eq!(got2["event"]["details"]["note"], "reach me at [email]", "new events use the new version");
    let (_, old) = viewer.get(&format!("/api/audit/{id}")).await;
    assert!(old["event"]["actor"]["id"].as_str().unwrap().starts_with("pseu:"), "stored events keep their masking");
    let (status, h) = admin.get("/api/policies/masking/history").await;
    assert_eq!(status, StatusCode::OK);
    let versions: Vec<u64> = h["versions"].as_array().unwrap().iter().map(|v| v["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, vec![1, 0]);
    assert_eq!(h["versions"][0]["comment"], "no e-mail pseudonyms");
    let changes = admin.all("action=custos.policy.activated").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["details"]["version"], 1);
    let (status, trail) = admin.get("/api/policies/trail?kind=masking").await;
    assert_eq!(status, StatusCode::OK, "{trail}");
    let steps: Vec<&str> = trail["items"].as_array().unwrap().iter().map(|t| t["step"].as_str().unwrap()).collect();
    for step in ["proposed", "tested", "approved", "activated"] {
        assert!(steps.contains(&step), "{step} in {steps:?}");
    }
    let (status, err) = admin.get("/api/policies/trail?step=deleted").await;
    assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("step")));
    // A policy event an application sends is in the trail, its before/after as a diff.
    let mut app_policy = event(2, 1);
    app_policy["action"] = json!("mcp.policy.update");
    app_policy["resource"] = json!({"type": "mcp_policy", "id": "tools-allowlist"});
    app_policy["details"] = json!({"before": {"allow": ["read"]}, "after": {"allow": ["read", "write"]}});
    assert_eq!(ingest.post_json("/api/audit/events", &app_policy).await.0, StatusCode::CREATED);
    let (status, t) = admin.get("/api/policies/trail?source=applications&kind=tools-allowlist").await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let items = t["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{t}");
    assert_eq!((items[0]["action"].as_str(), items[0]["application"].as_str()), (Some("mcp.policy.update"), Some("billing")));
    assert_eq!(items[0]["diff"], json!([{"op": "add", "path": "/allow/1", "value": "write"}]));
    let (_, own) = admin.get("/api/policies/trail?source=custos").await;
    assert!(own["items"].as_array().unwrap().iter().all(|i| i["application"] == "custos"), "{own}");
    // Custos's own activity can be left out of a search.
    let policy_events = admin.all("category=policy").await;
    assert!(policy_events.iter().any(|e| e["source"]["application"] == "custos"));
    let apps_only = admin.all("category=policy&own=exclude").await;
    assert!(apps_only.iter().all(|e| e["source"]["application"] != "custos"), "{apps_only:?}");
    let (status, err) = admin.get("/api/audit?own=maybe").await;
    assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("own")));
    let (status, d) = admin.get("/api/policies/masking/diff?from=0&to=1").await;
    assert_eq!((status, d["patch"][0]["op"].as_str()), (StatusCode::OK, Some("replace")), "{d}");
    // Each endpoint called left its self-audit record, with the outcome.
    let status = admin.http.post(format!("{}/rpc/status", admin.base)).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    for (action, outcome) in [
        ("api.policies.kind.read", "success"),
        ("api.policies.kind.read", "denied"),
        ("policy.masking.preview", "success"),
        ("api.policies.propose", "success"),
        ("api.policies.propose", "failure"),
        ("api.policies.proposal.approve", "success"),
        ("policy.masking.history", "success"),
        ("audit.unmask", "success"),
        ("rpc.status", "success"),
    ] {
        let found = admin.all(&format!("action={action}&outcome={outcome}")).await;
        assert!(!found.is_empty(), "no self-audit record {action} {outcome}");
    }
    let reads = admin.all("action=api.policies.kind.read&outcome=denied").await;
    assert_eq!(reads[0]["actor"]["name"], "m_viewer", "who was refused is recorded");
    assert_eq!(reads[0]["metrics"]["status_code"], 403);
    app.running.shutdown().await.unwrap();
}
}

/// One ledger entry per event sent, not two: accepted ingest requests are
/// counted into one summary per caller, recorded every
/// `ingest.summary_secs` (here: when asked), while refusals and reads stay
/// recorded one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_requests_are_summarised_per_caller_not_recorded_one_by_one() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let ingest = key_client(&app, &[Scope::Ingest]).await;
    let other = key_client(&app, &[Scope::Ingest]).await;
    let reader = key_client(&app, &[Scope::Read]).await;
    let summaries = &app.running.state.ingest_summaries;
    summaries.record(&app.running.events).await;
    // Counted: the records of users' and keys' requests (and the events
    // sent), not those Custos's own jobs may add meanwhile.
    let recorded = || async { recorded_by_requests(&app.running.events).await };
    let before = recorded().await.len();
    let first = event(0, 1);
    let mut seqs = Vec::new();
    for i in 0..20 {
        let (status, r) =
            ingest.post_json("/api/audit/events", &if i == 0 { first.clone() } else { event(i, 1) }).await;
        assert_eq!(status, StatusCode::CREATED, "{r}");
        seqs.push(r["events"][0]["seq"].as_u64().unwrap_or_else(|| panic!("a receipt: {r}")));
    }
    assert_eq!(ingest.post_json("/api/audit/events", &first).await.0, StatusCode::OK, "a retry");
    let batch: Vec<Value> = (20..25).map(|i| event(i, 1)).collect();
    assert_eq!(other.post_json("/api/audit/events", &json!(batch)).await.0, StatusCode::CREATED);
    recorded().await.expect(before + 25, "one entry per event, none per request");
    // A refusal is recorded on its own, at once, with its request id.
    let mut bad = event(30, 1);
    bad["action"] = json!("audit.forged");
    let res = ingest.req(reqwest::Method::POST, "/api/audit/events").json(&bad).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let refusal = recorded().await.last();
    let (_, rec) = reader.get(&format!("/api/audit/{refusal}")).await;
    assert_eq!(
        (rec["event"]["action"].as_str(), rec["event"]["outcome"].as_str()),
        (Some("audit.ingest"), Some("failure"))
    );
    assert_eq!(rec["event"]["correlation"]["request_id"], request_id.as_str(), "{rec}");
    // One summary per caller (after the refusal's record and that of the
    // read of it).
    assert_eq!(summaries.record(&app.running.events).await, 2);
    recorded().await.expect(before + 29, "the refusal, the read of it, two summaries");
    let found = reader.all("action=audit.ingest.summary&outcome=success").await;
    let of = |requests: u64| {
        found.iter().find(|e| e["details"]["requests"] == requests).unwrap_or_else(|| panic!("{found:?}"))
    };
    let one_by_one = &of(21)["details"];
    assert_eq!(
        (&one_by_one["events_stored"], &one_by_one["duplicates"], &one_by_one["first_seq"], &one_by_one["last_seq"]),
        (&json!(20), &json!(1), &json!(seqs[0]), &json!(seqs[19])),
        "{one_by_one}"
    );
    assert_eq!(one_by_one["statuses"], json!({"200": 1, "201": 20}), "{one_by_one}");
    assert!(one_by_one["bytes"].as_u64().unwrap() > 20 * 100, "{one_by_one}");
    assert_eq!(of(21)["resource"]["id"], "POST /api/audit/events");
    assert_eq!(of(1)["details"]["events_stored"], 5);
    assert_ne!(of(1)["actor"]["id"], of(21)["actor"]["id"], "each caller its own summary");
    // Nothing open is recorded twice.
    assert_eq!(summaries.record(&app.running.events).await, 0);
    // Reads stay recorded one by one.
    assert_eq!(reader.get("/api/audit?limit=1").await.0, StatusCode::OK);
    let (_, rec) = reader.get(&format!("/api/audit/{}", recorded().await.last())).await;
    assert_eq!(rec["event"]["action"], "audit.search", "{rec}");
    app.running.shutdown().await.unwrap();
}

/// The ledger's records as `seq action actor`, and how many of them the
/// requests of users and API keys made, leaving out Custos's own jobs' and
/// the summaries of anonymous noise.
struct Recorded {
    lines: Vec<String>,
    by_requests: usize,
    last: Option<u64>,
}

impl Recorded {
    fn len(&self) -> usize {
        self.by_requests
    }

    /// The seq of the newest of them.
    fn last(&self) -> u64 {
        self.last.expect("a record of a request")
    }

    #[track_caller]
    fn expect(&self, n: usize, why: &str) {
        assert_eq!(self.by_requests, n, "{why}; the ledger holds:\n{}", self.lines.join("\n"));
    }
}

async fn recorded_by_requests(events: &custos_engine::events::Events) -> Recorded {
    let f = custos_engine::events::SearchFilter { limit: 1000, ..Default::default() };
    let page = events.search(&f).await.unwrap();
    assert!(page.next_cursor.is_none(), "a test's ledger fits one page");
    let lines = page.items.iter().map(|e| format!("{} {} {}:{}", e.seq, e.action, e.actor.kind, e.actor.id)).collect();
    let by_requests: Vec<u64> =
        page.items.iter().filter(|e| matches!(e.actor.kind.as_str(), "user" | "api_key")).map(|e| e.seq).collect();
    Recorded { lines, by_requests: by_requests.len(), last: by_requests.iter().max().copied() }
}

/// A page refreshing itself writes one presence record per user, address,
/// browser and period (`server.presence_secs`; here: when asked), after the first
/// read of each endpoint is recorded on its own; any other read, a read
/// with other values, and an API key's reads stay recorded one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pages_refreshes_are_one_presence_record_per_user_and_period() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let admin = user_client(&app, "poller", &["admin"]).await;
    let reader = key_client(&app, &[Scope::Read]).await;
    let presence = &app.running.state.presence;
    // Counts the records of users' and keys' requests, not those of
    // Custos's own jobs (a compliance snapshot, an alert), which may land
    // at any time on a loaded machine; on a mismatch every record is listed.
    let requests = || async { recorded_by_requests(&app.running.events).await };
    let before = requests().await;
    let destinations = "/api/forwarding/destinations";
    for _ in 0..5 {
        assert_eq!(admin.get(destinations).await.0, StatusCode::OK);
    }
    requests().await.expect(before.len() + 1, "the first read recorded on its own, the repeats counted");
    for _ in 0..3 {
        assert_eq!(admin.get("/api/audit/analytics?range=24h").await.0, StatusCode::OK);
    }
    assert_eq!(admin.get("/api/audit/analytics?range=7d").await.0, StatusCode::OK);
    let status = admin.http.post(format!("{}/rpc/status", admin.base)).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::OK);
    requests().await.expect(before.len() + 4, "other values, another endpoint: recorded on their own");
    // Not polled, refused, or an API key's: one by one.
    assert_eq!(admin.get("/api/audit?limit=1").await.0, StatusCode::OK);
    assert_eq!(admin.get("/api/audit?limit=1").await.0, StatusCode::OK);
    assert_eq!(admin.get("/api/audit/exports/00000000-0000-0000-0000-000000000000").await.0, StatusCode::NOT_FOUND);
    assert_eq!(admin.get("/api/audit/exports/00000000-0000-0000-0000-000000000000").await.0, StatusCode::NOT_FOUND);
    assert_eq!(reader.get("/api/audit/analytics?range=24h").await.0, StatusCode::OK);
    assert_eq!(reader.get("/api/audit/analytics?range=24h").await.0, StatusCode::OK);
    requests().await.expect(before.len() + 10, "reads not polled, refused, or a key's: one record each");
    // One record for the period: 4 + 2 repeats, by endpoint.
    assert_eq!(presence.record(&app.running.events).await, 1);
    requests().await.expect(before.len() + 11, "the presence record");
    let found = admin.all("action=audit.presence").await;
    assert_eq!(found.len(), 1, "{found:?}");
    let p = &found[0];
    assert_eq!((p["actor"]["name"].as_str(), p["outcome"].as_str()), (Some("poller"), Some("success")), "{p}");
    assert_eq!(p["details"]["requests"], 6, "{p}");
    assert_eq!(
        p["details"]["endpoints"],
        json!({"GET /api/forwarding/destinations": 4, "GET /api/audit/analytics [[\"range\",\"24h\"]]": 2}),
        "{p}"
    );
    assert_eq!(p["details"]["statuses"], json!({"200": 6}));
    assert_eq!(p["resource"]["id"], "2 endpoints", "{p}");
    // Still polling next period: counted from the first read.
    let at = requests().await;
    assert_eq!(admin.get(destinations).await.0, StatusCode::OK);
    requests().await.expect(at.len(), "a repeat the next period is counted");
    assert_eq!(presence.record(&app.running.events).await, 1);
    // A period without a read: the next one is recorded on its own again.
    assert_eq!(presence.record(&app.running.events).await, 0);
    let at = requests().await;
    assert_eq!(admin.get(destinations).await.0, StatusCode::OK);
    requests().await.expect(at.len() + 1, "after a period without a read: recorded on its own");
    assert_eq!(admin.get(destinations).await.0, StatusCode::OK);
    assert_eq!(presence.pending(), 1, "the repeat counted");
    // Not counted: a query too long to be kept whole, or a secret-looking
    // parameter (both recorded on their own every time).
    let long = format!("{destinations}?pad={}", "x".repeat(200));
    for _ in 0..2 {
        assert_eq!(admin.get(&long).await.0, StatusCode::OK);
        assert_eq!(admin.get(&format!("{destinations}?token=abc")).await.0, StatusCode::OK);
    }
    assert_eq!(presence.pending(), 1);
    // The ledger fails closed: once a record failed, repeats are recorded
    // one by one again, so refused like any read while it cannot record.
    use sea_orm::ConnectionTrait as _;
    let db = app.running.ledger.db().conn();
    db.execute_unprepared(
        "CREATE TRIGGER injected_failure BEFORE INSERT ON ledger_entries BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )
    .await
    .unwrap();
    assert_eq!(admin.get("/api/audit?limit=1").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(admin.get(destinations).await.0, StatusCode::SERVICE_UNAVAILABLE, "not counted while failing");
    assert_eq!(presence.record(&app.running.events).await, 0, "kept");
    db.execute_unprepared("DROP TRIGGER injected_failure").await.unwrap();
    assert_eq!(presence.pending(), 1, "the kept summary waits for the next period");
    assert_eq!(presence.record(&app.running.events).await, 1);
    app.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_that_cannot_record_refuses_requests_and_nothing_changes() {
    use sea_orm::ConnectionTrait as _;
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let ingest = key_client(&app, &[Scope::Ingest]).await;
    let reader = key_client(&app, &[Scope::Read]).await;
    let admin = user_client(&app, "down_admin", &["admin"]).await;
    let (_, p) = admin.get("/api/policies/masking").await;
    let rules = p["active"]["content"]["rules"].clone();
    let db = app.running.ledger.db().conn();
    db.execute_unprepared(
        "CREATE TRIGGER injected_failure BEFORE INSERT ON ledger_entries BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )
    .await
    .unwrap();
    let head = app.running.ledger.head().await.unwrap().seq;
    let e = event(1, 1);
    let (status, err) = ingest.post_json("/api/audit/events", &e).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{err}");
    assert_eq!(err["code"], "ledger_unavailable");
    let (status, _) = admin
        .post_json(
            "/api/policies/masking/proposals",
            &json!({"content": {"rules": rules}, "based_on": 0, "reason": "while down"}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "a change that cannot be recorded is refused");
    let (status, _) = reader.get("/api/audit").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no data goes out unrecorded");
    db.execute_unprepared("DROP TRIGGER injected_failure").await.unwrap();
    assert_eq!(app.running.ledger.head().await.unwrap().seq, head, "nothing was committed");
    let (_, p) = admin.get("/api/policies/masking").await;
    assert_eq!(p["active"]["version"], 0, "the policy did not change");
    assert!(p["pending"].as_array().unwrap().is_empty(), "nor was anything proposed");
    let (status, _) = reader.get(&format!("/api/audit/{}", e["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the event was not stored");
    // Recovered: the same request now succeeds.
    assert_eq!(ingest.post_json("/api/audit/events", &e).await.0, StatusCode::CREATED);
    let report = app.running.ledger.verify(Default::default(), |_| {}).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_rollups_match_ledger(&app).await;
    app.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_and_offline_docs() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let res = app.get("/api/openapi.json").await;
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    for (path, method) in [
        ("/api/audit/events", "post"),
        ("/api/audit", "get"),
        ("/api/audit/{id}", "get"),
        ("/api/audit/verify", "post"),
        ("/api/audit/checkpoints", "get"),
        ("/api/audit/stats", "get"),
        ("/api/policies/{kind}", "get"),
        ("/api/policies/{kind}/proposals", "post"),
        ("/api/policies/trail", "get"),
        ("/api/policies/masking/preview", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} documented");
    }
    assert!(doc["components"]["schemas"]["EventInput"]["properties"]["occurred_at"].is_object());
    // What the access check adds: schemes, and its answers on every route.
    let search = &doc["paths"]["/api/audit"]["get"];
    assert_eq!(search["security"], json!([{"api_key": []}, {"session": []}]), "{search}");
    for status in ["401", "403", "503"] {
        assert_eq!(
            search["responses"][status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{status}"
        );
    }
    assert!(doc["paths"]["/api/openapi.json"]["get"]["security"].is_null(), "public routes need nothing");
    assert!(doc["paths"]["/api/openapi.json"]["get"]["responses"]["401"].is_null());
    // The closed vocabularies are listed: a client can generate them.
    let outcome = serde_json::to_string(&doc["components"]["schemas"]["Outcome"]).unwrap();
    assert!(["success", "failure", "denied", "error"].iter().all(|w| outcome.contains(w)), "{outcome}");
    // What is documented is exactly what is served under /api, and every
    // schema an operation names is in the document.
    let mut documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| format!("{} {path}", m.to_uppercase())))
        .collect();
    let mut served: Vec<String> = custos_server::http::registered_routes()
        .into_iter()
        .filter(|(_, p, _)| p.starts_with("/api/"))
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    documented.sort();
    served.sort();
    assert_eq!(documented, served);
    assert!(served.len() >= 30, "{served:?}");
    // Every operation has its own id (clients and links name operations by it).
    let operations: Vec<(&String, &Value)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| ops.as_object().unwrap().values().map(move |op| (p, op)))
        .collect();
    let mut ids: Vec<&str> = operations.iter().map(|(_, op)| op["operationId"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), operations.len(), "operation ids repeat: {ids:?}");
    assert_eq!(doc["paths"]["/api/audit/verify/{job}"]["get"]["operationId"], "get_audit_verify_job");
    // Bad input is documented where it can come: every operation taking a
    // path value lists 400 and 404, every one taking a body 400 and 413.
    for (path, op) in &operations {
        let takes_path = op["parameters"].as_array().is_some_and(|ps| ps.iter().any(|p| p["in"] == "path"));
        for status in ["400", "404"].iter().filter(|_| takes_path) {
            assert!(op["responses"][status].is_object(), "{path} lists {status}");
        }
        for status in ["400", "413"].iter().filter(|_| op["requestBody"].is_object()) {
            assert!(op["responses"][status].is_object(), "{path} lists {status}");
        }
    }
    // A body that may be left out is not marked required.
    assert_ne!(doc["paths"]["/api/audit/verify"]["post"]["requestBody"]["required"], true);
    assert_eq!(doc["paths"]["/api/alerts/{id}/comment"]["post"]["requestBody"]["required"], true);
    // ... and answered in JSON naming the field, however the handler reads it.
    let admin = user_client(&app, "doc_admin", &["admin"]).await;
    let (status, err) = admin.get("/api/reports/runs?limit=-1").await;
    assert_eq!((status, err["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")), "{err}");
    assert_eq!(err["fields"][0]["path"], "limit", "{err}");
    let (status, err) = admin.post_json("/api/forwarding/destinations/siem/pause", &json!({"why": "x"})).await;
    assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("body")), "{err}");
    // A struct is not read from an array of its fields.
    let (status, err) = admin.post_json("/api/audit/verify", &json!([null, null])).await;
    assert_eq!((status, err["message"].as_str()), (StatusCode::BAD_REQUEST, Some("body: must be a JSON object")));
    let text = doc.to_string();
    let mut refs = 0;
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = piece.split('"').next().unwrap();
        assert!(doc["components"]["schemas"][name].is_object(), "{name} is referenced but not defined");
        refs += 1;
    }
    assert!(refs >= 20, "{refs} references");
    assert_eq!(doc["paths"]["/api/whoami"]["get"]["tags"][0], "session");
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    let res = app.get("/api/docs").await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("/vendor/swagger-ui/swagger-ui-bundle.js"));
    assert!(!html.contains("http://") && !html.contains("https://"), "nothing from elsewhere");
    // Unknown API paths: anonymous callers are refused (401, nothing runs);
    // others get a JSON 404; both probes are recorded.
    let res = app.get("/api/no-such-thing?x=1").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let reader = key_client(&app, &[Scope::Read]).await;
    let (status, err) = reader.get("/api/no-such-thing?x=1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["code"], "not_found");
    let probes = reader.all("action=api.unknown").await;
    assert_eq!(probes.len(), 2, "{probes:?}");
    assert!(probes.iter().any(|e| e["actor"]["kind"] == "anonymous" && e["metrics"]["status_code"] == 401));
    // Anonymous reads of the documentation are recorded too.
    let docs = reader.all("action=api.docs.read").await;
    assert_eq!(docs.len(), 2, "{docs:?}");
    assert!(docs.iter().all(|e| e["actor"]["kind"] == "anonymous" && e["outcome"] == "success"));
    assert!(probes.iter().all(|e| e["resource"]["id"] == "GET /api/no-such-thing"));
    assert!(probes.iter().any(|e| e["outcome"] == "failure") && probes.iter().any(|e| e["outcome"] == "denied"));
    app.running.shutdown().await.unwrap();
}

both_backends! {
async fn exports_stream_every_matching_event_in_each_format(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let ingest = key_client(&app, &[Scope::Ingest]).await;
    let officer = user_client(&app, "x_officer", &["compliance_officer"]).await;
    let viewer = user_client(&app, "x_viewer", &["viewer"]).await;
    // More than one page (1,000) of matching events, one with a formula.
    let mut sent = 0;
    for b in 0..3 {
        let batch: Vec<Value> = (0..900)
            .map(|i| {
                let mut e = event(b * 900 + i, 10);
                if b == 0 && i == 0 {
                    e["resource"]["name"] = json!("=HYPERLINK(\"http://evil\")");
                }
                e
            })
            .collect();
        sent += batch.iter().filter(|e| e["tenant"] == "acme").count();
        assert_eq!(ingest.post_json("/api/audit/events", &json!(batch)).await.0, StatusCode::CREATED);
    }
    let get = |c: &Client, q: &str| {
        let url = format!("{}/api/audit/export?{q}", c.base);
        c.http.get(url).send()
    };
    let res = get(&officer, "format=csv&tenant=acme").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-disposition"].to_str().unwrap().contains(".csv"));
    let bytes = res.bytes().await.unwrap();
    let mut reader = csv::Reader::from_reader(&bytes[..]);
    assert_eq!(reader.headers().unwrap().get(5), Some("action"));
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), sent, "no row cap, every matching event once");
    let seqs: std::collections::BTreeSet<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert_eq!(seqs.len(), sent);
    assert!(rows.iter().any(|r| &r[14] == "\'=HYPERLINK(\"http://evil\")"), "formula neutralised");
    assert!(rows.iter().all(|r| &r[15] == "acme"));

    let res = get(&officer, "format=json&tenant=acme&order=asc").await.unwrap();
    let all: Vec<Value> = res.json().await.unwrap();
    assert_eq!(all.len(), sent);
    assert!(all.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()), "ascending");
    assert!(all[0]["details"]["note"].is_string(), "the full event");
    let text = get(&officer, "format=ndjson&tenant=acme").await.unwrap().text().await.unwrap();
    assert_eq!(text.lines().filter(|l| serde_json::from_str::<Value>(l).is_ok()).count(), sent);
    let empty: Vec<Value> = get(&officer, "format=json&tenant=nobody").await.unwrap().json().await.unwrap();
    assert!(empty.is_empty());
    // The compliance check on signed exports now has evidence: these exports.
    // (Each is recorded once its stream has ended: looked at until then.)
    let mut signed = Value::Null;
    for _ in 0..100 {
        let report: Value = officer.http.get(format!("{}/api/compliance", officer.base)).send().await.unwrap().json().await.unwrap();
        signed = report["checks"].as_array().unwrap().iter().find(|c| c["id"] == "exports_signed").unwrap().clone();
        if signed["status"] == "pass" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(signed["status"], "pass", "{signed}");
    assert!(signed["detail"].as_str().unwrap().contains("exports in the last 90 days, each with a manifest"), "{signed}");

    for (q, field) in [("format=xml", "format"), ("tenant=acme", "format"), ("format=csv&limit=5", "limit"), ("format=csv&bogus=1", "bogus")] {
        let res = get(&officer, q).await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{q}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["fields"][0]["path"], field, "{q}");
    }
    assert_eq!(get(&viewer, "format=csv").await.unwrap().status(), StatusCode::FORBIDDEN, "export needs audit:export");

    // The streamed CSV's signed manifest, checked offline by the CLI.
    let dir = tempfile::tempdir().unwrap();
    let (_, cps) = officer.get("/api/audit/checkpoints?limit=1").await;
    let vkey = cps["public_key"].as_str().unwrap().to_owned();
    let res = get(&officer, "format=csv&tenant=acme").await.unwrap();
    let id = res.headers()["x-custos-export-id"].to_str().unwrap().to_owned();
    let csv_bytes = res.bytes().await.unwrap();
    let note = manifest_of(&officer, &id).await;
    let manifest = open_manifest(&note);
    assert_eq!(manifest["rows"].as_u64(), Some(sent as u64));
    assert_eq!(manifest["filters"], json!([["tenant", "acme"]]));
    assert_eq!(manifest["format"], "csv");
    let (file, mfile) = (dir.path().join("export.csv"), dir.path().join("export.manifest"));
    std::fs::write(&file, &csv_bytes).unwrap();
    std::fs::write(&mfile, &note).unwrap();
    let ok = verify_export(&file, &mfile, Some(&vkey));
    assert_eq!(ok.status.code(), Some(0), "{}", out(&ok));
    assert!(out(&ok).contains("manifest signature verified"), "{}", out(&ok));
    let unsigned = verify_export(&file, &mfile, None);
    assert_eq!(unsigned.status.code(), Some(2), "without the key nothing is proven: {}", out(&unsigned));
    assert!(out(&unsigned).contains("NOT checked"), "{}", out(&unsigned));
    let mut changed = csv_bytes.to_vec();
    let n = changed.len();
    changed.truncate(n - 10);
    std::fs::write(&file, &changed).unwrap();
    let bad = verify_export(&file, &mfile, Some(&vkey));
    assert_eq!(bad.status.code(), Some(1), "{}", out(&bad));
    assert!(out(&bad).contains("FAIL sha256"), "{}", out(&bad));
    std::fs::write(&mfile, note.replacen("\"rows\": ", "\"rows\": 1", 1)).unwrap();
    let forged = verify_export(&file, &mfile, Some(&vkey));
    assert_eq!(forged.status.code(), Some(1), "{}", out(&forged));
    std::fs::write(&mfile, "not a manifest").unwrap();
    assert_eq!(verify_export(&file, &mfile, None).status.code(), Some(2));

    // Background exports (the UI's way): progress, then the file; only
    // their owner sees them.
    let post = |c: &Client, q: &str| c.req(reqwest::Method::POST, &format!("/api/audit/exports?{q}")).send();
    let res = post(&viewer, "format=xlsx").await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = post(&officer, "format=bogus").await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    for format in ["xlsx", "pdf"] {
        let res = post(&officer, &format!("format={format}&tenant=acme")).await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let job: Value = res.json().await.unwrap();
        assert_eq!(job["total"].as_u64(), Some(sent as u64), "counted before it runs");
        let id = job["id"].as_str().unwrap().to_owned();
        let done = loop {
            let (status, j) = officer.get(&format!("/api/audit/exports/{id}")).await;
            assert_eq!(status, StatusCode::OK);
            assert!(j["rows"].as_u64().unwrap() <= sent as u64);
            match j["state"].as_str() {
                Some("running") => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                Some("done") => break j,
                other => panic!("{other:?}: {j}"),
            }
        };
        assert_eq!(done["rows"].as_u64(), Some(sent as u64));
        assert_eq!(done["manifest"]["rows"].as_u64(), Some(sent as u64));
        let other = user_client(&app, &format!("y_officer_{format}"), &["compliance_officer"]).await;
        assert_eq!(other.get(&format!("/api/audit/exports/{id}")).await.0, StatusCode::NOT_FOUND, "not theirs");
        let res = officer.req(reqwest::Method::GET, &format!("/api/audit/exports/{id}/file")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers()["content-disposition"].to_str().unwrap().contains(&format!(".{format}")));
        let bytes = res.bytes().await.unwrap();
        match format {
            "xlsx" => assert_eq!(&bytes[..2], b"PK", "a zip"),
            _ => assert!(bytes.starts_with(b"%PDF-1.7") && bytes.ends_with(b"%%EOF\n")),
        }
        let file = dir.path().join(format!("export.{format}"));
        std::fs::write(&file, &bytes).unwrap();
        std::fs::write(&mfile, manifest_of(&officer, &id).await).unwrap();
        let ok = verify_export(&file, &mfile, Some(&vkey));
        assert_eq!(ok.status.code(), Some(0), "{}", out(&ok));
    }

    // Each export is recorded when asked for, and again with its manifest
    // when it ends.
    let exports = officer.all("action=audit.export&outcome=success").await;
    assert_eq!(exports.len(), 7, "each export request is recorded");
    assert!(exports.iter().all(|e| e["actor"]["name"] == "x_officer"));
    assert_eq!(officer.all("action=audit.export&outcome=denied").await.len(), 2);
    let completed = officer.all("action=audit.export.completed").await;
    assert_eq!(completed.len(), 7, "{completed:?}");
    let recorded = completed.iter().find(|e| e["resource"]["id"] == id.as_str()).unwrap();
    assert_eq!(recorded["details"]["sha256"], manifest["sha256"]);
    assert_eq!(recorded["resource"]["type"], "export");
    app.running.shutdown().await.unwrap();
}
}

/// The signed manifest of an export, once it has ended.
async fn manifest_of(c: &Client, id: &str) -> String {
    for _ in 0..100 {
        let res = c.req(reqwest::Method::GET, &format!("/api/audit/exports/{id}/manifest")).send().await.unwrap();
        if res.status() == StatusCode::OK {
            return res.text().await.unwrap();
        }
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no manifest for export {id}");
}

fn open_manifest(note: &str) -> Value {
    serde_json::from_str(&note[..note.rfind("\n\n").unwrap() + 1]).unwrap()
}

pub(crate) fn verify_export(
    file: &std::path::Path,
    manifest: &std::path::Path,
    key: Option<&str>,
) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_custos"));
    cmd.arg("verify-export").arg(file).arg(manifest).env("CUSTOS_LOG__FILTER", "warn");
    if let Some(k) = key {
        cmd.args(["--public-key", k]);
    }
    cmd.output().unwrap()
}

pub(crate) fn out(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

both_backends! {
async fn the_explorer_api_counts_follows_and_saves_searches(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else { return };
    let ingest = key_client(&app, &[Scope::Ingest]).await;
    let officer = user_client(&app, "h_officer", &["compliance_officer"]).await;
    let other = user_client(&app, "h_other", &["compliance_officer"]).await;
    // 120 events over the last two hours, one a minute.
    let batch: Vec<Value> = (0..120).map(|i| event(i, 120 - i as i64)).collect();
    assert_eq!(ingest.post_json("/api/audit/events", &json!(batch)).await.0, StatusCode::CREATED);

    // Histogram: 12 ten-minute bars over two hours; they add up to the
    // matching count, and a filter narrows them.
    let (from, to) = (ts(121), ts(-1));
    let (status, h) = officer
        .get(&format!("/api/audit/histogram?from={}&to={}&buckets=12&tenant=acme", enc(&from), enc(&to)))
        .await;
    assert_eq!(status, StatusCode::OK, "{h}");
    assert_eq!(h["series"].as_array().unwrap().len(), 12);
    let sum: u64 = h["series"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!((sum, h["total"].as_u64().unwrap()), (60, 60), "{h}");
    let (_, all) = officer.get(&format!("/api/audit/histogram?from={}&to={}&buckets=12", enc(&from), enc(&to))).await;
    assert!(all["total"].as_u64().unwrap() >= 120);
    for (q, field) in [("buckets=0", "buckets"), ("buckets=9999", "buckets"), ("from=yesterday", "from"), ("limit=3", "limit")] {
        let (status, err) = officer.get(&format!("/api/audit/histogram?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(err["fields"][0]["path"], field, "{q}");
    }

    // Live tail: after `ready`, a new matching event arrives; one that does
    // not match never does.
    let res = officer.req(reqwest::Method::GET, "/api/audit/tail?action=tail.check").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut res = res;
    let mut seen = String::new();
    while !seen.contains("event: ready") {
        seen.push_str(&String::from_utf8_lossy(&res.chunk().await.unwrap().unwrap()));
    }
    let mut other_event = event(1, 0);
    other_event["action"] = json!("tail.other");
    let mut wanted = event(2, 0);
    wanted["action"] = json!("tail.check");
    let id = wanted["id"].as_str().unwrap().to_owned();
    assert_eq!(ingest.post_json("/api/audit/events", &json!([other_event, wanted])).await.0, StatusCode::CREATED);
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            seen.push_str(&String::from_utf8_lossy(&res.chunk().await.unwrap().unwrap()));
            if seen.contains("event: audit") && seen.contains("\n\n") && seen.contains(&id) {
                return seen.clone();
            }
        }
    })
    .await
    .expect("the new event arrives on the tail");
    assert!(!got.contains("tail.other"), "{got}");
    let block = got.split("\n\n").find(|b| b.starts_with("event: audit")).unwrap();
    let data = block.lines().find(|l| l.starts_with("data: ")).unwrap();
    let e: Value = serde_json::from_str(&data["data: ".len()..]).unwrap();
    assert_eq!(e["action"], "tail.check");
    drop(res);
    let (status, err) = officer.get("/api/audit/tail?to=2026-01-01T00:00:00Z").await;
    assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("to")));

    // Saved searches: own and shared, checked, replaced by name, deleted by
    // their owner only.
    let (status, mine) = officer
        .post_json("/api/searches", &json!({"name": "Denied logins", "query": "action=user.login&outcome=denied&range=7d"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let (status, shared) = officer
        .post_json("/api/searches", &json!({"name": "Policy", "query": "category=policy", "shared": true}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{shared}");
    for (body, field) in [
        (json!({"name": "", "query": "action=x"}), "name"),
        (json!({"name": "Bad", "query": "bogus=1"}), "query"),
        (json!({"name": "Bad", "query": "range=forever"}), "query"),
        (json!({"name": "Bad", "query": "action=x", "extra": 1}), "body"),
    ] {
        let (status, err) = officer.post_json("/api/searches", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err["fields"][0]["path"], field, "{body} -> {err}");
    }
    let (_, list) = officer.get("/api/searches").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, theirs) = other.get("/api/searches").await;
    let theirs = theirs.as_array().unwrap();
    assert_eq!(theirs.len(), 1, "only the shared one: {theirs:?}");
    assert_eq!((theirs[0]["name"].as_str(), theirs[0]["mine"].as_bool()), (Some("Policy"), Some(false)));
    let (status, _) = officer
        .post_json("/api/searches", &json!({"name": "Denied logins", "query": "action=user.login&outcome=denied&range=24h"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, list) = officer.get("/api/searches").await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "replaced by name");
    assert!(list.iter().any(|s| s["query"] == "action=user.login&outcome=denied&range=24h"));
    let shared_id = shared["id"].as_str().unwrap();
    let del = |c: &Client, id: &str| c.req(reqwest::Method::DELETE, &format!("/api/searches/{id}")).send();
    assert_eq!(del(&other, shared_id).await.unwrap().status(), StatusCode::NOT_FOUND, "not theirs");
    assert_eq!(del(&officer, shared_id).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(other.get("/api/searches").await.1.as_array().unwrap().len(), 0);
    // Each of these is in the ledger.
    assert_eq!(officer.all("action=search.saved.save").await.len(), 7);
    assert_eq!(officer.all("action=search.saved.delete").await.len(), 2);
    assert_eq!(officer.all("action=audit.tail").await.len(), 2);
    app.running.shutdown().await.unwrap();
}
}

fn enc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

both_backends! {
    /// The dashboards over HTTP: analytics from demo events sent by an
    /// application, compliance following a verification, the integrity
    /// page's history, checkpoints, keys, rotation and public key; each
    /// refused to a role without the permission and recorded.
    async fn dashboards_over_http(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let ingest = key_client(&app, &[Scope::Ingest]).await;
        let officer = user_client(&app, "officer", &["compliance_officer"]).await;
        let viewer = user_client(&app, "viewer", &["viewer"]).await;
        let admin = user_client(&app, "root", &["admin"]).await;
        let end = chrono::Utc::now().timestamp_micros();
        let demo = custos_testkit::demo::Demo::new(11, 600, end, 2 * 86_400_000_000);
        let items: Vec<Value> = (0..600).map(|i| demo.event(i)).collect();
        let (status, body) = ingest.post_json("/api/audit/events", &Value::Array(items.clone())).await;
        assert_eq!(status, StatusCode::CREATED, "{}", &body.to_string()[..200.min(body.to_string().len())]);

        let (status, a) = viewer.get("/api/audit/analytics?range=7d").await;
        assert_eq!(status, StatusCode::OK, "{a}");
        let count = |f: &dyn Fn(&Value) -> bool| items.iter().filter(|e| f(e)).count() as u64;
        let tools = a["tools"].as_array().unwrap();
        let sent_tools = count(&|e| e["category"] == "tool");
        assert_eq!(tools.iter().map(|t| t["outcomes"]["success"].as_u64().unwrap() + t["outcomes"]["error"].as_u64().unwrap()).sum::<u64>(), sent_tools);
        assert!(tools.iter().all(|t| t["p95_ms"].as_f64().unwrap() >= t["p50_ms"].as_f64().unwrap()));
        assert_eq!(a["authentication"]["lockouts"], count(&|e| e["action"] == "user.lockout"));
        // Every event of the period, the demo's and Custos's own (sign-ins, reads), is counted once.
        assert!(a["total"].as_u64().unwrap() >= 600);
        assert_eq!(a["bucket"], "hour");
        for (q, field) in [("range=2x", "range"), ("from=yesterday", "from"), ("range=1d&from=2026-01-01T00:00:00Z", "range"), ("top=3", "top")] {
            let (status, e) = viewer.get(&format!("/api/audit/analytics?{q}")).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {e}");
            assert_eq!(e["fields"][0]["path"], field, "{q}: {e}");
        }

        // Compliance: a viewer may not; an officer sees the ledger unverified, then verified.
        assert_eq!(viewer.get("/api/compliance").await.0, StatusCode::FORBIDDEN);
        let (status, r) = officer.get("/api/compliance").await;
        assert_eq!(status, StatusCode::OK, "{r}");
        let check = |r: &Value, id: &str| r["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone();
        assert_eq!(check(&r, "chain_verified")["status"], "fail");
        assert_eq!(check(&r, "append_only")["status"], "pass");
        // The clock: on PostgreSQL compared with the database server's.
        let clock = check(&r, "clock");
        assert_eq!(clock["status"], "pass", "{clock}");
        let compared = clock["detail"].as_str().unwrap().contains("of the database server's");
        assert_eq!(compared, app.running.ledger.db().kind() == custos_engine::storage::DbKind::Postgres, "{clock}");
        // The server evaluates the built-in rules; alerts reach the inbox
        // only (no notification channel yet): a warning.
        assert_eq!(check(&r, "alerting")["status"], "warn", "{}", check(&r, "alerting"));
        assert!(r["frameworks"].as_array().unwrap().len() >= 9);
        assert_eq!(officer.get("/api/compliance?verify_within_hours=0").await.0, StatusCode::BAD_REQUEST);
        let (status, job) = officer.post_json("/api/audit/verify", &json!({"wait": true})).await;
        assert_eq!((status, job["intact"].as_bool()), (StatusCode::OK, Some(true)), "{job}");
        let (_, r) = officer.get("/api/compliance").await;
        assert_eq!(check(&r, "chain_verified")["status"], "pass", "{r}");
        assert!(check(&r, "log_access_recorded")["detail"].as_str().unwrap().contains("recorded"));

        // The history shows that verification with its report.
        let (status, h) = officer.get("/api/audit/verifications?limit=5").await;
        assert_eq!(status, StatusCode::OK, "{h}");
        assert_eq!(h[0]["action"], "audit.verify");
        assert_eq!(h[0]["details"]["report"]["entries_checked"], job["report"]["entries_checked"]);
        assert_eq!(viewer.get("/api/audit/verifications").await.0, StatusCode::FORBIDDEN);
        assert_eq!(officer.get("/api/audit/verifications?limit=0").await.0, StatusCode::BAD_REQUEST);

        // Checkpoints carry their signature status; the public key downloads.
        app.running.ledger.checkpoint_now().await.unwrap();
        let (_, cps) = officer.get("/api/audit/checkpoints?limit=3").await;
        assert_eq!(cps["checkpoints"][0]["signature_verified"], true, "{cps}");
        let res = officer.req(reqwest::Method::GET, "/api/audit/public-key").send().await.unwrap();
        assert!(res.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
        assert_eq!(res.text().await.unwrap().trim(), cps["public_key"].as_str().unwrap());

        // Keys: an officer reads them but may not rotate; an admin rotates, recorded.
        let (_, k) = officer.get("/api/keys").await;
        let before = k["current_key_id"].as_u64().unwrap();
        assert!(k["keys"].as_array().unwrap().iter().all(|x| x.get("wrapped").is_none() && x.get("secret").is_none()));
        let (status, _) = officer.post_json("/api/keys/rotate", &json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, k) = admin.post_json("/api/keys/rotate", &json!({})).await;
        assert_eq!(status, StatusCode::OK, "{k}");
        // Key ids are shared with the signing key: the next free one.
        let after = k["current_key_id"].as_u64().unwrap();
        assert!(after > before, "{k}");
        let rotations = admin.all("action=ledger.key.rotate").await;
        assert_eq!(rotations.len(), 1);
        assert_eq!(rotations[0]["resource"]["id"], after.to_string());
        // New events are sealed with the new key and still read back.
        let mut fresh = demo.event(0);
        fresh["id"] = uuid::Uuid::now_v7().to_string().into();
        let (status, _) = ingest.post_json("/api/audit/events", &fresh).await;
        assert_eq!(status, StatusCode::CREATED);
        let (_, job) = officer.post_json("/api/audit/verify", &json!({"wait": true})).await;
        assert_eq!(job["intact"], true, "{job}");
        // Every dashboard read was recorded.
        for action in ["audit.analytics", "compliance.report", "audit.verify.history", "ledger.keys.read", "audit.public_key.read"] {
            assert!(!admin.all(&format!("action={action}")).await.is_empty(), "{action}");
        }
        app.running.shutdown().await.unwrap();
    }
}

both_backends! {
    /// The scheduled verification of the whole ledger runs by itself, is
    /// recorded like any other (actor `custos`), and makes the compliance
    /// chain check pass without anyone pressing "Verify".
    async fn scheduled_verification_is_recorded(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let Some(mut config) = crate::support::test_config(backend, dir.path()).await else { return };
        config.ledger.verify_interval_secs = 1;
        let running = custos_server::start(&config).await.unwrap();
        let app = TestApp {
            base: format!("http://{}", running.addr),
            client: reqwest::Client::new(),
            running,
            config,
            _dir: dir,
        };
        let officer = user_client(&app, "officer", &["compliance_officer"]).await;
        let mut found = None;
        for _ in 0..100 {
            let (status, h) = officer.get("/api/audit/verifications?limit=5").await;
            assert_eq!(status, StatusCode::OK, "{h}");
            if let Some(v) = h.as_array().unwrap().iter().find(|v| v["actor"]["id"] == "custos") {
                found = Some(v.clone());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let v = found.expect("a scheduled verification within 20 s");
        assert_eq!(v["outcome"], "success", "{v}");
        assert_eq!(v["source"]["channel"], "system");
        assert!(v["details"]["scope"]["from_seq"].is_null() && v["details"]["scope"]["to_seq"].is_null(), "{v}");
        assert!(v["details"]["report"]["entries_checked"].as_u64().unwrap() >= 1);
        let (_, r) = officer.get("/api/compliance").await;
        let chain = r["checks"].as_array().unwrap().iter().find(|c| c["id"] == "chain_verified").unwrap().clone();
        assert_eq!(chain["status"], "pass", "{chain}");
        app.running.shutdown().await.unwrap();
    }
}
