//! Key-encryption key (KEK) providers.
//!
//! The KEK never touches the database: it only wraps the data keys and the
//! checkpoint signing key that are stored there. Providers implement
//! [`KekProvider`]; a KMS or Vault provider can implement it later.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::clock::{RandomError, RandomSource};
use crate::ledger::crypto::Kek;

/// Why the KEK could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// No provider is configured.
    #[error(
        "no key-encryption key (KEK) is configured: set CUSTOS_KEK (base64 of 32 bytes) or \
         ledger.kek_file, or create a key file with `custos keys init`"
    )]
    Missing,
    /// The environment variable is empty or unset.
    #[error("the KEK environment variable {0} is not set")]
    EnvUnset(String),
    /// Bad encoding or length.
    #[error("the KEK from {source_name} is invalid: {reason}")]
    Invalid {
        /// Where it came from.
        source_name: String,
        /// What is wrong (never the value).
        reason: &'static str,
    },
    /// The key file could not be read.
    #[error("cannot read the KEK file {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The key file is readable by others.
    #[error(
        "the KEK file {path} is accessible by group or others (mode {mode:o}); \
         restrict it with `chmod 600 {path}`"
    )]
    Permissions {
        /// File path.
        path: String,
        /// Its mode bits.
        mode: u32,
    },
    /// The key file exists already.
    #[error("the KEK file {0} already exists; refusing to overwrite a key")]
    Exists(String),
    /// Writing a new key file failed.
    #[error("cannot write the KEK file {path}: {source}")]
    Write {
        /// File path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// No randomness.
    #[error(transparent)]
    Random(#[from] RandomError),
}

/// Supplies the key-encryption key.
pub trait KekProvider: Send + Sync + fmt::Debug {
    /// Where the key comes from, for messages (never the key itself).
    fn describe(&self) -> String;
    /// Loads the key.
    fn load(&self) -> Result<Kek, KekError>;
}

fn decode_kek(text: &str, source_name: &str) -> Result<Kek, KekError> {
    let invalid = |reason| KekError::Invalid { source_name: source_name.to_owned(), reason };
    let raw = Zeroizing::new(B64.decode(text.trim()).map_err(|_| invalid("not valid base64"))?);
    let bytes: &[u8; 32] = raw.as_slice().try_into().map_err(|_| invalid("must decode to exactly 32 bytes"))?;
    Ok(Kek::from_bytes(bytes))
}

/// A KEK given as base64 in an environment variable (read at start-up).
pub struct EnvKek {
    var: String,
    value: Option<SecretString>,
}

impl fmt::Debug for EnvKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvKek").field("var", &self.var).finish_non_exhaustive()
    }
}

impl EnvKek {
    /// Reads `var` from the process environment.
    pub fn from_env(var: &str) -> Self {
        let value = std::env::var(var).ok().filter(|v| !v.trim().is_empty()).map(SecretString::from);
        EnvKek { var: var.to_owned(), value }
    }

    /// Whether the variable holds anything.
    pub fn is_set(&self) -> bool {
        self.value.is_some()
    }
}

impl KekProvider for EnvKek {
    fn describe(&self) -> String {
        format!("environment variable {}", self.var)
    }
    fn load(&self) -> Result<Kek, KekError> {
        let v = self.value.as_ref().ok_or_else(|| KekError::EnvUnset(self.var.clone()))?;
        decode_kek(v.expose_secret(), &self.describe())
    }
}

/// A KEK in a file (base64 text), which must not be accessible by group or others.
#[derive(Debug, Clone)]
pub struct FileKek {
    path: PathBuf,
}

impl FileKek {
    /// A provider for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileKek { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a new key file with a random KEK, mode 0600. Refuses to overwrite.
    pub fn generate(path: &Path, rng: &dyn RandomSource) -> Result<FileKek, KekError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::storage::create_private_dir(dir)
                .map_err(|source| KekError::Write { path: shown.clone(), source })?;
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        rng.fill(raw.as_mut_slice())?;
        let text = Zeroizing::new(format!("{}\n", B64.encode(raw.as_slice())));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut file = opts.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KekError::Exists(shown.clone())
            } else {
                KekError::Write { path: shown.clone(), source }
            }
        })?;
        file.write_all(text.as_bytes())
            .and_then(|_| file.sync_all())
            .map_err(|source| KekError::Write { path: shown.clone(), source })?;
        Ok(FileKek::new(path))
    }
}

impl KekProvider for FileKek {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
    fn load(&self) -> Result<Kek, KekError> {
        let shown = self.path.display().to_string();
        let meta = std::fs::metadata(&self.path).map_err(|source| KekError::Read { path: shown.clone(), source })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KekError::Permissions { path: shown, mode });
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = Zeroizing::new(
            std::fs::read_to_string(&self.path).map_err(|source| KekError::Read { path: shown.clone(), source })?,
        );
        decode_kek(&text, &self.describe())
    }
}
