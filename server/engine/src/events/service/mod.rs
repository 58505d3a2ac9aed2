//! The events service: ingest (validate -> mask -> seal -> commit), read
//! back, search, statistics and the masking policy. Here ingest, search and
//! statistics; `policy` (the masking policy), `view` (reading a sealed
//! payload back), `keys` (key rotation, recorded first).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use sea_orm::{ConnectionTrait, Value as DbValue};
use serde_json::{Value, json};
use uuid::Uuid;

use super::mask::{MaskRule, Masker, RulesError, default_rules};
use super::model::{
    Actor, BucketCount, Correlation, Event, EventView, IngestReceipt, MaskingPolicy, Resource, SearchPage, Source,
    Stats, ValueCount,
};
use super::search::{self, SearchFilter};
mod keys;
mod policy;
mod read;
mod view;

use self::policy::Policy;
pub use self::read::{EventRef, ProvenEvent, Unmask};
pub(crate) use self::view::{contains_text, sealed_by_server, view_of};
use self::view::{content_digest, receipt_view};
use super::validate::{BodyError, FieldError, Limits, validate_lines};
use crate::ledger::rollup::BUCKET_US;
use crate::ledger::store::{self, entry_from_row};
use crate::ledger::types::{HeaderFields, StoredEntry};
use crate::ledger::{Ledger, LedgerError, NewEntry, Receipt};
use crate::storage::stmt_for;
use crate::time::rfc3339;

/// The sealed submitter of the events the server records about itself.
/// Clients are `api_key:<prefix>` or `user:<id>`, never this.
pub const SERVER_SUBMITTER: &str = "custos";

/// Version of the sealed payload layout written by [`Events`].
pub(crate) const PAYLOAD_VERSION: u64 = 1;

/// How stale ingest's view of the masking policy may get (another
/// replica's change) before it looks again: 2 s.
const POLICY_RECHECK_US: i64 = 2_000_000;

/// Why an events operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The request body was refused.
    #[error("invalid request body")]
    Body(BodyError),
    /// A query or policy parameter is wrong.
    #[error("{}: {}", .0.path, .0.reason)]
    Invalid(FieldError),
    /// The ledger could not do it (fail closed).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Writing an export failed (the client went away, a disk filled).
    #[error("export failed: {0}")]
    Export(String),
}

impl From<sea_orm::DbErr> for EventsError {
    fn from(e: sea_orm::DbErr) -> Self {
        EventsError::Ledger(e.into())
    }
}

pub(crate) fn invalid(path: &str, reason: impl Into<String>) -> EventsError {
    EventsError::Invalid(FieldError { path: path.into(), reason: reason.into() })
}

/// Who sent an ingest request (kept in the sealed payload).
#[derive(Debug, Clone)]
pub struct Submitter {
    /// `api_key:<prefix>`, `user:<id>` or `custos`.
    pub principal: String,
}

/// Ingest, read, search, statistics and masking policy over one ledger.
pub struct Events {
    ledger: Ledger,
    policy: RwLock<Arc<Policy>>,
    /// When the stored policy was last looked at (µs), for ingest's
    /// throttled refresh.
    policy_checked_us: std::sync::atomic::AtomicI64,
    limits: Limits,
    /// Entries a free-text search may decrypt per request.
    pub q_scan_limit: u64,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Events {
    /// Opens the service and loads the current masking policy.
    pub async fn open(ledger: Ledger, limits: Limits) -> Result<Events, EventsError> {
        let events = Events {
            ledger,
            policy: RwLock::new(Arc::new(Policy {
                version: 0,
                masker: Masker::new(default_rules()).map_err(|e| invalid("rules", e.0))?,
                created_at_us: None,
                created_by: None,
                comment: String::new(),
            })),
            policy_checked_us: std::sync::atomic::AtomicI64::new(0),
            limits,
            q_scan_limit: 10_000,
        };
        events.refresh_policy().await?;
        Ok(events)
    }

    /// The ledger underneath.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The request limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn current(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    // --- ingest -----------------------------------------------------------

    /// Validates, masks, seals and commits a batch: all of it or nothing.
    /// Returns one receipt per event, in order, after the commit.
    /// `lines` (NDJSON) puts line numbers in error paths.
    pub async fn ingest(
        &self,
        items: &[Value],
        lines: Option<&[usize]>,
        by: &Submitter,
    ) -> Result<Vec<IngestReceipt>, EventsError> {
        let now = self.ledger.now_us();
        let events = validate_lines(items, lines, now, &self.limits).map_err(EventsError::Body)?;
        // Another replica may have changed the policy: looked at no more
        // than once per POLICY_RECHECK_US, not on every request.
        if now - self.policy_checked_us.load(std::sync::atomic::Ordering::Relaxed) > POLICY_RECHECK_US {
            self.refresh_policy().await?;
        }
        let policy = self.current();
        let digests: Vec<String> = events.iter().map(content_digest).collect();
        let entries = events
            .into_iter()
            .zip(&digests)
            .map(|(e, d)| self.seal_input(&policy, e, &by.principal, Some(d), true))
            .collect();
        let receipts = self.ledger.append(entries).await?;
        let mut out: Vec<IngestReceipt> = receipts.iter().map(receipt_view).collect();
        // A retry is a duplicate of the same content; the same id with other
        // content is a conflict (checked on the duplicate path only). Ids
        // are scoped per submitter: an id another submitter used is a
        // conflict too, and its receipt tells nothing of the other's event.
        for (r, digest) in out.iter_mut().zip(&digests) {
            if r.duplicate
                && let Some(entry) = self.ledger.entry(r.seq).await?
            {
                let plain = self.ledger.open_payload(&entry).await?;
                let stored: Value = serde_json::from_slice(&plain).unwrap_or(Value::Null);
                let same_submitter = stored.get("submitted_by").and_then(Value::as_str) == Some(by.principal.as_str());
                if !same_submitter {
                    r.conflict = true;
                    r.seq = 0;
                    r.recorded_at = String::new();
                    continue;
                }
                r.conflict = stored.get("digest").and_then(Value::as_str).is_some_and(|d| d != digest);
            }
        }
        Ok(out)
    }

    /// Records one event Custos produces itself (self-audit), masked by the
    /// same policy.
    /// The one writer of Custos's own events (see `own`): sealed with the
    /// server as the submitter, masked unless exempt.
    pub(crate) async fn record_with(&self, event: Event, masking: super::own::Masking) -> Result<Receipt, EventsError> {
        let policy = self.current();
        let mask = masking == super::own::Masking::Applied;
        // Custos's own events have fresh ids and are never retried: no digest.
        Ok(self.ledger.append_one(self.seal_input(&policy, event, SERVER_SUBMITTER, None, mask)).await?)
    }

    fn seal_input(&self, policy: &Policy, mut e: Event, by: &str, digest: Option<&String>, mask: bool) -> NewEntry {
        let keys = self.ledger.keys();
        let originals =
            if mask { policy.masker.mask_event(&mut e, &|v| keys.pseudonym(v)) } else { Default::default() };
        let fields = HeaderFields {
            category: e.category.clone(),
            action: e.action.clone(),
            outcome: e.outcome.as_str().to_owned(),
            severity: e.severity.as_str().to_owned(),
            actor_id: Some(e.actor.id.clone()),
            actor_kind: Some(e.actor.kind.clone()),
            resource_type: e.resource.as_ref().map(|r| r.kind.clone()),
            resource_id: e.resource.as_ref().and_then(|r| r.id.clone()),
            tenant: e.tenant.clone(),
            channel: Some(e.source.channel.clone()),
            source_app: e.source.application.clone(),
        };
        let payload = json!({
            "v": PAYLOAD_VERSION,
            "event": &e,
            "unmasked": originals,
            "policy": policy.version,
            "submitted_by": by,
            "digest": digest,
        });
        NewEntry {
            event_id: e.id,
            occurred_at_us: e.occurred_at_us,
            fields,
            payload: payload.to_string().into_bytes(),
            duration_ms: e.metrics.as_ref().and_then(|m| m.duration_ms),
        }
    }

    // --- reading ----------------------------------------------------------

    /// Decrypts an entry into its view. `unmask` adds the kept originals.
    pub async fn view(&self, entry: &StoredEntry, unmask: bool) -> Result<EventView, EventsError> {
        let plain = self.ledger.open_payload(entry).await?;
        Ok(view_of(entry, &plain, unmask))
    }

    /// An entry by event id.
    pub async fn entry_by_id(&self, id: Uuid) -> Result<Option<StoredEntry>, EventsError> {
        let conn = self.ledger.db().conn();
        let b = conn.get_database_backend();
        let row = conn
            .query_one_raw(stmt_for(
                b,
                &format!("SELECT {} FROM ledger_entries WHERE event_id = ?", store::ENTRY_COLUMNS),
                vec![DbValue::from(id)],
            ))
            .await?;
        Ok(row.map(|r| entry_from_row(&r)).transpose()?)
    }

    /// The actor and resource id filters in both forms: masked values are
    /// stored masked, so a search by the clear value finds them.
    pub(crate) fn masked_forms(&self, f: &SearchFilter) -> (Vec<String>, Vec<String>) {
        let policy = self.current();
        let keys = self.ledger.keys();
        let expand = |list: &[String]| -> Vec<String> {
            let mask = |v: &String| policy.masker.mask_text(v, &|x| keys.pseudonym(x)).0;
            let both: std::collections::BTreeSet<String> = list.iter().flat_map(|a| [a.clone(), mask(a)]).collect();
            both.into_iter().collect()
        };
        (expand(&f.actors), expand(&f.resource_ids))
    }

    /// One page of search results.
    pub async fn search(&self, f: &SearchFilter) -> Result<SearchPage, EventsError> {
        if !(1..=1000).contains(&f.limit) {
            return Err(invalid("limit", "must be between 1 and 1000"));
        }
        let (actors, resource_ids) = self.masked_forms(f);
        let conn = self.ledger.db().conn();
        let b = conn.get_database_backend();
        let needle = f.q.as_ref().map(|q| q.to_lowercase());
        let mut f = f.clone();
        // A cursor from before event-time pages carries the seq alone.
        if f.by_time
            && let (Some(seq), None) = (f.after_seq, f.after_time)
        {
            match self.ledger.entry(seq).await? {
                Some(e) => f.after_time = Some(e.header.occurred_at_us),
                None => return Err(invalid("cursor", "its entry is no longer in the ledger; search again")),
            }
        }
        // Where the next read starts, and the last item kept.
        let mut after = f.after();
        let mut last_kept = None;
        let mut items = Vec::new();
        let mut scanned = 0u64;
        let mut next_cursor = None;
        loop {
            let want = match &needle {
                None => f.limit as u64 + 1,
                Some(_) => 256.min(self.q_scan_limit - scanned).max(1),
            };
            let (sql, values) = search::build_sql(&f, &actors, &resource_ids, after, want, b);
            let rows = conn.query_all_raw(stmt_for(b, &sql, values)).await?;
            let got = rows.len() as u64;
            for row in &rows {
                let entry = entry_from_row(row)?;
                let key = match f.by_time {
                    true => search::After::Time(entry.header.occurred_at_us, entry.header.seq),
                    false => search::After::Seq(entry.header.seq),
                };
                after = Some(key);
                match &needle {
                    None => {
                        if items.len() == f.limit {
                            next_cursor = last_kept.map(|a| search::cursor(f.descending, a));
                            break;
                        }
                        items.push(self.view(&entry, false).await?);
                        last_kept = Some(key);
                    }
                    Some(n) => {
                        scanned += 1;
                        let v = self.view(&entry, false).await?;
                        if contains_text(&v, n) {
                            items.push(v);
                            last_kept = Some(key);
                            if items.len() == f.limit {
                                break;
                            }
                        }
                    }
                }
            }
            match &needle {
                None => break,
                Some(_) => {
                    if items.len() == f.limit {
                        next_cursor = last_kept.map(|a| search::cursor(f.descending, a));
                        break;
                    }
                    if got < want {
                        break;
                    }
                    if scanned >= self.q_scan_limit {
                        // Bound reached: the client continues from here.
                        next_cursor = after.map(|a| search::cursor(f.descending, a));
                        break;
                    }
                }
            }
        }
        Ok(SearchPage { items, next_cursor, scanned: needle.map(|_| scanned) })
    }

    // --- statistics -------------------------------------------------------

    /// Counts per bucket and top values, from the rollups.
    pub async fn stats(
        &self,
        from_us: i64,
        to_us: i64,
        bucket: &str,
        top: u64,
        dimensions: &[&str],
    ) -> Result<Stats, EventsError> {
        let width = match bucket {
            "minute" => BUCKET_US,
            "hour" => 60 * BUCKET_US,
            "day" => 1440 * BUCKET_US,
            _ => return Err(invalid("bucket", "must be minute, hour or day")),
        };
        if to_us <= from_us {
            return Err(invalid("to", "must be after `from`"));
        }
        let start = from_us.div_euclid(width) * width;
        let n_buckets = (to_us - start + width - 1) / width;
        if n_buckets > 5000 {
            return Err(invalid(
                "bucket",
                format!("{n_buckets} buckets in this range; at most 5000 (use a wider bucket)"),
            ));
        }
        if !(1..=100).contains(&top) {
            return Err(invalid("top", "must be between 1 and 100"));
        }
        let (lo, hi) = (start.div_euclid(BUCKET_US), (to_us + BUCKET_US - 1).div_euclid(BUCKET_US));
        self.ledger.settle_rollups().await;
        let conn = self.ledger.db().conn();
        let b = conn.get_database_backend();
        let rows = conn
            .query_all_raw(stmt_for(
                b,
                "SELECT bucket, count FROM audit_rollups_current WHERE dimension = 'total' AND value = '' \
                 AND bucket >= ? AND bucket < ? ORDER BY bucket",
                vec![lo.into(), hi.into()],
            ))
            .await?;
        let mut series: Vec<u64> = vec![0; n_buckets as usize];
        let mut total = 0u64;
        for r in rows {
            let minute: i64 = r.try_get("", "bucket")?;
            let count: i64 = r.try_get("", "count")?;
            let i = ((minute * BUCKET_US - start) / width) as usize;
            if let Some(slot) = series.get_mut(i) {
                *slot += count as u64;
                total += count as u64;
            }
        }
        // Ranked dimensions are counted per hour: the range widens to whole hours.
        let (lo_h, hi_h) = (lo.div_euclid(60) * 60, (hi + 59).div_euclid(60) * 60);
        let mut tops = BTreeMap::new();
        for dim in dimensions {
            let rows = conn
                .query_all_raw(stmt_for(
                    b,
                    "SELECT value, CAST(SUM(count) AS BIGINT) AS n FROM audit_rollups_current \
                     WHERE dimension = ? AND bucket >= ? AND bucket < ? GROUP BY value ORDER BY n DESC, value LIMIT ?",
                    vec![dim.to_string().into(), lo_h.into(), hi_h.into(), (top as i64).into()],
                ))
                .await?;
            let mut list = Vec::with_capacity(rows.len());
            for r in rows {
                let n: i64 = r.try_get("", "n")?;
                list.push(ValueCount { value: r.try_get("", "value")?, count: n as u64 });
            }
            tops.insert(dim.to_string(), list);
        }
        Ok(Stats {
            from: rfc3339(start),
            to: rfc3339(to_us),
            bucket: bucket.into(),
            total,
            series: series
                .into_iter()
                .enumerate()
                .map(|(i, count)| BucketCount { start: rfc3339(start + i as i64 * width), count })
                .collect(),
            top: tops,
        })
    }
}
