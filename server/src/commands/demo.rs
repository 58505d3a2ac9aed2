//! `custos demo seed`: realistic demo and benchmark events, sent through the
//! normal ingest path (validation, masking, sealing, group commit, rollups),
//! as an application would send them. The run itself is recorded in the
//! ledger (`demo.seed`).

use custos_engine::time::DAY_US;
use custos_model::{Channel, Outcome, Severity};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use custos_engine::events::{Events, OwnAction, OwnEvent, Submitter};
use custos_testkit::demo;

use super::{failed, open_cli_ledger};
use crate::config::Config;

/// `custos demo …`.
#[derive(Debug, clap::Subcommand)]
pub enum DemoCommand {
    /// Generate events: several applications, users and services; sign-ins
    /// with failures, MFA and lockouts; admin and policy changes; MCP
    /// requests and connections; tool calls with latencies; plugin status;
    /// infrastructure and network changes; notifications.
    Seed(SeedArgs),
}

/// Arguments of `custos demo seed`.
#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// How many events.
    #[arg(long, default_value_t = 10_000)]
    events: u64,
    /// Spread them over the last DAYS days (ending now).
    #[arg(long, default_value_t = 30)]
    days: u64,
    /// Random seed: the same seed gives the same events (and the same ids,
    /// so a second run with it adds nothing: the ids de-duplicate).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Events per ingest call (at most the ledger's batch size).
    #[arg(long, default_value_t = 1000)]
    batch: u64,
    /// Record them as if Custos had committed them DAYS ago (to try
    /// retention without waiting): only into a ledger holding nothing
    /// recorded after that time.
    #[arg(long, value_name = "DAYS")]
    recorded_days_ago: Option<u64>,
}

/// Runs `custos demo`.
pub async fn demo(config: &Config, command: DemoCommand) -> ExitCode {
    let DemoCommand::Seed(args) = command;
    if args.events == 0 {
        return failed("--events", &"must be at least 1");
    }
    if args.days == 0 || args.days as i64 > config.ingest.max_past_days {
        return failed("--days", &format!("must be from 1 to {} (ingest.max_past_days)", config.ingest.max_past_days));
    }
    let batch = args.batch.clamp(1, config.ledger.max_batch as u64);
    let (ledger, tasks) = match args.recorded_days_ago {
        None => match open_cli_ledger(config).await {
            Ok(l) => l,
            Err(code) => return code,
        },
        Some(days) => match open_in_the_past(config, days).await {
            Ok(l) => l,
            Err(code) => return code,
        },
    };
    let code = match Events::open(ledger.clone(), config.ingest.limits()).await {
        Ok(events) => seed(Arc::new(events), &args, batch).await,
        Err(e) => failed("cannot open the events service", &e),
    };
    let _ = ledger.shutdown(tasks).await;
    code
}

/// The ledger on a clock `days` in the past; refused when the ledger holds
/// an entry recorded after that (commit times never go backwards).
async fn open_in_the_past(
    config: &Config,
    days: u64,
) -> Result<(custos_engine::ledger::Ledger, custos_engine::ledger::LedgerTasks), ExitCode> {
    if !(1..=36_500).contains(&days) {
        return Err(failed("--recorded-days-ago", &"must be from 1 to 36500"));
    }
    let offset = -(days as i64) * DAY_US;
    let db = crate::open_database(config).await.map_err(|e| failed("cannot open the database", &e))?;
    let clock = Arc::new(custos_engine::clock::OffsetClock(offset));
    let (ledger, tasks) = crate::open_ledger_with(config, db, clock, Arc::new(custos_engine::clock::OsRandom))
        .await
        .map_err(|e| failed("cannot open the ledger", &e))?;
    let head = ledger.head().await.map_err(|e| failed("cannot read the ledger", &e))?.seq;
    if head > 0 {
        let newest = ledger.entry(head).await.ok().flatten().map(|e| e.header.recorded_at_us);
        if newest.is_none_or(|t| t > ledger.now_us()) {
            let _ = ledger.shutdown(tasks).await;
            return Err(failed(
                "--recorded-days-ago",
                &format!("the ledger already holds events recorded after {days} days ago: use it on a new ledger"),
            ));
        }
    }
    Ok((ledger, tasks))
}

async fn seed(events: Arc<Events>, args: &SeedArgs, batch: u64) -> ExitCode {
    let end = events.ledger().now_us();
    let span = args.days as i64 * DAY_US;
    let (n, seed) = (args.events, args.seed);
    let set = Arc::new(demo::Demo::new(seed, n, end, span));
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let duplicates = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    eprintln!("seeding {n} events over the last {} days (seed {seed})…", args.days);
    let reporter = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let d = done.load(Ordering::Relaxed);
                let rate = d as f64 / started.elapsed().as_secs_f64().max(1e-9);
                eprintln!("  {d} / {n} ({:.0}%, {rate:.0} events/s)", d as f64 * 100.0 / n as f64);
            }
        })
    };
    // A few ingest calls in flight, so that the sequencer commits full
    // batches while the next ones are generated, validated and sealed.
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (events, next, done, duplicates, set) =
            (events.clone(), next.clone(), done.clone(), duplicates.clone(), set.clone());
        workers.push(tokio::spawn(async move {
            let by = Submitter { principal: "cli:demo".into() };
            loop {
                let first = next.fetch_add(batch, Ordering::Relaxed);
                if first >= n {
                    return Ok::<(), String>(());
                }
                let last = (first + batch).min(n);
                let set = set.clone();
                let items =
                    tokio::task::spawn_blocking(move || (first..last).map(|i| set.event(i)).collect::<Vec<_>>())
                        .await
                        .map_err(|e| e.to_string())?;
                let receipts = events.ingest(&items, None, &by).await.map_err(|e| e.to_string())?;
                let dup = receipts.iter().filter(|r| r.duplicate).count() as u64;
                duplicates.fetch_add(dup, Ordering::Relaxed);
                done.fetch_add(last - first, Ordering::Relaxed);
            }
        }));
    }
    let mut error = None;
    for w in workers {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => error = error.or(Some(e)),
            Err(e) => error = error.or(Some(e.to_string())),
        }
    }
    reporter.abort();
    let secs = started.elapsed().as_secs_f64();
    let (d, dup) = (done.load(Ordering::Relaxed), duplicates.load(Ordering::Relaxed));
    let record = OwnEvent::new(OwnAction::DemoSeed, custos_engine::events::own::cli_operator(), Channel::Cli)
        .outcome(if error.is_none() { Outcome::Success } else { Outcome::Error })
        .severity(Severity::Notice)
        .reason(error.clone())
        .details(serde_json::json!({
            "requested": n, "ingested": d, "duplicates": dup, "days": args.days, "seed": seed, "seconds": secs,
        }));
    if let Err(e) = events.record_own(record).await {
        return failed("cannot record the demo run in the ledger", &e);
    }
    if let Some(e) = error {
        eprintln!("custos: seeding stopped after {d} events: {e}");
        return ExitCode::from(2);
    }
    eprintln!(
        "seeded {d} events in {secs:.1} s ({:.0} events/s){}",
        d as f64 / secs.max(1e-9),
        if dup > 0 { format!("; {dup} were already there (same seed)") } else { String::new() }
    );
    ExitCode::SUCCESS
}
