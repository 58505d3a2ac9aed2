//! The disk watermark: with SQLite, events are refused (503) once the disk
//! holding the database has less than `ingest.min_free_disk_mb` free, so
//! that the space left takes what must still be written: the records of
//! reads and changes (every one is audited), sessions, checkpoints. Writing
//! resumes by itself once space is freed. Below the watermark nothing is
//! lost: SQLite commits whole transactions or none.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::ApiError;

/// How long a reading of the free space is used.
const FRESH: Duration = Duration::from_secs(1);

/// Free space under one directory, against a minimum.
#[derive(Debug)]
pub struct DiskGuard {
    dir: Option<PathBuf>,
    min_free: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

impl DiskGuard {
    /// Watches the filesystem of `dir` (`None`: nothing to watch, as on
    /// PostgreSQL, whose disk is the database server's).
    pub fn new(dir: Option<PathBuf>, min_free_mb: u64) -> DiskGuard {
        DiskGuard { dir, min_free: min_free_mb.saturating_mul(1024 * 1024), last: Mutex::new(None) }
    }

    /// Free bytes for unprivileged writers, read at most once a second.
    pub fn free_bytes(&self) -> Option<u64> {
        let dir = self.dir.as_ref()?;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, free)) = *last
            && at.elapsed() < FRESH
        {
            return Some(free);
        }
        let free = match rustix::fs::statvfs(dir) {
            Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot read the free space of the database's disk");
                return None;
            }
        };
        let was_low = last.is_some_and(|(_, f)| f < self.min_free);
        let low = free < self.min_free;
        if low != was_low || last.is_none() && low {
            if low {
                tracing::warn!(
                    free_mb = free / (1024 * 1024),
                    min_free_mb = self.min_free / (1024 * 1024),
                    "the database's disk is below ingest.min_free_disk_mb: events are refused until space is freed"
                );
            } else {
                tracing::info!(
                    free_mb = free / (1024 * 1024),
                    "the database's disk has room again: events are accepted"
                );
            }
        }
        metrics::gauge!("custos_disk_free_bytes").set(free as f64);
        *last = Some((Instant::now(), free));
        Some(free)
    }

    /// Refuses new events while the disk is below the watermark.
    pub fn check(&self) -> Result<(), ApiError> {
        match self.free_bytes() {
            Some(free) if free < self.min_free => {
                metrics::counter!("custos_ingest_disk_refusals_total").increment(1);
                let e = ApiError::new(
                    custos_model::ErrorCode::LedgerUnavailable,
                    format!(
                        "the disk holding the database has {} MiB free, below ingest.min_free_disk_mb ({} MiB): \
                         events are refused until space is freed (reads go on); nothing was stored",
                        free / (1024 * 1024),
                        self.min_free / (1024 * 1024)
                    ),
                );
                Err(ApiError { retry_after: Some(30), ..e })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_watermark_only() {
        let dir = tempfile::tempdir().unwrap();
        let free = DiskGuard::new(Some(dir.path().into()), 0).free_bytes().unwrap();
        assert!(free > 0);
        assert!(DiskGuard::new(Some(dir.path().into()), 0).check().is_ok());
        // A watermark above what any disk here has.
        let e = DiskGuard::new(Some(dir.path().into()), u64::MAX / (2 << 20)).check().unwrap_err();
        assert_eq!(e.status().as_u16(), 503);
        assert!(e.message.contains("ingest.min_free_disk_mb"), "{}", e.message);
        assert_eq!(e.retry_after, Some(30));
        // Nothing to watch on PostgreSQL.
        assert!(DiskGuard::new(None, u64::MAX / (2 << 20)).check().is_ok());
    }
}
