//! The disk watermark: with SQLite, events are refused (503) once the disk
//! holding the database has less than `ingest.min_free_disk_mb` free, so
//! that the space left takes what must still be written: the records of
//! reads and changes (every one is audited), sessions, checkpoints. Writing
//! resumes by itself once space is freed. Below the watermark nothing is
//! lost: SQLite commits whole transactions or none.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::api::ApiError;

/// Free space under one database file, against a minimum.
#[derive(Debug)]
pub struct DiskGuard {
    /// The SQLite database file and its write-ahead log.
    file: Option<(PathBuf, PathBuf)>,
    min_free: u64,
    /// 0: not read yet, 1: above the watermark, 2: below (for the log).
    state: AtomicU8,
}

impl DiskGuard {
    /// Watches the disk of the SQLite database `file` (`None`: nothing to
    /// watch, as on PostgreSQL, whose disk is the database server's).
    pub fn new(file: Option<PathBuf>, min_free_mb: u64) -> DiskGuard {
        let file = file.map(|f| {
            let mut wal = f.clone().into_os_string();
            wal.push("-wal");
            (f, PathBuf::from(wal))
        });
        DiskGuard { file, min_free: min_free_mb.saturating_mul(1024 * 1024), state: AtomicU8::new(0) }
    }

    /// Free bytes for unprivileged writers, less the write-ahead log's size:
    /// checkpointing copies the log into the database file, which may grow
    /// by as much. Read on every call (two system calls, no cache: a burst
    /// of large events fills a small disk within a second).
    pub fn free_bytes(&self) -> Option<u64> {
        let (file, wal) = self.file.as_ref()?;
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        let free = match rustix::fs::statvfs(dir) {
            Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot read the free space of the database's disk");
                return None;
            }
        };
        let pending = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
        let free = free.saturating_sub(pending);
        let low = free < self.min_free;
        let was = self.state.swap(if low { 2 } else { 1 }, Ordering::Relaxed);
        if was != 0 && (was == 2) != low || was == 0 && low {
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
        let db = dir.path().join("custos.db");
        let free = DiskGuard::new(Some(db.clone()), 0).free_bytes().unwrap();
        assert!(free > 0);
        assert!(DiskGuard::new(Some(db.clone()), 0).check().is_ok());
        // The write-ahead log counts as used.
        std::fs::write(dir.path().join("custos.db-wal"), vec![1u8; 8 << 20]).unwrap();
        let less = DiskGuard::new(Some(db.clone()), 0).free_bytes().unwrap();
        assert!(less + (6 << 20) < free, "{less} against {free}");
        // A watermark above what any disk here has.
        let e = DiskGuard::new(Some(db), u64::MAX / (2 << 20)).check().unwrap_err();
        assert_eq!(e.status().as_u16(), 503);
        assert!(e.message.contains("ingest.min_free_disk_mb"), "{}", e.message);
        assert_eq!(e.retry_after, Some(30));
        // Nothing to watch on PostgreSQL.
        assert!(DiskGuard::new(None, u64::MAX / (2 << 20)).check().is_ok());
    }
}
