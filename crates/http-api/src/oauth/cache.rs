//! What the authorization server keeps in memory so that its hot paths — issuing a
//! client-credentials token, introspecting a token — cost no database query: the signing keys, the
//! clients, and access tokens already found active. Each cache says how stale it may be and what
//! makes it forget; none of them is ever the only record of anything.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use model::Timestamp;
use oauth::client::Client;
use tokens::jwt::AccessClaims;
use tokens::keys::KeyRing;

/// The signing keys, read from the database and parsed at most once per `ttl`, so that issuing or
/// checking a token costs no query and no key parsing. A rotation or retirement made by another
/// process is seen within `ttl`.
#[derive(Debug)]
pub struct KeyCache {
    pub(super) ttl: Duration,
    pub(super) slot: tokio::sync::RwLock<Option<(Instant, Arc<KeyRing>)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slot: tokio::sync::RwLock::new(None),
        }
    }
}

/// Registered clients by id, each kept for `ttl` after it was read. A client deleted or given a
/// new secret by another process (`warden admin clients …`) is seen within `ttl`; unknown ids are
/// never remembered, so a client created anywhere works at once.
#[derive(Debug)]
pub struct ClientCache {
    ttl: Duration,
    clients: Mutex<HashMap<String, (Instant, Client)>>,
}

/// Beyond this many entries a cache starts again empty: memory stays bounded whatever ids or
/// tokens callers present, and a full refill costs one query or one signature check per entry.
const MAX_CLIENTS: usize = 10_000;
const MAX_ACTIVE_TOKENS: usize = 50_000;

impl ClientCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn get(&self, client_id: &str) -> Option<Client> {
        let clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .get(client_id)
            .filter(|(loaded, _)| loaded.elapsed() < self.ttl)
            .map(|(_, client)| client.clone())
    }

    pub(super) fn put(&self, client: &Client) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.len() >= MAX_CLIENTS {
            clients.clear();
        }
        clients.insert(client.client_id.clone(), (Instant::now(), client.clone()));
    }
}

/// Access tokens already found active, by the SHA-256 of the token: a resource server asks about
/// the same token many times during its life, and every answer after the first needs neither a
/// signature check nor a query.
///
/// An entry is used only while three things still hold: the token has not expired, the key ring it
/// was verified against is the one in use (so a retired key is noticed when the key cache
/// reloads), and no revocation happened since it was checked. Revocations raise the store's
/// revocation epoch; this process adopts the new epoch at once for its own revocations and within
/// one poll (see `server`'s revocation watch) for those made elsewhere.
#[derive(Debug, Default)]
pub struct ActiveTokens {
    epoch: AtomicI64,
    tokens: Mutex<HashMap<String, ActiveToken>>,
}

#[derive(Debug)]
struct ActiveToken {
    claims: AccessClaims,
    ring: Arc<KeyRing>,
    epoch: i64,
}

impl ActiveTokens {
    /// The revocation epoch this process has seen. Read it before checking a token against the
    /// store, and remember the token under it: a revocation adopted in between then voids the
    /// entry.
    pub(super) fn epoch(&self) -> i64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Adopts the store's revocation epoch; every entry from an older one is no longer used.
    pub fn observe_epoch(&self, epoch: i64) {
        if self.epoch.swap(epoch, Ordering::AcqRel) != epoch {
            self.forget_all();
        }
    }

    /// Forgets every token, when the store cannot say whether anything was revoked.
    pub fn forget_all(&self) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    pub(super) fn get(
        &self,
        token_hash: &str,
        ring: &Arc<KeyRing>,
        now: Timestamp,
    ) -> Option<AccessClaims> {
        let epoch = self.epoch();
        let tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = tokens.get(token_hash)?;
        let fresh = entry.epoch == epoch
            && Arc::ptr_eq(&entry.ring, ring)
            && entry.claims.exp > now.unix_millis().div_euclid(1000);
        fresh.then(|| entry.claims.clone())
    }

    pub(super) fn put(
        &self,
        token_hash: String,
        claims: &AccessClaims,
        ring: &Arc<KeyRing>,
        epoch: i64,
    ) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if tokens.len() >= MAX_ACTIVE_TOKENS {
            tokens.clear();
        }
        tokens.insert(
            token_hash,
            ActiveToken {
                claims: claims.clone(),
                ring: ring.clone(),
                epoch,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://warden.test".into(),
            sub: "service".into(),
            aud: "https://warden.test/api".into(),
            exp,
            iat: exp - 600,
            jti: "jti-1".into(),
            client_id: "service".into(),
            scope: String::new(),
            gid: None,
            act: None,
        }
    }

    fn ring() -> Arc<KeyRing> {
        Arc::new(KeyRing::new(Vec::new(), Duration::from_secs(60)))
    }

    #[test]
    fn a_remembered_token_is_forgotten_on_revocation_key_change_and_expiry() {
        let tokens = ActiveTokens::default();
        let ring = ring();
        let now = Timestamp::from_unix_millis(1_000_000);
        tokens.put("hash".into(), &claims(1_600), &ring, tokens.epoch());
        assert!(tokens.get("hash", &ring, now).is_some());
        assert!(tokens.get("other", &ring, now).is_none());
        assert!(
            tokens.get("hash", &self::ring(), now).is_none(),
            "another key ring"
        );
        assert!(
            tokens
                .get("hash", &ring, Timestamp::from_unix_millis(1_600_000))
                .is_none(),
            "expired"
        );
        tokens.observe_epoch(1);
        assert!(tokens.get("hash", &ring, now).is_none(), "revoked since");
    }

    #[test]
    fn an_entry_checked_before_a_revocation_was_adopted_is_never_used() {
        let tokens = ActiveTokens::default();
        let ring = ring();
        let before = tokens.epoch();
        tokens.observe_epoch(before + 1);
        tokens.put("hash".into(), &claims(2_000), &ring, before);
        assert!(
            tokens
                .get("hash", &ring, Timestamp::from_unix_millis(1_000_000))
                .is_none()
        );
    }

    #[test]
    fn clients_are_kept_for_the_ttl_only() {
        let client = Client {
            client_id: "service".into(),
            name: "service".into(),
            kind: oauth::client::ClientKind::Confidential,
            secret_hash: None,
            allowed_scopes: oauth::scope::Scopes::default(),
            redirect_uris: Vec::new(),
            first_party: false,
            jwks: None,
            created_at: Timestamp::from_unix_millis(0),
        };
        let kept = ClientCache::new(Duration::from_secs(60));
        kept.put(&client);
        assert_eq!(kept.get("service"), Some(client.clone()));
        assert_eq!(kept.get("other"), None);
        let uncached = ClientCache::new(Duration::ZERO);
        uncached.put(&client);
        assert_eq!(uncached.get("service"), None);
    }
}
