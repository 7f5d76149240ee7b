//! Device events wired up: the recorder committing into the store, its figures on `/metrics`,
//! and retention deleting old events in bounded batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use events::{Recorder, RecorderOptions};
use model::Clock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use store::{Backend, RetentionScope, Store};
use tokio_util::sync::CancellationToken;

use crate::config::EventsSettings;
use crate::jobs::Lease;

/// How often retention runs.
pub(crate) const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Events one retention delete removes at most, so that no transaction holds the table long.
const RETENTION_BATCH: u32 = 5_000;

/// The recorder over `store`, and its commit loop for the caller to own; it stops with
/// `shutdown`. Its figures are registered in `registry`.
pub(crate) fn recorder(
    store: &Store,
    settings: &EventsSettings,
    registry: &mut Registry,
    shutdown: &CancellationToken,
) -> (Recorder, impl Future<Output = ()> + Send + 'static) {
    let options = RecorderOptions {
        writers: match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => settings.postgres_writers,
        },
        ..settings.recorder.clone()
    };
    let (recorder, commits) = Recorder::new(
        Arc::new(store.clone()),
        options,
        shutdown.clone().cancelled_owned(),
    );
    registry.register_collector(Box::new(RecorderMetrics(recorder.clone())));
    (recorder, commits)
}

/// The recorder's counters and queue depth, read at each scrape.
#[derive(Debug)]
struct RecorderMetrics(Recorder);

impl Collector for RecorderMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let counters = [
            (
                "events_stored",
                "Device events committed to the database",
                &stats.stored,
            ),
            (
                "events_duplicates",
                "Resent device messages that were already stored, skipped",
                &stats.duplicates,
            ),
            (
                "events_commits",
                "Database transactions that stored events",
                &stats.commits,
            ),
            (
                "events_failed_commits",
                "Event commits that failed and were retried",
                &stats.failed_commits,
            ),
            (
                "events_refused",
                "Device events the database refused on their own while it took others; their senders were not acknowledged",
                &stats.refused,
            ),
            (
                "events_dropped",
                "QoS 0 device messages dropped because the event queue was full",
                &stats.dropped,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let seconds = [
            (
                "events_commit_seconds",
                "Time spent in event commits that succeeded; divided by the commits, the mean commit",
                &stats.commit_micros,
            ),
            (
                "events_lag_seconds",
                "Time from each event's arrival to the end of its commit, summed; divided by the events stored and skipped, the mean lag",
                &stats.lag_micros,
            ),
        ];
        for (name, help, micros) in seconds {
            let counter = ConstCounter::new(micros.load(Ordering::Relaxed) as f64 / 1e6);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let depth = ConstGauge::new(i64::try_from(self.0.queue_depth()).unwrap_or(i64::MAX));
        depth.encode(encoder.encode_descriptor(
            "events_queue_depth",
            "Device events waiting for their database commit",
            None,
            depth.metric_type(),
        )?)?;
        Ok(())
    }
}

/// Deletes events older than their retention, every [`RETENTION_INTERVAL`] on the replica holding
/// `lease`: each model with its own retention first, then every other device with the global one.
pub(crate) async fn enforce_retention(
    store: Store,
    settings: EventsSettings,
    clock: Arc<dyn Clock>,
    lease: Lease,
    shutdown: CancellationToken,
) {
    let with_own: Vec<String> = settings
        .retention_by_model
        .iter()
        .map(|(model, _)| model.clone())
        .collect();
    loop {
        if lease.hold().await {
            let now = clock.now();
            let mut scopes: Vec<(RetentionScope<'_>, Option<Duration>)> = settings
                .retention_by_model
                .iter()
                .map(|(model, retention)| (RetentionScope::Model(model), *retention))
                .collect();
            scopes.push((RetentionScope::AllBut(&with_own), settings.retention));
            for (scope, retention) in scopes {
                let Some(retention) = retention else {
                    continue;
                };
                let cutoff = model::Timestamp::from_unix_millis(
                    now.unix_millis()
                        .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)),
                );
                if let Err(error) = delete_before(&store, cutoff, scope, &shutdown).await {
                    tracing::warn!(%error, ?scope, "event retention failed; will retry");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(RETENTION_INTERVAL) => {}
        }
    }
    lease.release().await;
}

async fn delete_before(
    store: &Store,
    cutoff: model::Timestamp,
    scope: RetentionScope<'_>,
    shutdown: &CancellationToken,
) -> Result<(), store::StoreError> {
    let mut total = 0;
    while !shutdown.is_cancelled() {
        let deleted = store
            .events()
            .delete_received_before(cutoff, scope, RETENTION_BATCH)
            .await?;
        total += deleted;
        if deleted < u64::from(RETENTION_BATCH) {
            break;
        }
    }
    if total > 0 {
        tracing::info!(total, ?scope, "deleted events past their retention");
    }
    Ok(())
}
