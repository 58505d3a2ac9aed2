//! API keys: create, list, revoke, authenticate; the noise gate's summaries.

use super::*;
use crate::time::MINUTE_US;

impl Identity {
    // --- API keys -------------------------------------------------------------

    /// Creates an API key; the token is returned once and never stored.
    pub async fn create_api_key(
        &self,
        actor: &Acting,
        name: &str,
        scopes: &[Scope],
        expires_us: Option<i64>,
    ) -> Result<(ApiKeySummary, SecretString), IdentityError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 80 {
            return Err(invalid("name", "must be 1 to 80 characters"));
        }
        if scopes.is_empty() {
            return Err(invalid("scopes", "choose at least one of ingest, read"));
        }
        if expires_us.is_some_and(|e| e <= self.now()) {
            return Err(invalid("expires_at", "must be in the future"));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let granted = ApiPrincipal { key_id: 0, prefix: String::new(), name: String::new(), scopes: scopes.clone() };
        need_authority(actor, &granted.permissions(), "a key with these scopes")?;
        let token = apikey::generate(self.rng.as_ref())?;
        let scope_text = scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
        let resource = ("api_key", Some(token.prefix.clone()));
        let details = serde_json::json!({ "name": name, "scopes": scope_text, "expires_at_us": expires_us });
        let recorded = self.record_change(actor, "apikey.create", resource.clone(), details).await?;
        let created_by = if actor.actor.kind == "user" { actor.actor.id.parse::<i64>().ok() } else { None };
        let now = self.now();
        let id = self
            .apply(actor, "apikey.create", recorded, resource, async {
                let row = self
                    .db
                    .conn()
                    .query_one_raw(self.db.stmt(
                        "INSERT INTO api_keys (prefix, secret_hash, name, scopes, created_by, created_at, expires_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        vec![
                            token.prefix.clone().into(),
                            token.hash.to_vec().into(),
                            name.to_owned().into(),
                            scope_text.clone().into(),
                            created_by.into(),
                            now.into(),
                            expires_us.into(),
                        ],
                    ))
                    .await?
                    .ok_or_else(|| IdentityError::Conflict("key was not created".into()))?;
                Ok(row.try_get::<i64>("", "id")?)
            })
            .await?;
        let summary = ApiKeySummary {
            id,
            prefix: token.prefix.clone(),
            name: name.to_owned(),
            scopes,
            created_us: now,
            expires_us,
            revoked_us: None,
            last_used_us: None,
        };
        Ok((summary, token.token))
    }

    /// All API keys (never their secrets).
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeySummary>, IdentityError> {
        let rows = self
            .db
            .conn()
            .query_all_raw(self.db.stmt(
                "SELECT id, prefix, name, scopes, created_at, expires_at, revoked_at, last_used_at FROM api_keys \
                 ORDER BY created_at DESC",
                vec![],
            ))
            .await?;
        /// An `api_keys` row, without its secret.
        #[derive(sea_orm::FromQueryResult)]
        struct KeyRecord {
            id: i64,
            prefix: String,
            name: String,
            scopes: String,
            created_at: i64,
            expires_at: Option<i64>,
            revoked_at: Option<i64>,
            last_used_at: Option<i64>,
        }
        use sea_orm::FromQueryResult as _;
        rows.iter()
            .map(|r| {
                let k = KeyRecord::from_query_result(r, "")?;
                Ok(ApiKeySummary {
                    id: k.id,
                    prefix: k.prefix,
                    name: k.name,
                    scopes: k.scopes.split_whitespace().filter_map(Scope::parse).collect(),
                    created_us: k.created_at,
                    expires_us: k.expires_at,
                    revoked_us: k.revoked_at,
                    last_used_us: k.last_used_at,
                })
            })
            .collect()
    }

    /// Revokes a key at once.
    pub async fn revoke_api_key(&self, actor: &Acting, prefix: &str) -> Result<(), IdentityError> {
        let key = self
            .list_api_keys()
            .await?
            .into_iter()
            .find(|k| k.prefix == prefix)
            .ok_or_else(|| IdentityError::NotFound(format!("API key {prefix}")))?;
        if key.revoked_us.is_some() {
            return Err(IdentityError::Conflict(format!("API key {prefix} is already revoked")));
        }
        let held =
            ApiPrincipal { key_id: key.id, prefix: String::new(), name: String::new(), scopes: key.scopes.clone() };
        need_authority(actor, &held.permissions(), &format!("revoking API key {prefix}"))?;
        let resource = ("api_key", Some(key.prefix.clone()));
        let recorded = self
            .record_change(actor, "apikey.revoke", resource.clone(), serde_json::json!({ "name": key.name }))
            .await?;
        self.apply(actor, "apikey.revoke", recorded, resource, async {
            self.db
                .conn()
                .execute_raw(
                    self.db.stmt(
                        "UPDATE api_keys SET revoked_at = ? WHERE id = ?",
                        vec![self.now().into(), key.id.into()],
                    ),
                )
                .await?;
            // Refused here from now on; on other replicas once their
            // cached check is older than KEY_CACHE_US.
            self.key_cache.clear();
            Ok(())
        })
        .await
    }

    /// Authenticates a bearer token. A refused token is recorded (without
    /// the token; with its prefix when it has one) once per source, reason
    /// and minute, the others counted in that minute's summary; beyond the
    /// limit a source's bad tokens are answered 429 and not recorded.
    pub async fn authenticate_api_key(&self, token: &str, actor: &Acting) -> Result<KeyCheck, IdentityError> {
        // The lookup is one indexed read; what a flood of bad keys must not
        // cost is a ledger write each (and a valid key from the same address
        // must still work), so the gate is on the refusals.
        let source = throttle_key(actor);
        let refuse = |reason: &'static str, prefix: Option<String>| async move {
            match self.noise.admit(NoiseKind::RefusedApiKey, &source, reason) {
                Verdict::Record => {
                    let mut a = actor.clone();
                    a.actor.id = prefix.clone().unwrap_or_else(|| "anonymous".into());
                    a.actor.kind = "api_key".into();
                    let _ = self
                        .record(
                            &a,
                            "security",
                            "apikey.use",
                            Outcome::Denied,
                            Severity::Warning,
                            ("api_key", prefix),
                            serde_json::json!({ "reason": reason }),
                        )
                        .await;
                    Ok(KeyCheck::Refused)
                }
                Verdict::Count => Ok(KeyCheck::Refused),
                Verdict::Refuse { retry_after_secs } => Ok(KeyCheck::Throttled { retry_after_secs }),
            }
        };
        let Some(prefix) = apikey::prefix_of(token) else { return refuse("malformed key", None).await };
        let digest = apikey::hash(token);
        let now = self.now();
        let generation = match self.key_cache.get(&digest, now) {
            Ok(principal) => return Ok(KeyCheck::Valid(principal)),
            Err(generation) => generation,
        };
        let row = self
            .db
            .conn()
            .query_one_raw(self.db.stmt(
                "SELECT id, secret_hash, name, scopes, expires_at, revoked_at, last_used_at FROM api_keys WHERE prefix = ?",
                vec![prefix.to_owned().into()],
            ))
            .await?;
        let Some(r) = row else { return refuse("unknown key", Some(prefix.to_owned())).await };
        let stored: Vec<u8> = r.try_get("", "secret_hash")?;
        if !bool::from(digest.as_slice().ct_eq(&stored)) {
            return refuse("wrong secret", Some(prefix.to_owned())).await;
        }
        if r.try_get::<Option<i64>>("", "revoked_at")?.is_some() {
            return refuse("revoked", Some(prefix.to_owned())).await;
        }
        let expires_at: Option<i64> = r.try_get("", "expires_at")?;
        if expires_at.is_some_and(|e| e <= now) {
            return refuse("expired", Some(prefix.to_owned())).await;
        }
        let id: i64 = r.try_get("", "id")?;
        // Last use to the minute: one write per key per minute, not per call.
        let last: Option<i64> = r.try_get("", "last_used_at")?;
        if last.is_none_or(|l| now - l >= MINUTE_US) {
            self.db
                .conn()
                .execute_raw(
                    self.db.stmt("UPDATE api_keys SET last_used_at = ? WHERE id = ?", vec![now.into(), id.into()]),
                )
                .await?;
        }
        let scopes: String = r.try_get("", "scopes")?;
        let principal = ApiPrincipal {
            key_id: id,
            prefix: prefix.to_owned(),
            name: r.try_get("", "name")?,
            scopes: scopes.split_whitespace().filter_map(Scope::parse).collect(),
        };
        self.key_cache.put(generation, digest, now, expires_at, principal.clone());
        Ok(KeyCheck::Valid(principal))
    }

    /// Whether an API key is still usable (not revoked, not expired): live
    /// streams check it again every few seconds.
    pub async fn api_key_usable(&self, key_id: i64) -> Result<bool, IdentityError> {
        let row = self
            .db
            .conn()
            .query_one_raw(
                self.db.stmt("SELECT expires_at, revoked_at FROM api_keys WHERE id = ?", vec![key_id.into()]),
            )
            .await?;
        let Some(r) = row else { return Ok(false) };
        let now = self.now();
        Ok(r.try_get::<Option<i64>>("", "revoked_at")?.is_none()
            && r.try_get::<Option<i64>>("", "expires_at")?.is_none_or(|e| e > now))
    }

    /// The gate for anonymous noise (the server gates anonymous API calls
    /// through it too).
    pub fn noise(&self) -> &NoiseGate {
        &self.noise
    }

    /// Records the summaries of noise minutes that have ended: one event per
    /// kind, source and minute, with how many requests it stands for.
    pub async fn record_noise_summaries(&self) {
        for n in self.noise.drain() {
            // Public reads succeeded; sign-ins come from the UI.
            let (outcome, severity) = match n.kind {
                NoiseKind::AnonymousPublic => (Outcome::Success, Severity::Info),
                _ => (Outcome::Denied, Severity::Warning),
            };
            let channel = if n.kind == NoiseKind::ThrottledSignIn { Channel::Ui } else { Channel::Api };
            let actor = Acting::anonymous(channel);
            let details = serde_json::json!({
                "kind": n.kind.as_str(),
                "requests": n.unrecorded,
                "over_limit": n.refused,
                "first_at_us": n.first_us,
                "last_at_us": n.last_us,
                "note": "requests from this address in this minute not recorded one by one (the first per endpoint was)",
            });
            if let Err(e) = self
                .record(
                    &actor,
                    "security",
                    n.kind.summary_action(),
                    outcome,
                    severity,
                    ("address", Some(n.source)),
                    details,
                )
                .await
            {
                tracing::error!(error = %e, "could not record a summary of refused requests");
            }
        }
    }
}

/// How long a key found valid is taken as valid without reading its row
/// again (µs): a revoked key is refused at once by the replica that revoked
/// it, and within this long by the others; an expired one at once. Without
/// it, every request with a key cost a database round trip (on SQLite, a hop
/// to a pooled connection's thread and back): single-event ingest topped out
/// at about 3,200 requests/s instead of 4,500 (issue 21).
pub const KEY_CACHE_US: i64 = 1_000_000;
/// Most keys cached at once; beyond, the cache starts again.
const KEY_CACHE_MAX: usize = 10_000;

/// Keys found valid in the last [`KEY_CACHE_US`], by the SHA-256 of the
/// token (the token itself is not kept).
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    inner: std::sync::Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    /// Moves on at each revocation: a check that read its row before one
    /// does not cache what it read.
    generation: u64,
    keys: std::collections::HashMap<[u8; 32], CachedKey>,
}

#[derive(Debug, Clone)]
struct CachedKey {
    checked_us: i64,
    expires_at: Option<i64>,
    principal: ApiPrincipal,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key if it was found valid less than [`KEY_CACHE_US`] ago and has
    /// not expired; otherwise the generation to [`Self::put`] it under once
    /// checked.
    fn get(&self, digest: &[u8; 32], now: i64) -> Result<ApiPrincipal, u64> {
        let c = self.lock();
        match c.keys.get(digest) {
            Some(k) if (0..KEY_CACHE_US).contains(&(now - k.checked_us)) && k.expires_at.is_none_or(|e| e > now) => {
                Ok(k.principal.clone())
            }
            _ => Err(c.generation),
        }
    }

    /// Caches a key checked since [`Self::get`] gave `generation`, unless
    /// a key was revoked meanwhile.
    fn put(&self, generation: u64, digest: [u8; 32], now: i64, expires_at: Option<i64>, principal: ApiPrincipal) {
        let mut c = self.lock();
        if c.generation != generation {
            return;
        }
        if c.keys.len() >= KEY_CACHE_MAX && !c.keys.contains_key(&digest) {
            c.keys.clear();
        }
        c.keys.insert(digest, CachedKey { checked_us: now, expires_at, principal });
    }

    /// A key was revoked: nothing cached stands, nor what is being checked.
    fn clear(&self) {
        let mut c = self.lock();
        c.generation += 1;
        c.keys.clear();
    }
}

#[cfg(test)]
mod key_cache_tests {
    use super::*;

    #[test]
    fn a_cached_key_lasts_a_second_and_never_past_its_expiry() {
        let cache = KeyCache::default();
        let p = ApiPrincipal { key_id: 1, prefix: "ck_x".into(), name: "n".into(), scopes: vec![] };
        cache.put(0, [1; 32], 1_000, Some(1_500_000), p);
        assert!(cache.get(&[1; 32], 1_000).is_ok());
        assert!(cache.get(&[2; 32], 1_000).is_err(), "another token");
        assert!(cache.get(&[1; 32], 1_000 + KEY_CACHE_US - 1).is_ok());
        assert!(cache.get(&[1; 32], 1_000 + KEY_CACHE_US).is_err(), "read again after a second");
        assert!(cache.get(&[1; 32], 999).is_err(), "a clock stepped back reads again");
        cache.put(0, [3; 32], 1_000_000, Some(1_500_000), cache_principal());
        assert!(cache.get(&[3; 32], 1_499_999).is_ok());
        assert!(cache.get(&[3; 32], 1_500_000).is_err(), "expired: refused at once");
        // A check that began before a revocation does not cache its result.
        let generation = cache.get(&[4; 32], 1_000).unwrap_err();
        cache.clear();
        assert!(cache.get(&[1; 32], 1_000).is_err(), "revoked: refused at once here");
        cache.put(generation, [4; 32], 1_000, None, cache_principal());
        assert!(cache.get(&[4; 32], 1_000).is_err(), "read before the revocation: not cached");
        let generation = cache.get(&[4; 32], 1_000).unwrap_err();
        cache.put(generation, [4; 32], 1_000, None, cache_principal());
        assert!(cache.get(&[4; 32], 1_000).is_ok());
    }

    fn cache_principal() -> ApiPrincipal {
        ApiPrincipal { key_id: 3, prefix: "ck_y".into(), name: "m".into(), scopes: vec![] }
    }
}
