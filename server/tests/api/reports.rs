//! Compliance evidence reports over HTTP: 90 days of daily snapshots on a
//! controlled clock, one day with a failed verification and one without a
//! snapshot; the report shows that day failing, the gap as a gap, the
//! control not passing; the PDF read back by real readers (qpdf,
//! pdftotext), both files' manifests checked offline by `custos
//! verify-export`; the sample the same for the same seed; a viewer refused.

use std::sync::Arc;

use custos_engine::clock::ManualClock;
use custos_engine::events::{OwnAction, OwnEvent, Submitter};
use custos_engine::reports::period::{date, day_of};
use custos_engine::time::{DAY_US, HOUR_US};
use custos_model::{Channel, Outcome};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::events::{Client, out, user_client, verify_export};
use crate::support::{TestApp, both_backends};

/// 2027-01-01T00:00:00Z.
const T0: i64 = 1_798_761_600_000_000;

fn verification(ok: bool) -> OwnEvent {
    let details = json!({
        "scope": {"from_seq": null, "to_seq": null},
        "report": {"entries_checked": 10, "from_seq": 1, "failure": if ok { Value::Null } else { json!({"seq": 7}) }},
    });
    OwnEvent::by_custos(OwnAction::Verify, "test", Channel::System)
        .outcome(if ok { Outcome::Success } else { Outcome::Failure })
        .details(details)
}

fn event(category: &str, action: &str, outcome: &str, at_us: i64) -> Value {
    json!({
        "occurred_at": custos_engine::time::rfc3339(at_us), "category": category, "action": action,
        "outcome": outcome, "actor": {"id": "alice", "kind": "user"}, "source": {"application": "crm"},
    })
}

fn tool(name: &str) -> std::process::Command {
    assert!(
        std::process::Command::new("sh").args(["-c", &format!("command -v {name}")]).output().unwrap().status.success(),
        "{name} is needed to check report PDFs: apt-get install qpdf poppler-utils (make test-tools does)"
    );
    std::process::Command::new(name)
}

async fn bytes(c: &Client, path: &str) -> (StatusCode, Vec<u8>) {
    let res = c.req(reqwest::Method::GET, path).send().await.unwrap();
    (res.status(), res.bytes().await.unwrap().to_vec())
}

both_backends! {
async fn a_report_shows_the_failed_day_and_the_gap_and_verifies_offline(backend: Backend) {
    let clock = Arc::new(ManualClock::new(T0 + HOUR_US));
    let Some(app) = TestApp::spawn_on(backend, |c| c.reports.organisation = Some("Acme Payments Ltd".into()), clock.clone()).await
    else {
        return;
    };
    let events = app.running.events.clone();
    let reports = app.running.state.reports.clone();
    let by = Submitter { principal: "test".into() };
    let (failed_day, gap_day) = (day_of(T0) + 39, day_of(T0) + 59);
    // 90 days: each day a few events, a verification of the whole ledger
    // (day 40's fails), then the day's snapshot; day 60 passes unseen.
    for d in 0..90i64 {
        let day = day_of(T0) + d;
        if day == gap_day {
            continue;
        }
        clock.set_us(day * DAY_US + HOUR_US);
        let now = day * DAY_US + HOUR_US;
        let batch = vec![
            event("authentication", "user.login", "success", now - 60_000_000),
            event("authentication", "user.login", "failure", now - 50_000_000),
            event("admin", "role.grant", "success", now - 40_000_000),
        ];
        events.ingest(&batch, None, &by).await.unwrap();
        events.record_own(verification(day != failed_day)).await.unwrap();
        // The ledger signs checkpoints as it goes (on the wall clock).
        app.running.ledger.checkpoint_now().await.unwrap();
        assert_eq!(reports.snapshot_step().await.unwrap(), Some(day), "day {d}'s snapshot");
        assert_eq!(reports.snapshot_step().await.unwrap(), None, "one a day");
    }
    // The table refuses changes: a day's evidence stays as taken.
    use sea_orm::ConnectionTrait as _;
    let conn = app.running.ledger.db().conn();
    let sql = format!("UPDATE compliance_snapshots SET checks = '[]' WHERE day = {failed_day}");
    let err = conn.execute_unprepared(&sql).await.unwrap_err().to_string();
    assert!(err.contains("append-only"), "{err}");
    let err = conn.execute_unprepared("DELETE FROM compliance_snapshots").await.unwrap_err().to_string();
    assert!(err.contains("append-only"), "{err}");
    // Nor can a gap be filled in: a row needs the server's snapshot record.
    let fill = format!("INSERT INTO compliance_snapshots (day, taken_at, seq, sha256, checks) VALUES ({gap_day}, 0, 1, 'x', '[]')");
    let err = conn.execute_unprepared(&fill).await.unwrap_err().to_string();
    assert!(err.contains("needs its record written by the server"), "{err}");

    // The next morning, an officer asks for the 90 days.
    clock.set_us((day_of(T0) + 90) * DAY_US + 2 * HOUR_US);
    let officer = user_client(&app, "r_officer", &["compliance_officer"]).await;
    let viewer = user_client(&app, "r_viewer", &["viewer"]).await;
    // A role with report:generate alone sees the history, not the contents.
    let perms = custos_engine::identity::permission::PermissionSet::parse("report:generate").unwrap();
    let system = custos_engine::identity::service::Acting::system(Channel::Cli);
    app.running.identity.create_role(&system, "reporter_only", "", &perms, false).await.unwrap();
    let reporter = user_client(&app, "r_reporter", &["reporter_only"]).await;
    let (from, to) = (date(day_of(T0)), date(day_of(T0) + 89));
    let ask = json!({"framework": "pcidss4", "from": from, "to": to, "seed": "auditor-2027"});
    let (st, info) = officer.post_json("/api/reports", &ask).await;
    assert_eq!(st, StatusCode::CREATED, "{info}");
    assert_eq!(info["state"], "done");
    let id = info["id"].as_str().unwrap().to_owned();
    let (st, twin) = officer.get(&format!("/api/reports/{id}/json")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(twin["organisation"], "Acme Payments Ltd");
    assert_eq!(twin["days"], 90);
    assert_eq!(twin["snapshots"], 89);
    assert_eq!(twin["missing_days"], json!([date(gap_day)]), "the gap is shown, not filled in");
    let check = |id: &str| twin["checks"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone();
    let chain = check("chain_verified");
    assert_eq!(chain["days"]["fail"], 1, "{chain}");
    assert_eq!(chain["days"]["pass"], 88, "{chain}");
    assert_eq!(chain["days"]["missing"], 1, "{chain}");
    assert_eq!(chain["status"], "fail", "one failing day fails the period");
    let control = twin["controls"].as_array().unwrap().iter().find(|c| c["id"] == "10.7").unwrap();
    assert_eq!(control["status"], "fail");
    let daily = control["daily"].as_str().unwrap();
    assert_eq!(daily.len(), 90);
    assert_eq!(&daily[39..40], "F", "{daily}");
    assert_eq!(&daily[59..60], "-", "{daily}");
    let exception = twin["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["check"] == "chain_verified")
        .unwrap_or_else(|| panic!("{}", twin["exceptions"]));
    assert_eq!(exception["day"], date(failed_day));
    assert!(exception["detail"].as_str().unwrap().contains("FAILED at seq 7"), "{exception}");
    // PCI DSS 10.2.1.x: counted per class, the empty ones flagged.
    let class = |id: &str| twin["event_classes"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone();
    // One a day but the gap's, and the first administrator's creation.
    assert_eq!(class("10.2.1.2")["count"], 90, "admin actions: {}", class("10.2.1.2"));
    assert_eq!(class("10.2.1.4")["count"], 89, "one failed login a day");
    assert_eq!(class("10.2.1.1")["flagged"], true, "no cardholder-data access was recorded");
    assert_eq!(twin["verifications"]["failed"], 1);
    assert_eq!(twin["verifications"]["days_verified"], 88);
    assert_eq!(twin["sample"]["seed"], "auditor-2027");

    // The PDF, read by real readers.
    let dir = tempfile::tempdir().unwrap();
    let (st, pdf) = bytes(&officer, &format!("/api/reports/{id}/pdf")).await;
    assert_eq!(st, StatusCode::OK);
    let pdf_path = dir.path().join("report.pdf");
    std::fs::write(&pdf_path, &pdf).unwrap();
    let check = tool("qpdf").arg("--check").arg(&pdf_path).output().unwrap();
    assert!(check.status.success(), "qpdf: {}", out(&check));
    let text = tool("pdftotext").args(["-layout"]).arg(&pdf_path).arg("-").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    for needle in [
        "Compliance evidence report",
        "PCI DSS 4.0",
        "Acme Payments Ltd",
        "10.2.1.4",
        &date(failed_day),
        &date(gap_day),
        "auditor-2027",
        "FAIL",
    ] {
        assert!(text.contains(needle), "the PDF says {needle:?}:\n{text}");
    }

    // Both files' manifests check out offline with the public key; a
    // changed byte does not.
    let (_, cps) = officer.get("/api/audit/checkpoints?limit=1").await;
    let key = cps["public_key"].as_str().unwrap().to_owned();
    for file in ["pdf", "json"] {
        let (st, body) = bytes(&officer, &format!("/api/reports/{id}/{file}")).await;
        assert_eq!(st, StatusCode::OK);
        let (st, note) = bytes(&officer, &format!("/api/reports/{id}/{file}/manifest")).await;
        assert_eq!(st, StatusCode::OK);
        let (f, m) = (dir.path().join(format!("r.{file}")), dir.path().join(format!("r.{file}.manifest")));
        std::fs::write(&f, &body).unwrap();
        std::fs::write(&m, &note).unwrap();
        let ok = verify_export(&f, &m, Some(&key));
        assert_eq!(ok.status.code(), Some(0), "{file}: {}", out(&ok));
        let mut changed = body.clone();
        let mid = changed.len() / 2;
        changed[mid] ^= 1;
        std::fs::write(&f, &changed).unwrap();
        assert_eq!(verify_export(&f, &m, Some(&key)).status.code(), Some(1), "{file} changed");
    }
    // The cover prints the JSON twin's digest.
    let json_sha = info["json_sha256"].as_str().unwrap();
    assert!(text.contains(json_sha), "the cover names the JSON twin's digest");

    // The same seed draws the same sample; another seed another.
    let (_, again) = officer.post_json("/api/reports", &ask).await;
    let (_, twin2) = officer.get(&format!("/api/reports/{}/json", again["id"].as_str().unwrap())).await;
    assert_eq!(twin2["sample"], twin["sample"]);
    let seqs = |t: &Value| -> Vec<u64> {
        t["sample"]["controls"].as_array().unwrap().iter().flat_map(|c| c["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap())).collect()
    };
    assert!(seqs(&twin).len() >= 10, "{}", twin["sample"]);
    let other = json!({"framework": "pcidss4", "from": from, "to": to, "seed": "another"});
    let (_, third) = officer.post_json("/api/reports", &other).await;
    let (_, twin3) = officer.get(&format!("/api/reports/{}/json", third["id"].as_str().unwrap())).await;
    assert_ne!(seqs(&twin3), seqs(&twin));

    // A framework whose evidence-collection control rests on the ledger's
    // proofs alone: that one day is what keeps it from passing.
    let iso = json!({"framework": "iso27001", "from": from, "to": to});
    let (st, iso) = officer.post_json("/api/reports", &iso).await;
    assert_eq!(st, StatusCode::CREATED, "{iso}");
    let (_, iso) = officer.get(&format!("/api/reports/{}/json", iso["id"].as_str().unwrap())).await;
    let evidence = iso["controls"].as_array().unwrap().iter().find(|c| c["id"] == "A.5.28").unwrap();
    assert_eq!(evidence["failing_days"], json!([date(failed_day)]), "{evidence} {}", iso["exceptions"]);
    assert_eq!(evidence["status"], "fail", "{evidence}");
    assert_eq!(evidence["days"]["fail"], 1, "{evidence}");

    // The history, the period view, the record.
    let (_, list) = officer.get("/api/reports").await;
    assert_eq!(list.as_array().unwrap().len(), 4);
    let (st, hist) = officer.get(&format!("/api/compliance/history?from={from}&to={to}")).await;
    assert_eq!(st, StatusCode::OK, "{hist}");
    assert_eq!(hist["snapshots"], 89);
    let day40 = &hist["days"][39];
    assert!(day40["fail"].as_array().unwrap().contains(&json!("chain_verified")), "{day40}");
    assert!(hist["days"][59].get("fail").is_none(), "a gap");
    let f = custos_engine::events::SearchFilter { actions: vec!["custos.report.generated".into()], limit: 10, descending: true, ..Default::default() };
    let recorded = events.search(&f).await.unwrap();
    assert_eq!(recorded.items.len(), 4, "each report is a ledger event");
    assert_eq!(recorded.items[0].details.as_ref().unwrap()["framework"], "iso27001");

    // Bad input is named; a viewer is refused everything.
    for (body, field) in [
        (json!({"framework": "nope", "period": "previous_month"}), "framework"),
        (json!({"framework": "soc2", "period": "weekly"}), "period"),
        (json!({"framework": "soc2", "from": "2027-02-30", "to": "2027-03-01"}), "from"),
        (json!({"framework": "soc2"}), "period"),
    ] {
        let (st, err) = officer.post_json("/api/reports", &body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(err["fields"][0]["path"], field, "{err}");
    }
    let spaced = json!({"framework": "soc2", "period": "previous_month", "seed": "has a space"});
    let (st, err) = officer.post_json("/api/reports", &spaced).await;
    assert_eq!((st, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("seed")), "{err}");
    assert_eq!(officer.get("/api/reports/not-a-uuid").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(officer.get(&format!("/api/reports/{id}/xml")).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(officer.get(&format!("/api/reports/{}", uuid::Uuid::now_v7())).await.0, StatusCode::NOT_FOUND);
    assert_eq!(viewer.post_json("/api/reports", &ask).await.0, StatusCode::FORBIDDEN);
    let (st, err) = reporter.post_json("/api/reports", &ask).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{err}");
    assert!(err["message"].as_str().unwrap().contains("audit:read"), "{err}");
    assert_eq!(reporter.get(&format!("/api/reports/{id}/json")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(reporter.get("/api/reports").await.0, StatusCode::OK, "the history is theirs to see");
    for path in ["/api/reports", &format!("/api/reports/{id}/pdf"), &format!("/api/reports/{id}/pdf/manifest"), "/api/compliance/history?period=last_30_days"] {
        assert_eq!(viewer.get(path).await.0, StatusCode::FORBIDDEN, "{path}");
    }

    // A snapshot edited behind the database's back (its guard dropped) no
    // longer matches its sealed record: not used, and said so.
    let drop = match app.running.ledger.db().kind() {
        custos_engine::storage::DbKind::Sqlite => "DROP TRIGGER compliance_snapshots_no_update",
        custos_engine::storage::DbKind::Postgres => "DROP TRIGGER compliance_snapshots_no_change ON compliance_snapshots",
    };
    conn.execute_unprepared(drop).await.unwrap();
    let sql = format!("UPDATE compliance_snapshots SET checks = replace(checks, 'FAILED', 'passed') WHERE day = {failed_day}");
    conn.execute_unprepared(&sql).await.unwrap();
    let (_, hist) = officer.get(&format!("/api/compliance/history?from={from}&to={to}")).await;
    assert_eq!(hist["days"][39]["unverified"], true, "{}", hist["days"][39]);
    assert_eq!(hist["snapshots"], 88);
    let (_, edited) = officer.post_json("/api/reports", &json!({"framework": "iso27001", "from": from, "to": to})).await;
    let (_, twin) = officer.get(&format!("/api/reports/{}/json", edited["id"].as_str().unwrap())).await;
    assert_eq!(twin["unverified_days"], json!([date(failed_day)]));
    assert_eq!(twin["snapshots"], 88);
    app.running.shutdown().await.unwrap();
}
}

const SMTP_PASSWORD: &str = "the report smtp password";

/// The attachment named `name` in a MIME message, decoded (base64).
fn attachment(mail: &str, name: &str) -> Vec<u8> {
    use base64::Engine as _;
    let at = mail.find("Content-Disposition: attachment").unwrap_or_else(|| panic!("no attachment: {mail}"));
    let body = &mail[at..];
    assert!(body[..body.find("Content-Type").unwrap()].contains(name), "the attachment is {name}: {mail}");
    let start = body.find("\r\n\r\n").map(|i| i + 4).or_else(|| body.find("\n\n").map(|i| i + 2)).unwrap();
    let encoded: String = body[start..].lines().take_while(|l| !l.starts_with("--")).collect::<Vec<_>>().concat();
    base64::engine::general_purpose::STANDARD.decode(encoded.trim()).unwrap()
}

async fn runs(c: &Client) -> Vec<Value> {
    let (st, runs) = c.get("/api/reports/runs?schedule=daily-pci").await;
    assert_eq!(st, StatusCode::OK, "{runs}");
    runs.as_array().unwrap().clone()
}

/// Steps the scheduler until the run due at `due` has ended (the server's
/// own pass may take it first; either way one run).
async fn ran(app: &TestApp, c: &Client, due: i64) -> Value {
    let due = custos_engine::time::rfc3339(due);
    for _ in 0..50 {
        app.running.state.reports.schedule_step().await.unwrap();
        if let Some(r) = runs(c)
            .await
            .into_iter()
            .find(|r| r["due_at"] == due.as_str() && r["state"] != "planned" && r["state"] != "running")
        {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the run due at {due} did not end: {:?}", runs(c).await);
}

both_backends! {
async fn a_schedule_fires_once_at_its_time_and_mails_the_pdf(backend: Backend) {
    use custos_engine::time::{MINUTE_US, rfc3339};
    let sink = custos_testkit::smtp::SmtpSink::start(SMTP_PASSWORD);
    // 2027-02-01, 05:00 UTC.
    let feb1 = day_of(T0) + 31;
    let clock = Arc::new(ManualClock::new(feb1 * DAY_US + 5 * HOUR_US));
    let Some(app) = TestApp::spawn_on(backend, |c| {
        c.notifications.allow_private_destinations = true;
        for kind in ["notifications", "report_schedules"] {
            c.policies.insert(kind.into(), custos_server::config::PolicyReview { approvals: Some(0), ..Default::default() });
        }
    }, clock.clone()).await
    else {
        return;
    };
    let notifier = user_client(&app, "s_notify", &["notification_manager"]).await;
    let officer = user_client(&app, "s_officer", &["compliance_officer"]).await;
    let planner = user_client(&app, "s_planner", &["compliance_officer", "notification_manager"]).await;
    let perms = custos_engine::identity::permission::PermissionSet::parse("report:generate policy:read").unwrap();
    let system = custos_engine::identity::service::Acting::system(Channel::Cli);
    app.running.identity.create_role(&system, "scheduler_only", "", &perms, false).await.unwrap();
    let reporter = user_client(&app, "s_reporter", &["scheduler_only"]).await;
    let reports_check = |c: &Value| c["checks"].as_array().unwrap().iter().find(|k| k["id"] == "reports_scheduled").unwrap()["status"].clone();
    let (_, now) = officer.get("/api/compliance").await;
    assert_eq!(reports_check(&now), "not_configured", "no schedule yet");
    let channels = json!({"channels": [
        {"id": "mail", "name": "Compliance mail", "type": "email", "to": ["secops@example.org"],
         "from": "custos@example.org", "smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_tls": "none",
         "smtp_username": "custos", "smtp_password": {"value": SMTP_PASSWORD}}
    ], "routes": []});
    let (st, p) = notifier
        .post_json("/api/policies/notifications/proposals", &json!({"content": channels, "based_on": 0, "reason": "mail"}))
        .await;
    assert_eq!((st, p["version"].as_u64()), (StatusCode::OK, Some(1)), "in force at once (no approval configured): {p}");

    // Daily at 06:00, last month's PCI DSS report to the QSA; one kept.
    let schedule = json!({"id": "daily-pci", "name": "PCI for the QSA", "cron": "0 6 * * *", "framework": "pcidss4",
        "period": "previous_month", "recipients": [{"channel": "mail", "to": ["qsa@example.org"]}], "keep": 1});
    let propose = "/api/policies/report_schedules/proposals";
    let mut wrong = schedule.clone();
    wrong["recipients"][0]["channel"] = json!("nope");
    let (st, err) = planner.post_json(propose, &json!({"content": {"schedules": [wrong]}, "based_on": 0, "reason": "x"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["fields"][0]["path"], "content.schedules[0].recipients[0].channel", "{err}");
    let mut wrong = schedule.clone();
    wrong["cron"] = json!("0 6 31 2 *");
    let (st, err) = planner.post_json(propose, &json!({"content": {"schedules": [wrong]}, "based_on": 0, "reason": "x"})).await;
    assert_eq!((st, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("content.schedules[0].cron")), "{err}");
    let (st, err) = reporter.post_json(propose, &json!({"content": {"schedules": [schedule]}, "based_on": 0, "reason": "x"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a report carries events: {err}");
    assert!(err["message"].as_str().unwrap().contains("audit:read"), "{err}");
    let (st, err) = officer.post_json(propose, &json!({"content": {"schedules": [schedule]}, "based_on": 0, "reason": "x"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "addresses instead of the channel's: {err}");
    assert!(err["message"].as_str().unwrap().contains("notification:manage"), "{err}");
    let mut often = schedule.clone();
    often["cron"] = json!("*/30 * * * *");
    let (st, err) = planner.post_json(propose, &json!({"content": {"schedules": [often]}, "based_on": 0, "reason": "x"})).await;
    assert_eq!((st, err["fields"][0]["path"].as_str()), (StatusCode::BAD_REQUEST, Some("content.schedules[0].cron")), "{err}");
    let (st, p) = planner.post_json(propose, &json!({"content": {"schedules": [schedule]}, "based_on": 0, "reason": "QSA"})).await;
    assert_eq!((st, p["version"].as_u64()), (StatusCode::OK, Some(1)), "in force at once (no approval configured): {p}");
    let test = &p["test"];
    assert!(test.to_string().contains("2027-02-01 06:00 UTC: pcidss4 covering 2027-01-01 to 2027-01-31"), "{test}");

    // 05:59: planned, not run.
    let six = feb1 * DAY_US + 6 * HOUR_US;
    clock.set_us(six - MINUTE_US);
    app.running.state.reports.schedule_step().await.unwrap();
    let list = runs(&officer).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0]["state"].as_str(), list[0]["due_at"].as_str()), (Some("planned"), Some(rfc3339(six).as_str())));
    let (_, view) = officer.get("/api/reports/schedules").await;
    assert_eq!(view["schedules"][0]["next_run"], rfc3339(six), "{view}");
    assert_eq!(reporter.get("/api/reports/schedules").await.0, StatusCode::FORBIDDEN, "they name the recipients");
    assert_eq!(reporter.get("/api/reports/runs").await.0, StatusCode::FORBIDDEN);
    assert_eq!(officer.get("/api/reports/runs?limit=0").await.0, StatusCode::BAD_REQUEST);

    // 06:00: it runs, once.
    clock.set_us(six);
    let run = ran(&app, &officer, six).await;
    assert_eq!(run["state"], "done", "{run}");
    let report_id = run["report_id"].as_str().unwrap().to_owned();
    // Another replica's pass finds nothing to do.
    let other = custos_engine::reports::Reports::new(
        app.running.events.clone(),
        app.running.policies.clone(),
        Arc::new(custos_export::Formats::default()),
        "replica-b",
        Default::default(),
    );
    let pass = other.schedule_step().await.unwrap();
    assert_eq!((pass.done, pass.failed), (0, 0), "{pass:?}");
    let list = runs(&officer).await;
    assert_eq!(list.iter().filter(|r| r["due_at"] == rfc3339(six).as_str()).count(), 1, "{list:?}");
    let (_, info) = officer.get(&format!("/api/reports/{report_id}")).await;
    assert_eq!((info["trigger"].as_str(), info["schedule"].as_str()), (Some("schedule"), Some("daily-pci")), "{info}");
    assert_eq!((info["period_from"].as_str(), info["period_to"].as_str()), (Some("2027-01-01"), Some("2027-01-31")));
    let pdf_sha = info["pdf_sha256"].as_str().unwrap().to_owned();

    // The mail arrives with the PDF attached, to the schedule's address.
    let mut mails = Vec::new();
    for _ in 0..100 {
        mails = sink.mails();
        if !mails.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(mails.len(), 1, "one mail");
    let mail = &mails[0];
    assert!(mail.contains("To: qsa@example.org") && !mail.contains("secops@example.org"), "{mail}");
    assert!(mail.contains("multipart/mixed"), "{mail}");
    assert!(mail.contains(&pdf_sha), "the text names the digest");
    let pdf = attachment(mail, "custos-report-pcidss4-2027-01-01-2027-01-31.pdf");
    assert!(pdf.starts_with(b"%PDF-"));
    use sha2::Digest as _;
    assert_eq!(hex::encode(sha2::Sha256::digest(&pdf)), pdf_sha, "the attachment is the report");
    let mut delivered = false;
    for _ in 0..50 {
        let r = runs(&officer).await.into_iter().find(|r| r["due_at"] == rfc3339(six).as_str()).unwrap();
        if r["deliveries"][0]["status"] == "delivered" {
            delivered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(delivered, "the run shows its delivery");
    let (_, now) = officer.get("/api/compliance").await;
    assert_eq!(reports_check(&now), "pass", "made and sent: {now}");
    let (_, page) = officer.get("/api/audit?action=custos.report.scheduled").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    let record = &page["items"][0]["details"];
    assert_eq!(record["report"], report_id.as_str());
    assert_eq!(record["recipients"][0]["to"], json!(["qsa@example.org"]), "the record names where it went: {record}");
    assert_eq!((record["policy_version"].as_u64(), record["recipients"][0]["attached"].as_bool()), (Some(1), Some(true)));

    // The next day's run replaces it (keep 1).
    let six2 = six + DAY_US;
    clock.set_us(six2);
    // (A day later, the session has ended: a fresh one.)
    let officer = user_client(&app, "s_officer2", &["compliance_officer"]).await;
    let run2 = ran(&app, &officer, six2).await;
    assert_eq!(run2["state"], "done", "{run2}");
    let (_, all) = officer.get("/api/reports").await;
    let kept: Vec<&str> = all.as_array().unwrap().iter().filter(|r| r["schedule"] == "daily-pci").map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(kept, [run2["report_id"].as_str().unwrap()], "keep 1");

    // Changed to 07:00: the planned 06:00 run (tomorrow) is cancelled, 07:00
    // today planned.
    let mut later = schedule.clone();
    later["cron"] = json!("0 7 * * *");
    let planner = user_client(&app, "s_planner2", &["compliance_officer", "notification_manager"]).await;
    let (st, p) = planner.post_json(propose, &json!({"content": {"schedules": [later]}, "based_on": 1, "reason": "later"})).await;
    assert_eq!((st, p["version"].as_u64()), (StatusCode::OK, Some(2)), "{p}");
    app.running.state.reports.schedule_step().await.unwrap();
    let list = runs(&officer).await;
    let six3 = rfc3339(six2 + DAY_US);
    let cancelled = list.iter().find(|r| r["due_at"] == six3.as_str()).unwrap();
    assert_eq!((cancelled["state"].as_str(), cancelled["error"].as_str()), (Some("cancelled"), Some("the schedule was changed")));
    let seven = six2 + HOUR_US;
    assert!(list.iter().any(|r| r["due_at"] == rfc3339(seven).as_str() && r["state"] == "planned"), "{list:?}");

    // Down for three days: the 07:00 run is missed, the latest runs.
    clock.set_us(seven + 3 * DAY_US + 30 * MINUTE_US);
    let officer = user_client(&app, "s_officer3", &["compliance_officer"]).await;
    let latest = ran(&app, &officer, seven + 3 * DAY_US).await;
    assert_eq!(latest["state"], "done", "{latest}");
    let list = runs(&officer).await;
    let missed = list.iter().find(|r| r["due_at"] == rfc3339(seven).as_str()).unwrap();
    assert_eq!(missed["state"], "missed", "{missed}");
    assert!(missed["error"].as_str().unwrap().contains("3 later occurrence(s)"), "{missed}");
    let (_, page) = officer.get("/api/audit?action=custos.report.schedule_missed").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    app.running.shutdown().await.unwrap();
}
}
