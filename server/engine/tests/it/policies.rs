//! The policy store on real databases with a controlled clock: proposals,
//! four-eyes review, expiry, rollback, races, the database's guards, the
//! masking dry-run, and the trail rebuilt from the ledger alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use custos_engine::clock::{Clock as _, ManualClock, OsRandom};
use custos_engine::events::model::{Actor, Channel};
use custos_engine::events::{Events, Requester, Submitter};
use custos_engine::identity::permission::{Permission, PermissionSet};
use custos_engine::identity::service::{Acting, Identity, IdentitySettings, NewUser};
use custos_engine::ledger::{Ledger, LedgerTasks};
use custos_engine::policies::review::{Decision, ReviewRule};
use custos_engine::policies::{NewProposal, PolicyError, PolicyStore, trail};
use custos_engine::time::DAY_US;
use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::{Backend, KEK, TestDb, both_backends, config};

const T0: i64 = 1_800_000_000_000_000;

struct Env {
    _t: TestDb,
    clock: Arc<ManualClock>,
    ledger: Ledger,
    tasks: Option<LedgerTasks>,
    events: Arc<Events>,
    identity: Arc<Identity>,
}

impl Env {
    async fn new(backend: Backend) -> Option<Env> {
        let t = TestDb::new(backend).await?;
        let clock = Arc::new(ManualClock::new(T0));
        let (ledger, tasks) =
            Ledger::open(t.db.clone(), &KEK, config(), clock.clone(), Arc::new(OsRandom)).await.unwrap();
        let events =
            Arc::new(Events::open(ledger.clone(), custos_engine::events::validate::Limits::default()).await.unwrap());
        let identity = Arc::new(
            Identity::new(events.clone(), clock.clone(), Arc::new(OsRandom), IdentitySettings::default())
                .await
                .unwrap(),
        );
        Some(Env { _t: t, clock, ledger, tasks: Some(tasks), events, identity })
    }

    async fn store(&self, rules: &[(&str, ReviewRule)]) -> PolicyStore {
        let rules: BTreeMap<String, ReviewRule> = rules.iter().map(|(k, r)| (k.to_string(), *r)).collect();
        PolicyStore::open(self.events.clone(), self.identity.clone(), &rules).await.unwrap()
    }

    /// A user with `roles`, as a requester.
    async fn person(&self, name: &str, roles: &[&str]) -> (Requester, PermissionSet) {
        let id = self
            .identity
            .create_user(
                &Acting::system(Channel::Cli),
                NewUser {
                    username: name.into(),
                    email: None,
                    display_name: None,
                    password: SecretString::from("a long enough password".to_owned()),
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                    must_change_password: false,
                },
            )
            .await
            .unwrap();
        let p = self.identity.principal(id).await.unwrap().unwrap();
        let actor = Actor {
            id: id.to_string(),
            kind: "user".into(),
            name: Some(name.into()),
            ip: None,
            user_agent: None,
            session_id: None,
        };
        (Requester::new(actor, Channel::Ui, None), p.permissions)
    }

    async fn ingest(&self, note: &str) -> String {
        let at = custos_engine::time::rfc3339(self.clock.now_us());
        let e = json!({
            "occurred_at": at, "category": "admin", "action": "user.update", "outcome": "success",
            "actor": {"id": "svc", "kind": "service"}, "source": {"channel": "api", "application": "crm"},
            "details": {"note": note},
        });
        let r = self.events.ingest(&[e], None, &Submitter { principal: "test".into() }).await.unwrap();
        let entry = self.ledger.entry(r[0].seq).await.unwrap().unwrap();
        let v = self.events.view(&entry, false).await.unwrap();
        v.details.unwrap()["note"].as_str().unwrap().to_owned()
    }

    /// (action, outcome, details) of every policy step recorded.
    async fn steps(&self) -> Vec<(String, String, Value)> {
        let head = self.ledger.head().await.unwrap().seq;
        let mut out = Vec::new();
        for seq in 1..=head {
            let e = self.ledger.entry(seq).await.unwrap().unwrap();
            if e.header.fields.action.starts_with("custos.policy.") {
                let v = self.events.view(&e, false).await.unwrap();
                out.push((v.action, v.outcome, v.details.unwrap_or(Value::Null)));
            }
        }
        out
    }

    async fn done(mut self) {
        self.ledger.shutdown(self.tasks.take().unwrap()).await.unwrap();
    }
}

/// The default masking rules with e-mail addresses redacted.
fn redact_email(store: &PolicyStore) -> Value {
    let k = store.kinds().find(|k| k.name() == "masking").unwrap();
    let mut doc = k.defaults();
    for r in doc["rules"].as_array_mut().unwrap() {
        if r["detector"] == "email" {
            r["action"] = json!({"type": "redact"});
            r["keep_original"] = json!(false);
        }
    }
    doc
}

fn proposal(content: Value, based_on: u64) -> NewProposal {
    NewProposal { content: Some(content), based_on, reason: "e-mail addresses are not needed".into(), restores: None }
}

async fn same_trail(env: &Env, store: &PolicyStore) {
    let kinds: Vec<_> = store.kinds().cloned().collect();
    let proven = trail::rebuild(&env.events, &kinds).await.unwrap();
    let stored = store.versions("masking", None, 200).await.unwrap();
    let stored: Vec<_> = stored.iter().filter(|v| v.version > 0).rev().collect();
    let masking = proven.get("masking").cloned().unwrap_or_default();
    assert_eq!(masking.len(), stored.len(), "{masking:?}");
    for (p, s) in masking.iter().zip(stored) {
        assert_eq!((p.version, &p.sha256, &p.author, p.alone), (s.version, &s.sha256, &s.author, s.alone));
        let approvers: Vec<_> = s.approvers.iter().map(|a| a.principal.clone()).collect();
        assert_eq!(p.approvers, approvers);
        assert_eq!(p.proposal, s.proposal);
    }
}

both_backends! {
    async fn a_second_person_approves_and_new_events_follow_the_new_rule(backend: Backend) {
        let Some(env) = Env::new(backend).await else { return };
        let store = env.store(&[]).await;
        let (alice, alice_can) = env.person("alice", &["admin"]).await;
        let (bob, bob_can) = env.person("bob", &["admin"]).await;
        let (olivia, olivia_can) = env.person("olivia", &["compliance_officer"]).await;
        assert!(olivia_can.allows(Permission::PolicyRead) && !olivia_can.allows(Permission::PolicyManage));
        let before = env.ingest("reach me at carol@example.net").await;
        assert!(before.starts_with("reach me at pseu:"), "{before}");

        // A compliance officer may read but not propose.
        let doc = redact_email(&store);
        let refused = store.propose(&olivia, &olivia_can, "masking", proposal(doc.clone(), 0)).await.unwrap_err();
        assert!(matches!(refused, PolicyError::Forbidden(_)), "{refused}");
        let no_reason = NewProposal { reason: "  ".into(), ..proposal(doc.clone(), 0) };
        let refused = store.propose(&alice, &alice_can, "masking", no_reason).await.unwrap_err();
        assert!(matches!(&refused, PolicyError::Invalid(f) if f.path == "reason"), "{refused}");
        let bad = json!({"rules": [{"detector": "dna", "action": {"type": "redact"}}]});
        let refused = store.propose(&alice, &alice_can, "masking", proposal(bad, 0)).await.unwrap_err();
        assert!(matches!(&refused, PolicyError::Invalid(f) if f.path == "content.rules[0]"), "{refused}");

        let p = store.propose(&alice, &alice_can, "masking", proposal(doc.clone(), 0)).await.unwrap();
        assert_eq!((p.state.as_str(), p.based_on, p.approvals_needed), ("pending", 0, 1));
        assert!(p.diff.iter().any(|op| serde_json::to_value(op).unwrap()["path"].as_str().unwrap().contains("/action")));
        let test = p.test.clone().expect("a dry-run is attached");
        let email = test.rows.iter().find(|r| r.label.starts_with("email")).unwrap();
        assert_eq!((email.current, email.proposed, test.events), (1, 1, 1), "{test:?}");
        assert!(email.examples.is_empty(), "the stored record of a test has counts only");

        // The author cannot approve, nor activate alone while bob can; nothing recorded.
        let steps = env.steps().await.len();
        let own = store.decide(&alice, &alice_can, &p.id, Decision::Approve, "").await.unwrap_err();
        assert!(matches!(own, PolicyError::Forbidden(_)), "{own}");
        let alone = store.activate_alone(&alice, &alice_can, &p.id).await.unwrap_err();
        assert!(matches!(alone, PolicyError::Forbidden(_)), "{alone}");
        assert_eq!(env.steps().await.len(), steps, "refusals change nothing and are not policy steps");
        // A second proposal on a stale base is refused.
        let stale = store.propose(&bob, &bob_can, "masking", proposal(doc.clone(), 3)).await.unwrap_err();
        assert!(matches!(stale, PolicyError::Conflict(_)), "{stale}");

        let done = store.decide(&bob, &bob_can, &p.id, Decision::Approve, "ok by me").await.unwrap();
        assert_eq!((done.state.as_str(), done.version), ("approved", Some(1)));
        assert_eq!(env.events.policy().version, 1, "in force at once");
        assert_eq!(env.ingest("reach me at carol@example.net").await, "reach me at [email]");
        let v1 = store.version("masking", 1).await.unwrap();
        assert_eq!((v1.author_name.as_str(), v1.approvers[0].name.as_str(), v1.alone), ("alice", "bob", false));
        assert_eq!(v1.sha256, custos_engine::policies::patch::sha256_hex(&doc));
        let again = store.decide(&bob, &bob_can, &p.id, Decision::Approve, "").await.unwrap_err();
        assert!(matches!(again, PolicyError::Conflict(_)), "{again}");

        // A rollback: a proposal whose content is version 0's.
        let back = NewProposal { content: None, based_on: 1, reason: "back to the defaults".into(), restores: Some(0) };
        let r = store.propose(&bob, &bob_can, "masking", back).await.unwrap();
        store.decide(&alice, &alice_can, &r.id, Decision::Approve, "").await.unwrap();
        let v2 = store.version("masking", 2).await.unwrap();
        assert_eq!((v2.restores, &v2.sha256), (Some(0), &store.version("masking", 0).await.unwrap().sha256));
        let actions: Vec<String> = env.steps().await.into_iter().map(|(a, _, _)| a).collect();
        for a in ["custos.policy.proposed", "custos.policy.tested", "custos.policy.approved", "custos.policy.activated", "custos.policy.rolled_back"] {
            assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
        }
        let report = env.events.compliance(24).await.unwrap();
        let reviewed = report.checks.iter().find(|c| c.id == "policy_changes_reviewed").unwrap();
        assert_eq!(reviewed.status, custos_engine::events::model::CheckStatus::Pass, "{}", reviewed.detail);
        assert!(reviewed.detail.contains("2 policy changes"), "{}", reviewed.detail);
        let diff = store.diff("masking", 0, 1).await.unwrap();
        assert_eq!(custos_engine::policies::patch::apply(&diff.before, &diff.patch).unwrap(), diff.after);
        same_trail(&env, &store).await;

        // The database keeps versions and decided proposals as they are.
        let conn = env.ledger.db().conn();
        for sql in [
            "UPDATE policy_versions SET reason = 'x' WHERE kind = 'masking'",
            "DELETE FROM policy_versions",
            "UPDATE policy_proposals SET state = 'pending'",
            "DELETE FROM policy_proposals",
            "INSERT INTO policy_versions (kind, version, content, sha256, author, author_name, approvers, alone, reason, ledger_seq, created_at) \
             VALUES ('masking', 3, '{}', 'x', 'a', 'a', '[]', 0, 'forged', 1, 1)",
            "INSERT INTO masking_policy_versions (version, rules, created_at, created_by) VALUES (9, '[]', 1, 'x')",
        ] {
            assert!(conn.execute_unprepared(sql).await.is_err(), "refused: {sql}");
        }
        assert_eq!(store.active("masking").await.unwrap().version, 2);
        env.done().await;
    }
}

both_backends! {
    async fn rejection_expiry_and_the_lone_admin(backend: Backend) {
        let Some(env) = Env::new(backend).await else { return };
        let store = env.store(&[]).await;
        let (alice, alice_can) = env.person("alice", &["admin"]).await;
        let doc = redact_email(&store);

        // Alone on a fresh installation: the author activates, recorded as such.
        let p = store.propose(&alice, &alice_can, "masking", proposal(doc.clone(), 0)).await.unwrap();
        let done = store.activate_alone(&alice, &alice_can, &p.id).await.unwrap();
        assert!(done.alone && done.state == "approved");
        let activated = env.steps().await.into_iter().find(|(a, _, _)| a == "custos.policy.activated").unwrap();
        assert_eq!(activated.2["alone"], true);
        assert!(store.version("masking", 1).await.unwrap().alone);
        let report = env.events.compliance(24).await.unwrap();
        let reviewed = report.checks.iter().find(|c| c.id == "policy_changes_reviewed").unwrap();
        assert_eq!(reviewed.status, custos_engine::events::model::CheckStatus::Warn, "{}", reviewed.detail);
        assert!(reviewed.detail.contains("1 of 1 policy change"), "{}", reviewed.detail);

        // With a second approver, no longer.
        let (bob, bob_can) = env.person("bob", &["admin"]).await;
        let mut doc2 = doc.clone();
        doc2["rules"][1]["enabled"] = json!(false);
        let p = store.propose(&alice, &alice_can, "masking", proposal(doc2.clone(), 1)).await.unwrap();
        assert!(matches!(store.activate_alone(&alice, &alice_can, &p.id).await, Err(PolicyError::Forbidden(_))));
        let no_comment = store.decide(&bob, &bob_can, &p.id, Decision::Reject, "").await.unwrap_err();
        assert!(matches!(&no_comment, PolicyError::Invalid(f) if f.path == "comment"), "{no_comment}");
        let r = store.decide(&bob, &bob_can, &p.id, Decision::Reject, "cards must stay masked").await.unwrap();
        assert_eq!(r.state, "rejected");
        assert_eq!(r.decisions[0].comment, "cards must stay masked");
        assert!(matches!(store.decide(&bob, &bob_can, &p.id, Decision::Approve, "").await, Err(PolicyError::Conflict(_))));

        // A second account made after the proposal cannot be the second person.
        let p = store.propose(&alice, &alice_can, "masking", proposal(doc2.clone(), 1)).await.unwrap();
        env.clock.advance_us(1_000);
        let (late_account, late_can) = env.person("mallory", &["admin"]).await;
        let refused = store.decide(&late_account, &late_can, &p.id, Decision::Approve, "").await.unwrap_err();
        assert!(matches!(&refused, PolicyError::Forbidden(m) if m.contains("created after")), "{refused}");
        // Disabling the other approvers does not open the way alone.
        for name in ["bob", "mallory"] {
            env.identity.set_disabled(&Acting::system(Channel::Cli), name, true).await.unwrap();
        }
        let alone = store.activate_alone(&alice, &alice_can, &p.id).await.unwrap_err();
        assert!(matches!(&alone, PolicyError::Forbidden(m) if m.contains("when it was proposed")), "{alone}");
        env.identity.set_disabled(&Acting::system(Channel::Cli), "bob", false).await.unwrap();
        // A proposal whose base is no longer in force cannot be approved.
        let q = store.propose(&alice, &alice_can, "masking", proposal(doc.clone(), 1)).await.unwrap_err();
        assert!(matches!(&q, PolicyError::Invalid(f) if f.path == "content"), "the same as in force: {q}");
        let mut doc3 = doc2.clone();
        doc3["rules"][2]["enabled"] = json!(false);
        let other = store.propose(&alice, &alice_can, "masking", proposal(doc3, 1)).await.unwrap();
        store.decide(&bob, &bob_can, &p.id, Decision::Approve, "").await.unwrap();
        let stale = store.decide(&bob, &bob_can, &other.id, Decision::Approve, "").await.unwrap_err();
        assert!(matches!(&stale, PolicyError::Conflict(m) if m.contains("in force now")), "{stale}");

        // Its author may withdraw a proposal; nobody else may.
        let mut doc5 = doc.clone();
        doc5["rules"][3]["enabled"] = json!(false);
        let w = store.propose(&alice, &alice_can, "masking", proposal(doc5, 2)).await.unwrap();
        assert!(matches!(store.withdraw(&bob, &w.id, "").await, Err(PolicyError::Forbidden(_))));
        let gone = store.withdraw(&alice, &w.id, "not needed after all").await.unwrap();
        assert_eq!((gone.state.as_str(), gone.decisions.last().unwrap().decision.as_str()), ("withdrawn", "withdrawn"));
        assert!(matches!(store.decide(&bob, &bob_can, &w.id, Decision::Approve, "").await, Err(PolicyError::Conflict(_))));
        assert!(env.steps().await.iter().any(|(a, _, d)| a == "custos.policy.withdrawn" && d["proposal"] == w.id.as_str()));

        // Expiry: seven days later the proposal is gone.
        let p = store.propose(&alice, &alice_can, "masking", proposal(doc.clone(), 2)).await.unwrap();
        env.clock.advance_us(7 * DAY_US);
        let late = store.decide(&bob, &bob_can, &p.id, Decision::Approve, "").await.unwrap_err();
        assert!(matches!(late, PolicyError::Gone(_)), "{late}");
        assert_eq!(store.proposal(&p.id).await.unwrap().state, "expired");
        assert_eq!(store.expire_due().await.unwrap(), 2, "this one and the stale one");
        assert_eq!(store.expire_due().await.unwrap(), 0);
        let expired: Vec<_> = env.steps().await.into_iter().filter(|(a, _, _)| a == "custos.policy.expired").collect();
        assert!(expired.iter().any(|e| e.2["proposal"] == p.id.as_str()), "{expired:?}");
        assert_eq!(store.active("masking").await.unwrap().version, 2, "nothing changed");
        same_trail(&env, &store).await;
        env.done().await;
    }
}

both_backends! {
    async fn two_approvals_each_counted_once_and_a_race_makes_one_version(backend: Backend) {
        let Some(env) = Env::new(backend).await else { return };
        let two = ReviewRule { approvals: 2, ..ReviewRule::default() };
        let store = env.store(&[("masking", two)]).await;
        let rule_set = env.steps().await.into_iter().find(|(a, _, _)| a == "custos.policy.rule_set").unwrap();
        assert_eq!(rule_set.2["approvals"], 2, "a configured rule is recorded");
        let (alice, alice_can) = env.person("alice", &["admin"]).await;
        let (bob, bob_can) = env.person("bob", &["admin"]).await;
        let (carol, carol_can) = env.person("carol", &["admin"]).await;
        let (dave, dave_can) = env.person("dave", &["admin"]).await;
        let doc = redact_email(&store);
        let p = store.propose(&alice, &alice_can, "masking", proposal(doc.clone(), 0)).await.unwrap();
        let one = store.decide(&bob, &bob_can, &p.id, Decision::Approve, "").await.unwrap();
        assert_eq!((one.state.as_str(), one.decisions.len()), ("pending", 1));
        let twice = store.decide(&bob, &bob_can, &p.id, Decision::Approve, "").await.unwrap_err();
        assert!(matches!(twice, PolicyError::Conflict(_)), "{twice}");

        // Two replicas' stores take the last approval at once: one version.
        let other = env.store(&[("masking", two)]).await;
        let (x, y) = tokio::join!(
            store.decide(&carol, &carol_can, &p.id, Decision::Approve, ""),
            other.decide(&dave, &dave_can, &p.id, Decision::Approve, ""),
        );
        assert!(x.is_ok() != y.is_ok(), "exactly one wins: {x:?} {y:?}");
        let lost = x.err().or(y.err()).unwrap();
        assert!(matches!(lost, PolicyError::Conflict(_)), "{lost}");
        assert_eq!(store.versions("masking", None, 10).await.unwrap().len(), 2, "version 1 and the defaults");
        assert_eq!(store.proposal(&p.id).await.unwrap().decisions.len(), 2);
        same_trail(&env, &store).await;

        // Another replica (its own events service over the same database)
        // takes the new version at its next refresh.
        let replica_events = Arc::new(
            Events::open(env.ledger.clone(), custos_engine::events::validate::Limits::default()).await.unwrap(),
        );
        let replica = PolicyStore::open(replica_events.clone(), env.identity.clone(), &BTreeMap::new()).await.unwrap();
        assert_eq!(replica_events.policy().version, 1);
        let mut doc4 = redact_email(&store);
        doc4["rules"][3]["enabled"] = json!(false);
        let p = store.propose(&alice, &alice_can, "masking", proposal(doc4, 1)).await.unwrap();
        store.decide(&carol, &carol_can, &p.id, Decision::Approve, "").await.unwrap();
        store.decide(&bob, &bob_can, &p.id, Decision::Approve, "").await.unwrap();
        assert_eq!(env.events.policy().version, 2, "in force at once here");
        assert_eq!(replica_events.policy().version, 1, "not yet on the other replica");
        replica.refresh().await.unwrap();
        assert_eq!(replica_events.policy().version, 2, "taken at its refresh");

        // Two replicas closing the same expired proposal: one records it.
        let mut doc5 = redact_email(&store);
        doc5["rules"][2]["enabled"] = json!(false);
        let late = store.propose(&alice, &alice_can, "masking", proposal(doc5, 2)).await.unwrap();
        env.clock.advance_us(8 * DAY_US);
        let (a, b) = tokio::join!(store.expire_due(), other.expire_due());
        assert_eq!(a.unwrap() + b.unwrap(), 1);
        let steps = env.steps().await;
        let expired: Vec<_> = steps.iter().filter(|(a, _, d)| a == "custos.policy.expired" && d["proposal"] == late.id.as_str()).collect();
        assert_eq!(expired.len(), 1, "{expired:?}");
        assert!(expired[0].1 == "success" && !steps.iter().any(|(a, o, _)| a == "custos.policy.expired" && o == "error"));
        env.done().await;
    }
}

both_backends! {
    async fn the_masking_dry_run_counts_with_the_live_masker_and_shows_nothing_hidden(backend: Backend) {
        let Some(env) = Env::new(backend).await else { return };
        let store = env.store(&[]).await;
        let (alice, alice_can) = env.person("alice", &["admin"]).await;
        env.ingest("mail ada@example.org or bob@example.org").await;
        env.ingest("call +44 20 7946 0958").await;
        let report = store.test(&alice, &alice_can, "masking", &redact_email(&store), None).await.unwrap();
        assert_eq!(report.events, 2, "own events (user creation, the test's record) are left out");
        let email = report.rows.iter().find(|r| r.label.starts_with("email")).unwrap();
        assert_eq!((email.current, email.proposed), (2, 2), "counted on the kept originals");
        assert!(email.examples.is_empty(), "stored pseudonymized: the originals are never shown: {email:?}");
        let text = serde_json::to_string(&report).unwrap();
        assert!(!text.contains("ada@example.org") && !text.contains("7946"), "nothing the policy hides: {text}");
        let phone = report.rows.iter().find(|r| r.label.starts_with("phone")).unwrap();
        assert_eq!(phone.proposed, 1);

        // A policy that leaves e-mail addresses in clear (alone: nobody else can approve).
        let mut off = redact_email(&store);
        for r in off["rules"].as_array_mut().unwrap() {
            if r["detector"] == "email" {
                r["enabled"] = json!(false);
            }
        }
        let p = store.propose(&alice, &alice_can, "masking", proposal(off.clone(), 0)).await.unwrap();
        store.activate_alone(&alice, &alice_can, &p.id).await.unwrap();
        assert_eq!(env.ingest("write to carol@example.net").await, "write to carol@example.net", "stored in clear");
        let report = store.test(&alice, &alice_can, "masking", &redact_email(&store), None).await.unwrap();
        let email = report.rows.iter().find(|r| r.label.starts_with("email")).unwrap();
        assert_eq!((email.current, email.proposed), (0, 3));
        assert_eq!(email.examples.len(), 1, "{email:?}");
        assert_eq!((email.examples[0].before.as_str(), email.examples[0].after.as_str()), ("carol@example.net", "[email]"));
        let text = serde_json::to_string(&report).unwrap();
        assert!(!text.contains("ada@example.org"), "kept originals are still never shown: {text}");
        let tested = env.steps().await.into_iter().filter(|(a, _, _)| a == "custos.policy.tested").collect::<Vec<_>>();
        assert!(tested.len() >= 3, "each test is recorded (and each proposal's)");
        assert!(!tested.iter().any(|t| t.2.to_string().contains("examples")), "the records hold counts only");
        env.done().await;
    }
}

both_backends! {
    /// Masking versions saved before the store are taken in with their
    /// ledger entries, show in the trail, and the trail rebuilt from the
    /// ledger still equals the store; an activation recorded without its
    /// version (the process stopped between the two) is found at start-up
    /// and recorded as failed; floods of proposals are bounded.
    async fn legacy_versions_orphaned_activations_and_floods(backend: Backend) {
        use custos_engine::events::own::{OwnAction, OwnEvent};
        let Some(env) = Env::new(backend).await else { return };
        // A masking version saved the old way: its event, then its row.
        let rules = redact_email(&PolicyStore::open(env.events.clone(), env.identity.clone(), &BTreeMap::new()).await.unwrap())["rules"].clone();
        let old = OwnEvent::new(OwnAction::MaskingPolicyUpdate, custos_engine::events::own::cli_operator(), Channel::Cli)
            .resource("masking_policy", Some("1".into()))
            .details(json!({ "version": 1, "previous": 0, "rules": rules, "comment": "before the store" }));
        env.events.record_own(old).await.unwrap();
        let conn = env.ledger.db().conn();
        let drop = match backend {
            Backend::Postgres => "DROP TRIGGER masking_versions_need_policy ON masking_policy_versions",
            _ => "DROP TRIGGER masking_versions_need_policy",
        };
        conn.execute_unprepared(drop).await.unwrap();
        let rows: Vec<custos_engine::events::model::MaskRule> = serde_json::from_value(rules).unwrap();
        let tx = conn.begin().await.unwrap();
        custos_engine::events::Events::insert_masking_version(&tx, 1, &rows, T0, "command line", "before the store").await.unwrap();
        tx.commit().await.unwrap();

        // An activation recorded without its version.
        let by = Requester::custos("test");
        let orphan = OwnEvent::new(OwnAction::PolicyStep("custos.policy.activated"), by.actor.clone(), Channel::System)
            .resource("policy", Some("masking".into()))
            .details(json!({ "kind": "masking", "version": 2, "sha256": "x", "diff": [] }));
        let orphan = env.events.record_own(orphan).await.unwrap();
        env.clock.advance_us(10 * 60 * 1_000_000);

        let store = env.store(&[]).await;
        let v1 = store.version("masking", 1).await.unwrap();
        assert_eq!((v1.proposal.as_deref(), v1.reason.as_str(), v1.author_name.as_str()), (None, "before the store", "command line"));
        assert_eq!(env.events.policy().version, 1);
        let failed = env.steps().await.into_iter().find(|(a, o, _)| a == "custos.policy.activated" && o == "error").unwrap();
        assert_eq!(failed.2["recorded_as"], orphan.event_id.to_string());
        let trail = store
            .trail(&custos_engine::policies::TrailQuery { pairs: vec![("kind".into(), "masking".into())], applications: true })
            .await
            .unwrap();
        assert!(trail.items.iter().any(|t| t.action == "policy.masking.update" && t.step == "activated" && t.kind == "masking"), "{:?}", trail.items);
        same_trail(&env, &store).await;

        // A new version on top of the imported one, and the rebuild still agrees.
        let (alice, alice_can) = env.person("alice", &["admin"]).await;
        let p = store.propose(&alice, &alice_can, "masking", proposal(store.version("masking", 0).await.unwrap().content, 1)).await.unwrap();
        store.activate_alone(&alice, &alice_can, &p.id).await.unwrap();
        assert_eq!(store.active("masking").await.unwrap().version, 2);
        same_trail(&env, &store).await;

        // At most ten waiting proposals per person and kind.
        let mut doc = redact_email(&store);
        for i in 0..10 {
            doc["rules"][1]["action"] = json!({"type": "partial", "keep_last": i % 5});
            doc["rules"][1]["enabled"] = json!(i < 5);
            store.propose(&alice, &alice_can, "masking", proposal(doc.clone(), 2)).await.unwrap();
        }
        let flood = store.propose(&alice, &alice_can, "masking", proposal(redact_email(&store), 2)).await.unwrap_err();
        assert!(matches!(&flood, PolicyError::Conflict(m) if m.contains("at most 10")), "{flood}");
        // The trail without audit:read shows the store's own steps only.
        let own_only = store
            .trail(&custos_engine::policies::TrailQuery { pairs: vec![("source".into(), "applications".into())], applications: false })
            .await;
        assert!(matches!(own_only, Err(PolicyError::Forbidden(_))));
        env.done().await;
    }
}

both_backends! {
    /// Alert rules are a policy kind: the built-in pack is version 0, a
    /// change is tried on history by the evaluator that runs live, and only
    /// holders of alert:manage propose.
    async fn alert_rules_are_a_kind_tested_on_history(backend: Backend) {
        let Some(env) = Env::new(backend).await else { return };
        let store = env.store(&[]).await;
        let (sam, sam_can) = env.person("sam", &["security_analyst"]).await;
        let (olivia, olivia_can) = env.person("olivia", &["compliance_officer"]).await;
        let at = custos_engine::time::rfc3339(env.clock.now_us());
        let failure = json!({
            "occurred_at": at, "category": "authentication", "action": "user.login", "outcome": "failure",
            "actor": {"id": "mallory", "kind": "user", "ip": "198.51.100.9"}, "source": {"channel": "ui", "application": "portal"},
        });
        for _ in 0..6 {
            env.events.ingest(std::slice::from_ref(&failure), None, &Submitter { principal: "test".into() }).await.unwrap();
        }
        let defaults = store.version("alert_rules", 0).await.unwrap();
        assert!(defaults.summary.starts_with("11 of 11 rule(s) enabled"), "{}", defaults.summary);
        let mut doc = defaults.content.clone();
        doc["rules"][0]["enabled"] = json!(false);
        let report = store.test(&sam, &sam_can, "alert_rules", &doc, None).await.unwrap();
        let brute = report.rows.iter().find(|r| r.label.starts_with("Brute force")).unwrap();
        assert_eq!((brute.current, brute.proposed), (1, 0), "{report:?}");
        assert!(report.events >= 6);
        let refused = store.test(&olivia, &olivia_can, "alert_rules", &doc, None).await.unwrap_err();
        assert!(matches!(refused, PolicyError::Forbidden(_)), "alert:manage is needed");
        let mut twice = defaults.content.clone();
        twice["rules"][1]["id"] = json!("brute_force");
        let e = store.propose(&sam, &sam_can, "alert_rules", proposal(twice, 0)).await.unwrap_err();
        assert!(matches!(&e, PolicyError::Invalid(f) if f.path == "content.rules[1].id"), "{e}");
        let mut bad = defaults.content.clone();
        bad["rules"][0]["severity"] = json!("urgent");
        let e = store.propose(&sam, &sam_can, "alert_rules", proposal(bad, 0)).await.unwrap_err();
        assert!(matches!(&e, PolicyError::Invalid(f) if f.path == "content.rules[0].severity"), "{e}");
        let p = store.propose(&sam, &sam_can, "alert_rules", proposal(doc, 0)).await.unwrap();
        assert_eq!(p.state, "pending");
        assert!(p.test.unwrap().rows.iter().any(|r| r.label.starts_with("Brute force") && r.current == 1 && r.proposed == 0));
        env.done().await;
    }
}
