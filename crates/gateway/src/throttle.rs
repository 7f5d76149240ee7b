//! Throttling, Warden's addition to the rule shape: limits per client application (quota), per
//! user (fair use), per rule (the operation as a whole) and per source address, each a GCRA
//! limiter from `governor`, with tiers that raise a limit for callers holding a scope.
//!
//! A limit keyed by client or user that meets an anonymous request keys it by its source address
//! instead, so being anonymous never escapes a limit. The counters live in this process, or, for
//! replicas that enforce one limit together, in [`SharedCounters`] (docs/gateway.md): the same
//! GCRA, its state (one time per key) kept where every replica counts.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use model::Clock;

use crate::Session;

/// What a limit counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    Client,
    User,
    Rule,
    Address,
}

impl Per {
    pub fn as_str(self) -> &'static str {
        match self {
            Per::Client => "client",
            Per::User => "user",
            Per::Rule => "rule",
            Per::Address => "address",
        }
    }
}

/// A rate: `count` requests per `period`, with bursts of up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
    pub burst: NonZeroU32,
}

impl Rate {
    /// `"100/s"`, `"6000/minute"`, `"10/hour"`, `"1000/day"`; `burst` defaults to `count`.
    pub fn parse(text: &str, burst: Option<u32>) -> Result<Self, String> {
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a rate: write COUNT/UNIT, as 100/minute"))?;
        let count: NonZeroU32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: the count must be a whole number of at least 1"))?;
        let period = match unit.trim() {
            "s" | "second" => Duration::from_secs(1),
            "m" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => {
                return Err(format!(
                    "{text:?}: unknown unit {other:?}; use second, minute, hour or day"
                ));
            }
        };
        let burst = match burst {
            None => count,
            Some(burst) => NonZeroU32::new(burst).ok_or("a burst must be at least 1")?,
        };
        Ok(Self {
            count,
            period,
            burst,
        })
    }

    fn quota(&self) -> Quota {
        let interval = self.period / self.count.get();
        // A period below a nanosecond per request cannot come from the units above.
        Quota::with_period(interval.max(Duration::from_nanos(1)))
            .unwrap_or(Quota::per_second(self.count))
            .allow_burst(self.burst)
    }
}

/// Throttle counters shared by gateway replicas: GCRA state per key, counted atomically where
/// every replica reaches it. Times are microseconds since the Unix epoch.
#[async_trait::async_trait]
pub trait SharedCounters: Send + Sync + std::fmt::Debug {
    /// Counts one request for `key` at `now`: allowed when the key's theoretical arrival time is
    /// at most `tolerance` after `now` (it then moves to the later of the two plus `interval`);
    /// a key not seen yet is allowed.
    async fn count(
        &self,
        key: &str,
        now: i64,
        interval: i64,
        tolerance: i64,
    ) -> Result<SharedCount, String>;
}

/// A request counted in [`SharedCounters`]: the key's theoretical arrival time after it (allowed)
/// or as it stands (refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedCount {
    Allowed { tat: i64 },
    Refused { tat: i64 },
}

/// A raised rate for callers whose token carries `scope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tier {
    pub scope: String,
    pub rate: Rate,
}

/// One limit of a rule, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitSpec {
    pub per: Per,
    pub rate: Rate,
    /// Tried in order; the first whose scope the caller holds replaces `rate`.
    pub tiers: Vec<Tier>,
}

/// Warden's clock as governor's: time since the Unix epoch, so tests move it with `ManualClock`.
#[derive(Clone, Debug)]
pub(crate) struct LimiterClock(pub Arc<dyn Clock>);

impl GovernorClock for LimiterClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now().unix_millis()).unwrap_or(0))
    }
}

type Keyed =
    RateLimiter<String, DashMapStateStore<String>, LimiterClock, StateInformationMiddleware>;

/// The counters of one limit: one limiter for the base rate and one per tier.
#[derive(Debug)]
pub(crate) struct Limit {
    pub spec: LimitSpec,
    base: Keyed,
    tiers: Vec<Keyed>,
}

/// The state of the tightest limit a request passed, for the `RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headroom {
    pub limit: u32,
    pub remaining: u32,
    pub window: Duration,
}

/// Why a request was throttled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    pub per: Per,
    pub retry_after: Duration,
    pub limit: u32,
    pub window: Duration,
}

impl Limit {
    pub(crate) fn new(spec: LimitSpec, clock: &LimiterClock) -> Self {
        let limiter = |rate: &Rate| {
            let plain: RateLimiter<
                String,
                DashMapStateStore<String>,
                LimiterClock,
                governor::middleware::NoOpMiddleware<Duration>,
            > = RateLimiter::new(rate.quota(), DashMapStateStore::default(), clock.clone());
            plain.with_middleware::<StateInformationMiddleware>()
        };
        Self {
            base: limiter(&spec.rate),
            tiers: spec.tiers.iter().map(|tier| limiter(&tier.rate)).collect(),
            spec,
        }
    }

    /// Counts one request against this limit of the rule `rule_id`: in `shared` when given,
    /// else (or when `shared` fails) in this process.
    pub(crate) async fn check(
        &self,
        rule_id: &str,
        session: &Session,
        address: &str,
        clock: &LimiterClock,
        shared: Option<&dyn SharedCounters>,
    ) -> Result<Headroom, Throttled> {
        let key = match self.spec.per {
            Per::Client => session.client_id.clone(),
            Per::User => {
                (!session.subject.is_empty() && !session.anonymous).then(|| session.subject.clone())
            }
            Per::Rule => Some(String::new()),
            Per::Address => None,
        }
        .unwrap_or_else(|| format!("address:{address}"));
        let (limiter, rate) = self
            .spec
            .tiers
            .iter()
            .zip(&self.tiers)
            .find(|(tier, _)| session.scopes.contains(&tier.scope))
            .map_or((&self.base, &self.spec.rate), |(tier, limiter)| {
                (limiter, &tier.rate)
            });
        if let Some(shared) = shared {
            // The key names the limit by what it is, so that a changed limit starts afresh, as
            // the local counters do.
            let shared_key = format!(
                "{rule_id}|{}|{}/{}ms/{}|{key}",
                self.spec.per.as_str(),
                rate.count,
                rate.period.as_millis(),
                rate.burst
            );
            match shared_check(shared, &shared_key, rate, self.spec.per, clock).await {
                Ok(outcome) => return outcome,
                Err(error) => tracing::warn!(
                    rule = rule_id,
                    %error,
                    "shared throttle counters unavailable; counting in this process"
                ),
            }
        }
        match limiter.check_key(&key) {
            Ok(snapshot) => Ok(Headroom {
                limit: rate.burst.get(),
                remaining: snapshot.remaining_burst_capacity(),
                window: rate.period,
            }),
            Err(refused) => Err(Throttled {
                per: self.spec.per,
                retry_after: refused.wait_time_from(clock.now()),
                limit: rate.burst.get(),
                window: rate.period,
            }),
        }
    }

    /// Drops the counters of keys that are back at full capacity.
    pub(crate) fn forget_idle(&self) {
        self.base.retain_recent();
        for tier in &self.tiers {
            tier.retain_recent();
        }
    }
}

/// One request counted in `shared` for `rate`, as GCRA: one request per `interval`, running up
/// to `burst − 1` intervals ahead.
async fn shared_check(
    shared: &dyn SharedCounters,
    key: &str,
    rate: &Rate,
    per: Per,
    clock: &LimiterClock,
) -> Result<Result<Headroom, Throttled>, String> {
    let micros = |duration: Duration| i64::try_from(duration.as_micros()).unwrap_or(i64::MAX);
    let interval = micros(rate.period / rate.count.get()).max(1);
    let tolerance = interval.saturating_mul(i64::from(rate.burst.get()) - 1);
    let now = micros(clock.now());
    Ok(match shared.count(key, now, interval, tolerance).await? {
        SharedCount::Allowed { tat } => {
            let room = (now + tolerance + interval - tat).div_euclid(interval);
            Ok(Headroom {
                limit: rate.burst.get(),
                remaining: u32::try_from(room.max(0)).unwrap_or(0),
                window: rate.period,
            })
        }
        SharedCount::Refused { tat } => Err(Throttled {
            per,
            retry_after: Duration::from_micros(u64::try_from(tat - tolerance - now).unwrap_or(0)),
            limit: rate.burst.get(),
            window: rate.period,
        }),
    })
}

#[cfg(test)]
mod tests {
    use model::{ManualClock, Timestamp};

    use super::*;

    #[test]
    fn rates_parse_with_their_units_and_bursts() {
        let check = |text: &str, burst: Option<u32>, expected: Result<(u32, u64, u32), &str>| {
            let got = Rate::parse(text, burst)
                .map(|rate| (rate.count.get(), rate.period.as_secs(), rate.burst.get()));
            match expected {
                Ok(value) => assert_eq!(got, Ok(value), "{text}"),
                Err(reason) => assert!(got.expect_err(text).contains(reason), "{text}"),
            }
        };
        check("100/s", None, Ok((100, 1, 100)));
        check("6000/minute", Some(50), Ok((6000, 60, 50)));
        check("10/hour", None, Ok((10, 3600, 10)));
        check("1/day", None, Ok((1, 86_400, 1)));
        check("10", None, Err("COUNT/UNIT"));
        check("0/s", None, Err("at least 1"));
        check("x/s", None, Err("whole number"));
        check("10/week", None, Err("unknown unit"));
        check("10/s", Some(0), Err("burst"));
    }

    fn session(subject: &str, client: &str, scopes: &[&str]) -> Session {
        Session {
            subject: subject.into(),
            client_id: Some(client.into()),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            ..Session::default()
        }
    }

    /// Shared counters kept in a map, with the store's semantics, so that the tests below hold
    /// the shared path to what the local one does (the database's side is tested in `storage`).
    #[derive(Debug, Default)]
    struct MapCounters(std::sync::Mutex<std::collections::HashMap<String, i64>>);

    #[async_trait::async_trait]
    impl SharedCounters for MapCounters {
        async fn count(
            &self,
            key: &str,
            now: i64,
            interval: i64,
            tolerance: i64,
        ) -> Result<SharedCount, String> {
            let mut times = self.0.lock().unwrap();
            let tat = times.get(key).copied().unwrap_or(now);
            if tat - now > tolerance {
                return Ok(SharedCount::Refused { tat });
            }
            let next = tat.max(now) + interval;
            times.insert(key.to_owned(), next);
            Ok(SharedCount::Allowed { tat: next })
        }
    }

    /// Runs `check` with the counters in this process, then with shared ones.
    async fn both_ways<F>(check: F)
    where
        F: AsyncFn(Option<&dyn SharedCounters>),
    {
        check(None).await;
        check(Some(&MapCounters::default())).await;
    }

    #[tokio::test]
    async fn limits_count_per_key_refuse_with_the_wait_and_recover_with_time() {
        both_ways(async |shared| {
            let manual = Arc::new(ManualClock::new(Timestamp::from_unix_millis(1_000_000)));
            let clock = LimiterClock(manual.clone());
            let spec = LimitSpec {
                per: Per::User,
                rate: Rate::parse("2/minute", None).unwrap(),
                tiers: vec![Tier {
                    scope: "bulk".into(),
                    rate: Rate::parse("10/minute", None).unwrap(),
                }],
            };
            let limit = Limit::new(spec, &clock);
            let check = async |session: &Session| {
                limit.check("r", session, "10.0.0.1", &clock, shared).await
            };
            let alice = session("alice", "app", &[]);
            let bob = session("bob", "app", &[]);
            let first = check(&alice).await.unwrap();
            assert_eq!((first.limit, first.remaining), (2, 1));
            assert_eq!(check(&alice).await.unwrap().remaining, 0);
            let refused = check(&alice).await.unwrap_err();
            assert_eq!(refused.per, Per::User);
            assert_eq!(refused.retry_after, Duration::from_secs(30));
            // Another user has counters of their own, whatever the address.
            check(&bob).await.unwrap();
            // A tier raises the limit for a caller holding its scope.
            let bulk = session("alice", "app", &["bulk"]);
            for _ in 0..10 {
                check(&bulk).await.unwrap();
            }
            // Time gives capacity back: one request every 30 s.
            manual.advance(Duration::from_secs(30));
            check(&alice).await.unwrap();
            assert!(check(&alice).await.is_err());
        })
        .await;
    }

    #[tokio::test]
    async fn replicas_sharing_counters_enforce_one_limit_together() {
        let clock = LimiterClock(Arc::new(ManualClock::new(Timestamp::from_unix_millis(0))));
        let spec = LimitSpec {
            per: Per::Rule,
            rate: Rate::parse("2/minute", None).unwrap(),
            tiers: Vec::new(),
        };
        let replicas = [Limit::new(spec.clone(), &clock), Limit::new(spec, &clock)];
        let anyone = session("alice", "app", &[]);
        let shared = MapCounters::default();
        let mut passed = 0;
        for round in 0..4 {
            let replica = &replicas[round % 2];
            passed += replica
                .check("r", &anyone, "10.0.0.1", &clock, Some(&shared))
                .await
                .is_ok() as usize;
        }
        assert_eq!(passed, 2);
        // Apart, each replica lets its own two through.
        for replica in &replicas {
            replica
                .check("r", &anyone, "10.0.0.1", &clock, None)
                .await
                .unwrap();
            replica
                .check("r", &anyone, "10.0.0.1", &clock, None)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn anonymous_callers_are_counted_by_address_under_user_and_client_limits() {
        both_ways(async |shared| {
            let clock = LimiterClock(Arc::new(ManualClock::new(Timestamp::from_unix_millis(0))));
            for per in [Per::User, Per::Client] {
                let limit = Limit::new(
                    LimitSpec {
                        per,
                        rate: Rate::parse("1/hour", None).unwrap(),
                        tiers: Vec::new(),
                    },
                    &clock,
                );
                let anonymous = Session {
                    subject: "anonymous".into(),
                    anonymous: true,
                    ..Session::default()
                };
                let check = async |address: &str| {
                    limit.check("r", &anonymous, address, &clock, shared).await
                };
                check("10.0.0.1").await.unwrap();
                assert!(check("10.0.0.1").await.is_err(), "{per:?}");
                check("10.0.0.2").await.unwrap();
            }
        })
        .await;
    }
}
