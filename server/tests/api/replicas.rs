//! Several replicas on one PostgreSQL, as behind a load balancer: a job
//! started on one is followed, downloaded and proven on another; an export
//! the ledger cannot record leaves nothing behind on any of them (and on
//! SQLite, on the one server).

use std::time::Duration;

use custos_engine::identity::apikey::Scope;
use custos_server::config::ObjectStoreSettings;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::events::{Client, event, key_client, user_client};
use crate::support::{Backend, TestApp};

/// The same session (its cookie), sent to another replica.
fn on(app: &TestApp, c: &Client) -> Client {
    Client { base: app.base.clone(), http: c.http.clone(), key: c.key.clone() }
}

/// Polls `path` on `c` until `done` holds (up to 30 s); the last answer.
async fn poll(c: &Client, path: &str, done: impl Fn(StatusCode, &Value) -> bool) -> (StatusCode, Value) {
    let mut last = (StatusCode::IM_A_TEAPOT, Value::Null);
    for _ in 0..300 {
        last = c.get(path).await;
        if done(last.0, &last.1) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path}: still {last:?} after 30 s");
}

async fn bytes(c: &Client, path: &str) -> (StatusCode, Vec<u8>) {
    let res = c.req(Method::GET, path).send().await.unwrap();
    (res.status(), res.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_verification_jobs_are_served_by_every_replica() {
    let s3 = custos_testkit::s3::S3Server::start();
    s3.bucket("custos-exports", false);
    let store = ObjectStoreSettings {
        url: "s3://custos-exports/site-1".into(),
        endpoint: Some(s3.endpoint.clone()),
        access_key_id: Some("custos-test".into()),
        secret_access_key: Some(secrecy::SecretString::from("custos-test-secret".to_owned())),
        allow_http: true,
        archives: false,
        backups: false,
        exports: true,
        ..ObjectStoreSettings::default()
    };
    let with_store = store.clone();
    let Some(a) = TestApp::spawn_with(Backend::Postgres, move |c| c.object_store = with_store).await else { return };
    let b = a.replica(|_| {}).await;
    // A third replica without the store for exports.
    let c = a.replica(|c| c.object_store = ObjectStoreSettings::default()).await;

    let ingest = key_client(&a, &[Scope::Ingest]).await;
    let batch: Vec<Value> = (0..40).map(|i| event(i, 1)).collect();
    assert_eq!(ingest.post_json("/api/audit/events", &json!(batch)).await.0, StatusCode::CREATED);
    let on_a = user_client(&a, "exporter", &["admin"]).await;
    let (on_b, on_c) = (on(&b, &on_a), on(&c, &on_a));

    // A background export started on a: b answers its polls and serves the
    // file (from the object store), the same bytes a serves from its disk.
    let (status, started) = on_a.post_json("/api/audit/exports?format=csv&action=policy.update", &json!(null)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let id = started["id"].as_str().unwrap().to_owned();
    let path = format!("/api/audit/exports/{id}");
    let (_, done) = poll(&on_b, &path, |s, j| s == StatusCode::OK && j["state"] == "done").await;
    assert_eq!(done["rows"], 10, "{done}");
    let (status, there) = bytes(&on_b, &format!("{path}/file")).await;
    assert_eq!(status, StatusCode::OK, "b serves the file: {}", String::from_utf8_lossy(&there));
    let (_, here) = bytes(&on_a, &format!("{path}/file")).await;
    assert_eq!(there, here, "the same file from both replicas");
    assert_eq!(String::from_utf8_lossy(&there).lines().count(), 11, "a header and 10 policy updates");
    let probe = s3.inspect("custos-exports", &format!("site-1/exports/{id}.csv"), false);
    assert_eq!(probe["size"], here.len(), "the file is in the store: {probe}");
    // The signed manifest from b names the file's SHA-256.
    let (status, manifest) = bytes(&on_b, &format!("{path}/manifest")).await;
    assert_eq!(status, StatusCode::OK);
    let sha = sha2_hex(&here);
    assert!(String::from_utf8_lossy(&manifest).contains(&sha), "the manifest names the file's hash");
    // c, which does not read the store for exports, says where the file is.
    let (status, why) = on_c.get(&format!("{path}/file")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{why}");
    assert!(why["message"].as_str().unwrap().contains("object_store.exports"), "{why}");
    // Another principal sees nothing on any replica.
    let other = user_client(&b, "snoop", &["compliance_officer"]).await;
    assert_eq!(other.get(&path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(bytes(&other, &format!("{path}/file")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(bytes(&other, &format!("{path}/manifest")).await.0, StatusCode::NOT_FOUND);

    // A streamed export from c: its manifest from a.
    let res = on_c.req(Method::GET, "/api/audit/export?format=json&action=user.logout").send().await.unwrap();
    let streamed = res.headers()["x-custos-export-id"].to_str().unwrap().to_owned();
    let _ = res.bytes().await.unwrap();
    let manifest_path = format!("/api/audit/exports/{streamed}/manifest");
    poll(&on_a, &manifest_path, |s, _| s == StatusCode::OK).await;

    // A verification started on b: a shows its report.
    let (status, job) = on_b.post_json("/api/audit/verify", &json!({"wait": true})).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let (status, seen) = on_a.get(&format!("/api/audit/verify/{}", job["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!((seen["state"].clone(), seen["intact"].clone()), (json!("done"), json!(true)), "{seen}");
    assert_eq!(seen["report"], job["report"], "the same report on both replicas");

    for app in [c, b, a] {
        app.running.shutdown().await.unwrap();
    }
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex_lower(&sha2::Sha256::digest(bytes))
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Makes the ledger refuse one action's records (an injected fault).
async fn refuse_records(app: &TestApp, backend: Backend, action: &str) {
    use sea_orm::ConnectionTrait as _;
    let db = app.running.ledger.db().conn();
    let statements = match backend {
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER injected_refusal BEFORE INSERT ON ledger_entries WHEN NEW.action = '{action}' \
             BEGIN SELECT RAISE(ABORT, 'injected'); END"
        )],
        Backend::Postgres => vec![
            "CREATE FUNCTION injected_refusal() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected'; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER injected_refusal BEFORE INSERT ON ledger_entries FOR EACH ROW \
                 WHEN (NEW.action = '{action}') EXECUTE FUNCTION injected_refusal()"
            ),
        ],
    };
    for sql in statements {
        db.execute_unprepared(&sql).await.unwrap();
    }
}

/// Fail closed: an export whose record the ledger refuses ends failed on
/// every replica, its file discarded and no manifest kept, so nothing
/// leaves unrecorded; the ledger still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_the_ledger_cannot_record_leaves_no_file_and_no_manifest() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(a) = TestApp::spawn(backend).await else { continue };
        let b = match backend {
            Backend::Postgres => Some(a.replica(|_| {}).await),
            Backend::Sqlite => None,
        };
        let ingest = key_client(&a, &[Scope::Ingest]).await;
        let batch: Vec<Value> = (0..30).map(|i| event(i, 1)).collect();
        assert_eq!(ingest.post_json("/api/audit/events", &json!(batch)).await.0, StatusCode::CREATED);
        let on_a = user_client(&a, "refused_exporter", &["admin"]).await;
        refuse_records(&a, backend, "audit.export.completed").await;

        let (status, started) = on_a.post_json("/api/audit/exports?format=csv", &json!(null)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{backend:?}: {started}");
        let id = started["id"].as_str().unwrap().to_owned();
        let path = format!("/api/audit/exports/{id}");
        let mut askers = vec![on(&a, &on_a)];
        askers.extend(b.iter().map(|b| on(b, &on_a)));
        for c in &askers {
            // A poll recorded in the same batch as the refused record may
            // itself be refused (503): polled again.
            let (_, job) = poll(c, &path, |s, j| s == StatusCode::OK && j["state"] != "running").await;
            assert_eq!(job["state"], "failed", "{backend:?}: {job}");
            assert!(job["error"].as_str().is_some_and(|e| e.contains("could not be recorded")), "{backend:?}: {job}");
            let (status, body) = c.get(&format!("{path}/file")).await;
            assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_ready")), "{body}");
            let (status, body) = c.get(&format!("{path}/manifest")).await;
            assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");
        }
        for app in std::iter::once(&a).chain(b.as_ref()) {
            let left: Vec<_> = std::fs::read_dir(app._dir.path().join("exports"))
                .map(|d| d.filter_map(Result::ok).map(|f| f.file_name()).collect())
                .unwrap_or_default();
            assert!(left.iter().all(|f| !f.to_string_lossy().starts_with(&id)), "{backend:?}: files left {left:?}");
        }
        let report = a.running.ledger.verify(Default::default(), |_| {}).await.unwrap();
        assert!(report.is_intact(), "{backend:?}: {report:?}");
        if let Some(b) = b {
            b.running.shutdown().await.unwrap();
        }
        a.running.shutdown().await.unwrap();
    }
}
