//! `custos backup`: take a backup of the embedded SQLite database now,
//! list them, and restore one into a new data directory, checking it
//! (every chunk authenticated under the KEK, `PRAGMA integrity_check`, the
//! whole ledger verified with the KEK, the signed checkpoint in it, and
//! how far it is behind a checkpoint you kept, if you give one).

use std::path::PathBuf;
use std::process::ExitCode;

use custos_engine::backup::{self, Backups};
use custos_engine::events::Events;
use custos_engine::events::own::{Requester, cli_operator};
use custos_engine::ledger::keyring::Keyring;
use custos_engine::ledger::verify::{self, VerifyScope};
use custos_engine::storage::{Database, PoolOptions};
use custos_model::Channel;
use secrecy::SecretString;

use super::{failed, open_cli_ledger};
use crate::config::Config;

/// `custos backup …`.
#[derive(Debug, clap::Subcommand)]
pub enum BackupCommand {
    /// Take a backup now (SQLite; recorded in the ledger). Prints its file.
    Create,
    /// List the backups in the catalogue, newest first.
    List,
    /// Restore a backup into an empty directory and check it. Exit code 0
    /// intact, 1 damaged or failing verification, 2 could not restore.
    Restore(RestoreArgs),
}

/// Arguments of `custos backup restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file (`.cbk`).
    file: PathBuf,
    /// A new or empty directory: the restored database goes to
    /// DIR/custos.db.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// A checkpoint you kept from outside (a signed note, or a file with
    /// one): says how many events the backup is behind it, or proves the
    /// backup holds its tree.
    #[arg(long = "trusted-checkpoint", value_name = "NOTE|FILE")]
    trusted_checkpoint: Option<String>,
}

/// Runs `custos backup`.
pub async fn backup(config: &Config, command: BackupCommand) -> ExitCode {
    match command {
        BackupCommand::Create | BackupCommand::List => catalogue(config, command).await,
        BackupCommand::Restore(args) => restore(config, args).await,
    }
}

fn settings(config: &Config) -> backup::Settings {
    backup::Settings {
        dir: config.backup.dir.clone().unwrap_or_else(|| config.data_dir.join("backups")),
        interval_us: None,
        keep: config.backup.keep,
        remote: config.object_store.remote().ok().flatten().filter(|_| config.object_store.backups),
    }
}

async fn catalogue(config: &Config, command: BackupCommand) -> ExitCode {
    let (ledger, tasks) = match open_cli_ledger(config).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let code = match Events::open(ledger.clone(), config.ingest.limits()).await {
        Err(e) => failed("cannot open the events service", &e),
        Ok(events) => {
            let backups = Backups::new(std::sync::Arc::new(events), "cli", settings(config));
            match command {
                BackupCommand::Create => {
                    let by = Requester::new(cli_operator(), Channel::Cli, None);
                    match backups.create(&by, "manual").await {
                        Ok(b) => {
                            println!(
                                "backup {} written: {} bytes, sha256 {}, ledger head seq {}, signed checkpoint of {} \
                                 entries",
                                b.uri,
                                b.bytes,
                                b.sha256.unwrap_or_default(),
                                b.head_seq.unwrap_or_default(),
                                b.checkpoint_size.unwrap_or_default()
                            );
                            match b.error {
                                // Kept here, but not off this machine: a failure for scripts.
                                Some(e) => {
                                    eprintln!("custos: the backup was {e}");
                                    ExitCode::from(1)
                                }
                                None => ExitCode::SUCCESS,
                            }
                        }
                        Err(e) => failed("backup failed", &e),
                    }
                }
                _ => match backups.list(500).await {
                    Ok(list) => {
                        for b in list {
                            println!(
                                "{}  {}  {}  {} bytes  head {}  {}{}{}",
                                b.started_at,
                                b.state,
                                b.name,
                                b.bytes,
                                b.head_seq.unwrap_or_default(),
                                b.uri,
                                if b.removed_at.is_some() { "  (deleted)" } else { "" },
                                b.error.map(|e| format!("  ({e})")).unwrap_or_default()
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => failed("cannot list the backups", &e),
                },
            }
        }
    };
    let _ = ledger.shutdown(tasks).await;
    code
}

async fn restore(config: &Config, args: RestoreArgs) -> ExitCode {
    let provider = match crate::kek_provider(config) {
        Ok(p) => p,
        Err(e) => return failed("cannot load the KEK (a backup opens only with the KEK it was taken under)", &e),
    };
    let kek = match provider.load() {
        Ok(k) => k,
        Err(e) => return failed("cannot load the KEK", &e),
    };
    let header = match backup::read_header(&args.file) {
        Ok(h) => h,
        Err(e) => return failed("cannot read the backup", &e),
    };
    if let Err(e) = custos_engine::storage::create_private_dir(&args.to) {
        return failed(&format!("cannot create {}", args.to.display()), &e);
    }
    let target = args.to.join("custos.db");
    let partial = args.to.join("custos.db.partial");
    if target.exists() || partial.exists() || args.to.join("custos.db.failed").exists() {
        return failed(
            "cannot restore",
            &format!("{} already holds a database: restore into a new or empty directory", args.to.display()),
        );
    }
    eprintln!(
        "restoring {} (ledger {}, taken {}, head seq {}) into {}…",
        args.file.display(),
        header.origin,
        header.created_at,
        header.head_seq,
        target.display()
    );
    // A kept checkpoint that cannot be read fails before the work.
    if let Some(arg) = &args.trusted_checkpoint
        && !std::path::Path::new(arg).is_file()
        && !arg.contains('\n')
        && !arg.contains("\\n")
    {
        return failed("invalid --trusted-checkpoint", &format!("{arg}: neither a file nor a signed note"));
    }
    let (src, dst) = (args.file.clone(), partial.clone());
    let decrypted = tokio::task::spawn_blocking(move || backup::decrypt(&src, &dst, &kek)).await;
    match decrypted {
        Ok(Ok(_)) => {}
        Ok(Err(e @ backup::BackupError::Auth(_))) => {
            println!("backup FAILED: {e}");
            return ExitCode::from(1);
        }
        Ok(Err(e)) => return failed("cannot decrypt the backup", &e),
        Err(e) => return failed("cannot decrypt the backup", &e),
    }
    println!("every chunk authenticated under the KEK");
    // Checked where it lies; moved into place only when intact, so a
    // server started on the directory never finds a restore that failed.
    let code = check_restored(&partial, provider.as_ref(), &header, &args).await;
    if code == ExitCode::SUCCESS {
        if let Err(e) = std::fs::rename(&partial, &target) {
            return failed("cannot move the restored database into place", &e);
        }
        println!("restored backup is INTACT: {}", target.display());
        println!(
            "to run it: copy the KEK file ({}) next to it or point ledger.kek_file at it, then `CUSTOS_DATA_DIR={} \
             custos serve`",
            config.kek_file().display(),
            args.to.display()
        );
    } else {
        let kept = args.to.join("custos.db.failed");
        if std::fs::rename(&partial, &kept).is_ok() {
            eprintln!("the restored copy that failed is kept for inspection as {}", kept.display());
        }
    }
    code
}

/// Checks a decrypted database: integrity, keys under the KEK, the whole
/// ledger verified, the header's checkpoint, a kept checkpoint.
async fn check_restored(
    file: &std::path::Path,
    provider: &dyn custos_engine::keys::KekProvider,
    header: &backup::BackupHeader,
    args: &RestoreArgs,
) -> ExitCode {
    if let Err(found) = backup::sqlite_integrity(file) {
        println!("backup FAILED: the database's integrity check found: {found}");
        return ExitCode::from(1);
    }
    println!("database integrity check: ok");

    let url = SecretString::from(format!("sqlite://{}?mode=rw", file.display()));
    let db = match Database::connect(&url, &PoolOptions::default()).await {
        Ok(db) => db,
        Err(e) => return failed("cannot open the restored database", &e),
    };
    if let Err(e) = db.migrate().await {
        return failed("cannot bring the restored database to this version's schema", &e);
    }
    let keys = match Keyring::load(&db, provider).await {
        Ok(k) => k,
        Err(e) => {
            println!("backup FAILED: its ledger keys do not open under this KEK: {e}");
            return ExitCode::from(1);
        }
    };
    let verifier = keys.signer().verifier();
    if let Some(note) = &header.checkpoint
        && verifier.open_checkpoint(note).is_err()
    {
        println!("backup FAILED: the checkpoint in its header is not signed by the ledger's key");
        return ExitCode::from(1);
    }
    let trusted = match &args.trusted_checkpoint {
        None => None,
        Some(arg) => match super::verify::read_trusted_checkpoint(arg, &verifier) {
            Ok(cp) => Some(cp),
            Err(e) => return failed("invalid --trusted-checkpoint", &e),
        },
    };
    let head = match custos_engine::ledger::store::read_head(db.conn()).await {
        Ok(h) => h.seq,
        Err(e) => return failed("cannot read the restored ledger", &e),
    };
    // A kept checkpoint beyond the backup cannot be proven from it: the
    // backup is behind by that much.
    let provable: Vec<_> = trusted.iter().filter(|t| t.tree_size <= head).cloned().collect();
    let report = match verify::verify_with(&db, &verifier, Some(&keys), VerifyScope::default(), &provable, |_| {}).await
    {
        Ok(r) => r,
        Err(e) => return failed("verification could not run", &e),
    };
    let _ = db.close().await;
    println!(
        "ledger verified with the KEK: {} entries, {} tombstones, {} MACs, {} signed checkpoints, head seq {head}",
        report.entries_checked, report.tombstones_checked, report.macs_checked, report.checkpoints_signed
    );
    if let Some(f) = &report.failure {
        println!("backup FAILED verification at seq {}: {}", f.seq.map_or("-".into(), |s| s.to_string()), f.detail);
        return ExitCode::from(1);
    }
    if let Some(t) = &trusted {
        if t.tree_size > head {
            println!(
                "the backup is {} events behind the checkpoint you gave ({} entries): they were recorded after it",
                t.tree_size - head,
                t.tree_size
            );
        } else {
            println!("the checkpoint you gave ({} entries) is proven: the backup holds its tree", t.tree_size);
        }
    }
    ExitCode::SUCCESS
}
