//! `custos bench forward`: how fast SIEM forwarding is, on the real server
//! (started in this process on a fresh SQLite database, with its
//! background forwarder) and real receivers on local ports: a syslog server
//! over TLS (RFC 5425 frames, certificates made for the run) and an HTTP
//! server answering as Splunk's HEC does.
//!
//! 1. **Ingest**, as fast as 8 concurrent clients can, with both
//!    destinations paused: the ingest rate, and a backlog of `--events`.
//! 2. **Catch-up**: each destination resumed alone; the time until its
//!    cursor reaches the head gives its throughput (events/s), checked
//!    against what the receiver counted.
//! 3. **Commit → received** at `--rate` events/s for `--seconds`, both
//!    destinations on: every 100 ms a marker event; per marker, its commit
//!    time (the receipt) and its first arrival at each receiver (the same
//!    machine's clock).

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
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::config::{Config, PolicyReview};

/// Arguments of `custos bench forward`.
#[derive(Debug, clap::Args)]
pub struct ForwardArgs {
    /// The backlog: events ingested while the destinations are paused.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Events per second in the latency phase.
    #[arg(long, default_value_t = 2000)]
    rate: u64,
    /// How long the latency phase sends.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// What a receiver got: event seq -> first arrival (µs), and how many
/// event records arrived in all (repeats included).
#[derive(Default)]
struct Got {
    first: BTreeMap<u64, i64>,
    records: u64,
}

type Shared = Arc<Mutex<Got>>;

fn note(got: &Shared, seq: u64, at: i64) {
    if let Ok(mut g) = got.lock() {
        g.records += 1;
        g.first.entry(seq).or_insert(at);
    }
}

/// A syslog server over TLS reading octet-counted frames.
async fn syslog_receiver(pki: &std::path::Path) -> Result<(u16, Shared), String> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.join("server.pem"))
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_file(pki.join("server.key")).map_err(|e| e.to_string())?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let got: Shared = Arc::default();
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (g, acceptor) = (g.clone(), acceptor.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf: Vec<u8> = Vec::new();
                let mut chunk = vec![0u8; 65536];
                loop {
                    let Ok(n) = tls.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let at = now_us();
                    let mut start = 0;
                    while let Some(sp) = buf[start..].iter().position(|b| *b == b' ') {
                        let Some(len) =
                            std::str::from_utf8(&buf[start..start + sp]).ok().and_then(|s| s.parse::<usize>().ok())
                        else {
                            return;
                        };
                        let body = start + sp + 1;
                        if buf.len() < body + len {
                            break;
                        }
                        let msg = String::from_utf8_lossy(&buf[body..body + len]);
                        if !msg.contains(" custos.checkpoint ")
                            && let Some(i) = msg.find("seq=\"")
                            && let Some(seq) = msg[i + 5..].split('"').next().and_then(|s| s.parse().ok())
                        {
                            note(&g, seq, at);
                        }
                        start = body + len;
                    }
                    buf.drain(..start);
                }
            });
        }
    });
    Ok((port, got))
}

/// An HTTP server answering as a HEC does (keep-alive, one request after
/// another on a connection).
async fn hec_receiver() -> Result<(String, Shared), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let got: Shared = Arc::default();
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 65536];
                loop {
                    let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let Ok(n) = tcp.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse().ok()))
                        .unwrap_or(0);
                    while buf.len() < i + 4 + len {
                        let Ok(n) = tcp.read(&mut chunk).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let at = now_us();
                    for line in buf[i + 4..i + 4 + len].split(|b| *b == b'\n') {
                        if let Ok(v) = serde_json::from_slice::<Value>(line)
                            && v["event"]["type"] == "custos.event"
                            && let Some(seq) = v["fields"]["custos_seq"].as_u64()
                        {
                            note(&g, seq, at);
                        }
                    }
                    buf.drain(..i + 4 + len);
                    let body = r#"{"text":"Success","code":0}"#;
                    let res = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if tcp.write_all(res.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((url, got))
}

fn event(i: u64) -> Value {
    json!({
        "occurred_at": chrono::Utc::now().to_rfc3339(), "category": "authentication",
        "action": "user.login", "outcome": if i.is_multiple_of(7) { "failure" } else { "success" },
        "actor": {"id": format!("user{}", i % 500), "kind": "user", "ip": format!("10.0.{}.{}", (i / 250) % 250, i % 250)},
        "resource": {"type": "account", "id": format!("acct-{}", i % 5000)},
        "source": {"channel": "api", "application": format!("app{}", i % 5)},
        "details": {"n_bench": i, "note": "a realistic detail of some length for the benchmark payload"},
    })
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the benchmark and prints its table.
pub async fn forward(args: ForwardArgs) -> ExitCode {
    match go(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => super::failed("benchmark failed", &e),
    }
}

async fn go(args: ForwardArgs) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("custos-bench-forward-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).map_err(|e| e.to_string())?;
    let made = std::process::Command::new("sh")
        .args(["-c", include_str!("../../../scripts/test-pki.sh"), "test-pki.sh"])
        .arg(&pki)
        .status()
        .map_err(|e| format!("making the test certificates (openssl): {e}"))?;
    if !made.success() {
        return Err("making the test certificates failed (is openssl installed?)".into());
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (syslog_port, syslog_got) = syslog_receiver(&pki).await?;
    let (hec_url, hec_got) = hec_receiver().await?;

    let mut config = Config::for_test(&dir.join("data"));
    config.policies.insert("forwarding".into(), PolicyReview { approvals: Some(0), proposal_ttl_days: None });
    std::fs::create_dir_all(&config.data_dir).map_err(|e| e.to_string())?;
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
    let ca = std::fs::read_to_string(pki.join("ca.pem")).map_err(|e| e.to_string())?;
    let doc = json!({"destinations": [
        {"id": "syslog", "name": "Syslog over TLS", "type": "syslog", "format": "cef", "host": "127.0.0.1",
         "port": syslog_port, "transport": "tls", "ca_pem": ca, "server_name": "localhost",
         "batch_size": 1000, "batch_interval_ms": 0},
        {"id": "hec", "name": "Splunk HEC", "type": "splunk_hec", "format": "json", "url": hec_url,
         "token": {"value": "00000000-0000-0000-0000-000000000000"}, "batch_size": 1000, "batch_interval_ms": 0}
    ]});
    running
        .policies
        .propose(
            &by,
            &held,
            "forwarding",
            NewProposal { content: Some(doc), restores: None, based_on: 0, reason: "benchmark".into() },
        )
        .await
        .map_err(|e| format!("forwarding: {e}"))?;
    let fwd = running.state.forwarder.clone();
    // Both started (cursor at the head), then paused.
    let started = Instant::now();
    while fwd.status().await.map_err(|e| e.to_string())?.destinations.iter().any(|d| d.cursor.is_none()) {
        if started.elapsed() > Duration::from_secs(30) {
            return Err("the destinations did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for d in ["syslog", "hec"] {
        fwd.set_paused(&by, d, true, Some("benchmark backlog".into())).await.map_err(|e| e.to_string())?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. Ingest at full speed: the backlog.
    eprintln!("ingesting {} events (destinations paused)…", args.events);
    let events = running.events.clone();
    let submitter = Submitter { principal: "bench".into() };
    let t = Instant::now();
    let per = args.events / 8;
    let mut tasks = Vec::new();
    for c in 0..8u64 {
        let (events, submitter) = (events.clone(), submitter.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = c * per;
            while i < (c + 1) * per {
                let batch: Vec<Value> = (i..(i + 100).min((c + 1) * per)).map(event).collect();
                events.ingest(&batch, None, &submitter).await.map_err(|e| e.to_string())?;
                i += 100;
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let backlog = per * 8;
    let ingest_per_sec = backlog as f64 / t.elapsed().as_secs_f64();

    // 2. Each destination catches up alone.
    let mut catch_up = BTreeMap::new();
    for (d, got) in [("syslog", &syslog_got), ("hec", &hec_got)] {
        let before = got.lock().map_err(|_| "receiver")?.first.len() as u64;
        fwd.set_paused(&by, d, false, Some("benchmark catch-up".into())).await.map_err(|e| e.to_string())?;
        let head = running.ledger.head().await.map_err(|e| e.to_string())?.seq;
        eprintln!("{d}: catching up with a backlog of {backlog} events…");
        let t = Instant::now();
        loop {
            let s = fwd.status().await.map_err(|e| e.to_string())?;
            if s.destinations.iter().find(|x| x.id == d).and_then(|x| x.cursor).is_some_and(|c| c >= head) {
                break;
            }
            if t.elapsed() > Duration::from_secs(1800) {
                return Err(format!("{d} did not catch up in 30 minutes"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        let received = got.lock().map_err(|_| "receiver")?.first.len() as u64 - before;
        if received < backlog {
            return Err(format!("{d}: {received} of the {backlog} backlog events arrived"));
        }
        catch_up.insert(d, (secs, received as f64 / secs));
    }

    // 3. Commit → received at a steady rate.
    eprintln!("{} events/s for {} s, both destinations on…", args.rate, args.seconds);
    let mut commits: Vec<(u64, i64)> = Vec::new();
    let tick = Duration::from_millis(10);
    let per_tick = (args.rate / 100).max(1);
    let mut next = tokio::time::Instant::now();
    let mut i = 1_000_000_000u64;
    for t in 0..args.seconds * 100 {
        next += tick;
        let batch: Vec<Value> = (0..per_tick).map(|k| event(i + k)).collect();
        i += per_tick;
        let receipts = events.ingest(&batch, None, &submitter).await.map_err(|e| e.to_string())?;
        if t % 10 == 0
            && let Some(r) = receipts.first()
            && let Some(at) = custos_engine::time::parse_rfc3339(&r.recorded_at)
        {
            commits.push((r.seq, at));
        }
        tokio::time::sleep_until(next).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut latency = BTreeMap::new();
    for (d, got) in [("syslog", &syslog_got), ("hec", &hec_got)] {
        let g = got.lock().map_err(|_| "receiver")?;
        let ms: Vec<f64> =
            commits.iter().filter_map(|(seq, at)| g.first.get(seq).map(|r| (r - at) as f64 / 1000.0)).collect();
        if ms.len() < commits.len() {
            return Err(format!("{d}: {} of {} markers arrived", ms.len(), commits.len()));
        }
        latency.insert(d, ms);
    }
    let repeats: BTreeMap<&str, u64> = [("syslog", &syslog_got), ("hec", &hec_got)]
        .iter()
        .map(|(d, g)| (*d, g.lock().map(|g| g.records - g.first.len() as u64).unwrap_or(0)))
        .collect();
    running.shutdown().await.map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);

    println!("| Measure | Value |");
    println!("|---|---|");
    println!("| Ingest (8 clients, batches of 100), destinations paused | {ingest_per_sec:.0} events/s |");
    for (d, label) in [("syslog", "Syslog over TLS (CEF, RFC 5425)"), ("hec", "Splunk HEC (JSON)")] {
        let (secs, rate) = catch_up[d];
        println!(
            "| {label}: catch-up of a {backlog}-event backlog | {secs:.1} s, {rate:.0} events/s ({:.2}× the ingest rate) |",
            rate / ingest_per_sec
        );
        super::bench_report::Row::new(format!("{label}: catch-up of a {backlog}-event backlog"), rate, "events/s")
            .baseline("ingest with destinations paused", ingest_per_sec)
            .record();
    }
    for (d, label) in [("syslog", "Syslog over TLS"), ("hec", "Splunk HEC")] {
        let mut ms = latency[d].clone();
        println!(
            "| {label}: commit → received at {} events/s ({} markers) | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms |",
            args.rate,
            ms.len(),
            pct(&mut ms, 0.5),
            pct(&mut ms, 0.99),
            pct(&mut ms, 1.0)
        );
        super::bench_report::Row::new(
            format!("{label}: commit → received p99, at {} events/s", args.rate),
            pct(&mut ms, 0.99),
            "ms",
        )
        .aim(super::bench_report::Aim::AtMost { value: 1000.0 })
        .record();
    }
    println!("| Events received more than once (syslog, HEC) | {}, {} |", repeats["syslog"], repeats["hec"]);
    Ok(())
}
