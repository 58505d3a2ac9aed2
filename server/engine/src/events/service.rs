//! The events service: ingest (validate -> mask -> seal -> commit), read
//! back, search, statistics and the masking policy.

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
pub use super::time::{parse_rfc3339, rfc3339};
use super::validate::{BodyError, FieldError, Limits, validate_lines};
use crate::ledger::rollup::BUCKET_US;
use crate::ledger::store::{self, entry_from_row};
use crate::ledger::types::{HeaderFields, StoredEntry};
use crate::ledger::{Ledger, LedgerError, NewEntry, Receipt};
use crate::storage::stmt_for;

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

fn invalid(path: &str, reason: impl Into<String>) -> EventsError {
    EventsError::Invalid(FieldError { path: path.into(), reason: reason.into() })
}

struct Policy {
    version: u64,
    masker: Masker,
    created_at_us: Option<i64>,
    created_by: Option<String>,
    comment: String,
}

impl Policy {
    fn view(&self) -> MaskingPolicy {
        MaskingPolicy {
            version: self.version,
            rules: self.masker.rules().to_vec(),
            created_at: self.created_at_us.map(rfc3339),
            created_by: self.created_by.clone(),
            comment: self.comment.clone(),
        }
    }
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
            .map(|(e, d)| self.seal_input(&policy, e, &by.principal, Some(d)))
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
    pub async fn record(&self, event: Event) -> Result<Receipt, EventsError> {
        let policy = self.current();
        // Custos's own events have fresh ids and are never retried: no digest.
        Ok(self.ledger.append_one(self.seal_input(&policy, event, SERVER_SUBMITTER, None)).await?)
    }

    fn seal_input(&self, policy: &Policy, mut e: Event, by: &str, digest: Option<&String>) -> NewEntry {
        let keys = self.ledger.keys();
        let originals = policy.masker.mask_event(&mut e, &|v| keys.pseudonym(v));
        let fields = HeaderFields {
            category: e.category.clone(),
            action: e.action.clone(),
            outcome: e.outcome.clone(),
            severity: e.severity.clone(),
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
        let mut items = Vec::new();
        let mut after = f.after_seq;
        let mut scanned = 0u64;
        let mut next_cursor = None;
        loop {
            let want = match &needle {
                None => f.limit as u64 + 1,
                Some(_) => 256.min(self.q_scan_limit - scanned).max(1),
            };
            let (sql, values) = search::build_sql(f, &actors, &resource_ids, after, want, b);
            let rows = conn.query_all_raw(stmt_for(b, &sql, values)).await?;
            let got = rows.len() as u64;
            for row in &rows {
                let entry = entry_from_row(row)?;
                after = Some(entry.header.seq);
                match &needle {
                    None => {
                        if items.len() == f.limit {
                            next_cursor = Some(search::cursor(f.descending, items_last_seq(&items)));
                            break;
                        }
                        items.push(self.view(&entry, false).await?);
                    }
                    Some(n) => {
                        scanned += 1;
                        let v = self.view(&entry, false).await?;
                        if contains_text(&v, n) {
                            items.push(v);
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
                        next_cursor = Some(search::cursor(f.descending, items_last_seq(&items)));
                        break;
                    }
                    if got < want {
                        break;
                    }
                    if scanned >= self.q_scan_limit {
                        // Bound reached: the client continues from here.
                        next_cursor = after.map(|s| search::cursor(f.descending, s));
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
        let conn = self.ledger.db().conn();
        let b = conn.get_database_backend();
        let rows = conn
            .query_all_raw(stmt_for(
                b,
                "SELECT bucket, count FROM audit_rollups WHERE dimension = 'total' AND value = '' \
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
                    "SELECT value, CAST(SUM(count) AS BIGINT) AS n FROM audit_rollups \
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

    // --- masking policy ---------------------------------------------------

    /// The policy in force.
    pub fn policy(&self) -> MaskingPolicy {
        self.current().view()
    }

    /// Loads the newest stored policy version if it is newer than ours.
    pub async fn refresh_policy(&self) -> Result<(), EventsError> {
        self.policy_checked_us.store(self.ledger.now_us(), std::sync::atomic::Ordering::Relaxed);
        let conn = self.ledger.db().conn();
        let b = conn.get_database_backend();
        let row = conn
            .query_one_raw(stmt_for(
                b,
                "SELECT version, rules, created_at, created_by, comment FROM masking_policy_versions \
                 WHERE version > ? ORDER BY version DESC LIMIT 1",
                vec![(self.current().version as i64).into()],
            ))
            .await?;
        if let Some(r) = row {
            let p = policy_from_row(&r)?;
            let mut slot = self.policy.write().unwrap_or_else(|p| p.into_inner());
            if p.version > slot.version {
                *slot = Arc::new(p);
            }
        }
        Ok(())
    }

    /// Every stored version, newest first (version 0, the defaults, last).
    pub async fn policy_history(&self) -> Result<Vec<MaskingPolicy>, EventsError> {
        let conn = self.ledger.db().conn();
        let b = conn.get_database_backend();
        let rows = conn
            .query_all_raw(stmt_for(
                b,
                "SELECT version, rules, created_at, created_by, comment FROM masking_policy_versions ORDER BY version DESC",
                vec![],
            ))
            .await?;
        let mut out = rows.iter().map(|r| policy_from_row(r).map(|p| p.view())).collect::<Result<Vec<_>, _>>()?;
        out.push(MaskingPolicy {
            version: 0,
            rules: default_rules(),
            created_at: None,
            created_by: None,
            comment: "built-in defaults".into(),
        });
        Ok(out)
    }

    /// Checks a rule list without saving it.
    pub fn check(rules: Vec<MaskRule>) -> Result<Masker, EventsError> {
        super::mask::check_rules(&rules).map_err(|RulesError(e)| invalid("rules", e))?;
        Masker::new(rules).map_err(|RulesError(e)| invalid("rules", e))
    }

    /// Masks a text with the given rules (or the policy in force).
    pub fn preview(&self, text: &str, rules: Option<Vec<MaskRule>>) -> Result<String, EventsError> {
        let keys = self.ledger.keys();
        let pseudonym = |v: &str| keys.pseudonym(v);
        Ok(match rules {
            Some(r) => Self::check(r)?.mask_text(text, &pseudonym).0,
            None => self.current().masker.mask_text(text, &pseudonym).0,
        })
    }

    /// Saves a new policy version. `based_on` must be the version in force
    /// (optimistic concurrency: two admins cannot silently overwrite each
    /// other). The change is recorded in the ledger first: if it cannot be
    /// recorded, nothing changes.
    pub async fn set_policy(
        &self,
        rules: Vec<MaskRule>,
        based_on: u64,
        comment: &str,
        by: &Actor,
        request_id: Option<String>,
    ) -> Result<MaskingPolicy, EventsError> {
        if comment.chars().count() > 500 {
            return Err(invalid("comment", "must be at most 500 characters"));
        }
        let masker = Self::check(rules.clone())?;
        self.refresh_policy().await?;
        let current = self.current();
        if based_on != current.version {
            return Err(invalid(
                "based_on",
                format!("version {based_on} is not the current version {}; reload and try again", current.version),
            ));
        }
        let version = current.version + 1;
        let now = self.ledger.now_us();
        let event = Event {
            id: Uuid::now_v7(),
            occurred_at_us: now,
            category: "policy".into(),
            action: "policy.masking.update".into(),
            outcome: "success".into(),
            reason: None,
            severity: "notice".into(),
            actor: by.clone(),
            resource: Some(Resource { kind: "masking_policy".into(), id: Some(version.to_string()), name: None }),
            tenant: None,
            source: Source { application: Some("custos".into()), host: None, channel: "api".into() },
            correlation: Correlation { request_id, trace_id: None, parent_id: None },
            metrics: None,
            details: Some(
                json!({ "version": version, "previous": current.version, "rules": rules, "comment": comment }),
            ),
        };
        self.record(event).await?;
        let conn = self.ledger.db().conn();
        let b = conn.get_database_backend();
        let rules_json = serde_json::to_string(&rules).map_err(|e| invalid("rules", e.to_string()))?;
        conn.execute_raw(stmt_for(
            b,
            "INSERT INTO masking_policy_versions (version, rules, created_at, created_by, comment) VALUES (?, ?, ?, ?, ?)",
            vec![
                (version as i64).into(),
                rules_json.into(),
                now.into(),
                by.name.clone().unwrap_or_else(|| by.id.clone()).into(),
                comment.to_owned().into(),
            ],
        ))
        .await
        .map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                invalid("based_on", "another change was saved at the same time; reload and try again")
            }
            _ => e.into(),
        })?;
        let policy = Policy {
            version,
            masker,
            created_at_us: Some(now),
            created_by: by.name.clone().or_else(|| Some(by.id.clone())),
            comment: comment.to_owned(),
        };
        let view = policy.view();
        let mut slot = self.policy.write().unwrap_or_else(|p| p.into_inner());
        if version > slot.version {
            *slot = Arc::new(policy);
        }
        Ok(view)
    }
}

impl Events {
    /// Rotates the data key, recorded before it happens (`ledger.key.rotate`
    /// by `by`): if the ledger cannot record it, no key is made. A rotation
    /// that then fails is recorded too, pointing at the first record.
    /// Returns the new key's id.
    pub async fn rotate_key(&self, by: &Actor, channel: &str, request_id: Option<String>) -> Result<u32, EventsError> {
        let (_, previous) = self.ledger.keys().data_key_ids();
        let next = self.ledger.next_key_id().await?;
        let event = |outcome: &str, details: Value| Event {
            id: Uuid::now_v7(),
            occurred_at_us: self.ledger.now_us(),
            category: "admin".into(),
            action: "ledger.key.rotate".into(),
            outcome: outcome.into(),
            reason: None,
            severity: if outcome == "success" { "notice" } else { "error" }.into(),
            actor: by.clone(),
            resource: Some(Resource { kind: "data_key".into(), id: Some(next.to_string()), name: None }),
            tenant: None,
            source: Source { application: Some("custos".into()), host: None, channel: channel.into() },
            correlation: Correlation { request_id: request_id.clone(), trace_id: None, parent_id: None },
            metrics: None,
            details: Some(details),
        };
        let recorded = self.record(event("success", json!({ "key_id": next, "previous_key_id": previous }))).await?;
        match self.ledger.rotate_key_to(next).await {
            Ok(key_id) => Ok(key_id),
            Err(e) => {
                let details =
                    json!({ "previous_key_id": previous, "recorded_as": recorded.event_id, "error": e.to_string() });
                if let Err(le) = self.record(event("error", details)).await {
                    tracing::error!(error = %le, "could not record a failed key rotation");
                }
                Err(e.into())
            }
        }
    }
}

fn policy_from_row(r: &sea_orm::QueryResult) -> Result<Policy, EventsError> {
    let version: i64 = r.try_get("", "version")?;
    let rules_json: String = r.try_get("", "rules")?;
    let rules: Vec<MaskRule> = serde_json::from_str(&rules_json)
        .map_err(|e| LedgerError::Corrupt(format!("masking policy version {version}: {e}")))?;
    Ok(Policy {
        version: version as u64,
        masker: Masker::new(rules)
            .map_err(|e| LedgerError::Corrupt(format!("masking policy version {version}: {e}")))?,
        created_at_us: Some(r.try_get("", "created_at")?),
        created_by: Some(r.try_get("", "created_by")?),
        comment: r.try_get("", "comment")?,
    })
}

fn items_last_seq(items: &[EventView]) -> u64 {
    items.last().map_or(0, |v| v.seq)
}

pub(crate) fn contains_text(v: &EventView, needle: &str) -> bool {
    serde_json::to_string(v).map(|s| s.to_lowercase().contains(needle)).unwrap_or(false)
}

fn receipt_view(r: &Receipt) -> IngestReceipt {
    IngestReceipt {
        seq: r.seq,
        id: r.event_id,
        recorded_at: rfc3339(r.recorded_at_us),
        duplicate: r.duplicate,
        conflict: false,
    }
}

/// SHA-256 (hex) of an event as validated, before masking: what makes a
/// retry a retry. serde_json maps keep their keys sorted, so equal events
/// serialise equally.
fn content_digest(e: &Event) -> String {
    use sha2::Digest as _;
    let bytes = serde_json::to_vec(e).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// Whether a decrypted payload was sealed by the server about itself (its
/// sealed submitter is Custos), not sent by a client.
pub(crate) fn sealed_by_server(plain: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Sealed<'a> {
        #[serde(borrow)]
        submitted_by: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Sealed<'_>>(plain).is_ok_and(|s| s.submitted_by.as_deref() == Some(SERVER_SUBMITTER))
}

/// The view of a decrypted entry. Events ingested through [`Events`] carry
/// their full shape; entries Custos wrote before (lifecycle, identity) are
/// read from the header and whatever of the shape their payload has.
pub(crate) fn view_of(entry: &StoredEntry, plain: &[u8], unmask: bool) -> EventView {
    let h = &entry.header;
    let f = &h.fields;
    // Parsed straight into types (no intermediate JSON tree) on the path
    // search and export take for every row.
    #[derive(serde::Deserialize)]
    struct Sealed {
        #[serde(default)]
        v: u64,
        event: Option<Event>,
        #[serde(default)]
        unmasked: BTreeMap<String, String>,
    }
    let (reason, actor, resource, source, correlation, metrics, details, unmasked) = match serde_json::from_slice::<
        Sealed,
    >(plain)
    {
        Ok(Sealed { v: PAYLOAD_VERSION, event: Some(e), unmasked }) => {
            (e.reason, e.actor, e.resource, e.source, e.correlation, e.metrics, e.details, unmask.then_some(unmasked))
        }
        _ => {
            let legacy = legacy_parts(f, plain);
            (None, legacy.0, legacy.1, legacy.2, legacy.3, None, legacy.4, unmask.then(BTreeMap::new))
        }
    };
    EventView {
        seq: h.seq,
        id: h.event_id,
        occurred_at: rfc3339(h.occurred_at_us),
        recorded_at: rfc3339(h.recorded_at_us),
        category: f.category.clone(),
        action: f.action.clone(),
        outcome: f.outcome.clone(),
        reason,
        severity: f.severity.clone(),
        actor,
        resource,
        tenant: f.tenant.clone(),
        source,
        correlation,
        metrics,
        details,
        unmasked,
    }
}

/// What an entry Custos wrote before the events service (lifecycle,
/// identity) says about itself: the header, and whatever of the event's
/// shape its payload has.
fn legacy_parts(f: &HeaderFields, plain: &[u8]) -> (Actor, Option<Resource>, Source, Correlation, Option<Value>) {
    let payload: Value = serde_json::from_slice(plain).unwrap_or(Value::Null);
    let pick = |k: &str| payload.get(k).cloned();
    let header_actor = Actor {
        id: f.actor_id.clone().unwrap_or_default(),
        kind: f.actor_kind.clone().unwrap_or_else(|| "system".into()),
        name: None,
        ip: None,
        user_agent: None,
        session_id: None,
    };
    let actor = pick("actor")
        .and_then(|a| {
            let mut a: serde_json::Map<String, Value> = serde_json::from_value(a).ok()?;
            a.retain(|_, v| !v.is_null());
            a.entry("id").or_insert_with(|| header_actor.id.clone().into());
            a.entry("kind").or_insert_with(|| header_actor.kind.clone().into());
            serde_json::from_value::<Actor>(Value::Object(a)).ok()
        })
        .unwrap_or(header_actor);
    let resource =
        f.resource_type.as_ref().map(|t| Resource { kind: t.clone(), id: f.resource_id.clone(), name: None });
    let source = Source {
        application: f.source_app.clone(),
        host: None,
        channel: f.channel.clone().unwrap_or_else(|| "system".into()),
    };
    let correlation = pick("correlation").and_then(|c| serde_json::from_value(c).ok()).unwrap_or_default();
    let details = match pick("details") {
        Some(d) if !d.is_null() => Some(d),
        Some(_) => None,
        None if payload.is_null() => None,
        None => Some(payload),
    };
    (actor, resource, source, correlation, details)
}
