//! Running an export: a fresh checkpoint first (every exported row is then
//! provable against it), one read snapshot, pages decrypted and encoded on
//! both cores, the file hashed as it is written, and the manifest at the
//! end.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sea_orm::ConnectionTrait as _;
use sha2::Digest as _;
use uuid::Uuid;

use super::sink::{Cover, ExportFormats, ExportSink, OwnedRow, PageEncoder, Row};
use super::{ExportFormat, Summary};
use crate::events::model::{ExportManifest, ManifestCheckpoint};
use crate::events::search::{self, SearchFilter};
use crate::events::service::{Events, EventsError, contains_text, view_of};
use crate::ledger::LedgerError;
use crate::ledger::crypto::DataKey;
use crate::ledger::raw_page::RawPage;
use crate::ledger::store::{CheckpointRow, entry_from_row};
use crate::ledger::types::{Hash, StoredEntry};
use crate::storage::stmt_for;
use crate::time::rfc3339;

/// Entries per page read.
const PAGE: usize = 2048;
/// Threads decrypting and encoding pages.
const WORKERS: usize = 2;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportSpec {
    /// The export's id.
    pub id: Uuid,
    /// The format.
    pub format: ExportFormat,
    /// The search (its `limit` and cursor are ignored).
    pub filter: SearchFilter,
    /// The filters as given (for the manifest and the title page).
    pub filters: Vec<(String, String)>,
    /// Who asked.
    pub generated_by: String,
}

/// Progress an export reports while it runs (read from other threads).
#[derive(Debug, Default)]
pub struct ExportProgress {
    /// Rows written.
    pub rows: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Set to stop the export early.
    pub cancel: AtomicBool,
}

/// An export ready to run: checkpoint taken, rows counted.
pub struct PreparedExport {
    ledger: crate::ledger::Ledger,
    spec: ExportSpec,
    checkpoint: Option<CheckpointRow>,
    total: Option<u64>,
    actors: Vec<String>,
    resource_ids: Vec<String>,
    keys: HashMap<u32, Arc<DataKey>>,
    generated_at_us: i64,
}

impl std::fmt::Debug for PreparedExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedExport").field("id", &self.spec.id).field("total", &self.total).finish()
    }
}

impl Events {
    /// Signs a checkpoint of the ledger as it is now, bounds the export to
    /// it, and counts the rows (unless free text makes that a full scan).
    pub async fn prepare_export(&self, mut spec: ExportSpec) -> Result<PreparedExport, EventsError> {
        let ledger = self.ledger();
        let checkpoint = ledger.checkpoint_now().await?;
        spec.filter.max_seq = Some(checkpoint.as_ref().map_or(0, |c| c.tree_size));
        spec.filter.after_seq = None;
        let (actors, resource_ids) = self.masked_forms(&spec.filter);
        let total = if spec.filter.q.is_none() {
            let conn = ledger.db().conn();
            let b = conn.get_database_backend();
            let (sql, values) = search::count_sql(&spec.filter, &actors, &resource_ids, b);
            let row = conn.query_one_raw(stmt_for(b, &sql, values)).await?;
            let n: i64 = row.map(|r| r.try_get("", "n")).transpose().map_err(LedgerError::from)?.unwrap_or(0);
            Some(n.max(0) as u64)
        } else {
            None
        };
        Ok(PreparedExport {
            ledger: ledger.clone(),
            spec,
            checkpoint,
            total,
            actors,
            resource_ids,
            keys: ledger.keys().snapshot(),
            generated_at_us: ledger.now_us(),
        })
    }
}

/// Counts bytes and hashes them on their way out.
struct Hashing<'a> {
    out: &'a mut (dyn Write + Send),
    sha: sha2::Sha256,
    bytes: u64,
    progress: &'a ExportProgress,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.progress.cancel.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("the export was cancelled"));
        }
        let n = self.out.write(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        self.progress.bytes.store(self.bytes, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A decoded page: its rows (for sinks that lay them out) or its encoded
/// bytes (for sinks with a page encoder), and what every format counts.
#[derive(Default)]
struct Decoded {
    rows: Vec<OwnedRow>,
    seqs: Vec<u64>,
    leaves: Vec<Hash>,
    bytes: Vec<u8>,
}

impl PreparedExport {
    /// Rows the export will have (None with free text).
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// The spec.
    pub fn spec(&self) -> &ExportSpec {
        &self.spec
    }

    /// The file name it is offered under.
    pub fn file_name(&self) -> String {
        let t = chrono::DateTime::from_timestamp_micros(self.generated_at_us)
            .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
            .unwrap_or_default();
        format!("custos-audit-{t}-{}.{}", &self.spec.id.simple().to_string()[..8], self.spec.format.ext())
    }

    /// What the title page of a report says about this export.
    pub fn cover(&self) -> Cover {
        Cover {
            origin: self.ledger.origin().to_owned(),
            generated_by: self.spec.generated_by.clone(),
            generated_at: rfc3339(self.generated_at_us),
            filters: self.spec.filters.iter().map(|(k, v)| format!("{k} = {v}")).collect(),
            checkpoint: self.checkpoint.as_ref().map(|c| (c.tree_size, hex::encode(c.root_hash))),
            export_id: self.spec.id.to_string(),
        }
    }

    /// Writes the file in its format (from `formats`). Blocking: run it on
    /// a blocking thread. Returns the manifest (to be signed and recorded
    /// by the caller).
    pub fn run(
        self,
        formats: &dyn ExportFormats,
        out: &mut (dyn Write + Send),
        progress: &ExportProgress,
    ) -> Result<ExportManifest, EventsError> {
        let format = self.spec.format;
        let file_name = self.file_name();
        let mut sink: Box<dyn ExportSink> = formats.sink(format, self.cover()).map_err(io)?;
        let encoder = sink.encoder();
        let wants_summary = sink.wants_summary();
        let mut hashing = Hashing { out, sha: sha2::Sha256::new(), bytes: 0, progress };
        let mut entries_sha = sha2::Sha256::new();
        let mut summary = Summary::default();
        {
            let mut w = BufWriter::with_capacity(256 * 1024, &mut hashing);
            sink.begin(&mut w).map_err(io)?;
            let needle = self.spec.filter.q.as_ref().map(|q| q.to_lowercase());
            let handle = tokio::runtime::Handle::try_current().ok();
            let (keys, needle, this, encoder) = (&self.keys, needle.as_deref(), &self, encoder.as_deref());
            std::thread::scope(|scope| -> Result<(), EventsError> {
                // Reader -> two decoding workers -> this thread, which puts
                // the pages back in order and writes them. Channels are
                // bounded: a few pages in flight, whatever the export's size.
                type Page = (usize, Result<RawPage, EventsError>);
                let (page_tx, page_rx) = std::sync::mpsc::sync_channel::<Page>(2);
                let page_rx = Arc::new(std::sync::Mutex::new(page_rx));
                let (out_tx, out_rx) = std::sync::mpsc::sync_channel::<(usize, Result<Decoded, EventsError>)>(4);
                scope.spawn(move || {
                    for (i, page) in this.pages(handle).enumerate() {
                        if page_tx.send((i, page)).is_err() {
                            break;
                        }
                    }
                });
                for _ in 0..WORKERS {
                    let (rx, tx) = (page_rx.clone(), out_tx.clone());
                    scope.spawn(move || {
                        loop {
                            let next = match rx.lock() {
                                Ok(r) => r.recv(),
                                Err(_) => break,
                            };
                            let Ok((i, page)) = next else { break };
                            let decoded = page.and_then(|p| decode(&p, keys, needle, encoder));
                            let failed = decoded.is_err();
                            if tx.send((i, decoded)).is_err() || failed {
                                break;
                            }
                        }
                    });
                }
                drop((out_tx, page_rx));
                let mut write_in_order = || -> Result<(), EventsError> {
                    let mut pending = std::collections::BTreeMap::new();
                    let mut next = 0usize;
                    for (i, decoded) in out_rx.iter() {
                        pending.insert(i, decoded);
                        while let Some(decoded) = pending.remove(&next) {
                            next += 1;
                            if progress.cancel.load(Ordering::Relaxed) {
                                return Err(io(std::io::Error::other("the export was cancelled")));
                            }
                            let part = decoded?;
                            for (seq, leaf) in part.seqs.iter().zip(&part.leaves) {
                                entries_sha.update(leaf);
                                summary.count_seq(*seq);
                            }
                            if wants_summary {
                                for r in &part.rows {
                                    summary.add(&r.view, r.occurred_us);
                                }
                            }
                            if encoder.is_some() {
                                sink.encoded(&part.bytes, &mut w).map_err(io)?;
                            } else {
                                sink.rows(&part.rows, &mut w).map_err(io)?;
                            }
                            progress.rows.store(summary.rows, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                };
                let result = write_in_order();
                // Stops the workers (and through them the reader) on an error.
                drop(out_rx);
                result
            })?;
            let entries_hex = hex::encode(entries_sha.clone().finalize());
            sink.finish(&summary, &entries_hex, &mut w).map_err(io)?;
            w.flush().map_err(io)?;
        }
        let ledger = &self.ledger;
        Ok(ExportManifest {
            manifest_version: 1,
            export_id: self.spec.id,
            format: format.ext().to_owned(),
            file_name,
            sha256: hex::encode(hashing.sha.finalize()),
            bytes: hashing.bytes,
            rows: summary.rows,
            first_seq: summary.first_seq,
            last_seq: summary.last_seq,
            entries_sha256: hex::encode(entries_sha.finalize()),
            filters: self.spec.filters.clone(),
            generated_at: rfc3339(self.generated_at_us),
            generated_by: self.spec.generated_by.clone(),
            origin: ledger.origin().to_owned(),
            checkpoint: self.checkpoint.as_ref().map(|c| ManifestCheckpoint {
                size: c.tree_size,
                root: hex::encode(c.root_hash),
                note: c.note.clone(),
            }),
        })
    }

    /// Pages of matching entries in order, from one read snapshot on
    /// SQLite (a reader thread reads ahead), keyset pages elsewhere.
    fn pages(
        &self,
        handle: Option<tokio::runtime::Handle>,
    ) -> Box<dyn Iterator<Item = Result<RawPage, EventsError>> + '_> {
        let db = self.ledger.db();
        let f = self.spec.filter.clone();
        if let Some(path) = db.sqlite_file().map(std::path::Path::to_path_buf) {
            let busy = db.busy_timeout();
            let (sql, values) = search::build_sql(
                &f,
                &self.actors,
                &self.resource_ids,
                None,
                i64::MAX as u64,
                sea_orm::DbBackend::Sqlite,
            );
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<RawPage, EventsError>>(2);
            std::thread::spawn(move || {
                let run = || -> Result<(), LedgerError> {
                    let mut conn = crate::ledger::sqlite_direct::open(&path, busy)?;
                    // Read once, in order: read(2) rather than a memory map,
                    // so the file does not count in this process's memory,
                    // and a small page cache (the 64 MiB every direct
                    // connection gets would fill with pages this scan never
                    // reads again: 64 of the 164 MB an XLSX export of 1M
                    // events held at its peak).
                    conn.pragma_update(None, "mmap_size", 0i64)?;
                    conn.pragma_update(None, "cache_size", -2_048i64)?;
                    // A window's rows come off the time index and are sorted
                    // into ledger order. The sort keeps about `cache_size` in
                    // memory and spills the rest to temporary files (275-280
                    // MB for 300,000 rows with 64 MiB, 71 MB with 2 MiB);
                    // said here, as this build's default, so that a build
                    // keeping temporary files in memory does not undo it.
                    conn.pragma_update(None, "temp_store", "FILE")?;
                    let snapshot = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
                    let params: Vec<rusqlite::types::Value> = values.iter().map(to_sqlite).collect::<Result<_, _>>()?;
                    let mut stmt = snapshot.prepare(&sql)?;
                    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                    // Each page's columns are copied into one buffer (no
                    // allocation per entry on this thread, which is the
                    // one that cannot be shared); the workers read them.
                    let mut buf = RawPage::with_capacity(PAGE);
                    while let Some(row) = rows.next()? {
                        crate::ledger::sqlite_direct::push_raw(&mut buf, row)?;
                        if buf.len() == PAGE
                            && tx.send(Ok(std::mem::replace(&mut buf, RawPage::with_capacity(PAGE)))).is_err()
                        {
                            return Ok(());
                        }
                    }
                    if !buf.is_empty() {
                        let _ = tx.send(Ok(buf));
                    }
                    Ok(())
                };
                if let Err(e) = run() {
                    let _ = tx.send(Err(e.into()));
                }
            });
            return Box::new(rx.into_iter());
        }
        let Some(handle) = handle else {
            return Box::new(std::iter::once(Err(EventsError::Export(
                "no async runtime to read the database with".into(),
            ))));
        };
        let conn = db.conn().clone();
        let mut after: Option<u64> = None;
        let mut done = false;
        Box::new(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let b = conn.get_database_backend();
            let (sql, values) =
                search::build_sql(&f, &self.actors, &self.resource_ids, after.map(search::After::Seq), PAGE as u64, b);
            let page = handle.block_on(conn.query_all_raw(stmt_for(b, &sql, values)));
            let entries: Result<Vec<StoredEntry>, EventsError> = match page {
                Ok(rows) => rows.iter().map(|r| entry_from_row(r).map_err(EventsError::from)).collect(),
                Err(e) => Err(LedgerError::from(e).into()),
            };
            match entries {
                Ok(v) if v.is_empty() => None,
                Ok(v) => {
                    done = v.len() < PAGE;
                    after = v.last().map(|e| e.header.seq);
                    // The same pages as SQLite's (a copy, small next to the
                    // query's own cost here), so the workers read one kind.
                    let mut page = RawPage::with_capacity(v.len());
                    for e in &v {
                        if let Err(e) = page.push_entry(e) {
                            done = true;
                            return Some(Err(e.into()));
                        }
                    }
                    Some(Ok(page))
                }
                Err(e) => {
                    done = true;
                    Some(Err(e))
                }
            }
        }))
    }
}

fn io(e: std::io::Error) -> EventsError {
    EventsError::Export(e.to_string())
}

fn to_sqlite(v: &sea_orm::Value) -> Result<rusqlite::types::Value, LedgerError> {
    use rusqlite::types::Value as S;
    use sea_orm::Value as V;
    Ok(match v {
        V::String(Some(s)) => S::Text(s.to_string()),
        V::BigInt(Some(i)) => S::Integer(*i),
        V::Int(Some(i)) => S::Integer(i64::from(*i)),
        V::Bytes(Some(b)) => S::Blob(b.to_vec()),
        other => return Err(LedgerError::Corrupt(format!("unexpected search parameter {other:?}"))),
    })
}

fn decode(
    entries: &RawPage,
    keys: &HashMap<u32, Arc<DataKey>>,
    needle: Option<&str>,
    encoder: Option<&dyn PageEncoder>,
) -> Result<Decoded, EventsError> {
    let mut d = Decoded::default();
    let mut page = encoder.map(|e| e.page());
    // Without free text, encoders that need only the flat columns read them
    // straight from the MAC-checked header bytes and the decrypted payload,
    // without building the event.
    let flat = needle.is_none() && encoder.is_some_and(|e| e.flat_is_enough());
    for rec in &entries.recs {
        let seq = rec.seq;
        let key = keys.get(&rec.key_id).ok_or(LedgerError::UnknownKey { seq, key_id: rec.key_id })?;
        // The header bytes as stored in the page: the ones the MAC covers.
        let plain = key
            .open(entries.header(rec), &rec.iv, entries.ciphertext(rec), &rec.mac)
            .map_err(|e| LedgerError::Corrupt(format!("entry seq {seq}: {e}")))?;
        if flat
            && let Some(p) = page.as_mut()
            && let Some(header) = entries.header_ref(rec)
            && super::sealed::with_flat_cells(&header, &plain, |cells| p.push(Row::Flat(cells)))
        {
            d.seqs.push(seq);
            d.leaves.push(rec.leaf_hash);
            continue;
        }
        let entry = entries.entry(rec)?;
        let view = view_of(&entry, &plain, false);
        if needle.is_some_and(|n| !contains_text(&view, n)) {
            continue;
        }
        d.seqs.push(seq);
        d.leaves.push(rec.leaf_hash);
        let (occurred_us, recorded_us) = (entry.header.occurred_at_us, entry.header.recorded_at_us);
        match page.as_mut() {
            Some(p) => p.push(Row::View { view: &view, occurred_us, recorded_us }),
            None => d.rows.push(OwnedRow { view, occurred_us, recorded_us }),
        }
    }
    if let Some(p) = page {
        d.bytes = p.finish();
    }
    Ok(d)
}
