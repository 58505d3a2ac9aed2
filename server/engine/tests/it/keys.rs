//! Key-encryption key providers and data-key rotation across processes.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use custos_engine::clock::{OsRandom, SystemClock};
use custos_engine::keys::{FileKek, KekError, KekProvider as _};
use custos_engine::ledger::{Ledger, LedgerConfig};

use crate::support::{Backend, KEK, TestDb, config, event, open_ledger};

#[test]
fn a_generated_kek_file_is_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/dir/kek.key");
    FileKek::generate(&path, &OsRandom).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    FileKek::new(&path).load().unwrap();
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(FileKek::generate(&path, &OsRandom), Err(KekError::Exists(_))));
    assert_eq!(std::fs::read(&path).unwrap(), before, "the existing key is untouched");
}

#[test]
fn a_kek_file_readable_by_others_or_malformed_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kek.key");
    FileKek::generate(&path, &OsRandom).unwrap();
    let secret = std::fs::read_to_string(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = FileKek::new(&path).load().unwrap_err();
    assert!(matches!(err, KekError::Permissions { mode: 0o644, .. }), "{err:?}");
    assert!(err.to_string().contains("chmod 600"), "{err}");

    for (content, reason) in [("not base64!!", "not valid base64"), ("c2hvcnQ=", "exactly 32 bytes")] {
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = FileKek::new(&path).load().unwrap_err().to_string();
        assert!(err.contains(reason) && !err.contains(content), "{err}");
    }
    assert!(!FileKek::new(&path).describe().contains(secret.trim()));
    let err = FileKek::new(dir.path().join("missing.key")).load().unwrap_err().to_string();
    assert!(err.contains("missing.key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_ledger_seals_with_a_key_rotated_by_another_process() {
    let t = TestDb::new(Backend::Sqlite).await.unwrap();
    let cfg = LedgerConfig { checkpoint_interval: Duration::from_millis(100), ..config() };
    let (running, tasks) =
        Ledger::open(t.db.clone(), &KEK, cfg, Arc::new(SystemClock), Arc::new(OsRandom)).await.unwrap();
    running.append_one(event(1)).await.unwrap();
    // Another process (`custos keys rotate`) rotates on the same database.
    let (other, other_tasks) = open_ledger(&TestDb::connect(&t.url).await).await;
    let new_key = other.rotate_key().await.unwrap();
    other.shutdown(other_tasks).await.unwrap();
    // Within a checkpoint tick the running ledger seals with the new key.
    let mut waited = 0;
    while running.keys().data_key_ids().1 != new_key {
        assert!(waited < 50, "the running ledger never picked up key {new_key}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    let r = running.append_one(event(2)).await.unwrap();
    assert_eq!(running.entry(r.seq).await.unwrap().unwrap().key_id, new_key);
    running.shutdown(tasks).await.unwrap();
}
