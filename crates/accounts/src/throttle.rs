//! Login throttling: after a few failures, each further attempt waits longer, up to a lockout
//! window. Applied per account and per source address (a higher allowance, since many people can
//! share one address). The decisions are pure; callers store the [`model::FailedAttempts`].

use std::time::Duration;

use model::{FailedAttempts as Attempts, Timestamp};

/// How strict throttling is for one kind of key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed before delays start.
    pub free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub first_delay: Duration,
    /// The longest delay, which is also the lockout window.
    pub lockout: Duration,
    /// Failures older than this are forgotten.
    pub forget_after: Duration,
}

impl ThrottlePolicy {
    pub const PER_ACCOUNT: ThrottlePolicy = ThrottlePolicy {
        free_failures: 5,
        first_delay: Duration::from_secs(2),
        lockout: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(60 * 60),
    };
    pub const PER_ADDRESS: ThrottlePolicy = ThrottlePolicy {
        free_failures: 30,
        first_delay: Duration::from_secs(2),
        lockout: Duration::from_secs(15 * 60),
        forget_after: Duration::from_secs(60 * 60),
    };

    /// Whether an attempt may be made at `now`; if not, how long to wait.
    pub fn check(&self, attempts: &Attempts, now: Timestamp) -> Result<(), Duration> {
        match attempts.locked_until {
            Some(until) if until > now => {
                let millis = until.unix_millis() - now.unix_millis();
                Err(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
            }
            _ => Ok(()),
        }
    }

    /// The record after a failed attempt at `now`.
    pub fn after_failure(&self, attempts: &Attempts, now: Timestamp) -> Attempts {
        let stale = attempts
            .last_failure
            .is_some_and(|last| now.unix_millis() - last.unix_millis() > self.forget_millis());
        let failures = if stale {
            1
        } else {
            attempts.failures.saturating_add(1)
        };
        let locked_until = (failures > self.free_failures).then(|| {
            let doublings = (failures - self.free_failures - 1).min(20);
            let delay = self
                .first_delay
                .saturating_mul(1 << doublings)
                .min(self.lockout);
            now.plus(delay)
        });
        Attempts {
            failures,
            last_failure: Some(now),
            locked_until,
        }
    }

    fn forget_millis(&self) -> i64 {
        i64::try_from(self.forget_after.as_millis()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: ThrottlePolicy = ThrottlePolicy::PER_ACCOUNT;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_millis(seconds * 1000)
    }

    #[test]
    fn delays_start_after_the_free_failures_and_double_up_to_the_lockout() {
        let mut attempts = Attempts::default();
        for _ in 0..POLICY.free_failures {
            attempts = POLICY.after_failure(&attempts, at(100));
            assert_eq!(POLICY.check(&attempts, at(100)), Ok(()));
        }
        let mut expected = Vec::new();
        for _ in 0..12 {
            attempts = POLICY.after_failure(&attempts, at(100));
            expected.push(POLICY.check(&attempts, at(100)).unwrap_err().as_secs());
        }
        assert_eq!(
            expected,
            [2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]
        );
    }

    #[test]
    fn the_wait_ends_and_old_failures_are_forgotten() {
        let mut attempts = Attempts::default();
        for _ in 0..=POLICY.free_failures {
            attempts = POLICY.after_failure(&attempts, at(0));
        }
        assert_eq!(POLICY.check(&attempts, at(1)), Err(Duration::from_secs(1)));
        assert_eq!(POLICY.check(&attempts, at(2)), Ok(()));
        let much_later = POLICY.after_failure(&attempts, at(2 * 3600));
        assert_eq!(much_later.failures, 1);
        assert_eq!(much_later.locked_until, None);
    }
}
