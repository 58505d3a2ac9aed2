//! Custos's own events go through one writer: sealed with the server as the
//! submitter, masked by the policy unless their action is exempt by name.

use custos_engine::events::model::Channel;
use custos_engine::events::validate::Limits;
use custos_engine::events::{Events, OwnAction, OwnEvent};
use serde_json::json;

use crate::support::{TestDb, both_backends, open_ledger};

both_backends! {
    async fn own_events_are_masked_unless_exempt_by_name(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        let events = Events::open(ledger.clone(), Limits::default()).await.unwrap();
        let masked = OwnEvent::by_custos(OwnAction::Unmask, "test", Channel::Api)
            .details(json!({ "justification": "asked by ada@example.org" }));
        let r = events.record_own(masked).await.unwrap();
        let v = events.view(&ledger.entry(r.seq).await.unwrap().unwrap(), false).await.unwrap();
        let text = v.details.unwrap().to_string();
        assert!(!text.contains("ada@example.org"), "masked like any event: {text}");
        assert_eq!(v.source.application.as_deref(), Some("custos"));
        assert_eq!((v.action.as_str(), v.category.as_str(), v.severity.as_str()), ("audit.unmask", "data_access", "warning"));
        // The export record carries the signed manifest verbatim.
        let exempt = OwnEvent::by_custos(OwnAction::ExportCompleted, "test", Channel::Api)
            .details(json!({ "filters": [["actor", "ada@example.org"]] }));
        let r = events.record_own(exempt).await.unwrap();
        let v = events.view(&ledger.entry(r.seq).await.unwrap().unwrap(), false).await.unwrap();
        assert!(v.details.unwrap().to_string().contains("ada@example.org"), "exempt: kept as signed");
        // Both sealed by the server: the compliance checks trust them.
        let history = events.own_by_action_until("audit.unmask", 10, |_| false).await.unwrap();
        assert_eq!(history.len(), 1);
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn reading_with_proof_records_the_unmasking_first_and_verifying_records_its_end(backend: Backend) {
        use custos_engine::events::service::{EventRef, Unmask};
        use custos_engine::events::Requester;
        use custos_engine::ledger::verify::VerifyScope;

        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        let events = Events::open(ledger.clone(), Limits::default()).await.unwrap();
        let who = Requester::new(custos_engine::events::own::custos_actor("test"), Channel::Api, Some("req-1".into()));
        assert_eq!(who.owner, "system:custos", "owned by the principal, kind:id");
        let r = events.record_own(OwnEvent::by_custos(OwnAction::DemoSeed, "test", Channel::Cli)).await.unwrap();

        assert!(Unmask::new(who.clone(), Some("  why ")).is_err(), "a reason of 3 characters is refused");
        assert_eq!("nope".parse::<EventRef>().unwrap_err().path, "id");
        assert!(events.read_with_proof(EventRef::Seq(r.seq + 100), None).await.unwrap().is_none());

        // Masked read: nothing recorded, the proof is against a signed checkpoint.
        let before = ledger.head().await.unwrap().seq;
        let p = events.read_with_proof(EventRef::Id(r.event_id), None).await.unwrap().unwrap();
        assert_eq!(p.event.seq, r.seq);
        assert!(p.verification.inclusion.is_some(), "covered by a checkpoint signed on demand");
        assert_eq!(ledger.head().await.unwrap().seq, before, "a masked read records nothing");

        // Unmasked read: the unmasking is in the ledger with its reason.
        let u = Unmask::new(who.clone(), Some("case 42: subject access request")).unwrap();
        events.read_with_proof(EventRef::Seq(r.seq), Some(&u)).await.unwrap().unwrap();
        let unmasks = events.own_by_action_until("audit.unmask", 10, |_| false).await.unwrap();
        assert_eq!(unmasks.len(), 1, "the unmasking was recorded");
        let u = &unmasks[0];
        assert_eq!(u.details.as_ref().unwrap()["justification"], "case 42: subject access request");
        assert_eq!(u.details.as_ref().unwrap()["seq"], r.seq);
        assert_eq!(u.correlation.request_id.as_deref(), Some("req-1"));
        assert!(u.seq > r.seq, "recorded after the event it reveals, before the answer");

        // A verification is recorded with its outcome and scope.
        let scope = VerifyScope { from_seq: Some(1), to_seq: None };
        let mut seen = 0;
        let report = events.verify_and_record(scope, &who, None, |p| seen = p.checked).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert!(seen > 0, "progress was reported");
        let verifies = events.own_by_action_until("audit.verify", 10, |_| false).await.unwrap();
        assert_eq!(verifies.len(), 1);
        let v = &verifies[0];
        assert_eq!((v.outcome.as_str(), v.severity.as_str()), ("success", "info"));
        let d = v.details.as_ref().unwrap();
        assert_eq!((d["scope"]["from_seq"].as_u64(), d["scope"]["to_seq"].as_u64()), (Some(1), None));
        assert_eq!(d["report"]["entries_checked"].as_u64(), Some(report.entries_checked));
        assert!(events.check_verify_scope(VerifyScope { from_seq: Some(0), to_seq: None }).await.is_err());
        assert!(events.check_verify_scope(VerifyScope { from_seq: Some(3), to_seq: Some(2) }).await.is_err());
        let past = VerifyScope { from_seq: Some(ledger.head().await.unwrap().seq + 1), to_seq: None };
        assert!(events.check_verify_scope(past).await.is_err(), "a range past the head cannot run");
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn own_only_searches_find_custos_records_through_their_own_index(backend: Backend) {
        use custos_engine::events::Submitter;
        use custos_engine::events::search::{SearchFilter, build_sql};

        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        let events = Events::open(ledger.clone(), Limits::default()).await.unwrap();
        // An application's events in the category Custos's own records use,
        // around two of Custos's own.
        let app = |action: &str| {
            json!({
                "occurred_at": custos_engine::time::rfc3339(ledger.now_us()), "category": "data_access",
                "action": action, "outcome": "success", "actor": {"id": "svc", "kind": "service"},
                "source": {"channel": "api", "application": "crm"},
            })
        };
        let by = Submitter { principal: "test".into() };
        events.ingest(&[app("record.read"), app("record.export")], None, &by).await.unwrap();
        let first = events
            .record_own(OwnEvent::by_custos(OwnAction::Unmask, "test", Channel::Api).details(json!({ "why": "a" })))
            .await
            .unwrap();
        events.ingest(&[app("record.export")], None, &by).await.unwrap();
        let second = events
            .record_own(OwnEvent::by_custos(OwnAction::Unmask, "test", Channel::Api).details(json!({ "why": "b" })))
            .await
            .unwrap();

        let f = SearchFilter {
            categories: vec!["data_access".into()],
            descending: false,
            limit: 1000,
            only_own: true,
            ..Default::default()
        };
        let page = events.search(&f).await.unwrap();
        let seqs: Vec<u64> = page.items.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![first.seq, second.seq], "Custos's own records only, in seq order");
        assert!(page.items.iter().all(|e| e.source.application.as_deref() == Some("custos")));
        let all = events.search(&SearchFilter { only_own: false, ..f.clone() }).await.unwrap();
        assert_eq!(all.items.len(), 5, "without the flag the applications' events come too");

        let newest = events.search(&SearchFilter { descending: true, ..f.clone() }).await.unwrap();
        assert_eq!(newest.items.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![second.seq, first.seq]);

        // SQLite reads them through the partial index, not the whole table.
        let conn = ledger.db().conn();
        let b = conn.get_database_backend();
        if b == sea_orm::DbBackend::Sqlite {
            for descending in [false, true] {
                let f = SearchFilter { descending, ..f.clone() };
                let (sql, values) = build_sql(&f, &[], &[], None, 1001, b);
                let text = crate::support::sqlite_plan(ledger.db(), &sql, values).await;
                assert!(text.iter().any(|d| d.contains("ledger_entries_own")), "{text:?}");
            }
        }
        ledger.shutdown(tasks).await.unwrap();
    }
}
