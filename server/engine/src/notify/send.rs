//! Sending one message over one channel: a webhook (JSON, signed), a chat's
//! incoming webhook (Slack, Teams, Mattermost) or e-mail (SMTP with
//! STARTTLS, TLS or, for a local relay, none; with authentication).
//!
//! **Webhook signatures.** Each webhook request carries
//! `X-Custos-Timestamp` (Unix seconds) and `X-Custos-Signature:
//! v1=<hex>`, the HMAC-SHA256 under the channel's secret of the timestamp,
//! a `.`, and the exact body bytes. A receiver recomputes it over the body
//! it received, compares in constant time, and refuses a timestamp more
//! than five minutes from its clock (a replay). `Idempotency-Key` is the
//! same on every retry of one message: a receiver drops a repeat.
//!
//! Errors never carry a URL (a chat's URL is its credential) nor a secret.

use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::{Value, json};
use sha2::Sha256;

use super::channels::{ChannelDef, open};
use crate::ledger::Ledger;

/// How long one try may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A message, ready for any channel.
#[derive(Debug, Clone)]
pub struct Message {
    /// The e-mail subject.
    pub subject: String,
    /// The text (e-mail body, chat message).
    pub text: String,
    /// A webhook's JSON body.
    pub json: Value,
    /// The same on every try of this message.
    pub idempotency_key: String,
    /// For e-mail: these addresses instead of the channel's.
    pub to: Vec<String>,
    /// For e-mail: a file attached.
    pub attachment: Option<Attachment>,
}

/// A file an e-mail carries.
#[derive(Clone)]
pub struct Attachment {
    /// Its name.
    pub name: String,
    /// Its media type.
    pub content_type: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment").field("name", &self.name).field("bytes", &self.bytes.len()).finish()
    }
}

/// How one try went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Delivered (a 2xx, or the SMTP server accepted it).
    pub delivered: bool,
    /// The HTTP status or SMTP reply code.
    pub code: Option<u16>,
    /// How long it took.
    pub latency_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
    /// No retry can mend it (the secret does not open, the destination
    /// is refused).
    pub permanent: bool,
}

/// The signature of a webhook body at `timestamp`: `v1=<hex>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(secret) else { return String::new() };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control() || *c == ' ').take(300).collect()
}

/// Sends `m` over `c` (now: Unix seconds, for the signature).
pub async fn send(
    http: &reqwest::Client,
    ledger: &Ledger,
    c: &ChannelDef,
    m: &Message,
    now_secs: i64,
    allow_private: bool,
) -> Outcome {
    let started = Instant::now();
    let r = match c.kind.as_str() {
        "webhook" => webhook(http, ledger, c, m, now_secs, allow_private).await,
        "slack" | "mattermost" | "teams" => chat(http, ledger, c, m, allow_private).await,
        "email" => email(ledger, c, m, allow_private).await,
        other => Err(Failure::Permanent(format!("unknown channel type {other}"))),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    match r {
        Ok(code) => Outcome { delivered: true, code, latency_ms, error: None, permanent: false },
        Err(Failure::Retry(code, e)) => {
            Outcome { delivered: false, code, latency_ms, error: Some(clean(&e)), permanent: false }
        }
        Err(Failure::Permanent(e)) => {
            Outcome { delivered: false, code: None, latency_ms, error: Some(clean(&e)), permanent: true }
        }
    }
}

/// Why a try failed.
pub(crate) enum Failure {
    /// Worth trying again (with the response code, if one came).
    Retry(Option<u16>, String),
    /// Not worth it.
    Permanent(String),
}

pub(crate) type Tried = Result<Option<u16>, Failure>;

/// Whether an address is one a notification may not reach unless the
/// operator allows private destinations: loopback, private (RFC 1918,
/// unique local), link-local (cloud metadata), carrier-grade NAT,
/// multicast, unspecified, broadcast, documentation.
pub fn is_private(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_multicast()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_documentation()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || o[0] == 0
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = a.segments();
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4
            // address: judged by it.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let v4 = std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                return is_private(IpAddr::V4(v4));
            }
            if s[0] == 0x2002 {
                let v4 = std::net::Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
                return is_private(IpAddr::V4(v4));
            }
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Resolves `host:port` and refuses it when any address is private (see
/// [`is_private`]) unless allowed.
/// The addresses `host:port` resolves to, checked (see [`is_private`]);
/// empty when private destinations are allowed (nothing to pin).
pub(crate) async fn check_destination(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<std::net::SocketAddr>, Failure> {
    if allow_private {
        return Ok(Vec::new());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(a) => a.collect(),
        Err(e) => return Err(Failure::Retry(None, format!("cannot resolve the destination: {e}"))),
    };
    if addrs.iter().any(|a| is_private(a.ip())) {
        return Err(Failure::Permanent(
            "the destination is a private, loopback or link-local address, which this server's configuration refuses \
             (allow_private_destinations)"
                .into(),
        ));
    }
    Ok(addrs)
}

/// The client for `url`: when private destinations are refused, one that
/// connects only to the addresses just checked (a second lookup cannot
/// answer otherwise: DNS rebinding).
pub(crate) async fn client_for(
    http: &reqwest::Client,
    url: &str,
    allow_private: bool,
) -> Result<reqwest::Client, Failure> {
    let u = reqwest::Url::parse(url).map_err(|e| Failure::Permanent(format!("not a URL: {e}")))?;
    let host = u.host_str().ok_or_else(|| Failure::Permanent("the URL has no host".into()))?.to_owned();
    let addrs = check_destination(&host, u.port_or_known_default().unwrap_or(443), allow_private).await?;
    if addrs.is_empty() || host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(http.clone());
    }
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Custos/", env!("CARGO_PKG_VERSION")))
        .resolve_to_addrs(&host, &addrs)
        .build()
        .map_err(|e| Failure::Retry(None, format!("cannot make the HTTP client: {e}")))
}

pub(crate) async fn post(req: reqwest::RequestBuilder) -> Tried {
    match req.timeout(TIMEOUT).send().await {
        Ok(res) => {
            let code = res.status().as_u16();
            if res.status().is_success() {
                Ok(Some(code))
            } else {
                // The body is not kept: it may hold what the destination
                // should not tell (an internal service's answer).
                let why = res.status().canonical_reason().unwrap_or("");
                Err(Failure::Retry(Some(code), format!("the receiver answered {code} {why}")))
            }
        }
        Err(e) => {
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "the request failed"
            };
            Err(Failure::Retry(None, format!("{what}: {}", e.without_url())))
        }
    }
}

async fn webhook(
    http: &reqwest::Client,
    ledger: &Ledger,
    c: &ChannelDef,
    m: &Message,
    now_secs: i64,
    allow_private: bool,
) -> Tried {
    let url = c.url.as_deref().ok_or(Failure::Permanent("no URL".to_owned()))?;
    let secret = c.secret.as_ref().ok_or(Failure::Permanent("no secret".to_owned()))?;
    let secret = open(ledger, c, "secret", secret).map_err(Failure::Permanent)?;
    let http = client_for(http, url, allow_private).await?;
    let body = serde_json::to_vec(&m.json).map_err(|e| Failure::Permanent(e.to_string()))?;
    let sig = signature(secret.as_bytes(), now_secs, &body);
    post(
        http.post(url)
            .header("content-type", "application/json")
            .header("x-custos-timestamp", now_secs.to_string())
            .header("x-custos-signature", sig)
            .header("idempotency-key", &m.idempotency_key)
            .body(body),
    )
    .await
}

async fn chat(http: &reqwest::Client, ledger: &Ledger, c: &ChannelDef, m: &Message, allow_private: bool) -> Tried {
    let secret = c.secret.as_ref().ok_or(Failure::Permanent("no incoming-webhook URL".to_owned()))?;
    let url = open(ledger, c, "secret", secret).map_err(Failure::Permanent)?;
    let http = client_for(http, &url, allow_private).await?;
    // Slack, Mattermost and Teams' incoming webhooks all take `text`; what
    // came from events (actor ids, names) must not become mentions or
    // links: `&`, `<` and `>` are escaped as their markup wants.
    let text = m.text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = json!({ "text": text });
    post(http.post(url.as_str()).json(&body)).await
}

async fn email(ledger: &Ledger, c: &ChannelDef, m: &Message, allow_private: bool) -> Tried {
    use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
    let err = Failure::Permanent;
    let host = c.smtp_host.as_deref().ok_or_else(|| Failure::Permanent("no SMTP host".into()))?;
    let from: Mailbox = c.from.as_deref().unwrap_or_default().parse().map_err(|e| err(format!("from: {e}")))?;
    let mut mail = lettre::Message::builder()
        .from(from)
        .subject(&m.subject)
        .message_id(Some(format!("<{}@custos>", m.idempotency_key)));
    for to in if m.to.is_empty() { &c.to } else { &m.to } {
        mail = mail.to(to.parse().map_err(|e| err(format!("to {to}: {e}")))?);
    }
    let mail = match &m.attachment {
        None => mail.header(ContentType::TEXT_PLAIN).body(m.text.clone()),
        Some(a) => {
            let kind = ContentType::parse(&a.content_type).map_err(|e| err(format!("the attachment's type: {e}")))?;
            mail.multipart(
                MultiPart::mixed()
                    .singlepart(SinglePart::plain(m.text.clone()))
                    .singlepart(lettre::message::Attachment::new(a.name.clone()).body(a.bytes.clone(), kind)),
            )
        }
    }
    .map_err(|e| err(e.to_string()))?;
    let tls = c.smtp_tls.as_deref().unwrap_or("starttls");
    let builder = match tls {
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(|e| err(e.to_string()))?,
        "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(|e| err(e.to_string()))?,
    };
    let port = c.smtp_port.unwrap_or(match tls {
        "tls" => 465,
        "none" => 25,
        _ => 587,
    });
    check_destination(host, port, allow_private).await?;
    let mut builder = builder.port(port).timeout(Some(TIMEOUT));
    if let Some(user) = &c.smtp_username {
        let password = match &c.smtp_password {
            Some(s) => open(ledger, c, "smtp_password", s).map_err(Failure::Permanent)?.to_string(),
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    let transport = builder.build();
    match transport.send(mail).await {
        Ok(r) => Ok(Some(u16::from(r.code()))),
        Err(e) => Err(Failure::Retry(e.status().map(u16::from), format!("the SMTP server refused or failed: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn private_destinations_are_recognised_in_every_form() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
        ] {
            assert!(super::is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "2606:4700::6810:85e5", "64:ff9b::5db8:d822", "2002:5db8:d822::1"] {
            assert!(!super::is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_the_timestamp_a_dot_and_the_body() {
        // A value any receiver can reproduce (e.g. `printf '1700000000.{}' |
        // openssl dgst -sha256 -hmac 'a webhook secret!'`).
        let s = super::signature(b"a webhook secret!", 1_700_000_000, b"{}");
        assert_eq!(s, "v1=de54b582d831510b698eea29c5565a4281719585bac6e4234d6e7f8a3da6478d");
        assert_ne!(s, super::signature(b"a webhook secret!", 1_700_000_001, b"{}"), "the timestamp is signed");
        assert_ne!(s, super::signature(b"another secret!!", 1_700_000_000, b"{}"));
    }
}
