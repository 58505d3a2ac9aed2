//! PostgreSQL's hot paths straight on sqlx, as [`super::sqlite_direct`]'s
//! are on rusqlite. A batch sealed on the head it finds commits in one
//! statement ([`commit_in_one_statement`]: the head moved under its lock,
//! then the entries, Merkle nodes and dashboard counts inserted from
//! `UNNEST`ed arrays; one round trip). The full path, in its own
//! transaction, inserts the entries with one binary `COPY`, then its
//! Merkle nodes, the dashboards' counts (one row of arrays, folded into
//! `audit_rollups` later: [`FOLD_SLICE`]) and the new head with one
//! statement (each of these two statements' text never changes, so sqlx
//! prepares it once per connection). The verifier reads its pages with one binary
//! `COPY … TO STDOUT` each, decoded straight into a [`RawPage`].
//!
//! The commits run on the sequencer's own connection (`PgWriter` in
//! `service/commit.rs`), the reads on connections of sea-orm's own pool
//! (the sqlx pool inside it).

use std::sync::Arc;

use sea_orm::sqlx::{
    self, Connection as _, Postgres, Row,
    pool::PoolConnection,
    postgres::{PgConnection, PgRow},
};
use uuid::Uuid;

use super::error::LedgerError;
use super::merkle::Frontier;
use super::raw_page::RawPage;
use super::rollup::Counts;
use super::store::{ENTRY_COLUMNS, Head, TombstoneRow};
use super::types::{EntryHeader, Hash, HeaderFields, StoredEntry};

/// A transaction on a pooled PostgreSQL connection.
pub type PgTx = sqlx::Transaction<'static, sqlx::Postgres>;

/// sqlx's error as sea-orm would have reported it (so the callers' checks,
/// unique violations among them, see the same error).
pub fn db_err(e: sqlx::Error) -> LedgerError {
    LedgerError::from(sea_orm::DbErr::Exec(sea_orm::RuntimeErr::SqlxError(Arc::new(e))))
}

/// A hash, IV or MAC column's bytes as the fixed-size array it must be.
fn array_of<const N: usize>(v: Vec<u8>, col: &str) -> Result<[u8; N], LedgerError> {
    let len = v.len();
    v.try_into().map_err(|_| LedgerError::Corrupt(format!("column {col}: expected {N} bytes, found {len}")))
}

fn seq_i64(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn to_u64(v: i64, what: &str) -> Result<u64, LedgerError> {
    u64::try_from(v).map_err(|_| LedgerError::Corrupt(format!("negative {what} {v}")))
}

/// Begins a transaction, locks the head row for it and returns the head,
/// with the database server's clock (µs) read after the lock was granted:
/// one simple query, so one round trip (the commit waited about a
/// millisecond between each answer and its next statement on a busy
/// machine). The transaction is READ COMMITTED, so each statement takes
/// its own snapshot and the newest entry's time, read by the last one,
/// includes a commit the lock waited for (a subquery of the `UPDATE` would
/// not). The lock waits at most `lock_timeout` on the server (then
/// [`is_lock_timeout`]: the connection is sound once rolled back); the
/// results come as text, with `bytea` pinned to hex. Any other error leaves
/// the transaction in an unknown state: the caller drops the connection.
pub async fn begin_and_lock(
    conn: &mut PgConnection,
    lock_timeout: std::time::Duration,
) -> Result<(Head, i64), LedgerError> {
    let sql = format!(
        "BEGIN ISOLATION LEVEL READ COMMITTED; \
         SET LOCAL lock_timeout = '{}ms'; \
         SET LOCAL bytea_output = 'hex'; \
         UPDATE ledger_head SET seq = seq WHERE id = 1 RETURNING seq, chain_hash, frontier; \
         SELECT (SELECT recorded_at FROM ledger_entries WHERE seq = (SELECT seq FROM ledger_head WHERE id = 1)) \
           AS recorded_at, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) AS server_now",
        lock_timeout.as_millis().max(1)
    );
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *conn).await.map_err(db_err)?;
    // The UPDATE's row, then the SELECT's; without a head row, the SELECT's alone.
    let [head_row, clock_row] = rows.as_slice() else {
        return Err(LedgerError::Corrupt("ledger_head row is missing".into()));
    };
    let seq = to_u64(head_row.try_get("seq").map_err(db_err)?, "head seq")?;
    let chain_hash = array_of::<32>(head_row.try_get("chain_hash").map_err(db_err)?, "chain_hash")?;
    let frontier_bytes: Vec<u8> = head_row.try_get("frontier").map_err(db_err)?;
    let frontier = Frontier::decode(seq, &frontier_bytes).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
    let recorded_at: Option<i64> = clock_row.try_get("recorded_at").map_err(db_err)?;
    let server_now: i64 = clock_row.try_get("server_now").map_err(db_err)?;
    Ok((Head { seq, chain_hash, frontier, recorded_at_us: recorded_at.unwrap_or(0) }, server_now))
}

/// Whether `e` says the connection was lost: an I/O or protocol error,
/// or the server's own word that it closes the connection (SQLSTATE class
/// 08, connection exception, or 57P01-57P03 and 57P05: terminated by an
/// administrator, a crash, a shutdown or `idle_session_timeout`). A statement's outcome is then
/// unknown.
pub fn is_connection_lost(e: &LedgerError) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    let LedgerError::Storage(crate::storage::StorageError::Db(DbErr::Exec(RuntimeErr::SqlxError(e)))) = e else {
        return false;
    };
    match &**e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => {
            d.code().is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "57P05"))
        }
        _ => false,
    }
}

/// The head's seq and chain hash, read outside any transaction.
pub async fn read_head(conn: &mut PgConnection) -> Result<(u64, Hash), LedgerError> {
    let row = sqlx::query("SELECT seq, chain_hash FROM ledger_head WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?
        .ok_or_else(|| LedgerError::Corrupt("ledger_head row is missing".into()))?;
    let seq = to_u64(row.try_get("seq").map_err(db_err)?, "head seq")?;
    let chain_hash = array_of::<32>(row.try_get("chain_hash").map_err(db_err)?, "chain_hash")?;
    Ok((seq, chain_hash))
}

/// Whether `e` is PostgreSQL's `lock_timeout` (SQLSTATE 55P03): the lock
/// was not granted in time, and the connection is sound.
pub fn is_lock_timeout(e: &LedgerError) -> bool {
    use sea_orm::{DbErr, RuntimeErr};
    let LedgerError::Storage(crate::storage::StorageError::Db(DbErr::Exec(RuntimeErr::SqlxError(e)))) = e else {
        return false;
    };
    e.as_database_error().and_then(|d| d.code()).as_deref() == Some("55P03")
}

const COPY_ENTRIES: &str = "COPY ledger_entries (seq, event_id, occurred_at, recorded_at, category, action, outcome, \
    severity, actor_id, actor_kind, resource_type, resource_id, tenant, channel, source_app, key_id, iv, ciphertext, \
    mac, leaf_hash, chain_hash) FROM STDIN (FORMAT binary)";

/// The fields of one row in `COPY`'s binary format: each a 32-bit length
/// (-1 for NULL) and the value in the type's binary form.
fn field(buf: &mut Vec<u8>, v: &[u8]) {
    buf.extend_from_slice(&(v.len() as i32).to_be_bytes());
    buf.extend_from_slice(v);
}

fn opt_field(buf: &mut Vec<u8>, v: &Option<String>) {
    match v {
        Some(s) => field(buf, s.as_bytes()),
        None => buf.extend_from_slice(&(-1i32).to_be_bytes()),
    }
}

/// The bytes of one entry's tuple: the field count, 21 lengths, the fixed
/// fields (8 + 16 + 8 + 8 + 4 + 16 + 4 × 32) and the variable ones.
fn encoded_len(e: &StoredEntry) -> usize {
    let f = &e.header.fields;
    let opt = |v: &Option<String>| v.as_ref().map_or(0, String::len);
    2 + 21 * 4
        + 188
        + f.category.len()
        + f.action.len()
        + f.outcome.len()
        + f.severity.len()
        + opt(&f.actor_id)
        + opt(&f.actor_kind)
        + opt(&f.resource_type)
        + opt(&f.resource_id)
        + opt(&f.tenant)
        + opt(&f.channel)
        + opt(&f.source_app)
        + e.ciphertext.len()
}

/// `entries` as a `COPY … (FORMAT binary)` stream for [`COPY_ENTRIES`]'s
/// columns: the signature, flags and header extension, one tuple each
/// (field count, then the fields), and the trailer. `bigint` is 8 bytes
/// big-endian, `integer` 4, `uuid` its 16 bytes, `text` its UTF-8 bytes,
/// `bytea` its bytes.
pub fn encode_entries(entries: &[StoredEntry]) -> Vec<u8> {
    let size: usize = entries.iter().map(encoded_len).sum();
    let mut buf = Vec::with_capacity(21 + size);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0i32.to_be_bytes());
    buf.extend_from_slice(&0i32.to_be_bytes());
    for e in entries {
        let h = &e.header;
        let f = &h.fields;
        buf.extend_from_slice(&21i16.to_be_bytes());
        field(&mut buf, &seq_i64(h.seq).to_be_bytes());
        field(&mut buf, h.event_id.as_bytes());
        field(&mut buf, &h.occurred_at_us.to_be_bytes());
        field(&mut buf, &h.recorded_at_us.to_be_bytes());
        field(&mut buf, f.category.as_bytes());
        field(&mut buf, f.action.as_bytes());
        field(&mut buf, f.outcome.as_bytes());
        field(&mut buf, f.severity.as_bytes());
        opt_field(&mut buf, &f.actor_id);
        opt_field(&mut buf, &f.actor_kind);
        opt_field(&mut buf, &f.resource_type);
        opt_field(&mut buf, &f.resource_id);
        opt_field(&mut buf, &f.tenant);
        opt_field(&mut buf, &f.channel);
        opt_field(&mut buf, &f.source_app);
        field(&mut buf, &(e.key_id as i32).to_be_bytes());
        field(&mut buf, &e.iv);
        field(&mut buf, &e.ciphertext);
        field(&mut buf, &e.mac);
        field(&mut buf, &e.leaf_hash);
        field(&mut buf, &e.chain_hash);
    }
    buf.extend_from_slice(&(-1i16).to_be_bytes());
    buf
}

/// Inserts entries with one binary `COPY` (the full path's). A committed
/// event id makes it fail with the unique index's violation, as an
/// `INSERT` would.
pub async fn insert_entries(conn: &mut PgConnection, entries: &[StoredEntry]) -> Result<(), LedgerError> {
    if entries.is_empty() {
        return Ok(());
    }
    let data = encode_entries(entries);
    let data_len = data.len();
    let mut copy = conn.copy_in_raw(COPY_ENTRIES).await.map_err(db_err)?;
    if let Err(e) = copy.send(data).await {
        // The connection is in COPY mode: end it (its transaction is then
        // rolled back by the caller).
        let _ = copy.abort("the send failed").await;
        return Err(db_err(e));
    }
    copy.finish().await.map_err(db_err)?;
    // sqlx keeps its write buffer at the largest size it ever held: a
    // batch of big events would stay allocated on the connection (the
    // sequencer's lives as long as the process).
    if data_len > BUFFER_KEPT {
        conn.shrink_buffers();
    }
    Ok(())
}

/// Above this size a COPY's buffer is released after it (1 MiB).
const BUFFER_KEPT: usize = 1 << 20;

/// The stored Merkle nodes as three arrays (level, index, hash).
fn node_arrays(nodes: &[(u32, u64, Hash)]) -> (Vec<i16>, Vec<i64>, Vec<&[u8]>) {
    let levels = nodes.iter().map(|n| n.0 as i16).collect();
    let idx = nodes.iter().map(|n| seq_i64(n.1)).collect();
    let hashes = nodes.iter().map(|n| &n.2[..]).collect();
    (levels, idx, hashes)
}

/// A batch's dashboard counts as the four arrays of one
/// `audit_rollup_deltas` row (dimension, value, bucket, count).
#[allow(clippy::type_complexity)]
fn count_arrays(counts: &Counts) -> (Vec<&'static str>, Vec<&str>, Vec<i64>, Vec<i64>) {
    let mut dims = Vec::with_capacity(counts.len());
    let mut values = Vec::with_capacity(counts.len());
    let mut buckets = Vec::with_capacity(counts.len());
    let mut adds = Vec::with_capacity(counts.len());
    for ((dim, value, bucket), n) in counts {
        dims.push(*dim);
        values.push(value.as_str());
        buckets.push(*bucket);
        adds.push(*n);
    }
    (dims, values, buckets, adds)
}

/// Writes the rest of a full-path commit in one statement: the
/// batch's stored Merkle nodes (from `UNNEST`ed arrays) and its dashboard
/// counts (one row of four arrays in `audit_rollup_deltas`, folded into
/// `audit_rollups` later: [`FOLD_SLICE`]), each by a data-modifying
/// `WITH` (always run, in the same snapshot), and the new head.
pub async fn write_nodes_counts_head(
    conn: &mut PgConnection,
    nodes: &[(u32, u64, Hash)],
    counts: &Counts,
    head: &Head,
) -> Result<(), LedgerError> {
    let (levels, idx, hashes) = node_arrays(nodes);
    let (dims, values, buckets, adds) = count_arrays(counts);
    sqlx::query(
        "WITH nodes AS (INSERT INTO merkle_nodes (level, idx, hash) \
           SELECT * FROM UNNEST($1::smallint[], $2::bigint[], $3::bytea[])), \
         counts AS (INSERT INTO audit_rollup_deltas (dimensions, vals, buckets, counts) \
           SELECT $4::text[], $5::text[], $6::bigint[], $7::bigint[] WHERE cardinality($4::text[]) > 0) \
         UPDATE ledger_head SET seq = $8, chain_hash = $9, frontier = $10 WHERE id = 1",
    )
    .bind(levels)
    .bind(idx)
    .bind(hashes)
    .bind(dims)
    .bind(values)
    .bind(buckets)
    .bind(adds)
    .bind(seq_i64(head.seq))
    .bind(&head.chain_hash[..])
    .bind(head.frontier.encode())
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// How a commit in one statement ([`commit_in_one_statement`]) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneStatement {
    /// Whether the batch was written and committed (the head was the one
    /// it was sealed on, and the clock was not refused).
    pub committed: bool,
    /// The database server's clock (µs), read after the head's lock.
    pub server_now: i64,
}

/// A fast commit's parameters ([`commit_in_one_statement`]), usually
/// encoded on the sealing thread while the batch before commits (again by
/// the committer for a resend): all but the stamp, the statement's last
/// parameter, bound as it is sent. No `Debug`: it holds the entries.
pub struct OneStatementArgs {
    args: sqlx::postgres::PgArguments,
    /// About the entries' size (ciphertexts and 200 bytes each), for the
    /// connection's buffers afterwards.
    bytes: usize,
}

/// Encodes [`commit_in_one_statement`]'s parameters for a batch sealed on
/// `prev` that leaves `head`.
pub fn one_statement_args(
    entries: &[StoredEntry],
    nodes: &[(u32, u64, Hash)],
    counts: &Counts,
    prev: &Head,
    head: &Head,
    max_ahead_us: i64,
) -> Result<OneStatementArgs, LedgerError> {
    use sqlx::Arguments as _;
    let n = entries.len();
    let mut seq = Vec::with_capacity(n);
    let mut event_id = Vec::with_capacity(n);
    let mut occurred_at = Vec::with_capacity(n);
    let mut recorded_at = Vec::with_capacity(n);
    let (mut category, mut action, mut outcome, mut severity) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut actor_id, mut actor_kind, mut resource_type, mut resource_id) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut tenant, mut channel, mut source_app) =
        (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut key_id = Vec::with_capacity(n);
    let (mut iv, mut ciphertext, mut mac, mut leaf_hash, mut chain_hash) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for e in entries {
        let h = &e.header;
        let f = &h.fields;
        seq.push(seq_i64(h.seq));
        event_id.push(h.event_id);
        occurred_at.push(h.occurred_at_us);
        recorded_at.push(h.recorded_at_us);
        category.push(f.category.as_str());
        action.push(f.action.as_str());
        outcome.push(f.outcome.as_str());
        severity.push(f.severity.as_str());
        actor_id.push(f.actor_id.as_deref());
        actor_kind.push(f.actor_kind.as_deref());
        resource_type.push(f.resource_type.as_deref());
        resource_id.push(f.resource_id.as_deref());
        tenant.push(f.tenant.as_deref());
        channel.push(f.channel.as_deref());
        source_app.push(f.source_app.as_deref());
        key_id.push(e.key_id as i32);
        iv.push(&e.iv[..]);
        ciphertext.push(&e.ciphertext[..]);
        mac.push(&e.mac[..]);
        leaf_hash.push(&e.leaf_hash[..]);
        chain_hash.push(&e.chain_hash[..]);
    }
    let (levels, idx, hashes) = node_arrays(nodes);
    let (dims, values, buckets, adds) = count_arrays(counts);
    let mut args = sqlx::postgres::PgArguments::default();
    // Each value is encoded as it is added; only a value too long for the
    // protocol is refused.
    let add = |r: Result<(), sqlx::error::BoxDynError>| r.map_err(|e| db_err(sqlx::Error::Encode(e)));
    add(args.add(seq_i64(head.seq)))?;
    add(args.add(&head.chain_hash[..]))?;
    add(args.add(head.frontier.encode()))?;
    add(args.add(seq_i64(prev.seq)))?;
    add(args.add(&prev.chain_hash[..]))?;
    add(args.add(max_ahead_us))?;
    add(args.add(seq))?;
    add(args.add(event_id))?;
    add(args.add(occurred_at))?;
    add(args.add(recorded_at))?;
    add(args.add(category))?;
    add(args.add(action))?;
    add(args.add(outcome))?;
    add(args.add(severity))?;
    add(args.add(actor_id))?;
    add(args.add(actor_kind))?;
    add(args.add(resource_type))?;
    add(args.add(resource_id))?;
    add(args.add(tenant))?;
    add(args.add(channel))?;
    add(args.add(source_app))?;
    add(args.add(key_id))?;
    add(args.add(iv))?;
    add(args.add(ciphertext))?;
    add(args.add(mac))?;
    add(args.add(leaf_hash))?;
    add(args.add(chain_hash))?;
    add(args.add(levels))?;
    add(args.add(idx))?;
    add(args.add(hashes))?;
    add(args.add(dims))?;
    add(args.add(values))?;
    add(args.add(buckets))?;
    add(args.add(adds))?;
    let bytes = entries.iter().map(|e| e.ciphertext.len() + 200).sum();
    Ok(OneStatementArgs { args, bytes })
}

/// The fast commit of a batch sealed on `prev` (its parameters encoded
/// beforehand by [`one_statement_args`]), in one statement and so in
/// one round trip and one transaction of its own (the connection is not
/// in a transaction): the head row's `UPDATE` waits for the head's lock
/// (at most the session's `lock_timeout`) and, under READ COMMITTED,
/// re-checks its condition on the newest head once granted. Only if the
/// head is still `prev` and `stamp` is not more than `max_ahead_us` ahead
/// of the server's clock does it move, and only then (each `INSERT` reads
/// its `RETURNING`, so runs after it) are the entries (from `UNNEST`ed
/// arrays, one per column), the stored Merkle nodes and the dashboard
/// counts inserted. Otherwise nothing is written, and the caller tells a
/// moved head from a refused clock by `server_now`. A committed event id
/// fails the whole statement with the unique index's violation.
pub async fn commit_in_one_statement(
    conn: &mut PgConnection,
    args: OneStatementArgs,
    stamp: i64,
) -> Result<OneStatement, LedgerError> {
    use sqlx::Arguments as _;
    let OneStatementArgs { mut args, bytes } = args;
    args.add(stamp).map_err(|e| db_err(sqlx::Error::Encode(e)))?;
    let rows = sqlx::query_with(ONE_STATEMENT, args)
        // All of the answer, up to the server's ReadyForQuery: an error
        // after the row (the commit's own) must not go unread.
        .fetch_all(&mut *conn)
        .await;
    // sqlx keeps its write buffer at the largest size it ever held (as
    // after a `COPY`: [`insert_entries`]), refused statements included.
    if bytes > BUFFER_KEPT {
        conn.shrink_buffers();
    }
    let rows = rows.map_err(db_err)?;
    // Answered to the end, so committed if it moved the head: an answer
    // that cannot be read is a lost one (settled from the head).
    let unreadable = |what: String| db_err(sqlx::Error::Protocol(format!("the commit's statement answered {what}")));
    let [row] = rows.as_slice() else { return Err(unreadable(format!("{} rows", rows.len()))) };
    let moved: i64 = row.try_get("moved").map_err(|e| unreadable(e.to_string()))?;
    let server_now: i64 = row.try_get("server_now").map_err(|e| unreadable(e.to_string()))?;
    Ok(OneStatement { committed: moved == 1, server_now })
}

/// [`commit_in_one_statement`]'s text. The clock is read by the `UPDATE`'s
/// condition (again when a newer head makes it re-check) and by the last
/// `SELECT`, after it. The parameters, in the order [`one_statement_args`]
/// adds them: $1-$5 the new head and `prev`, $6 the clock's limit, $7-$27
/// the entries' columns, $28-$30 the Merkle nodes, $31-$34 the counts;
/// then $35, the stamp, added last by [`commit_in_one_statement`].
const ONE_STATEMENT: &str = "WITH moved AS (UPDATE ledger_head SET seq = $1, chain_hash = $2, frontier = $3 \
       WHERE id = 1 AND seq = $4 AND chain_hash = $5 \
         AND $35::bigint - CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) <= $6::bigint \
       RETURNING 1), \
     entries AS (INSERT INTO ledger_entries (seq, event_id, occurred_at, recorded_at, category, action, outcome, \
       severity, actor_id, actor_kind, resource_type, resource_id, tenant, channel, source_app, key_id, iv, \
       ciphertext, mac, leaf_hash, chain_hash) \
       SELECT * FROM UNNEST($7::bigint[], $8::uuid[], $9::bigint[], $10::bigint[], $11::text[], $12::text[], \
         $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], \
         $21::text[], $22::integer[], $23::bytea[], $24::bytea[], $25::bytea[], $26::bytea[], $27::bytea[]) \
       WHERE EXISTS (SELECT 1 FROM moved)), \
     nodes AS (INSERT INTO merkle_nodes (level, idx, hash) \
       SELECT * FROM UNNEST($28::smallint[], $29::bigint[], $30::bytea[]) WHERE EXISTS (SELECT 1 FROM moved)), \
     counts AS (INSERT INTO audit_rollup_deltas (dimensions, vals, buckets, counts) \
       SELECT $31::text[], $32::text[], $33::bigint[], $34::bigint[] \
       WHERE cardinality($31::text[]) > 0 AND EXISTS (SELECT 1 FROM moved)) \
     SELECT (SELECT count(*) FROM moved) AS moved, \
       CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) AS server_now";

/// Serialises the folds of `audit_rollup_deltas` (a removal's is held
/// until the removal commits): a removal must find its entries' counts
/// folded, and no fold may add to them meanwhile, before it takes them
/// away. An advisory lock next to the migrations' (`storage.rs`: key
/// 4302917144236181, "custos-migrate" as an integer; this is the next one).
pub const FOLD_LOCK: &str = "SELECT pg_advisory_xact_lock(4302917144236182)";

/// [`FOLD_LOCK`], tried: `true` if taken (the background folds of every
/// replica do not queue behind each other or a removal).
pub const FOLD_LOCK_TRY: &str = "SELECT pg_try_advisory_xact_lock(4302917144236182)";

/// The fold of [`FOLD_ALL`] and [`FOLD_SLICE`] after its `DELETE … RETURNING`:
/// every moved row's counts added up per key and added to `audit_rollups`
/// in key order (one statement: the rows it deletes are the rows it adds).
macro_rules! fold_from {
    ($moved:literal) => {
        concat!(
            "WITH moved AS (",
            $moved,
            " RETURNING dimensions, vals, buckets, counts), \
             flat AS (SELECT u.d, u.v, u.b, u.n FROM moved, \
               UNNEST(moved.dimensions, moved.vals, moved.buckets, moved.counts) AS u(d, v, b, n)) \
             INSERT INTO audit_rollups (dimension, value, bucket, count) \
             SELECT d, v, b, CAST(SUM(n) AS BIGINT) FROM flat GROUP BY d, v, b ORDER BY d, v, b \
             ON CONFLICT (dimension, value, bucket) DO UPDATE SET count = audit_rollups.count + excluded.count"
        )
    };
}

/// Folds every row of `audit_rollup_deltas` into `audit_rollups` (a
/// removal's fold; run under [`FOLD_LOCK`], in a transaction).
pub const FOLD_ALL: &str = fold_from!("DELETE FROM audit_rollup_deltas");

/// Folds the oldest 1,000 rows of `audit_rollup_deltas` (the background
/// fold, four times a second; under [`FOLD_LOCK`], in a transaction): about
/// 12 s of commits at 80k events/s, 1,000 per commit, so a backlog left
/// while folds failed is caught up within seconds, and no fold grows with
/// it.
pub const FOLD_SLICE: &str = fold_from!(
    "DELETE FROM audit_rollup_deltas WHERE id IN (SELECT id FROM audit_rollup_deltas ORDER BY id LIMIT 1000)"
);

fn entry_from_pg_row(r: &PgRow) -> Result<StoredEntry, LedgerError> {
    let get = |e: sqlx::Error| LedgerError::Corrupt(format!("a ledger_entries row cannot be read: {e}"));
    let bytes = |i: usize, what: &str| -> Result<Vec<u8>, LedgerError> {
        r.try_get::<Vec<u8>, _>(i)
            .map_err(|e| LedgerError::Corrupt(format!("ledger_entries.{what} cannot be read: {e}")))
    };
    let key_id: i32 = r.try_get(15).map_err(get)?;
    Ok(StoredEntry {
        header: EntryHeader {
            seq: to_u64(r.try_get(0).map_err(get)?, "seq")?,
            event_id: r.try_get::<Uuid, _>(1).map_err(get)?,
            occurred_at_us: r.try_get(2).map_err(get)?,
            recorded_at_us: r.try_get(3).map_err(get)?,
            fields: HeaderFields {
                category: r.try_get(4).map_err(get)?,
                action: r.try_get(5).map_err(get)?,
                outcome: r.try_get(6).map_err(get)?,
                severity: r.try_get(7).map_err(get)?,
                actor_id: r.try_get(8).map_err(get)?,
                actor_kind: r.try_get(9).map_err(get)?,
                resource_type: r.try_get(10).map_err(get)?,
                resource_id: r.try_get(11).map_err(get)?,
                tenant: r.try_get(12).map_err(get)?,
                channel: r.try_get(13).map_err(get)?,
                source_app: r.try_get(14).map_err(get)?,
            },
        },
        key_id: u32::try_from(key_id).map_err(|_| LedgerError::Corrupt(format!("negative key id {key_id}")))?,
        iv: array_of(bytes(16, "iv")?, "iv")?,
        ciphertext: bytes(17, "ciphertext")?,
        mac: array_of(bytes(18, "mac")?, "mac")?,
        leaf_hash: array_of(bytes(19, "leaf_hash")?, "leaf_hash")?,
        chain_hash: array_of(bytes(20, "chain_hash")?, "chain_hash")?,
    })
}

/// Entries with `from <= seq <= to`, in seq order, at most `limit`, decoded
/// straight from sqlx's rows.
pub async fn read_entries(
    conn: &mut PgConnection,
    from: u64,
    to: u64,
    limit: u64,
) -> Result<Vec<StoredEntry>, LedgerError> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3");
    let rows = fetch_range(conn, sqlx::query(sqlx::AssertSqlSafe(sql)), from, to, limit).await?;
    rows.iter().map(entry_from_pg_row).collect()
}

/// Runs a query whose `$1`, `$2`, `$3` are a seq range's bounds and a row limit.
async fn fetch_range(
    conn: &mut PgConnection,
    query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    from: u64,
    to: u64,
    limit: u64,
) -> Result<Vec<PgRow>, LedgerError> {
    query.bind(seq_i64(from)).bind(seq_i64(to)).bind(seq_i64(limit)).fetch_all(&mut *conn).await.map_err(db_err)
}

/// Entries with `from <= seq <= to`, in seq order, by one binary `COPY …
/// TO STDOUT` into a [`RawPage`] (the verifier's read): PostgreSQL sends
/// the columns in their binary form, and each entry's fields are borrowed
/// from the received bytes into the page's one buffer, without a value or
/// an allocation per column. `data` is the buffer the stream is gathered
/// in, kept by the caller from one page to the next. The bounds are
/// integers written into the statement (`COPY` takes no parameters).
///
/// On any error the connection is closed instead of going back to the
/// pool: a `COPY` refused as it starts leaves the server's `ReadyForQuery`
/// unread by sqlx (0.9), and a connection one answer behind would hand the
/// next query the previous one's result.
pub async fn copy_entries_raw(
    conn: &mut PoolConnection<Postgres>,
    from: u64,
    to: u64,
    data: &mut Vec<u8>,
) -> Result<RawPage, LedgerError> {
    let rows = usize::try_from(to.saturating_sub(from).saturating_add(1)).unwrap_or(usize::MAX);
    let page = gather_copy(conn, from, to, data).await.and_then(|()| decode_entries(data, rows));
    if page.is_err() {
        conn.close_on_drop();
    }
    // One page of huge rows does not keep its memory for the rest of a scan.
    if data.capacity() > COPY_BUFFER_KEPT {
        *data = Vec::new();
    }
    page
}

/// Above this size the buffer a page's `COPY` stream was gathered in is
/// released after the page (64 MiB; a page of 4,096 entries within the
/// ingest limits is a few MiB).
const COPY_BUFFER_KEPT: usize = 64 << 20;

async fn gather_copy(conn: &mut PgConnection, from: u64, to: u64, data: &mut Vec<u8>) -> Result<(), LedgerError> {
    use futures_util::StreamExt as _;
    let sql = format!(
        "COPY (SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE seq >= {} AND seq <= {} ORDER BY seq) \
         TO STDOUT (FORMAT binary)",
        seq_i64(from),
        seq_i64(to)
    );
    data.clear();
    let mut stream = conn.copy_out_raw(&sql).await.map_err(db_err)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(db_err)?;
        // A page's offsets are 32-bit: past 4 GiB it cannot be held.
        if data.len() + chunk.len() > u32::MAX as usize {
            return Err(LedgerError::Corrupt(format!(
                "the entries from seq {from} to {to} hold over 4 GiB: far over the ingest limits"
            )));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(())
}

/// Reads the fields of a `COPY … (FORMAT binary)` stream.
struct CopyReader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> CopyReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], LedgerError> {
        let end = self.at.checked_add(n).filter(|end| *end <= self.data.len()).ok_or_else(|| {
            LedgerError::Corrupt(format!("the COPY stream ends at byte {} inside a row", self.data.len()))
        })?;
        let b = &self.data[self.at..end];
        self.at = end;
        Ok(b)
    }

    fn i16(&mut self) -> Result<i16, LedgerError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }

    fn i32(&mut self) -> Result<i32, LedgerError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }

    /// One field: its bytes, or `None` for NULL (length -1).
    fn field(&mut self) -> Result<Option<&'a [u8]>, LedgerError> {
        match self.i32()? {
            -1 => Ok(None),
            n => {
                let n = usize::try_from(n)
                    .map_err(|_| LedgerError::Corrupt(format!("the COPY stream has a field of length {n}")))?;
                self.take(n).map(Some)
            }
        }
    }

    fn required(&mut self, col: &str) -> Result<&'a [u8], LedgerError> {
        self.field()?.ok_or_else(|| LedgerError::Corrupt(format!("ledger_entries.{col} is NULL")))
    }

    fn fixed<const N: usize>(&mut self, col: &str) -> Result<&'a [u8; N], LedgerError> {
        let b = self.required(col)?;
        b.try_into().map_err(|_| LedgerError::Corrupt(format!("column {col}: expected {N} bytes, found {}", b.len())))
    }

    fn i64(&mut self, col: &str) -> Result<i64, LedgerError> {
        Ok(i64::from_be_bytes(*self.fixed::<8>(col)?))
    }
}

/// Decodes a binary `COPY` stream of [`ENTRY_COLUMNS`] (the mirror of
/// [`encode_entries`]) into a page. Anything that does not read back (a
/// wrong signature, a row cut short, a field of the wrong size, a NULL
/// where the schema forbids one, anything after the trailer) is `Corrupt`,
/// never a panic. `rows` is how many entries to make room for.
pub fn decode_entries(data: &[u8], rows: usize) -> Result<RawPage, LedgerError> {
    let mut r = CopyReader { data, at: 0 };
    if r.take(11).ok() != Some(b"PGCOPY\n\xff\r\n\0".as_slice()) {
        return Err(LedgerError::Corrupt("the COPY stream does not start with PGCOPY's signature".into()));
    }
    // Bits 0-15 are for incompatible formats and bit 16 is OIDs: a reader
    // stops on any of them; bits 17-31 are to be ignored.
    let flags = r.i32()?;
    if flags & 0x1_ffff != 0 {
        return Err(LedgerError::Corrupt(format!("the COPY stream's header has flags {flags:#x}")));
    }
    let extension = usize::try_from(r.i32()?)
        .map_err(|_| LedgerError::Corrupt("the COPY stream's header extension has a negative length".into()))?;
    r.take(extension)?;
    // The page holds about as many bytes as the stream (less the lengths).
    let mut page = RawPage::with_room(rows.min(data.len() / 100 + 1), data.len());
    loop {
        match r.i16()? {
            -1 if r.at == data.len() => break,
            -1 => return Err(LedgerError::Corrupt("the COPY stream goes on after its trailer".into())),
            21 => {}
            n => return Err(LedgerError::Corrupt(format!("the COPY stream has a row of {n} fields, not 21"))),
        }
        let seq = to_u64(r.i64("seq")?, "seq")?;
        let event_id = r.fixed::<16>("event_id")?;
        let occurred_at_us = r.i64("occurred_at")?;
        let recorded_at_us = r.i64("recorded_at")?;
        let required =
            [r.required("category")?, r.required("action")?, r.required("outcome")?, r.required("severity")?];
        let mut optional = [None; 7];
        for o in &mut optional {
            *o = r.field()?;
        }
        let key_id = i32::from_be_bytes(*r.fixed::<4>("key_id")?);
        let header = super::encoding::HeaderRef { seq, event_id, occurred_at_us, recorded_at_us, required, optional };
        page.push(
            &header,
            u32::try_from(key_id).map_err(|_| LedgerError::Corrupt(format!("negative key id {key_id}")))?,
            *r.fixed::<16>("iv")?,
            r.required("ciphertext")?,
            *r.fixed::<32>("mac")?,
            *r.fixed::<32>("leaf_hash")?,
            *r.fixed::<32>("chain_hash")?,
        )?;
    }
    Ok(page)
}

/// Tombstones with `from <= seq <= to`, in seq order, at most `limit`.
pub async fn read_tombstones(
    conn: &mut PgConnection,
    from: u64,
    to: u64,
    limit: u64,
) -> Result<Vec<TombstoneRow>, LedgerError> {
    let query = sqlx::query(
        "SELECT seq, anchor_seq, leaf_hash, chain_hash FROM ledger_tombstones WHERE seq >= $1 AND seq <= $2 \
         ORDER BY seq LIMIT $3",
    );
    let rows = fetch_range(conn, query, from, to, limit).await?;
    rows.iter()
        .map(|r| {
            let get = |e: sqlx::Error| LedgerError::Corrupt(format!("a ledger_tombstones row cannot be read: {e}"));
            Ok(TombstoneRow {
                seq: to_u64(r.try_get("seq").map_err(get)?, "seq")?,
                anchor_seq: to_u64(r.try_get("anchor_seq").map_err(get)?, "anchor seq")?,
                leaf_hash: array_of(r.try_get("leaf_hash").map_err(get)?, "leaf_hash")?,
                chain_hash: array_of(r.try_get("chain_hash").map_err(get)?, "chain_hash")?,
            })
        })
        .collect()
}

/// The first seq held in `from..=to`, by an entry or a tombstone.
pub async fn next_held_seq(conn: &mut PgConnection, from: u64, to: u64) -> Result<Option<u64>, LedgerError> {
    let m: Option<i64> = sqlx::query_scalar(
        "SELECT LEAST((SELECT MIN(seq) FROM ledger_entries WHERE seq >= $1 AND seq <= $2), \
         (SELECT MIN(seq) FROM ledger_tombstones WHERE seq >= $1 AND seq <= $2))",
    )
    .bind(seq_i64(from))
    .bind(seq_i64(to))
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    m.map(|m| to_u64(m, "seq")).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64, actor: Option<&str>) -> StoredEntry {
        StoredEntry {
            header: EntryHeader {
                seq,
                event_id: Uuid::from_bytes([9; 16]),
                occurred_at_us: -1,
                recorded_at_us: 2,
                fields: HeaderFields {
                    category: "c".into(),
                    action: "a".into(),
                    outcome: "o".into(),
                    severity: "s".into(),
                    actor_id: actor.map(Into::into),
                    tenant: Some("t".into()),
                    ..HeaderFields::default()
                },
            },
            key_id: 3,
            iv: [1; 16],
            ciphertext: vec![5; 32],
            mac: [2; 32],
            leaf_hash: [3; 32],
            chain_hash: [4; 32],
        }
    }

    #[test]
    fn the_copy_stream_has_postgresql_binary_framing() {
        let mut e = sample(7, Some("é"));
        e.header.fields.tenant = None;
        let b = encode_entries(&[e]);
        assert_eq!(&b[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&b[11..19], &[0; 8]);
        assert_eq!(&b[19..21], &21i16.to_be_bytes());
        // seq: length 8, then 7 big-endian.
        assert_eq!(&b[21..25], &8i32.to_be_bytes());
        assert_eq!(&b[25..33], &7i64.to_be_bytes());
        // occurred_at: -1 as two's complement.
        assert_eq!(&b[33 + 4 + 16 + 4..33 + 4 + 16 + 12], &(-1i64).to_be_bytes());
        // The trailer.
        assert_eq!(&b[b.len() - 2..], &(-1i16).to_be_bytes());
        // Four NOT NULL texts of one byte, actor_id of two (é), six NULLs.
        let expected =
            11 + 8 + 2 + (4 + 8) * 3 + 4 + 16 + (4 + 1) * 4 + (4 + 2) + 4 * 6 + (4 + 4) + (4 + 16) + (4 + 32) * 4 + 2;
        assert_eq!(b.len(), expected);
    }

    #[test]
    fn a_copy_stream_reads_back_as_the_entries_it_was_written_from() {
        let entries = [sample(7, Some("é")), sample(8, None), sample(9, Some(""))];
        let page = decode_entries(&encode_entries(&entries), 3).unwrap();
        assert_eq!(page.len(), 3);
        for (r, e) in page.recs.iter().zip(&entries) {
            assert_eq!(r.seq, e.header.seq);
            assert_eq!(&page.entry(r).unwrap(), e);
            // The header bytes the MAC and leaf cover, as the owned path writes them.
            let mut h = Vec::new();
            super::super::encoding::write_header(&mut h, &super::super::encoding::HeaderRef::of(&e.header));
            assert_eq!(page.header(r), h.as_slice());
        }
        // An empty range: the signature, the header and the trailer.
        assert!(decode_entries(&encode_entries(&[]), 0).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_copy_stream_is_refused_at_every_cut_and_never_panics() {
        let whole = encode_entries(&[sample(1, Some("a")), sample(2, None)]);
        // Cut anywhere before the trailer's end: an error, not a short page.
        for cut in 0..whole.len() {
            assert!(decode_entries(&whole[..cut], 2).is_err(), "cut at {cut} was accepted");
        }
        // Any byte flipped: a page or an error, never a panic.
        for at in 0..whole.len() {
            let mut b = whole.clone();
            b[at] ^= 0xa5;
            let _ = decode_entries(&b, 2);
        }
        // A NULL where the schema has NOT NULL (category: after seq, event_id
        // and the two times).
        let mut b = whole.clone();
        let category = 19 + 2 + (4 + 8) + (4 + 16) + (4 + 8) * 2;
        b.splice(category..category + 4 + 1, (-1i32).to_be_bytes());
        let err = decode_entries(&b, 2).unwrap_err().to_string();
        assert!(err.contains("category is NULL"), "{err}");
        // A row of another width.
        let mut b = whole.clone();
        b[19..21].copy_from_slice(&20i16.to_be_bytes());
        let err = decode_entries(&b, 2).unwrap_err().to_string();
        assert!(err.contains("20 fields"), "{err}");
        // A fixed-size column of another size (event_id one byte short).
        let mut b = whole.clone();
        b[33..37].copy_from_slice(&15i32.to_be_bytes());
        b.remove(37);
        let err = decode_entries(&b, 2).unwrap_err().to_string();
        assert!(err.contains("event_id: expected 16 bytes, found 15"), "{err}");
        // A negative key id.
        let one = encode_entries(&[sample(1, None)]);
        let key_id = one.len() - 2 - (4 + 32) * 4 - (4 + 16) - 4;
        let mut b = one.clone();
        b[key_id..key_id + 4].copy_from_slice(&(-3i32).to_be_bytes());
        let err = decode_entries(&b, 1).unwrap_err().to_string();
        assert!(err.contains("negative key id -3"), "{err}");
        // Header flags: OIDs (bit 16) or an incompatible format (bits
        // 0-15) are refused; bits 17-31 are ignored, as the format says.
        for (flags, refused) in [(1 << 16, true), (1, true), (1 << 15, true), (1 << 17, false), (i32::MIN, false)] {
            let mut b = one.clone();
            b[11..15].copy_from_slice(&flags.to_be_bytes());
            assert_eq!(decode_entries(&b, 1).is_err(), refused, "flags {flags:#x}");
        }
        // A header extension is skipped.
        let mut b = one.clone();
        b[15..19].copy_from_slice(&3i32.to_be_bytes());
        b.splice(19..19, [7, 7, 7]);
        assert_eq!(decode_entries(&b, 1).unwrap().len(), 1);
        // Anything after the trailer.
        let mut b = one;
        b.push(0);
        let err = decode_entries(&b, 1).unwrap_err().to_string();
        assert!(err.contains("after its trailer"), "{err}");
    }

    #[test]
    fn the_copy_in_and_copy_out_column_lists_agree() {
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words(COPY_ENTRIES).contains(&format!("({})", words(ENTRY_COLUMNS))), "{COPY_ENTRIES}");
        // The fast commit inserts the same columns, in the order of its arrays.
        assert!(words(ONE_STATEMENT).contains(&format!("({})", words(ENTRY_COLUMNS))), "{ONE_STATEMENT}");
    }

    #[test]
    fn a_lost_connection_is_told_from_a_refusal() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(is_connection_lost(&db_err(sqlx::Error::Io(io))));
        assert!(is_connection_lost(&db_err(sqlx::Error::Protocol("unexpected message".into()))));
        assert!(!is_connection_lost(&db_err(sqlx::Error::RowNotFound)));
        assert!(!is_connection_lost(&LedgerError::CommitFailed));
    }
}
