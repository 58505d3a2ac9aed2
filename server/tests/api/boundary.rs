//! The trust boundary over HTTP (issue 13), as an outside client would
//! probe it: no request aborts the server, a panic answers 500 and is
//! recorded, Custos's own records cannot be sent, floods are refused before
//! they cost anything, credentials changes end sessions (and live tails),
//! user management cannot escalate, and the small holes stay closed.

use custos_model::Channel;
use std::time::Duration;

use custos_engine::identity::apikey::Scope;
use custos_engine::identity::service::Acting;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::events::{Client, event, key_client, user_client};
use crate::support::{Backend, TestApp, both_backends};

fn cookie_client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap()
}

/// Values that have broken parsers elsewhere: extremes, signs, units,
/// multi-byte characters, bad encodings, dates at the ends of the calendar.
const NASTY: &[&str] = &[
    "",
    "0",
    "-1",
    "1",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "1e400",
    "NaN",
    "1€",
    "€",
    "é",
    "%FF",
    "%",
    "%2",
    "24h",
    "0h",
    "99999999999d",
    "7d",
    "15m",
    "true",
    "yes",
    "asc",
    "desc",
    "csv",
    "pdf",
    "xlsx",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2026-12-01T00:00:00+14:00",
    "2026-13-45T99:99:99Z",
    "a,b,,c",
    "user.*",
    "*",
    "..",
    "\u{0}",
    "%00",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "%E2%82%AC",
    "+",
    "a&b",
    "0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e6f",
    "djE6ZDo1",
    "djE6YTox",
];
const PARAMS: &[&str] = &[
    "from",
    "to",
    "range",
    "buckets",
    "limit",
    "cursor",
    "order",
    "q",
    "actor",
    "action",
    "format",
    "top",
    "bucket",
    "dimensions",
    "before",
    "verify_within_hours",
    "unmask",
    "reason",
    "category",
    "outcome",
    "tenant",
    "x",
];

both_backends! {
    async fn no_query_string_can_take_the_server_down(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let admin = user_client(&app, "fuzz_admin", &["admin"]).await;
        let ingest = key_client(&app, &[Scope::Ingest]).await;
        let batch: Vec<Value> = (0..20).map(|i| event(i, i as i64)).collect();
        assert_eq!(ingest.post_json("/api/audit/events", &json!(batch)).await.0, StatusCode::CREATED);

        // The two that once aborted or panicked the process, named.
        let future = (chrono::Utc::now() + chrono::Duration::days(3650)).to_rfc3339();
        let (status, err) = admin.get(&format!("/api/audit/histogram?from={}", custos_model::url::encode(&future))).await;
        assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("from")), "{err}");
        let (status, err) = admin.get("/api/audit/analytics?range=1%E2%82%AC").await;
        assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("range")), "{err}");

        // Then random queries at every GET endpoint.
        // The same inputs every run.
        let mut g = custos_testkit::rng(0x9e37_79b9_7f4a_7c15);
        let mut sent = 0;
        let paths = custos_server::access::routes().iter().filter(|r| {
            r.method == "GET" && r.kind == custos_server::access::Kind::Api
        });
        for path in paths.map(|r| r.path.replace("{id}", "1").replace("{job}", "0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e6f")) {
            for _ in 0..25 {
                let n = g.usize(1..=4);
                let query: Vec<String> = (0..n)
                    .map(|_| format!("{}={}", PARAMS[g.usize(..PARAMS.len())], custos_model::url::encode(NASTY[g.usize(..NASTY.len())])))
                    .collect();
                let url = format!("{path}?{}", query.join("&"));
                let res = admin.req(reqwest::Method::GET, &url).send().await.unwrap();
                let status = res.status();
                assert!(!status.is_server_error(), "GET {url}: {status}");
                if !path.ends_with("/tail") && !path.ends_with("/live") {
                    let _ = res.bytes().await;
                }
                sent += 1;
            }
        }
        assert!(sent > 500, "{sent}");
        assert_eq!(app.get("/healthz").await.status(), StatusCode::OK, "still serving");
        // A verification past the end is refused, not recorded as one that could not run.
        let (status, err) = admin.post_json("/api/audit/verify", &json!({"from_seq": 99_999_999, "wait": true})).await;
        assert_eq!((status, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("from_seq")), "{err}");
        app.running.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_and_is_recorded() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    // The real layers around a route that panics (on a path the table lists).
    let routes = axum::Router::new().route(
        "/healthz",
        axum::routing::get(|| async {
            let v: Vec<u8> = Vec::new();
            format!("{}", v[3])
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        tokio::spawn(axum::serve(listener, custos_server::http::wrap(app.running.state.clone(), routes)).into_future());
    let res = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "internal_error");
    assert!(body["operation_id"].as_str().is_some_and(|s| s.len() == 32), "{body}");
    assert!(!body.to_string().contains("index out of bounds"), "the panic's message stays in the log");
    // The same server still answers, and the failure is in the ledger.
    assert_eq!(reqwest::get(format!("{}/readyz", app.base)).await.unwrap().status(), StatusCode::OK);
    let reader = key_client(&app, &[Scope::Read]).await;
    let errors = reader.all("outcome=error").await;
    assert!(
        errors.iter().any(|e| e["resource"]["id"] == "GET /healthz" && e["metrics"]["status_code"] == 500),
        "{errors:?}"
    );
    server.abort();
    app.running.shutdown().await.unwrap();
}

both_backends! {
    async fn clients_cannot_send_custos_records_nor_oversized_batches(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let ingest = key_client(&app, &[Scope::Ingest]).await;
        for (field, patch) in [
            ("action", json!({"action": "audit.verify"})),
            ("action", json!({"action": "ledger.purge"})),
            ("action", json!({"action": "policy.masking.update"})),
            ("actor.id", json!({"actor": {"id": "custos", "kind": "system"}})),
            ("source.application", json!({"source": {"application": "Custos", "channel": "api"}})),
        ] {
            let mut e = event(1, 1);
            for (k, v) in patch.as_object().unwrap() {
                e[k] = v.clone();
            }
            let (status, err) = ingest.post_json("/api/audit/events", &e).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{patch}: {err}");
            assert_eq!(err["fields"][0]["path"], field, "{err}");
        }
        // A million tiny events are counted, not built: refused at once.
        let body = format!("[{}{{}}]", "{},".repeat(999_999)).into_bytes();
        let (status, err) = ingest.post_raw("/api/audit/events", "application/json", body).await;
        assert_eq!((status, err["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("too_many_events")), "{err}");
        let lines = "{}\n".repeat(5000).into_bytes();
        let (status, _) = ingest.post_raw("/api/audit/events", "application/x-ndjson", lines).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        app.running.shutdown().await.unwrap();
    }
}

both_backends! {
    async fn idempotency_ids_belong_to_their_submitter(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let (a, b) = (key_client(&app, &[Scope::Ingest]).await, key_client(&app, &[Scope::Ingest]).await);
        let e = event(3, 2);
        let (status, first) = a.post_json("/api/audit/events", &e).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        let (status, retry) = a.post_json("/api/audit/events", &e).await;
        assert_eq!((status, retry["events"][0]["duplicate"].as_bool()), (StatusCode::OK, Some(true)), "{retry}");
        // Another submitter with the same id learns nothing of the first event.
        let (status, other) = b.post_json("/api/audit/events", &e).await;
        assert_eq!(status, StatusCode::CONFLICT, "{other}");
        assert_eq!(other["events"][0]["conflict"], true);
        assert_eq!(other["events"][0]["seq"], 0, "{other}");
        assert_eq!(other["events"][0]["recorded_at"], "", "{other}");
        app.running.shutdown().await.unwrap();
    }
}

/// The UTC minute now (the gate counts per minute).
fn minute() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_floods_are_refused_before_they_cost_and_recorded_once_a_minute() {
    // The gate counts per minute: a run that straddles a minute boundary
    // would see two windows, so it is simply run again (on a new server).
    for attempt in 0..3 {
        let started = minute();
        let app = TestApp::spawn_with(Backend::Sqlite, |c| c.auth.anonymous_per_minute = 5).await.unwrap();
        let anonymous = reqwest::Client::new();
        let mut anon = Vec::new();
        for _ in 0..8 {
            let res = anonymous.get(format!("{}/api/audit?actor=x", app.base)).send().await.unwrap();
            if res.status() == StatusCode::TOO_MANY_REQUESTS {
                assert!(res.headers().get("retry-after").is_some());
            }
            anon.push(res.status().as_u16());
        }
        // Refused keys: the same gate, on the refusals (a valid key still works).
        let mut keys = Vec::new();
        for i in 0..8 {
            let res = anonymous
                .get(format!("{}/api/audit", app.base))
                .bearer_auth(format!("cst_bogus{i}_x"))
                .send()
                .await
                .unwrap();
            keys.push(res.status().as_u16());
        }
        let reader = key_client(&app, &[Scope::Read]).await;
        let refused = reader.all("action=audit.search&outcome=denied").await;
        let recorded_keys = reader.all("action=apikey.use").await;
        if minute() != started && attempt < 2 {
            app.running.shutdown().await.unwrap();
            continue;
        }
        assert_eq!(anon, [401, 401, 401, 401, 401, 429, 429, 429]);
        assert_eq!(keys, [401, 401, 401, 401, 401, 429, 429, 429]);
        assert_eq!(refused.len(), 1, "one record per address, endpoint and minute: {refused:?}");
        assert_eq!(recorded_keys.len(), 1, "{recorded_keys:?}");
        app.running.shutdown().await.unwrap();
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_address_is_throttled_and_cookies_are_secure() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
        c.server.behind_tls_proxy = true;
        c.auth.failures_per_address = 2;
    })
    .await
    .unwrap();
    let login = |client: String| {
        let (base, c) = (app.base.clone(), cookie_client());
        async move {
            let res = c
                .post(format!("{base}/auth/login"))
                .header("x-forwarded-for", format!("{client}, 127.0.0.1"))
                .form(&[("username", "nobody"), ("password", "wrong password 1"), ("next", "/")])
                .send()
                .await
                .unwrap();
            res.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    for _ in 0..2 {
        assert!(login("203.0.113.5".into()).await.contains("error=invalid"));
    }
    assert!(login("203.0.113.5".into()).await.contains("error=throttled"), "the forwarded address is throttled");
    assert!(login("203.0.113.6".into()).await.contains("error=invalid"), "not everyone behind the proxy");
    // IPv6 clients are throttled per /64.
    for _ in 0..2 {
        let _ = login("2001:db8:1:2::1".into()).await;
    }
    assert!(login("2001:db8:1:2:ffff::9".into()).await.contains("error=throttled"));
    // Served over HTTPS by the proxy: Secure cookies and HSTS.
    let c = app.signed_in("proxied", &["viewer"]).await;
    let res = c.get(format!("{}/", app.base)).send().await.unwrap();
    assert!(res.headers().get("strict-transport-security").is_some());
    let res = cookie_client()
        .post(format!("{}/auth/login", app.base))
        .form(&[("username", "proxied"), ("password", "signed in password 1"), ("next", "/")])
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{cookie}");
    app.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_strict_path_is_redirected_to_after_sign_in() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    app.signed_in("walker", &["viewer"]).await;
    for (next, expected) in [
        ("/events?range=24h", "/events?range=24h"),
        ("/\t/evil.example", "/"),
        ("/\n/evil.example", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example", "/"),
        ("/ /evil.example", "/"),
    ] {
        let res = cookie_client()
            .post(format!("{}/auth/login", app.base))
            .form(&[("username", "walker"), ("password", "signed in password 1"), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["location"], expected, "next={next:?}");
    }
    app.running.shutdown().await.unwrap();
}

/// `GET /api/whoami` with a client's cookies: the status.
async fn whoami(app: &TestApp, c: &reqwest::Client) -> StatusCode {
    c.get(format!("{}/api/whoami", app.base)).send().await.unwrap().status()
}

async fn sign_in(app: &TestApp, name: &str, password: &str) -> reqwest::Client {
    let c = cookie_client();
    let res = c
        .post(format!("{}/auth/login", app.base))
        .form(&[("username", name), ("password", password), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/", "{name} signs in");
    c
}

both_backends! {
    async fn credential_changes_end_the_other_sessions_and_live_tails(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let first = app.signed_in("sam", &["compliance_officer"]).await;
        let second = sign_in(&app, "sam", "signed in password 1").await;
        // Sam changes the password in the first session: the second ends, the first goes on.
        let res = first
            .post(format!("{}/rpc/change_password", app.base))
            .form(&[("current_password", "signed in password 1"), ("new_password", "a brand new password")])
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
        assert_eq!(whoami(&app, &first).await, StatusCode::OK, "the session that changed it goes on");
        assert_eq!(whoami(&app, &second).await, StatusCode::UNAUTHORIZED, "the other session ended");
        // An admin resets it: every session ends.
        let admin = app.signed_in("boss", &["admin"]).await;
        let res = admin
            .post(format!("{}/rpc/reset_user_password", app.base))
            .form(&[("username", "sam"), ("password", "reset by the boss 1")])
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.text().await.unwrap());
        assert_eq!(whoami(&app, &first).await, StatusCode::UNAUTHORIZED);

        // A live tail closes when its user is disabled...
        let viewer = app.signed_in("tess", &["viewer"]).await;
        let tail = viewer.get(format!("{}/api/audit/tail", app.base)).send().await.unwrap();
        assert_eq!(tail.status(), StatusCode::OK);
        let res = admin
            .post(format!("{}/rpc/set_user_disabled", app.base))
            .form(&[("username", "tess"), ("disabled", "true")])
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
        // (It checks its caller every few seconds; the bound only stops a hang.)
        let text = tokio::time::timeout(Duration::from_secs(60), tail.text()).await.expect("the tail closed").unwrap();
        assert!(text.starts_with("event: ready") && text.contains("event: end"), "{text}");
        // ...and when its key is revoked.
        let (key, token) =
            app.running.identity.create_api_key(&Acting::system(Channel::Cli), "tailer", &[Scope::Read], None).await.unwrap();
        let open = |path: &'static str| {
            reqwest::Client::new().get(format!("{}{path}", app.base)).bearer_auth(token.expose_secret()).send()
        };
        let tail = open("/api/audit/tail").await.unwrap();
        assert_eq!(tail.status(), StatusCode::OK);
        // (The alerts' live stream is checked the same way.)
        let alerts = open("/api/alerts/live").await.unwrap();
        assert_eq!(alerts.status(), StatusCode::OK);
        app.running.identity.revoke_api_key(&Acting::system(Channel::Cli), &key.prefix).await.unwrap();
        for (name, stream) in [("tail", tail), ("alerts stream", alerts)] {
            let text =
                tokio::time::timeout(Duration::from_secs(60), stream.text()).await.expect(name).unwrap();
            assert!(text.starts_with("event: ready") && text.contains("event: end"), "{name}: {text}");
        }
        app.running.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_management_over_http_cannot_escalate() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let system = Acting::system(Channel::Cli);
    let perms = custos_engine::identity::permission::PermissionSet::parse("user:manage audit:read").unwrap();
    app.running.identity.create_role(&system, "helpdesk", "", &perms, false).await.unwrap();
    let helpdesk = app.signed_in("helpdesk1", &["helpdesk"]).await;
    app.signed_in("chief", &["admin"]).await;
    let rpc = |f: &'static str, args: Vec<(&'static str, &'static str)>| {
        let (c, base) = (helpdesk.clone(), app.base.clone());
        async move { c.post(format!("{base}/rpc/{f}")).form(&args).send().await.unwrap() }
    };
    for (f, args) in [
        ("create_role", vec![("name", "escalate"), ("description", ""), ("permissions", "admin")]),
        ("create_user", vec![("username", "sock"), ("password", "a long password 1"), ("roles", "admin")]),
        ("reset_user_password", vec![("username", "chief"), ("password", "taken over password")]),
        ("reset_user_mfa", vec![("username", "chief")]),
        ("set_user_disabled", vec![("username", "chief"), ("disabled", "true")]),
        ("create_api_key", vec![("name", "ingest"), ("scopes", "ingest")]),
    ] {
        let res = rpc(f, args).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::FORBIDDEN, "{f}: {text}");
        // The API's error body, from a server function too.
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["code"], "forbidden", "{f}: {text}");
        assert!(body["message"].as_str().unwrap().contains("only an admin"), "{f}: {text}");
    }
    // Bad input names the field, as the REST API does.
    let res = rpc("create_user", vec![("username", ""), ("password", "a long password 1"), ("roles", "viewer")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        (body["code"].as_str(), body["fields"][0]["path"].as_str()),
        (Some("invalid_request"), Some("username"))
    );
    // Within what it holds, it may act.
    let res =
        rpc("create_user", vec![("username", "newbie"), ("password", "a long password 1"), ("roles", "viewer")]).await;
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    // The chief's password and account are untouched.
    let chief = sign_in(&app, "chief", "signed in password 1").await;
    assert_eq!(whoami(&app, &chief).await, StatusCode::OK);
    app.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_are_their_owners_and_export_files_are_private() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let ingest = key_client(&app, &[Scope::Ingest]).await;
    let batch: Vec<Value> = (0..5).map(|i| event(i, 1)).collect();
    ingest.post_json("/api/audit/events", &json!(batch)).await;
    let owner = user_client(&app, "exporter", &["compliance_officer"]).await;
    let other = user_client(&app, "snoop", &["compliance_officer"]).await;
    let res = owner.req(reqwest::Method::GET, "/api/audit/export?format=csv").send().await.unwrap();
    let id = res.headers()["x-custos-export-id"].to_str().unwrap().to_owned();
    let _ = res.bytes().await.unwrap();
    let path = format!("/api/audit/exports/{id}/manifest");
    let mut fetched = StatusCode::NOT_FOUND;
    for _ in 0..100 {
        fetched = owner.req(reqwest::Method::GET, &path).send().await.unwrap().status();
        if fetched == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fetched, StatusCode::OK, "the owner reads the manifest");
    assert_eq!(other.req(reqwest::Method::GET, &path).send().await.unwrap().status(), StatusCode::NOT_FOUND);
    // A background export's file, under the exports directory.
    let (status, job) = owner.post_json("/api/audit/exports?format=csv", &json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let status_path = format!("/api/audit/exports/{}", job["id"].as_str().unwrap());
    for _ in 0..200 {
        if owner.get(&status_path).await.1["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(owner.get(&status_path).await.1["state"], "done");
    assert_eq!(other.get(&status_path).await.0, StatusCode::NOT_FOUND, "another user does not see it");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = app._dir.path().join("exports");
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap();
            assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{:?}", f.path());
        }
    }
    app.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tails_are_bounded_per_caller() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let reader: Client = key_client(&app, &[Scope::Read]).await;
    let mut open = Vec::new();
    for _ in 0..8 {
        let res = reader.req(reqwest::Method::GET, "/api/audit/tail").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        open.push(res);
    }
    let res = reader.req(reqwest::Method::GET, "/api/audit/tail").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "5");
    let other = key_client(&app, &[Scope::Read]).await;
    assert_eq!(other.req(reqwest::Method::GET, "/api/audit/tail").send().await.unwrap().status(), StatusCode::OK);
    // The alerts' live streams are counted apart from the tails (every
    // page's alert toast holds a tail already).
    for _ in 0..8 {
        let res = reader.req(reqwest::Method::GET, "/api/alerts/live").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        open.push(res);
    }
    let res = reader.req(reqwest::Method::GET, "/api/alerts/live").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    drop(open);
    app.running.shutdown().await.unwrap();
}
