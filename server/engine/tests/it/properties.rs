//! Property tests: random appends, rotations and restarts always verify;
//! flipping any single stored byte never does.

use std::sync::Arc;

use custos_engine::clock::{OsRandom, SystemClock};
use custos_engine::ledger::verify::{self, VerifyScope};
use custos_engine::ledger::{Ledger, store};
use proptest::prelude::*;

use crate::support::{Backend, KEK, TestDb, config, event};

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    Rotate,
    Restart,
    Checkpoint,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..40).prop_map(Op::Append),
        1 => Just(Op::Rotate),
        1 => Just(Op::Restart),
        2 => Just(Op::Checkpoint),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn open(db: &custos_engine::storage::Database) -> (Ledger, custos_engine::ledger::LedgerTasks) {
    Ledger::open(db.clone(), &KEK, config(), Arc::new(SystemClock), Arc::new(OsRandom)).await.unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_appends_rotations_and_restarts_always_verify(ops in prop::collection::vec(op(), 1..25)) {
        runtime().block_on(run_ops(Backend::Sqlite, ops));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    #[test]
    fn random_appends_rotations_and_restarts_always_verify_on_postgres(ops in prop::collection::vec(op(), 1..25)) {
        runtime().block_on(run_ops(Backend::Postgres, ops));
    }
}

async fn run_ops(backend: Backend, ops: Vec<Op>) {
    let Some(t) = TestDb::new(backend).await else { return };
    let (mut ledger, mut tasks) = open(&t.db).await;
    let mut expected = 0u64;
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Append(n) => {
                let rs = ledger.append((0..*n as u64).map(|k| event(i as u64 * 100 + k)).collect()).await.unwrap();
                expected += *n as u64;
                assert_eq!(rs.last().unwrap().seq, expected);
            }
            Op::Rotate => {
                ledger.rotate_key().await.unwrap();
            }
            Op::Checkpoint => {
                ledger.checkpoint_now().await.unwrap();
            }
            Op::Restart => {
                ledger.shutdown(tasks).await.unwrap();
                (ledger, tasks) = open(&TestDb::connect(&t.url).await).await;
            }
        }
    }
    ledger.checkpoint_now().await.unwrap();
    let r = verify::verify(ledger.db(), &ledger.verifier(), Some(ledger.keys()), VerifyScope::default(), |_| {})
        .await
        .unwrap();
    assert!(r.is_intact(), "{ops:?}: {r:?}");
    assert_eq!(r.entries_checked, expected);
    ledger.shutdown(tasks).await.unwrap();
}

/// The byte columns of an entry (text and integer columns: see `tamper`).
const BYTE_COLUMNS: [&str; 5] = ["iv", "ciphertext", "mac", "leaf_hash", "chain_hash"];

#[test]
fn flipping_any_single_stored_byte_never_verifies() {
    runtime().block_on(async {
        let t = TestDb::new(Backend::Sqlite).await.unwrap();
        let (ledger, tasks) = open(&t.db).await;
        ledger.append((0..8).map(event).collect()).await.unwrap();
        ledger.checkpoint_now().await.unwrap();
        ledger.shutdown(tasks).await.unwrap();
        t.drop_guards().await;
        let keys = custos_engine::ledger::keyring::Keyring::load(&t.db, &KEK).await.unwrap();
        let mut flips = 0;
        for seq in 1..=8u64 {
            let e = store::read_entry(t.db.conn(), seq).await.unwrap().unwrap();
            let columns: [(&str, Vec<u8>); 5] = [
                (BYTE_COLUMNS[0], e.iv.to_vec()),
                (BYTE_COLUMNS[1], e.ciphertext.clone()),
                (BYTE_COLUMNS[2], e.mac.to_vec()),
                (BYTE_COLUMNS[3], e.leaf_hash.to_vec()),
                (BYTE_COLUMNS[4], e.chain_hash.to_vec()),
            ];
            for (col, bytes) in columns {
                // Every byte position, one random bit each (all bits for the first entry).
                for at in 0..bytes.len() {
                    let bits: Vec<u8> = if seq == 1 { (0..8).collect() } else { vec![(at as u8).wrapping_mul(37) % 8] };
                    for bit in bits {
                        let mut changed = bytes.clone();
                        changed[at] ^= 1 << bit;
                        t.sql(&format!("UPDATE ledger_entries SET {col} = {} WHERE seq = {seq}", t.blob(&changed)))
                            .await;
                        let r = verify::verify(&t.db, &ledger.verifier(), Some(&keys), VerifyScope::default(), |_| {})
                            .await
                            .unwrap();
                        assert_eq!(
                            r.failure.as_ref().map(|f| f.seq),
                            Some(Some(seq)),
                            "{col}[{at}] bit {bit} of seq {seq}"
                        );
                        flips += 1;
                    }
                    t.sql(&format!("UPDATE ledger_entries SET {col} = {} WHERE seq = {seq}", t.blob(&bytes))).await;
                }
            }
        }
        assert!(flips > 4000, "{flips} flips tried");
    });
}
