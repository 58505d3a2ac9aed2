//! Test support: the test kit's databases and entries under the names the
//! tests use.

pub use custos_testkit::both_backends;
pub use custos_testkit::db::{Backend, KEK, StaticKek, TestDb, config, open_ledger};
pub use custos_testkit::events::{entry as event, fill};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A request a test receiver got: method and path, headers (lower-case
/// names), body.
#[derive(Debug, Clone)]
pub struct Got {
    pub line: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// How a test receiver answers a request: status line and JSON body, and
/// whether to keep the request.
pub type Answer = (&'static str, String, bool);

/// A small HTTP/1.1 server on a local port (one request per connection),
/// answering with `answer`; returns its base URL and what it kept.
pub async fn http_receiver<F>(answer: F) -> (String, Arc<Mutex<Vec<Got>>>)
where
    F: Fn(&Got) -> Answer + Send + Sync + 'static,
{
    http_receiver_holding(Arc::default(), answer).await
}

/// The same, holding each answer `hold` milliseconds after the request was
/// read and kept (a receiver that took a batch and has not answered yet).
pub async fn http_receiver_holding<F>(
    hold: Arc<std::sync::atomic::AtomicU64>,
    answer: F,
) -> (String, Arc<Mutex<Vec<Got>>>)
where
    F: Fn(&Got) -> Answer + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let answer = Arc::new(answer);
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            let (g, answer, hold) = (g.clone(), answer.clone(), hold.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                let (head_end, len) = loop {
                    let n = tcp.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + len {
                    let n = tcp.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let request = Got {
                    line: head.lines().next().unwrap_or_default().to_owned(),
                    headers: head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect(),
                    body: buf[head_end..].to_vec(),
                };
                let (status, body, keep) = answer(&request);
                if keep {
                    g.lock().unwrap().push(request);
                }
                let ms = hold.load(std::sync::atomic::Ordering::SeqCst);
                if ms > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                let _ = tcp
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (url, got)
}

pub use custos_testkit::s3::S3Server;

/// SQLite's plan for a statement: the `detail` of each step.
pub async fn sqlite_plan(db: &custos_engine::storage::Database, sql: &str, values: Vec<sea_orm::Value>) -> Vec<String> {
    use sea_orm::ConnectionTrait as _;
    let conn = db.conn();
    let b = conn.get_database_backend();
    let plan = conn
        .query_all_raw(custos_engine::storage::stmt_for(b, &format!("EXPLAIN QUERY PLAN {sql}"), values))
        .await
        .unwrap();
    plan.iter().map(|r| r.try_get::<String>("", "detail").unwrap()).collect()
}

/// Runs `f` to completion from synchronous code inside a multi-threaded
/// test (a callback such as verification's progress report).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}
