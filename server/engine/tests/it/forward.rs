//! SIEM forwarding with real receivers: rsyslog over mutual TLS (Debian's
//! rsyslog and rsyslog-gnutls, certificates made for the test) receiving
//! RFC 5425 frames, a local HTTP server speaking Splunk's HEC protocol
//! (with indexer acknowledgement), and a webhook receiver checking the
//! HMAC signature of gzipped NDJSON. Every event arrives, by seq without
//! gaps, through receivers going down and coming back, a replica dying
//! without a word (its lease lapses and another resumes at the cursor), a
//! crash between a send and the cursor's save, a pause and a replay;
//! checkpoints go out too; CEF is read back by an independent parser
//! (pycef), OCSF checked against the OCSF schema. Also: UDP (cut at its
//! cap) and plain TCP; an event a receiver refuses alone passed over, a
//! receiver refusing everything failing.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use custos_engine::clock::{Clock as _, ManualClock, OsRandom};
use custos_engine::events::model::{Actor, Channel};
use custos_engine::events::{Events, Requester, Submitter};
use custos_engine::forward::{Forwarder, Settings};
use custos_engine::identity::service::{Acting, Identity, IdentitySettings, NewUser};
use custos_engine::ledger::Ledger;
use custos_engine::policies::review::ReviewRule;
use custos_engine::policies::{NewProposal, PolicyStore};
use custos_engine::time::SECOND_US;
use hmac::{Hmac, KeyInit as _, Mac as _};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::support::{Got, KEK, TestDb, both_backends, config, http_receiver, http_receiver_holding};

const T0: i64 = 1_800_000_000_000_000;
const HEC_TOKEN: &str = "11111111-2222-3333-4444-555555555555";
const HOOK_SECRET: &str = "a webhook signing secret";

/// rsyslog listening for RFC 5425 over TLS, requiring a client certificate
/// from the test CA; stopped when dropped.
struct Rsyslog {
    child: Option<std::process::Child>,
    dir: PathBuf,
    port: u16,
}

impl Rsyslog {
    fn start(dir: &Path, port: u16) -> Rsyslog {
        let conf = dir.join("rsyslog.conf");
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                r#"global(workDirectory="{d}"
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile="{d}/ca.pem"
  DefaultNetstreamDriverCertFile="{d}/server.pem"
  DefaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="x509/certvalid")
input(type="imtcp" port="{port}")
template(name="raw" type="string" string="%rawmsg%\n")
*.* action(type="omfile" file="{d}/received.log" template="raw")
"#
            ),
        )
        .unwrap();
        let child = std::process::Command::new("/usr/sbin/rsyslogd")
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the syslog tests need /usr/sbin/rsyslogd with rsyslog-gnutls (make test-tools installs them)");
        // Listening within a few seconds.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Rsyslog { child: Some(child), dir: dir.to_owned(), port }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("rsyslogd.pid"));
    }

    /// The messages received so far (rsyslog writes them out a little later).
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("received.log")).unwrap_or_default().lines().map(str::to_owned).collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The seq (an event) or tree size (a checkpoint) in an RFC 5424
/// message's structured data.
fn syslog_seq(line: &str) -> Option<(u64, bool)> {
    let checkpoint = line.contains(" custos.checkpoint [");
    let key = if checkpoint { "tree_size=\"" } else { " seq=\"" };
    let at = line.find(key)? + key.len();
    let seq = line[at..].split('"').next()?.parse().ok()?;
    Some((seq, checkpoint))
}

/// Events (by seq) and checkpoints (by tree size) in the records a receiver got.
#[derive(Debug, Default)]
struct Received {
    events: Vec<u64>,
    checkpoints: Vec<u64>,
}

impl Received {
    fn push(&mut self, v: &Value) {
        if v["type"] == "custos.checkpoint"
            || v["unmapped"]["custos_type"] == "custos.checkpoint"
            || v["custos"]["type"] == "custos.checkpoint"
        {
            self.checkpoints.push(
                v["tree_size"]
                    .as_u64()
                    .or(v["unmapped"]["tree_size"].as_u64())
                    .or(v["custos"]["tree_size"].as_u64())
                    .unwrap(),
            );
        } else if let Some(s) =
            v["unmapped"]["custos_seq"].as_u64().or(v["event"]["sequence"].as_u64()).or(v["seq"].as_u64())
        {
            self.events.push(s);
        } else {
            panic!("a record without its seq: {v}");
        }
    }

    /// Every seq in `1..=head` at least once, in order of first arrival;
    /// answers how many arrived twice.
    fn complete(&self, head: u64, what: &str) -> u64 {
        let mut first = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for s in &self.events {
            if seen.insert(*s) {
                first.push(*s);
            }
        }
        assert_eq!(first, (1..=head).collect::<Vec<_>>(), "{what}: every event, in order, without a gap");
        self.events.len() as u64 - first.len() as u64
    }
}

/// Every record the webhook got (OCSF), as received.
fn hook_values(got: &[Got]) -> Vec<Value> {
    let mut out = Vec::new();
    for g in got {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&g.body[..]).read_to_string(&mut text).unwrap();
        out.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    out
}

fn hook_records(got: &[Got]) -> Received {
    let mut r = Received::default();
    for g in got {
        let ts = &g.headers["x-custos-timestamp"];
        let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(HOOK_SECRET.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(&g.body);
        assert_eq!(
            g.headers["x-custos-signature"],
            format!("v1={}", hex::encode(mac.finalize().into_bytes())),
            "signed over the gzipped body"
        );
        assert_eq!(g.headers["content-encoding"], "gzip");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&g.body[..]).read_to_string(&mut text).unwrap();
        for line in text.lines() {
            r.push(&serde_json::from_str(line).unwrap());
        }
    }
    r
}

fn hec_records(got: &[Got]) -> Received {
    let mut r = Received::default();
    for g in got.iter().filter(|g| g.line.contains("/services/collector/event")) {
        assert_eq!(g.headers["authorization"], format!("Splunk {HEC_TOKEN}"));
        assert!(uuid::Uuid::parse_str(&g.headers["x-splunk-request-channel"]).is_ok());
        let body = String::from_utf8(g.body.clone()).unwrap();
        for line in body.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["sourcetype"], "custos:audit");
            r.push(&v["event"]);
            if v["event"]["event"]["kind"] == "event" {
                assert_eq!(v["fields"]["custos_seq"], v["event"]["event"]["sequence"], "seq in the HEC fields too");
            }
        }
    }
    r
}

fn syslog_records(lines: &[String]) -> Received {
    let mut r = Received::default();
    for l in lines {
        let (seq, checkpoint) = syslog_seq(l).unwrap_or_else(|| panic!("not an RFC 5424 message with our SD: {l}"));
        assert!(l.starts_with('<') && l.contains(">1 "), "{l}");
        if checkpoint {
            r.checkpoints.push(seq);
        } else {
            assert!(l.contains("CEF:0|Custos|Custos|"), "{l}");
            r.events.push(seq);
        }
    }
    r
}

/// A ledger on a manual clock, its events and policy store (forwarding
/// changes take effect without approval), and `sam`, a siem_manager.
struct World {
    clock: Arc<ManualClock>,
    ledger: Ledger,
    tasks: custos_engine::ledger::LedgerTasks,
    events: Arc<Events>,
    store: Arc<PolicyStore>,
    sam: Requester,
    held: custos_engine::identity::permission::PermissionSet,
}

async fn world(t: &TestDb) -> World {
    let clock = Arc::new(ManualClock::new(T0));
    let (ledger, tasks) = Ledger::open(t.db.clone(), &KEK, config(), clock.clone(), Arc::new(OsRandom)).await.unwrap();
    let events = Arc::new(Events::open(ledger.clone(), Default::default()).await.unwrap());
    let identity = Arc::new(
        Identity::new(events.clone(), clock.clone(), Arc::new(OsRandom), IdentitySettings::default()).await.unwrap(),
    );
    let rules: BTreeMap<String, ReviewRule> =
        [("forwarding".to_owned(), ReviewRule { approvals: 0, ..ReviewRule::default() })].into();
    let store = Arc::new(PolicyStore::open(events.clone(), identity.clone(), &rules).await.unwrap());
    let id = identity
        .create_user(
            &Acting::system(Channel::Cli),
            NewUser {
                username: "sam".into(),
                email: None,
                display_name: None,
                password: SecretString::from("a long enough password".to_owned()),
                roles: vec!["siem_manager".into()],
                must_change_password: false,
            },
        )
        .await
        .unwrap();
    let held = identity.principal(id).await.unwrap().unwrap().permissions;
    let sam = Requester::new(
        Actor {
            id: id.to_string(),
            kind: "user".into(),
            name: Some("sam".into()),
            ip: None,
            user_agent: None,
            session_id: None,
        },
        Channel::Ui,
        None,
    );
    World { clock, ledger, tasks, events, store, sam, held }
}

async fn actions(ledger: &Ledger, events: &Events, prefix: &str) -> Vec<String> {
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
    async fn every_event_reaches_rsyslog_hec_and_a_webhook_in_order_through_outages_crashes_and_replays(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let pki = tempfile::tempdir().unwrap();
        let script = custos_testkit::repo_file("scripts/test-pki.sh");
        assert!(std::process::Command::new(script).arg(pki.path()).status().unwrap().success(), "the test PKI");
        let pem = |f: &str| std::fs::read_to_string(pki.path().join(f)).unwrap();
        let mut rsyslog = Rsyslog::start(pki.path(), free_port());

        // The webhook: 503 while down.
        let hook_down = Arc::new(AtomicBool::new(false));
        let d = hook_down.clone();
        let (hook_url, hook_got) = http_receiver(move |_| {
            if d.load(Ordering::SeqCst) { ("503 Service Unavailable", String::new(), false) } else { ("200 OK", String::new(), true) }
        })
        .await;
        // The HEC: an ackId per batch, acknowledged when asked.
        let next_ack = Arc::new(AtomicU64::new(0));
        let acked: Arc<Mutex<BTreeMap<u64, bool>>> = Arc::default();
        let (n, a) = (next_ack.clone(), acked.clone());
        let hec_hold = Arc::new(AtomicU64::new(0));
        let (hec_url, hec_got) = http_receiver_holding(hec_hold.clone(), move |g| {
            if g.headers.get("authorization").map(String::as_str) != Some(&format!("Splunk {HEC_TOKEN}")) {
                return ("401 Unauthorized", r#"{"text":"Invalid token","code":4}"#.into(), false);
            }
            if g.line.contains("/services/collector/ack") {
                let asked: Value = serde_json::from_slice(&g.body).unwrap();
                let acks: serde_json::Map<String, Value> = asked["acks"].as_array().unwrap().iter()
                    .map(|id| (id.to_string(), json!(a.lock().unwrap().get(&id.as_u64().unwrap()).copied().unwrap_or(false))))
                    .collect();
                return ("200 OK", json!({"acks": acks}).to_string(), true);
            }
            let id = n.fetch_add(1, Ordering::SeqCst);
            a.lock().unwrap().insert(id, true);
            ("200 OK", json!({"text": "Success", "code": 0, "ackId": id}).to_string(), true)
        })
        .await;

        let World { clock, ledger, tasks, events, store, sam, held } = world(&t).await;
        let doc = json!({"destinations": [
            {"id": "rsyslog", "name": "rsyslog", "type": "syslog", "format": "cef", "host": "127.0.0.1", "port": rsyslog.port,
             "transport": "tls", "ca_pem": pem("ca.pem"), "server_name": "localhost",
             "client_cert_pem": pem("client.pem"), "client_key": {"value": pem("client.key")},
             "batch_size": 40, "batch_interval_ms": 0, "start": "beginning"},
            {"id": "splunk", "name": "Splunk", "type": "splunk_hec", "format": "ecs", "url": hec_url,
             "token": {"value": HEC_TOKEN}, "hec_ack": true, "batch_size": 70, "batch_interval_ms": 0, "start": "beginning"},
            {"id": "vector", "name": "Vector", "type": "webhook", "format": "ocsf", "url": format!("{hook_url}/in"),
             "body": "ndjson", "gzip": true, "auth": "hmac", "secret": {"value": HOOK_SECRET},
             "batch_size": 100, "batch_interval_ms": 0, "start": "beginning"}
        ]});
        let p = store
            .propose(&sam, &held, "forwarding", NewProposal { content: Some(doc), restores: None, based_on: 0, reason: "to the SOC".into() })
            .await
            .unwrap();
        assert_eq!(p.version, Some(1));
        let stored = store.active("forwarding").await.unwrap().content.to_string();
        for secret in [HEC_TOKEN, HOOK_SECRET, "PRIVATE KEY"] {
            assert!(!stored.contains(secret), "secrets are sealed before they are stored: {secret}");
        }

        let by = Submitter { principal: "test".into() };
        let ingest = |n: usize, tag: &'static str| {
            let events = events.clone();
            let by = by.clone();
            async move {
                for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
                    let items: Vec<Value> = chunk.iter().map(|i| json!({
                        "occurred_at": "2027-01-15T08:00:00Z", "category": "authentication", "action": "user.login",
                        "outcome": if i % 3 == 0 { "failure" } else { "success" }, "severity": "notice",
                        "reason": "pipe | and equals = and backslash \\",
                        "actor": {"id": format!("{tag}-{i}"), "kind": "user", "ip": "198.51.100.7"},
                        "source": {"channel": "api", "application": "portal"},
                    })).collect();
                    events.ingest(&items, None, &by).await.unwrap();
                }
            }
        };
        let settings = Settings { retry_base_us: SECOND_US, allow_private: true };
        let fwd = Arc::new(Forwarder::new(events.clone(), store.clone(), "replica-a", settings.clone()));
        // Runs passes until every destination is at the head (rsyslog
        // writes what it received a little later).
        async fn drain(fwd: &Arc<Forwarder>, ledger: &Ledger, clock: &ManualClock) {
            for _ in 0..400 {
                fwd.run_once().await.unwrap();
                let head = ledger.head().await.unwrap().seq;
                let s = fwd.status().await.unwrap();
                if s.destinations.iter().all(|d| d.cursor == Some(head) && d.failures == 0) {
                    return;
                }
                clock.advance_us(SECOND_US / 4);
                // Syslog batches are confirmed a while (real time) after
                // they were written.
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            panic!("the destinations did not catch up: {:?}", fwd.status().await.unwrap());
        }
        async fn settle(r: &Rsyslog, head: u64) -> Vec<String> {
            for _ in 0..100 {
                let lines = r.lines();
                if syslog_records(&lines).events.contains(&head) {
                    return lines;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            r.lines()
        }

        ingest(150, "a").await;
        ledger.checkpoint_now().await.unwrap();
        drain(&fwd, &ledger, &clock).await;
        let head = ledger.head().await.unwrap().seq;
        let cp = ledger.latest_checkpoint().await.unwrap().unwrap().tree_size;
        let lines = settle(&rsyslog, head).await;
        assert_eq!(syslog_records(&lines).complete(head, "rsyslog"), 0);
        assert_eq!(hec_records(&hec_got.lock().unwrap()).complete(head, "hec"), 0);
        assert_eq!(hook_records(&hook_got.lock().unwrap()).complete(head, "webhook"), 0);
        for (what, cps) in [
            ("rsyslog", syslog_records(&lines).checkpoints),
            ("hec", hec_records(&hec_got.lock().unwrap()).checkpoints),
            ("webhook", hook_records(&hook_got.lock().unwrap()).checkpoints),
        ] {
            assert!(cps.contains(&cp), "{what} got the signed checkpoint of size {cp}: {cps:?}");
        }
        assert!(hec_got.lock().unwrap().iter().any(|g| g.line.contains("/services/collector/ack")), "acks were polled");

        // CEF read back by an independent parser.
        let cef: Vec<String> = lines.iter().filter(|l| l.contains("|user.login|")).take(20)
            .map(|l| l[l.find("CEF:").unwrap()..].to_owned()).collect();
        let python = std::env::var("CUSTOS_TEST_PYTHON").unwrap_or_else(|_| {
            format!("{}/.cache/custos/pyvenv/bin/python", std::env::var("HOME").unwrap_or_default())
        });
        let out = std::process::Command::new(&python)
            .args(["-c", "import json, sys, pycef\nfor l in sys.stdin.read().splitlines():\n    print(json.dumps(pycef.parse(l)))"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(cef.join("\n").as_bytes())?;
                c.wait_with_output()
            })
            .unwrap_or_else(|e| panic!("{python} with pycef (make test-tools installs it): {e}"));
        let parsed: Vec<Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(parsed.len(), cef.len(), "pycef parses every message");
        for p in &parsed {
            assert_eq!(p["DeviceVendor"], "Custos");
            assert_eq!(p["DeviceEventClassID"], "user.login");
            // pycef splits on unescaped `=` and keeps escapes as written.
            assert_eq!(p["reason"], r"pipe | and equals \= and backslash \\", "the value whole: {p}");
            assert!(p["seq"].as_str().unwrap().parse::<u64>().is_ok(), "cn1 under its label: {p}");
            assert!(matches!(p["outcome"].as_str(), Some("failure" | "success")) && p["application"] == "portal", "{p}");
        }

        // OCSF checked against the OCSF schema (compiled by ocsf-lib from
        // PyPI, trimmed: scripts/ocsf-trim.py): logins (3002), account and
        // policy changes (3001, 3004), Custos's own records and checkpoints
        // (base event).
        let ocsf: Vec<Value> = hook_values(&hook_got.lock().unwrap());
        let classes: std::collections::BTreeSet<u64> = ocsf.iter().filter_map(|v| v["class_uid"].as_u64()).collect();
        for c in [0, 3001, 3002, 3004] {
            assert!(classes.contains(&c), "class {c} among the records: {classes:?}");
        }
        let out = std::process::Command::new("/usr/bin/python3")
            .arg(custos_testkit::repo_file("scripts/ocsf-check.py"))
            .arg(custos_testkit::repo_file("server/engine/tests/it/vectors/ocsf-schema.json"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                let lines: Vec<String> = ocsf.iter().map(Value::to_string).collect();
                c.stdin.take().unwrap().write_all(lines.join("\n").as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "every OCSF record conforms: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        // Receivers down: the webhook answers 503, rsyslog is stopped.
        hook_down.store(true, Ordering::SeqCst);
        rsyslog.stop();
        ingest(120, "b").await;
        for _ in 0..6 {
            fwd.run_once().await.unwrap();
            clock.advance_us(3 * SECOND_US);
        }
        let s = fwd.status().await.unwrap();
        let by_id = |id: &str| s.destinations.iter().find(|d| d.id == id).unwrap().clone();
        assert_eq!(by_id("vector").state, "failing");
        assert!(by_id("vector").last_error.unwrap().contains("503"));
        assert_eq!(by_id("rsyslog").state, "failing");
        assert!(by_id("rsyslog").lag_events > 0);
        assert_eq!(by_id("splunk").state, "ok", "one destination down does not hold the others");
        let failed = actions(&ledger, &events, "custos.forward.failed").await;
        assert_eq!(failed.len(), 2, "one record per destination going down, not per try: {failed:?}");
        // Back: everything arrives, in order.
        hook_down.store(false, Ordering::SeqCst);
        let rsyslog = Rsyslog::start(pki.path(), rsyslog.port);
        clock.advance_us(600 * SECOND_US);
        drain(&fwd, &ledger, &clock).await;
        assert_eq!(actions(&ledger, &events, "custos.forward.recovered").await.len(), 2);

        // A replica dies without a word (no release): its leases lapse and
        // another resumes at the saved cursors.
        drop(fwd);
        ingest(80, "c").await;
        let fwd = Arc::new(Forwarder::new(events.clone(), store.clone(), "replica-b", settings.clone()));
        fwd.run_once().await.unwrap();
        let s = fwd.status().await.unwrap();
        assert!(s.destinations.iter().all(|d| d.holder.as_deref() == Some("replica-a")), "not before the lease lapses");
        clock.advance_us(16 * SECOND_US);
        drain(&fwd, &ledger, &clock).await;
        let s = fwd.status().await.unwrap();
        assert!(s.destinations.iter().all(|d| d.holder.as_deref() == Some("replica-b")), "{s:?}");

        // Paused: nothing goes out; resumed: everything does.
        fwd.set_paused(&sam, "vector", true, Some("SIEM maintenance".into())).await.unwrap();
        let before = hook_got.lock().unwrap().len();
        ingest(30, "d").await;
        for _ in 0..4 {
            fwd.run_once().await.unwrap();
        }
        assert_eq!(hook_got.lock().unwrap().len(), before, "nothing while paused");
        assert_eq!(fwd.status().await.unwrap().destinations.iter().find(|d| d.id == "vector").unwrap().state, "paused");
        fwd.set_paused(&sam, "vector", false, None).await.unwrap();
        drain(&fwd, &ledger, &clock).await;

        let head = ledger.head().await.unwrap().seq;
        let lines = settle(&rsyslog, head).await;
        let dup_syslog = syslog_records(&lines).complete(head, "rsyslog after the outage");
        let dup_hec = hec_records(&hec_got.lock().unwrap()).complete(head, "hec after the takeover");
        let dup_hook = hook_records(&hook_got.lock().unwrap()).complete(head, "webhook after the outage");
        // The cursor is saved after every batch: a clean takeover repeats nothing.
        assert_eq!((dup_hec, dup_hook), (0, 0));
        assert!(dup_syslog <= 40, "at most one batch again after the syslog server died: {dup_syslog}");

        // A crash between a send and the cursor's save: the collector took
        // a batch and has not answered when the replica dies. Another
        // resumes at the saved cursor: the batch arrives again (a repeat
        // receivers drop by id and seq), nothing is lost.
        hec_hold.store(4000, Ordering::SeqCst);
        let before = hec_got.lock().unwrap().len();
        ingest(25, "e").await;
        fwd.step().await.unwrap();
        for _ in 0..200 {
            if hec_got.lock().unwrap().len() > before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(hec_got.lock().unwrap().len() > before, "the collector took the batch");
        fwd.abort();
        hec_hold.store(0, Ordering::SeqCst);
        let fwd = Arc::new(Forwarder::new(events.clone(), store.clone(), "replica-c", settings.clone()));
        clock.advance_us(16 * SECOND_US);
        drain(&fwd, &ledger, &clock).await;
        let head = ledger.head().await.unwrap().seq;
        let repeats = hec_records(&hec_got.lock().unwrap()).complete(head, "hec after a crash mid-send");
        assert!((1..=70).contains(&repeats), "the batch cut off arrived again, once: {repeats}");

        // A replay sends it all again from a position, checkpoints too.
        ledger.checkpoint_now().await.unwrap();
        drain(&fwd, &ledger, &clock).await;
        let cps_before = hec_records(&hec_got.lock().unwrap()).checkpoints.len();
        let from = fwd.replay(&sam, "splunk", Some(10), None, "the SIEM was restored").await.unwrap();
        assert_eq!(from, 10);
        assert!(fwd.replay(&sam, "splunk", Some(head + 100), None, "x").await.is_err(), "beyond the head");
        assert!(fwd.replay(&sam, "splunk", Some(5), None, " ").await.is_err(), "a reason is required");
        let before = hec_records(&hec_got.lock().unwrap()).events.len();
        drain(&fwd, &ledger, &clock).await;
        let again = hec_records(&hec_got.lock().unwrap()).events[before..].to_vec();
        assert_eq!(again.first(), Some(&10), "from seq 10");
        assert!(again.windows(2).all(|w| w[1] == w[0] + 1), "in order, without a gap");
        assert!(*again.last().unwrap() >= head, "up to the head");
        assert!(hec_records(&hec_got.lock().unwrap()).checkpoints.len() > cps_before, "checkpoints sent again");
        // A replay only goes back (never skips what was not sent).
        fwd.set_paused(&sam, "splunk", true, None).await.unwrap();
        ingest(5, "g").await;
        let at = fwd.status().await.unwrap().destinations.iter().find(|d| d.id == "splunk").unwrap().cursor.unwrap();
        let err = fwd.replay(&sam, "splunk", Some(at + 2), None, "forward").await.unwrap_err();
        assert!(err.to_string().contains("goes back"), "{err}");
        fwd.set_paused(&sam, "splunk", false, None).await.unwrap();
        assert!(fwd.replay(&sam, "splunk", None, Some("2020-01-01T00:00:00Z"), "from a time").await.is_ok());
        drain(&fwd, &ledger, &clock).await;
        let steps = actions(&ledger, &events, "custos.forward.").await;
        for a in ["custos.forward.paused", "custos.forward.resumed", "custos.forward.replayed"] {
            assert!(steps.iter().any(|s| s == a), "{a} recorded: {steps:?}");
        }

        // A test event, recorded and sent at once.
        let test = fwd.test(&sam, "rsyslog").await.unwrap();
        assert!(test.delivered, "{test:?}");
        let lines = settle(&rsyslog, test.seq).await;
        assert!(lines.iter().any(|l| l.contains(&format!("seq=\"{}\"", test.seq)) && l.contains("custos.forward.tested")));

        // Compliance: every destination delivering.
        let report = events.compliance(24).await.unwrap();
        let siem = report.checks.iter().find(|c| c.id == "siem_forwarding").unwrap();
        assert_eq!(siem.status, custos_model::CheckStatus::Pass, "{}", siem.detail);

        // A syslog destination without the client certificate rsyslog
        // requires: the server drops the connection after taking the
        // write; nothing counts as delivered, the destination is failing,
        // and compliance says so.
        let mut doc = store.active("forwarding").await.unwrap().content;
        doc["destinations"].as_array_mut().unwrap().push(json!({
            "id": "nocert", "name": "rsyslog without a client certificate", "type": "syslog", "format": "leef",
            "host": "127.0.0.1", "port": rsyslog.port, "transport": "tls", "ca_pem": pem("ca.pem"),
            "server_name": "localhost", "batch_interval_ms": 0
        }));
        let v = store.active_version("forwarding").await.unwrap();
        store
            .propose(&sam, &held, "forwarding", NewProposal { content: Some(doc), restores: None, based_on: v, reason: "one more".into() })
            .await
            .unwrap();
        // It starts at the head ("now"), then has events to send.
        fwd.run_once().await.unwrap();
        ingest(10, "f").await;
        for _ in 0..12 {
            fwd.run_once().await.unwrap();
            clock.advance_us(2 * SECOND_US);
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        }
        let s = fwd.status().await.unwrap();
        let nocert = s.destinations.iter().find(|d| d.id == "nocert").unwrap();
        assert_eq!(nocert.state, "failing", "{nocert:?}");
        assert_eq!(nocert.delivered, 0, "{nocert:?}");
        let report = events.compliance(24).await.unwrap();
        let siem = report.checks.iter().find(|c| c.id == "siem_forwarding").unwrap();
        assert_eq!(siem.status, custos_model::CheckStatus::Warn, "failing, not yet for an hour: {}", siem.detail);
        assert!(siem.detail.contains("rsyslog without a client certificate"), "{}", siem.detail);
        // Still failing an hour later: a failure.
        for _ in 0..13 {
            clock.advance_us(300 * SECOND_US);
            fwd.run_once().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        }
        let report = events.compliance(24).await.unwrap();
        let siem = report.checks.iter().find(|c| c.id == "siem_forwarding").unwrap();
        assert_eq!(siem.status, custos_model::CheckStatus::Fail, "{}", siem.detail);
        assert!(siem.detail.contains("rsyslog without a client certificate"), "{}", siem.detail);

        // No secret ever went into the ledger.
        let head = ledger.head().await.unwrap().seq;
        for seq in 1..=head {
            let e = ledger.entry(seq).await.unwrap().unwrap();
            let v = serde_json::to_string(&events.view(&e, true).await.unwrap()).unwrap();
            assert!(!v.contains(HEC_TOKEN) && !v.contains(HOOK_SECRET) && !v.contains("PRIVATE KEY"), "{v}");
        }
        // The state rows are kept.
        use sea_orm::ConnectionTrait as _;
        let conn = t.db.conn();
        let sql = |s: &str| sea_orm::Statement::from_string(conn.get_database_backend(), s.to_owned());
        assert!(conn.execute_raw(sql("DELETE FROM forward_state")).await.is_err());
        fwd.release(std::time::Duration::from_secs(5)).await;
        assert!(clock.now_us() > T0);
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn syslog_over_udp_cuts_long_messages_and_plain_tcp_frames_them(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        // A UDP receiver (one datagram per message) and a plain TCP one
        // (octet-counted frames).
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let udp_port = udp.local_addr().unwrap().port();
        let datagrams: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let d = datagrams.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 70_000];
            while let Ok((n, _)) = udp.recv_from(&mut buf).await {
                d.lock().unwrap().push(buf[..n].to_vec());
            }
        });
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp_port = tcp.local_addr().unwrap().port();
        let stream: Arc<Mutex<Vec<u8>>> = Arc::default();
        let s = stream.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            while let Ok((mut c, _)) = tcp.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65_536];
                    while let Ok(n) = c.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        s.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });

        let World { clock, ledger, tasks, events, store, sam, held } = world(&t).await;
        let doc = json!({"destinations": [
            {"id": "udp", "name": "UDP", "type": "syslog", "format": "json", "host": "127.0.0.1", "port": udp_port,
             "transport": "udp", "udp_max_bytes": 480, "batch_interval_ms": 0, "checkpoints": false},
            {"id": "tcp", "name": "TCP", "type": "syslog", "format": "leef", "host": "127.0.0.1", "port": tcp_port,
             "transport": "tcp", "batch_interval_ms": 0, "filter": "category=authentication&outcome=failure"}
        ]});
        store
            .propose(&sam, &held, "forwarding", NewProposal { content: Some(doc), restores: None, based_on: 0, reason: "udp and tcp".into() })
            .await
            .unwrap();
        let fwd = Arc::new(Forwarder::new(events.clone(), store.clone(), "replica-a", Settings { retry_base_us: SECOND_US, allow_private: true }));
        fwd.run_once().await.unwrap();
        let by = Submitter { principal: "test".into() };
        let items: Vec<Value> = (0..30).map(|i| json!({
            "occurred_at": "2027-01-15T08:00:00Z", "category": "authentication", "action": "user.login",
            "outcome": if i % 2 == 0 { "failure" } else { "success" },
            "actor": {"id": format!("u{i}"), "kind": "user"}, "source": {"channel": "api", "application": "portal"},
            "details": {"padding": "x".repeat(if i == 3 { 2000 } else { 10 })},
        })).collect();
        let receipts = events.ingest(&items, None, &by).await.unwrap();
        for _ in 0..40 {
            fwd.run_once().await.unwrap();
            clock.advance_us(SECOND_US / 4);
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let status = fwd.status().await.unwrap();
        let head = ledger.head().await.unwrap().seq;
        assert!(status.destinations.iter().all(|d| d.cursor == Some(head)), "{status:?}");

        // UDP: every event in a datagram of at most 480 bytes; the long one cut, and counted.
        let got = datagrams.lock().unwrap().clone();
        assert!(got.iter().all(|g| g.len() <= 480));
        let seqs: Vec<u64> = got
            .iter()
            .filter_map(|g| {
                let m = String::from_utf8_lossy(g).to_string();
                let at = m.find(" seq=\"")? + 6;
                m[at..].split('"').next()?.parse().ok()
            })
            .collect();
        for r in &receipts {
            assert!(seqs.contains(&r.seq), "seq {} arrived over UDP", r.seq);
        }
        let udp = status.destinations.iter().find(|d| d.id == "udp").unwrap();
        assert!(udp.truncated >= 1, "{udp:?}");

        // TCP: octet-counted frames, the filter applied (failed sign-ins only).
        let bytes = stream.lock().unwrap().clone();
        let mut frames = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let sp = at + bytes[at..].iter().position(|b| *b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&bytes[at..sp]).unwrap().parse().unwrap();
            frames.push(String::from_utf8(bytes[sp + 1..sp + 1 + len].to_vec()).unwrap());
            at = sp + 1 + len;
        }
        let framed: Vec<u64> = frames.iter().filter_map(|f| syslog_seq(f)).filter(|(_, c)| !c).map(|(s, _)| s).collect();
        let failures: Vec<u64> = receipts.iter().step_by(2).map(|r| r.seq).collect();
        assert_eq!(framed, failures, "only the failed sign-ins, in order");
        assert!(frames.iter().all(|f| f.contains("LEEF:2.0|Custos|Custos|")));
        fwd.release(std::time::Duration::from_secs(5)).await;
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn an_event_a_receiver_refuses_alone_is_passed_over_and_recorded_but_a_receiver_refusing_all_is_failing(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        // A webhook refusing (400) any batch holding a poisoned event; a
        // second one refusing everything.
        let (hook_url, hook_got) = http_receiver(|g| {
            if String::from_utf8_lossy(&g.body).contains("poison") {
                ("400 Bad Request", String::new(), false)
            } else {
                ("200 OK", String::new(), true)
            }
        })
        .await;
        let (wall_url, wall_got) = http_receiver(|_| ("400 Bad Request", String::new(), false)).await;
        let World { clock, ledger, tasks, events, store, sam, held } = world(&t).await;
        let doc = json!({"destinations": [
            {"id": "picky", "name": "Picky", "type": "webhook", "url": format!("{hook_url}/in"), "auth": "none",
             "body": "ndjson", "batch_interval_ms": 0, "checkpoints": false, "filter": "action=doc.read"},
            {"id": "wall", "name": "Wall", "type": "webhook", "url": format!("{wall_url}/in"), "auth": "none",
             "batch_interval_ms": 0, "checkpoints": false, "filter": "action=doc.read"}
        ]});
        store
            .propose(&sam, &held, "forwarding", NewProposal { content: Some(doc), restores: None, based_on: 0, reason: "picky".into() })
            .await
            .unwrap();
        let fwd = Arc::new(Forwarder::new(events.clone(), store.clone(), "replica-a", Settings { retry_base_us: SECOND_US, allow_private: true }));
        fwd.run_once().await.unwrap();
        let by = Submitter { principal: "test".into() };
        let event = |i: usize| json!({
            "occurred_at": "2027-01-15T08:00:00Z", "category": "data_access", "action": "doc.read", "outcome": "success",
            "actor": {"id": format!("u{i}"), "kind": "user"}, "source": {"channel": "api", "application": "portal"},
            "details": {"note": if i == 17 { "poison" } else { "fine" }},
        });
        // Some delivered first (a record the receiver took before), then
        // one poisoned among others.
        let first = events.ingest(&(0..5).map(event).collect::<Vec<_>>(), None, &by).await.unwrap();
        for _ in 0..4 {
            fwd.run_once().await.unwrap();
            clock.advance_us(SECOND_US);
        }
        let rest = events.ingest(&(5..40).map(event).collect::<Vec<_>>(), None, &by).await.unwrap();
        for _ in 0..60 {
            fwd.run_once().await.unwrap();
            clock.advance_us(SECOND_US);
        }
        let poisoned = rest[12].seq;
        let got: Vec<u64> = hook_got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|g| String::from_utf8_lossy(&g.body).lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_u64().unwrap()).collect::<Vec<_>>())
            .collect();
        let mut want: Vec<u64> = first.iter().chain(rest.iter()).map(|r| r.seq).filter(|s| *s != poisoned).collect();
        want.sort();
        let mut seen: Vec<u64> = got.clone();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, want, "every event but the poisoned one");
        assert!(!got.contains(&poisoned));
        let skipped = actions(&ledger, &events, "custos.forward.skipped").await;
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        let s = fwd.status().await.unwrap();
        let picky = s.destinations.iter().find(|d| d.id == "picky").unwrap();
        assert_eq!(picky.state, "ok", "{picky:?}");
        // Refusing everything: failing, nothing passed over.
        let wall = s.destinations.iter().find(|d| d.id == "wall").unwrap();
        assert_eq!(wall.state, "failing", "{wall:?}");
        assert!(wall_got.lock().unwrap().is_empty());
        assert!(wall.cursor.unwrap() < first[0].seq, "nothing moved past: {wall:?}");
        fwd.release(std::time::Duration::from_secs(5)).await;
        ledger.shutdown(tasks).await.unwrap();
    }
}
