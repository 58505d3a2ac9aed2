//! Criterion benchmarks of the ledger core, each next to its baseline in the
//! same run: sealing and verifying one record against the raw AES-256-CBC +
//! SHA-256 work on the same bytes; inclusion proof verification; the
//! dashboards' counts of a 1,000-entry batch (added up on the sequencer's
//! thread for every commit) next to the MACs and hashes of the same
//! 1,000 entries.
//!
//! Run: `cargo bench -p custos-engine --bench ledger`

#![allow(clippy::unwrap_used)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use custos_engine::ledger::crypto::DataKey;
use custos_engine::ledger::encoding::{self, GENESIS_CHAIN};
use custos_engine::ledger::merkle::{self, Frontier};
use custos_engine::ledger::rollup;
use custos_engine::ledger::types::{EntryHeader, HeaderFields, StoredEntry};
use sha2::Digest;

fn header(seq: u64) -> EntryHeader {
    EntryHeader {
        seq,
        event_id: uuid::Uuid::from_u128(0x0192_f0c4_e4b0_7c3a_8e5f_1a2b_3c4d_5e6f),
        occurred_at_us: 1_764_115_200_000_000,
        recorded_at_us: 1_764_115_200_123_456,
        fields: HeaderFields {
            category: "authentication".into(),
            action: "user.login".into(),
            outcome: "success".into(),
            severity: "info".into(),
            actor_id: Some("user-42".into()),
            actor_kind: Some("user".into()),
            resource_type: Some("session".into()),
            resource_id: Some("s-9".into()),
            tenant: Some("acme".into()),
            channel: Some("api".into()),
            source_app: Some("portal".into()),
        },
    }
}

fn records(c: &mut Criterion) {
    let key = DataKey::derive(1, &[7u8; 32]);
    let iv = [9u8; 16];
    let payload = vec![b'x'; 512];
    let h = header(1_000_000);

    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    // Baseline: the raw primitives over the same bytes (AES-CBC of the
    // payload, one SHA-256 over a record-sized buffer, one over 64 bytes).
    g.bench_function("baseline_raw_aes_cbc_and_sha256", |b| {
        b.iter(|| {
            let ct = key.encrypt(&iv, &payload);
            let mut s = sha2::Sha256::new();
            s.update(&ct);
            s.update([0u8; 200]);
            let d1 = s.finalize();
            let d2 = sha2::Sha256::digest([d1.as_slice(), d1.as_slice()].concat());
            std::hint::black_box((ct, d2))
        })
    });
    g.bench_function("seal_one_record", |b| {
        b.iter(|| {
            let ct = key.encrypt(&iv, &payload);
            let hb = encoding::header_bytes(&h);
            let mac = key.mac(&hb, &iv, &ct);
            let leaf = encoding::leaf_hash(&hb, 1, &iv, &ct, &mac);
            std::hint::black_box(encoding::chain_hash(&GENESIS_CHAIN, &leaf))
        })
    });
    let ct = key.encrypt(&iv, &payload);
    let hb = encoding::header_bytes(&h);
    let mac = key.mac(&hb, &iv, &ct);
    let leaf = encoding::leaf_hash(&hb, 1, &iv, &ct, &mac);
    g.bench_function("verify_one_record", |b| {
        b.iter(|| {
            let hb = encoding::header_bytes(&h);
            assert_eq!(encoding::leaf_hash(&hb, 1, &iv, &ct, &mac), leaf);
            std::hint::black_box(key.open(&hb, &iv, &ct, &mac).map(|p| p.len()))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("merkle");
    let size: u64 = 1 << 20;
    let mut f = Frontier::new();
    let leaves: Vec<_> = (0..size).map(|i| merkle::hash_leaf(&i.to_be_bytes())).collect();
    for l in &leaves {
        f.push(*l, |_, _, _| {});
    }
    let root = f.root();
    let index = 777_777u64;
    let proof: Vec<_> =
        merkle::inclusion_ranges(index, size).into_iter().map(|r| merkle::range_hash(&leaves, r)).collect();
    g.bench_function("verify_inclusion_proof_1M_tree", |b| {
        b.iter(|| merkle::verify_inclusion(index, size, &leaves[index as usize], &proof, &root).unwrap())
    });
    g.bench_function("append_leaf_to_frontier", |b| {
        b.iter_batched(|| f.clone(), |mut f| f.push(leaf, |_, _, _| {}), BatchSize::SmallInput)
    });
    g.finish();
}

/// `custos bench ingest`'s first 1,000 entries (`custos_testkit::events`:
/// 503 actors, 11 actions in 10 categories, 3 tenants; no resource of the
/// kinds with latency counts), as stored.
fn batch() -> (Vec<StoredEntry>, Vec<Option<f64>>) {
    (0..1000u64)
        .map(|i| {
            let n = custos_testkit::events::entry(i);
            let e = StoredEntry {
                header: EntryHeader {
                    seq: i + 1,
                    event_id: n.event_id,
                    occurred_at_us: n.occurred_at_us,
                    recorded_at_us: n.occurred_at_us,
                    fields: n.fields,
                },
                key_id: 1,
                iv: [0; 16],
                ciphertext: n.payload,
                mac: [0; 32],
                leaf_hash: [0; 32],
                chain_hash: [0; 32],
            };
            (e, n.duration_ms)
        })
        .unzip()
}

fn batches(c: &mut Criterion) {
    let (entries, durations) = batch();
    let key = DataKey::derive(1, &[7u8; 32]);
    let mut g = c.benchmark_group("batch_1000");
    g.throughput(Throughput::Elements(entries.len() as u64));
    // Baseline: the MACs, leaf and chain hashes of the same entries, the
    // bulk of sealing's work on that thread (without the encryption, done
    // before, the Merkle frontier, or the copies into stored entries).
    g.bench_function("baseline_mac_and_hashes", |b| {
        b.iter(|| {
            let mut chain = GENESIS_CHAIN;
            for e in &entries {
                let hb = encoding::header_bytes(&e.header);
                let mac = key.mac(&hb, &e.iv, &e.ciphertext);
                let leaf = encoding::leaf_hash(&hb, 1, &e.iv, &e.ciphertext, &mac);
                chain = encoding::chain_hash(&chain, &leaf);
            }
            std::hint::black_box(chain)
        })
    });
    g.bench_function("dashboard_counts", |b| {
        b.iter(|| std::hint::black_box(rollup::aggregate(&entries, &durations).len()))
    });
    g.finish();
}

criterion_group!(benches, records, batches);
criterion_main!(benches);
