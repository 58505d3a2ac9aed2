//! Checks besides the chain: purge and retention records, and Merkle node
//! positions.

use super::*;

/// The seqs (first, last) a Merkle node covers; None for a position no
/// tree of u64 leaves has.
pub(super) fn node_span(level: u32, idx: u64) -> Option<(u64, u64)> {
    let width = 1u64.checked_shl(level)?;
    let start = idx.checked_mul(width)?;
    Some((start.checked_add(1)?, start.checked_add(width)?))
}

/// Checks a purge record: signed with the ledger's key, matching the stored
/// purge, anchored on an entry the server wrote, and (with the KEK) that
/// entry's sealed payload says the same. `Ok(Err(why))` when it does not
/// hold; `Ok(Ok(anchor_opened))` when it does.
pub(super) async fn check_purge(
    conn: &impl sea_orm::ConnectionTrait,
    verifier: &NoteVerifier,
    keys: Option<&Keyring>,
    p: &store::PurgeRow,
    anchor_kept: bool,
) -> Result<Result<bool, String>, LedgerError> {
    use crate::ledger::purge_record::PurgeRecord;
    let Some(note) = p.note.as_deref() else {
        return Ok(Err("it has no signed purge record".into()));
    };
    let rec = match PurgeRecord::open(note, verifier) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let matches = rec.origin == verifier.name()
        && rec.anchor_seq == p.anchor_seq
        && rec.from_seq == p.from_seq
        && rec.through_seq == p.through_seq
        && rec.chain_hash == p.chain_hash
        && rec.frontier == p.frontier.encode()
        && rec.archive_sha256 == p.archive_sha256
        && rec.archive_name == p.archive_name;
    if !matches {
        return Ok(Err("the stored purge does not match its signed record".into()));
    }
    if !anchor_kept {
        return Ok(Ok(false));
    }
    let v = match open_anchor(conn, keys, p.anchor_seq, "ledger.purge").await? {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(Ok(false)),
        Err(why) => return Ok(Err(why)),
    };
    let says = v["from_seq"].as_u64() == Some(p.from_seq)
        && v["through_seq"].as_u64() == Some(p.through_seq)
        && v["chain_hash"].as_str() == Some(hex::encode(p.chain_hash).as_str())
        && v["frontier"].as_str() == Some(hex::encode(p.frontier.encode()).as_str())
        && v["archive_sha256"].as_str() == Some(hex::encode(p.archive_sha256).as_str());
    if !says {
        return Ok(Err("its anchor entry records a different purge".into()));
    }
    Ok(Ok(true))
}

/// Checks a retention record (a removal): signed with the ledger's key,
/// matching the stored row, its tombstones exactly the signed set, and
/// (with the KEK) its anchor entry saying the same. `Ok(Err(why))` when it
/// does not hold; `Ok(Ok(anchor_opened))` when it does.
pub(super) async fn check_removal(
    conn: &impl sea_orm::ConnectionTrait,
    verifier: &NoteVerifier,
    keys: Option<&Keyring>,
    r: &crate::ledger::tombstone::RetentionRow,
    anchor_kept: bool,
    compacted: bool,
) -> Result<Result<bool, String>, LedgerError> {
    use crate::ledger::tombstone::{ANCHOR_ACTION, RetentionRecord, record_seqs, tombstones_digest};
    let rec = match RetentionRecord::open(&r.note, verifier) {
        Ok(rec) => rec,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let matches = rec.origin == verifier.name()
        && rec.anchor_seq == r.anchor_seq
        && rec.from_seq == r.from_seq
        && rec.through_seq == r.through_seq
        && rec.removed == r.removed
        && rec.tombstones_sha256 == r.tombstones_sha256
        && rec.archive_sha256 == r.archive_sha256
        && rec.archive_name == r.archive_name
        && rec.reason == r.reason;
    if !matches {
        return Ok(Err("the stored record does not match its signed note".into()));
    }
    let seqs = record_seqs(conn, r.anchor_seq).await?;
    if compacted {
        if !seqs.is_empty() {
            return Ok(Err(format!("{} of its tombstones remain inside a purged range", seqs.len())));
        }
    } else if seqs.len() as u64 != rec.removed || tombstones_digest(seqs.iter().copied()) != rec.tombstones_sha256 {
        return Ok(Err(format!(
            "its tombstones ({}) are not the {} entries its signed record removed",
            seqs.len(),
            rec.removed
        )));
    }
    if seqs.first().is_some_and(|s| *s < rec.from_seq) || seqs.last().is_some_and(|s| *s > rec.through_seq) {
        return Ok(Err("its tombstones lie outside its signed range".into()));
    }
    if !anchor_kept {
        return Ok(Ok(false));
    }
    let v = match open_anchor(conn, keys, r.anchor_seq, ANCHOR_ACTION).await? {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(Ok(false)),
        Err(why) => return Ok(Err(why)),
    };
    let says = v["from_seq"].as_u64() == Some(r.from_seq)
        && v["through_seq"].as_u64() == Some(r.through_seq)
        && v["removed"].as_u64() == Some(r.removed)
        && v["tombstones_sha256"].as_str() == Some(hex::encode(r.tombstones_sha256).as_str())
        && v["archive_sha256"].as_str() == Some(hex::encode(r.archive_sha256).as_str());
    if !says {
        return Ok(Err("its anchor entry records a different removal".into()));
    }
    Ok(Ok(true))
}

/// The anchor entry at `seq` of a purge or a removal: it must be there,
/// written by the server with `action`; with the KEK, its sealed payload
/// (MAC checked) as JSON. `Ok(Ok(None))` without the KEK; `Ok(Err(why))`
/// when it does not hold.
async fn open_anchor(
    conn: &impl sea_orm::ConnectionTrait,
    keys: Option<&Keyring>,
    seq: u64,
    action: &str,
) -> Result<Result<Option<serde_json::Value>, String>, LedgerError> {
    let Some(anchor) = store::read_entry(conn, seq).await? else {
        return Ok(Err("its anchor entry is missing".into()));
    };
    let f = &anchor.header.fields;
    if f.action != action
        || f.actor_id.as_deref() != Some("custos")
        || f.actor_kind.as_deref() != Some("system")
        || f.source_app.as_deref() != Some("custos")
    {
        return Ok(Err("its anchor entry was not written by the server".into()));
    }
    let Some(keys) = keys else { return Ok(Ok(None)) };
    let Some(key) = keys.get(anchor.key_id) else {
        return Ok(Err(format!("its anchor entry names unknown key {}", anchor.key_id)));
    };
    match key.open(&encoding::header_bytes(&anchor.header), &anchor.iv, &anchor.ciphertext, &anchor.mac) {
        Ok(plain) => Ok(Ok(Some(serde_json::from_slice(&plain).unwrap_or_default()))),
        Err(_) => Ok(Err("its anchor entry fails its MAC or does not decrypt".into())),
    }
}

/// A retention record checked as a whole: not cut by the purge before
/// `retained_from`, signed, exactly its tombstones, and (with the KEK)
/// agreeing with its anchor ([`check_removal`]); `Ok(Err(why))` when it
/// fails. A tombstone stands in for an entry only under one of these.
pub(super) async fn check_retention_record(
    conn: &impl sea_orm::ConnectionTrait,
    verifier: &NoteVerifier,
    keys: Option<&Keyring>,
    r: &crate::ledger::tombstone::RetentionRow,
    retained_from: u64,
) -> Result<Result<super::RemovedSet, String>, LedgerError> {
    let anchor_kept = r.anchor_seq >= retained_from;
    // A compaction (a purge) took its whole range: its tombstones are gone.
    let compacted = r.through_seq < retained_from;
    let checked = if r.from_seq < retained_from && !compacted {
        Err(format!("the purge through seq {} cuts its range", retained_from - 1))
    } else {
        check_removal(conn, verifier, keys, r, anchor_kept, compacted).await?
    };
    Ok(match checked {
        Ok(anchor_checked) => Ok(super::RemovedSet {
            anchor_seq: r.anchor_seq,
            from_seq: r.from_seq,
            through_seq: r.through_seq,
            removed: r.removed,
            reason: r.reason.clone(),
            archive_sha256: hex::encode(r.archive_sha256),
            archive_name: r.archive_name.clone(),
            anchor_checked,
            compacted,
        }),
        Err(why) => Err(format!(
            "the removal of {} entries in seq {}..={} (anchor seq {}): {why}",
            r.removed, r.from_seq, r.through_seq, r.anchor_seq
        )),
    })
}
