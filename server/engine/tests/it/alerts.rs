//! Alert rules over real history: the dry-run feeds the evaluator that
//! runs live with the ledger's events in commit order.

use custos_engine::alerts::{dry_run, rules::builtin_rules};
use custos_engine::events::validate::Limits;
use custos_engine::events::{Events, Submitter};
use serde_json::json;

use crate::support::{TestDb, both_backends, open_ledger};

both_backends! {
    async fn the_dry_run_counts_what_the_builtin_rules_would_have_fired(backend: Backend) {
        let Some(db) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&db.db).await;
        let events = Events::open(ledger.clone(), Limits::default()).await.unwrap();
        let at = chrono::Utc::now().to_rfc3339();
        let login = |actor: &str, outcome: &str| json!({
            "occurred_at": at, "category": "authentication", "action": "user.login", "outcome": outcome,
            "actor": {"id": actor, "kind": "user", "ip": "198.51.100.9"}, "source": {"channel": "ui", "application": "portal"},
        });
        let by = Submitter { principal: "test".into() };
        for _ in 0..6 {
            events.ingest(&[login("mallory", "failure")], None, &by).await.unwrap();
        }
        events.ingest(&[login("ada", "failure"), login("ada", "success")], None, &by).await.unwrap();
        let now = ledger.now_us();
        let hour = 3_600_000_000;
        let run = dry_run(&events, builtin_rules(), now - hour, now + 60_000_000, 10_000).await.unwrap();
        assert!(!run.cut);
        assert_eq!(run.events, 8);
        let fired = run.fired;
        let brute = &fired["brute_force"];
        assert_eq!((brute.alerts, brute.repeats), (1, 1), "the fifth failure opens it, the sixth is counted into it");
        assert_eq!(brute.first_seqs.len(), 5);
        assert_eq!(fired["password_spraying"].alerts, 0, "two accounts from the address, not ten");
        assert_eq!(fired["admin_granted"].alerts, 0);
        let run = dry_run(&events, builtin_rules(), now - hour, now + 60_000_000, 3).await.unwrap();
        assert!(run.cut && run.events == 3, "a bounded dry-run says it stopped early");
        ledger.shutdown(tasks).await.unwrap();
    }
}

mod live {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use custos_engine::alerts::live::Live;
    use custos_engine::alerts::rules::{Firing, builtin_rules};
    use custos_engine::alerts::store::{AlertQuery, Alerts, AlertsError, Step};
    use custos_engine::clock::{Clock as _, ManualClock, OsRandom};
    use custos_engine::events::model::{Actor, AlertStatus, Channel};
    use custos_engine::events::{Events, Requester, Submitter};
    use custos_engine::identity::service::{Identity, IdentitySettings};
    use custos_engine::ledger::Ledger;
    use custos_engine::policies::PolicyStore;
    use custos_engine::time::SECOND_US;
    use sea_orm::ConnectionTrait as _;
    use serde_json::json;

    use crate::support::{KEK, TestDb, both_backends, config};

    const T0: i64 = 1_800_000_000_000_000;

    async fn fail(events: &Events, clock: &ManualClock, actor: &str) {
        clock.advance_us(10 * SECOND_US);
        let e = json!({
            "occurred_at": custos_engine::time::rfc3339(clock.now_us()), "category": "authentication",
            "action": "user.login", "outcome": "failure",
            "actor": {"id": actor, "kind": "user", "ip": "198.51.100.9"},
            "source": {"channel": "ui", "application": "portal"},
        });
        events.ingest(&[e], None, &Submitter { principal: "test".into() }).await.unwrap();
    }

    async fn actions(ledger: &Ledger, events: &Events, prefix: &str) -> Vec<(String, String)> {
        let head = ledger.head().await.unwrap().seq;
        let mut out = Vec::new();
        for seq in 1..=head {
            let e = ledger.entry(seq).await.unwrap().unwrap();
            if e.header.fields.action.starts_with(prefix) {
                let v = events.view(&e, false).await.unwrap();
                out.push((v.action, v.severity));
            }
        }
        out
    }

    both_backends! {
        async fn alerts_open_live_survive_a_restart_and_move_through_the_ledger(backend: Backend) {
            let Some(t) = TestDb::new(backend).await else { return };
            let clock = Arc::new(ManualClock::new(T0));
            let (ledger, tasks) =
                Ledger::open(t.db.clone(), &KEK, config(), clock.clone(), Arc::new(OsRandom)).await.unwrap();
            let events = Arc::new(Events::open(ledger.clone(), Default::default()).await.unwrap());
            let identity = Arc::new(
                Identity::new(events.clone(), clock.clone(), Arc::new(OsRandom), IdentitySettings::default())
                    .await
                    .unwrap(),
            );
            let store = Arc::new(PolicyStore::open(events.clone(), identity, &BTreeMap::new()).await.unwrap());
            let alerts = Arc::new(Alerts::new(events.clone()));

            // History before the first evaluator is not evaluated (that is
            // the dry-run's job): it starts at the live edge.
            for _ in 0..5 {
                fail(&events, &clock, "history").await;
            }
            let mut a = Live::new(alerts.clone(), store.clone(), "replica-a");
            let p = a.step().await.unwrap();
            assert!(p.held && p.opened.is_empty() && p.events == 0, "{p:?}");

            // Three failures, then replica a dies without a word.
            for _ in 0..3 {
                fail(&events, &clock, "mallory").await;
            }
            let p = a.step().await.unwrap();
            assert_eq!((p.events, p.opened.len()), (3, 0));
            drop(a);

            // Another replica waits for the lease to lapse, then takes over
            // and rebuilds the window from the ledger.
            let mut b = Live::new(alerts.clone(), store.clone(), "replica-b");
            assert!(!b.step().await.unwrap().held, "a's lease has not lapsed yet");
            clock.advance_us(16 * SECOND_US);
            let p = b.step().await.unwrap();
            assert!(p.held);
            assert!(p.replayed.unwrap() >= 3, "the window was rebuilt: {p:?}");
            // What each replica knows of its leases (`/readyz` lists them).
            let seen = |h: &str| {
                custos_engine::lease::held_by(&ledger, h).into_iter().find(|l| l.name == "alert-evaluator").map(|l| l.held)
            };
            assert_eq!(seen("replica-b"), Some(true), "b holds it now");
            assert_eq!(seen("replica-a"), Some(false), "a stopped renewing: its claim lapsed with the lease");
            assert_eq!(seen("replica-z"), None, "a replica that never tried knows nothing");
            // Passes between renewals keep the windows (no rebuild).
            clock.advance_us(SECOND_US);
            assert_eq!(b.step().await.unwrap().replayed, None);
            clock.advance_us(3 * SECOND_US);
            assert_eq!(b.step().await.unwrap().replayed, None, "a renewal is not a takeover");
            fail(&events, &clock, "mallory").await;
            assert!(b.step().await.unwrap().opened.is_empty(), "four in the window");
            fail(&events, &clock, "mallory").await;
            let p = b.step().await.unwrap();
            assert_eq!(p.opened.len(), 1, "the fifth failure in five minutes, across the restart: {p:?}");
            let opened = p.opened[0].clone();
            assert_eq!((opened.rule_id.as_str(), opened.matches), ("brute_force", 5));
            assert_eq!(opened.group.get("actor").map(String::as_str), Some("mallory"));
            assert!(opened.explore.contains("actor=mallory") && opened.explore.contains("action=user.login"));
            fail(&events, &clock, "mallory").await;
            let p = b.step().await.unwrap();
            assert_eq!((p.opened.len(), p.counted), (0, 1), "the sixth is counted into the open alert");
            let alert = alerts.get(&opened.id).await.unwrap();
            assert_eq!((alert.matches, alert.status), (6, AlertStatus::Open));
            assert_eq!(
                actions(&ledger, &events, "custos.alert.").await,
                [("custos.alert.opened".to_owned(), "warning".to_owned())]
            );

            // A third replica is kept out while b holds the lease.
            let mut c = Live::new(alerts.clone(), store.clone(), "replica-c");
            assert!(!c.step().await.unwrap().held);
            assert_eq!(seen("replica-c"), Some(false), "c tried and was kept out");

            // People acknowledge, comment and resolve, each recorded.
            let ada = Requester::new(
                Actor { id: "u-1".into(), kind: "user".into(), name: Some("ada".into()), ip: None, user_agent: None, session_id: None },
                Channel::Ui,
                None,
            );
            let acked = alerts.step(&alert.id, Step::Acknowledge, &ada, "looking").await.unwrap();
            assert_eq!((acked.status, acked.history.len()), (AlertStatus::Acknowledged, 1));
            assert!(matches!(alerts.step(&alert.id, Step::Acknowledge, &ada, "").await, Err(AlertsError::Conflict(_))));
            assert!(matches!(alerts.step(&alert.id, Step::Comment, &ada, "  ").await, Err(AlertsError::Invalid(f)) if f.path == "comment"));
            alerts.step(&alert.id, Step::Comment, &ada, "the account owner was on holiday").await.unwrap();
            let done = alerts.step(&alert.id, Step::Resolve, &ada, "password reset").await.unwrap();
            assert_eq!(done.status, AlertStatus::Resolved);
            assert_eq!(done.history.iter().map(|s| s.step.as_str()).collect::<Vec<_>>(), ["acknowledged", "commented", "resolved"]);
            assert_eq!(done.history[2].comment, "password reset");
            let steps: Vec<String> = actions(&ledger, &events, "custos.alert.").await.into_iter().map(|a| a.0).collect();
            assert_eq!(steps, ["custos.alert.opened", "custos.alert.acknowledged", "custos.alert.commented", "custos.alert.resolved"]);

            // Evaluating the same firing again (a crash before the cursor
            // was saved) opens nothing twice.
            let rule = builtin_rules().into_iter().find(|r| r.id == "brute_force").unwrap();
            let again = Firing {
                rule: rule.id.clone(),
                group: opened.group.clone(),
                count: 5,
                seqs: opened.seqs.clone(),
                at_us: clock.now_us(),
                new: true,
            };
            assert!(alerts.on_firing(&again, &rule, 0).await.unwrap().is_none());
            let page = alerts.list(&AlertQuery { limit: 10, ..Default::default() }).await.unwrap();
            assert_eq!((page.items.len(), page.counts.get("resolved").copied()), (1, Some(1)));

            // The database keeps what opened an alert, and a resolved one
            // resolved.
            let conn = t.db.conn();
            let sql = |s: &str| sea_orm::Statement::from_string(conn.get_database_backend(), s.to_owned());
            assert!(conn.execute_raw(sql("UPDATE alerts SET status = 'open'")).await.is_err());
            assert!(conn.execute_raw(sql("UPDATE alerts SET rule_id = 'other'")).await.is_err());
            assert!(conn.execute_raw(sql("DELETE FROM alerts")).await.is_err());

            // An alert stored by a pass cut off before it recorded its
            // opening is recorded by the next firing of its trigger.
            let conn = t.db.conn();
            conn.execute_raw(sea_orm::Statement::from_sql_and_values(
                conn.get_database_backend(),
                if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
                    "INSERT INTO alerts (id, rule_id, rule_name, severity, group_key, trigger_key, status, matches, seqs, filter, \
                     since_us, opened_at, last_at, last_seq, updated_at, created_at, rules_version) \
                     VALUES ($1, 'brute_force', 'Brute force', 'warning', '{\"actor\":\"cut\"}', $2, 'open', 5, '[77]', '[]', \
                     0, 0, 0, 77, 0, 0, 0)"
                } else {
                    "INSERT INTO alerts (id, rule_id, rule_name, severity, group_key, trigger_key, status, matches, seqs, filter, \
                     since_us, opened_at, last_at, last_seq, updated_at, created_at, rules_version) \
                     VALUES (?, 'brute_force', 'Brute force', 'warning', '{\"actor\":\"cut\"}', ?, 'open', 5, '[77]', '[]', \
                     0, 0, 0, 77, 0, 0, 0)"
                },
                vec!["0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e60".into(), "brute_force|{\"actor\":\"cut\"}|77".into()],
            ))
            .await
            .unwrap();
            let cut = Firing {
                rule: rule.id.clone(),
                group: [("actor".to_owned(), "cut".to_owned())].into(),
                count: 5,
                seqs: vec![77],
                at_us: clock.now_us(),
                new: true,
            };
            let repaired = alerts.on_firing(&cut, &rule, 0).await.unwrap().expect("its opening is recorded now");
            assert!(repaired.opened_seq.is_some());
            assert!(alerts.on_firing(&cut, &rule, 0).await.unwrap().is_none(), "once");

            // A clean stop hands the lease over at once.
            b.release().await.unwrap();
            assert!(c.step().await.unwrap().held);
            ledger.shutdown(tasks).await.unwrap();
        }
    }
}
