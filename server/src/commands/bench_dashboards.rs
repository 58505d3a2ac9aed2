//! `custos bench dashboards`: the time of each dashboard query on the data
//! directory's ledger (seed it first with `custos demo seed --events N`),
//! over the last day, week and month, against a baseline measured in the
//! same run: the category counts of the month taken from the ledger rows
//! themselves (what the rollups save).

use custos_engine::time::DAY_US;
use std::process::ExitCode;
use std::time::Instant;

use custos_engine::events::Events;
use sea_orm::ConnectionTrait as _;

use super::bench_report::{Aim, Row};
use super::{failed, open_cli_ledger};
use crate::config::Config;

/// Arguments of `custos bench dashboards`.
#[derive(Debug, clap::Args)]
pub struct DashboardsArgs {
    /// Runs per period (the first is a warm-up and not counted).
    #[arg(long, default_value_t = 11)]
    runs: usize,
    /// Skip the baseline (a full count of the month's ledger rows).
    #[arg(long)]
    no_baseline: bool,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    super::bench_report::nearest_rank(sorted, q).copied().unwrap_or(0.0)
}

/// Runs the benchmark.
pub async fn dashboards(config: &Config, args: DashboardsArgs) -> ExitCode {
    let (ledger, tasks) = match open_cli_ledger(config).await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let code = match Events::open(ledger.clone(), config.ingest.limits()).await {
        Ok(events) => run(&events, &args).await,
        Err(e) => failed("cannot open the events service", &e),
    };
    let _ = ledger.shutdown(tasks).await;
    code
}

async fn run(events: &Events, args: &DashboardsArgs) -> ExitCode {
    let ledger = events.ledger();
    let head = match ledger.head().await {
        Ok(h) => h.seq,
        Err(e) => return failed("cannot read the ledger head", &e),
    };
    let now = ledger.now_us();
    println!("ledger: {head} entries; {} runs per period (first not counted)", args.runs.max(2));
    println!("| period | query | p50 ms | p95 ms | max ms |");
    println!("|---|---|---:|---:|---:|");
    let mut month_by_category = 0.0;
    let mut whole_p95 = Vec::new();
    for (label, days) in [("24 h", 1), ("7 days", 7), ("30 days", 30)] {
        let from = now - days * DAY_US;
        let mut times: std::collections::BTreeMap<String, Vec<f64>> = std::collections::BTreeMap::new();
        let mut order = Vec::new();
        for i in 0..args.runs.max(2) {
            let started = Instant::now();
            let a = match events.analytics(from, now).await {
                Ok(a) => a,
                Err(e) => return failed("analytics", &e),
            };
            let all = started.elapsed().as_secs_f64() * 1000.0;
            if i == 0 {
                order = a.queries.iter().map(|q| q.name.clone()).collect();
                continue;
            }
            for q in &a.queries {
                times.entry(q.name.clone()).or_default().push(q.ms);
            }
            times.entry("whole analytics request".into()).or_default().push(all);
        }
        order.push("whole analytics request".into());
        for name in &order {
            let mut v = times.remove(name).unwrap_or_default();
            v.sort_by(f64::total_cmp);
            if days == 30 && name == "volume_by_category" {
                month_by_category = percentile(&v, 0.5);
            }
            if name == "whole analytics request" {
                whole_p95.push((label, percentile(&v, 0.95)));
            }
            println!(
                "| {label} | {name} | {:.1} | {:.1} | {:.1} |",
                percentile(&v, 0.5),
                percentile(&v, 0.95),
                v.last().copied().unwrap_or(0.0)
            );
        }
    }
    let mut v = Vec::new();
    for i in 0..args.runs.max(2) {
        let started = Instant::now();
        if let Err(e) = events.compliance(24).await {
            return failed("compliance", &e);
        }
        if i > 0 {
            v.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    v.sort_by(f64::total_cmp);
    println!(
        "| now | compliance (all checks) | {:.1} | {:.1} | {:.1} |",
        percentile(&v, 0.5),
        percentile(&v, 0.95),
        v.last().copied().unwrap_or(0.0)
    );
    let mut baseline_ms = None;
    if !args.no_baseline {
        let conn = ledger.db().conn();
        let b = conn.get_database_backend();
        let started = Instant::now();
        let rows = conn
            .query_all_raw(custos_engine::storage::stmt_for(
                b,
                "SELECT category, COUNT(*) AS n FROM ledger_entries WHERE occurred_at >= ? AND occurred_at < ? GROUP BY category",
                vec![(now - 30 * DAY_US).into(), now.into()],
            ))
            .await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        baseline_ms = Some(ms);
        match rows {
            Ok(r) => println!(
                "baseline: the month's counts by category from the ledger rows ({} categories): {ms:.0} ms; \
                 from the rollups: {month_by_category:.1} ms ({:.0}x faster)",
                r.len(),
                ms / month_by_category.max(1e-3)
            ),
            Err(e) => return failed("baseline", &e),
        }
    }
    if let Some(b) = baseline_ms {
        Row::new(
            format!("Dashboard: the month's counts by category, from rollups, p50 ({head} entries)"),
            month_by_category,
            "ms",
        )
        .baseline("the same counts from the ledger rows, one run", b)
        .record();
    }
    for (label, p95) in whole_p95 {
        Row::new(format!("Analytics dashboard p95, {label}, whole request ({head} entries)"), p95, "ms")
            .aim(Aim::AtMost { value: 100.0 })
            .record();
    }
    Row::new(format!("Compliance checks p95 ({head} entries)"), percentile(&v, 0.95), "ms").record();
    ExitCode::SUCCESS
}
