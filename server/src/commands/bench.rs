//! `custos bench ingest`: pushes N realistic events (300-600 byte payloads)
//! through the sequencer into a fresh database, and measures, in the same
//! run, the baseline: plain inserts of rows of the same size (SQLite:
//! multi-row inserts through the ledger's prepared statement; PostgreSQL:
//! binary `COPY`, as the ledger commits), in transactions of the same batch
//! size, with no crypto, no rollups and no sequencer.
//! Then verifies the whole ledger (MACs included) and compares that with a
//! plain read of the baseline rows.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Subcommand;
use custos_engine::clock::{OsRandom, RandomSource as _, SystemClock};
use custos_engine::keys::{KekError, KekProvider};
use custos_engine::ledger::crypto::Kek;
use custos_engine::ledger::keyring::Keyring;
use custos_engine::ledger::types::StoredEntry;
use custos_engine::ledger::verify::{self, VerifyScope};
use custos_engine::ledger::{Ledger, LedgerConfig, NewEntry, pg_direct, sqlite_direct, store};
use custos_engine::storage::{Database, PoolOptions};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::failed;
use crate::config::Config;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Ingest N events through the sequencer; compare with plain inserts; verify.
    Ingest(IngestArgs),
    /// Time each dashboard query on this data directory's ledger (seed it with `custos demo seed`).
    Dashboards(super::bench_dashboards::DashboardsArgs),
    /// Ingest with and without 50 alert rules; commit → alert stored and → webhook delivered.
    Alerts(super::bench_alerts::AlertsArgs),
    /// SIEM forwarding: ingest, catch-up of a backlog over syslog/TLS and HEC, commit → received.
    Forward(super::bench_forward::ForwardArgs),
    /// First-page searches over HTTP on this data directory's ledger (seed it with `custos demo seed`), next to their SQL alone.
    Search(super::bench_search::SearchArgs),
}

/// Arguments of `custos bench ingest`.
#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Events to ingest.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Most events per commit (the baseline uses the same transaction size).
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Events per append request (one client call).
    #[arg(long, default_value_t = 100)]
    request_size: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Directory for the SQLite files (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Use this (empty) database instead of a SQLite file, e.g. postgres://…
    #[arg(long)]
    database: Option<String>,
    /// Baseline database when --database is given (an empty one).
    #[arg(long)]
    baseline_database: Option<String>,
    /// Append "seq event_id" for every acknowledged event to this file (crash tests).
    #[arg(long)]
    acks: Option<PathBuf>,
    /// Skip the baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Generate events while ingesting instead of beforehand (long or crash runs;
    /// generation cost is then included, so it implies --no-baseline).
    #[arg(long)]
    stream: bool,
    /// Append to a database that already holds entries (several processes on one database).
    #[arg(long)]
    existing_ok: bool,
    /// Start sending at this time (Unix milliseconds), once ready: several
    /// processes on one database start together (scripts/replicas-bench.py).
    #[arg(long)]
    start_at_ms: Option<i64>,
    /// Skip the verification pass.
    #[arg(long)]
    no_verify: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// A throw-away KEK for benchmark databases.
#[derive(Debug)]
struct EphemeralKek(Zeroizing<[u8; 32]>);

impl KekProvider for EphemeralKek {
    fn describe(&self) -> String {
        "ephemeral benchmark key".into()
    }
    fn load(&self) -> Result<Kek, KekError> {
        Ok(Kek::from_bytes(&self.0))
    }
}

/// Runs a benchmark.
pub async fn bench(config: &Config, cmd: BenchCommand) -> ExitCode {
    match cmd {
        BenchCommand::Ingest(args) => match ingest(config, args).await {
            Ok(code) => code,
            Err(e) => failed("benchmark failed", &e),
        },
        BenchCommand::Dashboards(args) => super::bench_dashboards::dashboards(config, args).await,
        BenchCommand::Alerts(args) => super::bench_alerts::alerts(args).await,
        BenchCommand::Forward(args) => super::bench_forward::forward(args).await,
        BenchCommand::Search(args) => super::bench_search::search(config, args).await,
    }
}

/// A realistic event; its payload is 300-600 bytes (the test kit's).
pub fn sample_event(i: u64) -> NewEntry {
    NewEntry { occurred_at_us: chrono::Utc::now().timestamp_micros(), ..custos_testkit::events::entry(i) }
}

async fn fresh_db(url: &str, existing_ok: bool) -> Result<Database, String> {
    let db = Database::connect(&SecretString::from(url.to_owned()), &PoolOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    let head = store::read_head(db.conn()).await.map_err(|e| e.to_string())?;
    if head.seq != 0 && !existing_ok {
        return Err(format!("{url}: the database is not empty"));
    }
    Ok(db)
}

#[derive(serde::Serialize)]
struct Results {
    /// PostgreSQL without fsync (a test cluster).
    fsync_off: bool,
    events: u64,
    batch: usize,
    database: String,
    ingest_events_per_sec: f64,
    ingest_secs: f64,
    baseline_inserts_per_sec: Option<f64>,
    ingest_vs_baseline: Option<f64>,
    verify_events_per_sec: Option<f64>,
    baseline_reads_per_sec: Option<f64>,
    verify_vs_baseline: Option<f64>,
}

async fn ingest(config: &Config, args: IngestArgs) -> Result<ExitCode, String> {
    let tmp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let url = args.database.clone().unwrap_or_else(|| format!("sqlite://{}/custos-bench.db", dir.display()));
    let baseline_url = match (&args.database, &args.baseline_database) {
        (_, Some(b)) => Some(b.clone()),
        (None, None) => Some(format!("sqlite://{}/baseline-bench.db", dir.display())),
        (Some(_), None) => None,
    };
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    let events: Vec<NewEntry> = if args.stream {
        Vec::new()
    } else {
        say(format!("generating {} events (payloads 300-600 bytes)…", args.events));
        (0..args.events).map(sample_event).collect()
    };

    // Baseline: the same rows without crypto, the same insert path and batch size.
    let baseline = if args.no_baseline || args.stream { None } else { baseline_url.as_deref() };
    let mut baseline_rate = None;
    let mut baseline_read_rate = None;
    if let Some(burl) = baseline {
        let db = fresh_db(burl, false).await?;
        let rows: Vec<StoredEntry> =
            events.iter().enumerate().map(|(i, e)| super::bench_report::plain_row(i as u64 + 1, e)).collect();
        say(format!("baseline: plain inserts into {} …", redact(burl)));
        let started = Instant::now();
        match db.sqlite_file() {
            // SQLite: the ledger's own direct path, minus crypto and sequencer.
            Some(path) => {
                // The same connection set-up as the sequencer's, and the same background checkpoints.
                let mut conn = sqlite_direct::open_writer(path, db.busy_timeout()).map_err(|e| e.to_string())?;
                let wal = sqlite_direct::Checkpointer::start(path, db.busy_timeout()).map_err(|e| e.to_string())?;
                for chunk in rows.chunks(args.batch) {
                    let tx = conn
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .map_err(|e| e.to_string())?;
                    sqlite_direct::insert_entries(&tx, chunk).map_err(|e| e.to_string())?;
                    tx.commit().map_err(|e| e.to_string())?;
                }
                wal.stop();
            }
            // PostgreSQL: binary COPY of each batch, as the ledger commits.
            None => {
                let pool = db.conn().get_postgres_connection_pool();
                for chunk in rows.chunks(args.batch) {
                    let mut txn = pool.begin().await.map_err(|e| e.to_string())?;
                    pg_direct::insert_entries(&mut txn, chunk).await.map_err(|e| e.to_string())?;
                    txn.commit().await.map_err(|e| e.to_string())?;
                }
            }
        }
        let rate = args.events as f64 / started.elapsed().as_secs_f64();
        say(format!("baseline: {rate:.0} rows/s"));
        baseline_rate = Some(rate);
        if !args.no_verify {
            let started = Instant::now();
            let mut n = 0u64;
            match db.sqlite_file() {
                Some(path) => {
                    let conn = sqlite_direct::open(path, db.busy_timeout()).map_err(|e| e.to_string())?;
                    sqlite_direct::scan_raw(&conn, 1, args.events, 4096, |page| {
                        n += page.len() as u64;
                        true
                    })
                    .map_err(|e| e.to_string())?;
                }
                None => {
                    let mut conn =
                        db.conn().get_postgres_connection_pool().acquire().await.map_err(|e| e.to_string())?;
                    let (mut next, mut data) = (1, Vec::new());
                    while next <= args.events {
                        // Page-wide ranges by binary COPY, as the verifier
                        // reads (a range to the end is planned from stale
                        // statistics right after the inserts: a sort of the
                        // rest per page).
                        let hi = (next + 4095).min(args.events);
                        let page = pg_direct::copy_entries_raw(&mut conn, next, hi, &mut data)
                            .await
                            .map_err(|e| e.to_string())?;
                        n += page.len() as u64;
                        next += 4096;
                    }
                }
            }
            let rate = n as f64 / started.elapsed().as_secs_f64();
            say(format!("baseline: plain reads {rate:.0} rows/s"));
            baseline_read_rate = Some(rate);
        }
        let _ = db.close().await;
    }

    // Custos: the sequencer, sealed, chained, fsynced.
    let db = fresh_db(&url, args.existing_ok).await?;
    // The configured KEK when there is one (so the database can be reopened,
    // as the crash test does), else a throw-away key.
    let kek: Box<dyn KekProvider> = match crate::kek_provider(config) {
        Ok(k) => k,
        Err(_) => {
            let mut raw = Zeroizing::new([0u8; 32]);
            OsRandom.fill(raw.as_mut_slice()).map_err(|e| e.to_string())?;
            Box::new(EphemeralKek(raw))
        }
    };
    let cfg = LedgerConfig {
        origin: "custos.bench/ledger".into(),
        max_batch: args.batch,
        queue_depth: args.concurrency * 2,
        checkpoint_interval: Duration::from_secs(5),
        // A benchmark measures; it does not give up on a slow commit.
        commit_timeout: Duration::from_secs(600),
        ..LedgerConfig::default()
    };
    let (ledger, tasks) = Ledger::open(db.clone(), kek.as_ref(), cfg, Arc::new(SystemClock), Arc::new(OsRandom))
        .await
        .map_err(|e| e.to_string())?;
    let acks = match &args.acks {
        Some(p) => Some(Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("{}: {e}", p.display()))?,
        ))),
        None => None,
    };
    say(format!("custos: {} events through the sequencer into {} …", args.events, redact(&url)));
    let streamed = args.stream.then(|| Arc::new(std::sync::atomic::AtomicU64::new(0)));
    let total = args.events;
    let queue: Arc<Mutex<std::vec::IntoIter<NewEntry>>> = Arc::new(Mutex::new(events.into_iter()));
    if let Some(at) = args.start_at_ms {
        let wait = at - chrono::Utc::now().timestamp_millis();
        if wait < 0 {
            return Err(format!("--start-at-ms is {} ms past: the events took longer to prepare", -wait));
        }
        tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
    }
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let ledger = ledger.clone();
        let queue = queue.clone();
        let acks = acks.clone();
        let size = args.request_size.clamp(1, args.batch);
        let streamed = streamed.clone();
        clients.push(tokio::spawn(async move {
            loop {
                let req: Vec<NewEntry> = match &streamed {
                    Some(next) => {
                        let start = next.fetch_add(size as u64, std::sync::atomic::Ordering::Relaxed);
                        (start..(start + size as u64).min(total)).map(sample_event).collect()
                    }
                    None => {
                        let mut q = queue.lock().unwrap_or_else(|p| p.into_inner());
                        q.by_ref().take(size).collect()
                    }
                };
                if req.is_empty() {
                    return Ok::<_, String>(());
                }
                let receipts = ledger.append(req).await.map_err(|e| e.to_string())?;
                if let Some(acks) = &acks {
                    let mut text = String::with_capacity(receipts.len() * 50);
                    for r in &receipts {
                        text.push_str(&format!("{} {}\n", r.seq, r.event_id));
                    }
                    let mut f = acks.lock().unwrap_or_else(|p| p.into_inner());
                    f.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
                }
            }
        }));
    }
    for c in clients {
        c.await.map_err(|e| e.to_string())??;
    }
    let elapsed = started.elapsed();
    let rate = args.events as f64 / elapsed.as_secs_f64();
    say(format!("custos: {rate:.0} events/s ({:.2?})", elapsed));

    // Verify the settled ledger, as an auditor would (and as the baseline
    // scan reads it): after shutdown's final checkpoint, with a fresh key ring.
    let verifier = ledger.verifier();
    ledger.shutdown(tasks).await.map_err(|e| e.to_string())?;
    drop(ledger);
    let mut verify_rate = None;
    if !args.no_verify {
        let keys = Keyring::load(&db, kek.as_ref()).await.map_err(|e| e.to_string())?;
        let started = Instant::now();
        let report = verify::verify(&db, &verifier, Some(&keys), VerifyScope::default(), |_| {})
            .await
            .map_err(|e| e.to_string())?;
        if !report.is_intact() {
            return Err(format!("verification failed: {:?}", report.failure));
        }
        let rate = report.entries_checked as f64 / started.elapsed().as_secs_f64();
        say(format!("custos: full verification (leaves, chain, MACs, padding, roots) {rate:.0} events/s"));
        verify_rate = Some(rate);
    }

    // PostgreSQL's fsync setting, said in the rows (a test cluster runs without).
    let fsync_off = match db.kind() {
        custos_engine::storage::DbKind::Postgres => {
            use sea_orm::ConnectionTrait as _;
            let row = db
                .conn()
                .query_one_raw(sea_orm::Statement::from_string(db.conn().get_database_backend(), "SHOW fsync"))
                .await;
            matches!(row, Ok(Some(r)) if r.try_get::<String>("", "fsync").is_ok_and(|v| v == "off"))
        }
        _ => false,
    };
    let results = Results {
        fsync_off,
        events: args.events,
        batch: args.batch,
        database: db.kind().as_str().into(),
        ingest_events_per_sec: rate,
        ingest_secs: elapsed.as_secs_f64(),
        baseline_inserts_per_sec: baseline_rate,
        ingest_vs_baseline: baseline_rate.map(|b| rate / b),
        verify_events_per_sec: verify_rate,
        baseline_reads_per_sec: baseline_read_rate,
        verify_vs_baseline: verify_rate.zip(baseline_read_rate).map(|(v, b)| v / b),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results).unwrap_or_default());
    } else {
        println!("events                 {}", results.events);
        println!("database               {}", results.database);
        println!("ingest (sealed, fsync) {:>10.0} events/s", results.ingest_events_per_sec);
        if let (Some(b), Some(r)) = (results.baseline_inserts_per_sec, results.ingest_vs_baseline) {
            println!("baseline plain inserts {b:>10.0} rows/s   -> custos = {r:.2} x baseline");
        }
        if let Some(v) = results.verify_events_per_sec {
            println!("full verification      {v:>10.0} events/s");
        }
        if let (Some(b), Some(r)) = (results.baseline_reads_per_sec, results.verify_vs_baseline) {
            println!("baseline plain reads   {b:>10.0} rows/s   -> verify = {r:.2} x baseline");
        }
    }
    report(&results);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(ExitCode::SUCCESS)
}

/// Rows for `make bench`'s table, held to the performance issue's aims.
fn report(r: &Results) {
    use super::bench_report::{Aim, Row};
    let pg = r.database != "sqlite";
    let name = match (pg, r.fsync_off) {
        (true, true) => "PostgreSQL (fsync off)",
        (true, false) => "PostgreSQL",
        _ => "SQLite",
    };
    let n = r.events;
    let row = Row::new(format!("{name} ingest, sealed ({n} events)"), r.ingest_events_per_sec, "events/s");
    match r.baseline_inserts_per_sec {
        Some(b) => row.baseline("plain inserts of the same rows", b),
        None => row,
    }
    .aim(Aim::RatioAtLeast { value: if pg { 0.8 } else { 0.9 } })
    .record();
    Row::new(format!("{name} ingest, sealed ({n} events), absolute"), r.ingest_events_per_sec, "events/s")
        .aim(Aim::AtLeast { value: if pg { 100_000.0 } else { 150_000.0 } })
        .record();
    if let Some(v) = r.verify_events_per_sec {
        let row = Row::new(format!("{name} full verification, with MACs ({n} events)"), v, "events/s");
        match r.baseline_reads_per_sec {
            Some(b) => row.baseline("a plain read of the same rows", b),
            None => row,
        }
        .aim(Aim::AtLeast { value: if pg { 300_000.0 } else { 1_000_000.0 } })
        .record();
    }
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("custos-bench-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn redact(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) if url.starts_with("postgres") => {
            format!("{}://…@{host}", scheme_user.split("://").next().unwrap_or("postgres"))
        }
        _ => url.to_owned(),
    }
}
