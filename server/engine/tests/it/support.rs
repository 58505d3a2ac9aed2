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

/// An S3 API server (moto, from PyPI: `make test-tools` installs it in
/// `~/.cache/custos/pyvenv`) on a local port, stopped when dropped.
pub struct S3Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let bin = format!("{}/.cache/custos/pyvenv/bin/moto_server", std::env::var("HOME").unwrap_or_default());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} (make test-tools installs moto): {e}"));
        let server = S3Server { child, endpoint: format!("http://127.0.0.1:{port}") };
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("moto did not start listening on port {port} within 30 s");
    }

    /// Creates a bucket, with Object Lock enabled if asked.
    pub async fn bucket(&self, name: &str, object_lock: bool) {
        let mut req = reqwest::Client::new().put(format!("{}/{name}", self.endpoint));
        if object_lock {
            req = req.header("x-amz-bucket-object-lock-enabled", "true");
        }
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "creating bucket {name}: {}", res.text().await.unwrap());
    }

    /// The store's settings for `s3://bucket/prefix`.
    pub fn settings(
        &self,
        url: &str,
        lock: Option<(custos_engine::objstore::LockMode, u32)>,
    ) -> custos_engine::objstore::Settings {
        custos_engine::objstore::Settings {
            url: url.into(),
            endpoint: Some(self.endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: Some("custos-test".into()),
            secret_access_key: Some("custos-test-secret".into()),
            allow_http: true,
            lock,
            keep_local: false,
        }
    }

    /// What an independent client (boto3, which comes with moto) sees of
    /// an object: `{"status": 200|404, "size", "lock_mode", "lock_until",
    /// "version", "delete_version": "ok" or the error code}` (the last
    /// tries to delete the object's version, which a lock refuses).
    pub fn inspect(&self, bucket: &str, key: &str, try_delete: bool) -> serde_json::Value {
        let python = format!("{}/.cache/custos/pyvenv/bin/python", std::env::var("HOME").unwrap_or_default());
        let script = r#"
import json, sys, boto3, botocore
endpoint, bucket, key, try_delete = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="custos-test", aws_secret_access_key="custos-test-secret")
out = {}
try:
    h = s3.head_object(Bucket=bucket, Key=key)
    out.update(status=200, size=h["ContentLength"], lock_mode=h.get("ObjectLockMode"),
               lock_until=h["ObjectLockRetainUntilDate"].isoformat() if "ObjectLockRetainUntilDate" in h else None,
               version=h.get("VersionId"))
    if try_delete:
        try:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=h.get("VersionId"))
            out["delete_version"] = "ok"
        except botocore.exceptions.ClientError as e:
            out["delete_version"] = e.response["Error"]["Code"]
except botocore.exceptions.ClientError as e:
    out["status"] = int(e.response["ResponseMetadata"]["HTTPStatusCode"])
print(json.dumps(out))
"#;
        let out = std::process::Command::new(&python)
            .args(["-c", script, &self.endpoint, bucket, key, if try_delete { "1" } else { "0" }])
            .output()
            .unwrap_or_else(|e| panic!("{python} with boto3 (make test-tools installs moto): {e}"));
        assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
