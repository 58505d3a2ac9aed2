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
            ["sweeper", "noise summaries", "ingest summaries", "presence summaries", "policy refresh", "policy expiry", "alert evaluator", "notifier", "forwarder", "retention", "backup", "compliance snapshots", "report schedules", "scheduled verification"]
        );
        let stopped = app.running.shutdown().await.unwrap();
        assert_eq!((stopped.finished.len(), stopped.aborted.len()), (tasks.len(), 0), "{stopped:?}");
    }
}

both_backends! {
    async fn readiness_turns_false_when_migrations_are_pending(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        // Forget that the migrations ran: the schema is no longer known to be current.
        let conn = app.running.ledger.db().conn();
        let applied = conn
            .query_one_raw(sea_orm::Statement::from_string(conn.get_database_backend(), "SELECT COUNT(*) AS n FROM seaql_migrations"))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert!(applied >= 18, "every migration ran at start-up: {applied}");
        conn.execute_unprepared("DELETE FROM seaql_migrations").await.unwrap();
        let res = app.get("/readyz").await;
        assert_eq!(res.status(), 503);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["reason"], format!("{applied} migration(s) pending"));
        app.running.shutdown().await.unwrap();
    }
}

both_backends! {
    /// The ledger can no longer commit while the server runs (its
    /// sequencer ended: only a bug does that before shutdown, and every
    /// append then fails until a restart). `/readyz` says so instead of
    /// answering ready. Here the sequencer is told to stop as at shutdown,
    /// without the server's shutdown: it closes its queue and ends.
    async fn a_ledger_whose_sequencer_stopped_is_not_ready(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        assert_eq!(app.get("/readyz").await.status(), 200);
        assert!(!app.running.ledger.sequencer_stopped());
        app.running.ledger.stop_tasks_for_tests();
        let mut stopped = false;
        for _ in 0..200 {
            if app.running.ledger.sequencer_stopped() {
                stopped = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(stopped, "the sequencer ends once told to stop");
        let res = app.get("/readyz").await;
        assert_eq!(res.status(), 503);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "unready");
        assert!(body["reason"].as_str().unwrap().contains("sequencer has stopped"), "{body}");
        app.running.shutdown().await.unwrap();
    }
}

/// SQLite: once the ledger's connection could not be set back to
/// `synchronous = FULL` after a write at NORMAL (here: SQLite refuses, as
/// that write left a transaction open), the ledger commits nothing until restart, and `/readyz` says
/// so (out of the load balancer's rotation) instead of answering ready.
#[tokio::test]
async fn a_ledger_that_refuses_commits_until_restart_is_not_ready() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else { return };
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.running.ledger.refusing_commits(), None);
    // Signed in before: signing in is recorded.
    let c = app.signed_in("viewer1", &["viewer"]).await;

    assert!(app.running.ledger.leave_a_write_at_normal_open_for_tests().await, "SQLite has a writer");
    let before = app.running.ledger.head().await.unwrap().seq;
    let why = app.running.ledger.refusing_commits().expect("refusing commits once FULL could not be set back");
    assert!(why.contains("synchronous = FULL") && why.contains("restart"), "{why}");
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["reason"].as_str()), (Some("unready"), Some(why)));

    // Fail closed: nothing is committed, from any caller.
    let entry = custos_engine::ledger::NewEntry::system(
        app.running.ledger.now_us(),
        "system",
        "test.refused",
        ("test", None),
        "cli",
        &serde_json::json!({}),
    );
    let err = app.running.ledger.append_one(entry).await.expect_err("a commit while refusing");
    assert!(matches!(err, custos_engine::ledger::LedgerError::CommitFailed), "{err:?}");
    let res = c.get(format!("{}/api/audit", app.base)).send().await.unwrap();
    assert!(res.status().is_server_error(), "a read whose record cannot be written is refused: {}", res.status());
    assert_eq!(app.running.ledger.head().await.unwrap().seq, before, "nothing was appended");
    assert_eq!(app.get("/readyz").await.status(), 503, "still unready: only a restart brings it back");
    // (Its final checkpoint is refused too when one is due: fail closed.)
    let _ = app.running.shutdown().await;
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

both_backends! {
    /// A clock stepped back or forward on the server: commit times never go
    /// back, and the compliance clock check says what happened.
    async fn clock_jumps_hold_commit_times_and_the_clock_check_reports_them(backend: Backend) {
        use custos_engine::clock::ManualClock;
        use custos_engine::identity::apikey::Scope;
        use reqwest::StatusCode;
        use serde_json::json;
        use std::sync::Arc;

        use crate::events::{key_client, user_client};
        const HOUR: i64 = 3_600_000_000;
        let t0 = chrono::Utc::now().timestamp_micros();
        let clock = Arc::new(ManualClock::new(t0));
        let Some(app) = TestApp::spawn_on(backend, |_| {}, clock.clone()).await else { return };
        let ingest = key_client(&app, &[Scope::Ingest]).await;
        let event = |n: u32| {
            json!({"category": "data_access", "action": "clock.test", "outcome": "success",
                   "occurred_at": "2026-01-01T00:00:00Z", "actor": {"id": format!("u{n}"), "kind": "user"},
                   "source": {"application": "clock-test"}})
        };
        let (status, first) = ingest.post_json("/api/audit/events", &event(1)).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        let recorded = |v: &serde_json::Value| v["events"][0]["recorded_at"].as_str().unwrap().to_owned();
        let check = |r: &serde_json::Value| {
            r["checks"].as_array().unwrap().iter().find(|c| c["id"] == "clock").unwrap().clone()
        };

        // Stepped back an hour: the next event is recorded at the newest
        // entry's time, not an hour earlier, and the check fails saying so.
        clock.set_us(t0 - HOUR);
        let (status, held) = ingest.post_json("/api/audit/events", &event(2)).await;
        assert_eq!(status, StatusCode::CREATED, "{held}");
        assert_eq!(recorded(&held), recorded(&first), "{held} is not held at {first}'s time");
        assert!(held["events"][0]["seq"].as_u64() > first["events"][0]["seq"].as_u64());
        let officer = user_client(&app, "clock_officer", &["compliance_officer"]).await;
        let (status, r) = officer.get("/api/compliance").await;
        assert_eq!(status, StatusCode::OK, "{r}");
        let c = check(&r);
        assert_eq!(c["status"], "fail", "{c}");
        assert!(c["detail"].as_str().unwrap().contains("this clock was set back"), "{c}");

        // Two hours forward: an hour ahead of the real time. On PostgreSQL
        // the database server's clock shows it; on SQLite there is no other
        // clock to compare with.
        clock.set_us(t0 + HOUR);
        let officer = user_client(&app, "clock_officer2", &["compliance_officer"]).await;
        let (_, r) = officer.get("/api/compliance").await;
        let c = check(&r);
        if app.running.ledger.db().kind() == custos_engine::storage::DbKind::Postgres {
            assert_eq!(c["status"], "warn", "{c}");
            assert!(c["detail"].as_str().unwrap().contains("ahead of the database server's"), "{c}");
        } else {
            assert_eq!(c["status"], "pass", "{c}");
        }
    }
}

/// On PostgreSQL, a server whose clock runs more than
/// `ledger.max_clock_ahead_secs` ahead of the database server's records
/// nothing (503 saying why; its commit times would hold every replica's
/// back), leaves the rotation (`/readyz` 503), and records again once set
/// right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_far_ahead_of_the_database_clock_refuses_to_record_and_is_unready() {
    use custos_engine::clock::ManualClock;
    use custos_engine::identity::apikey::Scope;
    use reqwest::StatusCode;
    use serde_json::{Value, json};
    use std::sync::Arc;

    use crate::events::key_client;
    let real = || chrono::Utc::now().timestamp_micros();
    let clock = Arc::new(ManualClock::new(real()));
    let Some(app) = TestApp::spawn_on(Backend::Postgres, |c| c.ledger.max_clock_ahead_secs = 60, clock.clone()).await
    else {
        return;
    };
    let ingest = key_client(&app, &[Scope::Ingest]).await;
    let event = || {
        json!({"category": "data_access", "action": "clock.ahead", "outcome": "success",
               "occurred_at": chrono::Utc::now().to_rfc3339(),
               "actor": {"id": "u1", "kind": "user"}, "source": {"application": "clock-test"}})
    };
    let (status, body) = ingest.post_json("/api/audit/events", &event()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.get("/readyz").await.status(), 200);

    clock.set_us(real() + 3_600_000_000);
    let (status, body) = ingest.post_json("/api/audit/events", &event()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "ledger_unavailable");
    assert!(body["message"].as_str().unwrap().contains("ahead of the database server's"), "{body}");
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    let ready: Value = res.json().await.unwrap();
    assert!(ready["reason"].as_str().unwrap().contains("ahead of the database server's"), "{ready}");

    clock.set_us(real());
    let (status, body) = ingest.post_json("/api/audit/events", &event()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(app.get("/readyz").await.status(), 200);
}

/// A read the database does not answer (here: PostgreSQL with the ledger
/// table locked by another transaction) is answered 503 once
/// `server.read_timeout_secs` has passed, instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_the_database_does_not_answer_is_given_up_with_503() {
    use custos_engine::identity::apikey::Scope;
    use reqwest::StatusCode;
    use sea_orm::{ConnectionTrait as _, TransactionTrait as _};

    use crate::events::key_client;
    let Some(app) = TestApp::spawn_with(Backend::Postgres, |c| c.server.read_timeout_secs = 1).await else { return };
    let reader = key_client(&app, &[Scope::Read]).await;
    let (status, _) = reader.get("/api/audit?limit=1").await;
    assert_eq!(status, StatusCode::OK);
    let lock = app.running.ledger.db().conn().begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE ledger_entries IN ACCESS EXCLUSIVE MODE").await.unwrap();
    // Without the bound this request would wait for the lock: a liveness
    // guard, not a measure.
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(60), reader.get("/api/audit?limit=1"))
        .await
        .expect("the read was not given up");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "ledger_unavailable");
    assert!(body["message"].as_str().unwrap().contains("did not start within 1 s"), "{body}");
    lock.rollback().await.unwrap();
    let (status, _) = reader.get("/api/audit?limit=1").await;
    assert_eq!(status, StatusCode::OK, "reads go on once the database answers");
}

/// A database that does not commit (held by another writer) answers 503
/// within the commit timeout instead of holding the request; the event
/// retried with the same id is stored once. Below the disk watermark,
/// events are refused with 503 naming the setting while reads go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_does_not_commit_answers_503_in_time_and_retries_store_once() {
    use custos_engine::identity::apikey::Scope;
    use reqwest::StatusCode;
    use serde_json::json;

    use crate::events::key_client;
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.ledger.commit_timeout_secs = 1;
        c.database.busy_timeout_ms = 4000;
    })
    .await
    else {
        return;
    };
    let ingest = key_client(&app, &[Scope::Ingest, Scope::Read]).await;
    let id = uuid::Uuid::new_v4();
    let event = json!({"id": id, "category": "data_access", "action": "hung.test", "outcome": "success",
                       "occurred_at": "2026-01-01T00:00:00Z", "actor": {"id": "u1", "kind": "user"},
                       "source": {"application": "hung-test"}});
    // Another process takes the write lock and keeps it.
    let file = app.running.ledger.db().sqlite_file().unwrap().to_path_buf();
    let holder = rusqlite::Connection::open(&file).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (status, e) = ingest.post_json("/api/audit/events", &event).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert_eq!(e["code"], "ledger_unavailable", "{e}");
    // The commit's timeout (1 s) or, when an earlier write of the request
    // waits on the lock (the key's use), the request's deadline (2 s).
    let m = e["message"].as_str().unwrap();
    assert!(m.contains("did not commit within 1 s") || m.contains("did not answer within 2 s"), "{e}");
    assert!(e["message"].as_str().unwrap().contains("retry with the same ids"), "{e}");
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    // The retry: stored once, whether or not the first try landed late.
    let mut receipts = Vec::new();
    for _ in 0..20 {
        let (status, r) = ingest.post_json("/api/audit/events", &event).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            continue;
        }
        assert!(status == StatusCode::CREATED || status == StatusCode::OK, "{status} {r}");
        receipts.push(r);
        break;
    }
    assert_eq!(receipts.len(), 1, "the retry was accepted");
    let (status, found) = ingest.get("/api/audit?action=hung.test").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["items"][0]["id"], id.to_string());
    drop(app);

    // The disk watermark: a minimum above what this disk has free.
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.ingest.min_free_disk_mb = u64::MAX >> 24).await else {
        return;
    };
    let ingest = key_client(&app, &[Scope::Ingest, Scope::Read]).await;
    let (status, e) = ingest.post_json("/api/audit/events", &event).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert!(e["message"].as_str().unwrap().contains("ingest.min_free_disk_mb"), "{e}");
    let (status, found) = ingest.get("/api/audit?action=hung.test").await;
    assert_eq!(status, StatusCode::OK, "reads go on: {found}");
    assert_eq!(found["items"].as_array().unwrap().len(), 0);
}
