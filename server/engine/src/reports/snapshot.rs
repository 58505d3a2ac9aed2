//! Daily compliance snapshots: at the first tick of each UTC day the
//! server computes every compliance check, records a
//! `custos.compliance.snapshot` event carrying the checks' statuses and the
//! digest of the whole set, and keeps the set in `compliance_snapshots`
//! (append-only; a row needs its record). A row is used only while it
//! still matches its sealed record; a day without a row is a gap.

use std::collections::BTreeMap;

use custos_model::{Channel, CheckStatus, ComplianceCheck};
use sea_orm::{ConnectionTrait as _, Value};
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::Reports;
use super::period::{date, day_of};
use crate::alerts::store::AlertsError;
use crate::events::{OwnAction, OwnEvent};
use crate::lease::Lease;
use crate::storage::stmt_for;

/// The snapshot taker's lease (one replica takes each day's).
pub const LEASE: &str = "compliance-snapshot";
const LEASE_TTL_US: i64 = 120_000_000;

/// One day's snapshot as read back.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The day (since 1970-01-01).
    pub day: i64,
    /// When taken (µs).
    pub taken_at_us: i64,
    /// Its record's seq.
    pub seq: u64,
    /// SHA-256 of the checks' JSON (hex).
    pub sha256: String,
    /// The checks as computed that day.
    pub checks: Vec<ComplianceCheck>,
    /// The row matches its sealed record (digest, day, statuses).
    pub verified: bool,
}

fn digest(checks_json: &str) -> String {
    hex::encode(Sha256::digest(checks_json.as_bytes()))
}

impl Reports {
    /// Takes today's snapshot unless it exists (on the replica holding the
    /// lease). Returns the day taken.
    pub async fn snapshot_step(&self) -> Result<Option<i64>, AlertsError> {
        let ledger = self.events.ledger();
        let now = ledger.now_us();
        let today = day_of(now);
        if self.snapshot_exists(today).await? {
            return Ok(None);
        }
        // After a failure, an hour before trying again (each try records).
        let failed = *self.failed_snapshot.lock().unwrap_or_else(|p| p.into_inner());
        if failed.is_some_and(|(day, at)| day == today && now - at < crate::time::HOUR_US) {
            return Ok(None);
        }
        let lease = Lease::new(ledger.clone(), LEASE, &self.holder, LEASE_TTL_US);
        if lease.acquire().await?.is_none() {
            return Ok(None);
        }
        let out = self.take_snapshot(today).await;
        let _ = lease.release().await;
        if out.is_err() {
            *self.failed_snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some((today, now));
        }
        out
    }

    async fn snapshot_exists(&self, day: i64) -> Result<bool, AlertsError> {
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                "SELECT day FROM compliance_snapshots WHERE day = ?",
                vec![Value::BigInt(Some(day))],
            ))
            .await?;
        Ok(row.is_some())
    }

    async fn take_snapshot(&self, day: i64) -> Result<Option<i64>, AlertsError> {
        // Another replica may have taken it before the lease changed hands.
        if self.snapshot_exists(day).await? {
            return Ok(None);
        }
        let report = self.events.compliance(self.settings.verify_within_hours).await?;
        let checks = serde_json::to_string(&report.checks).unwrap_or_default();
        let sha = digest(&checks);
        let statuses: BTreeMap<&str, CheckStatus> = report.checks.iter().map(|c| (c.id.as_str(), c.status)).collect();
        let failing = report.checks.iter().filter(|c| c.status == CheckStatus::Fail).count();
        let event =
            OwnEvent::by_custos(OwnAction::ReportStep("custos.compliance.snapshot"), "compliance", Channel::System)
                .resource("compliance_snapshot", Some(date(day)))
                .details(json!({ "day": date(day), "sha256": sha, "statuses": statuses, "failing": failing }));
        let receipt = self.events.record_own(event).await?;
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "INSERT INTO compliance_snapshots (day, taken_at, seq, sha256, checks) VALUES (?, ?, ?, ?, ?)",
                vec![
                    Value::BigInt(Some(day)),
                    receipt.recorded_at_us.into(),
                    Value::BigInt(Some(receipt.seq as i64)),
                    sha.into(),
                    checks.into(),
                ],
            ))
            .await?;
        Ok(Some(day))
    }

    /// The snapshots of days `from..=to`, each checked against its record.
    pub async fn snapshots(&self, from: i64, to: i64) -> Result<BTreeMap<i64, Snapshot>, AlertsError> {
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                self.backend(),
                "SELECT day, taken_at, seq, sha256, checks FROM compliance_snapshots WHERE day >= ? AND day <= ? \
                 ORDER BY day",
                vec![Value::BigInt(Some(from)), Value::BigInt(Some(to))],
            ))
            .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            let day: i64 = r.try_get("", "day")?;
            let seq = r.try_get::<i64>("", "seq")?.max(0) as u64;
            let sha: String = r.try_get("", "sha256")?;
            let text: String = r.try_get("", "checks")?;
            let checks: Vec<ComplianceCheck> = serde_json::from_str(&text).unwrap_or_default();
            let verified = digest(&text) == sha && self.record_matches(seq, day, &sha, &checks).await?;
            out.insert(
                day,
                Snapshot { day, taken_at_us: r.try_get("", "taken_at")?, seq, sha256: sha, checks, verified },
            );
        }
        Ok(out)
    }

    /// The record at `seq` is the server's snapshot of `day` with this
    /// digest and these statuses.
    async fn record_matches(
        &self,
        seq: u64,
        day: i64,
        sha: &str,
        checks: &[ComplianceCheck],
    ) -> Result<bool, AlertsError> {
        let ledger = self.events.ledger();
        let Some(entry) = ledger.entry(seq).await.map_err(crate::events::EventsError::from)? else {
            return Ok(false);
        };
        if entry.header.fields.action != "custos.compliance.snapshot" {
            return Ok(false);
        }
        let plain = ledger.open_payload(&entry).await.map_err(crate::events::EventsError::from)?;
        if !crate::events::service::sealed_by_server(&plain) {
            return Ok(false);
        }
        let v = crate::events::service::view_of(&entry, &plain, false);
        let Some(d) = v.details else { return Ok(false) };
        let statuses_match = checks
            .iter()
            .all(|c| d.get("statuses").and_then(|s| s.get(&c.id)).and_then(|s| s.as_str()) == Some(c.status.as_str()));
        Ok(d.get("sha256").and_then(|s| s.as_str()) == Some(sha)
            && d.get("day").and_then(|s| s.as_str()) == Some(date(day).as_str())
            && statuses_match)
    }
}
