//! Tampering, as someone with write access to the database (triggers dropped)
//! would do it. Each case must be detected, with the right seq.

use custos_engine::ledger::encoding;
use custos_engine::ledger::keyring::Keyring;
use custos_engine::ledger::merkle::Frontier;
use custos_engine::ledger::note::{Checkpoint, NoteSigner};
use custos_engine::ledger::store;
use custos_engine::ledger::verify::{self, FailureKind, VerifyReport, VerifyScope};
use custos_engine::ledger::{Ledger, LedgerError};
use custos_engine::storage::DbKind;

use crate::support::{Backend, KEK, TestDb, both_backends, fill, open_ledger};

const N: u64 = 40;
const K: u64 = 17;

async fn public_verify(ledger: &Ledger) -> VerifyReport {
    verify::verify(ledger.db(), &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap()
}

async fn keyed_verify(ledger: &Ledger) -> VerifyReport {
    verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {}).await.unwrap()
}

fn failure(r: &VerifyReport) -> (Option<u64>, FailureKind) {
    let f = r.failure.as_ref().unwrap_or_else(|| panic!("tampering went undetected: {r:?}"));
    (f.seq, f.kind)
}

async fn setup(backend: Backend) -> Option<(TestDb, Ledger, custos_engine::ledger::LedgerTasks)> {
    let t = TestDb::new(backend).await?;
    let (ledger, tasks) = open_ledger(&t.db).await;
    fill(&ledger, N, 8).await;
    ledger.checkpoint_now().await.unwrap();
    assert!(keyed_verify(&ledger).await.is_intact());
    t.drop_guards().await;
    Some((t, ledger, tasks))
}

both_backends! {
    async fn a_changed_byte_in_any_stored_column_is_found_at_its_seq(backend: Backend) {
        let Some((t, ledger, tasks)) = setup(backend).await else { return };
        let text_cols = ["category", "action", "outcome", "severity", "actor_id", "actor_kind", "resource_type",
                         "resource_id", "tenant", "channel", "source_app"];
        for col in text_cols {
            t.sql(&format!("UPDATE ledger_entries SET {col} = {col} || 'x' WHERE seq = {K}")).await;
            assert_eq!(failure(&public_verify(&ledger).await), (Some(K), FailureKind::FieldsChanged), "{col}");
            t.sql(&format!("UPDATE ledger_entries SET {col} = substr({col}, 1, length({col}) - 1) WHERE seq = {K}")).await;
        }
        for col in ["occurred_at", "recorded_at", "key_id"] {
            t.sql(&format!("UPDATE ledger_entries SET {col} = {col} + 1 WHERE seq = {K}")).await;
            assert_eq!(failure(&public_verify(&ledger).await), (Some(K), FailureKind::FieldsChanged), "{col}");
            t.sql(&format!("UPDATE ledger_entries SET {col} = {col} - 1 WHERE seq = {K}")).await;
        }
        let original = ledger.entry(K).await.unwrap().unwrap();
        let blobs: [(&str, Vec<u8>, FailureKind); 5] = [
            ("iv", original.iv.to_vec(), FailureKind::FieldsChanged),
            ("ciphertext", original.ciphertext.clone(), FailureKind::FieldsChanged),
            ("mac", original.mac.to_vec(), FailureKind::FieldsChanged),
            ("leaf_hash", original.leaf_hash.to_vec(), FailureKind::FieldsChanged),
            ("chain_hash", original.chain_hash.to_vec(), FailureKind::ChainBroken),
        ];
        for (col, bytes, kind) in blobs {
            for at in [0, bytes.len() - 1] {
                let mut changed = bytes.clone();
                changed[at] ^= 0x01;
                t.sql(&format!("UPDATE ledger_entries SET {col} = {} WHERE seq = {K}", t.blob(&changed))).await;
                assert_eq!(failure(&public_verify(&ledger).await), (Some(K), kind), "{col} byte {at}");
                if col != "chain_hash" {
                    let one = ledger.verify_entry(K).await.unwrap();
                    assert!(!one.is_intact(), "single-entry verification misses a changed {col}: {one:?}");
                }
                t.sql(&format!("UPDATE ledger_entries SET {col} = {} WHERE seq = {K}", t.blob(&bytes))).await;
            }
        }
        let other_id = uuid::Uuid::now_v7();
        let id_sql = |u: uuid::Uuid| match t.kind() {
            DbKind::Sqlite => t.blob(u.as_bytes()),
            DbKind::Postgres => format!("'{u}'"),
        };
        t.sql(&format!("UPDATE ledger_entries SET event_id = {} WHERE seq = {K}", id_sql(other_id))).await;
        assert_eq!(failure(&public_verify(&ledger).await), (Some(K), FailureKind::FieldsChanged), "event_id");
        t.sql(&format!("UPDATE ledger_entries SET event_id = {} WHERE seq = {K}", id_sql(original.header.event_id))).await;
        assert!(keyed_verify(&ledger).await.is_intact(), "restoring every byte makes it whole again");
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn a_deleted_row_is_found_as_a_missing_seq(backend: Backend) {
        let Some((t, ledger, tasks)) = setup(backend).await else { return };
        t.sql(&format!("DELETE FROM ledger_entries WHERE seq = {K}")).await;
        assert_eq!(failure(&public_verify(&ledger).await), (Some(K), FailureKind::MissingEntry));
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn two_swapped_rows_are_found_at_the_first_of_them(backend: Backend) {
        let Some((t, ledger, tasks)) = setup(backend).await else { return };
        // Move every column but seq of row 17 to row 23 and back.
        t.sql(&format!("UPDATE ledger_entries SET seq = 1000000 WHERE seq = {K}")).await;
        t.sql(&format!("UPDATE ledger_entries SET seq = {K} WHERE seq = 23")).await;
        t.sql("UPDATE ledger_entries SET seq = 23 WHERE seq = 1000000").await;
        assert_eq!(failure(&public_verify(&ledger).await), (Some(K), FailureKind::FieldsChanged));
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn a_truncated_tail_is_found_against_the_last_checkpoint(backend: Backend) {
        let Some((t, ledger, tasks)) = setup(backend).await else { return };
        ledger.shutdown(tasks).await.unwrap();
        // Drop the last five rows and rewind the head to match, consistently.
        let keep = N - 5;
        t.sql(&format!("DELETE FROM ledger_entries WHERE seq > {keep}")).await;
        let last = store::read_entry(t.db.conn(), keep).await.unwrap().unwrap();
        let frontier = store::frontier_at(t.db.conn(), keep).await.unwrap();
        t.sql(&format!("UPDATE ledger_head SET seq = {keep}, chain_hash = {}, frontier = {}", t.blob(&last.chain_hash), t.blob(&frontier.encode()))).await;
        let report = verify::verify(&t.db, &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
        assert_eq!(failure(&report), (Some(keep + 1), FailureKind::Truncated));
    }
}

/// Appends a row the way an attacker without keys would: consistent leaf and
/// chain, made-up MAC, head updated to match.
async fn forge_row(t: &TestDb, seq: u64) {
    let prev = store::read_entry(t.db.conn(), seq - 1).await.unwrap().unwrap();
    let mut forged = prev.clone();
    forged.header.seq = seq;
    forged.header.event_id = uuid::Uuid::now_v7();
    forged.header.fields.action = "user.promote".into();
    forged.mac = [0x5a; 32];
    let hb = encoding::header_bytes(&forged.header);
    forged.leaf_hash = encoding::leaf_hash(&hb, forged.key_id, &forged.iv, &forged.ciphertext, &forged.mac);
    forged.chain_hash = encoding::chain_hash(&prev.chain_hash, &forged.leaf_hash);
    store::insert_entries(t.db.conn(), &[forged.clone()]).await.unwrap();
    let mut frontier: Frontier = store::read_head(t.db.conn()).await.unwrap().frontier;
    frontier.push(forged.leaf_hash, |_, _, _| {});
    store::write_head(t.db.conn(), &store::Head { seq, chain_hash: forged.chain_hash, frontier, recorded_at_us: 0 })
        .await
        .unwrap();
}

both_backends! {
    async fn an_inserted_forged_row_is_refused_by_the_mac_and_never_chained_onto(backend: Backend) {
        let Some((t, ledger, tasks)) = setup(backend).await else { return };
        forge_row(&t, N + 1).await;
        assert_eq!(failure(&keyed_verify(&ledger).await), (Some(N + 1), FailureKind::MacInvalid));
        // The running ledger refuses to chain onto it: fail closed.
        let err = ledger.append_one(crate::support::event(999)).await.unwrap_err();
        assert!(matches!(err, LedgerError::CommitFailed), "{err:?}");
        assert_eq!(ledger.head().await.unwrap().seq, N + 1, "nothing was appended after the forged row");
        let latest = ledger.checkpoint_now().await.unwrap().unwrap();
        assert_eq!(latest.tree_size, N, "the forged row is never signed");
        ledger.shutdown(tasks).await.unwrap();
        // And a restart refuses to open on it.
        let err = custos_engine::ledger::Ledger::open(
            t.db.clone(), &KEK, crate::support::config(),
            std::sync::Arc::new(custos_engine::clock::SystemClock), std::sync::Arc::new(custos_engine::clock::OsRandom),
        ).await.unwrap_err();
        assert!(err.to_string().contains("refusing to append to a damaged ledger"), "{err}");
    }
}

both_backends! {
    async fn a_forged_row_without_a_head_update_is_found_beyond_the_head(backend: Backend) {
        let Some((t, ledger, tasks)) = setup(backend).await else { return };
        ledger.shutdown(tasks).await.unwrap();
        let head = store::read_head(t.db.conn()).await.unwrap();
        forge_row(&t, N + 1).await;
        store::write_head(t.db.conn(), &head).await.unwrap();
        let report = verify::verify(&t.db, &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
        assert_eq!(failure(&report), (Some(N + 1), FailureKind::UnexpectedEntry));
    }
}

both_backends! {
    async fn a_chain_recomputed_without_the_keys_fails_the_signed_root_and_the_macs(backend: Backend) {
        let Some((t, ledger, tasks)) = setup(backend).await else { return };
        ledger.shutdown(tasks).await.unwrap();
        // Rewrite entry K's actor and recompute every leaf, chain value, node and the head.
        let entries = store::read_entries(t.db.conn(), 1, N, N).await.unwrap();
        t.sql("DELETE FROM ledger_entries").await;
        let mut chain = encoding::GENESIS_CHAIN;
        let mut frontier = Frontier::new();
        let mut rewritten = Vec::new();
        for mut e in entries {
            if e.header.seq == K {
                e.header.fields.actor_id = Some("someone-else".into());
            }
            let hb = encoding::header_bytes(&e.header);
            e.leaf_hash = encoding::leaf_hash(&hb, e.key_id, &e.iv, &e.ciphertext, &e.mac);
            chain = encoding::chain_hash(&chain, &e.leaf_hash);
            e.chain_hash = chain;
            frontier.push(e.leaf_hash, |_, _, _| {});
            rewritten.push(e);
        }
        store::insert_entries(t.db.conn(), &rewritten).await.unwrap();
        store::write_head(t.db.conn(), &store::Head { seq: N, chain_hash: chain, frontier, recorded_at_us: 0 }).await.unwrap();
        let public = verify::verify(&t.db, &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
        let (seq, kind) = failure(&public);
        assert_eq!(kind, FailureKind::RootMismatch);
        assert!(seq.unwrap() <= K, "the failing range starts at or before the rewritten entry: {public:?}");
        let keys = Keyring::load(&t.db, &KEK).await.unwrap();
        let keyed = verify::verify(&t.db, &ledger.verifier(), Some(&keys), VerifyScope::default(), |_| {}).await.unwrap();
        assert_eq!(failure(&keyed), (Some(K), FailureKind::MacInvalid));
    }
}

both_backends! {
    async fn a_forged_checkpoint_is_refused(backend: Backend) {
        let Some((t, ledger, tasks)) = setup(backend).await else { return };
        ledger.shutdown(tasks).await.unwrap();
        // Signed by a key that is not the ledger's, under the same name.
        let impostor = NoteSigner::new(ledger.origin(), &[9u8; 32]).unwrap();
        let head = store::read_head(t.db.conn()).await.unwrap();
        let cp = Checkpoint { origin: ledger.origin().into(), tree_size: N + 5, root_hash: head.frontier.root() };
        store::insert_checkpoint(t.db.conn(), &store::CheckpointRow {
            tree_size: N + 5, root_hash: cp.root_hash, note: impostor.sign_checkpoint(&cp), created_at_us: 0,
        }).await.unwrap();
        let report = verify::verify(&t.db, &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
        assert_eq!(failure(&report), (Some(N + 5), FailureKind::CheckpointInvalid));
        // An edited note of a real checkpoint is refused too.
        t.sql(&format!("DELETE FROM checkpoints WHERE tree_size = {}", N + 5)).await;
        t.sql(&format!("UPDATE checkpoints SET note = replace(note, '\n{N}\n', '\n{}\n') WHERE tree_size = {N}", N - 1)).await;
        let report = verify::verify(&t.db, &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
        assert_eq!(failure(&report), (Some(N), FailureKind::CheckpointInvalid));
    }
}

both_backends! {
    async fn a_replaced_wrapped_key_is_refused(backend: Backend) {
        let Some((t, ledger, tasks)) = setup(backend).await else { return };
        ledger.rotate_key().await.unwrap();
        ledger.shutdown(tasks).await.unwrap();
        // Put data key 3's (valid) wrapped blob in place of key 1's.
        t.sql("UPDATE ledger_keys SET wrapped = (SELECT wrapped FROM ledger_keys WHERE key_id = 3) WHERE key_id = 1").await;
        let err = Keyring::load(&t.db, &KEK).await.unwrap_err();
        assert!(matches!(err, LedgerError::KeyTampered { key_id: 1, .. }), "{err:?}");
        let err = open_err(&t).await;
        assert!(matches!(err, LedgerError::KeyTampered { key_id: 1, .. }), "{err:?}");
    }
}

async fn open_err(t: &TestDb) -> LedgerError {
    Ledger::open(
        t.db.clone(),
        &KEK,
        crate::support::config(),
        std::sync::Arc::new(custos_engine::clock::SystemClock),
        std::sync::Arc::new(custos_engine::clock::OsRandom),
    )
    .await
    .unwrap_err()
}

both_backends! {
    async fn a_forged_row_far_beyond_the_head_is_reached_at_once(backend: Backend) {
        // The verifier reads page-wide seq ranges; across a range with no
        // rows it jumps to the next seq held instead of walking the gap.
        let Some((t, ledger, tasks)) = setup(backend).await else { return };
        ledger.shutdown(tasks).await.unwrap();
        let far = N + 1_000_000_000;
        let mut forged = store::read_entry(t.db.conn(), N).await.unwrap().unwrap();
        forged.header.seq = far;
        forged.header.event_id = uuid::Uuid::now_v7();
        store::insert_entries(t.db.conn(), &[forged]).await.unwrap();
        // The whole ledger: the row beyond the head is named.
        let report = verify::verify(&t.db, &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
        assert_eq!(failure(&report), (Some(N + 1), FailureKind::UnexpectedEntry));
        assert!(format!("{report:?}").contains(&far.to_string()), "{report:?}");
        // A range up to the forged row: scanned across the billion empty
        // seqs (one lookup on PostgreSQL, not 250,000 page queries), the
        // gap reported where the next entry was due.
        let scope = VerifyScope { from_seq: None, to_seq: Some(far) };
        let report = verify::verify(&t.db, &ledger.verifier(), None, scope, |_| {}).await.unwrap();
        assert_eq!(failure(&report), (Some(N + 1), FailureKind::MissingEntry));
    }
}

/// A verification whose read fails on PostgreSQL (here a column renamed
/// under it, so the page's `COPY` is refused as it starts) reports the
/// error and puts no connection back in the pool one answer behind: sqlx
/// leaves such a refusal's `ReadyForQuery` unread, and a connection
/// returned in that state would give each later query the previous one's
/// result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_refused_on_postgresql_leaves_every_pooled_connection_in_step() {
    let Some((t, ledger, tasks)) = setup(Backend::Postgres).await else { return };
    t.sql("ALTER TABLE ledger_entries RENAME COLUMN tenant TO tenant_renamed").await;
    let refused = verify::verify(ledger.db(), &ledger.verifier(), None, VerifyScope::default(), |_| {}).await;
    let err = refused.expect_err("a verification that could not read must not report a result");
    assert!(err.to_string().contains("tenant"), "{err}");
    t.sql("ALTER TABLE ledger_entries RENAME COLUMN tenant_renamed TO tenant").await;
    // Round the pool several times: each query answered with its own row.
    for n in 0..40i64 {
        let row =
            sea_orm::ConnectionTrait::query_one_raw(t.db.conn(), t.db.stmt(&format!("SELECT {n}::int8 AS n"), vec![]))
                .await
                .unwrap();
        assert_eq!(row.map(|r| r.try_get::<i64>("", "n").unwrap()), Some(n), "query {n}");
    }
    assert!(keyed_verify(&ledger).await.is_intact());
    ledger.shutdown(tasks).await.unwrap();
}

both_backends! {
    /// A removal that commits after verification has read the retention
    /// records but before its scan starts (here: from the progress report
    /// sent just before the scan) has its record checked when its
    /// tombstones are met, instead of being reported as tombstones without
    /// one.
    async fn a_removal_committed_as_the_scan_starts_is_checked_not_reported(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, N, 8).await;
        ledger.checkpoint_now().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut removed = false;
        let report = verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |p| {
            if p.checked == 0 && !removed {
                removed = true;
                crate::support::block_on(ledger.tombstone(&[K, K + 1], dir.path(), "erasure", "late")).unwrap();
            }
        })
        .await
        .unwrap();
        assert!(removed);
        assert!(report.is_intact(), "{report:?}");
        assert_eq!((report.entries_checked, report.tombstones_checked, report.removals.len()), (N - 2, 2, 1), "{report:?}");
        assert!(report.removals[0].anchor_checked, "{report:?}");
        // A tombstone naming a record that is nowhere is still reported.
        t.drop_guards().await;
        t.sql("INSERT INTO ledger_tombstones (seq, anchor_seq, leaf_hash, chain_hash) \
               SELECT seq, 1000000, leaf_hash, chain_hash FROM ledger_entries WHERE seq = 30")
            .await;
        t.sql("DELETE FROM ledger_entries WHERE seq = 30").await;
        let report = keyed_verify(&ledger).await;
        assert_eq!(failure(&report), (Some(30), FailureKind::RemovalInvalid));
        let detail = report.failure.unwrap().detail;
        assert!(detail.contains("without a valid retention record: no retention record is anchored at seq 1000000"), "{detail}");
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    /// A tombstone slipped in under a retention record verification has
    /// already checked (after it read the records, before its scan: here
    /// from the progress report) is found: the tombstones the scan meets
    /// under a record must be exactly the set the record signed (a
    /// tombstone's leaf is taken as stored, so its hashes alone prove
    /// nothing).
    async fn a_tombstone_slipped_in_under_a_checked_record_is_found(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, N, 8).await;
        let dir = tempfile::tempdir().unwrap();
        ledger.tombstone(&[K, K + 2], dir.path(), "erasure", "run-1").await.unwrap();
        ledger.checkpoint_now().await.unwrap();
        assert!(keyed_verify(&ledger).await.is_intact());
        t.drop_guards().await;
        // Entry K + 1, inside the record's range, taken away and a
        // tombstone with its hashes put under the record's anchor (N + 1).
        let anchor = N + 1;
        let slip = [
            format!(
                "INSERT INTO ledger_tombstones (seq, anchor_seq, leaf_hash, chain_hash) \
                 SELECT seq, {anchor}, leaf_hash, chain_hash FROM ledger_entries WHERE seq = {}",
                K + 1
            ),
            format!("DELETE FROM ledger_entries WHERE seq = {}", K + 1),
        ];
        let mut slipped = false;
        let report = verify::verify(ledger.db(), &ledger.verifier(), None, VerifyScope::default(), |p| {
            if p.checked == 0 && !slipped {
                slipped = true;
                for sql in &slip {
                    crate::support::block_on(sea_orm::ConnectionTrait::execute_unprepared(t.db.conn(), sql)).unwrap();
                }
            }
        })
        .await
        .unwrap();
        assert!(slipped);
        assert_eq!(failure(&report), (Some(anchor), FailureKind::RemovalInvalid), "{report:?}");
        let detail = report.failure.unwrap().detail;
        assert!(detail.contains("the scan met 3 tombstones") && detail.contains("not the 2 entries"), "{detail}");
        // Read before the records, the same change is named by their check.
        assert_eq!(failure(&public_verify(&ledger).await), (Some(anchor), FailureKind::RemovalInvalid));
        ledger.shutdown(tasks).await.unwrap();
    }
}
