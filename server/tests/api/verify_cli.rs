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
