//! Notifications with real receivers: an HTTP server on a local port (the
//! webhook; it can be made to answer 503, as a receiver that is down) and
//! the aiosmtpd SMTP sink requiring a password. Alerts are queued once per
//! channel, delivered, signed so the receiver can verify, retried with
//! backoff while the receiver is down and delivered when it returns,
//! dead-lettered after the give-up time; every attempt is logged, and
//! failures, dead letters and tests are ledger events. Secrets are sealed
//! before the policy is stored.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use custos_engine::alerts::rules::{Firing, builtin_rules};
use custos_engine::alerts::silences::NewSilence;
use custos_engine::alerts::store::Alerts;
use custos_engine::clock::{Clock as _, ManualClock, OsRandom};
use custos_engine::events::model::{Actor, Channel};
use custos_engine::events::{Events, Requester};
use custos_engine::identity::service::{Acting, Identity, IdentitySettings, NewUser};
use custos_engine::ledger::Ledger;
use custos_engine::notify::{LogQuery, Notifier, Settings};
use custos_engine::policies::review::ReviewRule;
use custos_engine::policies::{NewProposal, PolicyStore};
use custos_engine::time::SECOND_US;
use custos_testkit::smtp::SmtpSink;
use hmac::{Hmac, KeyInit as _, Mac as _};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::{Got, KEK, TestDb, both_backends, config, http_receiver};

const T0: i64 = 1_800_000_000_000_000;
const WEBHOOK_SECRET: &str = "a webhook secret of some length";
const SMTP_PASSWORD: &str = "the smtp password";

/// The webhook: answers 200, or 503 while `down`.
async fn receiver() -> (String, Arc<Mutex<Vec<Got>>>, Arc<AtomicBool>) {
    let down = Arc::new(AtomicBool::new(false));
    let d = down.clone();
    let (base, got) = http_receiver(move |_| {
        if d.load(Ordering::SeqCst) {
            ("503 Service Unavailable", String::new(), false)
        } else {
            ("200 OK", String::new(), true)
        }
    })
    .await;
    (format!("{base}/hooks/custos"), got, down)
}

fn signature_ok(secret: &str, headers: &BTreeMap<String, String>, body: &[u8]) -> bool {
    let ts = &headers["x-custos-timestamp"];
    let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(body);
    headers["x-custos-signature"] == format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn steps(ledger: &Ledger, events: &Events, prefix: &str) -> Vec<String> {
    let head = ledger.head().await.unwrap().seq;
    let mut out = Vec::new();
    for seq in 1..=head {
        let e = ledger.entry(seq).await.unwrap().unwrap();
        if e.header.fields.action.starts_with(prefix) {
            out.push(events.view(&e, false).await.unwrap().action);
        }
    }
    out
}

both_backends! {
    async fn alerts_reach_a_webhook_and_a_mailbox_through_the_outbox_with_retries(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let sink = SmtpSink::start(SMTP_PASSWORD);
        let (url, got, down) = receiver().await;
        let clock = Arc::new(ManualClock::new(T0));
        let (ledger, tasks) = Ledger::open(t.db.clone(), &KEK, config(), clock.clone(), Arc::new(OsRandom)).await.unwrap();
        let events = Arc::new(Events::open(ledger.clone(), Default::default()).await.unwrap());
        let identity = Arc::new(
            Identity::new(events.clone(), clock.clone(), Arc::new(OsRandom), IdentitySettings::default()).await.unwrap(),
        );
        let rules: BTreeMap<String, ReviewRule> =
            [("notifications".to_owned(), ReviewRule { approvals: 0, ..ReviewRule::default() })].into();
        let store = Arc::new(PolicyStore::open(events.clone(), identity.clone(), &rules).await.unwrap());
        let alerts = Arc::new(Alerts::new(events.clone()));

        // Someone with notification:manage sets two channels and a route.
        let id = identity
            .create_user(&Acting::system(Channel::Cli), NewUser {
                username: "nora".into(), email: None, display_name: None,
                password: SecretString::from("a long enough password".to_owned()),
                roles: vec!["notification_manager".into()], must_change_password: false,
            })
            .await
            .unwrap();
        let held = identity.principal(id).await.unwrap().unwrap().permissions;
        let nora = Requester::new(
            Actor { id: id.to_string(), kind: "user".into(), name: Some("nora".into()), ip: None, user_agent: None, session_id: None },
            Channel::Ui,
            None,
        );
        let doc = json!({
            "channels": [
                {"id": "soar", "name": "SOAR", "type": "webhook", "url": url, "secret": {"value": WEBHOOK_SECRET}},
                {"id": "mail", "name": "SecOps mail", "type": "email", "to": ["secops@example.org"],
                 "from": "custos@example.org", "smtp_host": "127.0.0.1", "smtp_port": sink.port, "smtp_tls": "none",
                 "smtp_username": "custos", "smtp_password": {"value": SMTP_PASSWORD},
                 "subject": "[Custos] {severity}: {rule} for {group}"}
            ],
            "routes": [{"rules": ["*"], "channels": ["soar", "mail"]}]
        });
        let p = store
            .propose(&nora, &held, "notifications", NewProposal { content: Some(doc), restores: None, based_on: 0, reason: "tell secops".into() })
            .await
            .unwrap();
        assert_eq!(p.version, Some(1), "no approval needed under this rule");
        let stored = store.active("notifications").await.unwrap().content.to_string();
        assert!(!stored.contains(WEBHOOK_SECRET) && !stored.contains(SMTP_PASSWORD), "secrets are sealed: {stored}");
        assert!(stored.contains("\"hint\":\"…ngth\""), "{stored}");
        let head = ledger.head().await.unwrap().seq;
        for seq in 1..=head {
            let e = ledger.entry(seq).await.unwrap().unwrap();
            let v = serde_json::to_string(&events.view(&e, true).await.unwrap()).unwrap();
            assert!(!v.contains(WEBHOOK_SECRET) && !v.contains(SMTP_PASSWORD), "no secret in the ledger: {v}");
        }

        let settings = Settings {
            retry_base_us: 10 * SECOND_US,
            give_up_us: 120 * SECOND_US,
            public_url: Some("https://custos.example.org".into()),
            allow_private: true,
        };
        let mut notifier = Notifier::new(alerts.clone(), store.clone(), "replica-a", settings.clone());
        let rule = builtin_rules().into_iter().find(|r| r.id == "brute_force").unwrap();
        let mut seq = 1000;
        let mut open = |actor: &str| {
            seq += 10;
            Firing {
                rule: rule.id.clone(),
                group: [("actor".to_owned(), actor.to_owned())].into(),
                count: 5,
                seqs: vec![seq, seq - 1],
                at_us: clock.now_us(),
                new: true,
            }
        };

        // An alert goes to both channels, once.
        let a1 = alerts.on_firing(&open("mallory"), &rule, 0).await.unwrap().unwrap();
        let pass = notifier.step().await.unwrap();
        assert_eq!((pass.queued, pass.delivered, pass.failed), (2, 2, 0), "{pass:?}");
        assert_eq!(notifier.step().await.unwrap().queued, 0, "queued once");
        let Got { headers, body, .. } = got.lock().unwrap()[0].clone();
        assert!(signature_ok(WEBHOOK_SECRET, &headers, &body), "the receiver verifies the signature: {headers:?}");
        assert!(!signature_ok("another secret entirely", &headers, &body));
        assert_eq!(headers["idempotency-key"], format!("{}:soar", a1.id));
        let payload: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((payload["alert"]["id"].as_str(), payload["alert"]["group"]["actor"].as_str()), (Some(a1.id.as_str()), Some("mallory")));
        assert!(payload["link"].as_str().unwrap().starts_with("https://custos.example.org/events?"));
        let mails = sink.mails();
        assert_eq!(mails.len(), 1, "authenticated with the sealed password");
        assert!(mails[0].contains("Subject: [Custos] warning: Brute force") && mails[0].contains("actor mallory"), "{}", mails[0]);
        assert!(mails[0].contains("To: secops@example.org"));

        // A silence: the alert is opened and shown, not sent.
        let quiet = alerts
            .silence(&nora, NewSilence { rule: Some("brute_force".into()), group: [("actor".to_owned(), "quiet".to_owned())].into(), hours: 1, reason: "maintenance".into() })
            .await
            .unwrap();
        let q = alerts.on_firing(&open("quiet"), &rule, 0).await.unwrap().unwrap();
        assert_eq!(notifier.step().await.unwrap().queued, 0);
        assert_eq!(alerts.get(&q.id).await.unwrap().silenced_by, Some(quiet.id.clone()));
        assert!(alerts.silence(&nora, NewSilence { rule: None, group: BTreeMap::new(), hours: 1, reason: "all".into() }).await.is_err(), "not everything");
        assert!(alerts.silence(&nora, NewSilence { rule: Some("x".into()), group: BTreeMap::new(), hours: 0, reason: "r".into() }).await.is_err());
        let ended = alerts.end_silence(&nora, &quiet.id).await.unwrap();
        assert!(ended.ended_early);
        assert!(matches!(alerts.end_silence(&nora, &quiet.id).await, Err(custos_engine::alerts::store::AlertsError::Conflict(_))));

        // The receiver is down: the try fails, is logged and recorded, and
        // is retried after the backoff; nothing is lost.
        down.store(true, Ordering::SeqCst);
        let a2 = alerts.on_firing(&open("trudy"), &rule, 0).await.unwrap().unwrap();
        let pass = notifier.step().await.unwrap();
        assert_eq!((pass.delivered, pass.failed), (1, 1), "the mail goes, the webhook fails: {pass:?}");
        clock.advance_us(5 * SECOND_US);
        assert_eq!(notifier.step().await.unwrap().failed, 0, "not retried before its backoff");
        down.store(false, Ordering::SeqCst);
        clock.advance_us(6 * SECOND_US);
        let pass = notifier.step().await.unwrap();
        assert_eq!(pass.delivered, 1, "delivered when the receiver returns: {pass:?}");
        let log = notifier.log(&LogQuery { alert: Some(a2.id.clone()), channels: vec!["soar".into()], limit: 10, ..Default::default() }).await.unwrap();
        let tries: Vec<(u32, &str, Option<u16>)> = log.items.iter().map(|a| (a.attempt, a.status.as_str(), a.response_code)).collect();
        assert_eq!(tries, [(2, "delivered", Some(200)), (1, "failed", Some(503))]);
        assert_eq!(got.lock().unwrap().len(), 2);

        // Down for longer than the give-up time: dead, with the reason.
        down.store(true, Ordering::SeqCst);
        alerts.on_firing(&open("eve"), &rule, 0).await.unwrap().unwrap();
        notifier.step().await.unwrap();
        for _ in 0..4 {
            clock.advance_us(40 * SECOND_US);
            notifier.step().await.unwrap();
        }
        let dead = notifier.log(&LogQuery { statuses: vec!["dead".into()], limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(dead.items.len(), 1, "{dead:?}");
        assert!(dead.items[0].error.as_deref().unwrap().contains("503"));
        assert_eq!((dead.dead, dead.pending), (1, 0));
        down.store(false, Ordering::SeqCst);

        // Another replica does not deliver while this one holds the lease.
        let mut other = Notifier::new(alerts.clone(), store.clone(), "replica-b", settings.clone());
        assert!(!other.step().await.unwrap().held);

        // By default a channel may not reach this host (SSRF): refused,
        // and a failed test is not a message given up.
        let strict = Notifier::new(alerts.clone(), store.clone(), "replica-c", Settings { allow_private: false, ..settings.clone() });
        let refused = strict.test_channel(&nora, "soar").await.unwrap();
        assert_eq!(refused.status, "dead");
        assert!(refused.error.as_deref().unwrap().contains("private"), "{refused:?}");
        assert_eq!(notifier.log(&LogQuery { limit: 1, ..Default::default() }).await.unwrap().dead, 1, "tests are not counted");

        // Moving a sealed secret to another destination needs the secret
        // again: the sealed one does not open there.
        let mut moved = store.active("notifications").await.unwrap().content;
        moved["channels"][0]["url"] = json!("https://attacker.example.net/x");
        let e = store
            .propose(&nora, &held, "notifications", NewProposal { content: Some(moved), restores: None, based_on: 1, reason: "move it".into() })
            .await
            .unwrap_err();
        assert!(matches!(&e, custos_engine::policies::PolicyError::Invalid(f) if f.path == "content.channels[0].secret"), "{e:?}");

        // A channel's test, now, logged and recorded.
        let tried = notifier.test_channel(&nora, "soar").await.unwrap();
        assert_eq!((tried.status.as_str(), tried.response_code), ("delivered", Some(200)));
        assert!(matches!(notifier.test_channel(&nora, "nope").await, Err(custos_engine::alerts::store::AlertsError::NotFound(_))));
        let recorded = steps(&ledger, &events, "custos.notification.").await;
        assert_eq!(recorded.iter().filter(|s| *s == "custos.notification.failed").count(), 4, "{recorded:?}");
        assert_eq!(recorded.iter().filter(|s| *s == "custos.notification.dead").count(), 1);
        assert_eq!(recorded.last().map(String::as_str), Some("custos.notification.tested"));
        let alert_steps = steps(&ledger, &events, "custos.alert.").await;
        let at = |a: &str| alert_steps.iter().position(|s| s == a).unwrap();
        assert!(at("custos.alert.silenced") < at("custos.alert.unsilenced"), "{alert_steps:?}");
        assert_eq!(recorded.iter().filter(|s| *s == "custos.notification.tested").count(), 2);

        // The log is append-only.
        let conn = t.db.conn();
        let sql = |s: &str| sea_orm::Statement::from_string(conn.get_database_backend(), s.to_owned());
        use sea_orm::ConnectionTrait as _;
        assert!(conn.execute_raw(sql("UPDATE notification_attempts SET status = 'delivered'")).await.is_err());
        assert!(conn.execute_raw(sql("DELETE FROM notification_attempts")).await.is_err());
        assert!(conn.execute_raw(sql("DELETE FROM notification_outbox")).await.is_err());
        drop(sink);
        ledger.shutdown(tasks).await.unwrap();
    }
}
