//! Staged rollouts, as decisions: which share of the target each stage reaches, and, from the
//! counts of where the offered devices are, whether a rollout aborts, moves to its next stage,
//! completes or waits.

use std::time::Duration;

use model::Timestamp;

/// A rollout's stages: cumulative percentages of the target, rising, ending at 100.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stages(Vec<u8>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("stages must be rising percentages from 1 to 100 that end at 100, as [1, 10, 100]")]
pub struct BadStages;

impl Stages {
    pub fn new(stages: Vec<u8>) -> Result<Self, BadStages> {
        let rising = stages.windows(2).all(|pair| pair[0] < pair[1]);
        let in_range = stages.iter().all(|percent| (1..=100).contains(percent));
        if stages.is_empty() || !rising || !in_range || stages.last() != Some(&100) {
            return Err(BadStages);
        }
        Ok(Self(stages))
    }

    pub fn percentages(&self) -> &[u8] {
        &self.0
    }

    pub fn last(&self) -> usize {
        self.0.len() - 1
    }

    /// How many of `total` devices stages up to and including `stage` reach: the percentage
    /// rounded up, so that a first stage of 1 % reaches one device of a small fleet.
    pub fn reach(&self, stage: usize, total: usize) -> usize {
        let percent = usize::from(self.0.get(stage).copied().unwrap_or(100));
        (total * percent).div_ceil(100).min(total)
    }
}

/// Where the devices offered so far stand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Offered, downloading or installing.
    pub in_flight: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl Counts {
    /// Failed among the finished, in percent; `None` before any finished.
    pub fn failure_percent(&self) -> Option<f64> {
        let finished = self.succeeded + self.failed;
        (finished > 0).then(|| self.failed as f64 * 100.0 / finished as f64)
    }
}

/// What a running rollout does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// Too many of its updates failed: stop offering.
    Abort(String),
    /// Offer the next stage.
    Advance,
    /// The last stage is done.
    Complete,
    /// Devices are still updating, the soak time has not passed, or an admin advances by hand.
    Wait,
}

/// What a running rollout's policy is.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub stages: Stages,
    /// How long a finished stage soaks before the next starts on its own; `None`: an admin
    /// advances it.
    pub soak: Option<Duration>,
    /// The failure percentage above which the rollout aborts itself.
    pub failure_threshold: f64,
}

impl Policy {
    /// The next step of a rollout at `stage` whose offered devices stand at `counts`; `done_at`
    /// is when every device of the stage had finished (if they all have).
    pub fn next(
        &self,
        stage: usize,
        counts: Counts,
        done_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Next {
        if let Some(percent) = counts.failure_percent()
            && percent > self.failure_threshold
        {
            return Next::Abort(format!(
                "{percent:.0} % of finished updates failed ({} of {}), above the threshold of {:.0} %",
                counts.failed,
                counts.failed + counts.succeeded,
                self.failure_threshold
            ));
        }
        let Some(done_at) = done_at.filter(|_| counts.in_flight == 0) else {
            return Next::Wait;
        };
        if stage >= self.stages.last() {
            return Next::Complete;
        }
        match self.soak {
            Some(soak) if now >= done_at.plus(soak) => Next::Advance,
            _ => Next::Wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_rising_percentages_ending_at_100() {
        assert!(Stages::new(vec![1, 10, 100]).is_ok());
        assert!(Stages::new(vec![100]).is_ok());
        for bad in [
            vec![],
            vec![10, 10, 100],
            vec![50, 10, 100],
            vec![0, 100],
            vec![10, 50],
        ] {
            assert_eq!(Stages::new(bad.clone()), Err(BadStages), "{bad:?}");
        }
    }

    #[test]
    fn a_stage_reaches_its_share_rounded_up() {
        let stages = Stages::new(vec![1, 10, 50, 100]).unwrap();
        let reach: Vec<usize> = (0..4).map(|stage| stages.reach(stage, 20)).collect();
        assert_eq!(reach, [1, 2, 10, 20]);
        assert_eq!(stages.reach(0, 1_000), 10);
        assert_eq!(stages.reach(0, 0), 0);
    }

    fn policy(soak: Option<u64>) -> Policy {
        Policy {
            stages: Stages::new(vec![10, 100]).unwrap(),
            soak: soak.map(Duration::from_secs),
            failure_threshold: 20.0,
        }
    }

    #[test]
    fn a_rollout_aborts_above_the_threshold_and_advances_after_the_soak() {
        let at = Timestamp::from_unix_millis;
        let counts = |in_flight, succeeded, failed| Counts {
            in_flight,
            succeeded,
            failed,
        };
        let soaking = policy(Some(60));
        assert!(matches!(
            soaking.next(0, counts(0, 1, 1), Some(at(0)), at(0)),
            Next::Abort(_)
        ));
        // At the threshold exactly it goes on.
        assert_eq!(
            soaking.next(0, counts(0, 4, 1), Some(at(0)), at(0)),
            Next::Wait
        );
        assert_eq!(soaking.next(0, counts(3, 0, 0), None, at(0)), Next::Wait);
        assert_eq!(
            soaking.next(0, counts(0, 2, 0), Some(at(0)), at(59_999)),
            Next::Wait
        );
        assert_eq!(
            soaking.next(0, counts(0, 2, 0), Some(at(0)), at(60_000)),
            Next::Advance
        );
        assert_eq!(
            soaking.next(1, counts(0, 20, 0), Some(at(0)), at(0)),
            Next::Complete
        );
        // Without a soak time an admin advances.
        assert_eq!(
            policy(None).next(0, counts(0, 2, 0), Some(at(0)), at(999_999)),
            Next::Wait
        );
        assert_eq!(counts(0, 0, 0).failure_percent(), None);
    }
}
