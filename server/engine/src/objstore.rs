//! Archives and backups in an S3-compatible object store (AWS S3, MinIO,
//! Ceph, Wasabi, …), through the `object_store` crate.
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
//! Keys: `<prefix>/archives/<name>` and `<prefix>/backups/<name>`.

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
}

impl Kind {
    fn folder(self) -> &'static str {
        match self {
            Kind::Archives => "archives",
            Kind::Backups => "backups",
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
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("bucket", &self.bucket).field("prefix", &self.prefix).finish()
    }
}

/// The store's error, without credentials (the crate never prints them).
fn store_err(what: &str, e: object_store::Error) -> String {
    format!("{what}: {e}")
}

impl Remote {
    /// Checks the settings and builds the client (no request is made).
    pub fn new(settings: Settings) -> Result<Remote, String> {
        let (bucket, prefix) = parse_url(&settings.url).map_err(|e| format!("object_store.url {e}"))?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plain = Self::builder(&settings, &bucket, HeaderMap::new())
            .build()
            .map_err(|e| store_err("object_store: the client could not be built", e))?;
        Ok(Remote { settings, bucket, prefix, plain })
    }

    fn builder(s: &Settings, bucket: &str, headers: HeaderMap) -> AmazonS3Builder {
        let options = ClientOptions::new()
            .with_allow_http(s.allow_http)
            .with_timeout(Duration::from_secs(300))
            .with_connect_timeout(Duration::from_secs(10))
            .with_default_headers(headers);
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
                format!("{} (Object Lock: {}, {days} days)", self.location(), mode.header().to_lowercase())
            }
            None => self.location(),
        }
    }

    /// Whether local files are kept after their upload.
    pub fn keep_local(&self) -> bool {
        self.settings.keep_local
    }

    /// A catalogued file as a local file: `dir/name` when it is there,
    /// else (when the catalogue says it is in the store) downloaded into
    /// `dir/.work` for as long as the returned copy lives.
    pub async fn local_copy(
        remote: Option<&Remote>,
        kind: Kind,
        dir: &Path,
        name: &str,
        location: &str,
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
        r.download(kind, name, &copy.path).await?;
        Ok(copy)
    }

    /// Uploads a local file (with its checksum and, if configured, Object
    /// Lock until `now + days`), then reads its size back. Returns its URI.
    pub async fn upload(&self, kind: Kind, name: &str, path: &Path, now_us: i64) -> Result<String, String> {
        let key = self.key(kind, name);
        let len = tokio::fs::metadata(path).await.map_err(|e| format!("{}: {e}", path.display()))?.len();
        let mut headers = HeaderMap::new();
        if let Some((mode, days)) = self.settings.lock {
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
            loop {
                let n = file.read(&mut buf).await.map_err(|e| format!("{}: {e}", path.display()))?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(2).await.map_err(|e| store_err("uploading a part", e))?;
                w.write(&buf[..n]);
            }
            w.finish().await.map_err(|e| store_err("completing the upload", e))?;
        }
        let meta = self.plain.head(&key).await.map_err(|e| store_err("reading the upload back", e))?;
        if meta.size != len {
            return Err(format!("the store holds {} bytes of {name}, not {len}", meta.size));
        }
        Ok(self.uri(kind, name))
    }

    /// Downloads a file into `to` (created, owner only); its size.
    pub async fn download(&self, kind: Kind, name: &str, to: &Path) -> Result<u64, String> {
        use futures_util::StreamExt as _;
        use tokio::io::AsyncWriteExt as _;
        let got = self.plain.get(&self.key(kind, name)).await.map_err(|e| store_err("downloading", e))?;
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

    /// Deletes a file (refused by the store while it is locked).
    pub async fn delete(&self, kind: Kind, name: &str) -> Result<(), String> {
        self.plain.delete(&self.key(kind, name)).await.map_err(|e| store_err("deleting", e))
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
    }
}
