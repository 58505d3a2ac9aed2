//! Compliance evidence reports: one framework over a period of whole UTC
//! days, built from the daily compliance snapshots (`snapshot`) and the
//! ledger (`build`), written as a PDF and its JSON twin, each with a
//! manifest signed by the ledger's key (the export manifest: `custos
//! verify-export` checks both offline). Generating one is a ledger event
//! (`custos.report.generated`, with both digests); the `reports` table
//! keeps the files and their history for download.

pub mod build;
pub mod period;
pub mod schedule;
pub mod snapshot;

use std::sync::Arc;

use custos_model::{
    CheckStatus, EvidenceReport, ExportManifest, ManifestCheckpoint, ReportFramework, ReportInfo, ReportRequest,
};
use sea_orm::{ConnectionTrait as _, QueryResult, Value};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use self::period::{date, day_of};
use crate::alerts::store::AlertsError;
use crate::events::export::{ExportFormats, manifest_note};
use crate::events::validate::FieldError;
use crate::events::{Events, OwnAction, OwnEvent, Requester};
use crate::policies::PolicyStore;
use crate::storage::stmt_for;
use crate::time::rfc3339;

/// Settings (`[reports]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The organisation named on the cover.
    pub organisation: Option<String>,
    /// Hours within which the ledger must have been verified (the
    /// snapshot's `chain_verified`).
    pub verify_within_hours: u64,
    /// Reports people asked for kept; older ones are deleted (their
    /// records stay in the ledger). A schedule keeps its own (`keep`).
    pub keep: u32,
    /// The server's address as people reach it, for links in the messages
    /// of scheduled reports; without it links are paths.
    pub public_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { organisation: None, verify_within_hours: 24, keep: 500, public_url: None }
    }
}

/// A report's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFile {
    /// The PDF.
    Pdf,
    /// The JSON twin.
    Json,
}

impl ReportFile {
    /// Parses `pdf` or `json`.
    pub fn parse(s: &str) -> Option<ReportFile> {
        match s {
            "pdf" => Some(ReportFile::Pdf),
            "json" => Some(ReportFile::Json),
            _ => None,
        }
    }

    fn column(self) -> &'static str {
        match self {
            ReportFile::Pdf => "pdf",
            ReportFile::Json => "json",
        }
    }

    /// The file extension.
    pub fn ext(self) -> &'static str {
        self.column()
    }

    /// The media type.
    pub fn content_type(self) -> &'static str {
        match self {
            ReportFile::Pdf => "application/pdf",
            ReportFile::Json => "application/json",
        }
    }

    /// The manifest's `format`.
    pub fn format(self) -> &'static str {
        match self {
            ReportFile::Pdf => "report-pdf",
            ReportFile::Json => "report-json",
        }
    }
}

/// Reports.
pub struct Reports {
    events: Arc<Events>,
    policies: Arc<PolicyStore>,
    formats: Arc<dyn ExportFormats>,
    holder: String,
    settings: Settings,
    /// Reports being generated (and period views read) at once: each
    /// reads the period's records.
    slots: tokio::sync::Semaphore,
    /// The day and time of a snapshot that failed, to try again an hour
    /// later rather than every minute.
    failed_snapshot: std::sync::Mutex<Option<(i64, i64)>>,
}

/// Reports generated at once.
const SLOTS: usize = 2;

/// A report file's name: `custos-report-<framework>-<from>-<to>.<ext>`.
pub fn file_name(framework: &str, from: &str, to: &str, file: ReportFile) -> String {
    format!("custos-report-{framework}-{from}-{to}.{}", file.ext())
}

fn internal(what: &str, e: impl std::fmt::Display) -> AlertsError {
    AlertsError::Events(crate::events::EventsError::Export(format!("{what}: {e}")))
}

fn busy() -> AlertsError {
    AlertsError::Conflict(format!("{SLOTS} reports are being generated; try again when one has finished"))
}

const COLUMNS: &str = "id, framework, period_from, period_to, trigger, schedule, requested_by, generated_at, state, \
                       error, seed, status, pdf_sha256, json_sha256";

fn info_of(r: &QueryResult) -> Result<ReportInfo, sea_orm::DbErr> {
    let id: String = r.try_get("", "id")?;
    let status: Option<String> = r.try_get("", "status")?;
    Ok(ReportInfo {
        id: id.parse().unwrap_or_default(),
        framework: r.try_get("", "framework")?,
        period_from: r.try_get("", "period_from")?,
        period_to: r.try_get("", "period_to")?,
        trigger: r.try_get("", "trigger")?,
        schedule: r.try_get("", "schedule")?,
        requested_by: r.try_get("", "requested_by")?,
        generated_at: rfc3339(r.try_get("", "generated_at")?),
        state: r.try_get("", "state")?,
        error: r.try_get("", "error")?,
        seed: r.try_get("", "seed")?,
        status: status.and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok()),
        pdf_sha256: r.try_get("", "pdf_sha256")?,
        json_sha256: r.try_get("", "json_sha256")?,
    })
}

/// The frameworks reports are made for.
pub fn frameworks() -> Vec<ReportFramework> {
    crate::events::compliance::FRAMEWORKS
        .iter()
        .map(|(id, name, _)| ReportFramework { id: (*id).into(), name: (*name).into() })
        .collect()
}

/// Who asked, as a report names them: id, and name when it differs.
fn author(by: &Requester) -> String {
    match &by.actor.name {
        Some(name) if *name != by.actor.id => format!("{} ({name})", by.actor.id),
        _ => by.actor.id.clone(),
    }
}

fn invalid(path: &str, reason: &str) -> AlertsError {
    AlertsError::Invalid(FieldError { path: path.into(), reason: reason.into() })
}

impl Reports {
    /// Reports for `holder` (this replica's name).
    pub fn new(
        events: Arc<Events>,
        policies: Arc<PolicyStore>,
        formats: Arc<dyn ExportFormats>,
        holder: &str,
        settings: Settings,
    ) -> Reports {
        Reports {
            events,
            policies,
            formats,
            holder: holder.to_owned(),
            settings,
            slots: tokio::sync::Semaphore::new(SLOTS),
            failed_snapshot: std::sync::Mutex::new(None),
        }
    }

    fn conn(&self) -> &sea_orm::DatabaseConnection {
        self.events.ledger().db().conn()
    }

    fn backend(&self) -> sea_orm::DbBackend {
        self.events.ledger().db().backend()
    }

    /// Generates a report now and keeps it; recorded in the ledger
    /// (`custos.report.generated`, fail closed: no record, no report).
    pub async fn generate(
        &self,
        by: &Requester,
        req: &ReportRequest,
        trigger: &str,
        schedule: Option<&str>,
    ) -> Result<ReportInfo, AlertsError> {
        let today = day_of(self.events.ledger().now_us());
        self.make(by, req, trigger, schedule, today, false).await
    }

    /// Generates a report with named periods taken relative to `today`;
    /// `wait`: for a free slot rather than refusing (409).
    pub(crate) async fn make(
        &self,
        by: &Requester,
        req: &ReportRequest,
        trigger: &str,
        schedule: Option<&str>,
        today: i64,
        wait: bool,
    ) -> Result<ReportInfo, AlertsError> {
        let ledger = self.events.ledger();
        let now = ledger.now_us();
        let Some(&(fid, fname, controls)) = crate::events::compliance::FRAMEWORKS.iter().find(|f| f.0 == req.framework)
        else {
            let known: Vec<&str> = crate::events::compliance::FRAMEWORKS.iter().map(|f| f.0).collect();
            return Err(invalid("framework", &format!("unknown framework; known: {}", known.join(", "))));
        };
        let (from, to) = period::resolve(req.period.as_deref(), req.from.as_deref(), req.to.as_deref(), today)
            .map_err(AlertsError::Invalid)?;
        let seed = match &req.seed {
            Some(s) if s.is_empty() || s.len() > 128 || !s.chars().all(|c| c.is_ascii_graphic()) => {
                return Err(invalid("seed", "must be 1 to 128 printable ASCII characters without spaces"));
            }
            Some(s) => s.clone(),
            None => hex::encode(&Uuid::now_v7().as_bytes()[8..16]),
        };
        let _slot = if wait {
            self.slots.acquire().await.map_err(|e| internal("a report slot", e))?
        } else {
            self.slots.try_acquire().map_err(|_| busy())?
        };
        let id = Uuid::now_v7();
        let checkpoint = ledger.checkpoint_now().await.map_err(crate::events::EventsError::from)?;
        let max_seq = checkpoint.as_ref().map_or(0, |c| c.tree_size);

        let snapshots = self.snapshots(from, to).await?;
        let (controls_out, checks_out, exceptions, exceptions_total) =
            build::controls_over(controls, &snapshots, (from, to));
        let status = controls_out.iter().map(|c| c.status).min().unwrap_or(CheckStatus::NoEvidence);
        let missing: Vec<String> = (from..=to).filter(|d| !snapshots.contains_key(d)).map(date).collect();
        let unverified: Vec<String> = snapshots.values().filter(|s| !s.verified).map(|s| date(s.day)).collect();
        let last = snapshots.values().rev().find(|s| s.verified);
        let event_classes = build::classes(&self.events, fid, from, to, max_seq).await?;
        let verifications = build::verifications(&self.events, from, to).await?;
        let operations = build::operations(&self.events, last, from, to).await?;
        let (policy_changes, policy_changes_total) =
            build::policy_changes(&self.events, &self.policies, from, to, 200).await?;
        let sample = build::sample(&self.events, &controls_out, &checks_out, &seed, (from, to), max_seq).await?;
        let days = (to - from + 1) as u32;
        let used = snapshots.values().filter(|s| s.verified).count() as u32;
        let failing = controls_out.iter().filter(|c| c.status == CheckStatus::Fail).count();
        let summary = format!(
            "{} of {} controls pass over {days} days; {} failing; snapshots on {used} of {days} days{}.",
            controls_out.iter().filter(|c| c.status == CheckStatus::Pass).count(),
            controls_out.len(),
            failing,
            if missing.is_empty() { String::new() } else { format!(" ({} days missing)", missing.len()) },
        );
        let report = EvidenceReport {
            report_version: 1,
            id,
            framework: ReportFramework { id: fid.into(), name: fname.into() },
            period_from: date(from),
            period_to: date(to),
            days,
            organisation: self.settings.organisation.clone(),
            generated_at: rfc3339(now),
            generated_by: author(by),
            origin: ledger.origin().to_owned(),
            checkpoint: checkpoint.as_ref().map(|c| ManifestCheckpoint {
                size: c.tree_size,
                root: hex::encode(c.root_hash),
                note: c.note.clone(),
            }),
            status,
            summary,
            snapshots: used,
            missing_days: missing,
            seed_chosen: req.seed.is_some(),
            unverified_days: unverified,
            controls: controls_out,
            checks: checks_out,
            event_classes,
            verifications,
            operations,
            policy_changes,
            policy_changes_total,
            sample,
            exceptions,
            exceptions_total,
        };
        let mut json_bytes = serde_json::to_vec_pretty(&report).map_err(|e| internal("the report's JSON", e))?;
        json_bytes.push(b'\n');
        let json_sha = hex::encode(Sha256::digest(&json_bytes));
        let formats = self.formats.clone();
        let (r2, j2) = (report.clone(), json_sha.clone());
        let pdf = tokio::task::spawn_blocking(move || formats.report_pdf(&r2, &j2))
            .await
            .map_err(|e| internal("the report's PDF", e))?
            .map_err(|e| internal("the report's PDF", e))?;
        let pdf_sha = hex::encode(Sha256::digest(&pdf));
        let sampled: Vec<&custos_model::SampledEvent> =
            report.sample.controls.iter().flat_map(|c| c.events.iter()).collect();
        let mut leaves = Sha256::new();
        for e in &sampled {
            leaves.update(hex::decode(&e.leaf_hash).unwrap_or_default());
        }
        let entries_sha = hex::encode(leaves.finalize());
        let manifest = |file: ReportFile, sha: &str, bytes: usize| ExportManifest {
            manifest_version: 1,
            export_id: id,
            format: file.format().into(),
            file_name: file_name(fid, &date(from), &date(to), file),
            sha256: sha.to_owned(),
            bytes: bytes as u64,
            rows: sampled.len() as u64,
            first_seq: None,
            last_seq: None,
            entries_sha256: entries_sha.clone(),
            filters: vec![
                ("framework".into(), fid.into()),
                ("from".into(), date(from)),
                ("to".into(), date(to)),
                ("seed".into(), seed.clone()),
            ],
            generated_at: rfc3339(now),
            generated_by: author(by),
            origin: ledger.origin().to_owned(),
            checkpoint: report.checkpoint.clone(),
        };
        let signer = ledger.keys().signer();
        let pdf_manifest = manifest_note(&manifest(ReportFile::Pdf, &pdf_sha, pdf.len()), signer);
        let json_manifest = manifest_note(&manifest(ReportFile::Json, &json_sha, json_bytes.len()), signer);

        // Catalogued first, then recorded, then stored: a report whose
        // record could not be committed is kept as failed, without files.
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "INSERT INTO reports (id, framework, period_from, period_to, trigger, schedule, requested_by, \
                 generated_at, state, seed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)",
                vec![
                    id.to_string().into(),
                    fid.into(),
                    date(from).into(),
                    date(to).into(),
                    trigger.into(),
                    schedule.map(str::to_owned).into(),
                    author(by).into(),
                    now.into(),
                    seed.clone().into(),
                ],
            ))
            .await?;
        let event = OwnEvent::new(OwnAction::ReportStep("custos.report.generated"), by.actor.clone(), by.channel)
            .request(by.request_id.clone())
            .resource("report", Some(id.to_string()))
            .details(json!({
                "report": id, "framework": fid, "from": date(from), "to": date(to), "status": status,
                "trigger": trigger, "schedule": schedule, "seed": seed, "seed_chosen": req.seed.is_some(),
                "pdf_sha256": pdf_sha, "json_sha256": json_sha,
                "checkpoint_size": max_seq, "snapshots": used, "days": days,
            }));
        if let Err(e) = self.events.record_own(event).await {
            let _ = self
                .conn()
                .execute_raw(stmt_for(
                    self.backend(),
                    "UPDATE reports SET state = 'failed', error = ? WHERE id = ?",
                    vec![
                        "the report could not be recorded in the ledger; it was discarded".into(),
                        id.to_string().into(),
                    ],
                ))
                .await;
            return Err(e.into());
        }
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "UPDATE reports SET state = 'done', status = ?, pdf = ?, pdf_sha256 = ?, pdf_manifest = ?, json = ?, \
                 json_sha256 = ?, json_manifest = ? WHERE id = ?",
                vec![
                    status.as_str().into(),
                    pdf.into(),
                    pdf_sha.into(),
                    pdf_manifest.into(),
                    json_bytes.into(),
                    json_sha.into(),
                    json_manifest.into(),
                    id.to_string().into(),
                ],
            ))
            .await?;
        self.prune().await?;
        self.get(id).await
    }

    /// Deletes the reports asked for by people beyond the newest `keep`
    /// (their records stay); a schedule's are kept by its own `keep`.
    async fn prune(&self) -> Result<(), AlertsError> {
        self.conn()
            .execute_raw(stmt_for(
                self.backend(),
                "DELETE FROM reports WHERE schedule IS NULL AND id NOT IN (SELECT id FROM reports WHERE schedule IS NULL \
                 ORDER BY generated_at DESC, id DESC LIMIT ?)",
                vec![Value::BigInt(Some(i64::from(self.settings.keep.max(1))))],
            ))
            .await?;
        Ok(())
    }

    /// One report.
    pub async fn get(&self, id: Uuid) -> Result<ReportInfo, AlertsError> {
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                &format!("SELECT {COLUMNS} FROM reports WHERE id = ?"),
                vec![id.to_string().into()],
            ))
            .await?
            .ok_or_else(|| AlertsError::NotFound(format!("no report {id}")))?;
        Ok(info_of(&row)?)
    }

    /// The newest reports first.
    pub async fn list(&self, limit: u64) -> Result<Vec<ReportInfo>, AlertsError> {
        let rows = self
            .conn()
            .query_all_raw(stmt_for(
                self.backend(),
                &format!("SELECT {COLUMNS} FROM reports ORDER BY generated_at DESC, id DESC LIMIT ?"),
                vec![Value::BigInt(Some(limit.clamp(1, 1000) as i64))],
            ))
            .await?;
        rows.iter().map(|r| info_of(r).map_err(AlertsError::from)).collect()
    }

    /// A report's file: (file name, bytes).
    pub async fn file(&self, id: Uuid, file: ReportFile) -> Result<(String, Vec<u8>), AlertsError> {
        let info = self.get(id).await?;
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                &format!("SELECT {} AS body FROM reports WHERE id = ?", file.column()),
                vec![id.to_string().into()],
            ))
            .await?
            .ok_or_else(|| AlertsError::NotFound(format!("no report {id}")))?;
        let body: Option<Vec<u8>> = row.try_get("", "body")?;
        let body = body.ok_or_else(|| AlertsError::NotFound(format!("report {id} has no {} file", file.ext())))?;
        Ok((file_name(&info.framework, &info.period_from, &info.period_to, file), body))
    }

    /// A file's signed manifest.
    pub async fn manifest(&self, id: Uuid, file: ReportFile) -> Result<String, AlertsError> {
        let row = self
            .conn()
            .query_one_raw(stmt_for(
                self.backend(),
                &format!("SELECT {}_manifest AS m FROM reports WHERE id = ?", file.column()),
                vec![id.to_string().into()],
            ))
            .await?
            .ok_or_else(|| AlertsError::NotFound(format!("no report {id}")))?;
        let m: Option<String> = row.try_get("", "m")?;
        m.ok_or_else(|| AlertsError::NotFound(format!("report {id} has no {} manifest", file.ext())))
    }

    /// The snapshots' statuses by day over `from..=to` (the compliance
    /// page's period view): each day's failing checks, each check's days
    /// by status (a check a day's snapshot lacks: not configured that day).
    pub async fn history(&self, from: i64, to: i64) -> Result<custos_model::ComplianceHistory, AlertsError> {
        let Ok(_slot) = self.slots.try_acquire() else { return Err(busy()) };
        let snapshots = self.snapshots(from, to).await?;
        let ids: std::collections::BTreeSet<String> =
            snapshots.values().flat_map(|s| s.checks.iter().map(|c| c.id.clone())).collect();
        let mut checks: std::collections::BTreeMap<String, custos_model::DayCounts> =
            ids.into_iter().map(|id| (id, Default::default())).collect();
        let mut days = Vec::new();
        for day in from..=to {
            let snap = snapshots.get(&day);
            let usable = snap.filter(|s| s.verified);
            days.push(custos_model::HistoryDay {
                day: date(day),
                fail: usable
                    .map(|s| s.checks.iter().filter(|c| c.status == CheckStatus::Fail).map(|c| c.id.clone()).collect()),
                unverified: snap.is_some_and(|s| !s.verified),
            });
            for (id, counts) in checks.iter_mut() {
                match usable {
                    None => counts.missing += 1,
                    Some(s) => counts
                        .add(s.checks.iter().find(|c| &c.id == id).map_or(CheckStatus::NotConfigured, |c| c.status)),
                }
            }
        }
        Ok(custos_model::ComplianceHistory {
            from: date(from),
            to: date(to),
            snapshots: days.iter().filter(|d| d.fail.is_some()).count() as u32,
            days,
            checks: checks.into_iter().map(|(id, days)| custos_model::CheckHistory { id, days }).collect(),
        })
    }
}
