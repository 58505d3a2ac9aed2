//! The ledger's invariants, tried on real SQLite files and a real PostgreSQL.

use std::collections::HashSet;
use std::sync::Arc;

use custos_engine::clock::{OsRandom, SystemClock};
use custos_engine::ledger::merkle;
use custos_engine::ledger::verify::{self, VerifyScope};
use custos_engine::ledger::{Ledger, LedgerError};
use custos_engine::storage::DbKind;
use sea_orm::ConnectionTrait;

use crate::support::{StaticKek, TestDb, both_backends, config, event, fill, open_ledger};

async fn verify_all(ledger: &Ledger) -> verify::VerifyReport {
    verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {}).await.unwrap()
}

both_backends! {
    async fn concurrent_appends_get_gapless_seqs_and_verify(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        let mut handles = Vec::new();
        for task in 0..16u64 {
            let l = ledger.clone();
            handles.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..40u64 {
                    out.push(l.append_one(event(task * 1000 + i)).await.unwrap());
                }
                out
            }));
        }
        let mut seqs = Vec::new();
        for h in handles {
            seqs.extend(h.await.unwrap().into_iter().map(|r| r.seq));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=640).collect::<Vec<u64>>(), "every caller gets its own, gapless seq");
        let cp = ledger.checkpoint_now().await.unwrap().unwrap();
        assert_eq!(cp.tree_size, 640);
        let report = verify_all(&ledger).await;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!((report.entries_checked, report.macs_checked, report.verified_tree_size), (640, 640, Some(640)));
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn a_batch_commits_together_and_payloads_decrypt(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        let receipts = fill(&ledger, 1000, 1000).await;
        assert_eq!(receipts.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=1000).collect::<Vec<u64>>());
        assert!(receipts.iter().all(|r| r.recorded_at_us == receipts[0].recorded_at_us), "one commit, one time");
        let e = ledger.entry(500).await.unwrap().unwrap();
        let payload = ledger.open_payload(&e).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(v["correlation"]["request_id"], "req-000000000499");
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn retries_with_the_same_event_id_return_the_stored_result(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        let first = event(1);
        let r1 = ledger.append_one(first.clone()).await.unwrap();
        let r2 = ledger.append_one(first.clone()).await.unwrap();
        assert!(!r1.duplicate && r2.duplicate);
        assert_eq!((r1.seq, r1.recorded_at_us), (r2.seq, r2.recorded_at_us));
        // Twice within one batch, and alongside a committed duplicate.
        let second = event(2);
        let rs = ledger.append(vec![second.clone(), first.clone(), second.clone(), event(3)]).await.unwrap();
        assert_eq!(rs.iter().map(|r| (r.seq, r.duplicate)).collect::<Vec<_>>(), vec![(2, false), (1, true), (2, true), (3, false)]);
        // Concurrent retries race into the same or consecutive batches.
        let racer = event(4);
        let hs: Vec<_> = (0..8).map(|_| { let l = ledger.clone(); let e = racer.clone(); tokio::spawn(async move { l.append_one(e).await.unwrap() }) }).collect();
        let mut seqs = HashSet::new();
        for h in hs { seqs.insert(h.await.unwrap().seq); }
        assert_eq!(seqs.len(), 1, "one event id, one seq");
        assert_eq!(ledger.head().await.unwrap().seq, 4);
        assert!(verify_all(&ledger).await.is_intact());
        ledger.shutdown(tasks).await.unwrap();
    }
}

async fn inject_failure(t: &TestDb) {
    match t.kind() {
        DbKind::Sqlite => {
            t.sql(
                "CREATE TRIGGER test_fail BEFORE INSERT ON ledger_entries WHEN NEW.action = 'test.fail' \
                                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
            )
            .await
        }
        DbKind::Postgres => {
            t.sql(
                "CREATE FUNCTION test_fail() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                   IF NEW.action = 'test.fail' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$",
            )
            .await;
            t.sql("CREATE TRIGGER test_fail BEFORE INSERT ON ledger_entries FOR EACH ROW EXECUTE FUNCTION test_fail()")
                .await;
        }
    }
}

both_backends! {
    async fn a_batch_that_cannot_commit_fails_every_caller_and_stores_nothing(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, 10, 10).await;
        inject_failure(&t).await;
        let mut poisoned = event(100);
        poisoned.fields.action = "test.fail".into();
        let mut batch: Vec<_> = (101..110).map(event).collect();
        batch.insert(4, poisoned);
        let err = ledger.append(batch).await.unwrap_err();
        assert!(matches!(err, LedgerError::CommitFailed), "{err:?}");
        assert_eq!(ledger.head().await.unwrap().seq, 10, "nothing of the failed batch is visible");
        let n: i64 = t.db.conn().query_one_raw(t.db.stmt("SELECT COUNT(*) AS n FROM ledger_entries", vec![])).await.unwrap().unwrap().try_get("", "n").unwrap();
        assert_eq!(n, 10);
        // The chain continues gapless after the failure.
        let r = ledger.append_one(event(200)).await.unwrap();
        assert_eq!(r.seq, 11);
        ledger.checkpoint_now().await.unwrap();
        assert!(verify_all(&ledger).await.is_intact());
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn the_database_refuses_updates_and_deletes_of_ledger_rows(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, 5, 5).await;
        ledger.checkpoint_now().await.unwrap();
        for sql in [
            "UPDATE ledger_entries SET action = 'x' WHERE seq = 2",
            "DELETE FROM ledger_entries WHERE seq = 5",
            "DELETE FROM ledger_entries",
            "UPDATE checkpoints SET note = 'x'",
            "DELETE FROM checkpoints",
            "UPDATE ledger_keys SET wrapped = wrapped",
            "DELETE FROM ledger_keys",
            "UPDATE ledger_meta SET value = 'other'",
            "INSERT INTO ledger_purges (anchor_seq, from_seq, through_seq, chain_hash, frontier, archive_sha256, archive_name, active, created_at) VALUES (5, 1, 2, X'00', X'00', X'00', 'x', 1, 0)",
        ] {
            let sql = if t.kind() == DbKind::Postgres { sql.replace("X'00'", "'\\x00'::bytea") } else { sql.to_owned() };
            let err = t.db.conn().execute_unprepared(&sql).await.expect_err(&sql).to_string();
            assert!(err.contains("custos:"), "{sql}: {err}");
        }
        if t.kind() == DbKind::Postgres {
            let err = t.db.conn().execute_unprepared("TRUNCATE ledger_entries").await.unwrap_err().to_string();
            assert!(err.contains("append-only"), "{err}");
        }
        assert!(verify_all(&ledger).await.is_intact());
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn the_chain_continues_gapless_across_restarts_and_key_rotations(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        for round in 0..3u64 {
            let db = TestDb::connect(&t.url).await;
            let (ledger, tasks) = open_ledger(&db).await;
            let appender = { let l = ledger.clone(); tokio::spawn(async move { fill(&l, 300, 7).await }) };
            let rotated = ledger.rotate_key().await.unwrap();
            assert_eq!(rotated, 3 + round as u32, "data key ids continue after the signing key");
            let receipts = appender.await.unwrap();
            assert_eq!(receipts.first().unwrap().seq, round * 300 + 1);
            assert_eq!(receipts.last().unwrap().seq, round * 300 + 300);
            ledger.shutdown(tasks).await.unwrap();
        }
        let (ledger, tasks) = open_ledger(&t.db).await;
        let (ids, current) = ledger.keys().data_key_ids();
        assert_eq!((ids, current), (vec![1, 3, 4, 5], 5));
        let report = verify_all(&ledger).await;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!((report.entries_checked, report.macs_checked), (900, 900));
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn a_wrong_kek_stops_start_up_and_never_creates_new_keys(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, 3, 3).await;
        ledger.shutdown(tasks).await.unwrap();
        let err = Ledger::open(t.db.clone(), &StaticKek([7; 32]), config(), Arc::new(SystemClock), Arc::new(OsRandom)).await.unwrap_err();
        assert!(matches!(err, LedgerError::WrongKek(_)), "{err:?}");
        assert!(err.to_string().contains("does not match this database"), "{err}");
        let n: i64 = t.db.conn().query_one_raw(t.db.stmt("SELECT COUNT(*) AS n FROM ledger_keys", vec![])).await.unwrap().unwrap().try_get("", "n").unwrap();
        assert_eq!(n, 2, "no key was added");
    }
}

both_backends! {
    async fn inclusion_and_consistency_proofs_verify_against_signed_checkpoints(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, 300, 100).await;
        let cp1 = ledger.checkpoint_now().await.unwrap().unwrap();
        fill(&ledger, 500, 250).await;
        let cp2 = ledger.checkpoint_now().await.unwrap().unwrap();
        assert_eq!((cp1.tree_size, cp2.tree_size), (300, 800));
        let v = ledger.verifier();
        let signed = v.open_checkpoint(&cp2.note).unwrap();
        for seq in [1u64, 2, 255, 256, 257, 300, 511, 512, 513, 799, 800] {
            let e = ledger.entry(seq).await.unwrap().unwrap();
            let proof = ledger.inclusion_proof(seq, cp2.tree_size).await.unwrap();
            merkle::verify_inclusion(seq - 1, signed.tree_size, &e.leaf_hash, &proof, &signed.root_hash)
                .unwrap_or_else(|err| panic!("seq {seq}: {err}"));
        }
        let one = ledger.verify_entry(513).await.unwrap();
        assert!(one.is_intact(), "{one:?}");
        assert_eq!(one.inclusion.as_ref().unwrap().tree_size, 800);
        let proof = ledger.consistency_proof(cp1.tree_size, cp2.tree_size).await.unwrap();
        merkle::verify_consistency(cp1.tree_size, cp2.tree_size, &cp1.root_hash, &cp2.root_hash, &proof).unwrap();
        // Nodes of 256 leaves and more are stored, smaller ones recomputed.
        let nodes: i64 = t.db.conn().query_one_raw(t.db.stmt("SELECT COUNT(*) AS n FROM merkle_nodes", vec![])).await.unwrap().unwrap().try_get("", "n").unwrap();
        assert_eq!(nodes, 4, "three level-8 nodes and one level-9 node");
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    /// A burst of callers asking for a checkpoint at once (proof requests,
    /// exports) signs and stores one, and every caller gets that stored row.
    async fn callers_asking_for_a_checkpoint_at_once_share_one(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        // The system's clock, its readings counted: an idle ledger reads it
        // only to date a checkpoint it signs.
        #[derive(Debug, Default)]
        struct Counted(std::sync::atomic::AtomicUsize);
        impl custos_engine::clock::Clock for Counted {
            fn now_us(&self) -> i64 {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                custos_engine::clock::Clock::now_us(&SystemClock)
            }
        }
        let clock = Arc::new(Counted::default());
        // No background checkpoint meanwhile: the burst's own are counted.
        let cfg = custos_engine::ledger::LedgerConfig { checkpoint_interval: std::time::Duration::from_secs(3600), ..config() };
        let (ledger, tasks) = Ledger::open(t.db.clone(), &crate::support::KEK, cfg, clock.clone(), Arc::new(OsRandom)).await.unwrap();
        // (Its first tick, at once, finds the ledger empty.)
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        fill(&ledger, 300, 100).await;
        let before = ledger.checkpoints().await.unwrap().len();
        let readings = clock.0.load(std::sync::atomic::Ordering::SeqCst);
        let asked = (0..16).map(|_| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.checkpoint_now().await.unwrap().unwrap() })
        });
        let rows: Vec<_> = futures_util::future::join_all(asked).await.into_iter().map(Result::unwrap).collect();
        let stored = ledger.latest_checkpoint().await.unwrap().unwrap();
        assert_eq!(stored.tree_size, 300);
        for row in &rows {
            assert_eq!((row.tree_size, row.created_at_us, &row.note), (stored.tree_size, stored.created_at_us, &stored.note),
                       "each caller gets the stored checkpoint");
        }
        assert_eq!(ledger.checkpoints().await.unwrap().len(), before + 1);
        // One signed (not one each, most of them then not stored: a size
        // already stored is not stored again).
        assert_eq!(clock.0.load(std::sync::atomic::Ordering::SeqCst) - readings, 1, "checkpoints signed for the burst");
        ledger.shutdown(tasks).await.unwrap();
    }
}

/// A task asking `ledger` for a checkpoint covering `seq` (it may wait for
/// the checkpoints' spacing).
fn asking_for_checkpoint(
    ledger: &Ledger,
    seq: u64,
) -> tokio::task::JoinHandle<custos_engine::ledger::store::CheckpointRow> {
    let ledger = ledger.clone();
    tokio::spawn(async move { ledger.checkpoint_covering(seq).await.unwrap().unwrap() })
}

both_backends! {
    /// Checkpoints asked for under sustained ingest (a proof of each newest
    /// entry) are spaced: one asked for sooner than `checkpoint_spacing`
    /// after the latest waits for it (by the ledger's clock), and then
    /// covers what was committed meanwhile.
    async fn a_checkpoint_asked_for_within_the_spacing_waits_and_covers_what_came_meanwhile(backend: Backend) {
        use custos_engine::clock::ManualClock;
        const T0: i64 = 1_780_000_000_000_000;
        const HOUR_US: i64 = 3_600_000_000;
        let Some(t) = TestDb::new(backend).await else { return };
        let clock = Arc::new(ManualClock::new(T0));
        let hour = std::time::Duration::from_secs(3600);
        let cfg = custos_engine::ledger::LedgerConfig { checkpoint_interval: hour, checkpoint_spacing: hour, ..config() };
        let (ledger, tasks) = Ledger::open(t.db.clone(), &crate::support::KEK, cfg, clock.clone(), Arc::new(OsRandom)).await.unwrap();
        // (The background checkpointer's first tick, at once, finds the ledger empty.)
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        fill(&ledger, 10, 10).await;
        // The first one (none before it): at once.
        let first = ledger.checkpoint_now().await.unwrap().unwrap();
        assert_eq!((first.tree_size, first.created_at_us), (10, T0));
        let newest = fill(&ledger, 5, 5).await.last().unwrap().seq;
        let asked = asking_for_checkpoint(&ledger, newest);
        // Its caller waits, whatever this machine's speed: the ledger's
        // clock stands still (and the spacing is an hour of real time too).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!asked.is_finished(), "a checkpoint asked for within the spacing waits");
        let meanwhile = fill(&ledger, 5, 5).await.last().unwrap().seq;
        assert_eq!((newest, meanwhile), (15, 20));
        clock.advance_us(HOUR_US);
        let second = asked.await.unwrap();
        assert_eq!((second.tree_size, second.created_at_us), (20, T0 + HOUR_US),
                   "signed when the spacing had passed, over what was committed during the wait");
        let stored: Vec<u64> = ledger.checkpoints().await.unwrap().iter().map(|c| c.tree_size).collect();
        assert_eq!(stored.len(), 2, "{stored:?}");
        // The entry asked about is proven against it.
        let one = ledger.verify_entry(newest).await.unwrap();
        assert!(one.is_intact(), "{one:?}");
        assert_eq!(one.inclusion.as_ref().unwrap().tree_size, 20);
        // Nothing new to cover: the latest, at once.
        assert_eq!(ledger.checkpoint_now().await.unwrap().unwrap().tree_size, 20);
        // A wait under way when the ledger stops ends then: shutdown is not
        // held back by the spacing (an hour here), and its caller gets one.
        let last = fill(&ledger, 5, 5).await.last().unwrap().seq;
        let waiting = asking_for_checkpoint(&ledger, last);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "within the spacing again");
        tokio::time::timeout(std::time::Duration::from_secs(300), ledger.shutdown(tasks))
            .await
            .expect("shutdown is not held back by the spacing")
            .unwrap();
        assert_eq!(waiting.await.unwrap().tree_size, 25);
    }
}

both_backends! {
    /// A replica that waited for the spacing while another stored a newer
    /// checkpoint takes that one: it never signs an older size after it.
    async fn a_replica_that_waited_for_the_spacing_takes_a_newer_checkpoint_stored_meanwhile(backend: Backend) {
        use custos_engine::clock::ManualClock;
        const HOUR_US: i64 = 3_600_000_000;
        let Some(t) = TestDb::new(backend).await else { return };
        // `a` signs at once (no spacing); `b` spaces by an hour of its own
        // clock, which stands still until the test moves it.
        let (a, ta) = open_ledger(&TestDb::connect(&t.url).await).await;
        let clock = Arc::new(ManualClock::new(custos_engine::clock::Clock::now_us(&SystemClock)));
        let hour = std::time::Duration::from_secs(3600);
        let spaced = custos_engine::ledger::LedgerConfig { checkpoint_interval: hour, checkpoint_spacing: hour, ..config() };
        let (b, tb) = Ledger::open(TestDb::connect(&t.url).await, &crate::support::KEK, spaced, clock.clone(), Arc::new(OsRandom)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        fill(&a, 10, 10).await;
        assert_eq!(a.checkpoint_now().await.unwrap().unwrap().tree_size, 10);
        let theirs = fill(&b, 5, 5).await.last().unwrap().seq;
        let asked = asking_for_checkpoint(&b, theirs);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!asked.is_finished(), "b waits for the spacing");
        fill(&a, 5, 5).await;
        let newer = a.checkpoint_now().await.unwrap().unwrap();
        assert_eq!((theirs, newer.tree_size), (15, 20));
        clock.advance_us(HOUR_US);
        let got = asked.await.unwrap();
        assert_eq!((got.tree_size, &got.note), (20, &newer.note), "the newer one stored meanwhile");
        let sizes: Vec<u64> = a.checkpoints().await.unwrap().iter().map(|c| c.tree_size).collect();
        assert!(!sizes.contains(&15), "no older size signed after the newer one: {sizes:?}");
        a.shutdown(ta).await.unwrap();
        b.shutdown(tb).await.unwrap();
    }
}

both_backends! {
    async fn two_ledgers_on_one_database_share_one_gapless_chain(backend: Backend) {
        // On PostgreSQL this is two server replicas; on SQLite two pools on one file.
        let Some(t) = TestDb::new(backend).await else { return };
        let (a, ta) = open_ledger(&TestDb::connect(&t.url).await).await;
        let (b, tb) = open_ledger(&TestDb::connect(&t.url).await).await;
        assert_eq!(a.verifier_key(), b.verifier_key(), "both replicas load the same keys");
        let ha = { let l = a.clone(); tokio::spawn(async move { fill(&l, 400, 9).await }) };
        let hb = { let l = b.clone(); tokio::spawn(async move { fill(&l, 400, 11).await }) };
        let mut seqs: Vec<u64> = ha.await.unwrap().into_iter().chain(hb.await.unwrap()).map(|r| r.seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=800).collect::<Vec<u64>>());
        a.checkpoint_now().await.unwrap();
        let report = verify_all(&b).await;
        assert!(report.is_intact(), "{report:?}");
        a.shutdown(ta).await.unwrap();
        b.shutdown(tb).await.unwrap();
    }
}

both_backends! {
    async fn commit_times_never_go_backwards_whatever_a_replicas_clock_does(backend: Backend) {
        use custos_engine::clock::ManualClock;
        const T0: i64 = 1_780_000_000_000_000;
        const HOUR: i64 = 3_600_000_000;
        let Some(t) = TestDb::new(backend).await else { return };
        // Two replicas on one database, each with its own clock.
        let (ca, cb) = (Arc::new(ManualClock::new(T0)), Arc::new(ManualClock::new(T0)));
        let open = |clock: Arc<ManualClock>| {
            let url = t.url.clone();
            async move {
                let db = TestDb::connect(&url).await;
                Ledger::open(db, &StaticKek([0x42; 32]), config(), clock, Arc::new(OsRandom)).await.unwrap()
            }
        };
        let (a, ta) = open(ca.clone()).await;
        let (b, tb) = open(cb.clone()).await;
        let first = a.append_one(event(1)).await.unwrap();
        assert_eq!(first.recorded_at_us, T0);
        // A's clock steps back an hour: its commits are held at the newest time.
        ca.set_us(T0 - HOUR);
        let held = a.append_one(event(2)).await.unwrap();
        assert_eq!(held.recorded_at_us, T0, "a clock stepped back does not take commit times back");
        // B's clock jumps an hour ahead: its entry is recorded then, and A,
        // still behind, follows that time rather than going back.
        cb.set_us(T0 + HOUR);
        let ahead = b.append_one(event(3)).await.unwrap();
        assert_eq!(ahead.recorded_at_us, T0 + HOUR);
        ca.set_us(T0 + 60_000_000);
        let after = a.append_one(event(4)).await.unwrap();
        assert_eq!(after.recorded_at_us, T0 + HOUR, "the other replica's newer time holds");
        assert!(after.seq > ahead.seq && ahead.seq > held.seq && held.seq > first.seq);
        a.shutdown(ta).await.unwrap();
        // Reopened with a clock still behind: the floor comes from the database.
        let (a, ta) = open(ca.clone()).await;
        let reopened = a.append_one(event(5)).await.unwrap();
        assert_eq!(reopened.recorded_at_us, T0 + HOUR);
        // Once the clock passes the newest time, it is used again.
        ca.set_us(T0 + 2 * HOUR);
        assert_eq!(a.append_one(event(6)).await.unwrap().recorded_at_us, T0 + 2 * HOUR);
        // Both at once, B's clock an hour ahead of A's: a replica whose
        // commit waited for the other's still sees that commit's time.
        cb.set_us(T0 + 3 * HOUR);
        let mut writers = Vec::new();
        for k in 0..8u64 {
            let l = if k % 2 == 0 { a.clone() } else { b.clone() };
            writers.push(tokio::spawn(async move {
                for i in 0..25u64 {
                    l.append_one(event(100 + k * 100 + i)).await.unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        // Stored times are monotone in seq order, and the chain verifies.
        let head = a.head().await.unwrap().seq;
        assert_eq!(head, 6 + 8 * 25);
        let mut last = 0;
        for seq in 1..=head {
            let at = a.entry(seq).await.unwrap().unwrap().header.recorded_at_us;
            assert!(at >= last, "seq {seq} recorded at {at}, before {last}");
            last = at;
        }
        assert!(verify_all(&a).await.is_intact());
        a.shutdown(ta).await.unwrap();
        b.shutdown(tb).await.unwrap();
    }
}

both_backends! {
    async fn failed_batches_amid_concurrent_appends_never_leave_a_gap(backend: Backend) {
        // The sequencer seals batch N+1 while N commits; when N fails, N+1
        // must not be committed on the head N would have left.
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        inject_failure(&t).await;
        let mut handles = Vec::new();
        for task in 0..12u64 {
            let l = ledger.clone();
            handles.push(tokio::spawn(async move {
                let mut ok = Vec::new();
                for i in 0..40u64 {
                    let mut e = event(task * 1000 + i);
                    if (task * 40 + i) % 37 == 0 {
                        e.fields.action = "test.fail".into();
                    }
                    if let Ok(r) = l.append_one(e).await {
                        ok.push(r.seq);
                    }
                }
                ok
            }));
        }
        let mut seqs = Vec::new();
        for h in handles {
            seqs.extend(h.await.unwrap());
        }
        seqs.sort_unstable();
        let n = seqs.len() as u64;
        assert!(n < 480, "some batches failed");
        assert_eq!(seqs, (1..=n).collect::<Vec<u64>>(), "acknowledged seqs are gapless");
        assert_eq!(ledger.head().await.unwrap().seq, n, "nothing unacknowledged was stored");
        ledger.checkpoint_now().await.unwrap();
        let report = verify_all(&ledger).await;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.entries_checked, n);
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn replicas_hear_each_others_commits(backend: Backend) {
        use std::time::Duration;
        let Some(t) = TestDb::new(backend).await else { return };
        // On PostgreSQL the head is not polled within the test: only its
        // NOTIFY can tell A of B's commits. SQLite has none: it is polled.
        let head_poll = match backend {
            crate::support::Backend::Postgres => Duration::from_secs(3600),
            _ => Duration::from_millis(200),
        };
        let open = || {
            let url = t.url.clone();
            async move {
                let db = TestDb::connect(&url).await;
                let cfg = custos_engine::ledger::LedgerConfig { head_poll, ..config() };
                Ledger::open(db, &StaticKek([0x42; 32]), cfg, Arc::new(SystemClock), Arc::new(OsRandom)).await.unwrap()
            }
        };
        let (a, ta) = open().await;
        let (b, tb) = open().await;
        let mut heard = a.subscribe_head();
        heard.borrow_and_update();
        for i in 1..=3u64 {
            let r = b.append_one(event(i)).await.unwrap();
            tokio::time::timeout(Duration::from_secs(30), async {
                while *heard.borrow_and_update() < r.seq {
                    heard.changed().await.unwrap();
                }
            })
            .await
            .unwrap_or_else(|_| panic!("A never heard of B's commit {}", r.seq));
        }
        let own = a.append_one(event(10)).await.unwrap();
        assert_eq!(*a.subscribe_head().borrow(), own.seq, "its own commit, at once");
        a.shutdown(ta).await.unwrap();
        b.shutdown(tb).await.unwrap();
    }
}

/// A replica whose clock runs ahead of the database server's by more than
/// `max_clock_ahead` commits nothing: commit times never go backwards, so
/// its times would hold every replica's back. Set right, it commits again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_far_ahead_of_the_database_server_clock_refuses_to_commit() {
    use custos_engine::clock::ManualClock;
    use std::time::Duration;
    let Some(t) = TestDb::new(crate::support::Backend::Postgres).await else { return };
    let real = || chrono::Utc::now().timestamp_micros();
    let clock = Arc::new(ManualClock::new(real() + 3_600_000_000));
    let cfg = custos_engine::ledger::LedgerConfig { max_clock_ahead: Duration::from_secs(60), ..config() };
    let (ledger, tasks) =
        Ledger::open(t.db.clone(), &StaticKek([0x42; 32]), cfg, clock.clone(), Arc::new(OsRandom)).await.unwrap();
    let before = ledger.head().await.unwrap().seq;
    let skew = ledger.database_clock_skew_us().await.unwrap().unwrap();
    assert!(skew < -3_500_000_000, "the database server's clock is an hour behind this one: {skew}");
    match ledger.append_one(event(1)).await {
        Err(e @ LedgerError::ClockAhead { limit_secs: 60, .. }) => {
            assert!(e.to_string().contains("ahead of the database server's"), "{e}")
        }
        other => panic!("an hour ahead, the append gave {other:?}"),
    }
    assert_eq!(ledger.head().await.unwrap().seq, before, "nothing was stored");
    // Within the limit: committed, at this clock's time.
    clock.set_us(real() + 30_000_000);
    let r = ledger.append_one(event(2)).await.unwrap();
    assert!(r.recorded_at_us <= real() + 31_000_000);
    ledger.shutdown(tasks).await.unwrap();
}

/// PostgreSQL's sequencer commits on a connection of its own, outside the
/// pool, named `custos-sequencer`. When the server closes it between
/// commits (a restart, an operator's `pg_terminate_backend`), the next
/// commit opens a new one instead of failing its callers, and the chain
/// goes on without a gap: at once (the lost answer is settled from the
/// head) and after a second idle (the connection is probed first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sequencers_own_postgres_connection_is_replaced_when_the_server_closes_it() {
    let Some(t) = TestDb::new(crate::support::Backend::Postgres).await else { return };
    let (ledger, tasks) = open_ledger(&t.db).await;
    fill(&ledger, 5, 5).await;
    let sequencer_pids = || async {
        let rows =
            t.db.conn()
                .query_all_raw(t.db.stmt(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'custos-sequencer'",
                    vec![],
                ))
                .await
                .unwrap();
        rows.iter().map(|r| r.try_get::<i32>("", "pid").unwrap()).collect::<Vec<_>>()
    };
    let mut seen = HashSet::new();
    for round in 0..3u64 {
        let pids = sequencer_pids().await;
        assert_eq!(pids.len(), 1, "one sequencer connection: {pids:?}");
        assert!(seen.insert(pids[0]), "a new connection each round: {pids:?} after {seen:?}");
        // Waits (up to 5 s) until the backend has gone.
        let sql = format!("SELECT pg_terminate_backend({}, 5000) AS gone", pids[0]);
        let gone = t.db.conn().query_one_raw(t.db.stmt(&sql, vec![])).await.unwrap().unwrap();
        assert!(gone.try_get::<bool>("", "gone").unwrap());
        if round == 1 {
            // Idle for over a second: the connection is probed (and
            // replaced) before the statement is sent. The other rounds
            // send it on the dead connection, and the lost answer is
            // settled from the head (the batch did not commit; sent again).
            tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        }
        let r = ledger.append_one(event(100 + round)).await.unwrap();
        assert_eq!(r.seq, 6 + round, "committed on a new connection, no gap");
    }
    ledger.checkpoint_now().await.unwrap();
    assert!(verify_all(&ledger).await.is_intact());
    ledger.shutdown(tasks).await.unwrap();
    // Closed at shutdown (the backend leaves pg_stat_activity as it exits).
    let mut left = sequencer_pids().await;
    for _ in 0..100 {
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        left = sequencer_pids().await;
    }
    assert!(left.is_empty(), "the sequencer's connection is closed at shutdown: {left:?}");
}

/// On PostgreSQL the head's lock waits at most `database.busy_timeout_ms`,
/// on the server (`lock_timeout`): while another session holds it, a batch
/// fails after that time instead of waiting without end, the sequencer
/// keeps its connection (no backend is left waiting for the lock, none is
/// opened in its place), and once the lock is free the chain goes on
/// without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_lock_held_elsewhere_fails_the_batch_after_the_busy_timeout_and_keeps_the_connection() {
    use std::time::Duration;
    let Some(t) = TestDb::new(crate::support::Backend::Postgres).await else { return };
    let opts = custos_engine::storage::PoolOptions { max_connections: 4, busy_timeout: Duration::from_millis(400) };
    let db =
        custos_engine::storage::Database::connect(&secrecy::SecretString::from(t.url.clone()), &opts).await.unwrap();
    let (ledger, tasks) = open_ledger(&db).await;
    fill(&ledger, 3, 3).await;
    let sequencer = || async {
        let rows =
            t.db.conn()
                .query_all_raw(t.db.stmt(
                    "SELECT pid, wait_event_type FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'custos-sequencer'",
                    vec![],
                ))
                .await
                .unwrap();
        rows.iter()
            .map(|r| {
                (r.try_get::<i32>("", "pid").unwrap(), r.try_get::<Option<String>>("", "wait_event_type").unwrap())
            })
            .collect::<Vec<_>>()
    };
    let before = sequencer().await;
    assert_eq!(before.len(), 1, "{before:?}");
    // Another session takes the head row's lock and keeps it.
    let mut holder = <sea_orm::sqlx::PgConnection as sea_orm::sqlx::Connection>::connect(&t.url).await.unwrap();
    sea_orm::sqlx::raw_sql("BEGIN; SELECT seq FROM ledger_head WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let refused = ledger.append_one(event(50)).await;
    assert!(matches!(refused, Err(LedgerError::CommitFailed)), "{refused:?}");
    // Well before the 10 s commit timeout (the lock's wait is bounded).
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    let during = sequencer().await;
    assert_eq!(during.len(), 1, "one sequencer connection, none left waiting: {during:?}");
    assert_eq!(during[0].0, before[0].0, "the same connection, kept");
    assert_ne!(during[0].1.as_deref(), Some("Lock"), "not waiting for the lock any more: {during:?}");
    sea_orm::sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.unwrap();
    let r = ledger.append_one(event(51)).await.unwrap();
    assert_eq!(r.seq, 4, "the chain goes on without a gap");
    assert_eq!(sequencer().await[0].0, before[0].0);
    ledger.checkpoint_now().await.unwrap();
    assert!(verify_all(&ledger).await.is_intact());
    ledger.shutdown(tasks).await.unwrap();
}

/// An append whose caller gave up (commit timeout) while it was still
/// queued is dropped unsealed: it never lands later. Only a batch already
/// handed to the database when its caller gave up may still land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_abandoned_in_the_queue_are_dropped_unsealed() {
    use std::time::Duration;
    let Some(t) = TestDb::new(crate::support::Backend::Sqlite).await else { return };
    let cfg = custos_engine::ledger::LedgerConfig { commit_timeout: Duration::from_secs(2), ..config() };
    let (ledger, tasks) =
        Ledger::open(t.db.clone(), &StaticKek([0x42; 32]), cfg, Arc::new(SystemClock), Arc::new(OsRandom))
            .await
            .unwrap();
    let before = ledger.head().await.unwrap().seq;
    // Another connection holds the write lock: the next commit waits for
    // it (within the busy timeout, 5 s).
    let locker = rusqlite::Connection::open(t.db.sqlite_file().unwrap()).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let append = |e: custos_engine::ledger::NewEntry| {
        let l = ledger.clone();
        tokio::spawn(async move { l.append_one(e).await })
    };
    let handed = event(1);
    let handed_id = handed.event_id;
    let first = append(handed);
    // Ample time for the sequencer to hand it to the database, even on a
    // loaded machine (the lock is released within the 5 s busy timeout:
    // about 3 s from here).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let queued: Vec<_> = (2..=4).map(event).collect();
    let queued_ids: HashSet<_> = queued.iter().map(|e| e.event_id).collect();
    let waiting: Vec<_> = queued.into_iter().map(append).collect();
    for w in waiting {
        assert!(matches!(w.await.unwrap(), Err(LedgerError::TimedOut { .. })));
    }
    assert!(matches!(first.await.unwrap(), Err(LedgerError::TimedOut { .. })));
    locker.execute_batch("COMMIT").unwrap();
    drop(locker);
    let last = event(5);
    let last_id = last.event_id;
    let after = ledger.append_one(last).await.unwrap();
    let mut stored = HashSet::new();
    for seq in before + 1..=after.seq {
        stored.insert(ledger.entry(seq).await.unwrap().unwrap().header.event_id);
    }
    assert!(stored.is_disjoint(&queued_ids), "an append abandoned in the queue was committed");
    assert!(stored.contains(&last_id));
    stored.remove(&handed_id);
    assert_eq!(stored.len(), 1, "only the batch handed to the database may land besides the last");
    ledger.shutdown(tasks).await.unwrap();
}

/// On SQLite, appends that come in while a small batch waits behind a slow
/// commit join that batch (sealed again with them, on the same head): they
/// wait for one commit, not for the waiting batch's and then their own. An
/// append that would take the batch past 256 events is the next batch's
/// first; one whose caller gave up is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_that_come_in_behind_a_slow_commit_join_the_batch_waiting_there() {
    use std::time::Duration;
    let Some(t) = TestDb::new(crate::support::Backend::Sqlite).await else { return };
    let (ledger, tasks) =
        Ledger::open(t.db.clone(), &StaticKek([0x42; 32]), config(), Arc::new(SystemClock), Arc::new(OsRandom))
            .await
            .unwrap();
    // Another connection holds the write lock: the first commit waits for
    // it (within the busy timeout, 5 s; released after about 3 s). Each step
    // below has a second, ample on a loaded machine.
    let locker = rusqlite::Connection::open(t.db.sqlite_file().unwrap()).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let append = |e: Vec<custos_engine::ledger::NewEntry>| {
        let l = ledger.clone();
        tokio::spawn(async move { l.append(e).await.unwrap() })
    };
    let step = || tokio::time::sleep(Duration::from_secs(1));
    let first = append(vec![event(1)]);
    step().await;
    // Sealed while the first waits, then waiting behind it.
    let two = event(2);
    let second = append(vec![two.clone()]);
    step().await;
    // Queued while the second waits: six more, a retry of the second, one
    // whose caller gives up, and 300 events in one append.
    let rest: Vec<_> = (3..=8).map(|i| append(vec![event(i)])).collect();
    let retry = append(vec![two]);
    let given_up = event(9);
    let given_up_id = given_up.event_id;
    let gives_up = append(vec![given_up]);
    let big = append((100..400).map(event).collect());
    step().await;
    gives_up.abort();
    assert!(gives_up.await.unwrap_err().is_cancelled(), "its caller is gone before the lock is");
    locker.execute_batch("ROLLBACK").unwrap();
    let (first, second, retry) = (first.await.unwrap()[0], second.await.unwrap()[0], retry.await.unwrap()[0]);
    let big = big.await.unwrap();
    assert_eq!((retry.seq, retry.duplicate), (second.seq, true), "the retry is answered with the second's entry");
    let mut done = Vec::new();
    for r in rest {
        done.push(r.await.unwrap()[0]);
    }
    let mut rest = done;
    rest.sort_by_key(|r| r.seq);
    // A batch's entries share its commit time; the rest's is the second's.
    assert_ne!(first.recorded_at_us, second.recorded_at_us, "the first committed on its own");
    assert!(
        rest.iter().all(|r| r.recorded_at_us == second.recorded_at_us),
        "one commit for the second and the rest: {second:?} {rest:?}"
    );
    let seqs: Vec<u64> = rest.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (second.seq + 1..=second.seq + 6).collect::<Vec<_>>(), "sealed after the second, in order");
    // No room for the 300: the next batch, right after.
    assert!(big.iter().all(|r| r.recorded_at_us != second.recorded_at_us), "not in the topped-up batch");
    assert_eq!(big.first().map(|r| r.seq), Some(second.seq + 7));
    assert_eq!(ledger.head().await.unwrap().seq, second.seq + 306, "nothing else committed");
    for seq in first.seq..=second.seq + 306 {
        assert_ne!(ledger.entry(seq).await.unwrap().unwrap().header.event_id, given_up_id, "a given-up append");
    }
    ledger.checkpoint_now().await.unwrap();
    assert!(verify_all(&ledger).await.is_intact());
    ledger.shutdown(tasks).await.unwrap();
}

/// On SQLite, leases and signed checkpoints are written on the ledger's own
/// connection: a commit from another connection makes SQLite drop the
/// ledger's page cache and memory map at its next `BEGIN` (up to 11 ms of
/// CPU each, the tail of single-event ingest). `PRAGMA data_version` on that
/// connection changes exactly when another connection commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_leases_and_checkpoints_are_written_on_the_ledgers_own_connection() {
    use custos_engine::lease::Lease;
    let Some(t) = TestDb::new(crate::support::Backend::Sqlite).await else { return };
    // No periodic checkpoint: the one below is the test's own.
    let cfg =
        custos_engine::ledger::LedgerConfig { checkpoint_interval: std::time::Duration::from_secs(3600), ..config() };
    let (ledger, tasks) =
        Ledger::open(t.db.clone(), &StaticKek([0x42; 32]), cfg, Arc::new(SystemClock), Arc::new(OsRandom))
            .await
            .unwrap();
    fill(&ledger, 10, 10).await;
    let checkpoints = ledger.checkpoints().await.unwrap().len();
    let before = ledger.writer_pragma("data_version", false).await.expect("SQLite's writer's data_version");
    let a = Lease::new(ledger.clone(), "test-work", "replica-a", 15_000_000);
    let b = Lease::new(ledger.clone(), "test-work", "replica-b", 15_000_000);
    assert_eq!(a.acquire().await.unwrap().expect("a free lease is taken").cursor, None);
    assert!(a.save(7).await.unwrap());
    assert_eq!(a.acquire().await.unwrap().expect("renewed").cursor, Some(7), "a renewal keeps the cursor");
    assert!(b.acquire().await.unwrap().is_none(), "held by a");
    assert!(!b.save(9).await.unwrap(), "b does not hold it");
    a.release().await.unwrap();
    assert_eq!(b.acquire().await.unwrap().expect("released, so b takes it").cursor, Some(7));
    assert_eq!(Lease::current(&ledger, "test-work").await.unwrap().map(|(h, _)| h).as_deref(), Some("replica-b"));
    let cp = ledger.checkpoint_now().await.unwrap().expect("a checkpoint of 10 entries");
    assert_eq!(cp.tree_size, 10);
    let stored = ledger.checkpoints().await.unwrap();
    assert_eq!((stored.len(), stored.last()), (checkpoints + 1, Some(&cp)), "stored");
    assert_eq!(ledger.writer_pragma("data_version", false).await, Some(before), "no commit from another connection");
    // The leases' writes are made at NORMAL (made durable by the WAL's next
    // fsync); the connection is FULL again for the ledger's.
    assert_eq!(ledger.writer_pragma("synchronous", true).await, Some(1), "NORMAL within");
    assert_eq!(ledger.writer_pragma("synchronous", false).await, Some(2), "FULL after");
    // The control: a commit on a pooled connection does show.
    t.db.conn().execute_unprepared("UPDATE leases SET until_us = 0 WHERE name = 'test-work'").await.unwrap();
    assert_ne!(ledger.writer_pragma("data_version", false).await, Some(before));
    ledger.shutdown(tasks).await.unwrap();
}

/// On PostgreSQL a sealed batch may wait in the committer behind one that
/// waits for the head's lock: if its callers give up meanwhile, it is not
/// committed as sealed (it is sealed again without them), so what was
/// answered with a timeout does not land later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_abandoned_behind_a_waiting_commit_on_postgresql_are_dropped_unsealed() {
    use std::time::Duration;
    let Some(t) = TestDb::new(crate::support::Backend::Postgres).await else { return };
    // The head's lock is waited for up to 20 s: the first batch always
    // lands (the lock is released after about 3 s), so the second is the
    // one sealed on it and waiting behind it.
    let opts = custos_engine::storage::PoolOptions { max_connections: 4, busy_timeout: Duration::from_secs(20) };
    let db =
        custos_engine::storage::Database::connect(&secrecy::SecretString::from(t.url.clone()), &opts).await.unwrap();
    let cfg = custos_engine::ledger::LedgerConfig { commit_timeout: Duration::from_secs(2), ..config() };
    let (ledger, tasks) =
        Ledger::open(db, &StaticKek([0x42; 32]), cfg, Arc::new(SystemClock), Arc::new(OsRandom)).await.unwrap();
    fill(&ledger, 3, 3).await;
    let before = ledger.head().await.unwrap().seq;
    // Another session holds the head row's lock: the next commit waits for
    // it (busy timeout 20 s, longer than the lock is held).
    let mut holder = <sea_orm::sqlx::PgConnection as sea_orm::sqlx::Connection>::connect(&t.url).await.unwrap();
    sea_orm::sqlx::raw_sql("BEGIN; SELECT seq FROM ledger_head WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let append = |e: custos_engine::ledger::NewEntry| {
        let l = ledger.clone();
        tokio::spawn(async move { l.append_one(e).await })
    };
    let handed = event(101);
    let handed_id = handed.event_id;
    let first = append(handed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Sealed and handed to the committer behind the first (two in flight).
    let queued: Vec<_> = (102..=104).map(event).collect();
    let queued_ids: HashSet<_> = queued.iter().map(|e| e.event_id).collect();
    let waiting: Vec<_> = queued.into_iter().map(append).collect();
    for w in waiting {
        assert!(matches!(w.await.unwrap(), Err(LedgerError::TimedOut { .. })));
    }
    assert!(matches!(first.await.unwrap(), Err(LedgerError::TimedOut { .. })));
    sea_orm::sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    let last = event(105);
    let last_id = last.event_id;
    let after = ledger.append_one(last).await.unwrap();
    let mut stored = HashSet::new();
    for seq in before + 1..=after.seq {
        stored.insert(ledger.entry(seq).await.unwrap().unwrap().header.event_id);
    }
    assert!(stored.is_disjoint(&queued_ids), "an append abandoned behind a waiting commit was committed");
    assert!(stored.contains(&last_id));
    assert!(stored.remove(&handed_id), "the batch handed to the database before the timeouts landed");
    assert_eq!(stored.len(), 1, "only the batch handed to the database may land besides the last");
    assert!(verify_all(&ledger).await.is_intact());
    ledger.shutdown(tasks).await.unwrap();
}

/// Tool calls with a duration (counted in the latency rollups too), in
/// requests of ten; returns each entry's duration by seq.
async fn append_tool_calls(ledger: &Ledger, range: std::ops::Range<u64>) -> Vec<(u64, f64)> {
    let mut out = Vec::new();
    let items: Vec<u64> = range.collect();
    for chunk in items.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let mut e = event(i);
                e.fields.category = "tool".into();
                e.fields.resource_type = Some("tool".into());
                e.fields.resource_id = Some(format!("tool-{}", i % 3));
                // The payload's metrics.duration_ms is `i % 900`.
                e.duration_ms = Some((i % 900) as f64);
                e
            })
            .collect();
        for (r, &i) in ledger.append(entries).await.unwrap().iter().zip(chunk) {
            out.push((r.seq, (i % 900) as f64));
        }
    }
    out
}

type Counts = std::collections::BTreeMap<(String, String, i64), i64>;

async fn stored_counts(t: &TestDb) -> Counts {
    counts_in(t, "audit_rollups").await
}

/// The counts in a table or view (a key may appear more than once in
/// `audit_rollups_current`: added up).
async fn counts_in(t: &TestDb, relation: &str) -> Counts {
    let rows =
        t.db.conn()
            .query_all_raw(sea_orm::Statement::from_string(
                t.db.backend(),
                format!(
                    "SELECT dimension, value, bucket, CAST(SUM(count) AS BIGINT) AS count FROM {relation} \
                     GROUP BY dimension, value, bucket"
                ),
            ))
            .await
            .unwrap();
    rows.iter()
        .map(|r| {
            let key = (
                r.try_get("", "dimension").unwrap(),
                r.try_get("", "value").unwrap(),
                r.try_get("", "bucket").unwrap(),
            );
            (key, r.try_get::<i64>("", "count").unwrap())
        })
        .filter(|(_, n)| *n != 0)
        .collect()
}

/// What the counts must be: every stored entry counted once.
async fn expected_counts(t: &TestDb, durations: &std::collections::HashMap<u64, f64>) -> Counts {
    let entries = custos_engine::ledger::store::read_entries(t.db.conn(), 1, u64::MAX >> 1, 100_000).await.unwrap();
    let ds: Vec<Option<f64>> = entries.iter().map(|e| durations.get(&e.header.seq).copied()).collect();
    custos_engine::ledger::rollup::aggregate(&entries, &ds)
        .into_iter()
        .map(|((d, v, b), n)| ((d.to_owned(), v, b), n))
        .collect()
}

async fn count_sql(t: &TestDb, sql: &str) -> i64 {
    let row = t.db.conn().query_one_raw(sea_orm::Statement::from_string(t.db.backend(), sql.to_owned())).await;
    row.unwrap().unwrap().try_get_by_index::<i64>(0).unwrap()
}

both_backends! {
    async fn dashboard_counts_stay_exact_when_held_by_two_writers_and_one_is_killed(backend: Backend) {
        use std::time::Duration;
        let Some(t) = TestDb::new(backend).await else { return };
        let sqlite = t.db.sqlite_file().is_some();
        let total = "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM audit_rollups WHERE dimension = 'total'";
        let pending = "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_rollup_pending";
        // Held for an hour: nothing is written unless asked, or at shutdown.
        let held = custos_engine::ledger::LedgerConfig { rollups_every: Duration::from_secs(3600), ..config() };
        let open = |cfg: custos_engine::ledger::LedgerConfig| {
            let url = t.url.clone();
            async move {
                Ledger::open(TestDb::connect(&url).await, &StaticKek([0x42; 32]), cfg, Arc::new(SystemClock), Arc::new(OsRandom))
                    .await
                    .unwrap()
            }
        };
        let (a, ta) = open(held.clone()).await;
        let mut durations: std::collections::HashMap<u64, f64> = append_tool_calls(&a, 0..150).await.into_iter().collect();
        let deltas = "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_rollup_deltas";
        assert_eq!(count_sql(&t, total).await, 0, "a's counts are not in audit_rollups yet");
        if sqlite {
            assert_eq!(count_sql(&t, pending).await, 15, "one row per commit says which entries are not counted yet");
        } else {
            assert_eq!(count_sql(&t, deltas).await, 15, "each commit left one row of counts to fold");
            assert_eq!(count_sql(&t, pending).await, 0);
        }
        // A second writer starting while a lives leaves a's rows alone
        // (SQLite); on PostgreSQL every commit's row waits to be folded.
        let (b, tb) = open(held.clone()).await;
        durations.extend(append_tool_calls(&b, 150..230).await);
        if !sqlite {
            // a's last commits; then a stops as a kill -9 would: nothing
            // has been folded (every 15 minutes: none during the test),
            // every commit's row waits (15 of a's, 8 of b's, 1 more of a's).
            durations.extend(append_tool_calls(&a, 230..240).await);
            ta.abort().await;
            drop(a);
            assert_eq!(count_sql(&t, deltas).await, 24);
            assert_eq!(count_sql(&t, total).await, 0);
            // A reader counts them all, from the waiting rows.
            b.settle_rollups().await;
            let current = "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM audit_rollups_current \
                           WHERE dimension = 'total'";
            assert_eq!(count_sql(&t, current).await, 240, "a's counts (a killed) and b's");
            assert_eq!(counts_in(&t, "audit_rollups_current").await, expected_counts(&t, &durations).await);
            // b's shutdown folds them: each once.
            b.shutdown(tb).await.unwrap();
            assert_eq!(count_sql(&t, deltas).await, 0, "every row folded");
            assert_eq!(
                stored_counts(&t).await,
                expected_counts(&t, &durations).await,
                "every dimension, latency included, each entry once"
            );
            // The rest is SQLite's crash story (lock files, counting from
            // the ledger); PostgreSQL has none beyond the transaction.
            return;
        }
        b.settle_rollups().await;
        assert_eq!(count_sql(&t, total).await, 80, "b wrote its own counts only");
        // a stops as a kill -9 would: its counts are never written.
        ta.abort().await;
        drop(a);
        b.shutdown(tb).await.unwrap();
        assert_eq!(count_sql(&t, total).await, 80);
        // The next writer to start counts what a left, from the ledger.
        let (c, tc) = open(config()).await;
        assert_eq!(count_sql(&t, pending).await, 0);
        assert_eq!(stored_counts(&t).await, expected_counts(&t, &durations).await, "every dimension, latency included");
        durations.extend(append_tool_calls(&c, 230..260).await);
        c.shutdown(tc).await.unwrap();
        assert_eq!(count_sql(&t, total).await, 260);
        assert_eq!(stored_counts(&t).await, expected_counts(&t, &durations).await);
        // A live writer wrongly judged dead (its lock file deleted under it):
        // another start counts its entries, and it then counts nothing twice.
        let lock_files = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
            std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains("-rollups-"))
                .map(|e| e.path())
                .collect()
        };
        let (d, td) = open(held.clone()).await;
        durations.extend(append_tool_calls(&d, 260..300).await);
        if let Some(path) = t.db.sqlite_file() {
            let files = lock_files(path.parent().unwrap());
            assert_eq!(files.len(), 1, "d holds counts, so its lock file is there");
            std::fs::remove_file(&files[0]).unwrap();
        }
        let (e, te) = open(config()).await;
        if sqlite {
            assert_eq!(count_sql(&t, total).await, 300, "e counted d's entries, taking d for dead");
        }
        d.settle_rollups().await;
        assert_eq!(count_sql(&t, total).await, 300, "d found its rows gone and wrote nothing twice");
        d.shutdown(td).await.unwrap();
        e.shutdown(te).await.unwrap();
        assert_eq!(stored_counts(&t).await, expected_counts(&t, &durations).await);
        if let Some(path) = t.db.sqlite_file() {
            let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains("-rollups-"))
                .collect();
            assert!(left.is_empty(), "lock files left behind: {left:?}");
        }
    }
}

/// SQLite's writer writes its held counts a chunk at a time. Stopped
/// between two chunks (a kill -9), it leaves some keys written and its
/// rows uncounted: the next writer counts those rows from the ledger but
/// for the keys the write had written, so every entry is counted once.
/// And a writer whose rows another process counted in the middle of its
/// write (taking it for dead) notices, and counts nothing twice. (Counts
/// are held for an hour here, so no background write interferes; each
/// commit of `append_tool_calls` is 10 events, so one pending row.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_of_held_counts_stopped_between_chunks_counts_each_entry_once() {
    use std::time::Duration;
    let Some(t) = TestDb::new(crate::support::Backend::Sqlite).await else { return };
    let path = t.db.sqlite_file().expect("a SQLite file").to_owned();
    let held = custos_engine::ledger::LedgerConfig { rollups_every: Duration::from_secs(3600), ..config() };
    let open = |cfg: custos_engine::ledger::LedgerConfig| {
        let url = t.url.clone();
        async move {
            Ledger::open(
                TestDb::connect(&url).await,
                &StaticKek([0x42; 32]),
                cfg,
                Arc::new(SystemClock),
                Arc::new(OsRandom),
            )
            .await
            .unwrap()
        }
    };
    let rows = "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_rollups";
    let total = "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM audit_rollups WHERE dimension = 'total'";
    let pending = "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_rollup_pending";
    let progress = "SELECT CAST(COUNT(*) AS BIGINT) FROM ledger_rollup_progress";
    let (a, ta) = open(held.clone()).await;
    let mut durations: std::collections::HashMap<u64, f64> = append_tool_calls(&a, 0..150).await.into_iter().collect();
    assert_eq!(count_sql(&t, rows).await, 0, "nothing written yet");
    assert!(expected_counts(&t, &durations).await.len() > 40, "more keys than the partial write writes");
    a.write_held_rollups_partly(10, 3).await.unwrap();
    assert_eq!(count_sql(&t, rows).await, 30, "three chunks of ten keys, into an empty table");
    assert_eq!(count_sql(&t, progress).await, 1, "how far the write got");
    assert_eq!(count_sql(&t, pending).await, 15, "the write's 15 rows stay until its last chunk");
    // Commits during the write are not the write's.
    durations.extend(append_tool_calls(&a, 150..170).await);
    ta.abort().await;
    drop(a);
    let (c, tc) = open(held.clone()).await;
    assert_eq!(count_sql(&t, pending).await, 0);
    assert_eq!(count_sql(&t, progress).await, 0);
    assert_eq!(count_sql(&t, total).await, 170);
    assert_eq!(
        stored_counts(&t).await,
        expected_counts(&t, &durations).await,
        "every key once: the written ones not again, the others from the ledger"
    );
    // Alive: commits between chunks are held for the next write, and a
    // read waits for both writes.
    durations.extend(append_tool_calls(&c, 170..250).await);
    c.write_held_rollups_partly(5, 2).await.unwrap();
    durations.extend(append_tool_calls(&c, 250..260).await);
    assert_eq!(count_sql(&t, progress).await, 1, "the write is still under way");
    assert_eq!(count_sql(&t, pending).await, 9, "the write's 8 rows and the next commit's");
    c.settle_rollups().await;
    assert_eq!((count_sql(&t, pending).await, count_sql(&t, progress).await), (0, 0));
    assert_eq!(count_sql(&t, total).await, 260);
    assert_eq!(stored_counts(&t).await, expected_counts(&t, &durations).await);
    // And a shutdown in the middle of a write finishes it, then writes the rest.
    durations.extend(append_tool_calls(&c, 260..280).await);
    c.write_held_rollups_partly(3, 1).await.unwrap();
    durations.extend(append_tool_calls(&c, 280..290).await);
    assert_eq!(count_sql(&t, progress).await, 1, "the write is still under way");
    c.shutdown(tc).await.unwrap();
    assert_eq!((count_sql(&t, pending).await, count_sql(&t, progress).await), (0, 0));
    assert_eq!(count_sql(&t, total).await, 290);
    assert_eq!(stored_counts(&t).await, expected_counts(&t, &durations).await);

    // A live writer taken for dead in the middle of a write.
    let (d, td) = open(held.clone()).await;
    durations.extend(append_tool_calls(&d, 290..420).await);
    d.write_held_rollups_partly(7, 2).await.unwrap();
    durations.extend(append_tool_calls(&d, 420..440).await);
    assert_eq!(count_sql(&t, progress).await, 1, "d's write is under way");
    let lock_files: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("-rollups-"))
        .map(|e| e.path())
        .collect();
    assert_eq!(lock_files.len(), 1, "d holds counts, so its lock file is there, and only its: {lock_files:?}");
    std::fs::remove_file(&lock_files[0]).unwrap();
    let (e, te) = open(config()).await;
    assert_eq!(count_sql(&t, total).await, 440, "e counted d's entries, taking d for dead");
    assert_eq!(count_sql(&t, progress).await, 0);
    assert_eq!(stored_counts(&t).await, expected_counts(&t, &durations).await);
    // e stops first: its recovery every 5 s would count d's next commit
    // before d does.
    e.shutdown(te).await.unwrap();
    // d finds its write's progress gone, and its rows: it counts its
    // remaining commit (10 events) from the ledger, and nothing twice.
    durations.extend(append_tool_calls(&d, 440..450).await);
    d.settle_rollups().await;
    assert_eq!(count_sql(&t, total).await, 450);
    d.shutdown(td).await.unwrap();
    assert_eq!(count_sql(&t, pending).await, 0);
    assert_eq!(stored_counts(&t).await, expected_counts(&t, &durations).await);
}

both_backends! {
    async fn a_removal_takes_away_counts_not_yet_written(backend: Backend) {
        use std::time::Duration;
        let Some(t) = TestDb::new(backend).await else { return };
        let sqlite = t.db.sqlite_file().is_some();
        // Held for an hour (folds every 15 minutes): none during the test.
        let held = custos_engine::ledger::LedgerConfig { rollups_every: Duration::from_secs(3600), ..config() };
        let (l, tasks) =
            Ledger::open(TestDb::connect(&t.url).await, &StaticKek([0x42; 32]), held, Arc::new(SystemClock), Arc::new(OsRandom))
                .await
                .unwrap();
        let durations: std::collections::HashMap<u64, f64> = append_tool_calls(&l, 0..100).await.into_iter().collect();
        let total = "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM audit_rollups WHERE dimension = 'total'";
        assert_eq!(count_sql(&t, total).await, 0, "nothing counted in audit_rollups yet");
        if !sqlite {
            assert_eq!(count_sql(&t, "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_rollup_deltas").await, 10);
        }
        let mut seqs: Vec<u64> = durations.keys().copied().filter(|s| s % 3 == 0).collect();
        seqs.sort_unstable();
        l.checkpoint_now().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        l.tombstone(&seqs, dir.path(), "erasure", "run-1").await.unwrap();
        if !sqlite {
            // A removal's record from a transaction that does not say it
            // folds (a replica older than migration 20) is refused (the
            // trigger fires before the record's other checks, by name).
            let copy = "INSERT INTO ledger_retentions SELECT * FROM ledger_retentions";
            let err = t.db.conn().execute_unprepared(copy).await.unwrap_err().to_string();
            assert!(err.contains("must fold the waiting dashboard counts first"), "{err}");
        }
        l.settle_rollups().await;
        // Without the counts written (folded) first, the removal's
        // subtraction would have found no rows and the counts, once
        // written, would still include the removed entries.
        // (The removal's anchor is one more entry, counted too.)
        let left = 100 - seqs.len() as i64 + 1;
        let current = "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM audit_rollups_current WHERE dimension = 'total'";
        assert_eq!(count_sql(&t, current).await, left, "the kept entries and the removal's anchor");
        assert_eq!(counts_in(&t, "audit_rollups_current").await, expected_counts(&t, &durations).await);
        // Once everything is written (SQLite's writer at shutdown, the last
        // fold on PostgreSQL), the table alone holds the same counts.
        l.shutdown(tasks).await.unwrap();
        assert_eq!(count_sql(&t, total).await, left);
        assert_eq!(stored_counts(&t).await, expected_counts(&t, &durations).await);
    }
}

/// Two replicas committing while both fold every few milliseconds, and
/// readers reading meanwhile: every read counts each committed entry once
/// (never a fold's rows twice or not at all), and so does the table once
/// both stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folds_racing_commits_on_two_replicas_count_each_entry_once() {
    use std::time::Duration;
    let Some(t) = TestDb::new(crate::support::Backend::Postgres).await else { return };
    let often = custos_engine::ledger::LedgerConfig { rollups_every: Duration::from_millis(5), ..config() };
    let open = || async {
        Ledger::open(
            TestDb::connect(&t.url).await,
            &StaticKek([0x42; 32]),
            often.clone(),
            Arc::new(SystemClock),
            Arc::new(OsRandom),
        )
        .await
        .unwrap()
    };
    let ((a, ta), (b, tb)) = (open().await, open().await);
    let current = "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM audit_rollups_current WHERE dimension = 'total'";
    let reads = async {
        let mut seen = Vec::new();
        for _ in 0..40 {
            seen.push(count_sql(&t, current).await);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        seen
    };
    let (da, db, seen) = tokio::join!(append_tool_calls(&a, 0..300), append_tool_calls(&b, 300..600), reads);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "a read never counts fewer than the one before: {seen:?}");
    assert!(*seen.last().unwrap() <= 600, "{seen:?}");
    let durations: std::collections::HashMap<u64, f64> = da.into_iter().chain(db).collect();
    assert_eq!(count_sql(&t, current).await, 600);
    assert_eq!(counts_in(&t, "audit_rollups_current").await, expected_counts(&t, &durations).await);
    assert!(
        count_sql(&t, "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM audit_rollups WHERE dimension = 'total'")
            .await
            > 0,
        "the background folds ran"
    );
    a.shutdown(ta).await.unwrap();
    b.shutdown(tb).await.unwrap();
    assert_eq!(count_sql(&t, "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_rollup_deltas").await, 0);
    assert_eq!(stored_counts(&t).await, expected_counts(&t, &durations).await);
}

/// What [`LossyProxy`] does to the next fast commit that passes it.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// Forwards the statement, reads PostgreSQL's whole answer (the batch
    /// committed) and closes the client's side instead of passing it on.
    Answer,
    /// Closes both sides instead of forwarding the statement.
    Statement,
}

/// A TCP proxy between a ledger and the test PostgreSQL that loses, once
/// armed, the answer to (or the text of) the next PostgreSQL fast commit:
/// the first `Bind` message over 64 KiB from the client (the fast commit's
/// arrays; nothing else the ledger sends is that large in these tests).
struct LossyProxy {
    url: String,
    armed: Arc<std::sync::Mutex<Option<Loss>>>,
    tripped: Arc<std::sync::atomic::AtomicUsize>,
}

impl LossyProxy {
    async fn start(target_url: &str) -> LossyProxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // postgres://user@host:port/db: the proxy takes host:port's place.
        let at = target_url.find('@').unwrap() + 1;
        let slash = at + target_url[at..].find('/').unwrap();
        let upstream = target_url[at..slash].to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Plain TCP, for the proxy to read the messages.
        let tls_off = if target_url.contains('?') { "&sslmode=disable" } else { "?sslmode=disable" };
        let url = format!("{}{}{}{tls_off}", &target_url[..at], listener.local_addr().unwrap(), &target_url[slash..]);
        let armed: Arc<std::sync::Mutex<Option<Loss>>> = Arc::default();
        let tripped: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (a, n) = (armed.clone(), tripped.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { continue };
                let (armed, tripped) = (a.clone(), n.clone());
                tokio::spawn(async move {
                    let (mut cb, mut sb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
                    let mut swallow = false;
                    // The answer's last bytes, for a ReadyForQuery split over two reads.
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        tokio::select! {
                            r = client.read(&mut cb) => {
                                let Ok(k) = r else { return };
                                if k == 0 {
                                    return;
                                }
                                let big_bind = k >= 5
                                    && cb[0] == b'B'
                                    && u32::from_be_bytes([cb[1], cb[2], cb[3], cb[4]]) > 64 * 1024;
                                if big_bind && let Some(loss) = armed.lock().unwrap().take() {
                                    tripped.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                    match loss {
                                        Loss::Statement => return,
                                        Loss::Answer => swallow = true,
                                    }
                                }
                                if server.write_all(&cb[..k]).await.is_err() {
                                    return;
                                }
                            }
                            r = server.read(&mut sb) => {
                                let Ok(k) = r else { return };
                                if k == 0 {
                                    return;
                                }
                                if swallow {
                                    // ReadyForQuery, idle: the statement's
                                    // transaction has ended (committed).
                                    tail.extend_from_slice(&sb[..k]);
                                    if tail.windows(6).any(|w| w == b"Z\0\0\0\x05I") {
                                        return;
                                    }
                                    tail.drain(..tail.len().saturating_sub(5));
                                    continue;
                                }
                                if client.write_all(&sb[..k]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        LossyProxy { url, armed, tripped }
    }

    fn arm(&self, loss: Loss) {
        *self.armed.lock().unwrap() = Some(loss);
    }

    fn tripped(&self) -> usize {
        self.tripped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// PostgreSQL's fast commit is one statement in a transaction of its own;
/// when its answer is lost with the connection, whether it committed is
/// read from the head on a new connection. Committed (the answer lost after
/// PostgreSQL committed): the callers get their receipts, not an error and
/// not duplicates, each event is stored once. Not committed (the statement
/// lost before the server saw it): it is sent once more, and the chain goes
/// on without a gap. Both fail without the recovery (the callers get an
/// error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_commit_whose_answer_is_lost_is_settled_from_the_head() {
    let Some(t) = TestDb::new(crate::support::Backend::Postgres).await else { return };
    let proxy = LossyProxy::start(&t.url).await;
    let (ledger, tasks) = open_ledger(&TestDb::connect(&proxy.url).await).await;
    fill(&ledger, 5, 5).await;
    for (round, loss) in [Loss::Answer, Loss::Statement, Loss::Answer].into_iter().enumerate() {
        let before = ledger.head().await.unwrap().seq;
        proxy.arm(loss);
        let first = 1_000 * (round as u64 + 1);
        let receipts = ledger.append((first..first + 300).map(event).collect()).await;
        let receipts = receipts.unwrap_or_else(|e| panic!("{loss:?}: the batch's callers got {e}"));
        assert_eq!(proxy.tripped(), round + 1, "{loss:?}: the fast commit passed the proxy");
        let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (before + 1..=before + 300).collect::<Vec<_>>(), "{loss:?}: one seq each, no gap");
        assert!(receipts.iter().all(|r| !r.duplicate), "{loss:?}: stored by this batch, not found as duplicates");
    }
    // The next batch commits on the head the settled ones left.
    let r = ledger.append_one(event(9_999)).await.unwrap();
    assert_eq!(r.seq, 5 + 3 * 300 + 1);
    let stored =
        t.db.conn()
            .query_one_raw(t.db.stmt("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM ledger_entries", vec![]))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(stored.try_get::<i64>("", "n").unwrap(), 5 + 3 * 300 + 1, "each event stored once");
    ledger.checkpoint_now().await.unwrap();
    assert!(verify_all(&ledger).await.is_intact());
    ledger.shutdown(tasks).await.unwrap();
}
