//! The record of failed attempts kept per throttled key (an account, an address).

use crate::Timestamp;

/// Failures counted for one key, and until when it is locked; what throttling decides from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailedAttempts {
    pub failures: u32,
    pub last_failure: Option<Timestamp>,
    pub locked_until: Option<Timestamp>,
}
