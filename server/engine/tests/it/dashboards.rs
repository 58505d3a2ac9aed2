//! Dashboards on both databases: demo events ingested through the normal
//! path, then every analytics figure compared with the same figure counted
//! from the events themselves; compliance checks that follow what the
//! system does (a verification recorded, the guards dropped).

use custos_engine::events::model::{Channel, Outcome};
use std::collections::BTreeMap;

use custos_engine::events::validate::Limits;
use custos_engine::events::{Events, OwnAction, OwnEvent, Submitter};
use custos_engine::ledger::rollup::{latency_bucket, latency_value};
use custos_testkit::demo::Demo;
use serde_json::Value;

use crate::support::{TestDb, both_backends, open_ledger};

const N: u64 = 3000;

/// A verification as the server records it (`audit.verify` by custos).
fn verification(outcome: Outcome, details: Value) -> OwnEvent {
    OwnEvent::by_custos(OwnAction::Verify, "test", Channel::System).outcome(outcome).details(details)
}

/// The same event sealed as a client's (its sealed submitter an API key),
/// as an entry from before ingest refused Custos's namespaces would be.
fn sealed_as_client(own: OwnEvent, now_us: i64) -> custos_engine::ledger::NewEntry {
    let e = &own.build(now_us);
    let payload = serde_json::json!({ "v": 1, "event": e, "unmasked": {}, "policy": 0, "submitted_by": "api_key:forger", "digest": null });
    custos_engine::ledger::NewEntry {
        event_id: e.id,
        occurred_at_us: e.occurred_at_us,
        fields: custos_engine::ledger::types::HeaderFields {
            category: e.category.clone(),
            action: e.action.clone(),
            outcome: e.outcome.as_str().into(),
            severity: e.severity.as_str().into(),
            actor_id: Some(e.actor.id.clone()),
            actor_kind: Some(e.actor.kind.clone()),
            resource_type: None,
            resource_id: None,
            tenant: None,
            channel: Some(e.source.channel.clone()),
            source_app: e.source.application.clone(),
        },
        payload: payload.to_string().into_bytes(),
        duration_ms: None,
    }
}

fn status(r: &custos_engine::events::model::ComplianceReport, id: &str) -> &'static str {
    r.checks.iter().find(|c| c.id == id).unwrap_or_else(|| panic!("no check {id}")).status.as_str()
}

both_backends! {
    async fn analytics_match_the_events_and_compliance_follows_the_system(backend: Backend) {
        let Some(db) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&db.db).await;
        let events = Events::open(ledger.clone(), Limits::default()).await.unwrap();
        let end = ledger.now_us();
        // Ten days: the analytics read whole days from the daily rows and
        // the partial days at the edges from the hourly rows.
        let span = 10 * 86_400_000_000;
        let demo = Demo::new(3, N, end, span);
        let items: Vec<Value> = (0..N).map(|i| demo.event(i)).collect();
        for chunk in items.chunks(1000) {
            events.ingest(chunk, None, &Submitter { principal: "test".into() }).await.unwrap();
        }

        let a = events.analytics(end - span, end).await.unwrap();
        assert_eq!(a.bucket, "day");
        assert_eq!(a.total, N);
        assert_eq!(a.by_category.iter().map(|s| s.counts.iter().sum::<u64>()).sum::<u64>(), N);
        let count = |f: &dyn Fn(&Value) -> bool| items.iter().filter(|e| f(e)).count() as u64;
        let s = |e: &Value, k: &str| e[k].as_str().unwrap_or("").to_owned();
        assert_eq!(a.outcomes.denied, count(&|e| s(e, "outcome") == "denied"));
        assert_eq!(a.outcomes.error + a.outcomes.failure, count(&|e| ["error", "failure"].contains(&s(e, "outcome").as_str())));
        let logins_ok = count(&|e| s(e, "action") == "user.login" && s(e, "outcome") == "success");
        let logins_bad = count(&|e| s(e, "action") == "user.login" && s(e, "outcome") != "success");
        assert_eq!((a.authentication.successes, a.authentication.failures), (logins_ok, logins_bad));
        assert_eq!(a.authentication.mfa, count(&|e| s(e, "action") == "mfa.verify" && s(e, "outcome") == "success"));
        assert_eq!(a.authentication.lockouts, count(&|e| s(e, "action") == "user.lockout"));
        assert!(a.authentication.successes > 0 && a.authentication.lockouts > 0);
        // Top actions: the most frequent first, with their exact counts.
        let mut by_action: BTreeMap<String, u64> = BTreeMap::new();
        for e in &items {
            *by_action.entry(s(e, "action")).or_default() += 1;
        }
        let top = &a.top_actions[0];
        assert_eq!(Some(&top.count), by_action.get(&top.value));
        assert_eq!(top.count, *by_action.values().max().unwrap());
        // Tools: invocations per tool and the latency percentiles, against
        // the durations sent (within the histogram's bucket).
        assert!(!a.tools.is_empty());
        for t in &a.tools {
            let mine: Vec<&Value> = items.iter().filter(|e| s(e, "category") == "tool" && e["resource"]["id"] == t.name.as_str()).collect();
            assert_eq!(t.outcomes.total(), mine.len() as u64, "{}", t.name);
            assert_eq!(t.outcomes.error, mine.iter().filter(|e| s(e, "outcome") == "error").count() as u64);
            let mut d: Vec<f64> = mine.iter().map(|e| e["metrics"]["duration_ms"].as_f64().unwrap()).collect();
            d.sort_by(f64::total_cmp);
            assert_eq!(t.timed, d.len() as u64);
            let exact = d[((0.95 * d.len() as f64).ceil() as usize).max(1) - 1];
            let p95 = t.p95_ms.unwrap();
            assert!((p95 - latency_value(latency_bucket(exact))).abs() < 0.01, "{}: p95 {p95} for {exact}", t.name);
            assert!(t.p50_ms.unwrap() <= p95 && p95 <= t.p99_ms.unwrap());
            assert!(!t.last_seen.is_empty());
        }
        assert_eq!(a.plugins.len(), 5);
        assert_eq!(a.notification_channels.iter().map(|c| c.outcomes.total()).sum::<u64>(), count(&|e| s(e, "category") == "notification"));
        assert!(a.mcp_actions.iter().any(|m| m.action == "mcp.request") && a.mcp_actions.iter().any(|m| m.action == "mcp.connect"));
        assert_eq!(a.queries.len(), custos_engine::events::dashboards::QUERIES.len());
        // A day-long window inside the period, per hour, agrees with a
        // count of the events in it (whole hours).
        let hour = 3_600_000_000;
        let (from, to) = ((end - 3 * 86_400_000_000).div_euclid(hour) * hour, (end - 2 * 86_400_000_000).div_euclid(hour) * hour);
        let day = events.analytics(from, to).await.unwrap();
        assert_eq!(day.bucket, "hour");
        let at = |e: &Value| chrono::DateTime::parse_from_rfc3339(e["occurred_at"].as_str().unwrap()).unwrap().timestamp_micros();
        assert_eq!(day.total, count(&|e| (from..to).contains(&at(e))));
        assert!(day.total > 0);
        assert!(events.analytics(end, end - 1).await.is_err());

        // Compliance: computed from the system.
        let r = events.compliance(24).await.unwrap();
        assert_eq!(status(&r, "chain_verified"), "fail", "never verified");
        assert_eq!(status(&r, "append_only"), "pass");
        assert_eq!(status(&r, "auth_events_recorded"), "pass");
        assert_eq!(status(&r, "retention"), "not_configured");
        assert_eq!(status(&r, "exports_signed"), "no_evidence", "no export yet: no evidence, not a pass");
        assert_eq!(status(&r, "encryption_keys"), "pass");
        let soc2 = r.frameworks.iter().find(|f| f.id == "soc2").unwrap();
        assert_eq!(status(&r, "alerting"), "fail", "the built-in rules are enabled, but nothing evaluates them here");
        assert!(r.checks.iter().any(|c| c.id == "alerting" && c.detail.contains("lease is not held")));
        assert_eq!(soc2.controls.iter().find(|c| c.id == "CC7.2").unwrap().status.as_str(), "fail", "as good as its worst check");
        // Evidence is typed: the engine names what to look at, never a page of the UI.
        let auth = r.checks.iter().find(|c| c.id == "auth_events_recorded").unwrap();
        assert_eq!(
            serde_json::to_value(&auth.evidence).unwrap(),
            serde_json::json!([{ "label": "See them in the explorer",
                "about": { "kind": "events", "filters": { "category": "authentication", "range": "30d" } } }])
        );
        let all = serde_json::to_string(&r.checks).unwrap();
        assert!(!all.contains("\"/") && !all.contains("href"), "no paths in the engine's report: {all}");
        // A real verification report; the records below are built by hand to test which ones count.
        let report = ledger.verify(Default::default(), |_| {}).await.unwrap();
        assert!(report.is_intact());
        // A client cannot send one: Custos's namespaces are refused at ingest.
        let mut e = custos_testkit::demo::Demo::new(9, 1, ledger.now_us(), 1000).event(0);
        e["action"] = "audit.verify".into();
        e["occurred_at"] = chrono::Utc::now().to_rfc3339().into();
        let refused = events.ingest(&[e], None, &Submitter { principal: "test".into() }).await.unwrap_err();
        assert!(format!("{refused:?}").contains("reserves for its own records"), "{refused:?}");
        // Nor does a client-sealed success (an entry from before that rule) count.
        let forged = verification(Outcome::Success, serde_json::json!({ "report": report }));
        ledger.append_one(sealed_as_client(forged, ledger.now_us())).await.unwrap();
        assert!(events.recent_by_action("audit.verify", 5).await.unwrap().is_empty());
        assert_eq!(status(&events.compliance(24).await.unwrap(), "chain_verified"), "fail", "a forged success is ignored");
        events.record_own(verification(Outcome::Success, serde_json::json!({ "report": report }))).await.unwrap();
        let history = events.recent_by_action("audit.verify", 5).await.unwrap();
        assert_eq!(history.len(), 1);
        let r = events.compliance(24).await.unwrap();
        assert_eq!(status(&r, "chain_verified"), "pass", "{:?}", r.checks[0]);
        // An intact verification of a range alone does not change that; a
        // failed one of any range since fails the check, naming its seq.
        let partial = verification(Outcome::Success, serde_json::json!({
            "scope": {"from_seq": 2, "to_seq": 3},
            "report": {"from_seq": 2, "to_seq": 3, "entries_checked": 2, "failure": null}
        }));
        events.record_own(partial).await.unwrap();
        assert_eq!(status(&events.compliance(24).await.unwrap(), "chain_verified"), "pass");
        let failed = verification(Outcome::Failure, serde_json::json!({
            "scope": {"from_seq": 2, "to_seq": 3},
            "report": {"from_seq": 2, "to_seq": 3, "entries_checked": 0, "failure": {"seq": 2, "kind": "mac", "detail": "x"}}
        }));
        events.record_own(failed).await.unwrap();
        let r = events.compliance(24).await.unwrap();
        assert_eq!(status(&r, "chain_verified"), "fail");
        assert!(r.checks[0].detail.contains("FAILED at seq 2"), "{}", r.checks[0].detail);
        // A forged success of the whole ledger after it hides nothing.
        let whole = verification(Outcome::Success, serde_json::json!({ "scope": {"from_seq": null, "to_seq": null}, "report": report }));
        ledger.append_one(sealed_as_client(whole, ledger.now_us())).await.unwrap();
        let r = events.compliance(24).await.unwrap();
        assert_eq!(status(&r, "chain_verified"), "fail", "a forged success does not hide the failure");
        assert!(r.checks[0].detail.contains("FAILED at seq 2"), "{}", r.checks[0].detail);
        ledger.checkpoint_now().await.unwrap();
        let r = events.compliance(24).await.unwrap();
        assert_eq!(status(&r, "checkpoints_signed"), "pass", "{:?}", r.checks[1]);
        // Someone with raw database access drops the guards: it shows.
        db.drop_guards().await;
        let r = events.compliance(24).await.unwrap();
        assert_eq!(status(&r, "append_only"), "fail");
        let iso = r.frameworks.iter().find(|f| f.id == "iso27001").unwrap();
        assert_eq!(iso.controls.iter().find(|c| c.id == "A.5.28").unwrap().status.as_str(), "fail");
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    /// Durations travel beside the entries through the sequencer: a retried
    /// id (in the same batch and in a later one) and untimed events between
    /// timed ones must not shift a duration onto another entry.
    async fn latency_stays_with_its_event_across_duplicates(backend: Backend) {
        let Some(db) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&db.db).await;
        let events = Events::open(ledger.clone(), Limits::default()).await.unwrap();
        let now = chrono::Utc::now();
        let at = now.to_rfc3339();
        let tool = |id: &str, ms: f64| serde_json::json!({
            "id": id, "occurred_at": at, "category": "tool", "action": "tool.invoke", "outcome": "success",
            "actor": {"id": "agent", "kind": "service"}, "resource": {"type": "tool", "id": "probe"},
            "source": {"channel": "mcp"}, "metrics": {"duration_ms": ms},
        });
        let other = serde_json::json!({
            "occurred_at": at, "category": "admin", "action": "user.create", "outcome": "success",
            "actor": {"id": "root", "kind": "user"}, "source": {"channel": "ui"},
        });
        let a = "01a21b00-0000-7000-8000-00000000000a";
        let c = "01a21b00-0000-7000-8000-00000000000c";
        let by = Submitter { principal: "test".into() };
        // The same id from two requests at once (one request may not repeat
        // an id): they may share a batch, where the second is a duplicate.
        let first = [tool(a, 5.0), other.clone(), tool(c, 5000.0)];
        let again = [tool(a, 5.0)];
        let (x, y) = tokio::join!(events.ingest(&again, None, &by), events.ingest(&first, None, &by));
        x.unwrap();
        y.unwrap();
        // And a retry later, beside an untimed event.
        events.ingest(&[tool(a, 5.0), other], None, &by).await.unwrap();
        let hour = 3_600_000_000;
        let t = now.timestamp_micros();
        let an = events.analytics(t - hour, t + hour).await.unwrap();
        let probe = an.tools.iter().find(|x| x.name == "probe").unwrap();
        assert_eq!((probe.outcomes.success, probe.timed), (2, 2), "{probe:?}");
        assert_eq!(probe.p50_ms, Some((latency_value(latency_bucket(5.0)) * 100.0).round() / 100.0));
        assert_eq!(probe.p99_ms, Some((latency_value(latency_bucket(5000.0)) * 100.0).round() / 100.0));
        ledger.shutdown(tasks).await.unwrap();
    }
}
