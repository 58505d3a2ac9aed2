//! Sending a batch to one destination: syslog over TLS, TCP (RFC 5425
//! octet counting) or UDP (one datagram per message, RFC 5426), Splunk's
//! HTTP Event Collector (with indexer acknowledgement when asked), or an
//! HTTP webhook (a JSON array or NDJSON, gzip, bearer or HMAC signature).
//!
//! Errors never carry a secret or a response body.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use super::dest::DestinationDef;
use super::format::{self, Record};
use crate::ledger::Ledger;
use crate::notify::send::{Failure, check_destination, client_for, post, signature};

/// How long connecting, writing or one HTTP request may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long HEC indexer acknowledgement is awaited.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// One item of a batch: an event or a checkpoint, formatted.
#[derive(Debug, Clone)]
pub struct Item {
    /// The record.
    pub record: Record,
    /// The event's ledger position (a checkpoint: its tree size, which is
    /// not an event's position: see `checkpoint`).
    pub seq: u64,
    /// A signed checkpoint, not an event.
    pub checkpoint: bool,
    /// The event's id (a checkpoint: `checkpoint-<size>`).
    pub id: String,
    /// The event's time (RFC 3339).
    pub time: String,
    /// The action (a checkpoint: `custos.checkpoint`).
    pub action: String,
    /// The severity.
    pub severity: String,
}

/// Why a send failed: retried later unless permanent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// For people (no secret, no body).
    pub message: String,
    /// The HTTP status, if one came.
    pub code: Option<u16>,
    /// Retrying cannot mend it (a secret that does not open, a refused
    /// destination): the destination waits for its policy to change.
    pub permanent: bool,
}

impl From<Failure> for SendError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Retry(code, message) => SendError { message, code, permanent: false },
            Failure::Permanent(message) => SendError { message, code: None, permanent: true },
        }
    }
}

fn retry(message: impl Into<String>) -> SendError {
    SendError { message: message.into(), code: None, permanent: false }
}

fn permanent(message: impl Into<String>) -> SendError {
    SendError { message: message.into(), code: None, permanent: true }
}

/// A syslog stream kept open between batches.
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Whether the peer is still there: not closed, not reset. Read
    /// through the TLS layer (a session ticket or `close_notify` the server
    /// sent is taken in), without waiting. Syslog has no acknowledgement:
    /// a batch counts as delivered only once the stream is seen alive a
    /// while after it was written.
    pub async fn alive(&mut self) -> bool {
        use tokio::io::AsyncReadExt as _;
        let mut b = [0u8; 512];
        for _ in 0..64 {
            let r = match self {
                Stream::Tcp(t) => tokio::time::timeout(Duration::ZERO, t.read(&mut b)).await,
                Stream::Tls(t) => tokio::time::timeout(Duration::ZERO, t.read(&mut b)).await,
            };
            match r {
                // Nothing to read: the connection stands.
                Err(_) => return true,
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                // A syslog server sends nothing of its own: taken in, and
                // looked at again.
                Ok(Ok(_)) => {}
            }
        }
        true
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(t) => {
                t.write_all(bytes).await?;
                t.flush().await
            }
            Stream::Tls(t) => {
                t.write_all(bytes).await?;
                t.flush().await
            }
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Tcp(_) => "Stream::Tcp",
            Stream::Tls(_) => "Stream::Tls",
        })
    }
}

/// The TLS client configuration of a syslog destination.
fn tls_config(ledger: &Ledger, d: &DestinationDef) -> Result<rustls::ClientConfig, SendError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    match &d.ca_pem {
        Some(pem) => {
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let c = c.map_err(|e| permanent(format!("ca_pem: {e}")))?;
                roots.add(c).map_err(|e| permanent(format!("ca_pem: {e}")))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err(permanent("no CA certificate to check the server's certificate against"));
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    match (&d.client_cert_pem, &d.client_key) {
        (Some(chain), Some(_)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| permanent(format!("client_cert_pem: {e}")))?;
            let key = d.open(ledger, "client_key").map_err(permanent)?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|_| permanent("client_key: not a PEM private key"))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| permanent(format!("client certificate: {e}")))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Opens a syslog stream (TCP or TLS).
pub async fn connect(ledger: &Ledger, d: &DestinationDef, allow_private: bool) -> Result<Stream, SendError> {
    let host = d.host.as_deref().unwrap_or_default();
    let port = d.syslog_port();
    let addrs = check_destination(host, port, allow_private).await.map_err(SendError::from)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::time::timeout(TIMEOUT, async {
        if addrs.is_empty() { TcpStream::connect((bare, port)).await } else { TcpStream::connect(&addrs[..]).await }
    })
    .await
    .map_err(|_| retry("timed out connecting to the syslog server"))?
    .map_err(|e| retry(format!("could not connect to the syslog server: {e}")))?;
    let _ = tcp.set_nodelay(true);
    if d.transport() != "tls" {
        return Ok(Stream::Tcp(tcp));
    }
    let config = tls_config(ledger, d)?;
    let name = d.server_name.clone().unwrap_or_else(|| bare.to_owned());
    let name = rustls::pki_types::ServerName::try_from(name)
        .map_err(|_| permanent("server_name: not a host name or address"))?;
    let tls = tokio::time::timeout(TIMEOUT, tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp))
        .await
        .map_err(|_| retry("timed out in the TLS handshake"))?
        .map_err(|e| retry(format!("the TLS handshake failed: {e}")))?;
    Ok(Stream::Tls(Box::new(tls)))
}

/// This machine's name for the HOSTNAME field.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "custos".into())
}

/// The RFC 5424 messages of a batch.
pub fn syslog_messages(d: &DestinationDef, hostname: &str, items: &[Item]) -> Vec<String> {
    let host = d.hostname.as_deref().unwrap_or(hostname);
    items
        .iter()
        .map(|i| {
            let h = format::SyslogHeader {
                severity: &i.severity,
                timestamp: &i.time,
                hostname: host,
                app: "custos",
                msgid: &i.action,
                seq: i.seq,
                checkpoint: i.checkpoint,
                id: &i.id,
            };
            format::syslog(&h, &i.record.line())
        })
        .collect()
}

/// Writes a batch on a syslog stream, octet-counted.
pub async fn syslog_stream(stream: &mut Stream, messages: &[String]) -> Result<(), SendError> {
    let mut bytes = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
    for m in messages {
        bytes.extend_from_slice(&format::octet_frame(m));
    }
    tokio::time::timeout(TIMEOUT, stream.write_all(&bytes))
        .await
        .map_err(|_| retry("timed out writing to the syslog server"))?
        .map_err(|e| retry(format!("writing to the syslog server failed: {e}")))
}

/// Sends a batch over UDP, one datagram per message, each cut at the
/// size cap; answers how many were cut.
pub async fn syslog_udp(d: &DestinationDef, messages: &[String], allow_private: bool) -> Result<u64, SendError> {
    let host = d.host.as_deref().unwrap_or_default();
    let port = d.syslog_port();
    let addrs = check_destination(host, port, allow_private).await.map_err(SendError::from)?;
    let target = match addrs.first() {
        Some(a) => *a,
        None => tokio::net::lookup_host((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .map_err(|e| retry(format!("cannot resolve the syslog server: {e}")))?
            .next()
            .ok_or_else(|| retry("the syslog server's name resolves to nothing"))?,
    };
    let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let sock = tokio::net::UdpSocket::bind(bind).await.map_err(|e| retry(format!("cannot open a UDP socket: {e}")))?;
    let cap = d.udp_max_bytes.unwrap_or(2048) as usize;
    let mut cut = 0;
    for m in messages {
        let mut b = m.as_bytes();
        if b.len() > cap {
            let mut end = cap;
            while !m.is_char_boundary(end) {
                end -= 1;
            }
            b = &b[..end];
            cut += 1;
        }
        sock.send_to(b, target).await.map_err(|e| retry(format!("sending over UDP failed: {e}")))?;
    }
    Ok(cut)
}

/// The HEC channel of a destination.
pub fn hec_channel(d: &DestinationDef) -> String {
    d.hec_channel.clone().unwrap_or_else(|| {
        let h = crate::notify::channels::binding_of(&format!("hec-channel\n{}", d.id));
        uuid::Uuid::from_u64_pair(h, h.rotate_left(32) ^ 0x5bd1_e995).to_string()
    })
}

fn gzip(body: &[u8]) -> Result<Vec<u8>, SendError> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(body).map_err(|e| retry(e.to_string()))?;
    z.finish().map_err(|e| retry(e.to_string()))
}

/// The HEC body of a batch: one JSON object per item, concatenated.
pub fn hec_body(d: &DestinationDef, hostname: &str, items: &[Item]) -> Vec<u8> {
    let mut body = Vec::new();
    for i in items {
        let secs = crate::time::parse_rfc3339(&i.time).unwrap_or(0) as f64 / 1e6;
        let mut o = json!({
            "time": secs, "host": d.hostname.as_deref().unwrap_or(hostname), "source": "custos",
            "sourcetype": d.sourcetype.as_deref().unwrap_or("custos:audit"),
            "event": i.record.value(),
            "fields": if i.checkpoint {
                json!({"custos_tree_size": i.seq, "custos_id": i.id})
            } else {
                json!({"custos_seq": i.seq, "custos_id": i.id})
            },
        });
        if let Some(ix) = &d.index {
            o["index"] = json!(ix);
        }
        body.extend_from_slice(o.to_string().as_bytes());
        body.push(b'\n');
    }
    body
}

/// Sends a batch to a HEC; with `hec_ack`, waits until the indexers
/// acknowledge it.
pub async fn hec(
    http: &reqwest::Client,
    ledger: &Ledger,
    d: &DestinationDef,
    hostname: &str,
    items: &[Item],
    allow_private: bool,
) -> Result<Option<u16>, SendError> {
    let base = d.url.as_deref().unwrap_or_default().trim_end_matches('/').to_owned();
    let token = d.open(ledger, "token").map_err(permanent)?;
    let http = client_for(http, &base, allow_private).await.map_err(SendError::from)?;
    let channel = hec_channel(d);
    let mut body = hec_body(d, hostname, items);
    let mut req = http
        .post(format!("{base}/services/collector/event"))
        .header("authorization", format!("Splunk {}", token.as_str()))
        .header("x-splunk-request-channel", &channel)
        .header("content-type", "application/json");
    if d.gzip {
        body = gzip(&body)?;
        req = req.header("content-encoding", "gzip");
    }
    let res = req
        .body(body)
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| retry(format!("the request failed: {}", e.without_url())))?;
    let code = res.status().as_u16();
    if !res.status().is_success() {
        let why = res.status().canonical_reason().unwrap_or("");
        // A refused token does not mend by itself; a refused body (400) is
        // the batch's: it is split until the event at fault is found.
        let permanent = matches!(code, 401 | 403);
        return Err(SendError { message: format!("the collector answered {code} {why}"), code: Some(code), permanent });
    }
    if !d.hec_ack {
        return Ok(Some(code));
    }
    let answer = capped_json(res).await;
    let Some(ack) = answer.get("ackId").and_then(Value::as_u64) else {
        return Err(permanent("hec_ack is on but the collector gave no ackId (turn on indexer acknowledgement)"));
    };
    let started = std::time::Instant::now();
    while started.elapsed() < ACK_WAIT {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = http
            .post(format!("{base}/services/collector/ack"))
            .header("authorization", format!("Splunk {}", token.as_str()))
            .header("x-splunk-request-channel", &channel)
            .json(&json!({"acks": [ack]}))
            .timeout(TIMEOUT)
            .send()
            .await;
        if let Ok(r) = r
            && r.status().is_success()
        {
            let v = capped_json(r).await;
            if v["acks"][ack.to_string()].as_bool() == Some(true) {
                return Ok(Some(code));
            }
        }
    }
    Err(retry(format!("the indexers did not acknowledge the batch within {} s", ACK_WAIT.as_secs())))
}

/// A small JSON answer (at most 64 KiB read; more is not an answer).
async fn capped_json(mut res: reqwest::Response) -> Value {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() > 65_536 {
            return Value::Null;
        }
    }
    serde_json::from_slice(&body).unwrap_or_default()
}

/// Sends a batch to a webhook.
pub async fn webhook(
    http: &reqwest::Client,
    ledger: &Ledger,
    d: &DestinationDef,
    items: &[Item],
    now_secs: i64,
    allow_private: bool,
) -> Result<Option<u16>, SendError> {
    let url = d.url.as_deref().unwrap_or_default();
    let http = client_for(http, url, allow_private).await.map_err(SendError::from)?;
    let (mut body, kind) = if d.body.as_deref() == Some("ndjson") {
        let mut b = Vec::new();
        for i in items {
            b.extend_from_slice(i.record.value().to_string().as_bytes());
            b.push(b'\n');
        }
        (b, "application/x-ndjson")
    } else {
        let all: Vec<Value> = items.iter().map(|i| i.record.value()).collect();
        (serde_json::to_vec(&all).map_err(|e| retry(e.to_string()))?, "application/json")
    };
    let mut req = http.post(url).header("content-type", kind);
    // The ledger positions of the events in the batch (checkpoints carry
    // tree sizes instead).
    let mut seqs = items.iter().filter(|i| !i.checkpoint).map(|i| i.seq);
    if let Some(first) = seqs.next() {
        let last = seqs.next_back().unwrap_or(first);
        req = req.header("x-custos-first-seq", first.to_string()).header("x-custos-last-seq", last.to_string());
    }
    if d.gzip {
        body = gzip(&body)?;
        req = req.header("content-encoding", "gzip");
    }
    match d.auth.as_deref().unwrap_or("hmac") {
        "bearer" => {
            let s = d.open(ledger, "secret").map_err(permanent)?;
            req = req.header("authorization", format!("Bearer {}", s.as_str()));
        }
        "hmac" => {
            // Signed over the bytes sent (compressed when gzip is on).
            let s = d.open(ledger, "secret").map_err(permanent)?;
            req = req
                .header("x-custos-timestamp", now_secs.to_string())
                .header("x-custos-signature", signature(s.as_bytes(), now_secs, &body));
        }
        _ => {}
    }
    post(req.body(body)).await.map_err(SendError::from)
}
