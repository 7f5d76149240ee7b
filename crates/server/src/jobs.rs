//! Background jobs that run once per cluster (docs/production.md, "Replicas"). Every replica runs
//! each job's loop; before a round it takes or renews the job's lease in the database
//! (`store::JobLeases`), and only the holder runs the round. A replica that stops gives its leases
//! up at once; one that dies keeps them until they end, two periods and [`LEASE_MARGIN`] after
//! its last round, and then another replica takes the job over. Leases are judged by each
//! replica's clock, so replicas' clocks must agree to well within the margin (as they must for
//! tokens).

use std::sync::Arc;
use std::time::Duration;

use model::{Clock, Timestamp};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use store::Store;

/// What a lease lasts beyond two periods of its job: room for a slow round and for clock skew.
const LEASE_MARGIN: Duration = Duration::from_secs(10);

type Labels = Vec<(String, String)>;

/// This replica's side of the job leases: who it is, and its metrics.
#[derive(Clone)]
pub(crate) struct Jobs {
    store: Store,
    clock: Arc<dyn Clock>,
    holder: Arc<str>,
    rounds: Family<Labels, Counter>,
    held: Family<Labels, Gauge>,
}

impl Jobs {
    /// This replica, named by its host name and a random id (a new one at every start), with the
    /// metrics `warden_job_rounds_total{job}` (rounds run here) and `warden_job_lease_held{job}`
    /// (1 while this replica runs the job).
    pub(crate) fn new(store: Store, clock: Arc<dyn Clock>, registry: &mut Registry) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_default();
        let holder = format!("{host}/{}", uuid::Uuid::now_v7());
        tracing::info!(%holder, "background jobs run under a lease held as");
        let rounds = Family::<Labels, Counter>::default();
        registry.register(
            "job_rounds",
            "Rounds of a background job run by this replica",
            rounds.clone(),
        );
        let held = Family::<Labels, Gauge>::default();
        registry.register(
            "job_lease_held",
            "1 while this replica holds the lease on a background job, so that it runs it",
            held.clone(),
        );
        Self {
            store,
            clock,
            holder: holder.into(),
            rounds,
            held,
        }
    }

    /// The lease on `job`, whose rounds come every `period`.
    pub(crate) fn lease(&self, job: &'static str, period: Duration) -> Lease {
        Lease {
            jobs: self.clone(),
            job,
            length: period.saturating_mul(2).saturating_add(LEASE_MARGIN),
        }
    }
}

/// One job's lease, as one replica sees it.
pub(crate) struct Lease {
    jobs: Jobs,
    job: &'static str,
    length: Duration,
}

impl Lease {
    /// Whether this replica runs the job's round now: takes or renews the lease, and counts the
    /// round when it does. A database error answers no (the round waits for the next period).
    pub(crate) async fn hold(&self) -> bool {
        let now = self.jobs.clock.now();
        let until = Timestamp::from_unix_millis(
            now.unix_millis()
                .saturating_add(i64::try_from(self.length.as_millis()).unwrap_or(i64::MAX)),
        );
        let held = match self
            .jobs
            .store
            .job_leases()
            .take(self.job, &self.jobs.holder, now, until)
            .await
        {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(job = self.job, %error, "cannot take the job's lease; will retry");
                false
            }
        };
        self.jobs
            .held
            .get_or_create(&self.labels())
            .set(i64::from(held));
        if held {
            self.jobs.rounds.get_or_create(&self.labels()).inc();
        }
        held
    }

    /// The job's label on this replica's metrics.
    fn labels(&self) -> Labels {
        vec![("job".to_owned(), self.job.to_owned())]
    }

    /// Gives the lease up (at shutdown), so that another replica takes the job over at once.
    pub(crate) async fn release(&self) {
        if let Err(error) = self
            .jobs
            .store
            .job_leases()
            .release(self.job, &self.jobs.holder)
            .await
        {
            tracing::warn!(job = self.job, %error, "cannot give the job's lease up; it ends by itself");
        }
        self.jobs.held.get_or_create(&self.labels()).set(0);
    }
}
