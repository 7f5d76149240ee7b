//! Throttling, Warden's addition to the rule shape: limits per client application (quota), per
//! user (fair use), per rule (the operation as a whole) and per source address, each a GCRA
//! limiter from `governor`, with tiers that raise a limit for callers holding a scope.
//!
//! A limit keyed by client or user that meets an anonymous request keys it by its source address
//! instead, so being anonymous never escapes a limit. The counters live in this process: with
//! several gateway replicas each holds its own, so a limit holds per replica (docs/gateway.md).

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

    /// Counts one request against this limit.
    pub(crate) fn check(
        &self,
        session: &Session,
        address: &str,
        clock: &LimiterClock,
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

    #[test]
    fn limits_count_per_key_refuse_with_the_wait_and_recover_with_time() {
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
        let alice = session("alice", "app", &[]);
        let bob = session("bob", "app", &[]);
        let first = limit.check(&alice, "10.0.0.1", &clock).unwrap();
        assert_eq!((first.limit, first.remaining), (2, 1));
        limit.check(&alice, "10.0.0.1", &clock).unwrap();
        let refused = limit.check(&alice, "10.0.0.1", &clock).unwrap_err();
        assert_eq!(refused.per, Per::User);
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        // Another user has counters of their own, whatever the address.
        limit.check(&bob, "10.0.0.1", &clock).unwrap();
        // A tier raises the limit for a caller holding its scope.
        let bulk = session("alice", "app", &["bulk"]);
        for _ in 0..10 {
            limit.check(&bulk, "10.0.0.1", &clock).unwrap();
        }
        // Time gives capacity back: one request every 30 s.
        manual.advance(Duration::from_secs(30));
        limit.check(&alice, "10.0.0.1", &clock).unwrap();
        assert!(limit.check(&alice, "10.0.0.1", &clock).is_err());
    }

    #[test]
    fn anonymous_callers_are_counted_by_address_under_user_and_client_limits() {
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
            limit.check(&anonymous, "10.0.0.1", &clock).unwrap();
            assert!(
                limit.check(&anonymous, "10.0.0.1", &clock).is_err(),
                "{per:?}"
            );
            limit.check(&anonymous, "10.0.0.2", &clock).unwrap();
        }
    }
}
