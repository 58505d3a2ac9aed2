//! Known-answer vectors.
//!
//! Origins:
//! - RFC 6962 trees, inclusion and consistency proofs: transparency-dev/merkle,
//!   `testonly/constants.go` and `proof/verify_test.go` (Apache-2.0), which
//!   carry the vectors of the original certificate-transparency test suite.
//! - Signed notes: golang.org/x/mod `sumdb/note/note_test.go` (`TestSign`,
//!   `TestNewVerifier`): the PeterNeumann key and its signature.
//! - Sealing (ciphertext, MAC, leaf, chain, key wrap): `vectors/seal_v1.txt`,
//!   computed by `vectors/gen_seal_vectors.py`, an independent implementation
//!   of the documented layout using Python's hashlib/hmac and the OpenSSL CLI.

use base64::Engine as _;
use custos_engine::ledger::crypto::{DataKey, Kek, KeyPurpose};
use custos_engine::ledger::encoding::{self, GENESIS_CHAIN};
use custos_engine::ledger::merkle::{self, Frontier};
use custos_engine::ledger::note::{Checkpoint, NoteSigner, NoteVerifier};
use custos_engine::ledger::types::{EntryHeader, Hash, HeaderFields};

fn h(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

fn leaf_inputs() -> Vec<Vec<u8>> {
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
        .iter()
        .map(|s| hex::decode(s).unwrap())
        .collect()
}

fn roots() -> Vec<Hash> {
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    .iter()
    .map(|s| h(s))
    .collect()
}

fn leaves() -> Vec<Hash> {
    leaf_inputs().iter().map(|d| merkle::hash_leaf(d)).collect()
}

#[test]
fn merkle_roots_match_the_rfc6962_vectors_for_every_size() {
    assert_eq!(Frontier::new().root(), h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    let mut f = Frontier::new();
    for (i, leaf) in leaves().into_iter().enumerate() {
        f.push(leaf, |_, _, _| {});
        assert_eq!(f.root(), roots()[i], "root of size {}", i + 1);
        assert_eq!(merkle::range_hash(&leaves(), 0..(i as u64 + 1)), roots()[i]);
        let decoded = Frontier::decode(f.size(), &f.encode()).unwrap();
        assert_eq!(decoded.root(), roots()[i]);
    }
}

#[test]
fn completed_subtrees_are_reported_with_their_level_and_index() {
    let mut nodes = Vec::new();
    let mut f = Frontier::new();
    for leaf in leaves() {
        f.push(leaf, |level, index, hash| nodes.push((level, index, *hash)));
    }
    // transparency-dev NodeHashes(): level 1, 2 and 3 complete subtrees.
    let expected = [
        (1, 0, "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        (1, 1, "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        (2, 0, "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        (1, 2, "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        (1, 3, "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
        (2, 1, "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        (3, 0, "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
    ];
    let expected: Vec<_> = expected.iter().map(|(l, i, s)| (*l, *i, h(s))).collect();
    assert_eq!(nodes, expected);
}

fn proof_hashes(ranges: Vec<std::ops::Range<u64>>) -> Vec<Hash> {
    ranges.into_iter().map(|r| merkle::range_hash(&leaves(), r)).collect()
}

#[test]
fn inclusion_proofs_match_the_rfc6962_vectors_and_verify() {
    // (1-based leaf, size, proof) from proof/verify_test.go.
    let vectors: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (3, 3, &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
        (
            2,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (leaf, size, want) in vectors {
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        let got = proof_hashes(merkle::inclusion_ranges(leaf - 1, *size));
        assert_eq!(got, want, "inclusion proof for leaf {leaf} in size {size}");
        let root = roots()[*size as usize - 1];
        let lh = leaves()[*leaf as usize - 1];
        merkle::verify_inclusion(leaf - 1, *size, &lh, &got, &root).unwrap();
        // Corruptions from verify_test.go must all fail.
        assert!(merkle::verify_inclusion(leaf - 1, size * 2, &lh, &got, &root).is_err());
        assert!(merkle::verify_inclusion(*leaf, *size, &lh, &got, &root).is_err() || *leaf == *size);
        assert!(merkle::verify_inclusion(leaf - 1, *size, &[7u8; 32], &got, &root).is_err());
        let mut longer = got.clone();
        longer.push(root);
        assert!(merkle::verify_inclusion(leaf - 1, *size, &lh, &longer, &root).is_err());
        for i in 0..got.len() {
            let mut bad = got.clone();
            bad[i][0] ^= 8;
            assert!(merkle::verify_inclusion(leaf - 1, *size, &lh, &bad, &root).is_err());
            assert!(merkle::verify_inclusion(leaf - 1, *size, &lh, &got[..got.len() - 1], &root).is_err());
        }
    }
}

#[test]
fn consistency_proofs_match_the_rfc6962_vectors_and_verify() {
    let vectors: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    for (old, new, want) in vectors {
        let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
        let got = proof_hashes(merkle::consistency_ranges(*old, *new));
        assert_eq!(got, want, "consistency proof {old} -> {new}");
        let (r1, r2) = (roots()[*old as usize - 1], roots()[*new as usize - 1]);
        merkle::verify_consistency(*old, *new, &r1, &r2, &got).unwrap();
        if !got.is_empty() {
            assert!(merkle::verify_consistency(*old, *new, &r2, &r1, &got).is_err(), "swapped roots");
            assert!(merkle::verify_consistency(old + 1, *new, &r1, &r2, &got).is_err(), "old + 1");
            assert!(merkle::verify_consistency(*old, *new, &r1, &r2, &got[..got.len() - 1]).is_err(), "truncated");
            for i in 0..got.len() {
                let mut bad = got.clone();
                bad[i][0] ^= 16;
                assert!(merkle::verify_consistency(*old, *new, &r1, &r2, &bad).is_err());
            }
        }
    }
}

#[test]
fn inclusion_and_consistency_proofs_verify_for_every_index_and_size_up_to_70() {
    let leaves: Vec<Hash> = (0u32..70).map(|i| merkle::hash_leaf(&i.to_be_bytes())).collect();
    for size in 1..=70u64 {
        let root = merkle::range_hash(&leaves, 0..size);
        for index in 0..size {
            let proof: Vec<Hash> =
                merkle::inclusion_ranges(index, size).into_iter().map(|r| merkle::range_hash(&leaves, r)).collect();
            merkle::verify_inclusion(index, size, &leaves[index as usize], &proof, &root).unwrap();
        }
        for old in 1..size {
            let old_root = merkle::range_hash(&leaves, 0..old);
            let proof: Vec<Hash> =
                merkle::consistency_ranges(old, size).into_iter().map(|r| merkle::range_hash(&leaves, r)).collect();
            merkle::verify_consistency(old, size, &old_root, &root, &proof).unwrap();
        }
    }
}

const PETER_SKEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

fn peter() -> NoteSigner {
    let raw = base64::engine::general_purpose::STANDARD.decode(PETER_SKEY_B64).unwrap();
    assert_eq!(raw[0], 1);
    NoteSigner::new("PeterNeumann", &raw[1..].try_into().unwrap()).unwrap()
}

#[test]
fn signed_notes_match_the_go_sumdb_note_vectors() {
    let text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    let want = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n\n\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    let signer = peter();
    assert_eq!(signer.verifier().to_vkey(), PETER_VKEY);
    assert_eq!(signer.sign_text(text), want);
    let verifier = NoteVerifier::parse(PETER_VKEY).unwrap();
    assert_eq!(verifier.open(want).unwrap(), text);
    // A signature with four characters changed must be refused.
    let bad = format!("{}ABCD{}", &want[..want.len() - 40], &want[want.len() - 36..]);
    assert!(verifier.open(&bad).is_err());
    // Mangled verifier keys are refused (TestNewVerifier).
    assert!(NoteVerifier::parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err());
    assert!(NoteVerifier::parse("PeterNeumann+c74f20a3+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW").is_err());
}

#[test]
fn checkpoint_notes_round_trip_and_refuse_edits() {
    // The signature line carries the key hash c74f20a3 ("x08go" in base64),
    // as in the Go vector above.
    let cp = Checkpoint { origin: "custos.example/ledger".into(), tree_size: 8, root_hash: roots()[7] };
    let note = peter().sign_checkpoint(&cp);
    let root_b64 = base64::engine::general_purpose::STANDARD.encode(roots()[7]);
    let (body, sig) = note.split_once("\n\n").unwrap();
    assert_eq!(format!("{body}\n"), format!("custos.example/ledger\n8\n{root_b64}\n"));
    assert!(sig.starts_with("\u{2014} PeterNeumann x08go") && sig.ends_with('\n'), "{sig}");
    let v = NoteVerifier::parse(PETER_VKEY).unwrap();
    assert_eq!(v.open_checkpoint(&note).unwrap(), cp);
    let forged = note.replacen("\n8\n", "\n9\n", 1);
    assert!(v.open_checkpoint(&forged).is_err(), "a changed tree size must not verify");
}

fn seal_vectors() -> std::collections::HashMap<String, Vec<u8>> {
    include_str!("vectors/seal_v1.txt")
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_owned(), hex::decode(v).unwrap())
        })
        .collect()
}

#[test]
fn sealing_matches_the_independent_reference_implementation() {
    let v = seal_vectors();
    let dek: [u8; 32] = core::array::from_fn(|i| i as u8);
    let iv: [u8; 16] = core::array::from_fn(|i| 0xA0 + i as u8);
    let payload = br#"{"actor":{"id":"u-42","name":"Ada"},"details":{"ip":"203.0.113.7","reason":"password ok"}}"#;
    let header = EntryHeader {
        seq: 1,
        event_id: uuid::Uuid::from_bytes(hex::decode("0192f0c4e4b07c3a8e5f1a2b3c4d5e6f").unwrap().try_into().unwrap()),
        occurred_at_us: 1_764_115_200_000_000,
        recorded_at_us: 1_764_115_200_123_456,
        fields: HeaderFields {
            category: "authentication".into(),
            action: "user.login".into(),
            outcome: "success".into(),
            severity: "info".into(),
            actor_id: Some("u-42".into()),
            actor_kind: Some("user".into()),
            resource_type: Some("session".into()),
            resource_id: Some("s-9".into()),
            tenant: None,
            channel: Some("api".into()),
            source_app: Some("portal".into()),
        },
    };
    let hb = encoding::header_bytes(&header);
    assert_eq!(hb, v["header"]);
    let key = DataKey::derive(1, &dek);
    let ct = key.encrypt(&iv, payload);
    assert_eq!(ct, v["ciphertext"]);
    let mac = key.mac(&hb, &iv, &ct);
    assert_eq!(mac.to_vec(), v["mac"]);
    let leaf = encoding::leaf_hash(&hb, 1, &iv, &ct, &mac);
    assert_eq!(leaf.to_vec(), v["leaf"]);
    assert_eq!(encoding::chain_hash(&GENESIS_CHAIN, &leaf).to_vec(), v["chain"]);
    assert_eq!(&key.open(&hb, &iv, &ct, &mac).unwrap()[..], payload);

    let kek = Kek::from_bytes(&[0x5A; 32]);
    let wrap_iv: [u8; 16] = core::array::from_fn(|i| 0x10 + i as u8);
    assert_eq!(kek.wrap(KeyPurpose::Data, 1, &wrap_iv, &dek), v["wrapped_dek"]);
    assert_eq!(*kek.unwrap(KeyPurpose::Data, 1, &v["wrapped_dek"]).unwrap(), dek);
}
