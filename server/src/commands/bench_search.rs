//! `custos bench search`: first-page searches on the data directory's
//! ledger (seed it with `custos demo seed --events 10000000`), over HTTP on
//! the real server started in this process, each next to the statement the
//! search runs, alone on the database, in the same run (the baseline; the
//! two take turns going first within each kind of search, so that neither
//! always reads pages the other has just warmed).
//!
//! Two kinds, as the performance issue asks: a random one-day window plus
//! one other filter (an action, an actor, `outcome=denied` or a tenant,
//! taken from rows of the ledger itself so that they match what it holds),
//! and an actor alone over all time (no time bound). Newest first, limit
//! 50, as the explorer asks. Windows fall within the events the ledger
//! holds from applications (its own records left out, so a seed made days
//! ago is not measured on the empty days since). The server's answer is
//! checked against the statement's rows. (The server also matches an
//! actor's masked forms; the baseline's statement matches the value as
//! given.)
//!
//! The server runs without backups, scheduled verification or retention
//! runs (its other background tasks run as usual), and only on a ledger that already has a user,
//! so that starting it does not create a first administrator. Recorded in
//! the ledger, as on any server: its start and stop, and the read-only API
//! key the bench creates (valid for an hour, revoked at the end) and its
//! searches.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custos_engine::clock::{OsRandom, SystemClock};
use custos_engine::events::model::Channel;
use custos_engine::events::search::{SearchFilter, build_sql};
use custos_engine::identity::apikey::Scope;
use custos_engine::identity::service::Acting;
use custos_engine::storage::stmt_for;
use custos_engine::time::{DAY_US, rfc3339};
use sea_orm::{ConnectionTrait as _, QueryResult};
use secrecy::ExposeSecret as _;

use super::bench_report::{Aim, Row};
use super::failed;
use crate::config::Config;

/// Arguments of `custos bench search`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Searches with a one-day window and one other filter.
    #[arg(long, default_value_t = 400)]
    queries: usize,
    /// Searches for an actor over all time.
    #[arg(long, default_value_t = 100)]
    unbounded: usize,
}

/// What one kind of search measured.
#[derive(Default)]
struct Times {
    api: Vec<Duration>,
    sql: Vec<Duration>,
    rows: usize,
}

impl Times {
    fn p(&mut self, q: f64) -> (f64, f64) {
        self.api.sort();
        self.sql.sort();
        (ms(percentile(&self.api, q)), ms(percentile(&self.sql, q)))
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    super::bench_report::nearest_rank(sorted, q).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn text(row: &QueryResult, col: &str) -> Option<String> {
    row.try_get::<Option<String>>("", col).ok().flatten()
}

/// Runs the benchmark.
pub async fn search(config: &Config, args: SearchArgs) -> ExitCode {
    let mut config = config.clone();
    config.server.bind = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    (config.server.tls_cert_file, config.server.tls_key_file) = (None, None);
    config.log.filter = "warn".into();
    config.backup.interval_hours = 0;
    config.ledger.verify_interval_secs = 0;
    config.retention.run_at = "off".into();
    match has_users(&config).await {
        Ok(true) => {}
        Ok(false) => {
            eprintln!(
                "custos: this ledger has no user: starting a server on it would create the first administrator. \
                 Create one first (custos user create …)."
            );
            return ExitCode::from(2);
        }
        Err(code) => return code,
    }
    let running = match crate::start_with(&config, Arc::new(SystemClock), Arc::new(OsRandom)).await {
        Ok(r) => r,
        Err(e) => return failed("cannot start the server", &e),
    };
    let acting = Acting::system(Channel::Cli);
    let expires = running.ledger.now_us() + 3600 * 1_000_000;
    let code = match running.identity.create_api_key(&acting, "bench search", &[Scope::Read], Some(expires)).await {
        Ok((summary, key)) => {
            let code = match run(&running, key.expose_secret(), &args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => failed("bench search", &e),
            };
            if let Err(e) = running.identity.revoke_api_key(&acting, &summary.prefix).await {
                eprintln!("custos: could not revoke the bench's API key {}: {e}", summary.prefix);
            }
            code
        }
        Err(e) => failed("cannot create the bench's API key", &e),
    };
    if let Err(e) = running.shutdown().await {
        eprintln!("custos: shutdown: {e}");
    }
    code
}

/// Whether the database holds a user (a new one has no tables yet: none).
async fn has_users(config: &Config) -> Result<bool, ExitCode> {
    let db = crate::open_database(config).await.map_err(|e| failed("cannot open the database", &e))?;
    let conn = db.conn();
    let row =
        conn.query_one_raw(stmt_for(conn.get_database_backend(), "SELECT COUNT(*) AS n FROM users", vec![])).await;
    let n = match row {
        Ok(Some(r)) => r.try_get::<i64>("", "n").unwrap_or(0),
        _ => 0,
    };
    let _ = db.close().await;
    Ok(n > 0)
}

async fn run(running: &crate::Running, key: &str, args: &SearchArgs) -> Result<(), String> {
    let db = running.ledger.db();
    let conn = db.conn();
    let backend = conn.get_database_backend();
    let kind = db.kind().as_str();
    let head = running.ledger.head().await.map_err(|e| e.to_string())?.seq;
    if head < 1000 {
        return Err(format!("the ledger holds {head} entries: seed it first (custos demo seed --events 10000000)"));
    }
    // The applications' events (not the ledger's own records), first and last.
    let mut bounds = Vec::new();
    for order in ["ASC", "DESC"] {
        let row = conn
            .query_one_raw(stmt_for(
                backend,
                &format!(
                    "SELECT occurred_at FROM ledger_entries WHERE (source_app IS NULL OR source_app <> 'custos') \
                     ORDER BY occurred_at {order} LIMIT 1"
                ),
                vec![],
            ))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the ledger holds no application events")?;
        bounds.push(row.try_get::<i64>("", "occurred_at").map_err(|e| e.to_string())?);
    }
    let (lo, hi) = (bounds[0], bounds[1]);
    let mut rng = custos_testkit::rng(42);
    // Filter values from the ledger's own rows, drawn at random seqs, so
    // that common values come up as often as they are common.
    let (mut actions, mut actors, mut tenants) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..200 {
        let seq = 1 + rng.u64(..head);
        let row = conn
            .query_one_raw(stmt_for(
                backend,
                "SELECT action, actor_id, tenant FROM ledger_entries WHERE seq = ?",
                vec![(seq as i64).into()],
            ))
            .await
            .map_err(|e| e.to_string())?;
        if let Some(row) = row {
            actions.extend(text(&row, "action"));
            actors.extend(text(&row, "actor_id"));
            tenants.extend(text(&row, "tenant"));
        }
    }
    if actions.is_empty() || actors.is_empty() {
        return Err("no actions or actors found in sampled rows".into());
    }
    println!(
        "ledger: {head} entries ({kind}), {} to {}; filters from 200 sampled rows: {} actions, {} actors, {} tenants",
        rfc3339(lo),
        rfc3339(hi),
        dedup(&actions),
        dedup(&actors),
        dedup(&tenants)
    );
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::builder().build().map_err(|e| e.to_string())?;
    let mut kinds: std::collections::BTreeMap<&str, Times> = Default::default();
    let mut all = Times::default();
    let one = |pairs: Vec<(String, String)>, sql_first: bool| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let mut f = SearchFilter::from_pairs(&pairs).map_err(|e| format!("{e:?}"))?;
            f.by_time = true; // as GET /api/audit reads
            let (stmt, values) = build_sql(&f, &f.actors, &f.resource_ids, None, 51, backend);
            let sql = || async {
                let t = Instant::now();
                let rows =
                    conn.query_all_raw(stmt_for(backend, &stmt, values.clone())).await.map_err(|e| e.to_string());
                (rows, t.elapsed())
            };
            let url =
                reqwest::Url::parse_with_params(&format!("{base}/api/audit"), &pairs).map_err(|e| e.to_string())?;
            let api = || async {
                let t = Instant::now();
                let res = http.get(url.clone()).bearer_auth(key).send().await.map_err(|e| e.to_string())?;
                let status = res.status();
                let body = res.bytes().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((status, body, t.elapsed()))
            };
            let ((rows, sql), (status, body, api)) = if sql_first {
                let s = sql().await;
                (s, api().await?)
            } else {
                let a = api().await?;
                (sql().await, a)
            };
            let rows = rows?;
            if status != 200 {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            let page: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let n = page["items"].as_array().map_or(0, Vec::len);
            if n != rows.len().min(50) {
                return Err(format!("the API returned {n} rows where its SQL finds {}", rows.len()));
            }
            Ok::<_, String>((api, sql, n))
        }
    };
    // One warm-up of each kind, not counted.
    for q in 0..args.queries + 4 {
        let from = lo + rng.i64(0..(hi - lo - DAY_US).max(1));
        let (label, key, value) = match q % 4 {
            0 => ("action", "action", actions[rng.usize(..actions.len())].clone()),
            1 => ("actor", "actor", actors[rng.usize(..actors.len())].clone()),
            2 => ("outcome", "outcome", "denied".to_owned()),
            _ if !tenants.is_empty() => ("tenant", "tenant", tenants[rng.usize(..tenants.len())].clone()),
            _ => ("action", "action", actions[rng.usize(..actions.len())].clone()),
        };
        let pairs = vec![
            ("from".to_owned(), rfc3339(from)),
            ("to".to_owned(), rfc3339(from + DAY_US)),
            (key.to_owned(), value),
            ("limit".to_owned(), "50".to_owned()),
        ];
        let (api, sql, n) = one(pairs, (q / 4) % 2 == 0).await?;
        if q < 4 {
            continue;
        }
        let t = kinds.entry(label).or_default();
        t.api.push(api);
        t.sql.push(sql);
        t.rows += n;
        all.api.push(api);
        all.sql.push(sql);
        all.rows += n;
    }
    let mut unbounded = Times::default();
    for q in 0..args.unbounded + 1 {
        let actor = actors[rng.usize(..actors.len())].clone();
        let pairs = vec![("actor".to_owned(), actor), ("limit".to_owned(), "50".to_owned())];
        let (api, sql, n) = one(pairs, q % 2 == 1).await?;
        if q > 0 {
            unbounded.api.push(api);
            unbounded.sql.push(sql);
            unbounded.rows += n;
        }
    }
    println!(
        "| search, first page (limit 50), {head} entries, {kind} | queries | rows per page | API p50 / p95 ms | its SQL alone p50 / p95 ms | p95 ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let line = |label: &str, t: &mut Times| {
        let n = t.api.len().max(1);
        let rows = t.rows as f64 / n as f64;
        let ((a50, s50), (a95, s95)) = (t.p(0.5), t.p(0.95));
        println!(
            "| {label} | {} | {rows:.1} | {a50:.1} / {a95:.1} | {s50:.1} / {s95:.1} | {:.2} |",
            t.api.len(),
            a95 / s95.max(1e-3)
        );
        (a95, s95)
    };
    let (a95, s95) = line("one-day window + one filter", &mut all);
    for (label, t) in kinds.iter_mut() {
        line(&format!("+ {label}"), t);
    }
    let (u95, us95) = line("actor alone, all time", &mut unbounded);
    let db_name = if kind == "sqlite" { "SQLite" } else { "PostgreSQL" };
    Row::new(format!("{db_name} search p95, one-day window + one filter ({head} entries)"), a95, "ms")
        .baseline("its SQL alone, p95", s95)
        .aim(Aim::AtMost { value: 50.0 })
        .record();
    Row::new(format!("{db_name} search p95, actor alone, all time ({head} entries)"), u95, "ms")
        .baseline("its SQL alone, p95", us95)
        .aim(Aim::AtMost { value: 50.0 })
        .record();
    Ok(())
}

fn dedup(v: &[String]) -> usize {
    v.iter().collect::<std::collections::BTreeSet<_>>().len()
}
