//! The compliance dashboard: facts about this system computed when asked
//! (verifications in the ledger, signed checkpoints, the database's own
//! guards, keys, masking rules, what is being recorded), mapped to the
//! logging controls of common frameworks. Nothing here is typed in: a check
//! that cannot be computed because its feature does not exist says
//! `not_configured`; one whose feature exists but left nothing in the period
//! to judge by says `no_evidence`.

use crate::time::{DAY_US, HOUR_US, SECOND_US};
use sea_orm::{ConnectionTrait as _, DbBackend, Value};

use super::model::{
    CheckStatus, ComplianceCheck, ComplianceControl, ComplianceFramework, ComplianceReport, EventView, Evidence,
    EvidenceOf,
};
use super::search::SearchFilter;
use super::service::{Events, EventsError};
use crate::ledger::LedgerError;
use crate::ledger::rollup::{BUCKET_US, period_filter};
use crate::storage::stmt_for;
use crate::time::rfc3339;

mod frameworks;

pub use self::frameworks::FRAMEWORKS;

/// The window "being recorded" checks look at.
const RECENT_DAYS: i64 = 30;
/// A data key older than this is due for rotation.
const KEY_MAX_AGE_DAYS: f64 = 365.0;

/// Tables the database must guard against UPDATE and DELETE.
const GUARDED: [&str; 4] = ["ledger_entries", "merkle_nodes", "checkpoints", "ledger_keys"];

fn check(id: &str, title: &str, status: CheckStatus, detail: String, evidence: Vec<Evidence>) -> ComplianceCheck {
    ComplianceCheck { id: id.into(), title: title.into(), status, detail, evidence }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Most verification events read back to find the last full one.
const FULL_SCAN: usize = 5000;

/// Whether an `audit.verify` event is of the whole ledger (its requested
/// scope has neither bound; recorded before scopes were: it started at seq 1).
pub fn is_full_verification(v: &EventView) -> bool {
    let d = v.details.as_ref();
    match d.and_then(|d| d.get("scope")) {
        Some(scope) => {
            scope.get("from_seq").is_none_or(|x| x.is_null()) && scope.get("to_seq").is_none_or(|x| x.is_null())
        }
        None => d
            .and_then(|d| d.get("report"))
            .and_then(|r| r.get("from_seq").and_then(|n| n.as_u64()))
            .is_some_and(|n| n <= 1),
    }
}

impl Events {
    /// When the whole ledger was last verified (µs; whatever the outcome).
    /// Range verifications in between, however many, do not hide it.
    pub async fn last_full_verification(&self) -> Result<Option<i64>, EventsError> {
        let back = self.own_by_action_until("audit.verify", FULL_SCAN, is_full_verification).await?;
        Ok(back.last().filter(|v| is_full_verification(v)).and_then(|v| crate::time::parse_rfc3339(&v.recorded_at)))
    }

    /// The newest events with `action` that the server sealed itself,
    /// newest first. Only entries whose sealed payload names Custos as the
    /// submitter count: an event a client sent (ingest refuses Custos's
    /// namespaces, but entries from before that may exist) never stands for
    /// a verification.
    pub async fn recent_by_action(&self, action: &str, limit: usize) -> Result<Vec<EventView>, EventsError> {
        self.own_by_action_until(action, limit, |_| false).await
    }

    /// The server's own events with `action`, newest first, up to and with
    /// the first one `stop` accepts, at most `max`. The hours holding such
    /// events are found in the rollups (a few hours first, more if needed),
    /// so the search does not walk the whole ledger.
    pub async fn own_by_action_until(
        &self,
        action: &str,
        max: usize,
        stop: impl Fn(&EventView) -> bool,
    ) -> Result<Vec<EventView>, EventsError> {
        self.ledger().settle_rollups().await;
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let mut out = Vec::new();
        let mut after = None;
        let mut hours = (max as i64).saturating_mul(4).clamp(16, 1 << 20);
        loop {
            // The earliest of the last `hours` hours holding such an event
            // (the rollup key starts with the time: this walks back only as
            // far as needed).
            let row = conn
                .query_one_raw(stmt_for(
                    b,
                    "SELECT MIN(bucket) AS first, COUNT(*) AS n FROM (SELECT DISTINCT bucket FROM audit_rollups_current \
                     WHERE dimension = 'action' AND value = ? ORDER BY bucket DESC LIMIT ?) recent",
                    vec![action.into(), Value::BigInt(Some(hours))],
                ))
                .await?;
            let (first, n): (Option<i64>, i64) = match row {
                Some(r) => {
                    (r.try_get("", "first").map_err(LedgerError::from)?, r.try_get("", "n").map_err(LedgerError::from)?)
                }
                None => (None, 0),
            };
            let Some(first) = first else { return Ok(out) };
            let f = SearchFilter {
                actions: vec![action.into()],
                from_us: Some(first * BUCKET_US),
                descending: true,
                limit: 200,
                ..SearchFilter::default()
            };
            loop {
                let (sql, values) =
                    super::search::build_sql(&f, &[], &[], after.map(super::search::After::Seq), 200, b);
                let rows = conn.query_all_raw(stmt_for(b, &sql, values)).await?;
                let got = rows.len();
                for r in &rows {
                    let entry = crate::ledger::store::entry_from_row(r)?;
                    after = Some(entry.header.seq);
                    let plain = self.ledger().open_payload(&entry).await?;
                    if super::service::sealed_by_server(&plain) {
                        let v = super::service::view_of(&entry, &plain, false);
                        let done = stop(&v);
                        out.push(v);
                        if done || out.len() >= max {
                            return Ok(out);
                        }
                    }
                }
                if got < 200 {
                    break;
                }
            }
            // Every hour holding the action has been read: nothing older.
            if n < hours {
                return Ok(out);
            }
            hours = hours.saturating_mul(16);
        }
    }

    /// Sum of a dimension's values (all, or those starting with `prefix`)
    /// since `from_us`.
    async fn recent_count(
        &self,
        dim: &str,
        value: Option<&str>,
        prefix: bool,
        from_us: i64,
    ) -> Result<u64, EventsError> {
        self.count_between(dim, value, prefix, from_us, self.ledger().now_us() + DAY_US).await
    }

    /// Sum of a dimension's values (all, or `value`, or those starting
    /// with it when `prefix`) in the hours from `from_us` to `to_us`
    /// (whole hours: the rollups' grain).
    pub(crate) async fn count_between(
        &self,
        dim: &str,
        value: Option<&str>,
        prefix: bool,
        from_us: i64,
        to_us: i64,
    ) -> Result<u64, EventsError> {
        self.ledger().settle_rollups().await;
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let lo = from_us.div_euclid(HOUR_US) * 60;
        let hi = to_us.div_euclid(HOUR_US) * 60;
        // `total` has a row per minute: its hourly bounds are bounds in minutes too.
        let (period, mut values) = period_filter(dim, lo, hi);
        let cond = match (value, prefix) {
            (None, _) => String::new(),
            (Some(v), false) => {
                values.push(Value::from(v.to_owned()));
                " AND value = ?".to_owned()
            }
            (Some(v), true) => {
                // A range on the value: 'p' <= value < 'p' + U+10FFFF.
                values.push(Value::from(v.to_owned()));
                values.push(Value::from(format!("{v}\u{10ffff}")));
                " AND value >= ? AND value < ?".to_owned()
            }
        };
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) AS n FROM audit_rollups_current WHERE {period}{cond}"
        );
        let row = conn.query_one_raw(stmt_for(b, &sql, values)).await?;
        let n: i64 = match row {
            Some(r) => r.try_get("", "n").map_err(LedgerError::from)?,
            None => 0,
        };
        Ok(n.max(0) as u64)
    }

    /// Tables among [`GUARDED`] without a trigger refusing UPDATE and one
    /// refusing DELETE.
    async fn unguarded_tables(&self) -> Result<Vec<String>, EventsError> {
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let sql = match b {
            DbBackend::Postgres => {
                "SELECT c.relname AS tbl, pg_get_triggerdef(t.oid) AS def FROM pg_trigger t \
                 JOIN pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'"
            }
            _ => "SELECT tbl_name AS tbl, sql AS def FROM sqlite_master WHERE type = 'trigger'",
        };
        let rows = conn.query_all_raw(stmt_for(b, sql, vec![])).await?;
        let mut guards: Vec<(String, String)> = Vec::new();
        for r in rows {
            let t: String = r.try_get("", "tbl").map_err(LedgerError::from)?;
            let d: String = r.try_get("", "def").map_err(LedgerError::from)?;
            guards.push((t, d.to_uppercase()));
        }
        Ok(GUARDED
            .iter()
            .filter(|t| {
                let on = |op: &str| {
                    guards.iter().any(|(tbl, def)| {
                        tbl == *t && (def.contains(&format!("BEFORE {op}")) || def.contains(&format!("OR {op}")))
                    })
                };
                !(on("UPDATE") && on("DELETE"))
            })
            .map(|t| (*t).to_owned())
            .collect())
    }

    /// Computes every check now and maps them to the frameworks.
    /// `verify_within_hours`: how recent a verification must be.
    pub async fn compliance(&self, verify_within_hours: u64) -> Result<ComplianceReport, EventsError> {
        let ledger = self.ledger();
        let now = ledger.now_us();
        let since = now - RECENT_DAYS * DAY_US;
        let mut checks = Vec::new();

        // The ledger was verified in full recently, and intact; any failed
        // verification since (of any range) fails the check.
        // Back to the last intact verification of the whole ledger, however
        // many range verifications came since.
        let recent = self
            .own_by_action_until("audit.verify", FULL_SCAN, |v| is_full_verification(v) && v.outcome == "success")
            .await?;
        let window = format!("{verify_within_hours} h");
        let evidence = || {
            vec![
                Evidence::new("Verification history", EvidenceOf::Verifications),
                Evidence::events("The verification events", &[("action", "audit.verify"), ("range", "30d")]),
            ]
        };
        let report_of = |v: &EventView| v.details.as_ref().and_then(|d| d.get("report")).cloned();
        let when = |v: &EventView| {
            let at = crate::time::parse_rfc3339(&v.recorded_at).unwrap_or(0);
            (
                format!("{} ({:.1} h ago)", v.recorded_at, (now - at) as f64 / HOUR_US as f64),
                (now - at) as f64 / HOUR_US as f64,
            )
        };
        let failed = recent
            .iter()
            .take_while(|v| !(is_full_verification(v) && v.outcome == "success"))
            .find(|v| v.outcome != "success");
        let full = recent.iter().find(|v| is_full_verification(v) && v.outcome == "success");
        checks.push(match (failed, full) {
            (Some(v), _) => {
                let seq =
                    report_of(v).and_then(|r| r.get("failure").and_then(|f| f.get("seq")).and_then(|s| s.as_u64()));
                check(
                    "chain_verified",
                    "Ledger verified recently",
                    CheckStatus::Fail,
                    match seq {
                        Some(seq) => format!("The verification at {} FAILED at seq {seq}.", when(v).0),
                        None => format!("The verification at {} did not complete ({}).", when(v).0, v.outcome),
                    },
                    evidence(),
                )
            }
            (None, Some(v)) => {
                let (at, age_h) = when(v);
                let checked = report_of(v).and_then(|r| r.get("entries_checked").and_then(|n| n.as_u64())).unwrap_or(0);
                if age_h <= verify_within_hours as f64 {
                    check(
                        "chain_verified",
                        "Ledger verified recently",
                        CheckStatus::Pass,
                        format!("Verified intact in full at {at}: {} checked.", plural(checked, "entry", "entries")),
                        evidence(),
                    )
                } else {
                    check(
                        "chain_verified",
                        "Ledger verified recently",
                        CheckStatus::Warn,
                        format!("Last verified intact in full at {at}, more than {window} ago."),
                        evidence(),
                    )
                }
            }
            (None, None) => check(
                "chain_verified",
                "Ledger verified recently",
                CheckStatus::Fail,
                if recent.is_empty() {
                    "The ledger has never been verified.".into()
                } else {
                    format!(
                        "The ledger has not been verified in full lately ({} of ranges only).",
                        plural(recent.len() as u64, "verification", "verifications")
                    )
                },
                vec![Evidence::new("Run a verification", EvidenceOf::Verifications)],
            ),
        });

        // Signed checkpoints, current and verifying with the public key.
        let head = ledger.head().await?;
        let cp = ledger.latest_checkpoint().await?;
        let cp_links = vec![Evidence::new("Checkpoints and the public key", EvidenceOf::Checkpoints)];
        checks.push(match cp {
            None if head.seq == 0 => check(
                "checkpoints_signed",
                "Signed checkpoints are current",
                CheckStatus::Warn,
                "The ledger is empty: nothing to sign yet.".into(),
                cp_links,
            ),
            None => check(
                "checkpoints_signed",
                "Signed checkpoints are current",
                CheckStatus::Fail,
                format!("{} in the ledger and no signed checkpoint.", plural(head.seq, "entry", "entries")),
                cp_links,
            ),
            Some(c) => {
                let signed = ledger.verifier().open_checkpoint(&c.note).is_ok_and(|p| p.tree_size == c.tree_size && p.root_hash == c.root_hash);
                let age_s = (now - c.created_at_us) as f64 / SECOND_US as f64;
                let behind = head.seq.saturating_sub(c.tree_size);
                if !signed {
                    check(
                        "checkpoints_signed",
                        "Signed checkpoints are current",
                        CheckStatus::Fail,
                        format!("The latest checkpoint (size {}) does not verify with the ledger's public key.", c.tree_size),
                        cp_links,
                    )
                } else if behind > 0 && now - c.created_at_us > HOUR_US {
                    check(
                        "checkpoints_signed",
                        "Signed checkpoints are current",
                        CheckStatus::Warn,
                        format!("The latest signed checkpoint is {age_s:.0} s old and {behind} entries behind the head."),
                        cp_links,
                    )
                } else {
                    check(
                        "checkpoints_signed",
                        "Signed checkpoints are current",
                        CheckStatus::Pass,
                        format!(
                            "Checkpoint of {} signed {age_s:.0} s ago, verifies with the public key; {behind} newer entries.",
                            plural(c.tree_size, "entry", "entries")
                        ),
                        cp_links,
                    )
                }
            }
        });

        // The database refuses changes to the ledger's tables.
        let unguarded = self.unguarded_tables().await?;
        checks.push(check(
            "append_only",
            "The database refuses changes to the ledger",
            if unguarded.is_empty() { CheckStatus::Pass } else { CheckStatus::Fail },
            if unguarded.is_empty() {
                format!("Triggers refuse UPDATE and DELETE on {}.", GUARDED.join(", "))
            } else {
                format!("No trigger refuses UPDATE and DELETE on: {}.", unguarded.join(", "))
            },
            vec![Evidence::new("Integrity", EvidenceOf::Verifications)],
        ));

        // Sealed with a current data key.
        let keys = ledger.key_infos().await?;
        let current = keys.iter().find(|k| k.current);
        checks.push(match current {
            None => check(
                "encryption_keys",
                "Events sealed with a current data key",
                CheckStatus::Fail,
                "No data key is loaded.".into(),
                vec![Evidence::new("Keys", EvidenceOf::Keys)],
            ),
            Some(k) => {
                let age = (now - crate::time::parse_rfc3339(&k.created_at).unwrap_or(now)) as f64 / DAY_US as f64;
                check(
                    "encryption_keys",
                    "Events sealed with a current data key",
                    if age <= KEY_MAX_AGE_DAYS { CheckStatus::Pass } else { CheckStatus::Warn },
                    format!(
                        "AES-256-CBC with HMAC-SHA256 under data key {} created {age:.0} days ago ({} in all){}.",
                        k.key_id,
                        plural(keys.iter().filter(|k| k.purpose == "data").count() as u64, "data key", "data keys"),
                        if age <= KEY_MAX_AGE_DAYS { "" } else { "; rotation is due (older than 365 days)" }
                    ),
                    vec![Evidence::new("Keys and rotation", EvidenceOf::Keys)],
                )
            }
        });

        // Masking rules in force.
        let policy = self.policy();
        let active = policy.rules.iter().filter(|r| r.enabled).count() as u64;
        checks.push(check(
            "masking_active",
            "Personal data masked by rules",
            if active > 0 { CheckStatus::Pass } else { CheckStatus::Warn },
            if active > 0 {
                format!("{} enabled in masking policy version {}.", plural(active, "rule", "rules"), policy.version)
            } else {
                format!(
                    "Masking policy version {} has no enabled rule: personal data is stored as sent.",
                    policy.version
                )
            },
            vec![
                Evidence::new("Masking policy", EvidenceOf::MaskingPolicy),
                Evidence::new("Masking policy history", EvidenceOf::MaskingPolicyHistory),
            ],
        ));

        // Policy changes of the last 90 days: each approved by a second person?
        checks.push(self.policy_review_check(now - 90 * DAY_US).await?);

        // What is being recorded, from the rollups over the last 30 days.
        let recorded = |id: &str, title: &str, n: u64, what: &str, filter: (&str, &str)| {
            check(
                id,
                title,
                if n > 0 { CheckStatus::Pass } else { CheckStatus::Warn },
                if n > 0 {
                    format!("{n} {what} recorded in the last {RECENT_DAYS} days.")
                } else {
                    format!("No {what} recorded in the last {RECENT_DAYS} days.")
                },
                vec![Evidence::events("See them in the explorer", &[filter, ("range", "30d")])],
            )
        };
        let auth = self.recent_count("category", Some("authentication"), false, since).await?;
        checks.push(recorded(
            "auth_events_recorded",
            "Authentication events recorded",
            auth,
            "authentication events",
            ("category", "authentication"),
        ));
        let admin = self.recent_count("category", Some("admin"), false, since).await?
            + self.recent_count("category", Some("policy"), false, since).await?;
        checks.push(recorded(
            "admin_actions_recorded",
            "Admin and policy changes recorded",
            admin,
            "admin and policy events",
            ("category", "admin"),
        ));
        let reads = self.recent_count("action", Some("audit."), true, since).await?;
        checks.push(recorded(
            "log_access_recorded",
            "Access to the audit log recorded",
            reads,
            "reads, searches, exports and verifications of the audit log",
            ("action", "audit.*"),
        ));
        let total = self.recent_count("total", None, false, since).await?;
        let with_actor = self.recent_count("actor", None, false, since).await?;
        checks.push(check(
            "record_content",
            "Records say who, what, when, where and the outcome",
            if with_actor == total { CheckStatus::Pass } else { CheckStatus::Warn },
            format!(
                "{with_actor} of {total} events in the last {RECENT_DAYS} days name their actor; every event has a time, \
                 category, action, outcome and source (refused at ingest otherwise)."
            ),
            vec![Evidence::events("Events", &[("range", "30d")])],
        ));
        // From the exports that happened: each completed one is recorded
        // with its signed manifest's digest. None in the period is no
        // evidence, not a pass.
        let exports = self.recent_count("action", Some("audit.export.completed"), false, now - 90 * DAY_US).await?;
        let (status, detail) = if exports == 0 {
            (
                CheckStatus::NoEvidence,
                "No export was made in the last 90 days: nothing shows signed exports in use. Exports (CSV, JSON, \
                 Excel, PDF) carry a manifest signed with the ledger key when one is made."
                    .to_owned(),
            )
        } else {
            (
                CheckStatus::Pass,
                format!(
                    "{} in the last 90 days, each with a manifest signed with the ledger key (checked offline by \
                     `custos verify-export`).",
                    plural(exports, "export", "exports")
                ),
            )
        };
        checks.push(check(
            "exports_signed",
            "Reports and exports with signed manifests",
            status,
            detail,
            vec![Evidence::events("Exports made", &[("action", "audit.export.completed"), ("range", "90d")])],
        ));
        checks.push(self.clock_check(head.seq).await?);
        checks.push(self.alerting_check().await?);
        checks.push(self.siem_check().await?);
        checks.push(self.retention_check().await?);
        checks.push(self.backups_check().await?);
        checks.push(self.reports_check().await?);

        let frameworks = FRAMEWORKS
            .iter()
            .map(|(id, name, controls)| ComplianceFramework {
                id: (*id).into(),
                name: (*name).into(),
                controls: controls
                    .iter()
                    .map(|(cid, title, ids)| ComplianceControl {
                        id: (*cid).into(),
                        title: (*title).into(),
                        status: ids
                            .iter()
                            .filter_map(|c| checks.iter().find(|k| k.id == *c))
                            .map(|k| k.status)
                            .min()
                            .unwrap_or(CheckStatus::NotConfigured),
                        checks: ids.iter().map(|c| (*c).into()).collect(),
                    })
                    .collect(),
            })
            .collect();
        Ok(ComplianceReport { generated_at: rfc3339(now), verify_within_hours, checks, frameworks })
    }

    /// Time stamps from a consistent clock (AU-8, PCI DSS 10.6): commit
    /// times come from the ledger's clock and never go backwards (a
    /// replica whose clock is behind the newest entry commits at that
    /// entry's time). Fails while this replica's clock is behind the newest
    /// entry by more than a second (it was stepped back, or another
    /// replica's runs ahead); on PostgreSQL, warns when this replica's
    /// clock differs from the database server's by more than a second.
    async fn clock_check(&self, head_seq: u64) -> Result<ComplianceCheck, EventsError> {
        let ledger = self.ledger();
        let title = "Time stamps from a consistent clock";
        let evidence = || vec![Evidence::events("Newest events", &[("range", "1h")])];
        let Some(newest) = ledger.entry(head_seq).await? else {
            return Ok(check("clock", title, CheckStatus::Pass, "The ledger is empty.".into(), vec![]));
        };
        let newest = newest.header.recorded_at_us;
        let now = ledger.now_us();
        if newest > now + SECOND_US {
            return Ok(check(
                "clock",
                title,
                CheckStatus::Fail,
                format!(
                    "The newest entry was recorded at {}, {} s after this server's time {}: this clock was set back, \
                     or another replica's runs ahead. Commit times are held at the newest entry's until the clock \
                     catches up; synchronise the clocks (NTP).",
                    rfc3339(newest),
                    (newest - now) / SECOND_US,
                    rfc3339(now)
                ),
                evidence(),
            ));
        }
        let skew = ledger.database_clock_skew_us().await?;
        if let Some(skew) = skew.filter(|s| s.abs() > SECOND_US) {
            return Ok(check(
                "clock",
                title,
                CheckStatus::Warn,
                format!(
                    "This server's clock is {:.1} s {} the database server's: replicas with unsynchronised clocks \
                     hold each other's commit times back. Synchronise the clocks (NTP).",
                    (skew.abs() as f64) / SECOND_US as f64,
                    if skew > 0 { "behind" } else { "ahead of" }
                ),
                evidence(),
            ));
        }
        Ok(check(
            "clock",
            title,
            CheckStatus::Pass,
            format!(
                "Every entry gets its commit time from the ledger's clock (UTC, never earlier than the previous \
                 one); newest at {}{}.",
                rfc3339(newest),
                match skew {
                    Some(s) =>
                        format!("; this server's clock is within {} ms of the database server's", s.abs() / 1000),
                    None => String::new(),
                }
            ),
            evidence(),
        ))
    }

    /// Evidence reports made and sent on a schedule (NIST SP 800-53 AU-7):
    /// from the `report_schedules` policy in force and
    /// each enabled schedule's last run that ended. None on: not
    /// configured. On, none run yet: no evidence. A last run failed or
    /// missed, or one of its messages given up: warn. Otherwise pass.
    async fn reports_check(&self) -> Result<ComplianceCheck, EventsError> {
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let title = "Evidence reports made and sent on a schedule";
        let evidence =
            vec![Evidence::events("Reports generated and sent", &[("action", "custos.report.*"), ("range", "90d")])];
        let doc = match crate::policies::in_force(conn, crate::reports::schedule::KIND).await? {
            Some((_, c)) => crate::reports::schedule::parse(&c).unwrap_or_default(),
            None => Default::default(),
        };
        let on: Vec<_> = doc.schedules.iter().filter(|s| s.enabled).collect();
        if on.is_empty() {
            return Ok(check(
                "reports_scheduled",
                title,
                CheckStatus::NotConfigured,
                "No report schedule is on: evidence reports are made only when someone asks (add a schedule on the \
                 reports page)."
                    .into(),
                evidence,
            ));
        }
        let (mut ran, mut bad) = (0u64, Vec::new());
        for sch in &on {
            let last = conn
                .query_one_raw(stmt_for(
                    b,
                    "SELECT due_at, state, report_id FROM report_runs WHERE schedule_id = ? \
                     AND state IN ('done', 'failed', 'missed') ORDER BY due_at DESC LIMIT 1",
                    vec![sch.id.clone().into()],
                ))
                .await?;
            let Some(r) = last else { continue };
            ran += 1;
            let state: String = r.try_get("", "state")?;
            let due = rfc3339(r.try_get("", "due_at")?);
            if state != "done" {
                bad.push(format!("{}'s run due {due} {state}", sch.id));
                continue;
            }
            let report: Option<String> = r.try_get("", "report_id")?;
            let dead = conn
                .query_one_raw(stmt_for(
                    b,
                    "SELECT COUNT(*) AS n FROM notification_outbox WHERE report_id = ? AND status = 'dead'",
                    vec![report.unwrap_or_default().into()],
                ))
                .await?
                .map(|r| r.try_get::<i64>("", "n"))
                .transpose()?
                .unwrap_or(0);
            if dead > 0 {
                bad.push(format!("{}'s report due {due} was not delivered to {dead} recipient(s)", sch.id));
            }
        }
        let n = plural(on.len() as u64, "schedule", "schedules");
        let (status, detail) = if !bad.is_empty() {
            (CheckStatus::Warn, format!("{n} on; {}.", bad.join("; ")))
        } else if ran == 0 {
            (CheckStatus::NoEvidence, format!("{n} on; none has run yet."))
        } else {
            (
                CheckStatus::Pass,
                format!("{n} on; the last run of each that has run made its report and sent it ({ran} run)."),
            )
        };
        Ok(check("reports_scheduled", title, status, detail, evidence))
    }

    /// Events forwarded to a SIEM (SOC 2 CC7.3, ISO/IEC 27001 A.8.16, NIST
    /// SP 800-53 AU-6(4)): from the forwarding policy in force and each
    /// enabled destination's health, as any replica sees it. None
    /// configured: not configured (events stay in Custos only). All
    /// delivering within five minutes: pass. Paused, behind by more than
    /// five minutes, or failing for less than an hour: warn. Failing for an
    /// hour or more (or never delivered since it started failing): fail.
    async fn siem_check(&self) -> Result<ComplianceCheck, EventsError> {
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let row = conn
            .query_one_raw(stmt_for(
                b,
                "SELECT version, content FROM policy_versions WHERE kind = 'forwarding' ORDER BY version DESC LIMIT 1",
                vec![],
            ))
            .await?;
        let (version, doc) = match row {
            Some(r) => {
                let content: serde_json::Value =
                    serde_json::from_str(&r.try_get::<String>("", "content")?).unwrap_or_default();
                let doc = crate::forward::dest::ForwardingDoc::parse(&content).unwrap_or_default();
                (r.try_get::<i64>("", "version")?.max(0) as u64, doc)
            }
            None => (0, Default::default()),
        };
        let title = "Events forwarded to a SIEM";
        let evidence = vec![
            Evidence::new("The destinations and their health", EvidenceOf::Forwarding),
            Evidence::events("Forwarding steps and failures", &[("action", "custos.forward.*"), ("range", "30d")]),
        ];
        let status = crate::forward::status_of(self.ledger(), version, &doc).await?;
        let on: Vec<_> = status.destinations.iter().filter(|d| d.enabled).collect();
        if on.is_empty() {
            return Ok(check(
                "siem_forwarding",
                title,
                CheckStatus::NotConfigured,
                "No SIEM destination is turned on: events stay in Custos only (add one on the forwarding page).".into(),
                evidence,
            ));
        }
        let now = self.ledger().now_us();
        let mut fail = Vec::new();
        let mut warn = Vec::new();
        for d in &on {
            let last_ok = d.last_success_at.as_deref().and_then(crate::time::parse_rfc3339);
            let failing_since = d.failing_since.as_deref().and_then(crate::time::parse_rfc3339).unwrap_or(now);
            if d.state == "failing" {
                // Failing for an hour with nothing delivered in that hour.
                if now - failing_since >= HOUR_US && last_ok.is_none_or(|t| now - t >= HOUR_US) {
                    fail.push(format!(
                        "{} has been failing for over an hour ({})",
                        d.name,
                        d.last_error.clone().unwrap_or_default()
                    ));
                } else {
                    warn.push(format!("{} is failing ({})", d.name, d.last_error.clone().unwrap_or_default()));
                }
            } else if d.paused {
                warn.push(format!("{} is paused", d.name));
            } else if d.lag_seconds > 3600.0 {
                fail.push(format!("{} is more than an hour behind ({} entries)", d.name, d.lag_events));
            } else if d.lag_seconds > 300.0 {
                warn.push(format!("{} is {:.0} s behind ({} entries)", d.name, d.lag_seconds, d.lag_events));
            } else if d.cursor.is_none() {
                warn.push(format!("{} has not been started by any replica yet", d.name));
            } else if d.holder.is_none() {
                warn.push(format!("{} is not being forwarded by any replica", d.name));
            }
        }
        let names: Vec<String> = on.iter().map(|d| format!("{} ({}, {})", d.name, d.kind, d.format)).collect();
        let (st, detail) = if !fail.is_empty() {
            (CheckStatus::Fail, format!("{}.", fail.join("; ")))
        } else if !warn.is_empty() {
            (CheckStatus::Warn, format!("{}.", warn.join("; ")))
        } else {
            (
                CheckStatus::Pass,
                format!(
                    "{} forwarded in real time (version {version} of the forwarding policy): {}; every one within five minutes of the ledger's head{}.",
                    plural(on.len() as u64, "destination", "destinations"),
                    names.join(", "),
                    if on.iter().all(|d| d.checkpoints) { ", signed checkpoints included" } else { "" }
                ),
            )
        };
        Ok(check("siem_forwarding", title, st, detail, evidence))
    }
    /// Backups, from the catalogue. PostgreSQL: the database's own tools
    /// take them, which Custos cannot see: not configured, saying so. SQLite:
    /// no backup ever, or none succeeded in twice the configured interval
    /// (at least 48 hours; a week when on demand only): fail; the
    /// latest attempt failed, or the backups lie beside the database they
    /// protect: warn; otherwise pass.
    async fn backups_check(&self) -> Result<ComplianceCheck, EventsError> {
        let title = "Backups of the ledger";
        let evidence = vec![
            Evidence::new("The backups", EvidenceOf::Backups),
            Evidence::events("Backups taken", &[("action", "custos.backup.*")]),
        ];
        let Some(db_file) = self.ledger().db().sqlite_file().map(std::path::Path::to_path_buf) else {
            return Ok(check(
                "backups",
                title,
                CheckStatus::NotConfigured,
                "This Custos runs on PostgreSQL, whose backups (pg_basebackup, point-in-time recovery) Custos cannot \
                 see: keep their evidence, and check a restored copy with `custos verify`."
                    .into(),
                evidence,
            ));
        };
        let now = self.ledger().now_us();
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let last_done = conn
            .query_one_raw(stmt_for(
                b,
                "SELECT started_at, uri, bytes, head_seq, error FROM backups WHERE state = 'done' ORDER BY started_at DESC LIMIT 1",
                vec![],
            ))
            .await?;
        let last_try = conn
            .query_one_raw(stmt_for(
                b,
                "SELECT state, error, started_at FROM backups WHERE state <> 'running' ORDER BY started_at DESC LIMIT 1",
                vec![],
            ))
            .await?;
        let Some(done) = last_done else {
            return Ok(check("backups", title, CheckStatus::Fail, "No backup has been taken.".into(), evidence));
        };
        let at: i64 = done.try_get("", "started_at")?;
        let uri: String = done.try_get("", "uri")?;
        let summary = format!(
            "The last backup ({}, {} bytes, ledger head seq {}) is {uri}, encrypted under a key derived from the KEK.",
            rfc3339(at),
            done.try_get::<i64>("", "bytes")?,
            done.try_get::<Option<i64>>("", "head_seq")?.unwrap_or(0)
        );
        let failed_since = match &last_try {
            Some(r) if r.try_get::<String>("", "state")? == "failed" => {
                Some(r.try_get::<Option<String>>("", "error")?.unwrap_or_default())
            }
            _ => None,
        };
        let beside = db_file.parent().is_some_and(|d| std::path::Path::new(&uri).starts_with(d));
        // Taken, but the object store did not take it.
        let not_uploaded: Option<String> = done.try_get("", "error")?;
        // Twice the configured interval (at least 48 hours); a week when
        // backups are taken on demand only.
        let every = crate::backup::interval_hours();
        let allowed = if every == 0 { 7 * 24 } else { (2 * every).max(48) };
        let (status, detail) = if at < now - allowed as i64 * HOUR_US {
            (CheckStatus::Fail, format!("No backup succeeded in the last {allowed} hours. {summary}"))
        } else if let Some(e) = failed_since {
            (CheckStatus::Warn, format!("The latest backup failed: {e}. {summary}"))
        } else if let Some(e) = not_uploaded {
            (CheckStatus::Warn, format!("The latest backup was {e}. {summary}"))
        } else if beside {
            (
                CheckStatus::Warn,
                format!(
                    "{summary} It lies in the database's own directory: a lost disk takes both. Set backup.dir to \
                     another disk, or configure [object_store] to upload them off this machine."
                ),
            )
        } else {
            (CheckStatus::Pass, summary)
        };
        Ok(check("backups", title, status, detail, evidence))
    }

    /// Retention and legal hold, from the policies in force and the runs.
    /// Never set (version 0 of both): not configured. A run that failed, or
    /// no run started in the last 48 hours (a week when runs are on demand
    /// only) while a rule lets events expire: fail. A rule below the floor (an admin's recorded override)
    /// or no run yet: warn. Otherwise pass (periods named; or everything
    /// kept, nothing expiring).
    async fn retention_check(&self) -> Result<ComplianceCheck, EventsError> {
        use crate::retention::doc::{HOLDS_KIND, HoldsDoc, RETENTION_KIND, RetentionDoc, floor_days};
        let now = self.ledger().now_us();
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let (version, doc) = match crate::policies::in_force(conn, RETENTION_KIND).await? {
            Some((v, c)) => (v, RetentionDoc::parse(&c).unwrap_or_default()),
            None => (0, RetentionDoc::default()),
        };
        let (holds_version, holds) = match crate::policies::in_force(conn, HOLDS_KIND).await? {
            Some((v, c)) => (v, HoldsDoc::parse(&c).unwrap_or_default()),
            None => (0, HoldsDoc::default()),
        };
        let title = "Retention policy and legal hold";
        let evidence = vec![
            Evidence::new("Retention rules, holds, runs and archives", EvidenceOf::Retention),
            Evidence::events("Retention runs", &[("action", "custos.retention.*")]),
        ];
        if version == 0 && holds_version == 0 {
            return Ok(check(
                "retention",
                title,
                CheckStatus::NotConfigured,
                "No retention policy is set: events are kept indefinitely and nothing expires or is archived.".into(),
                evidence,
            ));
        }
        let last = conn
            .query_one_raw(stmt_for(
                b,
                "SELECT state, started_at, finished_at, removed, error FROM retention_runs \
                 WHERE kind = 'retention' AND state <> 'running' ORDER BY started_at DESC LIMIT 1",
                vec![],
            ))
            .await?;
        let holds_on = holds.holds.iter().filter(|h| h.active()).count() as u64;
        let periods: Vec<String> = doc
            .rules
            .iter()
            .filter(|r| r.enabled)
            .map(|r| {
                format!(
                    "{} ({})",
                    r.category.clone().or_else(|| r.action.clone()).unwrap_or_else(|| r.id.clone()),
                    r.days.map_or("forever".into(), |d| format!("{d} days"))
                )
            })
            .collect();
        let summary = format!(
            "Version {version} in force: {}; other events {}. {} in force. Expiry counts from the time Custos \
             recorded an event; every removal is archived first and leaves a signed record.",
            if periods.is_empty() { "no rule".into() } else { periods.join(", ") },
            doc.default_days.map_or("kept indefinitely".into(), |d| format!("kept {d} days")),
            plural(holds_on, "legal hold", "legal holds")
        );
        let expiring = doc.shortest_days().is_some();
        // Daily runs: 48 hours; on demand only (`retention.run_at = off`): a week.
        let allowed_hours: i64 = if crate::retention::doc::scheduled() { 48 } else { 7 * 24 };
        let overrides: Vec<&str> =
            doc.rules.iter().filter(|r| r.enabled && r.floor_override.is_some()).map(|r| r.id.as_str()).collect();
        let (status, detail) = match last {
            Some(r) if r.try_get::<String>("", "state")? == "failed" => (
                CheckStatus::Fail,
                format!(
                    "The last retention run ({}) failed: {}. {summary}",
                    rfc3339(r.try_get("", "started_at")?),
                    r.try_get::<Option<String>>("", "error")?.unwrap_or_default()
                ),
            ),
            Some(r) if expiring && r.try_get::<i64>("", "started_at")? < now - allowed_hours * HOUR_US => (
                CheckStatus::Fail,
                format!(
                    "No retention run in the last {allowed_hours} hours (the last on {}): expired events are kept \
                     past their period. {summary}",
                    rfc3339(r.try_get("", "started_at")?)
                ),
            ),
            None if expiring => (
                CheckStatus::Warn,
                format!("Rules let events expire, but no retention run has finished yet. {summary}"),
            ),
            _ if !overrides.is_empty() => (
                CheckStatus::Warn,
                format!(
                    "Rule(s) {} keep events less than the floor of {} days (an admin's recorded override). {summary}",
                    overrides.join(", "),
                    floor_days()
                ),
            ),
            Some(r) => (
                CheckStatus::Pass,
                format!(
                    "The last retention run ({}) removed {} expired event(s). {summary}",
                    rfc3339(r.try_get("", "started_at")?),
                    r.try_get::<i64>("", "removed")?
                ),
            ),
            None => (CheckStatus::Pass, format!("Nothing expires under the policy in force. {summary}")),
        };
        Ok(check("retention", title, status, detail, evidence))
    }

    /// Alert rules in force and evaluated: the rules enabled (the built-in
    /// pack unless changed), the one on failures of the ledger's
    /// verification among them (PCI DSS 10.7.2), and an evaluator holding
    /// its lease. Alerts reach people in the inbox only until notification
    /// channels exist: a warning, not a pass.
    async fn alerting_check(&self) -> Result<ComplianceCheck, EventsError> {
        let now = self.ledger().now_us();
        use crate::alerts::rules::{Rule, builtin_rules};
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let row = conn
            .query_one_raw(stmt_for(
                b,
                "SELECT version, content FROM policy_versions WHERE kind = 'alert_rules' ORDER BY version DESC LIMIT 1",
                vec![],
            ))
            .await?;
        let (version, rules): (i64, Vec<Rule>) = match row {
            Some(r) => {
                let doc: serde_json::Value =
                    serde_json::from_str(&r.try_get::<String>("", "content")?).unwrap_or_default();
                let rules = doc.get("rules").cloned().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
                (r.try_get("", "version")?, rules)
            }
            None => (0, builtin_rules()),
        };
        let enabled = rules.iter().filter(|r| r.enabled).count();
        let integrity: Vec<&Rule> = rules
            .iter()
            .filter(|r| {
                r.enabled
                    && r.matcher.actions.iter().any(|a| a == "audit.verify" || a == "audit.*")
                    && !r.matcher.outcomes.is_empty()
                    && !r.matcher.outcomes.iter().any(|o| o == "success")
            })
            .collect();
        let lease = crate::lease::Lease::current(self.ledger(), crate::alerts::live::LEASE).await?;
        // How far behind the head the evaluator's saved cursor is.
        let cursor = conn
            .query_one_raw(stmt_for(
                b,
                "SELECT cursor_seq FROM leases WHERE name = ?",
                vec![crate::alerts::live::LEASE.into()],
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "cursor_seq"))
            .transpose()?
            .unwrap_or(-1);
        let head = self.ledger().head().await?.seq as i64;
        let behind = if cursor < 0 { 0 } else { head - cursor };
        let evidence = vec![
            Evidence::new("The alert rules in force", EvidenceOf::AlertRules),
            Evidence::new("The alert inbox", EvidenceOf::Alerts),
        ];
        let which = if version == 0 { "the built-in pack".to_owned() } else { format!("version {version}") };
        let (status, detail) = if enabled == 0 {
            (CheckStatus::Fail, format!("No alert rule is enabled ({which})."))
        } else if lease.is_none() {
            (
                CheckStatus::Fail,
                format!(
                    "{} enabled ({which}), but no replica is evaluating them: the evaluator's lease is not held.",
                    plural(enabled as u64, "alert rule", "alert rules")
                ),
            )
        } else if behind > 10_000 {
            (
                CheckStatus::Fail,
                format!(
                    "{} enabled ({which}), but the evaluator is {behind} entries behind the ledger's head: alerts are \
                     late or stuck (see the server's log and custos.alert.evaluation_failed events).",
                    plural(enabled as u64, "alert rule", "alert rules")
                ),
            )
        } else if integrity.is_empty() {
            (
                CheckStatus::Warn,
                format!(
                    "{} enabled ({which}) and evaluated on every commit, but none alerts on a failed verification of the ledger (PCI DSS 10.7.2).",
                    plural(enabled as u64, "alert rule", "alert rules")
                ),
            )
        } else {
            let rules = plural(enabled as u64, "alert rule", "alert rules");
            let mut channels = Vec::new();
            for r in &integrity {
                for c in self.integrity_channels(&r.id, &r.severity).await? {
                    if !channels.contains(&c) {
                        channels.push(c);
                    }
                }
            }
            let dead = self.dead_notifications(now - 7 * DAY_US).await?;
            if channels.is_empty() {
                (
                    CheckStatus::Warn,
                    format!(
                        "{rules} enabled ({which}), evaluated on every commit (failed verifications included); but no \
                         notification channel is routed the failed-verification alert: it reaches the alert inbox only."
                    ),
                )
            } else if dead > 0 {
                (
                    CheckStatus::Warn,
                    format!(
                        "{rules} enabled ({which}) and sent to {}; but {} could not be delivered in the last 7 days \
                         (see the notification log).",
                        channels.join(", "),
                        plural(dead, "message", "messages")
                    ),
                )
            } else {
                (
                    CheckStatus::Pass,
                    format!(
                        "{rules} enabled ({which}), evaluated on every commit; a failed verification is sent to {}.",
                        channels.join(", ")
                    ),
                )
            }
        };
        Ok(check("alerting", "Alert rules on security events", status, detail, evidence))
    }

    /// The channels (names) a failed verification's alert goes to, by the
    /// notifications policy in force.
    async fn integrity_channels(&self, rule: &str, severity: &str) -> Result<Vec<String>, EventsError> {
        let conn = self.ledger().db().conn();
        let row = conn
            .query_one_raw(stmt_for(
                conn.get_database_backend(),
                "SELECT content FROM policy_versions WHERE kind = 'notifications' ORDER BY version DESC LIMIT 1",
                vec![],
            ))
            .await?;
        let Some(row) = row else { return Ok(vec![]) };
        let doc: serde_json::Value = serde_json::from_str(&row.try_get::<String>("", "content")?).unwrap_or_default();
        let doc = crate::notify::channels::NotificationsDoc::parse(&doc).unwrap_or_default();
        Ok(doc.route(rule, severity).iter().map(|c| format!("{} ({})", c.name, c.kind)).collect())
    }

    /// Messages given up on since `since_us`.
    async fn dead_notifications(&self, since_us: i64) -> Result<u64, EventsError> {
        let conn = self.ledger().db().conn();
        let row = conn
            .query_one_raw(stmt_for(
                conn.get_database_backend(),
                "SELECT COUNT(*) AS n FROM notification_attempts WHERE status = 'dead' AND at >= ? AND alert_id IS NOT NULL",
                vec![since_us.into()],
            ))
            .await?;
        Ok(row.map(|r| r.try_get::<i64>("", "n")).transpose()?.unwrap_or(0).max(0) as u64)
    }

    /// The policy store's versions since `since_us`: how many were
    /// activated by their author alone, and which kinds need no approval.
    async fn policy_review_check(&self, since_us: i64) -> Result<ComplianceCheck, EventsError> {
        let conn = self.ledger().db().conn();
        let b = conn.get_database_backend();
        let row = conn
            .query_one_raw(stmt_for(
                b,
                "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(alone), 0) AS BIGINT) AS alone FROM policy_versions \
                 WHERE created_at >= ? AND proposal_id IS NOT NULL",
                vec![since_us.into()],
            ))
            .await?;
        let (n, alone) = match row {
            Some(r) => (r.try_get::<i64>("", "n")? as u64, r.try_get::<i64>("", "alone")? as u64),
            None => (0, 0),
        };
        let unreviewed: Vec<String> = conn
            .query_all_raw(stmt_for(
                b,
                "SELECT kind FROM policy_review_rules WHERE approvals = 0 ORDER BY kind",
                vec![],
            ))
            .await?
            .iter()
            .map(|r| r.try_get::<String>("", "kind"))
            .collect::<Result<_, _>>()?;
        let (status, detail) = if !unreviewed.is_empty() {
            (
                CheckStatus::Warn,
                format!(
                    "Changes to {} take effect without a second person (policies.<kind>.approvals = 0).",
                    unreviewed.join(", ")
                ),
            )
        } else if alone > 0 {
            (
                CheckStatus::Warn,
                format!(
                    "{alone} of {} in the last 90 days took effect without a second person (nobody else could \
                     approve them); add a second approver.",
                    plural(n, "policy change", "policy changes")
                ),
            )
        } else if n == 0 {
            (
                CheckStatus::Pass,
                "No policy change in the last 90 days; every change needs a second person's approval.".into(),
            )
        } else {
            (
                CheckStatus::Pass,
                format!(
                    "{} in the last 90 days, each approved by someone other than its author.",
                    plural(n, "policy change", "policy changes")
                ),
            )
        };
        Ok(check(
            "policy_changes_reviewed",
            "Policy changes reviewed by a second person",
            status,
            detail,
            vec![
                Evidence::events("Policy activations", &[("action", "custos.policy.*"), ("range", "30d")]),
                Evidence::new("Policy trail", EvidenceOf::MaskingPolicyHistory),
            ],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_check_exists() {
        let known = [
            "chain_verified",
            "checkpoints_signed",
            "append_only",
            "encryption_keys",
            "masking_active",
            "policy_changes_reviewed",
            "auth_events_recorded",
            "admin_actions_recorded",
            "log_access_recorded",
            "record_content",
            "exports_signed",
            "clock",
            "retention",
            "alerting",
            "siem_forwarding",
            "backups",
            "reports_scheduled",
        ];
        for (_, _, controls) in FRAMEWORKS {
            for (id, _, checks) in *controls {
                assert!(!checks.is_empty(), "{id}");
                for c in *checks {
                    assert!(known.contains(c), "{id} maps unknown check {c}");
                }
            }
        }
    }
}
