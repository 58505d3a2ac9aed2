//! SQL for the ledger tables. Written once for both backends (`?`
//! placeholders are rewritten for PostgreSQL by `storage::stmt_for`).

use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Value};
use uuid::Uuid;

use super::error::LedgerError;
use super::merkle::{self, Frontier, STORED_MIN_LEVEL, Subtree};
use super::types::{EntryHeader, Hash, HeaderFields, StoredEntry};
use crate::storage::{array_of, get_array, stmt_for};

/// Columns of `ledger_entries`, in insert order.
pub const ENTRY_COLUMNS: &str = "seq, event_id, occurred_at, recorded_at, category, action, outcome, severity, \
    actor_id, actor_kind, resource_type, resource_id, tenant, channel, source_app, key_id, iv, ciphertext, mac, \
    leaf_hash, chain_hash";
const ENTRY_COLUMN_COUNT: usize = 21;
/// Rows per INSERT statement: 500 x 21 parameters stays below SQLite's 32,766.
const ROWS_PER_INSERT: usize = 500;

/// The chain head as stored in `ledger_head`.
#[derive(Debug, Clone)]
pub struct Head {
    /// Last committed seq (0 when empty).
    pub seq: u64,
    /// Chain value after that entry.
    pub chain_hash: Hash,
    /// Merkle frontier of the tree of `seq` leaves.
    pub frontier: Frontier,
    /// Commit time (µs) of the entry at `seq`, 0 when the ledger is empty:
    /// the next entry is never recorded earlier (commit times never go
    /// backwards, whatever a replica's clock does).
    pub recorded_at_us: i64,
}

impl Head {
    /// Whether this is the same head as `other`: the same last seq and the
    /// chain value after it (so the same entries up to it).
    pub fn is(&self, other: &Head) -> bool {
        self.seq == other.seq && self.chain_hash == other.chain_hash
    }
}

fn to_u64(v: i64, what: &str) -> Result<u64, LedgerError> {
    u64::try_from(v).map_err(|_| LedgerError::Corrupt(format!("negative {what} {v}")))
}

/// Converts a seq to the signed column type.
pub fn seq_value(seq: u64) -> Value {
    Value::BigInt(Some(i64::try_from(seq).unwrap_or(i64::MAX)))
}

fn head_from_row(row: &QueryResult) -> Result<Head, LedgerError> {
    let seq = to_u64(row.try_get("", "seq")?, "head seq")?;
    let chain_hash = get_array::<32>(row, "chain_hash")?;
    let frontier_bytes: Vec<u8> = row.try_get("", "frontier")?;
    let frontier = Frontier::decode(seq, &frontier_bytes).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
    let recorded_at_us: Option<i64> = row.try_get("", "last_recorded_at")?;
    Ok(Head { seq, chain_hash, frontier, recorded_at_us: recorded_at_us.unwrap_or(0) })
}

/// Locks the head row for this transaction: a write first, so SQLite takes
/// its write lock at once and PostgreSQL locks the row (other writers of
/// the ledger wait until this transaction ends). The commits themselves
/// lock it on their direct connections (`sqlite_direct`, `pg_direct`).
pub async fn lock_head(conn: &impl ConnectionTrait) -> Result<(), LedgerError> {
    let b = conn.get_database_backend();
    conn.execute_raw(stmt_for(b, "UPDATE ledger_head SET seq = seq WHERE id = 1", vec![])).await?;
    Ok(())
}

/// The head with its newest entry's commit time.
pub(crate) const HEAD_SELECT: &str = "SELECT seq, chain_hash, frontier, \
    (SELECT recorded_at FROM ledger_entries WHERE ledger_entries.seq = ledger_head.seq) AS last_recorded_at \
    FROM ledger_head WHERE id = 1";

/// Reads the head without locking.
pub async fn read_head(conn: &impl ConnectionTrait) -> Result<Head, LedgerError> {
    let b = conn.get_database_backend();
    let row = conn
        .query_one_raw(stmt_for(b, HEAD_SELECT, vec![]))
        .await?
        .ok_or_else(|| LedgerError::Corrupt("ledger_head row is missing".into()))?;
    head_from_row(&row)
}

/// Stores the new head.
pub async fn write_head(conn: &impl ConnectionTrait, head: &Head) -> Result<(), LedgerError> {
    let b = conn.get_database_backend();
    conn.execute_raw(stmt_for(
        b,
        "UPDATE ledger_head SET seq = ?, chain_hash = ?, frontier = ? WHERE id = 1",
        vec![seq_value(head.seq), head.chain_hash.to_vec().into(), head.frontier.encode().into()],
    ))
    .await?;
    Ok(())
}

fn opt(v: &Option<String>) -> Value {
    Value::String(v.clone())
}

/// Inserts entries (in as few statements as the parameter limits allow).
pub async fn insert_entries(conn: &impl ConnectionTrait, entries: &[StoredEntry]) -> Result<(), LedgerError> {
    let b = conn.get_database_backend();
    for chunk in entries.chunks(ROWS_PER_INSERT) {
        let row = format!("({})", vec!["?"; ENTRY_COLUMN_COUNT].join(","));
        let sql = format!("INSERT INTO ledger_entries ({ENTRY_COLUMNS}) VALUES {}", vec![row; chunk.len()].join(","));
        let mut values = Vec::with_capacity(chunk.len() * ENTRY_COLUMN_COUNT);
        for e in chunk {
            let h = &e.header;
            let f = &h.fields;
            values.extend([
                seq_value(h.seq),
                Value::Uuid(Some(h.event_id)),
                h.occurred_at_us.into(),
                h.recorded_at_us.into(),
                f.category.clone().into(),
                f.action.clone().into(),
                f.outcome.clone().into(),
                f.severity.clone().into(),
                opt(&f.actor_id),
                opt(&f.actor_kind),
                opt(&f.resource_type),
                opt(&f.resource_id),
                opt(&f.tenant),
                opt(&f.channel),
                opt(&f.source_app),
                Value::Int(Some(e.key_id as i32)),
                e.iv.to_vec().into(),
                e.ciphertext.clone().into(),
                e.mac.to_vec().into(),
                e.leaf_hash.to_vec().into(),
                e.chain_hash.to_vec().into(),
            ]);
        }
        conn.execute_raw(stmt_for(b, &sql, values)).await?;
    }
    Ok(())
}

/// A `ledger_entries` row as the database has it (`ENTRY_COLUMNS`).
#[derive(Debug, sea_orm::FromQueryResult)]
struct EntryRow {
    seq: i64,
    event_id: Uuid,
    occurred_at: i64,
    recorded_at: i64,
    category: String,
    action: String,
    outcome: String,
    severity: String,
    actor_id: Option<String>,
    actor_kind: Option<String>,
    resource_type: Option<String>,
    resource_id: Option<String>,
    tenant: Option<String>,
    channel: Option<String>,
    source_app: Option<String>,
    key_id: i32,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    mac: Vec<u8>,
    leaf_hash: Vec<u8>,
    chain_hash: Vec<u8>,
}

/// Decodes one `ledger_entries` row.
pub fn entry_from_row(row: &QueryResult) -> Result<StoredEntry, LedgerError> {
    use sea_orm::FromQueryResult as _;
    let r = EntryRow::from_query_result(row, "")?;
    Ok(StoredEntry {
        header: EntryHeader {
            seq: to_u64(r.seq, "seq")?,
            event_id: r.event_id,
            occurred_at_us: r.occurred_at,
            recorded_at_us: r.recorded_at,
            fields: HeaderFields {
                category: r.category,
                action: r.action,
                outcome: r.outcome,
                severity: r.severity,
                actor_id: r.actor_id,
                actor_kind: r.actor_kind,
                resource_type: r.resource_type,
                resource_id: r.resource_id,
                tenant: r.tenant,
                channel: r.channel,
                source_app: r.source_app,
            },
        },
        key_id: u32::try_from(r.key_id).map_err(|_| LedgerError::Corrupt(format!("negative key id {}", r.key_id)))?,
        iv: array_of(r.iv, "iv")?,
        ciphertext: r.ciphertext,
        mac: array_of(r.mac, "mac")?,
        leaf_hash: array_of(r.leaf_hash, "leaf_hash")?,
        chain_hash: array_of(r.chain_hash, "chain_hash")?,
    })
}

/// Entries with `from <= seq <= to`, in seq order, at most `limit`.
pub async fn read_entries(
    conn: &impl ConnectionTrait,
    from: u64,
    to: u64,
    limit: u64,
) -> Result<Vec<StoredEntry>, LedgerError> {
    let b = conn.get_database_backend();
    let rows = conn
        .query_all_raw(stmt_for(
            b,
            &format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT ?"),
            vec![seq_value(from), seq_value(to), seq_value(limit)],
        ))
        .await?;
    rows.iter().map(entry_from_row).collect()
}

/// One entry by seq.
pub async fn read_entry(conn: &impl ConnectionTrait, seq: u64) -> Result<Option<StoredEntry>, LedgerError> {
    Ok(read_entries(conn, seq, seq, 1).await?.into_iter().next())
}

/// Leaf hashes of seqs `from..=to` (leaf index = seq - 1), in order: of
/// the entries and of the tombstones that replaced removed ones.
pub async fn read_leaf_hashes(
    conn: &impl ConnectionTrait,
    from: u64,
    to: u64,
) -> Result<Vec<(u64, Hash)>, LedgerError> {
    let b = conn.get_database_backend();
    let rows = conn
        .query_all_raw(stmt_for(
            b,
            "SELECT seq, leaf_hash FROM ledger_entries WHERE seq >= ? AND seq <= ? \
             UNION ALL SELECT seq, leaf_hash FROM ledger_tombstones WHERE seq >= ? AND seq <= ? ORDER BY seq",
            vec![seq_value(from), seq_value(to), seq_value(from), seq_value(to)],
        ))
        .await?;
    rows.iter().map(|r| Ok((to_u64(r.try_get("", "seq")?, "seq")?, get_array::<32>(r, "leaf_hash")?))).collect()
}

/// A stored Merkle node.
pub async fn read_node(conn: &impl ConnectionTrait, level: u32, index: u64) -> Result<Option<Hash>, LedgerError> {
    let b = conn.get_database_backend();
    let row = conn
        .query_one_raw(stmt_for(
            b,
            "SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?",
            vec![Value::SmallInt(Some(level as i16)), seq_value(index)],
        ))
        .await?;
    Ok(row.map(|r| get_array::<32>(&r, "hash")).transpose()?)
}

/// A stored checkpoint row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    /// Tree size it signs.
    pub tree_size: u64,
    /// Root hash it signs.
    pub root_hash: Hash,
    /// The complete signed note.
    pub note: String,
    /// When it was made (µs).
    pub created_at_us: i64,
}

fn checkpoint_from_row(r: &QueryResult) -> Result<CheckpointRow, LedgerError> {
    Ok(CheckpointRow {
        tree_size: to_u64(r.try_get("", "tree_size")?, "tree size")?,
        root_hash: get_array::<32>(r, "root_hash")?,
        note: r.try_get("", "note")?,
        created_at_us: r.try_get("", "created_at")?,
    })
}

/// Stores a checkpoint unless one for that size exists (replicas may race;
/// Ed25519 signatures are deterministic, so both would be identical but for
/// their creation times). Whether it was stored.
pub async fn insert_checkpoint(conn: &impl ConnectionTrait, cp: &CheckpointRow) -> Result<bool, LedgerError> {
    let b = conn.get_database_backend();
    let done = conn
        .execute_raw(stmt_for(
            b,
            INSERT_CHECKPOINT,
            vec![
                seq_value(cp.tree_size),
                cp.root_hash.to_vec().into(),
                cp.note.clone().into(),
                cp.created_at_us.into(),
            ],
        ))
        .await?;
    Ok(done.rows_affected() > 0)
}

const INSERT_CHECKPOINT: &str = "INSERT INTO checkpoints (tree_size, root_hash, note, created_at) VALUES (?, ?, ?, ?) \
                                 ON CONFLICT (tree_size) DO NOTHING";

/// [`insert_checkpoint`] on a direct SQLite connection (the ledger's writer).
pub fn insert_checkpoint_direct(conn: &rusqlite::Connection, cp: &CheckpointRow) -> Result<bool, LedgerError> {
    let rows = conn.prepare_cached(INSERT_CHECKPOINT)?.execute(rusqlite::params![
        i64::try_from(cp.tree_size).unwrap_or(i64::MAX),
        cp.root_hash.as_slice(),
        cp.note,
        cp.created_at_us
    ])?;
    Ok(rows > 0)
}

/// All checkpoints in increasing tree size.
pub async fn read_checkpoints(conn: &impl ConnectionTrait) -> Result<Vec<CheckpointRow>, LedgerError> {
    let b = conn.get_database_backend();
    let rows = conn
        .query_all_raw(stmt_for(
            b,
            "SELECT tree_size, root_hash, note, created_at FROM checkpoints ORDER BY tree_size",
            vec![],
        ))
        .await?;
    rows.iter().map(checkpoint_from_row).collect()
}

/// Newest checkpoints first: at most `limit`, with a tree size below
/// `before` when given.
pub async fn read_checkpoints_page(
    conn: &impl ConnectionTrait,
    limit: u64,
    before: Option<u64>,
) -> Result<Vec<CheckpointRow>, LedgerError> {
    let b = conn.get_database_backend();
    let rows = conn
        .query_all_raw(stmt_for(
            b,
            "SELECT tree_size, root_hash, note, created_at FROM checkpoints WHERE tree_size < ? \
             ORDER BY tree_size DESC LIMIT ?",
            vec![seq_value(before.unwrap_or(i64::MAX as u64)), seq_value(limit)],
        ))
        .await?;
    rows.iter().map(checkpoint_from_row).collect()
}

/// The newest checkpoint whose note is signed by `verifier` and agrees
/// with its row. Rows that do not verify (written behind Custos's back) are
/// passed over: an unsigned row claiming a huge tree must not stop
/// checkpointing, nor be served as the ledger's state. Verification reports
/// such rows.
pub async fn latest_signed_checkpoint(
    conn: &impl ConnectionTrait,
    verifier: &super::note::NoteVerifier,
) -> Result<Option<CheckpointRow>, LedgerError> {
    let mut before = None;
    loop {
        let page = read_checkpoints_page(conn, 64, before).await?;
        let Some(last) = page.last() else { return Ok(None) };
        before = Some(last.tree_size);
        for row in page {
            let signed = verifier.open_checkpoint(&row.note).is_ok_and(|c| {
                c.tree_size == row.tree_size && c.root_hash == row.root_hash && c.origin == verifier.name()
            });
            if signed {
                return Ok(Some(row));
            }
        }
    }
}

/// Existing entries among `ids`: event id -> (seq, recorded_at).
pub async fn find_event_ids(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, (u64, i64)>, LedgerError> {
    let b = conn.get_database_backend();
    let mut out = std::collections::HashMap::new();
    for chunk in ids.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "SELECT seq, event_id, recorded_at FROM ledger_entries WHERE event_id IN ({})",
            vec!["?"; chunk.len()].join(",")
        );
        let rows = conn.query_all_raw(stmt_for(b, &sql, chunk.iter().map(|u| Value::Uuid(Some(*u))).collect())).await?;
        for r in rows {
            out.insert(
                r.try_get::<Uuid>("", "event_id")?,
                (to_u64(r.try_get("", "seq")?, "seq")?, r.try_get("", "recorded_at")?),
            );
        }
    }
    Ok(out)
}

/// The backend of a connection (helper for callers building statements).
pub fn backend(conn: &impl ConnectionTrait) -> DbBackend {
    conn.get_database_backend()
}

/// Hash of one perfect subtree: a stored node for the large ones, recomputed
/// from leaf hashes for the small ones.
pub async fn subtree_hash(conn: &impl ConnectionTrait, s: Subtree) -> Result<Hash, LedgerError> {
    if s.level >= STORED_MIN_LEVEL {
        return read_node(conn, s.level, s.index).await?.ok_or_else(|| {
            LedgerError::Corrupt(format!("stored Merkle node level {} index {} is missing", s.level, s.index))
        });
    }
    let r = s.leaves();
    let leaves = read_leaf_hashes(conn, r.start + 1, r.end).await?;
    if leaves.len() as u64 != r.end - r.start {
        return Err(LedgerError::Corrupt(format!("entries seq {}..={} are missing", r.start + 1, r.end)));
    }
    let hashes: Vec<Hash> = leaves.into_iter().map(|(_, h)| h).collect();
    Ok(merkle::subtree_hash(&hashes))
}

/// Hash of the leaves `range` (leaf index = seq - 1), as RFC 6962 defines it
/// for the ranges that proofs use.
pub async fn range_hash(conn: &impl ConnectionTrait, range: std::ops::Range<u64>) -> Result<Hash, LedgerError> {
    let mut hashes = Vec::new();
    for s in merkle::perfect_subtrees(range) {
        hashes.push(subtree_hash(conn, s).await?);
    }
    Ok(merkle::fold_right(&hashes))
}

/// The frontier of the tree of the first `size` leaves, from stored data.
pub async fn frontier_at(conn: &impl ConnectionTrait, size: u64) -> Result<Frontier, LedgerError> {
    let mut hashes = Vec::new();
    for s in merkle::perfect_subtrees(0..size) {
        hashes.push(subtree_hash(conn, s).await?);
    }
    Frontier::from_subtrees(size, hashes).map_err(|e| LedgerError::Corrupt(e.to_string()))
}

/// A purge anchor: where verification starts after a retention purge.
#[derive(Debug, Clone)]
pub struct PurgeRow {
    /// Seq of the `ledger.purge` entry that records the purge.
    pub anchor_seq: u64,
    /// First purged seq.
    pub from_seq: u64,
    /// Last purged seq.
    pub through_seq: u64,
    /// Chain value after `through_seq`.
    pub chain_hash: Hash,
    /// Merkle frontier of the first `through_seq` leaves.
    pub frontier: Frontier,
    /// SHA-256 of the archive bundle.
    pub archive_sha256: Hash,
    /// File name of the archive bundle.
    pub archive_name: String,
    /// The signed purge record (`purge_record`); None only in a database
    /// tampered with (the database refuses a purge without one).
    pub note: Option<String>,
}

const PURGE_COLUMNS: &str =
    "anchor_seq, from_seq, through_seq, chain_hash, frontier, archive_sha256, archive_name, note";

fn purge_from_row(r: &QueryResult) -> Result<PurgeRow, LedgerError> {
    let through_seq = to_u64(r.try_get("", "through_seq")?, "through seq")?;
    let frontier_bytes: Vec<u8> = r.try_get("", "frontier")?;
    Ok(PurgeRow {
        anchor_seq: to_u64(r.try_get("", "anchor_seq")?, "anchor seq")?,
        from_seq: to_u64(r.try_get("", "from_seq")?, "from seq")?,
        through_seq,
        chain_hash: get_array::<32>(r, "chain_hash")?,
        frontier: Frontier::decode(through_seq, &frontier_bytes).map_err(|e| LedgerError::Corrupt(e.to_string()))?,
        archive_sha256: get_array::<32>(r, "archive_sha256")?,
        archive_name: r.try_get("", "archive_name")?,
        note: r.try_get("", "note")?,
    })
}

/// The most recent purge (largest `through_seq`), if any.
pub async fn latest_purge(conn: &impl ConnectionTrait) -> Result<Option<PurgeRow>, LedgerError> {
    let b = conn.get_database_backend();
    let row = conn
        .query_one_raw(stmt_for(
            b,
            &format!("SELECT {PURGE_COLUMNS} FROM ledger_purges ORDER BY through_seq DESC LIMIT 1"),
            vec![],
        ))
        .await?;
    row.as_ref().map(purge_from_row).transpose()
}

/// Every purge, oldest first.
pub async fn all_purges(conn: &impl ConnectionTrait) -> Result<Vec<PurgeRow>, LedgerError> {
    let b = conn.get_database_backend();
    let rows = conn
        .query_all_raw(stmt_for(b, &format!("SELECT {PURGE_COLUMNS} FROM ledger_purges ORDER BY through_seq"), vec![]))
        .await?;
    rows.iter().map(purge_from_row).collect()
}

/// Stored Merkle nodes in (level, index) order after `after`, a page at a time.
pub async fn read_nodes_page(
    conn: &impl ConnectionTrait,
    after: Option<(u32, u64)>,
    limit: u64,
) -> Result<Vec<(u32, u64, Hash)>, LedgerError> {
    let b = conn.get_database_backend();
    let (cond, values) = match after {
        None => (String::new(), vec![]),
        Some((level, idx)) => (
            "WHERE level > ? OR (level = ? AND idx > ?)".to_owned(),
            vec![i64::from(level).into(), i64::from(level).into(), seq_value(idx)],
        ),
    };
    let rows = conn
        .query_all_raw(stmt_for(
            b,
            &format!(
                "SELECT CAST(level AS BIGINT) AS level, idx, hash FROM merkle_nodes {cond} ORDER BY level, idx LIMIT {limit}"
            ),
            values,
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let level: i64 = r.try_get("", "level")?;
            let level =
                u32::try_from(level).map_err(|_| LedgerError::Corrupt("merkle node level out of range".into()))?;
            Ok((level, to_u64(r.try_get("", "idx")?, "node index")?, get_array::<32>(r, "hash")?))
        })
        .collect()
}

/// The largest seq present in `ledger_entries` (0 when empty).
pub async fn max_entry_seq(conn: &impl ConnectionTrait) -> Result<u64, LedgerError> {
    let b = conn.get_database_backend();
    let row = conn.query_one_raw(stmt_for(b, "SELECT COALESCE(MAX(seq), 0) AS m FROM ledger_entries", vec![])).await?;
    to_u64(row.map(|r| r.try_get::<i64>("", "m")).transpose()?.unwrap_or(0), "seq")
}

/// A tombstone: an entry removed by retention or erasure, its seq, leaf
/// hash and chain value kept (see `ledger::tombstone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TombstoneRow {
    /// The removed entry's seq.
    pub seq: u64,
    /// The retention record (its anchor seq) that removed it.
    pub anchor_seq: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// Its chain value.
    pub chain_hash: Hash,
}

/// Tombstones with `from <= seq <= to`, in seq order, at most `limit`.
pub async fn read_tombstones(
    conn: &impl ConnectionTrait,
    from: u64,
    to: u64,
    limit: u64,
) -> Result<Vec<TombstoneRow>, LedgerError> {
    let b = conn.get_database_backend();
    let rows = conn
        .query_all_raw(stmt_for(
            b,
            "SELECT seq, anchor_seq, leaf_hash, chain_hash FROM ledger_tombstones WHERE seq >= ? AND seq <= ? \
             ORDER BY seq LIMIT ?",
            vec![seq_value(from), seq_value(to), seq_value(limit)],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TombstoneRow {
                seq: to_u64(r.try_get("", "seq")?, "seq")?,
                anchor_seq: to_u64(r.try_get("", "anchor_seq")?, "anchor seq")?,
                leaf_hash: get_array::<32>(r, "leaf_hash")?,
                chain_hash: get_array::<32>(r, "chain_hash")?,
            })
        })
        .collect()
}

/// The chain value after `seq`: of its entry, or of its tombstone.
pub async fn chain_at(conn: &impl ConnectionTrait, seq: u64) -> Result<Option<Hash>, LedgerError> {
    if let Some(e) = read_entry(conn, seq).await? {
        return Ok(Some(e.chain_hash));
    }
    Ok(read_tombstones(conn, seq, seq, 1).await?.first().map(|t| t.chain_hash))
}
