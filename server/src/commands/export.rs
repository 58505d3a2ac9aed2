//! `custos export`: the export of `GET /api/audit/export`, from the command
//! line (with the KEK, on the server's machine): the file, its signed
//! manifest next to it, and the export recorded in the ledger.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use custos_engine::events::SearchFilter;
use custos_engine::events::export::{ExportFormat, ExportProgress, ExportSpec, export_filter, jobs, manifest_note};

use super::{failed, open_cli_ledger};
use crate::config::Config;

/// Arguments of `custos export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// csv, json, ndjson, xlsx or pdf.
    #[arg(long)]
    format: String,
    /// Where to write the file; its signed manifest goes to FILE.manifest.
    #[arg(long)]
    out: PathBuf,
    /// A search filter as NAME=VALUE (the parameters of GET /api/audit),
    /// repeatable: --filter tenant=acme --filter from=2026-11-01T00:00:00Z
    #[arg(long = "filter", value_name = "NAME=VALUE")]
    filters: Vec<String>,
    /// Print the peak resident memory of this process at the end (Linux).
    #[arg(long)]
    stats: bool,
}

/// Runs `custos export`.
pub async fn export(config: &Config, args: ExportArgs) -> ExitCode {
    let Some(format) = ExportFormat::parse(&args.format) else {
        return failed("--format", &"must be csv, json, ndjson, xlsx or pdf");
    };
    let mut pairs = Vec::new();
    for f in &args.filters {
        match f.split_once('=') {
            Some((k, v)) => pairs.push((k.trim().to_owned(), v.to_owned())),
            None => return failed("--filter", &format!("{f:?} is not NAME=VALUE")),
        }
    }
    let filter = match export_filter(&pairs) {
        Ok(f) => f,
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.path, e.reason)).collect();
            return failed("--filter", &list.join("; "));
        }
    };
    let (ledger, tasks) = match open_cli_ledger(config).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let code = run(&ledger, config, args, format, filter, pairs).await;
    let _ = ledger.shutdown(tasks).await;
    code
}

async fn run(
    ledger: &custos_engine::ledger::Ledger,
    config: &Config,
    args: ExportArgs,
    format: ExportFormat,
    filter: SearchFilter,
    pairs: Vec<(String, String)>,
) -> ExitCode {
    let events = match custos_engine::events::Events::open(ledger.clone(), config.ingest.limits()).await {
        Ok(e) => e,
        Err(e) => return failed("cannot open the events service", &e),
    };
    let who = custos_engine::events::Requester::cli();
    let spec =
        ExportSpec { id: uuid::Uuid::now_v7(), format, filter, filters: pairs, generated_by: who.actor.id.clone() };
    let started = Instant::now();
    let prepared = match events.prepare_export(spec).await {
        Ok(p) => p,
        Err(e) => return failed("cannot start the export", &e),
    };
    let total = prepared.total();
    let id = prepared.spec().id;
    let out = args.out.clone();
    let progress = std::sync::Arc::new(ExportProgress::default());
    let reporter = {
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                let rows = progress.rows.load(std::sync::atomic::Ordering::Relaxed);
                match total {
                    Some(t) if t > 0 => eprintln!("  {rows} / {t} rows ({:.0}%)", rows as f64 * 100.0 / t as f64),
                    _ => eprintln!("  {rows} rows"),
                }
            }
        })
    };
    let worker = progress.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let mut file = custos_engine::storage::create_private_file(&out)
            .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
        let m = prepared.run(&custos_export::Formats::default(), &mut file, &worker).map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        Ok(m)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    reporter.abort();
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&args.out);
            return failed("the export failed", &e);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let mpath = PathBuf::from(format!("{}.manifest", args.out.display()));
    if let Err(e) = std::fs::write(&mpath, manifest_note(&manifest, ledger.keys().signer())) {
        return failed(&format!("cannot write {}", mpath.display()), &e);
    }
    if let Err(e) = jobs::record(&events, id, format, &who, &Ok(manifest.clone())).await {
        let _ = std::fs::remove_file(&args.out);
        let _ = std::fs::remove_file(&mpath);
        return failed("the export could not be recorded in the ledger; its file was removed", &e);
    }
    println!(
        "exported {} rows ({} bytes) to {} in {secs:.2} s; manifest {} (sha256 {})",
        manifest.rows,
        manifest.bytes,
        args.out.display(),
        mpath.display(),
        manifest.sha256
    );
    if args.stats {
        println!("peak_rss_kib {}", peak_rss_kib().unwrap_or(0));
        println!("export_seconds {secs:.3}");
    }
    ExitCode::SUCCESS
}

/// This process's peak resident set (VmHWM), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
