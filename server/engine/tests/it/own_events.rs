//! Custos's own events go through one writer: sealed with the server as the
//! submitter, masked by the policy unless their action is exempt by name.

use custos_engine::events::validate::Limits;
use custos_engine::events::{Events, OwnAction, OwnEvent};
use serde_json::json;

use crate::support::{TestDb, both_backends, open_ledger};

both_backends! {
    async fn own_events_are_masked_unless_exempt_by_name(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        let events = Events::open(ledger.clone(), Limits::default()).await.unwrap();
        let masked = OwnEvent::by_custos(OwnAction::Unmask, "test", "api")
            .details(json!({ "justification": "asked by ada@example.org" }));
        let r = events.record_own(masked).await.unwrap();
        let v = events.view(&ledger.entry(r.seq).await.unwrap().unwrap(), false).await.unwrap();
        let text = v.details.unwrap().to_string();
        assert!(!text.contains("ada@example.org"), "masked like any event: {text}");
        assert_eq!(v.source.application.as_deref(), Some("custos"));
        assert_eq!((v.action.as_str(), v.category.as_str(), v.severity.as_str()), ("audit.unmask", "data_access", "warning"));
        // The export record carries the signed manifest verbatim.
        let exempt = OwnEvent::by_custos(OwnAction::ExportCompleted, "test", "api")
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
