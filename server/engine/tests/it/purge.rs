//! The retention purge path: archive, anchor, authorised delete, and
//! verification that continues from the anchor.

use custos_engine::ledger::LedgerError;
use custos_engine::ledger::purge::verify_archive;
use custos_engine::ledger::store;
use custos_engine::ledger::verify::{self, FailureKind, VerifyScope};
use sea_orm::ConnectionTrait;

use crate::support::{Backend, TestDb, block_on, both_backends, fill, open_ledger};

both_backends! {
    async fn a_purge_archives_anchors_and_deletes_and_verification_continues(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let archives = tempfile::tempdir().unwrap();
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, 700, 100).await;

        // 600 rounds down to a whole tile: 512.
        let first = ledger.purge_through(600, archives.path()).await.unwrap();
        assert_eq!((first.from_seq, first.through_seq, first.anchor_seq), (1, 512, 701));
        assert_eq!(verify_archive(&first.archive_path, &ledger.verifier()).unwrap(), 512);
        assert!(ledger.entry(512).await.unwrap().is_none() && ledger.entry(513).await.unwrap().is_some());

        fill(&ledger, 400, 100).await;
        ledger.checkpoint_now().await.unwrap();
        let report = verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {}).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!((report.from_seq, report.to_seq, report.entries_checked), (513, 1101, 589));

        // Proofs for retained entries still verify against the signed root.
        let cp = ledger.latest_checkpoint().await.unwrap().unwrap();
        for seq in [513u64, 700, 1101] {
            let e = ledger.entry(seq).await.unwrap().unwrap();
            let proof = ledger.inclusion_proof(seq, cp.tree_size).await.unwrap();
            custos_engine::ledger::merkle::verify_inclusion(seq - 1, cp.tree_size, &e.leaf_hash, &proof, &cp.root_hash).unwrap();
        }

        // A second purge continues from the first.
        let second = ledger.purge_through(1024, archives.path()).await.unwrap();
        assert_eq!((second.from_seq, second.through_seq), (513, 1024));
        assert_eq!(verify_archive(&second.archive_path, &ledger.verifier()).unwrap(), 512);
        ledger.checkpoint_now().await.unwrap();
        let report = verify::verify(ledger.db(), &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.from_seq, 1025);

        // A tampered archive does not verify.
        let text = std::fs::read_to_string(&second.archive_path).unwrap();
        let bad = archives.path().join("bad.ndjson");
        std::fs::write(&bad, text.replacen("document.read", "document.wipe", 1)).unwrap();
        assert!(verify_archive(&bad, &ledger.verifier()).is_err());

        // Outside the purge path, deletes are still refused.
        let err = t.db.conn().execute_unprepared("DELETE FROM ledger_entries WHERE seq = 1030").await.unwrap_err();
        assert!(err.to_string().contains("retention purge path"), "{err}");
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    async fn a_purge_of_less_than_a_tile_or_of_a_damaged_range_is_refused(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let archives = tempfile::tempdir().unwrap();
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, 300, 100).await;
        let err = ledger.purge_through(200, archives.path()).await.unwrap_err();
        assert!(matches!(err, LedgerError::Invalid(_)), "{err:?}");
        t.drop_guards().await;
        t.sql("UPDATE ledger_entries SET outcome = 'failure' WHERE seq = 100").await;
        let err = ledger.purge_through(256, archives.path()).await.unwrap_err();
        assert!(err.to_string().contains("fails verification"), "{err}");
        assert_eq!(store::max_entry_seq(t.db.conn()).await.unwrap(), 300, "nothing was deleted");
        let report = verify::verify(ledger.db(), &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
        assert_eq!(report.failure.unwrap().kind, FailureKind::FieldsChanged);
        ledger.shutdown(tasks).await.unwrap();
    }
}

both_backends! {
    /// A purge that commits as a verification starts (here: from the
    /// progress report sent just before its scan) would show as the purged
    /// entries missing: the verification runs again from the new start,
    /// and the ledger is reported intact.
    async fn a_purge_committed_as_a_verification_starts_is_verified_from_the_new_start(backend: Backend) {
        let Some(t) = TestDb::new(backend).await else { return };
        let archives = tempfile::tempdir().unwrap();
        let (ledger, tasks) = open_ledger(&t.db).await;
        fill(&ledger, 700, 100).await;
        ledger.checkpoint_now().await.unwrap();
        let (mut purged, mut starts) = (false, 0);
        let report = verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |p| {
            if p.checked > 0 {
                return;
            }
            starts += 1;
            if !purged {
                purged = true;
                block_on(ledger.purge_through(600, archives.path())).unwrap();
            }
        })
        .await
        .unwrap();
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(starts, 2, "verified again from the purge's end");
        // 513..=700 and the purge's anchor entry.
        assert_eq!((report.from_seq, report.to_seq, report.entries_checked, report.purges.len()), (513, 701, 189, 1));
        ledger.shutdown(tasks).await.unwrap();
    }
}

/// A ledger of 700 entries purged through 512, entry 600 then deleted,
/// verified while `forge` runs once the first pass has read the purges
/// (from its progress report; the purges' insert guard dropped).
async fn verified_while_forging(backend: Backend, forge: &[&str]) -> Option<verify::VerifyReport> {
    let t = TestDb::new(backend).await?;
    let archives = tempfile::tempdir().unwrap();
    let (ledger, tasks) = open_ledger(&t.db).await;
    fill(&ledger, 700, 100).await;
    ledger.purge_through(600, archives.path()).await.unwrap();
    ledger.checkpoint_now().await.unwrap();
    t.drop_guards().await;
    t.sql("DELETE FROM ledger_entries WHERE seq = 600").await;
    let report = verify::verify(ledger.db(), &ledger.verifier(), None, VerifyScope::default(), |_| {}).await.unwrap();
    assert_eq!(report.failure.map(|f| (f.seq, f.kind)), Some((Some(600), FailureKind::MissingEntry)));
    let drop = match backend {
        crate::support::Backend::Sqlite => "DROP TRIGGER ledger_purges_need_signed_anchor",
        crate::support::Backend::Postgres => "DROP TRIGGER ledger_purges_need_anchor ON ledger_purges",
    };
    t.sql(drop).await;
    let mut forged = false;
    let report = verify::verify(ledger.db(), &ledger.verifier(), None, VerifyScope::default(), |p| {
        if p.checked == 0 && !forged {
            forged = true;
            for sql in forge {
                block_on(t.db.conn().execute_unprepared(sql)).unwrap();
            }
        }
    })
    .await
    .unwrap();
    assert!(forged);
    ledger.shutdown(tasks).await.unwrap();
    Some(report)
}

/// A copy of the real purge record (anchor 701) as another purge: anchored
/// at `anchor`, claiming seqs 513..=`through`, with no valid note. (Its
/// frontier, one hash, decodes only for a `through` with one bit set.)
fn forged_purge(anchor: u64, through: u64) -> String {
    format!(
        "INSERT INTO ledger_purges (anchor_seq, from_seq, through_seq, chain_hash, frontier, archive_sha256, \
         archive_name, active, created_at, note) SELECT {anchor}, 513, {through}, chain_hash, frontier, archive_sha256, \
         archive_name, active, created_at, note FROM ledger_purges WHERE anchor_seq = 701"
    )
}

both_backends! {
    /// A purge row forged while a verification runs cannot buy a tampered
    /// ledger a clean report: the pass that found the damage is run again
    /// (a newer purge appeared) and the rerun reports the forged record,
    /// keeping what the first pass found in its detail.
    async fn a_purge_forged_during_a_verification_is_reported_not_used_to_rerun_clean(backend: Backend) {
        let Some(report) = verified_while_forging(backend, &[&forged_purge(2000, 1024)]).await else { return };
        let failure = report.failure.expect("not intact");
        assert_eq!((failure.seq, failure.kind), (Some(2000), FailureKind::PurgeInvalid), "{}", failure.detail);
        assert!(failure.detail.contains("an earlier pass, before a purge committed, found: entry seq 600 is missing"), "{}", failure.detail);
    }
}

both_backends! {
    /// A rerun that cannot complete (here: prompted by a forged purge row
    /// that decodes, it stops on another that does not) leaves the first
    /// pass's report standing, not an error in its place (as a rerun's
    /// error once did).
    async fn a_rerun_that_cannot_complete_leaves_the_first_report(backend: Backend) {
        let forge = [forged_purge(2000, 1024), forged_purge(2001, 900)];
        let Some(report) = verified_while_forging(backend, &[&forge[0], &forge[1]]).await else { return };
        let failure = report.failure.expect("not intact");
        assert_eq!((failure.seq, failure.kind), (Some(600), FailureKind::MissingEntry), "{}", failure.detail);
    }
}
