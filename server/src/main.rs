//! `custos`: the Custos server and its command-line tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use custos_server::commands;
use custos_server::config::Config;

#[derive(Parser)]
#[command(name = "custos", version, about = "Custos: the audit log you can prove")]
struct Cli {
    /// TOML configuration file (settings there are overridden by CUSTOS_* variables).
    #[arg(long, short, global = true, env = "CUSTOS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (applies migrations first).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage keys: the KEK file, data key rotation, the public key.
    Keys {
        #[command(subcommand)]
        command: commands::KeysCommand,
    },
    /// Manage users: create, reset-password, disable, enable.
    User {
        #[command(subcommand)]
        command: commands::UserCommand,
    },
    /// Verify the ledger (or an archive) offline. Exit code 0 intact, 1 tampered, 2 could not verify.
    Verify(commands::VerifyArgs),
    /// Export events (CSV, JSON, NDJSON, XLSX, PDF) to a file with its signed manifest; recorded in the ledger.
    Export(commands::ExportArgs),
    /// Check an exported file against its signed manifest, offline. Exit code 0 matches, 1 does not, 2 could not check.
    VerifyExport(commands::VerifyExportArgs),
    /// Sign a checkpoint of the current ledger head now.
    Checkpoint,
    /// Backups of the SQLite database: create, list, restore (and check) one.
    Backup {
        #[command(subcommand)]
        command: commands::BackupCommand,
    },
    /// Demo data: `custos demo seed --events N` sends realistic events through the ingest path.
    Demo {
        #[command(subcommand)]
        command: commands::DemoCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: commands::BenchCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("custos: {e}");
            return ExitCode::from(2);
        }
    };
    custos_server::telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("custos: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve => commands::serve(&config).await,
            Command::Migrate => commands::migrate(&config).await,
            Command::Keys { command } => commands::keys(&config, command).await,
            Command::User { command } => commands::user(&config, command).await,
            Command::Verify(args) => commands::verify(&config, args).await,
            Command::Checkpoint => commands::checkpoint(&config).await,
            Command::Backup { command } => commands::backup(&config, command).await,
            Command::VerifyExport(args) => commands::verify_export(args),
            Command::Export(args) => commands::export(&config, args).await,
            Command::Bench { command } => commands::bench(&config, command).await,
            Command::Demo { command } => commands::demo(&config, command).await,
        }
    })
}
