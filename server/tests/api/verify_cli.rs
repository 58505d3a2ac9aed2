//! `custos verify` as an auditor runs it: exit 0 intact, 1 tampered, 2 could
//! not verify.

use std::process::{Command, Output};

fn custos(args: &[&str], kek: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(args)
        .env("CUSTOS_KEK", kek)
        .env("CUSTOS_LOG__FILTER", "warn")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn custos_verify_exits_0_when_intact_1_when_tampered_and_2_when_it_cannot_verify() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let url = format!("sqlite://{}", db.display());
    let kek = "SGVyZSBpcyBhIDMyLWJ5dGUgdGVzdCBrZXkgISEhISE=";
    let made =
        custos(&["bench", "ingest", "--events", "3000", "--no-baseline", "--no-verify", "--database", &url], kek);
    assert!(made.status.success(), "{}", text(&made));
    let key = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["keys", "public-key"])
        .env("CUSTOS_DATABASE__URL", &url)
        .env("CUSTOS_LOG__FILTER", "warn")
        .output()
        .unwrap();
    let vkey = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    assert!(vkey.starts_with("custos.bench/ledger+"), "{vkey}");

    let ok = custos(&["verify", "--database", &url, "--public-key", &vkey], kek);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(text(&ok).contains("ledger is INTACT"), "{}", text(&ok));
    let ok = custos(&["verify", "--database", &url, "--public-key", &vkey, "--with-kek", "--json"], kek);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!((report["entries_checked"].as_u64(), report["macs_checked"].as_u64()), (Some(3000), Some(3000)));
    let one = custos(&["verify", "--database", &url, "--public-key", &vkey, "--with-kek", "--seq", "1234"], kek);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one));
    assert!(text(&one).contains("entry is INTACT"), "{}", text(&one));

    // Someone with write access drops the guard and edits an entry.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("DROP TRIGGER ledger_entries_no_update; UPDATE ledger_entries SET outcome = 'approved-by-nobody' WHERE seq = 100;")
        .unwrap();
    drop(conn);
    let bad = custos(&["verify", "--database", &url, "--public-key", &vkey], kek);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("FAILED verification at seq 100"), "{}", text(&bad));
    let bad_one = custos(&["verify", "--database", &url, "--public-key", &vkey, "--seq", "100"], kek);
    assert_eq!(bad_one.status.code(), Some(1), "{}", text(&bad_one));

    // Could not verify: no such file, a malformed key, a KEK that is not this ledger's.
    let missing = custos(&["verify", "--database", "sqlite:///nonexistent/x.db", "--public-key", &vkey], kek);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("does not exist"), "{}", text(&missing));
    let badkey = custos(&["verify", "--database", &url, "--public-key", "not-a-key"], kek);
    assert_eq!(badkey.status.code(), Some(2), "{}", text(&badkey));
    let wrong = custos(&["verify", "--database", &url, "--with-kek"], "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    assert_eq!(wrong.status.code(), Some(2), "{}", text(&wrong));
    assert!(text(&wrong).contains("does not match this database"), "{}", text(&wrong));
}

/// A copy of a (settled: no WAL left) database file to tamper with.
fn copy_db(from: &std::path::Path, to: &std::path::Path) -> String {
    std::fs::copy(from, to).unwrap();
    format!("sqlite://{}", to.display())
}

/// Rewinds the head to `keep` entries (as someone covering a cut would).
async fn rewind_head(url: &str, keep: u64) {
    use custos_engine::ledger::store;
    let db = custos_engine::storage::Database::connect(
        &secrecy::SecretString::from(url.to_owned()),
        &custos_engine::storage::PoolOptions::default(),
    )
    .await
    .unwrap();
    let last = store::read_entry(db.conn(), keep).await.unwrap().unwrap();
    let mut frontier = custos_engine::ledger::merkle::Frontier::new();
    for e in store::read_entries(db.conn(), 1, keep, keep).await.unwrap() {
        frontier.push(e.leaf_hash, |_, _, _| {});
    }
    store::write_head(db.conn(), &store::Head { seq: keep, chain_hash: last.chain_hash, frontier, recorded_at_us: 0 })
        .await
        .unwrap();
    db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custos_verify_finds_a_cut_tail_a_changed_node_and_a_rollback_below_a_kept_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let url = format!("sqlite://{}", db.display());
    let kek = "SGVyZSBpcyBhIDMyLWJ5dGUgdGVzdCBrZXkgISEhISE=";
    let made =
        custos(&["bench", "ingest", "--events", "1000", "--no-baseline", "--no-verify", "--database", &url], kek);
    assert!(made.status.success(), "{}", text(&made));
    let key = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["keys", "public-key"])
        .env("CUSTOS_DATABASE__URL", &url)
        .env("CUSTOS_LOG__FILTER", "warn")
        .output()
        .unwrap();
    let vkey = String::from_utf8(key.stdout).unwrap().trim().to_owned();
    // The auditor keeps the latest checkpoint (as `GET /api/audit/checkpoints` serves it).
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (size, note): (i64, String) = conn
        .query_row("SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    drop(conn);
    assert_eq!(size, 1000);
    let kept = dir.path().join("kept.checkpoint");
    std::fs::write(&kept, &note).unwrap();
    let kept = kept.display().to_string();
    let ok = custos(&["verify", "--database", &url, "--public-key", &vkey, "--trusted-checkpoint", &kept], kek);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(text(&ok).contains("1 kept checkpoints"), "{}", text(&ok));

    let drop_guards = "DROP TRIGGER ledger_entries_delete_purged_or_tombstoned; DROP TRIGGER checkpoints_no_delete; \
                       DROP TRIGGER merkle_nodes_no_update; DROP TRIGGER merkle_nodes_no_delete;";
    // 1. The last rows deleted: tampered (exit 1), not "could not verify".
    let cut = copy_db(&db, &dir.path().join("cut.db"));
    let c = rusqlite::Connection::open(dir.path().join("cut.db")).unwrap();
    c.execute_batch(&format!("{drop_guards} DELETE FROM ledger_entries WHERE seq > 990;")).unwrap();
    drop(c);
    let out = custos(&["verify", "--database", &cut, "--public-key", &vkey], kek);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("FAILED verification at seq 991"), "{}", text(&out));
    // 2. ...with the head rewound to match: the signed checkpoint still shows it.
    rewind_head(&cut, 990).await;
    let out = custos(&["verify", "--database", &cut, "--public-key", &vkey], kek);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("signed checkpoint covers 1000"), "{}", text(&out));
    // 3. ...and the checkpoints and nodes beyond removed too: only a kept checkpoint shows it.
    let c = rusqlite::Connection::open(dir.path().join("cut.db")).unwrap();
    c.execute_batch(
        "DELETE FROM checkpoints WHERE tree_size > 990; DELETE FROM merkle_nodes WHERE (idx + 1) << level > 990;",
    )
    .unwrap();
    drop(c);
    let out = custos(&["verify", "--database", &cut, "--public-key", &vkey], kek);
    assert_eq!(out.status.code(), Some(0), "without a kept checkpoint a consistent cut is invisible: {}", text(&out));
    let out = custos(&["verify", "--database", &cut, "--public-key", &vkey, "--trusted-checkpoint", &kept], kek);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("truncated"), "{}", text(&out));
    // A kept checkpoint that is not signed by this ledger's key cannot be used (exit 2).
    let forged = dir.path().join("forged.checkpoint");
    std::fs::write(&forged, note.replace("\n1000\n", "\n1001\n")).unwrap();
    let out = custos(
        &["verify", "--database", &url, "--public-key", &vkey, "--trusted-checkpoint", &forged.display().to_string()],
        kek,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("invalid --trusted-checkpoint"), "{}", text(&out));

    // 4. A stored Merkle node changed: proofs would lie, verification says so.
    let node = copy_db(&db, &dir.path().join("node.db"));
    let c = rusqlite::Connection::open(dir.path().join("node.db")).unwrap();
    c.execute_batch(&format!("{drop_guards} UPDATE merkle_nodes SET hash = zeroblob(32) WHERE level = 8 AND idx = 2;"))
        .unwrap();
    drop(c);
    let out = custos(&["verify", "--database", &node, "--public-key", &vkey], kek);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("FAILED verification at seq 513") && text(&out).contains("Merkle node"),
        "{}",
        text(&out)
    );

    // 5. The file itself cut short (the last pages of a settled database): damaged, exit 1.
    let short = dir.path().join("short.db");
    let bytes = std::fs::read(&db).unwrap();
    std::fs::write(&short, &bytes[..bytes.len() * 3 / 4]).unwrap();
    let out = custos(&["verify", "--database", &format!("sqlite://{}", short.display()), "--public-key", &vkey], kek);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("the database file is damaged"), "{}", text(&out));
    // The head row deleted (no trigger guards it: it moves at every commit),
    // or the whole file emptied: failed, not "could not verify".
    let headless = copy_db(&db, &dir.path().join("headless.db"));
    rusqlite::Connection::open(dir.path().join("headless.db"))
        .unwrap()
        .execute_batch("DELETE FROM ledger_head;")
        .unwrap();
    let out = custos(&["verify", "--database", &headless, "--public-key", &vkey], kek);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let out = custos(&["verify", "--database", &format!("sqlite://{}", empty.display()), "--public-key", &vkey], kek);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// The restore drill: back up, ingest more, lose the data directory,
/// restore, check; a changed, truncated or foreign-KEK backup is refused.
#[test]
fn a_backup_restores_into_a_verified_ledger_after_the_data_directory_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let backups = dir.path().join("backups");
    let kek = "SGVyZSBpcyBhIDMyLWJ5dGUgdGVzdCBrZXkgISEhISE=";
    let run = |args: &[&str], kek: &str| {
        Command::new(env!("CARGO_BIN_EXE_custos"))
            .args(args)
            .env("CUSTOS_KEK", kek)
            .env("CUSTOS_DATA_DIR", &data)
            .env("CUSTOS_BACKUP__DIR", &backups)
            .env("CUSTOS_LOG__FILTER", "warn")
            .output()
            .unwrap()
    };
    let seeded = run(&["demo", "seed", "--events", "400", "--days", "2"], kek);
    assert!(seeded.status.success(), "{}", text(&seeded));
    let made = run(&["backup", "create"], kek);
    assert!(made.status.success(), "{}", text(&made));
    let out = text(&made);
    let file = out.split("backup ").nth(1).and_then(|s| s.split(" written").next()).unwrap().to_owned();
    let head: u64 = out.split("ledger head seq ").nth(1).and_then(|s| s.split(',').next()).unwrap().parse().unwrap();
    assert!(head >= 401, "{out}");
    let listed = run(&["backup", "list"], kek);
    assert!(text(&listed).contains("done") && text(&listed).contains(".cbk"), "{}", text(&listed));
    // More events after the backup, and a checkpoint kept outside.
    assert!(run(&["demo", "seed", "--events", "150", "--days", "1", "--seed", "2"], kek).status.success());
    let cp = run(&["checkpoint"], kek);
    assert!(cp.status.success(), "{}", text(&cp));
    let note = String::from_utf8(cp.stdout).unwrap();
    let kept = dir.path().join("kept.checkpoint");
    std::fs::write(&kept, &note).unwrap();
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();

    // The disk is lost.
    std::fs::remove_dir_all(&data).unwrap();
    let restored = dir.path().join("restored");
    let r = run(
        &[
            "backup",
            "restore",
            &file,
            "--to",
            restored.to_str().unwrap(),
            "--trusted-checkpoint",
            kept.to_str().unwrap(),
        ],
        kek,
    );
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    let said = text(&r);
    assert!(said.contains("every chunk authenticated") && said.contains("integrity check: ok"), "{said}");
    assert!(said.contains(&format!("head seq {head}")), "{said}");
    assert!(said.contains(&format!("is {} events behind the checkpoint you gave", size - head)), "{said}");
    assert!(said.contains("restored backup is INTACT"), "{said}");
    // The restored ledger verifies on its own too, with exactly the entries backed up.
    let url = format!("sqlite://{}", restored.join("custos.db").display());
    let v = custos(&["verify", "--database", &url, "--with-kek", "--json"], kek);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(report["entries_checked"].as_u64(), Some(head));
    // Restoring again into the same place is refused; nothing is overwritten.
    let again = run(&["backup", "restore", &file, "--to", restored.to_str().unwrap()], kek);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));

    // A changed byte, a cut file, another KEK: refused (exit 1), nothing left behind.
    let bytes = std::fs::read(&file).unwrap();
    let mut changed = bytes.clone();
    let mid = changed.len() / 2;
    changed[mid] ^= 1;
    let bad = dir.path().join("changed.cbk");
    std::fs::write(&bad, &changed).unwrap();
    let out = run(&["backup", "restore", bad.to_str().unwrap(), "--to", dir.path().join("r2").to_str().unwrap()], kek);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("does not authenticate"), "{}", text(&out));
    assert!(
        !dir.path().join("r2").join("custos.db").exists() && !dir.path().join("r2").join("custos.db.partial").exists()
    );
    let cut = dir.path().join("cut.cbk");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let out = run(&["backup", "restore", cut.to_str().unwrap(), "--to", dir.path().join("r3").to_str().unwrap()], kek);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let other = "T3RoZXIgMzItYnl0ZSBrZXkgZm9yIHRoZSB0ZXN0cyE=";
    let out = run(&["backup", "restore", &file, "--to", dir.path().join("r4").to_str().unwrap()], other);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not the KEK it was taken under"), "{}", text(&out));
    for r in ["r3", "r4"] {
        assert!(
            !dir.path().join(r).join("custos.db").exists() && !dir.path().join(r).join("custos.db.partial").exists()
        );
    }

    // A backup of a ledger someone had already tampered with authenticates
    // (it is what was there) but fails verification: it is not put in place.
    assert!(run(&["demo", "seed", "--events", "50", "--days", "1", "--seed", "3"], kek).status.success());
    let conn = rusqlite::Connection::open(data.join("custos.db")).unwrap();
    conn.execute_batch(
        "DROP TRIGGER ledger_entries_no_update; UPDATE ledger_entries SET outcome = 'denied' WHERE seq = 20;",
    )
    .unwrap();
    drop(conn);
    let made = run(&["backup", "create"], kek);
    assert!(made.status.success(), "{}", text(&made));
    let out = text(&made);
    let tampered = out.split("backup ").nth(1).and_then(|s| s.split(" written").next()).unwrap().to_owned();
    let r5 = dir.path().join("r5");
    let out = run(&["backup", "restore", &tampered, "--to", r5.to_str().unwrap()], kek);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("FAILED verification at seq 20"), "{}", text(&out));
    assert!(!r5.join("custos.db").exists() && r5.join("custos.db.failed").exists(), "kept aside, not in place");
}
