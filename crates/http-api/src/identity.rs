//! What the account pages need besides the database: the password hasher, the breached-password
//! set, the clock, and how long a login lasts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use accounts::breached::BreachedPasswords;
use accounts::password::Hasher;
use model::Clock;

#[derive(Clone)]
pub struct Identity {
    pub hasher: Hasher,
    pub breached: Arc<dyn BreachedPasswords>,
    pub clock: Arc<dyn Clock>,
    pub session_lifetime: Duration,
    /// Password hashes running at once: one per core. More would only make each slower (Argon2 is
    /// memory-bound) and let a queue grow without bound.
    pub hash_slots: Arc<tokio::sync::Semaphore>,
    /// How long a login waits for a free slot before it is answered 503: under overload the answer
    /// comes fast instead of after an ever longer queue.
    pub hash_wait: Duration,
}

impl Identity {
    /// Runs a password hash or verification on a blocking thread once a slot is free.
    pub(crate) async fn run_hash<T: Send + 'static>(
        &self,
        work: impl FnOnce(&accounts::password::Hasher) -> T + Send + 'static,
    ) -> Result<T, crate::ApiError> {
        let permit = tokio::time::timeout(self.hash_wait, self.hash_slots.clone().acquire_owned())
            .await
            .map_err(|_| crate::ApiError::Unavailable { what: "login" })?
            .map_err(|_| crate::ApiError::Unavailable { what: "login" })?;
        let hasher = self.hasher.clone();
        tokio::task::spawn_blocking(move || {
            let result = work(&hasher);
            drop(permit);
            result
        })
        .await
        .map_err(|error| crate::ApiError::Internal(Box::new(error)))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("clock", &self.clock)
            .field("session_lifetime", &self.session_lifetime)
            .finish_non_exhaustive()
    }
}
