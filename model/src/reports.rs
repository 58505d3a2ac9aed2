//! Compliance evidence reports: one framework over a period, from the
//! daily compliance snapshots and the ledger. The JSON twin of the PDF is
//! this document; both are signed like exports (a manifest per file).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{CheckStatus, Evidence, ManifestCheckpoint};

/// Periods people pick from: (value, label).
pub const REPORT_PERIODS: [(&str, &str); 6] = [
    ("previous_month", "Previous month"),
    ("previous_quarter", "Previous quarter"),
    ("last_30_days", "Last 30 days"),
    ("last_90_days", "Last 90 days"),
    ("last_365_days", "Last 365 days"),
    ("month_to_date", "Month to date"),
];

/// Asks for a report now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportRequest {
    /// A framework id (`GET /api/reports/frameworks`), e.g. `pcidss4`.
    pub framework: String,
    /// A named period (`previous_month`, `previous_quarter`,
    /// `last_30_days`, `last_90_days`, `last_365_days`, `month_to_date`),
    /// or absent with `from` and `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// First day (YYYY-MM-DD, UTC), with `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Last day, included (YYYY-MM-DD, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The sample's seed (hex or any text); a fresh one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
}

/// A framework a report can be made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportFramework {
    /// Id, e.g. `soc2`.
    pub id: String,
    /// Name, e.g. `SOC 2`.
    pub name: String,
}

/// A report in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportInfo {
    /// Its id.
    pub id: Uuid,
    /// The framework's id.
    pub framework: String,
    /// First day of the period (YYYY-MM-DD).
    pub period_from: String,
    /// Last day of the period, included.
    pub period_to: String,
    /// `manual` or `schedule`.
    pub trigger: String,
    /// The schedule that made it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Who asked (their id, and name when it differs; `custos` for a
    /// schedule).
    pub requested_by: String,
    /// When (RFC 3339).
    pub generated_at: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The sample's seed.
    pub seed: String,
    /// The framework's status over the period (worst control), once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CheckStatus>,
    /// SHA-256 of the PDF (hex), once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdf_sha256: Option<String>,
    /// SHA-256 of the JSON twin (hex), once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_sha256: Option<String>,
}

/// Days by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DayCounts {
    /// Days it passed.
    pub pass: u32,
    /// Days with a warning.
    pub warn: u32,
    /// Days it failed.
    pub fail: u32,
    /// Days with nothing to judge by.
    pub no_evidence: u32,
    /// Days its feature was not set up.
    pub not_configured: u32,
    /// Days without a snapshot (gaps: never filled in).
    pub missing: u32,
}

/// A status's letter in [`ReportControl::daily`].
pub fn status_letter(s: CheckStatus) -> char {
    match s {
        CheckStatus::Pass => 'P',
        CheckStatus::Warn => 'W',
        CheckStatus::Fail => 'F',
        CheckStatus::NoEvidence => 'N',
        CheckStatus::NotConfigured => 'C',
    }
}

impl DayCounts {
    /// Counts one day's status.
    pub fn add(&mut self, s: CheckStatus) {
        match s {
            CheckStatus::Pass => self.pass += 1,
            CheckStatus::Warn => self.warn += 1,
            CheckStatus::Fail => self.fail += 1,
            CheckStatus::NoEvidence => self.no_evidence += 1,
            CheckStatus::NotConfigured => self.not_configured += 1,
        }
    }
}

/// The evidence report (the JSON twin; the PDF prints the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvidenceReport {
    /// Format version (1).
    pub report_version: u32,
    /// The report's id.
    pub id: Uuid,
    /// The framework.
    pub framework: ReportFramework,
    /// First day (YYYY-MM-DD, UTC).
    pub period_from: String,
    /// Last day, included.
    pub period_to: String,
    /// Days in the period.
    pub days: u32,
    /// The organisation (`[reports] organisation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    /// When generated (RFC 3339).
    pub generated_at: String,
    /// Who generated it (`kind:id`, or `custos` for a schedule).
    pub generated_by: String,
    /// The ledger's origin (its key name).
    pub origin: String,
    /// The signed checkpoint covering the period's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<ManifestCheckpoint>,
    /// The framework's status over the period: its worst control.
    pub status: CheckStatus,
    /// How the status is reached, in one sentence.
    pub summary: String,
    /// Days with a snapshot.
    pub snapshots: u32,
    /// Days without one (YYYY-MM-DD): gaps, shown, never filled in.
    pub missing_days: Vec<String>,
    /// The sample's seed was chosen by whoever asked (else drawn at
    /// random by the server).
    pub seed_chosen: bool,
    /// Snapshots whose row no longer matches its sealed record (or whose
    /// record is gone): not used, listed.
    pub unverified_days: Vec<String>,
    /// The controls.
    pub controls: Vec<ReportControl>,
    /// The checks behind them.
    pub checks: Vec<ReportCheck>,
    /// Events per class the framework requires recorded.
    pub event_classes: Vec<EventClassCount>,
    /// Verifications of the ledger in the period.
    pub verifications: ReportVerifications,
    /// Operations in the period: retention, backups, alerting, forwarding.
    pub operations: Vec<OperationFact>,
    /// Policy changes in the period with their approvals.
    pub policy_changes: Vec<PolicyChange>,
    /// Policy changes in the period (all, `policy_changes` may be cut).
    pub policy_changes_total: u64,
    /// The auditor's sample.
    pub sample: ReportSample,
    /// Days a check did not pass, with what it found.
    pub exceptions: Vec<ReportException>,
    /// Exceptions in all (`exceptions` may be cut).
    pub exceptions_total: u64,
}

/// A control over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportControl {
    /// Control id, e.g. `10.2`.
    pub id: String,
    /// Its name.
    pub title: String,
    /// Over the period: the worst day's; a pass with gaps is a warning;
    /// no snapshot at all is no evidence.
    pub status: CheckStatus,
    /// Days by status (the control's status each day: its worst check's).
    pub days: DayCounts,
    /// Ids of its checks.
    pub checks: Vec<String>,
    /// Days it failed (YYYY-MM-DD, at most 31 listed).
    pub failing_days: Vec<String>,
    /// Its status each day, oldest first, one letter a day: `P` pass, `W`
    /// warning, `F` fail, `N` no evidence, `C` not configured, `-` no
    /// snapshot.
    pub daily: String,
}

/// A check over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportCheck {
    /// Check id, e.g. `chain_verified`.
    pub id: String,
    /// What is checked.
    pub title: String,
    /// Over the period (as a control's).
    pub status: CheckStatus,
    /// Days by status.
    pub days: DayCounts,
    /// What the period's last snapshot found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_detail: Option<String>,
    /// Where to see the evidence.
    pub evidence: Vec<Evidence>,
}

/// A class of event a framework requires recorded, counted in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventClassCount {
    /// The requirement, e.g. `10.2.1.1`.
    pub id: String,
    /// What it asks for.
    pub title: String,
    /// The search that finds them (`GET /api/audit` parameters).
    pub filters: Vec<(String, String)>,
    /// Events in the period.
    pub count: u64,
    /// No event of the class in the period: flagged for the auditor.
    pub flagged: bool,
}

/// Verifications of the ledger in the period.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportVerifications {
    /// All of them.
    pub total: u64,
    /// Those that found the ledger intact.
    pub intact: u64,
    /// Those that did not.
    pub failed: u64,
    /// Of the whole ledger.
    pub full: u64,
    /// Days with at least one intact verification of the whole ledger.
    pub days_verified: u32,
    /// The newest, at most 100 (failures first).
    pub items: Vec<ReportVerification>,
}

/// One verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportVerification {
    /// Its record's seq.
    pub seq: u64,
    /// When (RFC 3339).
    pub at: String,
    /// `success` or how it failed.
    pub outcome: String,
    /// Of the whole ledger.
    pub full: bool,
    /// Entries checked.
    pub entries_checked: u64,
    /// Where it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at_seq: Option<u64>,
}

/// An operational fact over the period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperationFact {
    /// What, e.g. `Retention`.
    pub label: String,
    /// The check's status in the last snapshot, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CheckStatus>,
    /// What the last snapshot found, or the figures.
    pub detail: String,
    /// Counts of its events in the period: (action, count).
    pub counts: Vec<(String, u64)>,
}

/// A policy change in the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyChange {
    /// When (RFC 3339).
    pub at: String,
    /// The policy kind, e.g. `masking`.
    pub kind: String,
    /// Its version.
    pub version: u64,
    /// proposed, approved, activated, rejected, …
    pub step: String,
    /// Who.
    pub by: String,
    /// The record's seq.
    pub seq: u64,
    /// The approvers named (an approval or activation).
    pub approvers: Vec<String>,
    /// Approved without a second person.
    pub alone: bool,
}

/// The auditor's sample: events drawn per control, reproducibly.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportSample {
    /// The seed: see `draw` in the engine's `reports::build` (and the
    /// README) for how positions follow from it.
    pub seed: String,
    /// Events per control.
    pub per_control: u32,
    /// The draws.
    pub controls: Vec<ControlSample>,
}

/// A control's sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ControlSample {
    /// The control.
    pub control: String,
    /// The search drawn from (`GET /api/audit` parameters).
    pub filters: Vec<(String, String)>,
    /// Events matching it in the period.
    pub population: u64,
    /// The events drawn (in draw order).
    pub events: Vec<SampledEvent>,
}

/// One event of a sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SampledEvent {
    /// Its seq.
    pub seq: u64,
    /// Its position among the population (0-based, seq order).
    pub position: u64,
    /// When it occurred (RFC 3339).
    pub occurred_at: String,
    /// Its action.
    pub action: String,
    /// Its outcome.
    pub outcome: String,
    /// Its actor's id.
    pub actor: String,
    /// Its leaf hash (hex): with the checkpoint, provable.
    pub leaf_hash: String,
}

/// A day a check did not pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportException {
    /// The day (YYYY-MM-DD).
    pub day: String,
    /// The check.
    pub check: String,
    /// Its status that day.
    pub status: CheckStatus,
    /// What it found (its explanation).
    pub detail: String,
}

/// The compliance page's period view: the daily snapshots' statuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComplianceHistory {
    /// First day (YYYY-MM-DD).
    pub from: String,
    /// Last day, included.
    pub to: String,
    /// Days with a snapshot (that matches its record).
    pub snapshots: u32,
    /// Each day.
    pub days: Vec<HistoryDay>,
    /// Each check: its days by status (`missing`: days without a snapshot).
    pub checks: Vec<CheckHistory>,
}

/// A day of the period view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryDay {
    /// The day (YYYY-MM-DD).
    pub day: String,
    /// The checks failing that day; absent: no snapshot (a gap), or one
    /// that no longer matches its sealed record (`unverified`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<Vec<String>>,
    /// The day's snapshot no longer matches its sealed record (or the
    /// record is gone): not used.
    #[serde(default)]
    pub unverified: bool,
}

/// A check over the period view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckHistory {
    /// The check's id.
    pub id: String,
    /// Its days by status.
    pub days: DayCounts,
}

/// The `report_schedules` policy's document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleDoc {
    /// The schedules.
    pub schedules: Vec<ReportSchedule>,
}

fn yes() -> bool {
    true
}

fn twelve() -> u32 {
    12
}

/// A report made and sent on a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportSchedule {
    /// Stable id, `[a-z0-9_-]{1,64}`.
    pub id: String,
    /// For people.
    pub name: String,
    /// Off: nothing is planned (default on).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When, a five-field cron expression in UTC (`0 6 1 * *`: 06:00 on
    /// the first of each month).
    pub cron: String,
    /// The framework's id (`GET /api/reports/frameworks`).
    pub framework: String,
    /// The named period, relative to the day the run is due
    /// (`previous_month`, `previous_quarter`, `last_30_days`,
    /// `last_90_days`, `last_365_days`, `month_to_date`).
    pub period: String,
    /// Who receives it: channels of the notifications policy. An e-mail
    /// channel gets the PDF attached (a link and the digest when it is
    /// larger than 10 MiB); a webhook or chat, a link and the digest.
    pub recipients: Vec<ScheduleRecipient>,
    /// The schedule's newest reports kept (1-1000, default 12); older ones
    /// are deleted (their records stay in the ledger).
    #[serde(default = "twelve")]
    pub keep: u32,
}

/// A schedule's recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleRecipient {
    /// A channel's id in the notifications policy.
    pub channel: String,
    /// For an e-mail channel: these addresses instead of the channel's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
}

/// One run of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportRun {
    /// Its id.
    pub id: String,
    /// The schedule.
    pub schedule_id: String,
    /// When it was due (RFC 3339).
    pub due_at: String,
    /// `planned`, `running`, `done`, `failed`, `missed` or `cancelled`.
    pub state: String,
    /// Tries so far.
    pub attempts: u32,
    /// When it started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The report it made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_id: Option<String>,
    /// Why it failed, was missed or cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its messages, one per recipient.
    #[serde(default)]
    pub deliveries: Vec<RunDelivery>,
}

/// A run's message to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunDelivery {
    /// The channel.
    pub channel: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Tries so far.
    pub attempts: u32,
    /// The last try's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A schedule in force, with its next and last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleStatus {
    /// The schedule.
    pub schedule: ReportSchedule,
    /// Its next run (RFC 3339), unless off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// Its latest run that ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<ReportRun>,
}

/// The report schedules in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchedulesView {
    /// The `report_schedules` policy version in force.
    pub version: u64,
    /// Each schedule.
    pub schedules: Vec<ScheduleStatus>,
}
