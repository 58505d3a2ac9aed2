//! Alerting over HTTP: failed sign-ins sent by an application open an
//! alert within a second or so (no reload, no restart), which an analyst
//! acknowledges and resolves, each step in the ledger; a viewer may read
//! alerts but not act on them; bad filters are named.

use std::time::Duration;

use custos_engine::identity::apikey::Scope;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::events::{key_client, user_client};
use crate::support::{TestApp, both_backends};

fn failure(actor: &str) -> Value {
    json!({
        "occurred_at": chrono::Utc::now().to_rfc3339(), "category": "authentication", "action": "user.login",
        "outcome": "failure", "actor": {"id": actor, "kind": "user", "ip": "198.51.100.9"},
        "source": {"channel": "ui", "application": "portal"},
    })
}

/// The data of the next server-sent event named `name` on `res` (`seen`
/// keeps what was read past it); fails after 20 s.
async fn next_event(res: &mut reqwest::Response, seen: &mut String, name: &str) -> Value {
    let head = format!("event: {name}\n");
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(at) = seen.find(&head)
                && let Some(end) = seen[at..].find("\n\n")
            {
                let block = seen[at..at + end].to_owned();
                seen.replace_range(..at + end + 2, "");
                let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("null");
                return serde_json::from_str(data).unwrap();
            }
            let chunk = res.chunk().await.unwrap().expect("the stream ended");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event `{name}` within 20 s; read: {seen}"))
}

both_backends! {
    async fn failed_sign_ins_open_an_alert_that_people_move_through_the_ledger(backend: Backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let ingest = key_client(&app, &[Scope::Ingest]).await;
        let analyst = user_client(&app, "analyst", &["security_analyst"]).await;
        let viewer = user_client(&app, "viewer1", &["viewer"]).await;
        // Let the evaluator take its lease and start at the live edge.
        tokio::time::sleep(Duration::from_millis(600)).await;
        for _ in 0..6 {
            let (status, body) = ingest.post_json("/api/audit/events", &failure("mallory")).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        // Waits for the evaluator (a deadline for failing, not a timing
        // assertion).
        let mut alert = Value::Null;
        for _ in 0..100 {
            let (status, page) = analyst.get("/api/alerts?status=open").await;
            assert_eq!(status, StatusCode::OK, "{page}");
            if let Some(a) = page["items"].as_array().and_then(|i| i.first())
                && a["matches"] == 6
            {
                alert = a.clone();
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(alert["rule_id"], "brute_force", "the fifth failure opened it, the sixth was counted in: {alert}");
        assert_eq!(alert["group"]["actor"], "mallory");
        assert_eq!(alert["status"], "open");
        let id = alert["id"].as_str().unwrap().to_owned();

        // A viewer reads alerts but does not act on them.
        let (status, one) = viewer.get(&format!("/api/alerts/{id}")).await;
        assert_eq!((status, one["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
        let (status, _) = viewer.post_json(&format!("/api/alerts/{id}/acknowledge"), &json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // The inbox's live stream: a repeat counted into the open alert
        // (which writes no ledger entry of its own) is an event `changed`.
        let mut live = viewer.req(reqwest::Method::GET, "/api/alerts/live").send().await.unwrap();
        assert_eq!(live.status(), StatusCode::OK);
        assert_eq!(live.headers()["content-type"], "text/event-stream");
        let mut seen = String::new();
        let ready = next_event(&mut live, &mut seen, "ready").await;
        let (status, body) = ingest.post_json("/api/audit/events", &failure("mallory")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let counted = next_event(&mut live, &mut seen, "changed").await;
        assert!(counted["version"].is_string() && counted["version"] != ready["version"], "{ready} then {counted}");
        let (_, one) = viewer.get(&format!("/api/alerts/{id}")).await;
        assert_eq!(one["matches"], 7, "{one}");

        let (status, a) = analyst.post_json(&format!("/api/alerts/{id}/acknowledge"), &json!({"comment": "on it"})).await;
        assert_eq!((status, a["status"].as_str()), (StatusCode::OK, Some("acknowledged")), "{a}");
        // A step is one too.
        let stepped = next_event(&mut live, &mut seen, "changed").await;
        assert!(stepped["version"].is_string() && stepped["version"] != counted["version"], "{counted} then {stepped}");
        drop(live);
        let (status, e) = viewer.get("/api/alerts/live?status=open").await;
        assert_eq!((status, e["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("status")), "{e}");
        let (status, e) = analyst.post_json(&format!("/api/alerts/{id}/acknowledge"), &json!({})).await;
        assert_eq!(status, StatusCode::CONFLICT, "{e}");
        let (status, e) = analyst.post_json(&format!("/api/alerts/{id}/comment"), &json!({"comment": ""})).await;
        assert_eq!((status, e["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("comment")), "{e}");
        let (status, e) = analyst.post_json(&format!("/api/alerts/{id}/resolve"), &json!({"note": "x"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "unknown fields are refused: {e}");
        let (status, a) = analyst.post_json(&format!("/api/alerts/{id}/resolve"), &json!({"comment": "reset"})).await;
        assert_eq!((status, a["status"].as_str()), (StatusCode::OK, Some("resolved")), "{a}");
        assert_eq!(a["history"].as_array().unwrap().len(), 2);

        // Each step is a ledger event the server wrote.
        let (_, page) = analyst.get("/api/audit?action=custos.alert.*&order=asc").await;
        let steps: Vec<&str> = page["items"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        assert_eq!(steps, ["custos.alert.opened", "custos.alert.acknowledged", "custos.alert.resolved"]);
        assert_eq!(page["items"][0]["resource"]["id"], id.as_str());

        // Filters are checked and named.
        for (q, field) in [("status=closed", "status"), ("limit=0", "limit"), ("from=yesterday", "from"), ("colour=red", "colour"), ("cursor=zz", "cursor")] {
            let (status, e) = analyst.get(&format!("/api/alerts?{q}")).await;
            assert_eq!((status, e["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some(field)), "{q}: {e}");
        }
        let (_, page) = analyst.get("/api/alerts?status=resolved&rule=brute_force").await;
        assert_eq!((page["items"].as_array().unwrap().len(), page["counts"]["resolved"].as_u64()), (1, Some(1)));
        let (status, _) = analyst.get("/api/alerts/0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e6f").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        app.running.shutdown().await.unwrap();
    }
}
