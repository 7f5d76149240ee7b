//! Who each MQTT client proved to be when it connected, kept in memory by client id: the broker
//! asks again at every publish and subscribe with only the client id and user name, and the
//! answer must be for the one who proved it, never for whoever now claims that name.
//!
//! The map is this replica's alone (see docs/broker-hooks.md: each broker node calls one Warden
//! replica) and bounded: past its capacity the oldest connection is forgotten, and that client is
//! refused until it connects again. A client id unknown here is always refused.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use model::DeviceId;

/// How many connections a replica remembers by default. An entry costs well under 2 KiB (a
/// person's entry holds their access token), so a full map stays within a few hundred MiB.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The connections proven through the hooks, by client id.
pub struct BrokerSessions {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Counts insertions; orders entries from the oldest.
    next: u64,
    by_client: HashMap<String, (u64, Session)>,
    oldest_first: BTreeMap<u64, String>,
}

/// One proven connection.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The user name the client connected with; later questions must carry the same one.
    pub username: Option<String>,
    pub proof: Proof,
}

/// What the client proved at connect.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Proof {
    /// Its certificate (as far as the broker forwards it) and its password.
    Device(DeviceId),
    /// An access token, kept so that every later question checks it again: once it expires or
    /// is revoked the connection may do nothing more.
    Token(String),
}

impl fmt::Debug for Session {
    /// Never shows the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proof = match &self.proof {
            Proof::Device(device_id) => format!("device {device_id}"),
            Proof::Token(_) => "access token".to_owned(),
        };
        f.debug_struct("Session")
            .field("username", &self.username)
            .field("proof", &proof)
            .finish()
    }
}

impl Default for BrokerSessions {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for BrokerSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerSessions")
            .field("capacity", &self.capacity)
            .field("len", &self.lock().by_client.len())
            .finish()
    }
}

impl BrokerSessions {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers `session` for `client_id`, replacing an earlier connection with that id (the
    /// broker takes the session over too) and forgetting the oldest one past the capacity.
    pub(crate) fn insert(&self, client_id: &str, session: Session) {
        let mut inner = self.lock();
        let order = inner.next;
        inner.next += 1;
        if let Some((earlier, _)) = inner
            .by_client
            .insert(client_id.to_owned(), (order, session))
        {
            inner.oldest_first.remove(&earlier);
        }
        inner.oldest_first.insert(order, client_id.to_owned());
        while inner.by_client.len() > self.capacity {
            let Some((_, oldest)) = inner.oldest_first.pop_first() else {
                break;
            };
            inner.by_client.remove(&oldest);
            tracing::warn!(
                client_id = %oldest,
                capacity = self.capacity,
                "broker hooks: too many connections remembered; the oldest is forgotten and will be refused"
            );
        }
    }

    pub(crate) fn get(&self, client_id: &str) -> Option<Session> {
        self.lock()
            .by_client
            .get(client_id)
            .map(|(_, session)| session.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Session {
        Session {
            username: Some(id.to_owned()),
            proof: Proof::Device(DeviceId::parse(id).unwrap()),
        }
    }

    #[test]
    fn the_oldest_connection_is_forgotten_past_the_capacity() {
        let sessions = BrokerSessions::with_capacity(2);
        sessions.insert("washer-1", device("washer-1"));
        sessions.insert("washer-2", device("washer-2"));
        // A reconnect renews the entry: washer-2 is now the oldest.
        sessions.insert("washer-1", device("washer-1"));
        sessions.insert("washer-3", device("washer-3"));
        assert_eq!(sessions.get("washer-1"), Some(device("washer-1")));
        assert_eq!(sessions.get("washer-2"), None);
        assert_eq!(sessions.get("washer-3"), Some(device("washer-3")));
        assert_eq!(sessions.get("washer-4"), None);
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let session = Session {
            username: None,
            proof: Proof::Token("secret-token".into()),
        };
        assert!(!format!("{session:?}").contains("secret-token"));
    }
}
