//! The access table, walked for every role: allowed -> success, denied ->
//! 403 (anonymous: 401, or a redirect to sign in); and no route exists that
//! the table does not list.

use custos_engine::identity::apikey::Scope;
use custos_engine::identity::service::{Acting, NewUser};
use custos_model::Channel;
use custos_server::access::{self, Kind};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use secrecy::{ExposeSecret as _, SecretString};

use crate::support::{Backend, TestApp};

const ROLES: [&str; 7] = [
    "admin",
    "compliance_officer",
    "security_analyst",
    "notification_manager",
    "siem_manager",
    "records_manager",
    "viewer",
];

#[derive(Debug)]
enum Who {
    Anonymous,
    Role(&'static str),
    Key(Scope),
}

fn client() -> reqwest::Client {
    // A request that hangs fails the test naming it (instead of hanging CI).
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
}

async fn signed_in(app: &TestApp, role: &str) -> reqwest::Client {
    let c = client();
    let res = c
        .post(format!("{}/auth/login", app.base))
        .form(&[("username", format!("m_{role}")), ("password", "matrix password 1".into()), ("next", "/".into())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/", "{role} signs in");
    c
}

/// Arguments that make each server function succeed for someone allowed.
fn rpc_args(path: &str, who: &Who, n: usize) -> Vec<(&'static str, String)> {
    let name = match who {
        Who::Role(r) => r,
        _ => "x",
    };
    let tag = format!("{n}_{name}");
    match path {
        "/auth/login" => vec![("username", "nobody".into()), ("password", "wrong password 1".into())],
        "/auth/mfa" => vec![("code", "000000".into())],
        "/rpc/change_password" => {
            vec![("current_password", "matrix password 1".into()), ("new_password", "matrix password 1".into())]
        }
        "/rpc/mfa_confirm" => vec![("code", "000000".into())],
        "/rpc/create_user" => vec![
            ("username", format!("made_{tag}")),
            ("password", "a fresh long password".into()),
            ("roles", "viewer".into()),
        ],
        "/rpc/set_user_disabled" => vec![("username", "target".into()), ("disabled", "false".into())],
        "/rpc/reset_user_password" => vec![("username", "target".into()), ("password", "target reset password".into())],
        "/rpc/set_user_roles" => vec![("username", "target".into()), ("roles", "viewer".into())],
        "/rpc/reset_user_mfa" => vec![("username", "target".into())],
        "/rpc/create_role" => {
            vec![("name", format!("role_{name}")), ("description", String::new()), ("permissions", "audit:read".into())]
        }
        "/rpc/update_role" => vec![("name", "viewer".into()), ("require_mfa", "false".into())],
        "/rpc/delete_role" => vec![("name", format!("role_{name}"))],
        "/rpc/create_api_key" => vec![("name", format!("key {tag}")), ("scopes", "read".into())],
        "/rpc/revoke_api_key" => vec![("prefix", "000000000000".into())],
        _ => vec![],
    }
}

/// Server functions whose success needs state the matrix does not set up:
/// for them, an allowed caller must get past authorisation (not 401/403).
const PAST_AUTH_ONLY: &[&str] = &[
    "/rpc/change_password",
    "/rpc/mfa_confirm",
    "/rpc/revoke_api_key",
    // An unknown job: 404 once past authorisation.
    "/api/audit/verify/{job}",
    // An unknown export ("1" is not an export id): 400 once past authorisation.
    "/api/audit/exports/{id}",
    "/api/audit/exports/{id}/file",
    "/api/audit/exports/{id}/manifest",
    // An unknown saved search: 404 once past authorisation.
    "/api/searches/{id}",
    // An unknown proposal ("1"): 404 once past authorisation.
    "/api/policies/proposals/{id}",
    "/api/policies/proposals/{id}/approve",
    "/api/policies/proposals/{id}/reject",
    "/api/policies/proposals/{id}/activate",
    "/api/policies/proposals/{id}/withdraw",
    // An unknown alert ("1"): 404 (or 400 for a comment without text)
    // once past authorisation.
    "/api/alerts/{id}",
    "/api/alerts/{id}/acknowledge",
    "/api/alerts/{id}/resolve",
    "/api/alerts/{id}/comment",
    // An unknown silence ("1"): 404; a silence without a body: 400.
    "/api/alerts/silences/{id}/end",
    "/api/alerts/silences",
    // An unknown channel ("1"): 404 once past authorisation.
    "/api/notifications/channels/{id}/test",
    // An unknown destination ("1"): 404 once past authorisation; a replay
    // without a body: 4xx.
    "/api/forwarding/destinations/{id}/pause",
    "/api/forwarding/destinations/{id}/resume",
    "/api/forwarding/destinations/{id}/replay",
    "/api/forwarding/destinations/{id}/test",
    // An unknown run or archive: 404 once past authorisation; starting a
    // run while one goes on: 409.
    "/api/retention/runs",
    "/api/retention/runs/{id}",
    "/api/retention/archives/{name}/verify",
    "/api/retention/archives/{name}/download",
    // An unknown backup: 404; taking one while one is taken: 409.
    "/api/backups",
    "/api/backups/{name}",
    "/api/backups/{name}/download",
    // A report without a body, an unknown report ("1" is not an id): 400;
    // the period view without a period: 400.
    "/api/reports",
    "/api/reports/{id}",
    "/api/reports/{id}/{file}",
    "/api/reports/{id}/{file}/manifest",
    "/api/compliance/history",
];

/// Routes the table opens with `policy:read` whose store also wants the
/// kind's own permission (masking: `policy:manage`).
const KIND_PERMISSION: &[&str] = &["/api/policies/{kind}/proposals", "/api/policies/{kind}/test"];

/// A request that succeeds for an allowed caller of a JSON API route.
fn api_request(c: &reqwest::Client, base: &str, method: &str, path: &str, n: usize) -> reqwest::RequestBuilder {
    let url = format!(
        "{base}{}",
        path.replace("{id}", "1")
            .replace("{job}", "0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e6f")
            .replace("{kind}", "masking")
            .replace("{n}", "0")
    );
    let secret_only = serde_json::json!({"rules": [{"detector": "secret_key", "action": {"type": "redact"}}]});
    match (method, path) {
        ("GET", "/api/audit/export") => c.get(format!("{url}?format=csv")),
        ("POST", "/api/audit/exports") => c.post(format!("{url}?format=csv")),
        ("POST", "/api/searches") => {
            c.post(url).json(&serde_json::json!({"name": format!("matrix {n}"), "query": "range=24h"}))
        }
        ("DELETE", _) => c.delete(url),
        ("GET", "/api/policies/{kind}/diff") => c.get(format!("{url}?from=0&to=0")),
        ("GET", _) => c.get(url),
        ("POST", "/api/audit/events") => c.post(url).json(&serde_json::json!({
            "occurred_at": chrono::Utc::now().to_rfc3339(), "category": "system", "action": "matrix.check",
            "outcome": "success", "severity": "info", "actor": {"id": format!("m{n}"), "kind": "service"},
            "source": {"channel": "api"}
        })),
        ("POST", "/api/audit/verify") => c.post(url).json(&serde_json::json!({"wait": true, "to_seq": 1})),
        ("POST", "/api/forwarding/preview") => c.post(url).json(&serde_json::json!({
            "id": "p", "name": "Preview", "type": "webhook", "url": "https://siem.example.org/in", "auth": "none"
        })),
        ("POST", "/api/policies/masking/preview") => c.post(url).json(&serde_json::json!({"text": "a@b.io"})),
        ("POST", "/api/policies/{kind}/proposals") => {
            c.post(url).json(&serde_json::json!({"content": secret_only, "based_on": 0, "reason": "matrix"}))
        }
        ("POST", "/api/policies/{kind}/test") => c.post(url).json(&serde_json::json!({"content": secret_only})),
        _ => c.post(url),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_server_function_is_enforced_for_every_role() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let id = &app.running.identity;
    let system = Acting::system(Channel::Cli);
    for role in ROLES {
        let new = NewUser {
            username: format!("m_{role}"),
            email: None,
            display_name: None,
            password: SecretString::from("matrix password 1".to_owned()),
            roles: vec![role.into()],
            must_change_password: false,
        };
        id.create_user(&system, new).await.unwrap();
    }
    let target = NewUser {
        username: "target".into(),
        email: None,
        display_name: None,
        password: SecretString::from("target password 1".to_owned()),
        roles: vec![],
        must_change_password: false,
    };
    id.create_user(&system, target).await.unwrap();
    let (_, read_key) = id.create_api_key(&system, "read key", &[Scope::Read], None).await.unwrap();
    let (_, ingest_key) = id.create_api_key(&system, "ingest key", &[Scope::Ingest], None).await.unwrap();

    let mut callers: Vec<(Who, reqwest::Client, Option<String>)> = vec![(Who::Anonymous, client(), None)];
    for role in ROLES {
        callers.push((Who::Role(role), signed_in(&app, role).await, None));
    }
    callers.push((Who::Key(Scope::Read), client(), Some(read_key.expose_secret().to_owned())));
    callers.push((Who::Key(Scope::Ingest), client(), Some(ingest_key.expose_secret().to_owned())));

    let mut checked = 0;
    for (n, route) in access::routes().iter().enumerate() {
        // Signing out is walked last, separately.
        if route.path == "/auth/logout" {
            continue;
        }
        for (who, c, key) in &callers {
            let url = format!("{}{}", app.base, route.path.replace(access::NOT_FOUND_PAGE, "/no/such/page"));
            let mut req = match (route.kind, route.method) {
                (Kind::Api, m) => api_request(c, &app.base, m, route.path, n),
                (_, "GET") => c.get(&url),
                _ => c.post(&url).form(&rpc_args(route.path, who, n)),
            };
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            let res = req.send().await.unwrap_or_else(|e| panic!("{} {} as {who:?}: {e}", route.method, route.path));
            let status = res.status();
            let location = res.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
            // The live streams are endless: their status is enough.
            let body = if matches!(route.path, "/api/audit/tail" | "/api/alerts/live") && status.is_success() {
                String::new()
            } else {
                res.text().await.unwrap_or_else(|e| panic!("{} {} as {who:?}: body: {e}", route.method, route.path))
            };
            let perms = match who {
                Who::Anonymous => custos_engine::identity::permission::PermissionSet::default(),
                Who::Role(r) => custos_engine::identity::permission::PermissionSet::of(
                    custos_engine::identity::permission::BUILTIN_ROLES
                        .iter()
                        .find(|b| b.name == *r)
                        .unwrap()
                        .permissions,
                ),
                Who::Key(s) => custos_engine::identity::permission::PermissionSet::of(&[match s {
                    Scope::Read => custos_engine::identity::permission::Permission::AuditRead,
                    Scope::Ingest => custos_engine::identity::permission::Permission::AuditIngest,
                }]),
            };
            let authenticated = !matches!(who, Who::Anonymous);
            let allowed = match route.need {
                access::Need::Public => true,
                access::Need::SignedIn => authenticated,
                access::Need::User => matches!(who, Who::Role(_)),
                access::Need::Permission(p) if KIND_PERMISSION.contains(&route.path) => {
                    perms.allows(p) && perms.allows(custos_engine::identity::permission::Permission::PolicyManage)
                }
                access::Need::Permission(p) => perms.allows(p),
                access::Need::UserWith(p) => matches!(who, Who::Role(_)) && perms.allows(p),
            };
            let ctx = format!(
                "{} {} as {who:?}: {status} {location:?} {}",
                route.method,
                route.path,
                &body[..body.len().min(200)]
            );
            match (allowed, authenticated, route.kind) {
                (true, _, Kind::Form) => assert_eq!(status, StatusCode::SEE_OTHER, "{ctx}"),
                (true, _, _) if PAST_AUTH_ONLY.contains(&route.path) => {
                    assert!(status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN, "{ctx}")
                }
                (true, _, Kind::Api) => assert!(status.is_success(), "{ctx}"),
                (true, _, Kind::Page) if route.path == access::NOT_FOUND_PAGE => {
                    assert_eq!(status, StatusCode::NOT_FOUND, "{ctx}")
                }
                (true, _, _) => assert_eq!(status, StatusCode::OK, "{ctx}"),
                (false, false, Kind::Page) => {
                    assert_eq!(status, StatusCode::SEE_OTHER, "{ctx}");
                    assert!(location.unwrap().starts_with("/login?next="), "{ctx}");
                }
                (false, false, _) => assert_eq!(status, StatusCode::UNAUTHORIZED, "{ctx}"),
                (false, true, Kind::Page) => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{ctx}");
                    assert!(body.contains("Access denied"), "the 403 page: {ctx}");
                }
                (false, true, _) => assert_eq!(status, StatusCode::FORBIDDEN, "{ctx}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= access::routes().len() * 7, "{checked} checks");

    // Sign-out ends the session: the next page asks to sign in again.
    for (who, c, _) in &callers[1..=ROLES.len()] {
        let res = c.post(format!("{}/auth/logout", app.base)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{who:?}");
        let res = c.get(format!("{}/account", app.base)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{who:?} is signed out");
    }
    app.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registered_route_is_in_the_access_table_and_the_reverse() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let mut registered: Vec<(String, String)> =
        custos_server::http::registered_routes().into_iter().map(|(m, p, _)| (m.to_owned(), p.to_owned())).collect();
    for (path, method) in leptos::server_fn::axum::server_fn_paths() {
        registered.push((method.to_string(), path.to_owned()));
    }
    for listing in custos_server::http::route_list() {
        registered.push(("GET".into(), listing.path().to_owned()));
    }
    for (method, path) in &registered {
        assert!(access::find(method, path).is_some(), "{method} {path} is served but not in the access table");
    }
    // The catch-all page row is served by the fallback (the "not found" page).
    for route in access::routes().iter().filter(|r| r.path != access::NOT_FOUND_PAGE) {
        assert!(
            registered.iter().any(|(m, p)| m == route.method && p == route.path),
            "{} {} is in the access table but not served",
            route.method,
            route.path
        );
    }
    assert!(registered.len() >= 30, "{registered:?}");
    app.running.shutdown().await.unwrap();
}

/// Every method the router could answer, for every row of the table, as an
/// anonymous caller: only public rows may answer anything but a refusal
/// (HEAD is looked up as GET, an unlisted method is refused), and nothing
/// outside the table runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_of_every_route_is_looked_up_in_the_table_deny_by_default() {
    // (Many anonymous calls from one address: above the default flood limit.)
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.auth.anonymous_per_minute = 100_000).await.unwrap();
    let anonymous = client();
    let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    let mut checked = 0;
    let concrete = |p: &str| {
        p.replace("{id}", "1")
            .replace("{job}", "0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e6f")
            .replace(access::NOT_FOUND_PAGE, "/x/y")
    };
    // Static files are anyone's (they are not in the table, and not pages).
    for path in ["/favicon.ico", "/pkg/custos.css", "/vendor/echarts.min.js"] {
        let status = anonymous.get(format!("{}{path}", app.base)).send().await.unwrap().status();
        assert!(status == StatusCode::OK || status == StatusCode::NOT_FOUND, "{path}: {status}");
    }
    let mut paths: Vec<String> = access::routes().iter().map(|r| concrete(r.path)).collect();
    paths.extend(["/api/no-such-thing", "/rpc/no_such_fn", "/api", "/rpc"].map(str::to_owned));
    for path in &paths {
        for m in methods {
            let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
            let res = anonymous.request(method, format!("{}{path}?actor=someone", app.base)).send().await.unwrap();
            let status = res.status();
            let row = access::find(m, path);
            let ctx = format!("{m} {path}: {status} (row {:?})", row.map(|r| (r.method, r.path)));
            assert!(!status.is_server_error(), "{ctx}");
            match row {
                Some(r) if r.need == access::Need::Public => {}
                Some(r) if r.kind == Kind::Page => {
                    assert_eq!(status, StatusCode::SEE_OTHER, "{ctx}");
                }
                _ => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{ctx}");
                    if m != "HEAD" {
                        let body: serde_json::Value = res.json().await.unwrap();
                        assert_eq!(body["code"], "unauthenticated", "the access layer refused it: {ctx}");
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= access::routes().len() * methods.len(), "{checked}");
    // HEAD is GET for the table: a viewer's HEAD of the compliance report is
    // refused as its GET is, and an anonymous HEAD of a search runs nothing.
    let viewer = crate::support::TestApp::signed_in(&app, "head_viewer", &["viewer"]).await;
    let res = viewer.head(format!("{}/api/compliance", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = anonymous.head(format!("{}/api/audit?actor=admin", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Signed in: a wrong method on a known path is 405, an unknown endpoint 404.
    let res = viewer.delete(format!("{}/api/audit", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers()["allow"], "GET");
    let res = viewer.get(format!("{}/api/no/such/thing", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = viewer.post(format!("{}/rpc/no_such_fn", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.running.shutdown().await.unwrap();
}
