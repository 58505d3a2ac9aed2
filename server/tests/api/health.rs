//! Health, readiness and metrics over real HTTP; migrations on both databases.

use serde_json::Value;

use crate::support::{Backend, TestApp, both_backends};

both_backends! {
    async fn health_readiness_and_metrics_answer_over_http(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let res = app.get("/healthz").await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().contains_key("x-request-id"), "every response carries a request id");
        assert_eq!(res.json::<Value>().await.unwrap()["status"], "alive");

        let res = app.get("/readyz").await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        let kind = if backend == Backend::Sqlite { "sqlite" } else { "postgres" };
        assert_eq!((body["status"].as_str(), body["database"].as_str(), body["migrations"].as_str()),
                   (Some("ready"), Some(kind), Some("current")));
        // The leases this replica holds: the alert evaluator and the
        // notifier keep theirs (the only replica here).
        let mut held = Vec::new();
        for _ in 0..100 {
            let body: Value = app.get("/readyz").await.json().await.unwrap();
            held = body["leases"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()).collect();
            if held.iter().any(|n| n == "alert-evaluator") && held.iter().any(|n| n == "notifier") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(held.iter().any(|n| n == "alert-evaluator") && held.iter().any(|n| n == "notifier"), "{held:?}");
        let metrics = app.get("/metrics").await.text().await.unwrap();
        // (One recorder for the whole test process: other servers' replicas
        // set it too, so only its presence is certain here.)
        assert!(metrics.contains("custos_lease_held{lease=\"alert-evaluator\"}"), "{metrics}");
        assert!(metrics.contains("custos_lease_acquired_total{lease=\"alert-evaluator\"}"), "{metrics}");

        // A client's request id is kept; a hostile one is replaced.
        let res = app.client.get(format!("{}/healthz", app.base)).header("x-request-id", "trace-123").send().await.unwrap();
        assert_eq!(res.headers()["x-request-id"], "trace-123");
        for hostile in ["has spaces; and <html>", &"x".repeat(300)] {
            let res = app.client.get(format!("{}/healthz", app.base)).header("x-request-id", hostile).send().await.unwrap();
            assert_ne!(res.headers()["x-request-id"], hostile, "request ids are not echoed unchecked");
        }

        let metrics = app.get("/metrics").await.text().await.unwrap();
        assert!(metrics.contains("custos_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"), "{metrics}");

        // The home page asks to sign in, then is rendered on the server with the ledger's real status.
        assert_eq!(app.get("/").await.status(), 303);
        let c = app.signed_in("viewer1", &["viewer"]).await;
        let html = c.get(format!("{}/", app.base)).send().await.unwrap().text().await.unwrap();
        let entries: u64 = testid_text(&html, "ledger-entries").parse().unwrap();
        assert!(entries >= 3, "start-up, user creation and sign-in are recorded: {entries}");
        assert_eq!(testid_text(&html, "database"), kind);
        // Shutdown stops and awaits every background task before the ledger closes.
        let tasks = app.running.background_tasks().to_vec();
        assert_eq!(
            tasks,
            ["session cleaner", "noise summaries", "policy refresh", "policy expiry", "alert evaluator", "notifier", "forwarder", "retention", "backup", "compliance snapshots", "report schedules", "scheduled verification"]
        );
        let stopped = app.running.shutdown().await.unwrap();
        assert_eq!((stopped.finished.len(), stopped.aborted.len()), (tasks.len(), 0), "{stopped:?}");
    }
}

both_backends! {
    async fn readiness_turns_false_when_migrations_are_pending(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        // Forget that the migration ran: the schema is no longer known to be current.
        app.running.ledger.db().conn().execute_unprepared("DELETE FROM seaql_migrations").await.unwrap();
        let res = app.get("/readyz").await;
        assert_eq!(res.status(), 503);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["reason"], "14 migration(s) pending");
        app.running.shutdown().await.unwrap();
    }
}

use sea_orm::ConnectionTrait as _;

#[tokio::test]
async fn unknown_pages_send_anonymous_callers_to_sign_in_and_are_404_otherwise_and_a_missing_kek_stops_start_up() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    // Anonymous callers are sent to sign in: they learn nothing of what exists.
    let res = app.get("/no-such-page").await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login?next=/no-such-page");
    let signed_in = app.signed_in("wanderer", &["viewer"]).await;
    let res = signed_in.get(format!("{}/no-such-page", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 404);
    app.running.shutdown().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = custos_server::config::Config::for_test(dir.path());
    let err = custos_server::start(&config).await.err().expect("start-up must fail without a KEK").to_string();
    assert!(err.contains("no key-encryption key") && err.contains("custos keys init"), "{err}");
}

/// The text of the element with `data-testid="{id}"` in server-rendered HTML.
fn testid_text<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html.find(&format!("data-testid=\"{id}\"")).unwrap_or_else(|| panic!("no {id} in {html}"));
    let start = at + html[at..].find('>').unwrap() + 1;
    &html[start..start + html[start..].find('<').unwrap()]
}
