//! Retention with a controlled clock: events of several categories age
//! past their periods; a run archives and removes exactly the expired ones
//! not under a legal hold; the explorer no longer finds them; verification
//! still passes and names the removals; inclusion proofs of the entries
//! that stay still verify; the archive verifies offline and holds exactly
//! the removed entries; the database refuses removals outside the path;
//! a tombstone without its record is caught.

use std::collections::BTreeMap;
use std::sync::Arc;

use custos_engine::clock::{ManualClock, OsRandom};
use custos_engine::events::model::{Actor, Channel};
use custos_engine::events::{Events, Requester, SearchFilter, Submitter};
use custos_engine::identity::service::{Acting, Identity, IdentitySettings, NewUser};
use custos_engine::ledger::Ledger;
use custos_engine::ledger::purge::verify_archive_summary;
use custos_engine::ledger::verify::{self, FailureKind, VerifyScope};
use custos_engine::policies::PolicyError;
use custos_engine::policies::review::{Decision, ReviewRule};
use custos_engine::policies::{NewProposal, PolicyStore};
use custos_engine::retention::{Retention, Settings};
use custos_engine::time::DAY_US;
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::{KEK, TestDb, both_backends, config};

const T0: i64 = 1_800_000_000_000_000;

async fn person(
    identity: &Identity,
    name: &str,
    role: &str,
) -> (Requester, custos_engine::identity::permission::PermissionSet) {
    let id = identity
        .create_user(
            &Acting::system(Channel::Cli),
            NewUser {
                username: name.into(),
                email: None,
                display_name: None,
                password: SecretString::from("a long enough password".to_owned()),
                roles: vec![role.into()],
                must_change_password: false,
            },
        )
        .await
        .unwrap();
    let held = identity.principal(id).await.unwrap().unwrap().permissions;
    let actor = Actor {
        id: id.to_string(),
        kind: "user".into(),
        name: Some(name.into()),
        ip: None,
        user_agent: None,
        session_id: None,
    };
    (Requester::new(actor, Channel::Ui, None), held)
}

fn event(category: &str, action: &str, actor: &str, at: &str) -> Value {
    json!({
        "occurred_at": at, "category": category, "action": action, "outcome": "success",
        "actor": {"id": actor, "kind": "user"}, "resource": {"type": "document", "id": "doc-1"},
        "source": {"application": "crm"}, "details": {"note": "hello"}
    })
}

async fn count(events: &Events, category: &str) -> usize {
    let f = SearchFilter { categories: vec![category.into()], limit: 1000, descending: true, ..Default::default() };
    events.search(&f).await.unwrap().items.len()
}

both_backends! {
    async fn a_run_removes_exactly_the_expired_events_not_on_hold_and_the_ledger_still_verifies(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let archives = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let (ledger, tasks) = Ledger::open(t.db.clone(), &KEK, config(), clock.clone(), Arc::new(OsRandom)).await.unwrap();
        let events = Arc::new(Events::open(ledger.clone(), Default::default()).await.unwrap());
        let identity = Arc::new(
            Identity::new(events.clone(), clock.clone(), Arc::new(OsRandom), IdentitySettings::default()).await.unwrap(),
        );
        let alone = ReviewRule { approvals: 0, ..ReviewRule::default() };
        let rules: BTreeMap<String, ReviewRule> =
            [("retention".to_owned(), alone), ("legal_holds".to_owned(), alone)].into();
        let store = Arc::new(PolicyStore::open(events.clone(), identity.clone(), &rules).await.unwrap());
        let (rita, rita_may) = person(&identity, "rita", "records_manager").await;
        let (ada, ada_may) = person(&identity, "ada", "admin").await;

        // Day 0: logins by alice and bob, tool calls, admin actions.
        let by = Submitter { principal: "test".into() };
        let mut old = Vec::new();
        for i in 0..20 {
            old.push(event("authentication", "user.login", if i % 2 == 0 { "alice" } else { "bob" }, "2027-01-15T08:00:00Z"));
            old.push(event("tool", "tool.call", "agent-7", "2027-01-15T08:00:00Z"));
            old.push(event("admin", "role.grant", "alice", "2027-01-15T08:00:00Z"));
        }
        let day0 = events.ingest(&old, None, &by).await.unwrap();
        let seq_of = |i: usize| day0[i].seq;
        // Day 100: more logins (not expired at day 400 under one year).
        clock.advance_us(100 * DAY_US);
        let recent: Vec<Value> = (0..5).map(|_| event("authentication", "user.login", "bob", "2027-04-25T08:00:00Z")).collect();
        events.ingest(&recent, None, &by).await.unwrap();
        clock.advance_us(300 * DAY_US);

        // Tools kept 90 days (below the floor: an admin's override), logins a year.
        let doc = json!({"rules": [
            {"id": "tools", "category": "tool", "days": 90, "floor_override": "tool calls carry no personal data"},
            {"id": "logins", "category": "authentication", "days": 365, "framework": "PCI DSS"},
        ]});
        let proposal = |content: Value, based_on: u64| NewProposal { content: Some(content), restores: None, based_on, reason: "retention".into() };
        let err = store.propose(&rita, &rita_may, "retention", proposal(doc.clone(), 0)).await.unwrap_err();
        assert!(matches!(&err, PolicyError::Forbidden(m) if m.contains("floor")), "{err:?}");
        let too_short = json!({"rules": [{"id": "tools", "category": "tool", "days": 90}]});
        let err = store.propose(&ada, &ada_may, "retention", proposal(too_short, 0)).await.unwrap_err();
        assert!(err.to_string().contains("content.rules[0].days"), "{err}");
        store.propose(&ada, &ada_may, "retention", proposal(doc, 0)).await.unwrap();
        // A hold on alice's logins (litigation).
        let holds = json!({"holds": [{"id": "case-1", "case_id": "LIT-2027-7", "reason": "litigation", "query": "actor=alice&category=authentication"}]});
        let p = store.propose(&rita, &rita_may, "legal_holds", proposal(holds.clone(), 0)).await.unwrap();
        assert_eq!(p.version, Some(1));
        // Removing a hold is refused: it must be released.
        let err = store.propose(&rita, &rita_may, "legal_holds", proposal(json!({"holds": []}), 1)).await.unwrap_err();
        assert!(err.to_string().contains("release it instead"), "{err}");

        let retention = Retention::new(events.clone(), store.clone(), "replica-a", Settings { archive_dir: archives.path().to_path_buf(), run_at_minute: Some(180), remote: None, cold_copies: None });
        let plan = retention.plan().await.unwrap();
        assert_eq!((plan.removable, plan.held), (30, 10), "{plan:?}");
        assert_eq!(plan.by_rule, vec![("logins".to_owned(), 10), ("tools".to_owned(), 20)]);
        assert_eq!(plan.by_category_month.iter().map(|c| c.events).sum::<u64>(), 30);
        assert_eq!(count(&events, "tool").await, 20);

        let run = retention.run_now(&rita, "manual").await.unwrap();
        assert_eq!((run.state.as_str(), run.removed, run.held, run.archives), ("done", 30, 10, 1), "{run:?}");
        // The explorer no longer finds them; alice's held logins, the recent ones and admin actions stay.
        assert_eq!(count(&events, "tool").await, 0);
        assert_eq!(count(&events, "authentication").await, 10 + 5);
        assert!(count(&events, "admin").await >= 20);
        assert!(ledger.entry(seq_of(1)).await.unwrap().is_none(), "a tool call is gone");
        assert!(ledger.entry(seq_of(0)).await.unwrap().is_some(), "alice's login is held");
        assert!(ledger.entry(seq_of(3)).await.unwrap().is_none(), "bob's old login is gone");
        // The dashboards' counts follow: no tool calls, no agent-7 left in them.
        ledger.settle_rollups().await;
        let count_of = |dim: &'static str, value: &'static str| {
            let db = t.db.clone();
            async move {
                db.conn()
                    .query_one_raw(sea_orm::Statement::from_string(
                        db.backend(),
                        format!("SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) AS n FROM audit_rollups_current WHERE dimension = '{dim}' AND value = '{value}'"),
                    ))
                    .await
                    .unwrap()
                    .unwrap()
                    .try_get::<i64>("", "n")
                    .unwrap()
            }
        };
        assert_eq!(count_of("category", "tool").await, 0);
        assert_eq!(count_of("actor", "agent-7").await, 0);
        assert_eq!(count_of("category", "authentication").await, 15, "alice's held logins and the recent ones");
        let rows: i64 = t.db.conn()
            .query_one_raw(sea_orm::Statement::from_string(t.db.backend(), "SELECT COUNT(*) AS n FROM audit_rollups_current WHERE value = 'agent-7'".to_owned()))
            .await.unwrap().unwrap().try_get("", "n").unwrap();
        assert_eq!(rows, 0, "rows that reach zero are deleted");

        // Verification passes and names the removal; proofs of what stays verify.
        ledger.checkpoint_now().await.unwrap();
        let report = verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {}).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.tombstones_checked, 30);
        assert_eq!(report.removals.len(), 1);
        assert!(report.removals[0].anchor_checked && report.removals[0].reason == "retention");
        let public_only = verify::verify(ledger.db(), &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
        assert!(public_only.is_intact(), "{public_only:?}");
        let cp = ledger.latest_checkpoint().await.unwrap().unwrap();
        for i in [0usize, 2, 59] {
            let e = ledger.entry(seq_of(i)).await.unwrap().unwrap();
            let proof = ledger.inclusion_proof(seq_of(i), cp.tree_size).await.unwrap();
            custos_engine::ledger::merkle::verify_inclusion(seq_of(i) - 1, cp.tree_size, &e.leaf_hash, &proof, &cp.root_hash).unwrap();
        }

        // The archive verifies offline with the public key and holds exactly the removed entries.
        let archives_listed = retention.archives().await.unwrap();
        assert_eq!(archives_listed.len(), 1);
        let a = &archives_listed[0];
        let summary = verify_archive_summary(std::path::Path::new(&a.uri), &ledger.verifier()).unwrap();
        assert_eq!((summary.entries, a.entries), (30, 30));
        let checked = retention.verify_archive(&a.name, &rita).await.unwrap();
        assert_eq!(checked.verified_ok, Some(true), "{checked:?}");
        let text = std::fs::read_to_string(&a.uri).unwrap();
        let bad = archives.path().join("bad.ndjson");
        std::fs::write(&bad, text.replacen("tool.call", "tool.kill", 1)).unwrap();
        assert!(verify_archive_summary(&bad, &ledger.verifier()).is_err(), "a changed archive does not verify");

        // A second run finds nothing more; releasing the hold lets alice's logins go.
        assert_eq!(retention.run_now(&rita, "manual").await.unwrap().removed, 0);
        let released = json!({"holds": [{"id": "case-1", "case_id": "LIT-2027-7", "reason": "litigation", "query": "actor=alice&category=authentication", "released": {"reason": "case closed"}}]});
        store.propose(&rita, &rita_may, "legal_holds", proposal(released, 1)).await.unwrap();
        let run = retention.run_now(&rita, "manual").await.unwrap();
        assert_eq!((run.removed, run.held), (10, 0));
        assert_eq!(count(&events, "authentication").await, 5);
        let report = verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {}).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!((report.tombstones_checked, report.removals.len()), (40, 2));
        let runs = retention.runs(10).await.unwrap();
        assert_eq!(runs.len(), 3);
        let status = retention.status().await.unwrap();
        assert_eq!((status.removed_total, status.holds_active), (40, 0));

        // The ledger records the runs.
        let head = ledger.head().await.unwrap().seq;
        let mut steps = Vec::new();
        for seq in 1..=head {
            if let Some(e) = ledger.entry(seq).await.unwrap() && e.header.fields.action.starts_with("custos.retention.") {
                steps.push(e.header.fields.action.clone());
            }
        }
        assert_eq!(steps.iter().filter(|a| *a == "custos.retention.run_completed").count(), 3, "{steps:?}");

        // The database refuses removals outside the path.
        let survivor = seq_of(2);
        let err = t.db.conn().execute_unprepared(&format!("DELETE FROM ledger_entries WHERE seq = {survivor}")).await.unwrap_err();
        assert!(err.to_string().contains("tombstones"), "{err}");
        let e = ledger.entry(survivor).await.unwrap().unwrap();
        let err = t.db.conn().execute_unprepared(&format!(
            "INSERT INTO ledger_tombstones (seq, anchor_seq, leaf_hash, chain_hash) VALUES ({survivor}, {}, {}, {})",
            report.removals[0].anchor_seq, t.blob(&e.leaf_hash), t.blob(&e.chain_hash)
        )).await.unwrap_err();
        assert!(err.to_string().contains("active retention record"), "{err}");
        let err = t.db.conn().execute_unprepared(&format!("DELETE FROM ledger_tombstones WHERE seq = {}", seq_of(1))).await.unwrap_err();
        assert!(err.to_string().contains("only by a purge"), "{err}");
        let err = t.db.conn().execute_unprepared(&format!("UPDATE ledger_tombstones SET anchor_seq = 1 WHERE seq = {}", seq_of(1))).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");

        // Someone with raw access hides an entry behind a forged tombstone: caught.
        t.drop_guards().await;
        t.sql(&format!("DELETE FROM ledger_entries WHERE seq = {survivor}")).await;
        t.sql(&format!(
            "INSERT INTO ledger_tombstones (seq, anchor_seq, leaf_hash, chain_hash) VALUES ({survivor}, {}, {}, {})",
            report.removals[0].anchor_seq, t.blob(&e.leaf_hash), t.blob(&e.chain_hash)
        )).await;
        let report = verify::verify(ledger.db(), &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
        assert_eq!(report.failure.as_ref().map(|f| f.kind), Some(FailureKind::RemovalInvalid), "{report:?}");
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn an_approved_erasure_removes_one_subjects_events_except_those_on_hold_and_a_put_back_entry_is_caught(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let archives = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let (ledger, tasks) = Ledger::open(t.db.clone(), &KEK, config(), clock.clone(), Arc::new(OsRandom)).await.unwrap();
        let events = Arc::new(Events::open(ledger.clone(), Default::default()).await.unwrap());
        let identity = Arc::new(
            Identity::new(events.clone(), clock.clone(), Arc::new(OsRandom), IdentitySettings::default()).await.unwrap(),
        );
        // Erasures need a second person (the default review); holds take effect at once here.
        let rules: BTreeMap<String, ReviewRule> =
            [("legal_holds".to_owned(), ReviewRule { approvals: 0, ..ReviewRule::default() })].into();
        let store = Arc::new(PolicyStore::open(events.clone(), identity.clone(), &rules).await.unwrap());
        let (rita, rita_may) = person(&identity, "rita", "records_manager").await;
        let (ada, ada_may) = person(&identity, "ada", "admin").await;
        let by = Submitter { principal: "test".into() };
        let mut items = Vec::new();
        for i in 0..12 {
            items.push(event("data_access", "document.read", if i % 3 == 0 { "carol" } else { "dave" }, "2027-01-15T08:00:00Z"));
        }
        items.push(event("admin", "role.grant", "carol", "2027-01-15T08:00:00Z"));
        let receipts = events.ingest(&items, None, &by).await.unwrap();
        let carol: Vec<u64> = receipts.iter().enumerate().filter(|(i, _)| *i % 3 == 0 || *i == 12).map(|(_, r)| r.seq).collect();
        assert_eq!(carol.len(), 5);
        // Carol's admin action is under a hold.
        let holds = json!({"holds": [{"id": "audit-1", "case_id": "AUD-9", "reason": "internal audit", "query": "category=admin"}]});
        store.propose(&rita, &rita_may, "legal_holds", NewProposal { content: Some(holds), restores: None, based_on: 0, reason: "audit".into() }).await.unwrap();

        let retention = Retention::new(events.clone(), store.clone(), "replica-a", Settings { archive_dir: archives.path().to_path_buf(), run_at_minute: None, remote: None, cold_copies: None });
        // A request naming no subject, or Custos itself, is refused.
        for (subject, why) in [("category=admin", "must name the data subject"), ("actor=custos", "not a data subject")] {
            let bad = json!({"requests": [{"id": "r0", "subject": subject, "reason": "x"}]});
            let err = store.propose(&rita, &rita_may, "erasures", NewProposal { content: Some(bad), restores: None, based_on: 0, reason: "x".into() }).await.unwrap_err();
            assert!(err.to_string().contains(why), "{err}");
        }
        let request = json!({"requests": [{"id": "dsr-17", "subject": "actor=carol", "reason": "GDPR Art. 17 request", "reference": "DSR-17"}]});
        let p = store.propose(&rita, &rita_may, "erasures", NewProposal { content: Some(request), restores: None, based_on: 0, reason: "carol asked".into() }).await.unwrap();
        assert_eq!(p.test.as_ref().map(|t| t.events), Some(5), "the dry-run counts carol's events");
        // Not before a second person approves.
        assert!(retention.erase_pending().await.unwrap().is_empty());
        assert!(ledger.entry(carol[0]).await.unwrap().is_some());
        store.decide(&ada, &ada_may, &p.id, Decision::Approve, "checked the request").await.unwrap();
        let done = retention.erase_pending().await.unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].kind.as_str(), done[0].removed, done[0].held), ("erasure", 4, 1), "{:?}", done[0]);
        for s in &carol[..4] {
            assert!(ledger.entry(*s).await.unwrap().is_none(), "carol's event {s} is erased");
        }
        assert!(ledger.entry(carol[4]).await.unwrap().is_some(), "the held one stays");
        assert!(ledger.entry(receipts[1].seq).await.unwrap().is_some(), "dave's stay");
        // Done once.
        assert!(retention.erase_pending().await.unwrap().is_empty());
        ledger.checkpoint_now().await.unwrap();
        let report = verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {}).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.removals.iter().map(|r| (r.reason.as_str(), r.removed)).collect::<Vec<_>>(), [("erasure", 4)]);
        // A filed request cannot be withdrawn from the register.
        let v = store.active("erasures").await.unwrap().version;
        let err = store.propose(&rita, &rita_may, "erasures", NewProposal { content: Some(json!({"requests": []})), restores: None, based_on: v, reason: "undo".into() }).await.unwrap_err();
        assert!(err.to_string().contains("cannot be removed"), "{err}");

        // Someone with raw access puts an erased entry back from the archive: caught.
        let archive = &retention.archives().await.unwrap()[0];
        let text = std::fs::read_to_string(&archive.uri).unwrap();
        let line = text.lines().find(|l| l.contains(&format!("\"seq\":{},", carol[0])) && l.contains("ciphertext")).unwrap();
        let a: custos_engine::ledger::purge::ArchivedEntry = serde_json::from_str(line).unwrap();
        t.drop_guards().await;
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let f = &a.fields;
        let q = |v: &Option<String>| v.as_ref().map_or("NULL".into(), |s| format!("'{s}'"));
        t.sql(&format!(
            "INSERT INTO ledger_entries (seq, event_id, occurred_at, recorded_at, category, action, outcome, severity, actor_id, actor_kind, \
             resource_type, resource_id, tenant, channel, source_app, key_id, iv, ciphertext, mac, leaf_hash, chain_hash) VALUES \
             ({}, {}, {}, {}, '{}', '{}', '{}', '{}', {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
            a.seq,
            if matches!(backend, crate::support::Backend::Postgres) { format!("'{}'", a.event_id) } else { t.blob(a.event_id.as_bytes()) },
            a.occurred_at, a.recorded_at, f.category, f.action, f.outcome, f.severity,
            q(&f.actor_id), q(&f.actor_kind), q(&f.resource_type), q(&f.resource_id), q(&f.tenant), q(&f.channel), q(&f.source_app),
            a.key_id, t.blob(&b64.decode(&a.iv).unwrap()), t.blob(&b64.decode(&a.ciphertext).unwrap()),
            t.blob(&hex::decode(&a.mac).unwrap()), t.blob(&hex::decode(&a.leaf_hash).unwrap()), t.blob(&hex::decode(&a.chain_hash).unwrap()),
        )).await;
        let report = verify::verify(ledger.db(), &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
        let failure = report.failure.expect("caught");
        assert_eq!((failure.kind, failure.seq), (FailureKind::RemovalInvalid, Some(carol[0])), "{}", failure.detail);
        assert!(failure.detail.contains("put back"), "{}", failure.detail);
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn archives_go_to_the_object_store_under_object_lock_before_anything_is_removed(backend: Backend) {
        use custos_engine::objstore::{LockMode, Remote};
        let Some(t) = TestDb::new(backend).await else { return };
        let s3 = crate::support::S3Server::start();
        s3.bucket("custos-archive", true);
        let archives = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let (ledger, tasks) = Ledger::open(t.db.clone(), &KEK, config(), clock.clone(), Arc::new(OsRandom)).await.unwrap();
        let events = Arc::new(Events::open(ledger.clone(), Default::default()).await.unwrap());
        let identity = Arc::new(
            Identity::new(events.clone(), clock.clone(), Arc::new(OsRandom), IdentitySettings::default()).await.unwrap(),
        );
        let rules: BTreeMap<String, ReviewRule> = [("retention".to_owned(), ReviewRule { approvals: 0, ..ReviewRule::default() })].into();
        let store = Arc::new(PolicyStore::open(events.clone(), identity.clone(), &rules).await.unwrap());
        let (ada, ada_may) = person(&identity, "ada", "admin").await;
        let by = Submitter { principal: "test".into() };
        let old: Vec<Value> = (0..12).map(|_| event("tool", "tool.call", "agent-7", "2027-01-15T08:00:00Z")).collect();
        let day0 = events.ingest(&old, None, &by).await.unwrap();
        clock.advance_us(400 * DAY_US);
        let doc = json!({"rules": [{"id": "tools", "category": "tool", "days": 90, "floor_override": "no personal data"}]});
        store.propose(&ada, &ada_may, "retention", NewProposal { content: Some(doc), restores: None, based_on: 0, reason: "r".into() }).await.unwrap();

        // A store that cannot take the archive (no such bucket): nothing is
        // removed, no archive is left behind, the run says why.
        let missing = Arc::new(Remote::new(s3.settings("s3://no-such-bucket/custos", None)).unwrap());
        let settings = |remote| Settings { archive_dir: archives.path().to_path_buf(), run_at_minute: None, remote, cold_copies: None };
        let failing = Retention::new(events.clone(), store.clone(), "replica-a", settings(Some(missing)));
        let err = failing.run_now(&ada, "manual").await.unwrap_err();
        assert!(err.to_string().contains("nothing was removed") && err.to_string().contains("NoSuchBucket"), "{err}");
        let run = failing.runs(1).await.unwrap().remove(0);
        assert_eq!((run.state.as_str(), run.removed), ("failed", 0), "{run:?}");
        assert!(ledger.entry(day0[0].seq).await.unwrap().is_some());
        assert_eq!(std::fs::read_dir(archives.path()).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count(), 0);
        assert!(failing.archives().await.unwrap().is_empty());

        // Under Object Lock (compliance, 30 days): uploaded, read back, then removed.
        let remote = Arc::new(Remote::new(s3.settings("s3://custos-archive/eu", Some((LockMode::Compliance, 30)))).unwrap());
        let retention = Retention::new(events.clone(), store.clone(), "replica-a", settings(Some(remote)));
        let run = retention.run_now(&ada, "manual").await.unwrap();
        assert_eq!((run.state.as_str(), run.removed), ("done", 12), "{run:?}");
        let a = retention.archives().await.unwrap().remove(0);
        assert_eq!(a.location, "object_store");
        assert!(a.uri.starts_with("s3://custos-archive/eu/archives/custos-retention-") && a.uri.ends_with(&a.name), "{a:?}");
        assert!(!archives.path().join(&a.name).exists(), "the local copy is not kept (keep_local off)");
        let status = retention.status().await.unwrap();
        assert_eq!(status.object_store.as_deref(), Some("s3://custos-archive/eu (Object Lock: compliance, 30 days)"));

        // The store holds it under its lock, until 30 days after the upload.
        let seen = s3.inspect("custos-archive", &format!("eu/archives/{}", a.name), true);
        assert_eq!((seen["status"].as_u64(), seen["size"].as_u64()), (Some(200), Some(a.bytes)), "{seen}");
        assert_eq!(seen["lock_mode"], "COMPLIANCE", "{seen}");
        let until = seen["lock_until"].as_str().unwrap();
        let expected = custos_engine::time::rfc3339(T0 + 430 * DAY_US);
        assert_eq!(&until[..10], &expected[..10], "locked until 30 days after the upload: {seen}");
        assert_eq!(seen["delete_version"], "AccessDenied", "a locked version cannot be deleted: {seen}");

        // Verified and downloaded from the store (a temporary copy, deleted after).
        let checked = retention.verify_archive(&a.name, &ada).await.unwrap();
        assert_eq!(checked.verified_ok, Some(true), "{checked:?}");
        let copy = retention.archive_file(&a.name).await.unwrap();
        let bytes = std::fs::read(&copy.path).unwrap();
        assert_eq!(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)), a.sha256);
        let summary = verify_archive_summary(&copy.path, &ledger.verifier()).unwrap();
        assert_eq!(summary.entries, 12);
        let temp = copy.path.clone();
        drop(copy);
        assert!(!temp.exists());
        let report = verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {}).await.unwrap();
        assert!(report.is_intact() && report.tombstones_checked == 12, "{report:?}");

        // A cold copy the store refuses: recorded, tried again an hour later
        // (not every tick), whatever the period.
        let failed_copies = |ledger: custos_engine::ledger::Ledger| async move {
            let head = ledger.head().await.unwrap().seq;
            let mut n = 0;
            for seq in 1..=head {
                if let Some(e) = ledger.entry(seq).await.unwrap() && e.header.fields.action == "custos.retention.cold_copy_failed" {
                    n += 1;
                }
            }
            n
        };
        let nowhere = Arc::new(Remote::new(s3.settings("s3://no-such-bucket", None)).unwrap());
        let refused = Retention::new(events.clone(), store.clone(), "replica-a", Settings {
            cold_copies: Some(custos_engine::retention::ColdCopies::Daily), ..settings(Some(nowhere))
        });
        let err = refused.copy_sealed(false).await.unwrap_err();
        assert!(err.to_string().contains("NoSuchBucket"), "{err}");
        assert!(refused.copy_sealed(false).await.unwrap().is_empty(), "not again before the hour");
        assert_eq!(failed_copies(ledger.clone()).await, 1);
        clock.advance_us(3_700_000_000);
        assert!(refused.copy_sealed(false).await.is_err(), "tried again after the hour");
        assert_eq!(failed_copies(ledger.clone()).await, 2);
        assert!(refused.archives().await.unwrap().iter().all(|a| a.reason != "cold_copy"));

        // Cold copies (daily): everything sealed so far, the removed
        // positions as their hashes; once a day; then what came since.
        let remote = Arc::new(Remote::new(s3.settings("s3://custos-archive/eu", None)).unwrap());
        let copies = Retention::new(events.clone(), store.clone(), "replica-a", Settings {
            cold_copies: Some(custos_engine::retention::ColdCopies::Daily), ..settings(Some(remote))
        });
        let sealed = ledger.checkpoint_now().await.unwrap().unwrap().tree_size;
        let made = copies.copy_sealed(false).await.unwrap();
        assert_eq!(made.len(), 1);
        let first = &made[0];
        assert_eq!((first.reason.as_str(), first.from_seq, first.through_seq, first.entries), ("cold_copy", 1, sealed, sealed - 12), "{first:?}");
        assert_eq!(first.location, "object_store");
        assert!(copies.verify_archive(&first.name, &ada).await.unwrap().verified_ok == Some(true));
        let copy = copies.archive_file(&first.name).await.unwrap();
        let summary = verify_archive_summary(&copy.path, &ledger.verifier()).unwrap();
        assert_eq!((summary.entries, summary.kept), (sealed - 12, 12), "removed positions are kept as hashes");
        drop(copy);
        assert!(copies.copy_sealed(false).await.unwrap().is_empty(), "once a day");
        clock.advance_us(DAY_US);
        events.ingest(&old[..3], None, &by).await.unwrap();
        let sealed2 = ledger.checkpoint_now().await.unwrap().unwrap().tree_size;
        let made = copies.copy_sealed(false).await.unwrap();
        assert_eq!(made.len(), 1);
        assert_eq!((made[0].from_seq, made[0].through_seq), (sealed + 1, sealed2));
        let status = copies.status().await.unwrap();
        assert_eq!((status.cold_copies.as_deref(), status.cold_copied_through), (Some("daily"), Some(sealed2)));
        let head = ledger.head().await.unwrap().seq;
        let mut recorded = 0;
        for seq in 1..=head {
            if let Some(e) = ledger.entry(seq).await.unwrap() && e.header.fields.action == "custos.retention.cold_copy" {
                recorded += 1;
            }
        }
        assert_eq!(recorded, 2);
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn a_prefix_of_tombstones_is_compacted_by_a_purge_and_the_ledger_still_verifies(backend: Backend) {
        use custos_engine::retention::REMOVAL_BLOCK;
        let Some(t) = TestDb::new(backend).await else { return };
        let archives = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let (ledger, tasks) = Ledger::open(t.db.clone(), &KEK, config(), clock.clone(), Arc::new(OsRandom)).await.unwrap();
        let events = Arc::new(Events::open(ledger.clone(), Default::default()).await.unwrap());
        // A full block and a bit more of events that will expire, first.
        let by = Submitter { principal: "test".into() };
        let n = REMOVAL_BLOCK as usize + 116;
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let items: Vec<Value> = chunk.iter().map(|_| event("tool", "tool.call", "agent-7", "2027-01-15T08:00:00Z")).collect();
            events.ingest(&items, None, &by).await.unwrap();
        }
        let identity = Arc::new(
            Identity::new(events.clone(), clock.clone(), Arc::new(OsRandom), IdentitySettings::default()).await.unwrap(),
        );
        let rules: BTreeMap<String, ReviewRule> = [("retention".to_owned(), ReviewRule { approvals: 0, ..ReviewRule::default() })].into();
        let store = Arc::new(PolicyStore::open(events.clone(), identity.clone(), &rules).await.unwrap());
        let (ada, ada_may) = person(&identity, "ada", "admin").await;
        clock.advance_us(400 * DAY_US);
        let doc = json!({"rules": [{"id": "tools", "category": "tool", "days": 90, "floor_override": "no personal data"}]});
        store.propose(&ada, &ada_may, "retention", NewProposal { content: Some(doc), restores: None, based_on: 0, reason: "r".into() }).await.unwrap();
        // Archives to an object store: the compaction's too, before it deletes anything.
        let s3 = crate::support::S3Server::start();
        s3.bucket("custos-compaction", false);
        let remote = Arc::new(custos_engine::objstore::Remote::new(s3.settings("s3://custos-compaction", None)).unwrap());
        let retention = Retention::new(events.clone(), store.clone(), "replica-a", Settings { archive_dir: archives.path().to_path_buf(), run_at_minute: None, remote: Some(remote), cold_copies: None });
        let run = retention.run_now(&ada, "manual").await.unwrap();
        // Two removals (one per block), then the first block compacted.
        assert_eq!((run.removed, run.archives), (n as u64, 3), "{run:?}");
        let listed = retention.archives().await.unwrap();
        let compaction = listed.iter().find(|a| a.reason == "compaction").expect("a compaction");
        assert_eq!((compaction.from_seq, compaction.through_seq, compaction.entries), (1, REMOVAL_BLOCK, 0), "{compaction:?}");
        assert_eq!(compaction.location, "object_store");
        let seen = s3.inspect("custos-compaction", &format!("archives/{}", compaction.name), false);
        assert_eq!(seen["size"].as_u64(), Some(compaction.bytes), "{seen}");
        let tombstones: i64 = t.db.conn()
            .query_one_raw(sea_orm::Statement::from_string(t.db.backend(), "SELECT COUNT(*) AS n FROM ledger_tombstones".to_owned()))
            .await.unwrap().unwrap().try_get("", "n").unwrap();
        assert_eq!(tombstones, 116, "the compacted block's tombstones are gone");
        let checked = retention.verify_archive(&compaction.name, &ada).await.unwrap();
        assert_eq!(checked.verified_ok, Some(true), "{checked:?}");

        // Verification starts after the purge, checks both removals' signed
        // records (the first compacted) and follows the remaining tombstones.
        ledger.checkpoint_now().await.unwrap();
        let report = verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {}).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.tombstones_checked, 116);
        assert_eq!(report.purges.len(), 1);
        let compacted: Vec<bool> = report.removals.iter().map(|r| r.compacted).collect();
        assert_eq!(compacted, vec![true, false]);
        // A proof of an entry that stays still verifies.
        let cp = ledger.latest_checkpoint().await.unwrap().unwrap();
        let head = ledger.head().await.unwrap().seq;
        let e = ledger.entry(head).await.unwrap().unwrap();
        let proof = ledger.inclusion_proof(head, cp.tree_size).await.unwrap();
        custos_engine::ledger::merkle::verify_inclusion(head - 1, cp.tree_size, &e.leaf_hash, &proof, &cp.root_hash).unwrap();

        // A tombstone is deleted only by a purge of its range.
        let err = t.db.conn()
            .execute_unprepared(&format!("DELETE FROM ledger_tombstones WHERE seq = {}", REMOVAL_BLOCK + 5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("only by a purge"), "{err}");
        // Nothing more to compact: the rest of the ledger holds events.
        assert!(ledger.compactable_through(1_000_000).await.unwrap().is_none());
        ledger.shutdown(tasks).await.unwrap();
    }
}
