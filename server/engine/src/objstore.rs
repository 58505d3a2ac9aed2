//! Archives, backups and (for replicas) finished background exports in an
//! S3-compatible object store (AWS S3, MinIO, Ceph, Wasabi, …), through the
//! `object_store` crate.
//!
//! Files are always written locally first (the archive and backup
//! directories are their staging areas), then uploaded with a SHA-256
//! checksum the store checks (`x-amz-checksum-sha256`, which S3 requires
//! for buckets under Object Lock) and, when configured, Object Lock
//! retention headers (`x-amz-object-lock-mode`,
//! `x-amz-object-lock-retain-until-date`), so not even the bucket's owner
//! can delete or overwrite the object before its date (`compliance`), or
//! only with a special permission (`governance`). An upload is confirmed
//! by reading the object's size back; an archive's entries are removed
//! from the ledger only after that.
//!
//! Keys: `<prefix>/archives/<name>`, `<prefix>/backups/<name>` and
//! `<prefix>/exports/<name>` (background exports, for 24 hours, unlocked).

use std::path::Path;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, Checksum};
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStoreExt as _, PutPayload, WriteMultipart};
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::io::AsyncReadExt as _;

/// Files up to this size go in one request; larger ones in parts.
const SINGLE_PUT_MAX: u64 = 64 * 1024 * 1024;
/// The size of each part of a larger file.
const PART: usize = 16 * 1024 * 1024;

/// What is kept in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Archive bundles (retention and erasure).
    Archives,
    /// Encrypted backups.
    Backups,
    /// Finished background exports, so that every replica can serve them
    /// (deleted after 24 hours, never locked).
    Exports,
}

impl Kind {
    fn folder(self) -> &'static str {
        match self {
            Kind::Archives => "archives",
            Kind::Backups => "backups",
            Kind::Exports => "exports",
        }
    }
}

/// Object Lock's two modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Nobody can delete or overwrite the object before its date.
    Compliance,
    /// Only holders of `s3:BypassGovernanceRetention` can.
    Governance,
}

impl LockMode {
    /// `compliance` or `governance` (any case); `off` or empty: none.
    pub fn parse(s: &str) -> Result<Option<LockMode>, &'static str> {
        match s.to_ascii_lowercase().as_str() {
            "" | "off" => Ok(None),
            "compliance" => Ok(Some(LockMode::Compliance)),
            "governance" => Ok(Some(LockMode::Governance)),
            _ => Err("must be off, governance or compliance"),
        }
    }

    fn header(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

/// Settings (`[object_store]`).
#[derive(Clone)]
pub struct Settings {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// The store's address when it is not AWS (`https://minio.example:9000`).
    pub endpoint: Option<String>,
    /// The region (`us-east-1` when the store has none).
    pub region: String,
    /// Credentials; without them, the AWS environment (`AWS_ACCESS_KEY_ID`,
    /// instance metadata, …) is used.
    pub access_key_id: Option<String>,
    /// The secret going with `access_key_id`.
    pub secret_access_key: Option<String>,
    /// Lets the endpoint be plain `http://` (a store on the same host).
    pub allow_http: bool,
    /// Object Lock: the mode, and for how many days from the upload.
    pub lock: Option<(LockMode, u32)>,
    /// Keeps the local file after a confirmed upload (else deleted; it is
    /// fetched back when needed).
    pub keep_local: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "[redacted]"))
            .field("allow_http", &self.allow_http)
            .field("lock", &self.lock)
            .field("keep_local", &self.keep_local)
            .finish()
    }
}

/// `s3://bucket/prefix` as (bucket, prefix without slashes at either end).
pub fn parse_url(url: &str) -> Result<(String, String), &'static str> {
    let rest = url.strip_prefix("s3://").ok_or("must start with s3:// (s3://bucket or s3://bucket/prefix)")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !bucket_ok {
        return Err("the bucket name must be 3-63 lower-case letters, digits, '-' or '.'");
    }
    let prefix = prefix.trim_matches('/');
    let prefix_ok = prefix.len() <= 200
        && prefix.split('/').all(|p| {
            prefix.is_empty()
                || (!p.is_empty()
                    && p != "."
                    && p != ".."
                    && p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        });
    if !prefix_ok {
        return Err("the prefix must be folders of letters, digits, '-', '_' or '.' separated by '/'");
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// An S3-compatible store.
pub struct Remote {
    settings: Settings,
    bucket: String,
    prefix: String,
    /// For reads, size checks and deletes (no lock headers).
    plain: AmazonS3,
    /// For downloads passed through to a client, which may take longer
    /// than any fixed timeout (no overall timeout; connecting still has one).
    streaming: AmazonS3,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("bucket", &self.bucket).field("prefix", &self.prefix).finish()
    }
}

/// The store's error, short: what failed and the store's error code (the
/// full text, with the request's address and the store's answer, goes to
/// the log only). Credentials are never in either.
fn store_err(what: &str, e: object_store::Error) -> String {
    let full = e.to_string();
    tracing::warn!(what, error = %full, "object store request failed");
    let code = full.split_once("<Code>").and_then(|(_, rest)| rest.split_once("</Code>")).map(|(c, _)| c);
    match (code, &e) {
        (Some(code), _) => format!("{what}: the store answered {code}"),
        (None, object_store::Error::NotFound { .. }) => format!("{what}: not found in the store"),
        (None, _) => {
            // Without the store's answer (an unreachable host, a timeout):
            // the crate's message up to any response body.
            let short = full.split("<?xml").next().unwrap_or_default().trim_end_matches([':', ' ']);
            format!("{what}: {}", short.chars().take(300).collect::<String>())
        }
    }
}

impl Remote {
    /// Checks the settings and builds the client (no request is made).
    pub fn new(settings: Settings) -> Result<Remote, String> {
        let (bucket, prefix) = parse_url(&settings.url).map_err(|e| format!("object_store.url {e}"))?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plain = Self::builder(&settings, &bucket, HeaderMap::new())
            .build()
            .map_err(|e| store_err("object_store: the client could not be built", e))?;
        let streaming = Self::builder(&settings, &bucket, HeaderMap::new())
            .with_client_options(Self::options(&settings, HeaderMap::new()).with_timeout_disabled())
            .build()
            .map_err(|e| store_err("object_store: the client could not be built", e))?;
        Ok(Remote { settings, bucket, prefix, plain, streaming })
    }

    fn options(s: &Settings, headers: HeaderMap) -> ClientOptions {
        ClientOptions::new()
            .with_allow_http(s.allow_http)
            .with_timeout(Duration::from_secs(300))
            .with_connect_timeout(Duration::from_secs(10))
            .with_default_headers(headers)
    }

    fn builder(s: &Settings, bucket: &str, headers: HeaderMap) -> AmazonS3Builder {
        let options = Self::options(s, headers);
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&s.region)
            .with_allow_http(s.allow_http)
            .with_checksum_algorithm(Checksum::SHA256)
            .with_client_options(options);
        if let Some(e) = &s.endpoint {
            // Path-style addresses (`endpoint/bucket/key`), which every
            // S3-compatible store takes.
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        if let Some(k) = &s.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &s.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        b
    }

    fn key(&self, kind: Kind, name: &str) -> Key {
        let folder = kind.folder();
        if self.prefix.is_empty() {
            Key::from(format!("{folder}/{name}"))
        } else {
            Key::from(format!("{}/{folder}/{name}", self.prefix))
        }
    }

    /// The key of a catalogued file from its `uri`: in this store's bucket
    /// and ending with its name (a file uploaded under another prefix
    /// stays readable after the prefix changes; one in another bucket is
    /// not reachable with this configuration).
    fn key_for(&self, name: &str, uri: &str) -> Result<Key, String> {
        let in_bucket = uri
            .strip_prefix("s3://")
            .and_then(|r| r.strip_prefix(self.bucket.as_str()))
            .and_then(|r| r.strip_prefix('/'));
        match in_bucket {
            Some(key) if key == name || key.ends_with(&format!("/{name}")) => Ok(Key::from(key)),
            _ => Err(format!("{name} is stored at {uri}, outside the configured store {}", self.location())),
        }
    }

    /// Where a file is (`s3://bucket/prefix/archives/NAME`).
    pub fn uri(&self, kind: Kind, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(kind, name))
    }

    /// The Object Lock this store puts on what it uploads.
    pub fn lock(&self) -> Option<(LockMode, u32)> {
        self.settings.lock
    }

    /// `s3://bucket/prefix` (for status pages).
    pub fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// `s3://bucket/prefix` with its Object Lock (for status pages).
    pub fn describe(&self) -> String {
        match self.settings.lock {
            Some((mode, days)) => {
                let unit = if days == 1 { "day" } else { "days" };
                format!("{} (Object Lock: {}, {days} {unit})", self.location(), mode.header().to_lowercase())
            }
            None => self.location(),
        }
    }

    /// Whether local files are kept after their upload.
    pub fn keep_local(&self) -> bool {
        self.settings.keep_local
    }

    /// A catalogued file for a download: `dir/name` when it is there, else
    /// (when the catalogue says it is in the store) streamed from the
    /// store, with no copy on disk.
    pub async fn source(
        remote: Option<&Remote>,
        dir: &Path,
        name: &str,
        (location, uri): (&str, &str),
    ) -> Result<Source, String> {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(Source::Local(path));
        }
        let Some(r) = remote.filter(|_| location == "object_store") else {
            return Err(format!("{name} is not where the catalogue says"));
        };
        let (size, stream) = r.stream(&r.key_for(name, uri)?).await?;
        Ok(Source::Remote(size, stream))
    }

    /// A catalogued file as a local file: `dir/name` when it is there,
    /// else (when the catalogue says it is in the store) downloaded into
    /// `dir/.work` for as long as the returned copy lives.
    pub async fn local_copy(
        remote: Option<&Remote>,
        dir: &Path,
        name: &str,
        (location, uri): (&str, &str),
    ) -> Result<LocalCopy, String> {
        let path = dir.join(name);
        if path.is_file() {
            return Ok(LocalCopy { path, temp: false });
        }
        let Some(r) = remote.filter(|_| location == "object_store") else {
            return Err(format!("{name} is not where the catalogue says"));
        };
        let work = dir.join(".work");
        crate::storage::create_private_dir(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let tmp = work.join(format!("fetch-{}-{name}", uuid::Uuid::now_v7().simple()));
        let copy = LocalCopy { path: tmp, temp: true };
        r.download(&r.key_for(name, uri)?, &copy.path).await?;
        Ok(copy)
    }

    /// Uploads a local file (with its checksum and, if configured, Object
    /// Lock until `now + days`), then reads its size back. Returns its URI.
    /// Up to 64 MiB in one request, checked by the file's SHA-256; larger
    /// files in parts of 16 MiB, each checked by its own SHA-256 (S3's
    /// composite checksum), a failed upload aborted.
    pub async fn upload(&self, kind: Kind, name: &str, path: &Path, now_us: i64) -> Result<String, String> {
        let key = self.key(kind, name);
        let len = tokio::fs::metadata(path).await.map_err(|e| format!("{}: {e}", path.display()))?.len();
        let mut headers = HeaderMap::new();
        if let Some((mode, days)) = self.settings.lock.filter(|_| kind != Kind::Exports) {
            let until = now_us / 1_000_000 + i64::from(days) * 86_400;
            let until = chrono::DateTime::from_timestamp(until, 0).ok_or("the lock's date is out of range")?;
            // S3 takes a locked upload only with a checksum it can check:
            // Content-MD5, or this (the SHA-256 itself is sent as
            // `x-amz-checksum-sha256`).
            headers.insert("x-amz-sdk-checksum-algorithm", HeaderValue::from_static("SHA256"));
            headers.insert("x-amz-object-lock-mode", HeaderValue::from_static(mode.header()));
            headers.insert(
                "x-amz-object-lock-retain-until-date",
                HeaderValue::from_str(&until.format("%Y-%m-%dT%H:%M:%SZ").to_string()).map_err(|e| e.to_string())?,
            );
        }
        // A client carrying the lock headers, for this upload only.
        let store = Self::builder(&self.settings, &self.bucket, headers)
            .build()
            .map_err(|e| store_err("object_store: the client could not be built", e))?;
        let mut file = tokio::fs::File::open(path).await.map_err(|e| format!("{}: {e}", path.display()))?;
        if len <= SINGLE_PUT_MAX {
            let mut buf = Vec::with_capacity(len as usize);
            file.read_to_end(&mut buf).await.map_err(|e| format!("{}: {e}", path.display()))?;
            store.put(&key, PutPayload::from(buf)).await.map_err(|e| store_err("uploading", e))?;
        } else {
            let upload = store.put_multipart(&key).await.map_err(|e| store_err("starting the upload", e))?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut buf = vec![0u8; PART];
            let sent: Result<(), String> = async {
                loop {
                    let n = file.read(&mut buf).await.map_err(|e| format!("{}: {e}", path.display()))?;
                    if n == 0 {
                        return Ok(());
                    }
                    w.wait_for_capacity(2).await.map_err(|e| store_err("uploading a part", e))?;
                    w.write(&buf[..n]);
                }
            }
            .await;
            match sent {
                Ok(()) => {
                    w.finish().await.map_err(|e| store_err("completing the upload", e))?;
                }
                Err(e) => {
                    // The parts sent so far would stay (and be billed).
                    let _ = w.abort().await;
                    return Err(e);
                }
            }
        }
        let meta = self.plain.head(&key).await.map_err(|e| store_err("reading the upload back", e))?;
        if meta.size != len {
            return Err(format!("the store holds {} bytes of {name}, not {len}", meta.size));
        }
        Ok(self.uri(kind, name))
    }

    /// Downloads a file into `to` (created, owner only); its size.
    async fn download(&self, key: &Key, to: &Path) -> Result<u64, String> {
        use futures_util::StreamExt as _;
        use tokio::io::AsyncWriteExt as _;
        let got = self.plain.get(key).await.map_err(|e| store_err("downloading", e))?;
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut out = opts.open(to).await.map_err(|e| format!("{}: {e}", to.display()))?;
        let mut stream = got.into_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| store_err("downloading", e))?;
            n += chunk.len() as u64;
            out.write_all(&chunk).await.map_err(|e| format!("{}: {e}", to.display()))?;
        }
        out.sync_all().await.map_err(|e| format!("{}: {e}", to.display()))?;
        Ok(n)
    }

    /// A file as a stream of its bytes, with its size (a download passed
    /// through without a copy on disk).
    async fn stream(
        &self,
        key: &Key,
    ) -> Result<(u64, futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>), String> {
        use futures_util::StreamExt as _;
        let got = self.streaming.get(key).await.map_err(|e| store_err("downloading", e))?;
        let size = got.meta.size;
        let stream = got.into_stream().map(|r| r.map_err(std::io::Error::other)).boxed();
        Ok((size, stream))
    }

    /// Deletes a catalogued file (refused by the store while it is locked).
    pub async fn delete(&self, name: &str, uri: &str) -> Result<(), String> {
        self.plain.delete(&self.key_for(name, uri)?).await.map_err(|e| store_err("deleting", e))
    }
}

/// Where a download reads from.
pub enum Source {
    /// The local file.
    Local(std::path::PathBuf),
    /// The store's object: its size and its bytes.
    Remote(u64, futures_util::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Local(p) => f.debug_tuple("Local").field(p).finish(),
            Source::Remote(size, _) => f.debug_tuple("Remote").field(size).finish(),
        }
    }
}

/// A file read from where it is kept: the local file, or a temporary
/// download deleted when this is dropped (an open handle keeps reading).
#[derive(Debug)]
pub struct LocalCopy {
    /// The file.
    pub path: std::path::PathBuf,
    temp: bool,
}

impl Drop for LocalCopy {
    fn drop(&mut self) {
        if self.temp {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_plain_prefix() {
        assert_eq!(parse_url("s3://audit-archive").unwrap(), ("audit-archive".into(), String::new()));
        assert_eq!(parse_url("s3://audit.archive/custos/eu/").unwrap(), ("audit.archive".into(), "custos/eu".into()));
        for bad in [
            "audit",
            "s3://",
            "s3://ab",
            "s3://Audit",
            "s3://-a-b",
            "s3://a_b_c",
            "s3://abc/../x",
            "s3://abc/a//b",
            "s3://abc/a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn lock_modes() {
        assert_eq!(LockMode::parse("off").unwrap(), None);
        assert_eq!(LockMode::parse("").unwrap(), None);
        assert_eq!(LockMode::parse("COMPLIANCE").unwrap(), Some(LockMode::Compliance));
        assert_eq!(LockMode::parse("governance").unwrap(), Some(LockMode::Governance));
        assert!(LockMode::parse("legal").is_err());
    }

    #[test]
    fn keys_sit_under_the_prefix_and_secrets_are_not_printed() {
        let s = Settings {
            url: "s3://bucket-1/custos".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            access_key_id: Some("AKIDEXAMPLE".into()),
            secret_access_key: Some("wJalrXUtnFEMI/K7MDENG".into()),
            allow_http: true,
            lock: None,
            keep_local: false,
        };
        assert!(!format!("{s:?}").contains("wJalr"));
        let r = Remote::new(s).unwrap();
        assert_eq!(r.uri(Kind::Archives, "a.ndjson"), "s3://bucket-1/custos/archives/a.ndjson");
        assert_eq!(r.uri(Kind::Backups, "b.cbk"), "s3://bucket-1/custos/backups/b.cbk");
        assert!(!format!("{r:?}").contains("wJalr"));
        // A catalogued URI is followed within the bucket, never outside it.
        let uri = "s3://bucket-1/old-prefix/archives/a.ndjson";
        assert_eq!(r.key_for("a.ndjson", uri).unwrap().as_ref(), "old-prefix/archives/a.ndjson");
        assert!(r.key_for("b.ndjson", uri).is_err());
        assert!(r.key_for("a.ndjson", "s3://bucket-2/custos/archives/a.ndjson").is_err());
        assert!(r.key_for("a.ndjson", "s3://bucket-10/archives/a.ndjson").is_err());
    }
}
