//! Crash safety and multiple processes, with the real `custos` binary.

use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use custos_engine::clock::{OsRandom, SystemClock};
use custos_engine::keys::{KekError, KekProvider};
use custos_engine::ledger::crypto::Kek;
use custos_engine::ledger::verify::{self, VerifyScope};
use custos_engine::ledger::{Ledger, LedgerConfig, store};
use custos_engine::storage::{Database, PoolOptions};
use secrecy::SecretString;

use crate::support::{Backend, both_backends, fresh_postgres, postgres_admin_url};

struct TestKek([u8; 32]);

impl std::fmt::Debug for TestKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestKek")
    }
}

impl KekProvider for TestKek {
    fn describe(&self) -> String {
        "test key".into()
    }
    fn load(&self) -> Result<Kek, KekError> {
        Ok(Kek::from_bytes(&self.0))
    }
}

fn kek_b64(kek: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(kek)
}

fn ingest(url: &str, kek: &[u8; 32], dir: &Path, events: u64, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["bench", "ingest", "--no-baseline", "--no-verify", "--concurrency", "8", "--request-size", "50"])
        .args(["--events", &events.to_string(), "--database", url])
        .args(extra)
        .env("CUSTOS_KEK", kek_b64(kek))
        .env("CUSTOS_DATA_DIR", dir)
        .env("CUSTOS_LOG__FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn complete_lines(path: &Path) -> Vec<(u64, uuid::Uuid)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The last line may have been cut by the kill.
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| {
            let (seq, id) = l.split_once(' ').unwrap();
            (seq.parse().unwrap(), id.parse().unwrap())
        })
        .collect()
}

async fn open(url: &str, kek: [u8; 32]) -> (Ledger, custos_engine::ledger::LedgerTasks) {
    let db = Database::connect(&SecretString::from(url.to_owned()), &PoolOptions::default()).await.unwrap();
    let cfg = LedgerConfig { origin: "custos.bench/ledger".into(), ..LedgerConfig::default() };
    Ledger::open(db, &TestKek(kek), cfg, Arc::new(SystemClock), Arc::new(OsRandom)).await.unwrap()
}

both_backends! {
    async fn a_sigkilled_process_loses_no_acknowledged_event_and_the_chain_continues(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}/crash.db", dir.path().display()),
            Backend::Postgres => match fresh_postgres().await { Some(u) => u, None => return },
        };
        let kek = [0x33u8; 32];
        let acks = dir.path().join("acks.txt");
        let mut child = ingest(&url, &kek, dir.path(), 10_000_000, &["--stream", "--acks", acks.to_str().unwrap()]);
        let deadline = Instant::now() + Duration::from_secs(180);
        while complete_lines(&acks).len() < 20_000 {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("ingest exited early ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "ingest too slow to reach 20,000 events");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL, mid-ingest
        child.wait().unwrap();
        let acked = complete_lines(&acks);
        assert!(acked.len() >= 20_000);

        // Restart: start-up verifies the tail, then every acknowledged event is there.
        let (ledger, tasks) = open(&url, kek).await;
        let head = ledger.head().await.unwrap();
        let max_acked = acked.iter().map(|(s, _)| *s).max().unwrap();
        assert!(head.seq >= max_acked, "head {} is behind an acknowledged seq {max_acked}", head.seq);
        for chunk in acked.chunks(4096) {
            let first = chunk.iter().map(|(s, _)| *s).min().unwrap();
            let last = chunk.iter().map(|(s, _)| *s).max().unwrap();
            let stored = store::read_entries(ledger.db().conn(), first, last, last - first + 1).await.unwrap();
            let ids: std::collections::HashMap<u64, uuid::Uuid> =
                stored.iter().map(|e| (e.header.seq, e.header.event_id)).collect();
            for (seq, id) in chunk {
                assert_eq!(ids.get(seq), Some(id), "acknowledged event seq {seq} is missing or different");
            }
        }
        // The chain continues gapless and the whole ledger verifies.
        let r = ledger.append_one(custos_server::commands::sample_event(1)).await.unwrap();
        assert_eq!(r.seq, head.seq + 1);
        ledger.checkpoint_now().await.unwrap();
        let report = verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {})
            .await
            .unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.entries_checked, head.seq + 1);
        ledger.shutdown(tasks).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_appending_to_one_postgres_database_make_one_gapless_chain() {
    if postgres_admin_url().is_none() {
        return;
    }
    let url = fresh_postgres().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kek = [0x44u8; 32];
    // Both start on an empty database and race to create the keys, then append.
    let mut a = ingest(&url, &kek, dir.path(), 15_000, &["--existing-ok"]);
    let mut b = ingest(&url, &kek, dir.path(), 15_000, &["--existing-ok"]);
    for child in [&mut a, &mut b] {
        let status = child.wait().unwrap();
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        assert!(status.success(), "an ingest process failed: {err}");
    }
    let (ledger, tasks) = open(&url, kek).await;
    assert_eq!(ledger.head().await.unwrap().seq, 30_000);
    ledger.checkpoint_now().await.unwrap();
    let report = verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {})
        .await
        .unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.entries_checked, report.macs_checked), (30_000, 30_000));
    ledger.shutdown(tasks).await.unwrap();
}
