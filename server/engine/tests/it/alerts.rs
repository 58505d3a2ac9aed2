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
