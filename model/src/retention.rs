//! Retention, legal holds and archives: what a run would do and did, the
//! archives it wrote, the presets people pick periods from.

use serde::{Deserialize, Serialize};

/// Periods people pick from: (label, days; `None` is forever).
pub const RETENTION_PRESETS: [(&str, Option<u32>); 6] = [
    ("90 days", Some(90)),
    ("1 year", Some(365)),
    ("3 years", Some(1095)),
    ("5 years", Some(1825)),
    ("7 years", Some(2555)),
    ("Forever", None),
];

/// Periods regimes require: (framework, days, what it asks).
pub const RETENTION_FRAMEWORKS: [(&str, u32, &str); 4] = [
    ("PCI DSS", 365, "PCI DSS 4.0 10.5.1: at least 12 months, the last 3 immediately available"),
    ("HIPAA", 2190, "HIPAA 164.316(b)(2): 6 years"),
    ("SOX", 2555, "SOX (SEC 17 CFR 210.2-06): 7 years"),
    ("GDPR", 365, "GDPR Art. 5(1)(e): no longer than the purpose needs (one year here; choose yours)"),
];

/// Removable events of one category in one month (of their recording).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemovalCount {
    /// The category.
    pub category: String,
    /// `YYYY-MM` (UTC) of their recording.
    pub month: String,
    /// How many.
    pub events: u64,
}

/// What a run would remove now (a dry-run), with the policy in force or
/// a proposed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionPlan {
    /// When it was computed (RFC 3339).
    pub at: String,
    /// Events that would be removed.
    pub removable: u64,
    /// Expired events kept by a legal hold.
    pub held: u64,
    /// Entries looked at.
    pub scanned: u64,
    /// By category and month.
    pub by_category_month: Vec<RemovalCount>,
    /// Removable events per rule id (`default` for the default period).
    pub by_rule: Vec<(String, u64)>,
    /// Held events per hold id.
    pub by_hold: Vec<(String, u64)>,
    /// The oldest removable event's seq and recording time.
    pub oldest: Option<(u64, String)>,
}

/// A retention run (or an erasure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionRun {
    /// Its id.
    pub id: String,
    /// `retention` or `erasure`.
    pub kind: String,
    /// The erasure request it carries out.
    pub request: Option<String>,
    /// `schedule` or `manual`.
    pub trigger: String,
    /// Who asked (a principal, or `custos`).
    pub requested_by: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once finished.
    pub finished_at: Option<String>,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Ledger positions looked at so far.
    pub scanned: u64,
    /// Ledger positions to look at.
    pub total: u64,
    /// Events removed (archived, then replaced by tombstones).
    pub removed: u64,
    /// Expired events kept by legal holds.
    pub held: u64,
    /// Archive bundles written.
    pub archives: u64,
    /// Why it failed (nothing of the failing step was removed).
    pub error: Option<String>,
}

/// An archive bundle in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArchiveInfo {
    /// File name.
    pub name: String,
    /// `local` (the archive or backup directory) or `object_store` (an
    /// S3-compatible store; a local copy may be kept too).
    pub location: String,
    /// Where it is: a path, or `s3://bucket/prefix/…`.
    pub uri: String,
    /// The ledger entry recording the removal it holds.
    pub anchor_seq: Option<u64>,
    /// First seq of its range.
    pub from_seq: u64,
    /// Last seq of its range.
    pub through_seq: u64,
    /// Entries it holds as sealed.
    pub entries: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file (hex).
    pub sha256: String,
    /// `retention` or `erasure` (entries removed), or `cold_copy` (a copy
    /// of sealed entries, nothing removed).
    pub reason: String,
    /// RFC 3339.
    pub created_at: String,
    /// Last verified (RFC 3339).
    pub verified_at: Option<String>,
    /// Whether that verification passed.
    pub verified_ok: Option<bool>,
    /// What it found.
    pub verified_detail: Option<String>,
}

/// Retention as it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionStatus {
    /// The retention policy version in force.
    pub policy_version: u64,
    /// One line on it.
    pub summary: String,
    /// The floor no rule may go below without an admin's override (days).
    pub min_days: u32,
    /// Legal holds in force (not released).
    pub holds_active: u64,
    /// The daily run's time (UTC, `HH:MM`), if scheduled.
    pub schedule: Option<String>,
    /// The next scheduled run (RFC 3339).
    pub next_run: Option<String>,
    /// The last run.
    pub last_run: Option<RetentionRun>,
    /// The oldest event still in the ledger: seq and recording time.
    pub oldest: Option<(u64, String)>,
    /// Events removed so far (tombstones).
    pub removed_total: u64,
    /// Where archives are written.
    pub archive_dir: String,
    /// The object store archives are uploaded to (`s3://bucket/prefix`),
    /// with its Object Lock (`compliance, 2555 days`), if configured.
    pub object_store: Option<String>,
    /// Cold copies of sealed entries: `daily` or `monthly`, if on.
    pub cold_copies: Option<String>,
    /// The last seq copied by a cold copy.
    pub cold_copied_through: Option<u64>,
}

/// A backup in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupInfo {
    /// File name.
    pub name: String,
    /// `local` (the archive or backup directory) or `object_store` (an
    /// S3-compatible store; a local copy may be kept too).
    pub location: String,
    /// Where it is: a path, or `s3://bucket/prefix/…`.
    pub uri: String,
    /// `schedule` or `manual`.
    pub trigger: String,
    /// Who asked (a principal, or `custos`).
    pub requested_by: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: Option<String>,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the file (hex).
    pub sha256: Option<String>,
    /// The ledger's head when it was taken.
    pub head_seq: Option<u64>,
    /// The tree size of the signed checkpoint inside.
    pub checkpoint_size: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// When its file was deleted (beyond `backup.keep`).
    pub removed_at: Option<String>,
}

/// Backups as they stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupStatus {
    /// Whether Custos takes the backups itself (SQLite); on PostgreSQL the
    /// database's own tools do.
    pub supported: bool,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// A backup every this many hours (none: on demand only).
    pub interval_hours: Option<u64>,
    /// Backups kept.
    pub keep: u32,
    /// Where they are written.
    pub dir: String,
    /// The object store backups are uploaded to (`s3://bucket/prefix`),
    /// with its Object Lock, if configured.
    pub object_store: Option<String>,
    /// The newest backup that succeeded.
    pub last_success: Option<BackupInfo>,
    /// When the next scheduled one is due (RFC 3339).
    pub next_due: Option<String>,
}
