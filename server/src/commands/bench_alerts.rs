//! `custos bench alerts`: what live alerting costs and how fast it is, on
//! the real server (started in this process on a fresh SQLite database,
//! with its background evaluator and notifier) and a real HTTP receiver.
//!
//! 1. **Ingest with and without rules, in the same run.** Fresh
//!    servers: without any alert rule (before and after), and with `--rules`
//!    rules (the built-in pack and thresholds on the generated actions). The
//!    same events are ingested as fast as 8 concurrent clients can; the
//!    ratio is the rate with rules over the mean of the two without.
//! 2. **Commit → alert stored, commit → webhook delivered**, on the server
//!    with rules: events are sent at `--rate` per second for `--seconds`;
//!    every 100 ms one of them is a marker that an immediate rule turns into
//!    an alert, routed to a webhook on a local port. Per marker: its commit
//!    time (the receipt), when its alert row was written (the database), and
//!    when the webhook arrived (the receiver's clock, the same machine).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custos_engine::clock::{OsRandom, SystemClock};
use custos_engine::events::model::{Actor, Channel};
use custos_engine::events::{Requester, Submitter};
use custos_engine::identity::service::{Acting, NewUser};
use custos_engine::keys::FileKek;
use custos_engine::policies::NewProposal;
use custos_engine::storage::stmt_for;
use sea_orm::ConnectionTrait as _;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::config::{Config, PolicyReview};

/// Arguments of `custos bench alerts`.
#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// Events ingested at full speed, with and without rules.
    #[arg(long, default_value_t = 40_000)]
    events: u64,
    /// Events per second in the latency phase.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// How long the latency phase sends.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Alert rules on the second server (at least 11: the built-in pack and the marker rule).
    #[arg(long, default_value_t = 50)]
    rules: usize,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A small HTTP server keeping (arrival µs, body) of each request.
/// What the receiver got: (arrival µs, body).
type Received = Arc<Mutex<Vec<(i64, Vec<u8>)>>>;

async fn receiver() -> Result<(String, Received), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let url = format!("http://{}/hook", listener.local_addr().map_err(|e| e.to_string())?);
    let got: Received = Arc::default();
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Ok(n) = tcp.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse().ok()))
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            let at = now_us();
                            if let Ok(mut g) = g.lock() {
                                g.push((at, buf[i + 4..i + 4 + len].to_vec()));
                            }
                            let _ = tcp
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok((url, got))
}

/// The rules: the built-in pack, a marker rule, and thresholds up to `n`.
fn rules(n: usize) -> Value {
    if n == 0 {
        return json!({ "rules": [] });
    }
    let mut list: Vec<Value> =
        custos_engine::alerts::rules::builtin_rules().iter().filter_map(|r| serde_json::to_value(r).ok()).collect();
    list.push(json!({
        "id": "bench_marker", "name": "Benchmark marker", "severity": "warning",
        "matcher": {"actions": ["bench.marker"]}, "condition": {"type": "immediate"},
        "group_by": ["details.n"], "cooldown_secs": 0,
    }));
    let mut i = 0;
    while list.len() < n {
        list.push(json!({
            "id": format!("bench_threshold_{i}"), "name": format!("Benchmark threshold {i}"), "severity": "notice",
            "matcher": {"actions": [format!("bench.action{}.*", i % 20)], "outcomes": ["failure"]},
            "condition": {"type": "threshold", "count": 1000, "window_secs": 60},
            "group_by": ["actor"], "cooldown_secs": 300,
        }));
        i += 1;
    }
    json!({ "rules": list })
}

fn event(i: u64) -> Value {
    let outcome = if i.is_multiple_of(7) { "failure" } else { "success" };
    json!({
        "occurred_at": chrono::Utc::now().to_rfc3339(), "category": "admin",
        "action": format!("bench.action{}.run", i % 20), "outcome": outcome,
        "actor": {"id": format!("user{}", i % 500), "kind": "user", "ip": format!("10.0.{}.{}", (i / 250) % 250, i % 250)},
        "resource": {"type": "document", "id": format!("doc-{}", i % 5000)},
        "source": {"channel": "api", "application": format!("app{}", i % 5)},
        "details": {"n_bench": i, "note": "a realistic detail of some length for the benchmark payload"},
    })
}

struct Run {
    ingest_per_sec: f64,
    catch_up_secs: f64,
    stored_ms: Vec<f64>,
    delivered_ms: Vec<f64>,
    markers: usize,
}

async fn run(args: &AlertsArgs, n_rules: usize, hook: Option<&str>) -> Result<Run, String> {
    let dir = std::env::temp_dir().join(format!("custos-bench-alerts-{}-{n_rules}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut config = Config::for_test(&dir);
    config.notifications.allow_private_destinations = true;
    for kind in ["alert_rules", "notifications"] {
        config.policies.insert(kind.into(), PolicyReview { approvals: Some(0), proposal_ttl_days: None });
    }
    FileKek::generate(&config.kek_file(), &OsRandom).map_err(|e| e.to_string())?;
    let running =
        crate::start_with(&config, Arc::new(SystemClock), Arc::new(OsRandom)).await.map_err(|e| e.to_string())?;
    let id = running
        .identity
        .create_user(
            &Acting::system(Channel::Cli),
            NewUser {
                username: "bench".into(),
                email: None,
                display_name: None,
                password: SecretString::from("a benchmark password".to_owned()),
                roles: vec!["admin".into()],
                must_change_password: false,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let held = running.identity.principal(id).await.map_err(|e| e.to_string())?.ok_or("no principal")?.permissions;
    let by = Requester::new(
        Actor {
            id: id.to_string(),
            kind: "user".into(),
            name: Some("bench".into()),
            ip: None,
            user_agent: None,
            session_id: None,
        },
        Channel::Cli,
        None,
    );
    let propose = |kind: &'static str, content: Value| {
        let (p, by, held) = (running.policies.clone(), by.clone(), held.clone());
        async move {
            p.propose(
                &by,
                &held,
                kind,
                NewProposal { content: Some(content), restores: None, based_on: 0, reason: "benchmark".into() },
            )
            .await
            .map_err(|e| format!("{kind}: {e}"))
        }
    };
    propose("alert_rules", rules(n_rules)).await?;
    if let Some(url) = hook {
        propose(
            "notifications",
            json!({"channels": [{"id": "bench", "name": "Benchmark receiver", "type": "webhook", "url": url,
                    "secret": {"value": "a benchmark webhook secret"}}],
                   "routes": [{"rules": ["bench_marker"], "channels": ["bench"]}]}),
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = running.events.clone();
    let by = Submitter { principal: "bench".into() };

    // 1. Full speed.
    let started = Instant::now();
    let per = args.events / 8;
    let mut tasks = Vec::new();
    for c in 0..8u64 {
        let (events, by) = (events.clone(), by.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c * per;
            while i < (c + 1) * per {
                let batch: Vec<Value> = (i..(i + 100).min((c + 1) * per)).map(event).collect();
                events.ingest(&batch, None, &by).await.map_err(|e| e.to_string())?;
                i += 100;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let ingest_per_sec = (per * 8) as f64 / started.elapsed().as_secs_f64();
    // The evaluator catches up with what was committed.
    let caught = Instant::now();
    let db = running.ledger.db().clone();
    let head = running.ledger.head().await.map_err(|e| e.to_string())?.seq as i64;
    if n_rules > 0 {
        loop {
            let row = db
                .conn()
                .query_one_raw(stmt_for(
                    db.backend(),
                    "SELECT cursor_seq FROM leases WHERE name = 'alert-evaluator'",
                    vec![],
                ))
                .await
                .map_err(|e| e.to_string())?;
            let cursor: i64 =
                row.map(|r| r.try_get("", "cursor_seq")).transpose().map_err(|e| e.to_string())?.unwrap_or(-1);
            if cursor >= head || caught.elapsed() > Duration::from_secs(300) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let catch_up_secs = caught.elapsed().as_secs_f64();

    // 2. Paced, with markers.
    let mut commits: BTreeMap<u64, i64> = BTreeMap::new();
    if hook.is_some() {
        let tick = Duration::from_millis(10);
        let per_tick = (args.rate / 100).max(1);
        let ticks = args.seconds * 100;
        let mut next = tokio::time::Instant::now();
        let mut i = 1_000_000_000u64;
        for t in 0..ticks {
            next += tick;
            let mut batch: Vec<Value> = (0..per_tick).map(|k| event(i + k)).collect();
            i += per_tick;
            let marker = t % 10 == 0;
            if marker {
                batch[0] = json!({
                    "occurred_at": chrono::Utc::now().to_rfc3339(), "category": "system", "action": "bench.marker",
                    "outcome": "success", "actor": {"id": "bench", "kind": "service"},
                    "source": {"channel": "api", "application": "bench"}, "details": {"n": t / 10},
                });
            }
            let receipts = events.ingest(&batch, None, &by).await.map_err(|e| e.to_string())?;
            if marker
                && let Some(at) = receipts.first().and_then(|r| custos_engine::time::parse_rfc3339(&r.recorded_at))
            {
                commits.insert(t / 10, at);
            }
            tokio::time::sleep_until(next).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let mut stored_ms = Vec::new();
    if hook.is_some() {
        let rows = db
            .conn()
            .query_all_raw(stmt_for(
                db.backend(),
                "SELECT group_key, updated_at FROM alerts WHERE rule_id = 'bench_marker'",
                vec![],
            ))
            .await
            .map_err(|e| e.to_string())?;
        for r in rows {
            let group: BTreeMap<String, String> =
                serde_json::from_str(&r.try_get::<String>("", "group_key").map_err(|e| e.to_string())?)
                    .unwrap_or_default();
            let at: i64 = r.try_get("", "updated_at").map_err(|e| e.to_string())?;
            if let Some(c) = group.get("details.n").and_then(|n| n.parse::<u64>().ok()).and_then(|n| commits.get(&n)) {
                stored_ms.push((at - c) as f64 / 1000.0);
            }
        }
    }
    let markers = commits.len();
    running.shutdown().await.map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    // Deliveries are read from the receiver by the caller.
    Ok(Run { ingest_per_sec, catch_up_secs, stored_ms, delivered_ms: Vec::new(), markers })
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the benchmark and prints its table.
pub async fn alerts(args: AlertsArgs) -> ExitCode {
    match go(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::failed("benchmark failed", &e),
    }
}

async fn go(args: AlertsArgs) -> Result<(), String> {
    if args.rules < 11 {
        return Err("--rules: at least 11 (the built-in pack and the marker rule)".into());
    }
    // The run without rules goes before and after the one with them (the
    // mean is the baseline): the order of runs on a shared machine then
    // favours neither.
    eprintln!("ingesting {} events with no alert rule…", args.events);
    let before = run(&args, 0, None).await?;
    let (url, got) = receiver().await?;
    eprintln!(
        "ingesting {} events with {} alert rules, then {} events/s for {} s…",
        args.events, args.rules, args.rate, args.seconds
    );
    let t0 = now_us();
    let mut with = run(&args, args.rules, Some(&url)).await?;
    // Deliveries: the marker's commit time is in the payload's alert
    // (`opened_at` is the commit time of the event that opened it).
    for (at, body) in got.lock().map_err(|_| "receiver")?.iter() {
        let v: Value = serde_json::from_slice(body).unwrap_or_default();
        if let Some(opened) = v["alert"]["opened_at"].as_str().and_then(custos_engine::time::parse_rfc3339)
            && opened >= t0
        {
            with.delivered_ms.push((at - opened) as f64 / 1000.0);
        }
    }
    eprintln!("ingesting {} events with no alert rule again…", args.events);
    let after = run(&args, 0, None).await?;
    let baseline = (before.ingest_per_sec + after.ingest_per_sec) / 2.0;
    let ratio = with.ingest_per_sec / baseline;
    let (mut s, mut d) = (with.stored_ms.clone(), with.delivered_ms.clone());
    println!("| Measure | Value |");
    println!("|---|---|");
    println!(
        "| Ingest, no alert rule (8 clients, batches of 100; before and after) | {:.0} events/s ({:.0} and {:.0}) |",
        baseline, before.ingest_per_sec, after.ingest_per_sec
    );
    println!("| Ingest, {} alert rules evaluated live | {:.0} events/s |", args.rules, with.ingest_per_sec);
    println!("| Ratio (aim ≥ 0.9) | {ratio:.2}× |");
    println!("| Evaluator caught up after the full-speed ingest | {:.1} s |", with.catch_up_secs);
    println!(
        "| Commit → alert stored, at {} events/s ({} markers) | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms |",
        args.rate,
        with.markers,
        pct(&mut s, 0.5),
        pct(&mut s, 0.99),
        pct(&mut s, 1.0)
    );
    println!(
        "| Commit → webhook delivered ({} delivered) | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms |",
        d.len(),
        pct(&mut d, 0.5),
        pct(&mut d, 0.99),
        pct(&mut d, 1.0)
    );
    use super::bench_report::{Aim, Row};
    Row::new(format!("Ingest with {} alert rules evaluated live", args.rules), with.ingest_per_sec, "events/s")
        .baseline("ingest with no rule (before and after)", baseline)
        .aim(Aim::RatioAtLeast { value: 0.9 })
        .record();
    Row::new(format!("Commit → alert stored p99, at {} events/s", args.rate), pct(&mut s, 0.99), "ms").record();
    Row::new("Commit → webhook delivered p99", pct(&mut d, 0.99), "ms").record();
    if s.len() < with.markers || d.len() < with.markers {
        return Err(format!(
            "{} markers committed, {} alerts stored, {} webhooks delivered: something was lost",
            with.markers,
            s.len(),
            d.len()
        ));
    }
    Ok(())
}
