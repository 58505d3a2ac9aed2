//! The trust boundary of the ledger (issue 13): what someone with write
//! access to the database (and an ingest key) can no longer do unseen.
//! - forge a purge: delete the oldest history and point verification at a
//!   later chain state;
//! - change a stored Merkle node (proofs are served from them);
//! - truncate or rewrite the ledger and its own checkpoints, against a
//!   checkpoint an auditor kept;
//! - stop checkpointing with an unsigned row claiming a huge tree.

use custos_engine::ledger::merkle::Frontier;
use custos_engine::ledger::note::{Checkpoint, NoteSigner};
use custos_engine::ledger::purge_record::PurgeRecord;
use custos_engine::ledger::store;
use custos_engine::ledger::verify::{self, FailureKind, VerifyReport, VerifyScope};
use custos_engine::ledger::{Ledger, encoding};
use custos_engine::storage::DbKind;

use crate::support::{TestDb, both_backends, fill, open_ledger};

async fn public_verify(ledger: &Ledger, trusted: &[Checkpoint]) -> VerifyReport {
    verify::verify_with(ledger.db(), &ledger.verifier(), None, VerifyScope::default(), trusted, |_| {}).await.unwrap()
}

async fn keyed_verify(ledger: &Ledger) -> VerifyReport {
    verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {}).await.unwrap()
}

fn failure(r: &VerifyReport) -> (Option<u64>, FailureKind, String) {
    let f = r.failure.as_ref().unwrap_or_else(|| panic!("tampering went undetected: {r:?}"));
    (f.seq, f.kind, f.detail.clone())
}

/// Drops every guard, the purge and Merkle node ones included.
async fn drop_all_guards(t: &TestDb) {
    t.drop_guards().await;
    match t.kind() {
        DbKind::Sqlite => {
            for g in [
                "merkle_nodes_no_update",
                "merkle_nodes_no_delete",
                "ledger_purges_need_signed_anchor",
                "ledger_purges_only_close_signed",
                "ledger_purges_no_delete",
            ] {
                t.sql(&format!("DROP TRIGGER {g}")).await;
            }
        }
        DbKind::Postgres => {
            t.sql("DROP TRIGGER merkle_nodes_no_change ON merkle_nodes").await;
            t.sql("DROP TRIGGER ledger_purges_need_anchor ON ledger_purges").await;
            t.sql("DROP TRIGGER ledger_purges_only_close ON ledger_purges").await;
            t.sql("DROP TRIGGER ledger_purges_no_delete ON ledger_purges").await;
        }
    }
}

/// Inserts a purge row of seq 1..=through anchored on `anchor`, with `note`.
async fn insert_purge(t: &TestDb, anchor: u64, through: u64, note: Option<&str>) -> Result<(), String> {
    let last = store::read_entry(t.db.conn(), through).await.unwrap().unwrap();
    let frontier = store::frontier_at(t.db.conn(), through).await.unwrap();
    let note = note.map_or("NULL".to_owned(), |n| format!("'{}'", n.replace('\'', "''")));
    let sql = format!(
        "INSERT INTO ledger_purges (anchor_seq, from_seq, through_seq, chain_hash, frontier, archive_sha256, \
         archive_name, active, created_at, note) VALUES ({anchor}, 1, {through}, {}, {}, {}, 'forged.ndjson', 1, 0, {note})",
        t.blob(&last.chain_hash),
        t.blob(&frontier.encode()),
        t.blob(&[0u8; 32])
    );
    use sea_orm::ConnectionTrait as _;
    t.db.conn().execute_unprepared(&sql).await.map(|_| ()).map_err(|e| e.to_string())
}

both_backends! {
    async fn a_forged_purge_is_refused_by_the_database_and_by_verification(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, 300, 100).await;
        ledger.checkpoint_now().await.unwrap();
        // An entry the server did not write cannot anchor a purge, even one
        // named `ledger.purge` (as a client could once send), nor can a
        // purge without a signed record be stored.
        let mut anchor = crate::support::event(1000);
        anchor.fields.action = "ledger.purge".into();
        let forged_anchor = ledger.append_one(anchor).await.unwrap().seq;
        let err = insert_purge(&t, forged_anchor, 256, Some("x")).await.unwrap_err();
        assert!(err.contains("anchor written by the server"), "{err}");
        ledger.shutdown(tasks).await.unwrap();

        // With every guard dropped, the database lets it through; verification does not.
        drop_all_guards(&t).await;
        insert_purge(&t, forged_anchor, 256, None).await.unwrap();
        t.sql("DELETE FROM ledger_entries WHERE seq <= 256").await;
        let (seq, kind, detail) = failure(&public_verify(&ledger, &[]).await);
        assert_eq!((seq, kind), (Some(forged_anchor), FailureKind::PurgeInvalid), "{detail}");
        assert!(detail.contains("no signed purge record"), "{detail}");

        // A record signed with another key, or a genuine-looking one over
        // another range, fails too.
        let last = store::read_entry(t.db.conn(), 257).await.unwrap();
        assert!(last.is_some());
        let record = PurgeRecord {
            origin: ledger.origin().into(),
            anchor_seq: forged_anchor,
            from_seq: 1,
            through_seq: 256,
            chain_hash: [0; 32],
            frontier: store::all_purges(t.db.conn()).await.unwrap()[0].frontier.encode(),
            archive_sha256: [0; 32],
            archive_name: "forged.ndjson".into(),
        };
        let impostor = NoteSigner::new(ledger.origin(), &[9u8; 32]).unwrap();
        t.sql(&format!("UPDATE ledger_purges SET note = '{}'", record.sign(&impostor))).await;
        let (_, kind, detail) = failure(&public_verify(&ledger, &[]).await);
        assert_eq!(kind, FailureKind::PurgeInvalid, "{detail}");
        assert!(detail.contains("signature"), "{detail}");
        // Signed with the real key (as if the key leaked) but not matching the stored row.
        t.sql(&format!("UPDATE ledger_purges SET note = '{}'", record.sign(ledger.keys().signer()))).await;
        let (_, kind, detail) = failure(&public_verify(&ledger, &[]).await);
        assert_eq!(kind, FailureKind::PurgeInvalid, "{detail}");
        assert!(detail.contains("does not match its signed record"), "{detail}");
    }
}

both_backends! {
    async fn a_genuine_purge_verifies_and_its_anchor_is_checked_with_the_kek(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let archives = tempfile::tempdir().unwrap();
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, 300, 100).await;
        let purged = ledger.purge_through(256, archives.path()).await.unwrap();
        ledger.checkpoint_now().await.unwrap();
        let report = keyed_verify(&ledger).await;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.purges.len(), 1);
        let p = &report.purges[0];
        assert_eq!((p.from_seq, p.through_seq, p.anchor_seq, p.anchor_checked), (1, 256, purged.anchor_seq, true));
        assert_eq!(p.archive_sha256, purged.archive_sha256);
        let public = public_verify(&ledger, &[]).await;
        assert!(public.is_intact() && !public.purges[0].anchor_checked, "{public:?}");
        ledger.shutdown(tasks).await.unwrap();
        // Changing the stored range (and re-signing is impossible without the key) is caught.
        drop_all_guards(&t).await;
        t.sql("UPDATE ledger_purges SET archive_name = 'elsewhere.ndjson'").await;
        let (_, kind, _) = failure(&public_verify(&ledger, &[]).await);
        assert_eq!(kind, FailureKind::PurgeInvalid);
    }
}

both_backends! {
    async fn a_changed_missing_or_extra_merkle_node_is_found(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, 600, 100).await;
        ledger.checkpoint_now().await.unwrap();
        let report = public_verify(&ledger, &[]).await;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.nodes_checked, 3, "two nodes of 256 and one of 512 entries");
        ledger.shutdown(tasks).await.unwrap();
        drop_all_guards(&t).await;
        let original = store::read_node(t.db.conn(), 8, 1).await.unwrap().unwrap();
        let mut changed = original;
        changed[0] ^= 1;
        t.sql(&format!("UPDATE merkle_nodes SET hash = {} WHERE level = 8 AND idx = 1", t.blob(&changed))).await;
        let (seq, kind, detail) = failure(&public_verify(&ledger, &[]).await);
        assert_eq!((seq, kind), (Some(257), FailureKind::NodeMismatch), "{detail}");
        assert!(detail.contains("seq 257..=512") && detail.contains("differs"), "{detail}");
        t.sql("DELETE FROM merkle_nodes WHERE level = 8 AND idx = 1").await;
        let (seq, kind, detail) = failure(&public_verify(&ledger, &[]).await);
        assert_eq!((seq, kind), (Some(257), FailureKind::NodeMismatch), "{detail}");
        assert!(detail.contains("missing"), "{detail}");
        t.sql(&format!("INSERT INTO merkle_nodes (level, idx, hash) VALUES (8, 1, {})", t.blob(&original))).await;
        assert!(public_verify(&ledger, &[]).await.is_intact(), "restored");
        t.sql(&format!("INSERT INTO merkle_nodes (level, idx, hash) VALUES (8, 7, {})", t.blob(&original))).await;
        let (seq, kind, detail) = failure(&public_verify(&ledger, &[]).await);
        assert_eq!((seq, kind), (Some(1793), FailureKind::NodeMismatch), "{detail}");
        assert!(detail.contains("beyond the end of the ledger"), "{detail}");
    }
}

both_backends! {
    async fn a_kept_checkpoint_catches_truncation_and_rewriting_of_the_whole_ledger(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        // An auditor keeps two checkpoints: of 200 and of 300 entries.
        fill(&ledger, 200, 100).await;
        let note = ledger.checkpoint_now().await.unwrap().unwrap().note;
        let kept_200 = ledger.verifier().open_checkpoint(&note).unwrap();
        fill(&ledger, 100, 100).await;
        let note = ledger.checkpoint_now().await.unwrap().unwrap().note;
        let kept = ledger.verifier().open_checkpoint(&note).unwrap();
        fill(&ledger, 20, 20).await;
        ledger.checkpoint_now().await.unwrap();
        let both = [kept_200.clone(), kept.clone()];
        let report = public_verify(&ledger, &both).await;
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.trusted_checkpoints, 2);
        // A kept tree the ledger does not extend fails its consistency proof.
        let other = Checkpoint { root_hash: [7; 32], ..kept_200.clone() };
        let (seq, kind, detail) = failure(&public_verify(&ledger, &[other]).await);
        assert_eq!((seq, kind), (Some(200), FailureKind::RootMismatch), "{detail}");
        assert!(detail.contains("not an extension"), "{detail}");
        ledger.shutdown(tasks).await.unwrap();
        drop_all_guards(&t).await;

        // Truncated below the kept checkpoint, its own checkpoints, nodes and head made to match.
        let keep = 250;
        t.sql(&format!("DELETE FROM ledger_entries WHERE seq > {keep}")).await;
        t.sql("DELETE FROM checkpoints").await;
        t.sql("DELETE FROM merkle_nodes").await;
        let last = store::read_entry(t.db.conn(), keep).await.unwrap().unwrap();
        let mut frontier = Frontier::new();
        for e in store::read_entries(t.db.conn(), 1, keep, keep).await.unwrap() {
            frontier.push(e.leaf_hash, |_, _, _| {});
        }
        store::write_head(t.db.conn(), &store::Head { seq: keep, chain_hash: last.chain_hash, frontier, recorded_at_us: 0 }).await.unwrap();
        assert!(public_verify(&ledger, &[]).await.is_intact(), "without a kept checkpoint this is undetectable");
        let (seq, kind, detail) = failure(&public_verify(&ledger, std::slice::from_ref(&kept)).await);
        assert_eq!((seq, kind), (Some(keep + 1), FailureKind::Truncated), "{detail}");

        // Rewritten consistently (every leaf, chain value and the head).
        let entries = store::read_entries(t.db.conn(), 1, keep, keep).await.unwrap();
        t.sql("DELETE FROM ledger_entries").await;
        let mut chain = encoding::GENESIS_CHAIN;
        let mut frontier = Frontier::new();
        let mut rewritten = Vec::new();
        for mut e in entries {
            if e.header.seq == 7 {
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
        store::write_head(t.db.conn(), &store::Head { seq: keep, chain_hash: chain, frontier, recorded_at_us: 0 }).await.unwrap();
        assert!(public_verify(&ledger, &[]).await.is_intact(), "without a kept checkpoint this is undetectable");
        let (seq, kind, detail) = failure(&public_verify(&ledger, std::slice::from_ref(&kept_200)).await);
        assert_eq!(kind, FailureKind::RootMismatch, "a rewritten prefix does not have the kept root: {detail}");
        assert!(seq.unwrap() <= 7, "{detail}");
    }
}

both_backends! {
    async fn an_unsigned_checkpoint_row_does_not_stop_checkpointing(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, 10, 10).await;
        ledger.checkpoint_now().await.unwrap();
        let impostor = NoteSigner::new(ledger.origin(), &[9u8; 32]).unwrap();
        let huge = Checkpoint { origin: ledger.origin().into(), tree_size: 1 << 40, root_hash: [1; 32] };
        store::insert_checkpoint(t.db.conn(), &store::CheckpointRow {
            tree_size: huge.tree_size, root_hash: huge.root_hash, note: impostor.sign_checkpoint(&huge), created_at_us: 0,
        })
        .await
        .unwrap();
        fill(&ledger, 5, 5).await;
        let latest = ledger.checkpoint_now().await.unwrap().unwrap();
        assert_eq!(latest.tree_size, 15, "a new checkpoint is signed past the forged row");
        assert_eq!(ledger.latest_checkpoint().await.unwrap().unwrap().tree_size, 15, "the forged row is never served");
        let (seq, kind, _) = failure(&public_verify(&ledger, &[]).await);
        assert_eq!((seq, kind), (Some(1 << 40), FailureKind::CheckpointInvalid), "and verification reports it");
        ledger.shutdown(tasks).await.unwrap();
    }
}
