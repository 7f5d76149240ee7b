//! Time as a value the caller controls: the system clock in production, a settable one in tests.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time, in milliseconds since the Unix epoch (UTC).
///
/// Milliseconds in an `i64` are what both storage backends keep natively and cover far more than
/// any certificate or token lifetime needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn unix_millis(self) -> i64 {
        self.0
    }

    /// RFC 3339 in UTC to the second (`2026-12-02T12:00:00Z`), as the API and the CLI show times.
    pub fn to_rfc3339(self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.0.div_euclid(1000))
            .ok()
            .and_then(|at| {
                at.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.0.to_string())
    }

    /// RFC 3339 in UTC with milliseconds (`2026-12-02T12:00:00.250Z`), for times that order
    /// events.
    pub fn to_rfc3339_millis(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|at| {
                at.format(time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
                ))
                .ok()
            })
            .unwrap_or_else(|| self.0.to_string())
    }

    /// A time written in RFC 3339 (any offset, any fraction of a second, kept to the millisecond);
    /// `None` when it is not one.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .ok()?;
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
            .ok()
            .map(Self)
    }

    /// This time moved forward by `duration`, saturating instead of overflowing.
    pub fn plus(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    pub fn to_system_time(self) -> SystemTime {
        match u64::try_from(self.0) {
            Ok(millis) => UNIX_EPOCH + Duration::from_millis(millis),
            Err(_) => UNIX_EPOCH - Duration::from_millis(self.0.unsigned_abs()),
        }
    }

    pub fn from_system_time(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(since) => Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX)),
            Err(before) => Self(-i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Where every part of Warden gets the current time from.
///
/// Token expiry, throttling windows and certificate validity are all decided against this, so tests
/// move time forward instead of sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system_time(SystemTime::now())
    }
}

/// A clock that stands still until told to move; clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    millis: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(start.unix_millis())),
        }
    }

    pub fn advance(&self, duration: Duration) {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }

    pub fn set(&self, time: Timestamp) {
        self.millis.store(time.unix_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.millis.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_000));
        let shared = clock.clone();
        assert_eq!(clock.now(), Timestamp::from_unix_millis(1_000));
        shared.advance(Duration::from_secs(2));
        assert_eq!(clock.now(), Timestamp::from_unix_millis(3_000));
        clock.set(Timestamp::from_unix_millis(-5));
        assert_eq!(shared.now().unix_millis(), -5);
    }

    #[test]
    fn system_time_round_trips_on_both_sides_of_the_epoch() {
        for millis in [-86_400_000, -1, 0, 1, 1_700_000_000_123] {
            let time = Timestamp::from_unix_millis(millis);
            assert_eq!(Timestamp::from_system_time(time.to_system_time()), time);
        }
    }

    #[test]
    fn rfc3339_reads_any_offset_and_writes_milliseconds_in_utc() {
        let check = |text: &str, millis: Option<i64>| {
            assert_eq!(
                Timestamp::parse_rfc3339(text).map(Timestamp::unix_millis),
                millis,
                "{text}"
            );
        };
        check("2026-12-03T08:00:00Z", Some(1_796_284_800_000));
        check("2026-12-03T08:00:00.250Z", Some(1_796_284_800_250));
        check("2026-12-03T09:00:00.250999+01:00", Some(1_796_284_800_250));
        check("1969-12-31T23:59:59.999Z", Some(-1));
        check("2026-12-03 08:00:00", None);
        check("", None);
        let at = Timestamp::from_unix_millis(1_796_284_800_250);
        assert_eq!(at.to_rfc3339_millis(), "2026-12-03T08:00:00.250Z");
        assert_eq!(Timestamp::parse_rfc3339(&at.to_rfc3339_millis()), Some(at));
    }
}
