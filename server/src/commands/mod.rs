//! The CLI's commands. Each returns the process exit code.

mod backup;
mod bench;
mod bench_alerts;
mod bench_dashboards;
mod bench_forward;
pub mod bench_report;
mod bench_search;
mod demo;
mod export;
mod keys;
mod user;
mod verify;

use std::process::ExitCode;

pub use backup::{BackupCommand, backup};
pub use bench::{BenchCommand, bench, sample_event};
pub use demo::{DemoCommand, demo};
pub use export::{ExportArgs, export};
pub use keys::{KeysCommand, keys};
pub use user::{UserCommand, user};
pub use verify::{VerifyArgs, VerifyExportArgs, verify, verify_export};

use crate::config::Config;

/// Prints an error for people and returns exit code 2 ("could not").
pub(crate) fn failed(context: &str, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("custos: {context}: {e}");
    ExitCode::from(2)
}

/// `custos serve`.
pub async fn serve(config: &Config) -> ExitCode {
    let running = match crate::start(config).await {
        Ok(r) => r,
        Err(e) => return failed("cannot start", &e),
    };
    tracing::info!(addr = %running.addr, "Custos is listening on http://{}", running.addr);
    crate::shutdown_signal().await;
    tracing::info!("shutdown requested");
    match running.shutdown().await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => failed("shutdown", &e),
    }
}

/// `custos migrate`.
pub async fn migrate(config: &Config) -> ExitCode {
    match crate::open_database(config).await {
        Ok(db) => {
            println!("migrations applied ({} database)", db.kind().as_str());
            let _ = db.close().await;
            ExitCode::SUCCESS
        }
        Err(e) => failed("migration failed", &e),
    }
}

/// Opens the configured database and ledger for a command, or reports why not.
pub(crate) async fn open_cli_ledger(
    config: &Config,
) -> Result<(custos_engine::ledger::Ledger, custos_engine::ledger::LedgerTasks), ExitCode> {
    let db = crate::open_database(config).await.map_err(|e| failed("cannot open the database", &e))?;
    crate::open_ledger(config, db).await.map_err(|e| failed("cannot open the ledger", &e))
}

/// `custos checkpoint`.
pub async fn checkpoint(config: &Config) -> ExitCode {
    let (ledger, tasks) = match open_cli_ledger(config).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let result = ledger.checkpoint_now().await;
    let _ = ledger.shutdown(tasks).await;
    match result {
        Ok(Some(cp)) => {
            print!("{}", cp.note);
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("the ledger is empty: nothing to sign");
            ExitCode::SUCCESS
        }
        Err(e) => failed("cannot sign a checkpoint", &e),
    }
}
