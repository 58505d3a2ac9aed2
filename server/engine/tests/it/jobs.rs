//! Jobs seen from every replica: two registries (two processes' memories)
//! on one database, as two replicas behind a load balancer are.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use custos_engine::clock::{ManualClock, OsRandom};
use custos_engine::events::verification::Verifications;
use custos_engine::events::{Events, Requester};
use custos_engine::jobs::{JobKind, JobState, JobStore, Place, Registry, Snapshot};
use custos_engine::ledger::Ledger;
use custos_engine::ledger::verify::VerifyScope;
use sea_orm::ConnectionTrait;

use crate::support::{KEK, TestDb, both_backends, config, fill};

const T0: i64 = 1_800_000_000_000_000;

/// A job that counts to 7, then waits until it is cancelled.
struct Wait;

#[derive(Default)]
struct WaitProgress {
    n: AtomicU64,
    cancel: AtomicBool,
}

impl Snapshot for WaitProgress {
    fn save(&self) -> serde_json::Value {
        serde_json::json!({ "n": self.n.load(Ordering::Relaxed) })
    }
    fn load(saved: &serde_json::Value) -> WaitProgress {
        WaitProgress { n: AtomicU64::new(saved["n"].as_u64().unwrap_or_default()), cancel: AtomicBool::new(false) }
    }
    fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl JobKind for Wait {
    const KIND: &'static str = "test-wait";
    type Info = String;
    type Progress = WaitProgress;
    type Output = u64;
}

/// Polls `check` for up to 20 s (jobs' rows are updated every 2 s).
async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} within 20 s");
}

both_backends! {
    async fn jobs_run_on_one_replica_are_followed_and_cancelled_from_another(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let clock = Arc::new(ManualClock::new(T0));
        let (ledger, _tasks) = Ledger::open(t.db.clone(), &KEK, config(), clock.clone(), Arc::new(OsRandom)).await.unwrap();
        let events = Arc::new(Events::open(ledger.clone(), Default::default()).await.unwrap());
        fill(&ledger, 300, 100).await;
        let store = |name: &str| Some(JobStore::new(ledger.clone(), name));

        // A verification run on replica a: b answers its status from the row.
        let (va, vb) = (Verifications::new(store("replica-a")), Verifications::new(store("replica-b")));
        let who = Requester::custos("test");
        let (job, task) = va.start(events.clone(), VerifyScope::default(), who, ()).await;
        task.await.unwrap();
        let there = vb.get(job.id).await.unwrap().expect("replica b finds a's verification");
        assert_eq!(there.place, Place::Replica { name: "replica-a".into(), file_uri: None, ended_us_ago: there_ended(&there.place) });
        assert_eq!(there.state(), JobState::Done);
        let (here, there_report) = (job.outcome().unwrap().unwrap(), there.outcome().unwrap().unwrap());
        assert_eq!(there_report, here, "the same report on both replicas");
        assert!(here.is_intact() && here.entries_checked >= 300, "{here:?}");
        assert_eq!(there.progress.checked.load(Ordering::Relaxed), here.entries_checked);
        assert!(vb.get(uuid::Uuid::now_v7()).await.unwrap().is_none(), "no such job anywhere");

        // A running job on a: b sees its progress, only its owner may
        // cancel it from b, and a stops it at its next beat.
        let (ra, rb) = (Registry::<Wait>::new(10).shared(store("replica-a")), Registry::<Wait>::new(10).shared(store("replica-b")));
        let (job, task) = ra
            .spawn(None, "user:ann", "waiting".into(), (), |job| async move {
                job.progress.n.store(7, Ordering::Relaxed);
                while !job.progress.cancel.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err("cancelled".to_owned())
            })
            .await;
        let seen = rb.get(job.id).await.unwrap().expect("b finds the running job at once");
        assert_eq!((seen.state(), seen.info.as_str()), (JobState::Running, "waiting"));
        eventually("b sees the job's progress", async || {
            rb.get(job.id).await.unwrap().unwrap().progress.n.load(Ordering::Relaxed) == 7
        })
        .await;
        assert!(!rb.cancel("user:bob", job.id).await.unwrap(), "another user cannot cancel it");
        assert!(rb.get_owned("user:bob", job.id).await.unwrap().is_none(), "nor see it as theirs");
        assert!(rb.cancel("user:ann", job.id).await.unwrap(), "its owner can, from b");
        tokio::time::timeout(Duration::from_secs(20), task).await.expect("a stops the job at its next beat").unwrap();
        let ended = rb.get(job.id).await.unwrap().unwrap();
        assert_eq!((ended.state(), ended.outcome()), (JobState::Failed, Some(Err("cancelled".to_owned()))));
        assert!(!rb.cancel("user:ann", job.id).await.unwrap(), "an ended job cannot be cancelled");

        // A job that panics ends failed on every replica, and its row stops
        // being updated.
        let (broken, task) = ra
            .spawn(None, "user:ann", "broken".into(), (), |_| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                panic!("boom")
            })
            .await;
        assert!(task.await.is_err());
        eventually("b sees the panicked job failed", async || {
            rb.get(broken.id).await.unwrap().unwrap().state() == JobState::Failed
        })
        .await;
        let why = rb.get(broken.id).await.unwrap().unwrap().outcome().unwrap().unwrap_err();
        assert!(why.contains("stopped before its end"), "{why}");

        // A job whose replica died (its row no longer updated) is reported
        // failed once the row is older than the bound (the database's
        // clock, here the same machine's), naming the replica.
        let now_us = chrono::Utc::now().timestamp_micros();
        let (fresh, dead) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        for (id, at) in [(fresh, now_us), (dead, now_us - custos_engine::jobs::STALE_US - 2_000_000)] {
            t.db.conn()
                .execute_unprepared(&format!(
                    "INSERT INTO jobs (id, kind, owner, replica, info, progress, started_at, heartbeat_at) \
                     VALUES ('{id}', 'test-wait', 'user:ann', 'replica-c', '\"lost\"', '{{\"n\": 3}}', {at}, {at})"
                ))
                .await
                .unwrap();
        }
        let running = rb.get(fresh).await.unwrap().unwrap();
        assert_eq!((running.state(), running.progress.n.load(Ordering::Relaxed)), (JobState::Running, 3));
        // The ledger's clock (a manual one, here a year ahead) plays no part.
        clock.advance_us(365 * 86_400_000_000);
        assert_eq!(rb.get(fresh).await.unwrap().unwrap().state(), JobState::Running, "the database's clock decides");
        let stopped = rb.get(dead).await.unwrap().unwrap();
        assert_eq!(stopped.state(), JobState::Failed);
        let why = stopped.outcome().unwrap().unwrap_err();
        assert!(why.contains("replica-c stopped updating it"), "{why}");
    }
}

fn there_ended(place: &Place) -> Option<i64> {
    match place {
        Place::Replica { ended_us_ago, .. } => {
            assert!(ended_us_ago.is_some_and(|t| t >= 0), "the row says when it ended");
            *ended_us_ago
        }
        Place::Here => panic!("a job of another replica is not here"),
    }
}
