//! The API benchmark: a real server on port 0 over HTTP, like a client.
//!
//! 1. The sequencer's own figure (baseline): a second fresh server's ledger
//!    takes the same number of events as pre-built entries of the same size,
//!    in appends of `--batch`, from `--clients` tasks: no HTTP, no JSON, no
//!    validation, no masking.
//! 2. Ingest over HTTP: `--clients` clients POST pre-serialised batches of
//!    `--batch` events to `/api/audit/events` with an API key.
//! 3. Single-event ingest at a fixed rate: one event per request, at 1,000
//!    and 5,000 requests/s for `--single-secs` seconds each, over keep-alive
//!    connections (open loop: each request's latency counts from when it
//!    was due, so a server falling behind shows); baseline on SQLite: the
//!    storage's floor, commits of the entries' rows alone (no Merkle nodes,
//!    head or counts; no HTTP, crypto or sequencer) of the same size, at
//!    the same rate, grouped as the ledger groups them, into the sequencer
//!    baseline's database (the same schema, about the same size, the same
//!    disk, fsynced as the ledger's); on PostgreSQL `GET /healthz` on the
//!    same server at the same rates, also shown on SQLite for reference. Also the ledger
//!    entries each event cost (its own entry, plus the self-audit's).
//!    The 1,000/s phase follows a settle (`--settle-secs`, 3 by default):
//!    the bulk phase's WAL checkpointed, its held dashboard counts written,
//!    N s of quiet, so that it measures a server in its steady state, not
//!    the aftermath of 100,000 events in two seconds; `--settle-secs 0`
//!    measures that aftermath (docs/performance.md has both). The phases'
//!    stalls (requests answered over 20 ms after they were due) are listed
//!    by when they began.
//! 4. Search: `--queries` first-page searches (limit 50) over HTTP, each a
//!    random one-day window plus one other filter (action, actor, outcome or
//!    tenant): p50 and p95. Baseline: the same SQL statement run directly on
//!    the database (rows only: no decryption, no HTTP, no self-audit record).
//!
//! `cargo bench -p custos-server --bench api -- --events 1000000`

use std::sync::Arc;
use std::time::{Duration, Instant};

use custos_engine::clock::OsRandom;
use custos_engine::events::SearchFilter;
use custos_engine::identity::apikey::Scope;
use custos_engine::identity::service::Acting;
use custos_engine::keys::FileKek;
use custos_engine::ledger::NewEntry;
use custos_engine::ledger::types::{HeaderFields, StoredEntry};
use custos_server::commands::bench_report::{Aim, Row, plain_row};
use custos_server::config::Config;
use sea_orm::ConnectionTrait as _;
use secrecy::ExposeSecret as _;

struct Args {
    events: usize,
    batch: usize,
    clients: usize,
    queries: usize,
    /// Seconds per rate of the single-event phase (0: skipped).
    single_secs: usize,
    /// Before the single-event phase: copy the WAL into the database
    /// (SQLite) and wait this many seconds, so the phase does not share the
    /// machine with what follows the bulk phase (0: at once).
    settle_secs: usize,
    /// A PostgreSQL server (admin URL): fresh databases are created on it.
    postgres: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        events: 1_000_000,
        batch: 1000,
        clients: 4,
        queries: 400,
        single_secs: 5,
        settle_secs: 3,
        postgres: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match (argv[i].as_str(), value) {
            ("--events", Some(v)) => a.events = v,
            ("--batch", Some(v)) => a.batch = v,
            ("--clients", Some(v)) => a.clients = v,
            ("--queries", Some(v)) => a.queries = v,
            ("--single-secs", Some(v)) => a.single_secs = v,
            ("--settle-secs", Some(v)) => a.settle_secs = v,
            ("--postgres", _) if i + 1 < argv.len() => a.postgres = Some(argv[i + 1].clone()),
            ("--bench", _) => {
                i += 1;
                continue;
            }
            (other, _) => {
                eprintln!(
                    "unknown or incomplete argument `{other}`; use --events N --batch N --clients N --queries N --single-secs N --settle-secs N"
                );
                std::process::exit(2);
            }
        }
        i += 2;
    }
    a
}

const ACTIONS: [&str; 24] = [
    "user.login",
    "user.logout",
    "user.password.change",
    "user.mfa.enrol",
    "policy.update",
    "policy.read",
    "role.assign",
    "role.revoke",
    "document.read",
    "document.update",
    "document.delete",
    "document.share",
    "mcp.request",
    "mcp.connect",
    "tool.invoke",
    "tool.result",
    "config.change",
    "network.rule.add",
    "network.rule.remove",
    "infra.vm.start",
    "infra.vm.stop",
    "notification.send",
    "export.create",
    "api_key.create",
];
const CATEGORIES: [&str; 24] = [
    "authentication",
    "authentication",
    "authentication",
    "authentication",
    "policy",
    "policy",
    "authorization",
    "authorization",
    "data_access",
    "data_access",
    "data_access",
    "data_access",
    "mcp",
    "mcp",
    "tool",
    "tool",
    "configuration",
    "network",
    "network",
    "infrastructure",
    "infrastructure",
    "notification",
    "data_access",
    "admin",
];
const OUTCOMES: [&str; 8] = ["success", "success", "success", "success", "success", "failure", "denied", "error"];
const ACTORS: usize = 2000;
const TENANTS: usize = 20;
const SPAN_US: i64 = 30 * custos_engine::time::DAY_US;
use custos_engine::time::rfc3339;

/// Event i of n: times in order over the last 30 days (with jitter), as
/// events arrive in real life.
fn event(i: usize, n: usize, start_us: i64, rng: &mut custos_testkit::Rng) -> serde_json::Value {
    let a = rng.usize(..ACTIONS.len());
    let t = start_us + (i as i64) * (SPAN_US / n as i64) + (rng.i64(0..60_000_000) - 30_000_000);
    serde_json::json!({
        "occurred_at": rfc3339(t),
        "category": CATEGORIES[a],
        "action": ACTIONS[a],
        "outcome": OUTCOMES[rng.usize(..OUTCOMES.len())],
        "severity": "info",
        "actor": {"id": format!("u-{}", rng.usize(..ACTORS)), "kind": "user", "name": "Bench User"},
        "resource": {"type": "document", "id": format!("doc-{}", rng.usize(..100_000))},
        "tenant": format!("tenant-{}", rng.usize(..TENANTS)),
        "source": {"application": "bench", "host": "app-01", "channel": "api"},
        "correlation": {"request_id": format!("req-{i}")},
        "details": {"path": "/v1/documents", "bytes": rng.usize(..1_000_000), "note": "routine operation by the bench"}
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A server on a fresh database, and that database's URL.
async fn start(dir: &std::path::Path, postgres: Option<&str>) -> (custos_server::Running, String) {
    let mut config = Config::for_test(dir);
    config.log.filter = "warn".into();
    if let Some(admin) = postgres {
        let name = format!("custos_bench_{}", uuid::Uuid::now_v7().simple());
        let url = custos_engine::storage::create_postgres_database(admin, &name).await.unwrap();
        config.database.url = Some(secrecy::SecretString::from(url));
        config.database.max_connections = 16;
    }
    FileKek::generate(&config.kek_file(), &OsRandom).unwrap();
    let running = custos_server::start(&config).await.unwrap();
    let url = match running.ledger.db().sqlite_file() {
        Some(path) => format!("sqlite://{}", path.display()),
        None => config.database.url.as_ref().unwrap().expose_secret().to_owned(),
    };
    (running, url)
}

/// An event as the ledger takes it (the sequencer's baseline).
fn new_entry(e: &serde_json::Value) -> NewEntry {
    let s = |k: &str| e[k].as_str().unwrap().to_owned();
    NewEntry {
        event_id: uuid::Uuid::now_v7(),
        occurred_at_us: chrono::DateTime::parse_from_rfc3339(&s("occurred_at")).unwrap().timestamp_micros(),
        fields: HeaderFields {
            category: s("category"),
            action: s("action"),
            outcome: s("outcome"),
            severity: s("severity"),
            actor_id: Some(e["actor"]["id"].as_str().unwrap().into()),
            actor_kind: Some("user".into()),
            resource_type: Some("document".into()),
            resource_id: Some(e["resource"]["id"].as_str().unwrap().into()),
            tenant: Some(s("tenant")),
            channel: Some("api".into()),
            source_app: Some("bench".into()),
        },
        payload: e.to_string().into_bytes(),
        duration_ms: None,
    }
}

/// The storage's own floor for single events at `rate` per second, on
/// SQLite: plain inserts of `rows` (the entries' rows alone: no Merkle
/// nodes, head or counts) into the database at `path`, of the ledger's
/// schema, with the sequencer's connection set-up (WAL, `synchronous =
/// FULL`) and the same background checkpoints; no HTTP, crypto or
/// sequencer. A lower bound for what the ledger's commits can do there. Commits are grouped as the
/// ledger's are: each takes every row due by then, so a slow fsync holds
/// the rows that came due during it, as it holds the server's requests.
/// Latency counts from when each row was due. Also each commit's time.
async fn storage_floor(
    path: &std::path::Path,
    busy: Duration,
    rate: usize,
    rows: Vec<StoredEntry>,
) -> (Rated, Vec<Duration>) {
    let due = move |i: usize| Duration::from_secs_f64(i as f64 / rate as f64);
    let t0 = Instant::now();
    let path = path.to_owned();
    let (mut latencies, commits) = tokio::task::spawn_blocking(move || {
        use custos_engine::ledger::sqlite_direct;
        let mut conn = sqlite_direct::open_writer(&path, busy).unwrap();
        let wal = sqlite_direct::Checkpointer::start(&path, busy).unwrap();
        let (mut latencies, mut commits) = (Vec::with_capacity(rows.len()), Vec::new());
        let mut next = 0;
        while next < rows.len() {
            let now = t0.elapsed();
            // Every row due by now.
            let end = ((now.as_secs_f64() * rate as f64) as usize + 1).min(rows.len());
            if end <= next {
                std::thread::sleep(due(next).saturating_sub(now));
                continue;
            }
            let started = Instant::now();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
            sqlite_direct::insert_entries(&tx, &rows[next..end]).unwrap();
            tx.commit().unwrap();
            commits.push(started.elapsed());
            let done = t0.elapsed();
            latencies.extend((next..end).map(|i| done.saturating_sub(due(i))));
            next = end;
        }
        wal.stop();
        (latencies, commits)
    })
    .await
    .unwrap();
    let achieved = latencies.len() as f64 / t0.elapsed().as_secs_f64();
    latencies.sort();
    let (p50, p99) = (percentile(&latencies, 0.50), percentile(&latencies, 0.99));
    (Rated { ok: latencies.len(), refused: 0, achieved, p50, p99, late: Duration::ZERO, stalls: Vec::new() }, commits)
}

/// What a fixed-rate phase measured.
struct Rated {
    ok: usize,
    refused: usize,
    achieved: f64,
    p50: Duration,
    p99: Duration,
    /// The latest a request was sent after it was due (the in-flight cap
    /// reached, or the generator itself behind).
    late: Duration,
    /// The stalls: runs of requests answered more than [`SLOW`] after they
    /// were due (a run ends 50 ms after its last): when the first was due
    /// (from the phase's start), how many, the slowest.
    stalls: Vec<(Duration, usize, Duration)>,
}

/// A request answered later than this after it was due is part of a stall.
const SLOW: Duration = Duration::from_millis(20);

/// The stalls among requests' (when due, latency), in order of due.
fn stalls(mut timed: Vec<(Duration, Duration)>) -> Vec<(Duration, usize, Duration)> {
    timed.sort();
    let mut out: Vec<(Duration, usize, Duration)> = Vec::new();
    let mut last = None;
    for (due, took) in timed.into_iter().filter(|(_, took)| *took > SLOW) {
        match out.last_mut() {
            Some((_, n, worst)) if last.is_some_and(|l: Duration| due - l <= Duration::from_millis(50)) => {
                *n += 1;
                *worst = (*worst).max(took);
            }
            _ => out.push((due, 1, took)),
        }
        last = Some(due);
    }
    out
}

/// The stalls, for a line of output: "at 1.23 s 40 requests (up to 61 ms), …".
fn stalls_line(stalls: &[(Duration, usize, Duration)]) -> String {
    if stalls.is_empty() {
        return "none".into();
    }
    stalls
        .iter()
        .map(|(at, n, worst)| format!("at {:.2} s {n} (up to {:.0} ms)", at.as_secs_f64(), ms(*worst)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The bucket counts (upper bound, cumulative count) of one Prometheus
/// histogram in `/metrics` text, for the series whose labels contain `with`.
fn buckets(text: &str, name: &str, with: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{");
    let mut out: Vec<(f64, u64)> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with(&prefix) && l.contains(with)) {
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
        let count: u64 = line.rsplit(' ').next().and_then(|c| c.parse().ok()).unwrap_or(0);
        match out.iter_mut().find(|(b, _)| *b == le) {
            Some((_, c)) => *c += count,
            None => out.push((le, count)),
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The p50 and p99 (each as its bucket's upper bound, ms) of what a
/// histogram counted between two `/metrics` readings, and how many.
fn bucket_quantiles(before: &[(f64, u64)], after: &[(f64, u64)]) -> (String, String, u64) {
    let delta: Vec<(f64, u64)> =
        after.iter().map(|(le, c)| (*le, c - before.iter().find(|(b, _)| b == le).map_or(0, |(_, c0)| *c0))).collect();
    let total = delta.last().map_or(0, |(_, c)| *c);
    let q = |p: f64| {
        if total == 0 {
            return "n/a".to_owned();
        }
        let want = (total as f64 * p).ceil() as u64;
        match delta.iter().find(|(_, c)| *c >= want.max(1)) {
            Some((le, _)) if le.is_finite() => format!("≤ {} ms", le * 1000.0),
            _ => "> 5 s".to_owned(),
        }
    };
    (q(0.50), q(0.99), total)
}

/// Sends one request per entry of `bodies` at `rate` per second (a body:
/// `POST /api/audit/events`; none: `GET /healthz`). Latency counts from
/// when each request was due, so a server falling behind shows in it. At
/// most 512 are in flight: beyond, requests leave late (reported), and the
/// load is no longer open; answers that are not 2xx (or none) are counted
/// as refused and left out of the percentiles.
async fn fixed_rate(http: &reqwest::Client, rate: usize, bodies: Vec<Option<Vec<u8>>>, base: &str, key: &str) -> Rated {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let mut late = Duration::ZERO;
    let t0 = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(bodies.len());
    for (i, body) in bodies.into_iter().enumerate() {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        let permit = in_flight.clone().acquire_owned().await.unwrap();
        late = late.max(due.elapsed());
        let (http, base, key) = (http.clone(), base.to_owned(), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let req = match body {
                Some(b) => http
                    .post(format!("{base}/api/audit/events"))
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(b),
                None => http.get(format!("{base}/healthz")),
            };
            let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
            drop(permit);
            (ok, due - t0, due.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut timed = Vec::with_capacity(tasks.len());
    let mut refused = 0;
    for t in tasks {
        let (ok, at, took) = t.await.unwrap();
        if ok {
            latencies.push(took);
            timed.push((at, took));
        } else {
            refused += 1;
        }
    }
    let achieved = latencies.len() as f64 / t0.elapsed().as_secs_f64();
    latencies.sort();
    let (p50, p99) = if latencies.is_empty() {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (percentile(&latencies, 0.50), percentile(&latencies, 0.99))
    };
    Rated { ok: latencies.len(), refused, achieved, p50, p99, late, stalls: stalls(timed) }
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(a));
}

async fn run(a: Args) {
    let now = chrono::Utc::now().timestamp_micros();
    let start_us = now - SPAN_US - 120_000_000;
    println!("generating {} events in batches of {} (pre-serialised, not timed)…", a.events, a.batch);
    // The same events every run, so runs compare.
    let mut rng = custos_testkit::rng(0x9e37_79b9_7f4a_7c15);
    let bodies: Vec<Vec<u8>> = (0..a.events.div_ceil(a.batch))
        .map(|b| {
            let items: Vec<serde_json::Value> = (b * a.batch..((b + 1) * a.batch).min(a.events))
                .map(|i| event(i, a.events, start_us, &mut rng))
                .collect();
            serde_json::to_vec(&items).unwrap()
        })
        .collect();
    let mean_event = bodies.iter().map(Vec::len).sum::<usize>() / a.events;

    // 1. The sequencer's own figure, on a fresh server.
    let dir_b = tempfile::tempdir().unwrap();
    let (server_b, floor_url) = start(dir_b.path(), a.postgres.as_deref()).await;
    let entries: Vec<Vec<NewEntry>> = {
        let mut rng = custos_testkit::rng(7);
        (0..a.events.div_ceil(a.batch))
            .map(|b| {
                (b * a.batch..((b + 1) * a.batch).min(a.events))
                    .map(|i| new_entry(&event(i, a.events, start_us, &mut rng)))
                    .collect()
            })
            .collect()
    };
    let queue = Arc::new(std::sync::Mutex::new(entries));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.clients {
        let (queue, ledger) = (queue.clone(), server_b.ledger.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(batch) = queue.lock().unwrap().pop() else { break };
                ledger.append(batch).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seq_secs = t.elapsed().as_secs_f64();
    let seq_rate = a.events as f64 / seq_secs;
    println!("sequencer (baseline): {:.0} events/s ({:.1} s)", seq_rate, seq_secs);
    server_b.shutdown().await.unwrap();
    // Its database, with the bulk phase's entries, holds the storage floor's
    // rows later (dir_b is kept until then).

    // 2. Ingest over HTTP.
    let dir_a = tempfile::tempdir().unwrap();
    let (server, _) = start(dir_a.path(), a.postgres.as_deref()).await;
    let base = format!("http://{}", server.addr);
    let (_, key) = server
        .identity
        .create_api_key(&Acting::system(custos_model::Channel::Cli), "bench", &[Scope::Ingest, Scope::Read], None)
        .await
        .unwrap();
    let key = key.expose_secret().to_owned();
    let http = reqwest::Client::builder().pool_max_idle_per_host(a.clients).build().unwrap();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.clients {
        let (queue, http, base, key) = (queue.clone(), http.clone(), base.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().unwrap().pop() else { break };
                let res = http
                    .post(format!("{base}/api/audit/events"))
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201, "{}", res.text().await.unwrap_or_default());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let http_secs = t.elapsed().as_secs_f64();
    let http_rate = a.events as f64 / http_secs;
    println!(
        "ingest over HTTP: {:.0} events/s ({:.1} s, {} clients, batches of {}, ~{} B per event) = {:.2}x the sequencer",
        http_rate,
        http_secs,
        a.clients,
        a.batch,
        mean_event,
        http_rate / seq_rate
    );
    let db_name = match server.ledger.db().kind() {
        custos_engine::storage::DbKind::Sqlite => "SQLite",
        _ => "PostgreSQL",
    };
    Row::new(
        format!("{db_name} ingest over HTTP, batches of {} ({} events)", a.batch, a.events),
        http_rate,
        "events/s",
    )
    .baseline("the sequencer alone", seq_rate)
    .record();

    // 3. Single events at fixed rates, next to the storage's floor (and /healthz) at the same rates.
    if a.single_secs > 0 {
        // Connections kept open for reuse (keep-alive), as many as in flight.
        let http = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
        let mut rng = custos_testkit::rng(99);
        if a.settle_secs > 0 {
            let mut wal = "";
            if server.ledger.db().kind() == custos_engine::storage::DbKind::Sqlite {
                let db = server.ledger.db();
                let row = db
                    .conn()
                    .query_one_raw(sea_orm::Statement::from_string(db.backend(), "PRAGMA wal_checkpoint(TRUNCATE)"))
                    .await
                    .unwrap();
                let busy = row.and_then(|r| r.try_get_by_index::<i64>(0).ok()).unwrap_or(1);
                wal = if busy == 0 { "the WAL checkpointed, " } else { "the WAL checkpoint was busy (not done), " };
            }
            server.ledger.settle_rollups().await;
            tokio::time::sleep(Duration::from_secs(a.settle_secs as u64)).await;
            println!("settled before the 1,000/s phase: {wal}the held counts written, {} s of quiet", a.settle_secs);
        }
        // The storage's floor (see storage_floor), on SQLite: in the
        // sequencer baseline's database, on the same disk and about as
        // large as the server's (the indexes' depth, the pages each commit
        // dirties), the rows numbered on from its last entry. Its own
        // generator, so that the phases' events stay those of earlier runs.
        let floor_path = floor_url.strip_prefix("sqlite://").map(std::path::PathBuf::from);
        let mut floor_seq = match &floor_path {
            Some(path) => {
                let conn = custos_engine::ledger::sqlite_direct::open(path, Duration::from_secs(5)).unwrap();
                conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM ledger_entries", [], |r| r.get::<_, i64>(0)).unwrap()
                    as u64
            }
            None => 0,
        };
        let mut floor_rng = custos_testkit::rng(0xf100);
        for rate in [1000usize, 5000] {
            let n = rate * a.single_secs;
            let bodies: Vec<Vec<u8>> = (0..n)
                .map(|_| serde_json::to_vec(&event(rng.usize(..a.events), a.events, start_us, &mut rng)).unwrap())
                .collect();
            server.state.ingest_summaries.record(&server.events).await;
            let before = server.ledger.head().await.unwrap().seq;
            let m0 = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
            let ingest = fixed_rate(&http, rate, bodies.into_iter().map(Some).collect(), &base, &key).await;
            let m1 = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
            server.state.ingest_summaries.record(&server.events).await;
            // Where the time went, from the server's own histograms over the
            // phase: the ingest route's handler (after the API key check and
            // before the self-audit: body, validation, masking, sealing and
            // the wait for the commit), and the ledger's commits (each a
            // batch; the phase's other commits, summaries and background
            // writes, included).
            let route = "route=\"/api/audit/events\"";
            let (h50, h99, _) = bucket_quantiles(
                &buckets(&m0, "custos_http_request_duration_seconds", route),
                &buckets(&m1, "custos_http_request_duration_seconds", route),
            );
            let (c50, c99, commits) = bucket_quantiles(
                &buckets(&m0, "custos_ledger_commit_seconds", ""),
                &buckets(&m1, "custos_ledger_commit_seconds", ""),
            );
            let (r50, r99, rollup_writes) = bucket_quantiles(
                &buckets(&m0, "custos_ledger_rollup_write_seconds", ""),
                &buckets(&m1, "custos_ledger_rollup_write_seconds", ""),
            );
            let (w50, w99, appends) = bucket_quantiles(
                &buckets(&m0, "custos_ledger_append_wait_seconds", ""),
                &buckets(&m1, "custos_ledger_append_wait_seconds", ""),
            );
            // The slow commits: one that stalls holds every request queued
            // behind it, which the per-batch percentiles hide.
            // (Each threshold is a bucket bound: see telemetry.rs.)
            let over_with = |metric: &str, with: &str, ms: f64| {
                let count = |m: &str| {
                    let b = buckets(m, metric, with);
                    let total = b.last().map_or(0, |(_, c)| *c);
                    total - b.iter().find(|(le, _)| *le >= ms / 1000.0).map_or(total, |(_, c)| *c)
                };
                count(&m1) - count(&m0)
            };
            let over_in = |metric: &str, ms: f64| over_with(metric, "", ms);
            let over = |ms: f64| over_in("custos_ledger_commit_seconds", ms);
            let (l99, locked) = (
                bucket_quantiles(
                    &buckets(&m0, "custos_ledger_write_lock_wait_seconds", ""),
                    &buckets(&m1, "custos_ledger_write_lock_wait_seconds", ""),
                )
                .1,
                over_in("custos_ledger_write_lock_wait_seconds", 5.0),
            );
            println!(
                "  inside the server at {rate}/s: the ingest handler p50 {h50}, p99 {h99}; each append's wait for its commit \
                 ({appends}, queue included) p50 {w50}, p99 {w99}; ledger commits: {commits} (mean {:.1} events each), p50 {c50}, \
                 p99 {c99}, {} over 10 ms, {} over 25 ms, {} over 100 ms; the dashboards' held counts written in \
                 {rollup_writes} chunks (SQLite), p50 {r50}, p99 {r99}; the commits' BEGIN (SQLite: the wait for the \
                 database's write lock, and the reset of the writer's cache after another connection's commit) \
                 p99 {l99}, {locked} over 5 ms",
                ingest.ok as f64 / commits.max(1) as f64,
                over(10.0),
                over(25.0),
                over(100.0)
            );
            // Each append's time by stage (`custos_ledger_append_stage_seconds`):
            // where a slow one spent it.
            let stages: Vec<String> = ["queued", "sealing", "behind", "committing", "answering", "waking"]
                .iter()
                .map(|stage| {
                    let with = format!("stage=\"{stage}\"");
                    let metric = "custos_ledger_append_stage_seconds";
                    let (_, p99, _) = bucket_quantiles(&buckets(&m0, metric, &with), &buckets(&m1, metric, &with));
                    format!("{stage} p99 {p99} ({} over 5 ms)", over_with(metric, &with, 5.0))
                })
                .collect();
            println!("  each append's stages at {rate}/s: {}", stages.join("; "));
            // Writes beside the ledger's on its connection (SQLite: leases,
            // signed checkpoints), which commits wait for.
            let sides: Vec<String> = ["with_next_commit", "now"]
                .iter()
                .map(|synced| {
                    let with = format!("synced=\"{synced}\"");
                    let metric = "custos_ledger_side_write_seconds";
                    let (_, p99, n) = bucket_quantiles(&buckets(&m0, metric, &with), &buckets(&m1, metric, &with));
                    format!("{synced}: {n}, p99 {p99} ({} over 5 ms)", over_with(metric, &with, 5.0))
                })
                .collect();
            println!(
                "  writes beside the ledger's on its connection at {rate}/s (SQLite; leases, checkpoints): {}",
                sides.join("; ")
            );
            let entries = server.ledger.head().await.unwrap().seq - before;
            let health = fixed_rate(&http, rate, vec![None; n], &base, &key).await;
            let floor = match &floor_path {
                Some(path) => {
                    let rows: Vec<StoredEntry> = (0..n)
                        .map(|_| {
                            floor_seq += 1;
                            let e = event(floor_rng.usize(..a.events), a.events, start_us, &mut floor_rng);
                            plain_row(floor_seq, &new_entry(&e))
                        })
                        .collect();
                    Some(storage_floor(path, Duration::from_secs(5), rate, rows).await)
                }
                None => None,
            };
            println!(
                "single events at {rate}/s for {} s: {} answered ({} refused), achieved {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, \
                 sent up to {:.1} ms late; /healthz at the same rate (for reference): achieved {:.0}/s, p50 {:.2} ms, \
                 p99 {:.2} ms, sent up to {:.1} ms late; \
                 {:.3} ledger entries per event ({entries} entries for {} events, summaries included)",
                a.single_secs,
                ingest.ok,
                ingest.refused,
                ingest.achieved,
                ms(ingest.p50),
                ms(ingest.p99),
                ms(ingest.late),
                health.achieved,
                ms(health.p50),
                ms(health.p99),
                ms(health.late),
                entries as f64 / ingest.ok.max(1) as f64,
                ingest.ok
            );
            println!(
                "  stalls (requests answered over {} ms after due, by when the first was due): {}",
                SLOW.as_millis(),
                stalls_line(&ingest.stalls)
            );
            let row = Row::new(format!("{db_name} single-event ingest p99 at {rate}/s"), ms(ingest.p99), "ms");
            let row = match &floor {
                Some((floor, commits)) => {
                    let over = |ms: u64| commits.iter().filter(|c| **c > Duration::from_millis(ms)).count();
                    println!(
                        "  the storage's floor at {rate}/s (baseline: commits of the entries' rows alone, of the same \
                         size, grouped as the ledger groups them, into the sequencer baseline's database): achieved \
                         {:.0}/s, p50 {:.2} ms, p99 {:.2} ms; {} commits, {} over 10 ms, {} over 25 ms, {} over 100 ms",
                        floor.achieved,
                        ms(floor.p50),
                        ms(floor.p99),
                        commits.len(),
                        over(10),
                        over(25),
                        over(100)
                    );
                    row.baseline(
                        "the storage's floor at the same rate, p99: the entries' rows alone, grouped commits",
                        ms(floor.p99),
                    )
                }
                // PostgreSQL: no floor measured (its commit differs in kind).
                None => row.baseline("GET /healthz at the same rate, p99", ms(health.p99)),
            };
            if rate == 1000 { row.aim(Aim::AtMost { value: 10.0 }) } else { row }.record();
            Row::new(format!("{db_name} single-event ingest at {rate}/s, achieved"), ingest.achieved, "requests/s")
                .baseline("GET /healthz at the same rate", health.achieved)
                .record();
        }
    }

    // 4. Search: first page, a one-day window and one other filter.
    let conn = server.ledger.db().conn();
    conn.execute_unprepared(match server.ledger.db().kind() {
        custos_engine::storage::DbKind::Sqlite => "ANALYZE",
        _ => "ANALYZE ledger_entries",
    })
    .await
    .unwrap();
    let mut rng = custos_testkit::rng(42);
    let mut api = Vec::with_capacity(a.queries);
    let mut sql = Vec::with_capacity(a.queries);
    let mut per_kind: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    let mut returned = 0usize;
    for q in 0..a.queries {
        let day = rng.usize(..29) as i64;
        let from = start_us + day * 86_400_000_000 + 120_000_000;
        let to = from + 86_400_000_000;
        let (kind, filter) = match q % 4 {
            0 => ("action", format!("action={}", ACTIONS[rng.usize(..ACTIONS.len())])),
            1 => ("actor", format!("actor=u-{}", rng.usize(..ACTORS))),
            2 => ("outcome", "outcome=denied".to_owned()),
            _ => ("tenant", format!("tenant=tenant-{}", rng.usize(..TENANTS))),
        };
        let query = format!("from={}&to={}&{filter}&limit=50", rfc3339(from), rfc3339(to)).replace('+', "%2B");
        // Baseline: the same statement straight on the database.
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap();
        let mut f = SearchFilter::from_pairs(&pairs).unwrap();
        f.by_time = true; // as GET /api/audit reads
        let (stmt, values) = custos_engine::events::search::build_sql(
            &f,
            &f.actors,
            &f.resource_ids,
            None,
            51,
            conn.get_database_backend(),
        );
        let t = Instant::now();
        let rows = conn
            .query_all_raw(custos_engine::storage::stmt_for(conn.get_database_backend(), &stmt, values))
            .await
            .unwrap();
        sql.push(t.elapsed());
        let t = Instant::now();
        let res = http.get(format!("{base}/api/audit?{query}")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let page: serde_json::Value = res.json().await.unwrap();
        let took = t.elapsed();
        api.push(took);
        per_kind.entry(kind).or_default().push(took);
        let n = page["items"].as_array().unwrap().len();
        assert_eq!(n, rows.len().min(50), "the API returns what the SQL finds");
        returned += n;
    }
    // Not in the headline: an actor over all time (no time bound).
    let mut unbounded = Vec::new();
    for _ in 0..a.queries.min(100) {
        let query = format!("actor=u-{}&limit=50", rng.usize(..ACTORS));
        let t = Instant::now();
        let res = http.get(format!("{base}/api/audit?{query}")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let _: serde_json::Value = res.json().await.unwrap();
        unbounded.push(t.elapsed());
    }
    unbounded.sort();
    api.sort();
    sql.sort();
    println!(
        "search over HTTP on {} events ({}), first page (limit 50), one-day window + one filter, {} queries (mean {:.1} rows):",
        a.events,
        server.ledger.db().kind().as_str(),
        a.queries,
        returned as f64 / a.queries as f64
    );
    println!(
        "  API: p50 {:.2} ms, p95 {:.2} ms; SQL alone (baseline): p50 {:.2} ms, p95 {:.2} ms; p95 ratio {:.1}x",
        ms(percentile(&api, 0.5)),
        ms(percentile(&api, 0.95)),
        ms(percentile(&sql, 0.5)),
        ms(percentile(&sql, 0.95)),
        ms(percentile(&api, 0.95)) / ms(percentile(&sql, 0.95)).max(0.001)
    );
    for (kind, mut v) in per_kind {
        v.sort();
        println!("  + {kind:<8} p50 {:.2} ms, p95 {:.2} ms", ms(percentile(&v, 0.5)), ms(percentile(&v, 0.95)));
    }
    println!(
        "  actor over all time (no time bound), {} queries: p50 {:.2} ms, p95 {:.2} ms",
        unbounded.len(),
        ms(percentile(&unbounded, 0.5)),
        ms(percentile(&unbounded, 0.95))
    );
    Row::new(
        format!("{db_name} search p95, one-day window + one filter ({} events)", a.events),
        ms(percentile(&api, 0.95)),
        "ms",
    )
    .baseline("its SQL alone, p95", ms(percentile(&sql, 0.95)))
    .record();
    // 5. Export everything as CSV over HTTP (streamed), against a plain
    // read of the same rows in seq order.
    // API keys read or ingest; exports are for people: a compliance officer.
    let officer = custos_engine::identity::service::NewUser {
        username: "bench_officer".into(),
        email: None,
        display_name: None,
        password: secrecy::SecretString::from("bench officer password 1".to_owned()),
        roles: vec!["compliance_officer".into()],
        must_change_password: false,
    };
    server.identity.create_user(&Acting::system(custos_model::Channel::Cli), officer).await.unwrap();
    let browser =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = browser
        .post(format!("{base}/auth/login"))
        .form(&[("username", "bench_officer"), ("password", "bench officer password 1"), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the officer signs in");
    let t = Instant::now();
    let mut res = browser.get(format!("{base}/api/audit/export?format=csv")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let (mut bytes, mut lines) = (0usize, 0usize);
    while let Some(chunk) = res.chunk().await.unwrap() {
        bytes += chunk.len();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
    }
    let export_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut scanned = 0usize;
    let mut after = 0i64;
    loop {
        let rows = conn
            .query_all_raw(custos_engine::storage::stmt_for(
                conn.get_database_backend(),
                &format!(
                    "SELECT {} FROM ledger_entries WHERE seq > ? ORDER BY seq LIMIT 1000",
                    custos_engine::ledger::store::ENTRY_COLUMNS
                ),
                vec![after.into()],
            ))
            .await
            .unwrap();
        let Some(last) = rows.last() else { break };
        after = last.try_get::<i64>("", "seq").unwrap();
        scanned += rows.len();
    }
    let scan_secs = t.elapsed().as_secs_f64();
    println!(
        "export CSV over HTTP: {} rows, {:.0} MB in {:.1} s ({:.0} rows/s); plain paged read of the rows (baseline): {:.1} s ({} rows) = {:.2}x",
        lines.saturating_sub(1),
        bytes as f64 / 1e6,
        export_secs,
        lines as f64 / export_secs,
        scan_secs,
        scanned,
        scan_secs / export_secs
    );
    // The read's own ceiling on SQLite: the verifier's raw scan of the same
    // rows (one buffer per page; no MAC, no decryption, no encoding).
    let raw_scan = server.ledger.db().sqlite_file().map(|path| {
        let t = Instant::now();
        let direct = custos_engine::ledger::sqlite_direct::open(path, server.ledger.db().busy_timeout()).unwrap();
        let mut n = 0usize;
        custos_engine::ledger::sqlite_direct::scan_raw(&direct, 1, after as u64, 2048, |page| {
            n += page.len();
            true
        })
        .unwrap();
        (t.elapsed().as_secs_f64(), n)
    });
    let csv = Row::new(format!("{db_name} CSV export over HTTP ({} rows)", lines.saturating_sub(1)), export_secs, "s");
    match raw_scan {
        Some((raw_secs, _)) => csv.baseline("the raw scan of the same rows", raw_secs),
        None => csv.baseline("a plain paged read of the same rows", scan_secs),
    }
    .aim(Aim::AtMost { value: 5.0 })
    .record();
    if let Some((raw_secs, n)) = raw_scan {
        println!(
            "  raw scan of the same rows (the read's ceiling): {raw_secs:.2} s ({n} rows); the CSV export takes {:.2}x its time",
            export_secs / raw_secs
        );
    }
    let t = Instant::now();
    let mut res = browser.get(format!("{base}/api/audit/export?format=xlsx")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut xlsx_bytes = 0usize;
    while let Some(chunk) = res.chunk().await.unwrap() {
        xlsx_bytes += chunk.len();
    }
    let xlsx_secs = t.elapsed().as_secs_f64();
    println!(
        "export XLSX over HTTP: {:.0} MB in {:.1} s; plain paged read (baseline) {:.1} s = {:.2}x",
        xlsx_bytes as f64 / 1e6,
        xlsx_secs,
        scan_secs,
        scan_secs / xlsx_secs
    );
    Row::new(format!("{db_name} XLSX export over HTTP ({} rows)", lines.saturating_sub(1)), xlsx_secs, "s")
        .baseline("a plain paged read of the same rows", scan_secs)
        .aim(Aim::AtMost { value: 30.0 })
        .record();
    server.shutdown().await.unwrap();

    // 6. The same exports by `custos export` in a process of its own: wall
    // time and peak resident memory (VmHWM) of that process alone.
    if a.postgres.is_none() {
        for format in ["csv", "xlsx"] {
            let out = dir_a.path().join(format!("bench-export.{format}"));
            let t = Instant::now();
            let run = std::process::Command::new(env!("CARGO_BIN_EXE_custos"))
                .args(["export", "--format", format, "--stats", "--out"])
                .arg(&out)
                .env("CUSTOS_DATA_DIR", dir_a.path())
                .env("CUSTOS_LEDGER__ORIGIN", "custos.test/ledger")
                .env("CUSTOS_LOG__FILTER", "warn")
                .output()
                .unwrap();
            let wall = t.elapsed().as_secs_f64();
            let text = String::from_utf8_lossy(&run.stdout).into_owned();
            assert!(run.status.success(), "{text}{}", String::from_utf8_lossy(&run.stderr));
            let field = |name: &str| {
                text.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().parse::<f64>().unwrap()).unwrap()
            };
            let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            println!(
                "custos export --format {format}: {:.0} MB, export {:.1} s (process {:.1} s incl. start-up and checkpoint), peak RSS {:.0} MB; plain paged read (baseline) {:.1} s = {:.2}x",
                size as f64 / 1e6,
                field("export_seconds"),
                wall,
                field("peak_rss_kib") / 1024.0,
                scan_secs,
                scan_secs / field("export_seconds")
            );
            let label = format.to_uppercase();
            let secs = Row::new(
                format!("SQLite {label} export, custos export ({} rows)", lines.saturating_sub(1)),
                field("export_seconds"),
                "s",
            );
            match raw_scan {
                Some((raw_secs, _)) => secs.baseline("the raw scan of the same rows", raw_secs),
                None => secs,
            }
            .aim(Aim::AtMost { value: if format == "csv" { 5.0 } else { 30.0 } })
            .record();
            Row::new(format!("SQLite {label} export, custos export, peak RSS"), field("peak_rss_kib") / 1024.0, "MB")
                .aim(Aim::AtMost { value: 150.0 })
                .record();
            if let Some((raw_secs, _)) = raw_scan {
                println!(
                    "  the raw scan of the same rows (the read's ceiling) took {raw_secs:.2} s: {:.2}x its time",
                    field("export_seconds") / raw_secs
                );
            }
            let _ = std::fs::remove_file(&out);
        }
    }
}
