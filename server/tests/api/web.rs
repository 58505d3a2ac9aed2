//! Web hardening: session fixation, CSRF, security headers, timeouts' effects.

use custos_engine::identity::service::{Acting, NewUser};
use custos_model::Channel;
use reqwest::StatusCode;
use secrecy::SecretString;

use crate::support::{Backend, TestApp};

async fn user(app: &TestApp, name: &str) {
    let new = NewUser {
        username: name.into(),
        email: None,
        display_name: None,
        password: SecretString::from("web test password".to_owned()),
        roles: vec!["viewer".into()],
        must_change_password: false,
    };
    app.running.identity.create_user(&Acting::system(Channel::Cli), new).await.unwrap();
}

fn session_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("custos_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .expect("a session cookie")
}

async fn login(app: &TestApp, cookie: Option<&str>, name: &str) -> reqwest::Response {
    let mut req = app.client.post(format!("{}/auth/login", app.base)).form(&[
        ("username", name),
        ("password", "web test password"),
        ("next", "/"),
    ]);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("custos_session={c}"));
    }
    req.send().await.unwrap()
}

async fn whoami(app: &TestApp, cookie: &str) -> StatusCode {
    app.client
        .get(format!("{}/api/whoami", app.base))
        .header("cookie", format!("custos_session={cookie}"))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_id_changes_at_sign_in_and_the_old_one_dies() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    user(&app, "alice").await;
    user(&app, "mallory").await;
    // Mallory signs in and plants her session id on Alice's browser.
    let planted = session_cookie(&login(&app, None, "mallory").await);
    assert_eq!(whoami(&app, &planted).await, StatusCode::OK);
    let res = login(&app, Some(&planted), "alice").await;
    assert_eq!(res.headers()["location"], "/");
    let alices = session_cookie(&res);
    assert_ne!(alices, planted, "signing in issues a new session id");
    assert_eq!(whoami(&app, &planted).await, StatusCode::UNAUTHORIZED, "the planted id is worth nothing");
    assert_eq!(whoami(&app, &alices).await, StatusCode::OK);
    // Signing out ends the session on the server, not only in the browser.
    let out = app
        .client
        .post(format!("{}/auth/logout", app.base))
        .header("cookie", format!("custos_session={alices}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(whoami(&app, &alices).await, StatusCode::UNAUTHORIZED);
    // A disabled user's live session stops working at the next request.
    let again = session_cookie(&login(&app, None, "mallory").await);
    app.running.identity.set_disabled(&Acting::system(Channel::Cli), "mallory", true).await.unwrap();
    assert_eq!(whoami(&app, &again).await, StatusCode::UNAUTHORIZED);
    app.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_are_refused_and_every_response_carries_security_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    user(&app, "bob").await;
    let cross = app
        .client
        .post(format!("{}/auth/login", app.base))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .form(&[("username", "bob"), ("password", "web test password")])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN, "cross-site form posts are refused");
    let same = app
        .client
        .post(format!("{}/auth/login", app.base))
        .header("origin", &app.base)
        .header("sec-fetch-site", "same-origin")
        .form(&[("username", "bob"), ("password", "web test password"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::SEE_OTHER);

    for path in ["/healthz", "/api/whoami", "/login"] {
        let res = app.get(path).await;
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert!(h["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"), "{path}");
        assert!(!h.contains_key("strict-transport-security"), "no HSTS over plain HTTP: {path}");
    }
    // Pages get a policy with the nonce of their inline script.
    let page = app.get("/login").await;
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert!(html.contains(&format!("nonce=\"{nonce}\"")), "the inline script carries the policy's nonce");
    // An invalid API key is refused, and the refusal is recorded without the key.
    let res = app
        .client
        .get(format!("{}/api/whoami", app.base))
        .bearer_auth("cst_0123456789ab_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    app.running.shutdown().await.unwrap();
}

async fn expire_events(app: &TestApp) -> Vec<String> {
    let ledger = &app.running.ledger;
    let head = ledger.head().await.unwrap().seq;
    let mut out = Vec::new();
    for seq in 1..=head {
        let e = ledger.entry(seq).await.unwrap().unwrap();
        if e.header.fields.action == "session.expire" {
            out.push(String::from_utf8(ledger.open_payload(&e).await.unwrap().to_vec()).unwrap());
        }
    }
    out
}

/// Edits a stored session record as text (its id is a 128-bit integer that
/// a generic JSON value would round to a float).
async fn rewrite_session(app: &TestApp, cookie: &str, edit: impl Fn(&str) -> String) {
    use sea_orm::ConnectionTrait as _;
    let db = app.running.ledger.db();
    let row = db
        .conn()
        .query_one_raw(db.stmt("SELECT data FROM sessions WHERE id = ?", vec![cookie.to_owned().into()]))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(row.try_get::<Vec<u8>>("", "data").unwrap()).unwrap();
    db.conn()
        .execute_raw(db.stmt(
            "UPDATE sessions SET data = ? WHERE id = ?",
            vec![edit(&text).into_bytes().into(), cookie.to_owned().into()],
        ))
        .await
        .unwrap();
}

/// Replaces the JSON value after `"key":` (a number or an array) in `text`.
fn replace_value(text: &str, key: &str, value: &str) -> String {
    let start = text.find(&format!("\"{key}\":")).unwrap() + key.len() + 3;
    let rest = &text[start..];
    let len = if rest.starts_with('[') { rest.find(']').unwrap() + 1 } else { rest.find([',', '}']).unwrap() };
    format!("{}{value}{}", &text[..start], &rest[len..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_after_inactivity_and_after_the_absolute_limit_and_say_so_in_the_ledger() {
    // On a clock the test moves (the cookie's idle expiry stays on the wall
    // clock, which tower-sessions keeps: that one is edited in the store).
    let clock = std::sync::Arc::new(custos_engine::clock::ManualClock::new(chrono::Utc::now().timestamp_micros()));
    let app = TestApp::spawn_on(Backend::Sqlite, |_| {}, clock.clone()).await.unwrap();
    user(&app, "carol").await;
    // Idle: the stored expiry has passed.
    let idle = session_cookie(&login(&app, None, "carol").await);
    rewrite_session(&app, &idle, |t| replace_value(t, "expiry_date", "[2001,1,0,0,0,0,0,0,0]")).await;
    assert_eq!(whoami(&app, &idle).await, StatusCode::UNAUTHORIZED);
    // Absolute: signed in longer ago than the limit (12 h by default), though active.
    let old = session_cookie(&login(&app, None, "carol").await);
    clock.advance_us(11 * custos_engine::time::HOUR_US);
    assert_eq!(whoami(&app, &old).await, StatusCode::OK, "11 h after signing in, still signed in");
    clock.advance_us(2 * custos_engine::time::HOUR_US);
    assert_eq!(whoami(&app, &old).await, StatusCode::UNAUTHORIZED, "13 h after: over the 12 h limit");
    let events = expire_events(&app).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events[0].contains("idle timeout") && events[1].contains("absolute timeout"), "{events:?}");
    assert!(events.iter().all(|e| !e.contains(&idle) && !e.contains(&old)), "session ids never appear in events");
    app.running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_owes_a_password_change_or_mfa_can_only_reach_the_account_page() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    user(&app, "dave").await;
    let system = Acting::system(Channel::Cli);
    app.running.identity.update_role(&system, "viewer", None, true).await.unwrap();
    let c = session_cookie(&login(&app, None, "dave").await);
    let get = |path: &'static str| {
        let cookie = c.clone();
        let app = &app;
        async move {
            app.client
                .get(format!("{}{path}", app.base))
                .header("cookie", format!("custos_session={cookie}"))
                .send()
                .await
                .unwrap()
        }
    };
    let home = get("/").await;
    assert_eq!((home.status(), home.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/account"));
    assert_eq!(get("/account").await.status(), StatusCode::OK);
    assert_eq!(get("/api/whoami").await.status(), StatusCode::OK);
    let status = app
        .client
        .post(format!("{}/rpc/status", app.base))
        .header("cookie", format!("custos_session={c}"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::FORBIDDEN);
    assert!(status.text().await.unwrap().contains("\"setup_required\""));
    app.running.shutdown().await.unwrap();
}
