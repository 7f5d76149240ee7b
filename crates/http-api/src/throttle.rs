//! Throttling of attempts to guess a secret (passwords, second-factor codes, claim codes): the
//! throttle records are read before the attempt, and after it either all grow or the first is
//! forgotten. The decisions are `accounts::throttle`'s; this is the bookkeeping around them.

use std::time::Duration;

use accounts::throttle::ThrottlePolicy;
use model::{FailedAttempts, Timestamp};
use store::{Store, StoreError};

/// An attempt under way, holding the throttle records it was let through on.
#[derive(Debug)]
pub(crate) struct Attempt {
    records: Vec<(String, ThrottlePolicy, FailedAttempts)>,
    now: Timestamp,
}

impl Attempt {
    /// Lets the attempt through unless a key is locked; then `Err` says how long to wait.
    pub(crate) async fn begin(
        store: &Store,
        keys: impl IntoIterator<Item = (String, ThrottlePolicy)>,
        now: Timestamp,
    ) -> Result<Result<Self, Duration>, StoreError> {
        let throttle = store.login_throttle();
        let mut records = Vec::new();
        for (key, policy) in keys {
            let attempts = throttle.get(&key).await?;
            if let Err(wait) = policy.check(&attempts, now) {
                return Ok(Err(wait));
            }
            records.push((key, policy, attempts));
        }
        Ok(Ok(Self { records, now }))
    }

    /// Counts a failure against every key.
    pub(crate) async fn failed(self, store: &Store) -> Result<(), StoreError> {
        let throttle = store.login_throttle();
        for (key, policy, attempts) in &self.records {
            throttle
                .put(key, &policy.after_failure(attempts, self.now))
                .await?;
        }
        Ok(())
    }

    /// Forgets the first key's failures: the account (or user) that just proved itself. Shared
    /// keys such as an address keep theirs. Writes only when there is something to forget.
    pub(crate) async fn succeeded(self, store: &Store) -> Result<(), StoreError> {
        match self.records.first() {
            Some((key, _, attempts)) if attempts.failures > 0 => {
                store.login_throttle().clear(key).await
            }
            _ => Ok(()),
        }
    }
}
