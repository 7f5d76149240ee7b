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
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("clock", &self.clock)
            .field("session_lifetime", &self.session_lifetime)
            .finish_non_exhaustive()
    }
}
