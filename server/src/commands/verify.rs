//! `custos verify`: offline verification of a database or an archive bundle,
//! with only the public key (chain, Merkle roots, signatures) or with the KEK
//! as well (MACs, decryption). Exit codes: 0 intact, 1 tampered, 2 could not
//! verify.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use custos_engine::ledger::keyring::Keyring;
use custos_engine::ledger::note::{Checkpoint, NoteVerifier};
use custos_engine::ledger::purge::verify_archive_summary;
use custos_engine::ledger::verify::{self, Progress, VerifyScope};
use custos_engine::storage::{Database, PoolOptions};
use secrecy::SecretString;

use super::failed;
use crate::config::Config;

/// Arguments of `custos verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Database URL (sqlite://FILE or postgres://…); default: the configured database.
    #[arg(long)]
    database: Option<String>,
    /// The checkpoint verifier key (`name+hash+key`), or a file containing it.
    #[arg(long)]
    public_key: Option<String>,
    /// Also check every MAC and decryption, with the KEK (CUSTOS_KEK or the key file).
    #[arg(long)]
    with_kek: bool,
    /// First seq to verify.
    #[arg(long)]
    from: Option<u64>,
    /// Last seq to verify.
    #[arg(long)]
    to: Option<u64>,
    /// Verify one entry only: fields, MAC and decryption (with --with-kek), and
    /// its inclusion proof against the latest signed checkpoint.
    #[arg(long, conflicts_with_all = ["from", "to", "archive"])]
    seq: Option<u64>,
    /// Verify an archive bundle written by a retention purge instead.
    #[arg(long)]
    archive: Option<PathBuf>,
    /// A checkpoint you kept (its signed note, or a file holding it;
    /// repeatable): the ledger must still contain that tree. A ledger cut
    /// below it, or rewritten, fails (exit 1) even if the database's own
    /// checkpoints were removed or replaced.
    #[arg(long = "trusted-checkpoint", value_name = "NOTE|FILE", conflicts_with_all = ["seq", "archive", "from", "to"])]
    trusted_checkpoints: Vec<String>,
    /// Print the report as JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// Reads a kept checkpoint (a note, or a file holding one) and checks its
/// signature with the verifier.
pub(crate) fn read_trusted_checkpoint(arg: &str, verifier: &NoteVerifier) -> Result<Checkpoint, String> {
    let text = if std::path::Path::new(arg).is_file() {
        std::fs::read_to_string(arg).map_err(|e| format!("cannot read {arg}: {e}"))?
    } else {
        arg.replace("\\n", "\n")
    };
    let text = if text.ends_with('\n') { text } else { format!("{text}\n") };
    verifier.open_checkpoint(&text).map_err(|e| format!("{arg}: {e}"))
}

fn read_public_key(arg: &str) -> Result<NoteVerifier, String> {
    let text = if std::path::Path::new(arg).is_file() {
        std::fs::read_to_string(arg).map_err(|e| format!("cannot read {arg}: {e}"))?
    } else {
        arg.to_owned()
    };
    NoteVerifier::parse(text.trim()).map_err(|e| e.to_string())
}

/// Runs `custos verify`.
pub async fn verify(config: &Config, args: VerifyArgs) -> ExitCode {
    let verifier = match args.public_key.as_deref().map(read_public_key) {
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => return failed("invalid --public-key", &e),
        None => None,
    };
    if let Some(path) = &args.archive {
        let Some(v) = verifier else {
            return failed("verifying an archive", &"--public-key is required");
        };
        return match verify_archive_summary(path, &v) {
            Ok(s) => {
                println!(
                    "archive {} is intact: {} entries verified against its signed checkpoint ({} entries), seq \
                     {}..={}{}; entries digest {} (a retention record's `tombstones` value)",
                    path.display(),
                    s.entries,
                    s.checkpoint_size,
                    s.from_seq,
                    s.through_seq,
                    if s.kept > 0 {
                        format!(", {} positions kept in the ledger given by their hashes", s.kept)
                    } else {
                        String::new()
                    },
                    s.entries_sha256
                );
                ExitCode::SUCCESS
            }
            Err(e @ custos_engine::ledger::purge::ArchiveError::Io(_)) => failed("cannot read the archive", &e),
            Err(e) => {
                println!("archive {} FAILED verification: {e}", path.display());
                ExitCode::from(1)
            }
        };
    }

    let url = args.database.clone().map(SecretString::from).unwrap_or_else(|| config.database_url());
    if let Some(file) = sqlite_path(secrecy::ExposeSecret::expose_secret(&url))
        && !file.is_file()
    {
        return failed("cannot verify", &format!("database file {} does not exist", file.display()));
    }
    let db = match Database::connect(&url, &PoolOptions::default()).await {
        Ok(db) => db,
        Err(e) if custos_engine::storage::is_damaged_database(&e) => return damaged(&e),
        Err(e) => return failed("cannot open the database", &e),
    };
    let keys = if args.with_kek {
        let provider = match crate::kek_provider(config) {
            Ok(p) => p,
            Err(e) => return failed("cannot load the KEK", &e),
        };
        match Keyring::load(&db, provider.as_ref()).await {
            Ok(k) => Some(k),
            Err(e @ custos_engine::ledger::LedgerError::KeyTampered { .. }) => {
                println!("ledger FAILED verification: {e}");
                return ExitCode::from(1);
            }
            Err(e) if custos_engine::storage::is_damaged_database(&e) => return damaged(&e),
            Err(e) => return failed("cannot load the ledger keys", &e),
        }
    } else {
        None
    };
    let verifier = match (verifier, &keys) {
        (Some(v), Some(k)) if v != k.signer().verifier() => {
            println!("ledger FAILED verification: the database's signing key is not the given public key");
            return ExitCode::from(1);
        }
        (Some(v), _) => v,
        (None, Some(k)) => k.signer().verifier(),
        (None, None) => return failed("cannot verify", &"give --public-key (and/or --with-kek)"),
    };

    if let Some(seq) = args.seq {
        let result = verify::verify_entry(&db, &verifier, keys.as_ref(), seq).await;
        let _ = db.close().await;
        let v = match result {
            Ok(v) => v,
            Err(e) => return failed("verification could not run", &e),
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            let yes_no = |b: Option<bool>| match b {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "not checked (no KEK)",
            };
            println!("entry seq {seq}");
            println!("  fields match the leaf hash: {}", yes_no(Some(v.leaf_matches)));
            println!("  MAC valid:                  {}", yes_no(v.mac_valid));
            println!("  payload decrypts:           {}", yes_no(v.decrypts));
            match &v.inclusion {
                Some(i) => println!(
                    "  included in the signed checkpoint of {} entries: {}",
                    i.tree_size,
                    yes_no(Some(i.verified))
                ),
                None => println!("  no signed checkpoint covers this entry yet"),
            }
            println!("entry is {}", if v.is_intact() { "INTACT" } else { "NOT VERIFIED" });
        }
        return if v.is_intact() { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }

    let started = Instant::now();
    let mut last_print = Instant::now();
    let quiet = args.json;
    let progress = move |p: Progress| {
        if !quiet && (last_print.elapsed() >= Duration::from_secs(1) || p.checked == p.total) && p.total > 0 {
            eprintln!(
                "verifying: {}/{} entries ({:.1}%)",
                p.checked,
                p.total,
                p.checked as f64 * 100.0 / p.total as f64
            );
            last_print = Instant::now();
        }
    };
    let mut trusted = Vec::new();
    for arg in &args.trusted_checkpoints {
        match read_trusted_checkpoint(arg, &verifier) {
            Ok(cp) => trusted.push(cp),
            Err(e) => return failed("invalid --trusted-checkpoint", &e),
        }
    }
    let scope = VerifyScope { from_seq: args.from, to_seq: args.to };
    let report = match verify::verify_with(&db, &verifier, keys.as_ref(), scope, &trusted, progress).await {
        Ok(r) => r,
        Err(e) if damaged_ledger(&e) => return damaged(&e),
        Err(e) => return failed("verification could not run", &e),
    };
    let elapsed = started.elapsed();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        let rate = report.entries_checked as f64 / elapsed.as_secs_f64().max(1e-9);
        println!(
            "checked seq {}..={}: {} entries, {} MACs, {} signed checkpoints ({} roots recomputed), {} Merkle nodes, \
             {} kept checkpoints in {:.2?} ({:.0} entries/s)",
            report.from_seq,
            report.to_seq,
            report.entries_checked,
            report.macs_checked,
            report.checkpoints_signed,
            report.checkpoints_matched,
            report.nodes_checked,
            report.trusted_checkpoints,
            elapsed,
            rate
        );
        for p in &report.purges {
            println!(
                "purged by retention: seq {}..={} (signed purge record; anchor seq {}{}; archive {} sha256 {})",
                p.from_seq,
                p.through_seq,
                p.anchor_seq,
                if p.anchor_checked { ", anchor opened with the KEK and matching" } else { "" },
                p.archive_name,
                p.archive_sha256
            );
        }
        for r in &report.removals {
            println!(
                "removed by {}: {} entries in seq {}..={}, replaced by tombstones{} (signed retention record; anchor \
                 seq {}{}; archive {} sha256 {})",
                r.reason,
                r.removed,
                r.from_seq,
                r.through_seq,
                if r.compacted { ", since compacted by a purge" } else { "" },
                r.anchor_seq,
                if r.anchor_checked { ", anchor opened with the KEK and matching" } else { "" },
                r.archive_name,
                r.archive_sha256
            );
        }
        if report.tombstones_checked > 0 {
            println!(
                "{} tombstones followed in the chain (each under a checked retention record)",
                report.tombstones_checked
            );
        }
        match &report.failure {
            None => println!(
                "ledger is INTACT (verified tree size: {})",
                report.verified_tree_size.map_or("none".into(), |s| s.to_string())
            ),
            Some(f) => println!(
                "ledger FAILED verification at seq {}: {}",
                f.seq.map_or("-".into(), |s| s.to_string()),
                f.detail
            ),
        }
    }
    let _ = db.close().await;
    if report.is_intact() { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// Whether a verification error means the ledger's stored state is damaged
/// or gone (a corrupt file, a head or node row that does not decode, the
/// ledger's tables missing), which is a failed verification, not a problem
/// reading it.
fn damaged_ledger(e: &custos_engine::ledger::LedgerError) -> bool {
    let text = e.to_string();
    matches!(e, custos_engine::ledger::LedgerError::Corrupt(_))
        || custos_engine::storage::is_damaged_database(e)
        || text.contains("no such table")
        || (text.contains("relation") && text.contains("does not exist"))
}

/// The database file is damaged below SQL (cut short, overwritten): the
/// ledger fails verification (exit 1), it is not a reading problem.
fn damaged(e: &dyn std::fmt::Display) -> ExitCode {
    println!("ledger FAILED verification: the database file is damaged (cut short or overwritten): {e}");
    ExitCode::from(1)
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    Some(PathBuf::from(path))
}

/// `custos verify-export`: a file checked against its signed manifest.
#[derive(Debug, clap::Args)]
pub struct VerifyExportArgs {
    /// The exported file (CSV, JSON, NDJSON, XLSX or PDF).
    file: PathBuf,
    /// Its manifest (`GET /api/audit/exports/{id}/manifest`).
    manifest: PathBuf,
    /// The ledger's verifier key (`name+hash+key`), or a file containing it.
    /// Without it the manifest's signature is not checked (and the result
    /// says so).
    #[arg(long, alias = "key")]
    public_key: Option<String>,
    /// Print the checks as JSON on standard output.
    #[arg(long)]
    json: bool,
}

/// Runs `custos verify-export`. Exit code 0: the file matches its manifest
/// and the manifest's signature verifies; 1: it does not; 2: could not
/// check (no `--public-key`, unreadable file, malformed manifest, bad key).
pub fn verify_export(args: VerifyExportArgs) -> ExitCode {
    use custos_engine::events::export::{ManifestError, read_manifest, verify_file};
    let key = match args.public_key.as_deref().map(read_public_key) {
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => return failed("invalid --public-key", &e),
        None => None,
    };
    let note = match std::fs::read_to_string(&args.manifest) {
        Ok(n) => n,
        Err(e) => return failed(&format!("cannot read the manifest {}", args.manifest.display()), &e),
    };
    let manifest = match read_manifest(&note, key.as_ref()) {
        Ok(m) => m,
        Err(e @ ManifestError::Signature(_)) => {
            println!("manifest {} FAILED: {e}", args.manifest.display());
            return ExitCode::from(1);
        }
        Err(e) => return failed("cannot read the manifest", &e),
    };
    let mut file = match std::fs::File::open(&args.file) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => return failed(&format!("cannot open {}", args.file.display()), &e),
    };
    let checks = match verify_file(&mut file, &manifest, key.as_ref()) {
        Ok(c) => c,
        Err(e) => return failed(&format!("cannot read {}", args.file.display()), &e),
    };
    let ok = checks.iter().all(|c| c.ok);
    if args.json {
        let list: Vec<_> =
            checks.iter().map(|c| serde_json::json!({ "check": c.what, "ok": c.ok, "detail": c.detail })).collect();
        let out = serde_json::json!({
            "file": args.file.display().to_string(),
            "export_id": manifest.export_id,
            "intact": ok,
            "signature_checked": key.is_some(),
            "checks": list,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for c in &checks {
            println!("{} {:<24} {}", if c.ok { "ok  " } else { "FAIL" }, c.what, c.detail);
        }
        match (ok, key.is_some()) {
            (true, true) => println!(
                "{} matches its manifest: {} rows (seq {}..{}), export {} by {} at {}; manifest signature verified",
                args.file.display(),
                manifest.rows,
                manifest.first_seq.map_or("-".into(), |s| s.to_string()),
                manifest.last_seq.map_or("-".into(), |s| s.to_string()),
                manifest.export_id,
                manifest.generated_by,
                manifest.generated_at
            ),
            (true, false) => println!(
                "{} matches its manifest ({} rows), but the manifest's signature was NOT checked, so nothing is \
                 proven: pass --public-key",
                args.file.display(),
                manifest.rows
            ),
            (false, _) => println!("{} does NOT match its manifest", args.file.display()),
        }
    }
    // Without the key the file only matches an unauthenticated manifest:
    // anyone could have written both. That is not a verification.
    match (ok, key.is_some()) {
        (false, _) => ExitCode::from(1),
        (true, true) => ExitCode::SUCCESS,
        (true, false) => ExitCode::from(2),
    }
}
