//! Durable ingestion with group commit: callers hand events to a bounded queue and (for messages a
//! device wants acknowledged) wait until the transaction that holds them has committed.
//!
//! No timer groups commits. While one commit runs, new events wait in the queue; the next commit
//! takes everything waiting, up to `max_batch`. An idle system commits each event at once, a busy
//! one commits large batches, and throughput follows the database's commit rate times the batch
//! size. A commit that fails is retried with backoff and never dropped; while it retries the queue
//! fills, and then `record` waits: back-pressure reaches the broker and through it the devices,
//! which see their acknowledgements withheld.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::Event;

/// Where events are committed: the database, through the store.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Stores every event of `batch` in one transaction, skipping events whose device and message
    /// id are already stored. Returns how many were new.
    async fn append(&self, batch: &[Event]) -> Result<u64, EventLogError>;
    /// Whether the database answers at all: after a failed commit, it tells a database that is
    /// down (wait and retry) from a batch it refuses (find the event at fault).
    async fn reachable(&self) -> bool;
}

/// A commit that did not happen; the recorder retries it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EventLogError {
    pub message: String,
    /// The database cannot take writes for now (down, disk full, shutting down): the batch is
    /// retried whole once it can, rather than searched for an event at fault.
    pub unavailable: bool,
}

/// The event was not committed (the recorder is stopping): the message must not be acknowledged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the event was not stored: the recorder is stopping")]
pub struct NotStored;

#[derive(Clone, Debug)]
pub struct RecorderOptions {
    /// Events that may wait for a commit; beyond this, `record` waits and `offer` drops.
    pub queue: usize,
    /// The most events one transaction holds.
    pub max_batch: usize,
    /// Commits that may run at once (1 for SQLite, which has one writer).
    pub writers: usize,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        Self {
            queue: 10_000,
            max_batch: 1_000,
            writers: 1,
        }
    }
}

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Events committed (new ones; resends of stored messages are not counted).
    pub stored: AtomicU64,
    /// Resends of messages already stored, skipped.
    pub duplicates: AtomicU64,
    pub commits: AtomicU64,
    /// Commits that failed and were retried.
    pub failed_commits: AtomicU64,
    /// Best-effort events (QoS 0) dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Events the database refused on their own while it took others (their senders were not
    /// acknowledged).
    pub refused: AtomicU64,
    /// Microseconds spent in commits that succeeded, summed: with `commits`, the mean commit time.
    pub commit_micros: AtomicU64,
    /// Microseconds each committed event waited from its arrival to the end of its commit,
    /// summed over events: with `stored` and `duplicates`, the mean lag.
    pub lag_micros: AtomicU64,
}

struct Pending {
    event: Event,
    arrived: Instant,
    /// Told once the event is committed; `None` for best-effort events.
    committed: Option<oneshot::Sender<()>>,
}

/// The sending side: cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    queue: mpsc::Sender<Pending>,
    stats: Arc<RecorderStats>,
    /// Counts commits, so that readers of new events learn of them at once.
    committed: watch::Receiver<u64>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("message_id", &self.event.message_id)
            .finish_non_exhaustive()
    }
}

/// Backoff between retries of a failed commit.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(2);

impl Recorder {
    /// The recorder and its commit loop, for the caller to run as a task it owns. The loop runs
    /// until `stop` resolves, then commits what is already queued once more and ends; events
    /// still uncommitted then are reported as [`NotStored`].
    pub fn new(
        log: Arc<dyn EventLog>,
        options: RecorderOptions,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (sender, receiver) = mpsc::channel(options.queue.max(1));
        let stats = Arc::new(RecorderStats::default());
        let (tell, committed) = watch::channel(0);
        let done = Done {
            stats: Arc::clone(&stats),
            tell: Arc::new(tell),
        };
        let commits = commit_loop(log, receiver, options, done, stop);
        (
            Self {
                queue: sender,
                stats,
                committed,
            },
            commits,
        )
    }

    /// Queues `event` and returns once it is committed. Waits for room when the queue is full.
    pub async fn record(&self, event: Event) -> Result<(), NotStored> {
        let (committed, done) = oneshot::channel();
        let pending = Pending {
            event,
            arrived: Instant::now(),
            committed: Some(committed),
        };
        self.queue.send(pending).await.map_err(|_| NotStored)?;
        done.await.map_err(|_| NotStored)
    }

    /// Queues `event` without waiting for its commit; drops it (and counts the drop) when the
    /// queue is full. For messages nobody is waiting to have acknowledged (QoS 0).
    pub fn offer(&self, event: Event) -> bool {
        let pending = Pending {
            event,
            arrived: Instant::now(),
            committed: None,
        };
        let queued = self.queue.try_send(pending).is_ok();
        if !queued {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    /// Events waiting for a commit now.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    pub fn stats(&self) -> &RecorderStats {
        &self.stats
    }

    /// Changes after every commit in this process: a live reader waits on it instead of polling
    /// the database (events committed by other replicas still need a poll).
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }
}

/// Where the commits report: the counters, and the watch live readers wait on.
#[derive(Clone)]
struct Done {
    stats: Arc<RecorderStats>,
    tell: Arc<watch::Sender<u64>>,
}

async fn commit_loop(
    log: Arc<dyn EventLog>,
    mut receiver: mpsc::Receiver<Pending>,
    options: RecorderOptions,
    done: Done,
    stop: impl Future<Output = ()> + Send,
) {
    let writers = Arc::new(Semaphore::new(options.writers.max(1)));
    let (stopping, stopped) = watch::channel(false);
    let mut commits = JoinSet::new();
    tokio::pin!(stop);
    loop {
        // Taking a writer before reading the queue is what groups commits: while every writer
        // is busy, events gather in the queue for the next batch.
        let writer = tokio::select! {
            permit = Arc::clone(&writers).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let first = tokio::select! {
            next = receiver.recv() => match next {
                Some(pending) => pending,
                None => break,
            },
            () = &mut stop => break,
        };
        let batch = take_batch(first, &mut receiver, options.max_batch);
        let log = Arc::clone(&log);
        let done = done.clone();
        let stopped = stopped.clone();
        commits.spawn(async move {
            commit(log.as_ref(), batch, &done, stopped).await;
            drop(writer);
        });
        while commits.try_join_next().is_some() {}
    }
    // Stopping: no new events, and what is queued gets one more chance before the waiters are
    // told it was not stored.
    receiver.close();
    let _ = stopping.send(true);
    while let Some(first) = receiver.recv().await {
        let batch = take_batch(first, &mut receiver, options.max_batch);
        commit(log.as_ref(), batch, &done, stopped.clone()).await;
    }
    while commits.join_next().await.is_some() {}
}

fn take_batch(
    first: Pending,
    receiver: &mut mpsc::Receiver<Pending>,
    max_batch: usize,
) -> Vec<Pending> {
    let mut batch = vec![first];
    while batch.len() < max_batch {
        match receiver.try_recv() {
            Ok(pending) => batch.push(pending),
            Err(_) => break,
        }
    }
    batch
}

/// Events committed together, with who waits for each and when each arrived.
struct Batch {
    events: Vec<Event>,
    waiters: Vec<Option<oneshot::Sender<()>>>,
    arrivals: Vec<Instant>,
}

impl Batch {
    fn new(pending: Vec<Pending>) -> Self {
        let mut batch = Self {
            events: Vec::with_capacity(pending.len()),
            waiters: Vec::with_capacity(pending.len()),
            arrivals: Vec::with_capacity(pending.len()),
        };
        for pending in pending {
            batch.events.push(pending.event);
            batch.waiters.push(pending.committed);
            batch.arrivals.push(pending.arrived);
        }
        batch
    }

    /// The second half, taken off this batch.
    fn split(&mut self) -> Self {
        let half = self.events.len() / 2;
        Self {
            events: self.events.split_off(half),
            waiters: self.waiters.split_off(half),
            arrivals: self.arrivals.split_off(half),
        }
    }
}

/// How often the database may refuse one event while it answers, before the event is given up.
const REFUSALS_BEFORE_GIVING_UP: u32 = 3;

/// Commits `batch` and tells its waiters; dropping a waiter's sender unanswered tells it
/// [`NotStored`].
///
/// A failed commit is retried with backoff while the database does not answer or cannot take
/// writes (it is down, restarting, or its disk is full): nothing is dropped for that. When the database answers but refused the batch,
/// the batch is split in halves committed on their own, so that one event it cannot take does not
/// hold back the others; that one event is given up after a few refusals, and its sender is not
/// acknowledged. When the recorder is stopping, a failed batch is given up at once.
async fn commit(
    log: &dyn EventLog,
    pending: Vec<Pending>,
    done: &Done,
    mut stopped: watch::Receiver<bool>,
) {
    let stats = &done.stats;
    let mut batches = vec![Batch::new(pending)];
    while let Some(mut batch) = batches.pop() {
        let mut delay = FIRST_RETRY;
        let mut refusals = 0;
        loop {
            let started = Instant::now();
            let error = match log.append(&batch.events).await {
                Ok(new) => {
                    answer_committed(batch, new, started, done);
                    break;
                }
                Err(error) => error,
            };
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            if *stopped.borrow() {
                tracing::error!(%error, events = batch.events.len(), "events not stored at shutdown; their senders were not acknowledged");
                break;
            }
            if !error.unavailable && log.reachable().await {
                if batch.events.len() > 1 {
                    let second = batch.split();
                    // The first half is committed first: the stack pops it next.
                    batches.push(second);
                    batches.push(batch);
                    break;
                }
                refusals += 1;
                if refusals >= REFUSALS_BEFORE_GIVING_UP {
                    let event = &batch.events[0];
                    tracing::error!(%error, device_id = %event.device_id, message_id = %event.message_id, topic = %event.topic, "the database refuses this event; its sender is not acknowledged");
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
            tracing::warn!(%error, events = batch.events.len(), retry_in = ?delay, "cannot store events; retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stopped.wait_for(|stopping| *stopping) => {}
            }
            delay = (delay * 2).min(LAST_RETRY);
        }
    }
}

/// Counts a successful commit of `batch` (`new` events were not stored before) and answers its
/// waiters.
fn answer_committed(batch: Batch, new: u64, started: Instant, done: &Done) {
    let stats = &done.stats;
    let now = Instant::now();
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats
        .commit_micros
        .fetch_add(micros(now - started), Ordering::Relaxed);
    let lag: u64 = batch
        .arrivals
        .iter()
        .map(|arrived| micros(now - *arrived))
        .sum();
    stats.lag_micros.fetch_add(lag, Ordering::Relaxed);
    stats.stored.fetch_add(new, Ordering::Relaxed);
    let total = u64::try_from(batch.events.len()).unwrap_or(u64::MAX);
    stats
        .duplicates
        .fetch_add(total.saturating_sub(new), Ordering::Relaxed);
    for waiter in batch.waiters.into_iter().flatten() {
        let _ = waiter.send(());
    }
    done.tell.send_modify(|commits| *commits += 1);
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    use model::{DeviceId, Timestamp};

    use super::*;
    use crate::MessageProperties;

    /// An in-memory log whose commits can be made to fail, recording each batch's size.
    #[derive(Default)]
    struct MemoryLog {
        failing: AtomicBool,
        /// A message id the log refuses while it takes everything else.
        poison: Mutex<Option<String>>,
        batches: Mutex<Vec<usize>>,
        stored: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl EventLog for MemoryLog {
        async fn append(&self, batch: &[Event]) -> Result<u64, EventLogError> {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(EventLogError {
                    message: "database unavailable".into(),
                    unavailable: true,
                });
            }
            let poison = self.poison.lock().unwrap().clone();
            if batch
                .iter()
                .any(|event| Some(&event.message_id) == poison.as_ref())
            {
                return Err(EventLogError {
                    message: "value too long".into(),
                    unavailable: false,
                });
            }
            self.batches.lock().unwrap().push(batch.len());
            let mut stored = self.stored.lock().unwrap();
            let before = stored.len();
            for event in batch {
                if !stored.contains(&event.message_id) {
                    stored.push(event.message_id.clone());
                }
            }
            Ok((stored.len() - before) as u64)
        }

        async fn reachable(&self) -> bool {
            !self.failing.load(Ordering::SeqCst)
        }
    }

    fn event(id: u32) -> Event {
        Event::received(
            DeviceId::parse("oven-1").unwrap(),
            "devices/oven-1/events".to_owned(),
            format!(r#"{{"id":"m-{id}"}}"#).into_bytes(),
            MessageProperties::default(),
            Timestamp::from_unix_millis(0),
        )
    }

    fn start(
        log: Arc<MemoryLog>,
        options: &RecorderOptions,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (recorder, commits) = Recorder::new(log, options.clone(), stop);
        (recorder, tokio::spawn(commits))
    }

    fn options(queue: usize) -> RecorderOptions {
        RecorderOptions {
            queue,
            max_batch: 100,
            writers: 1,
        }
    }

    #[tokio::test]
    async fn concurrent_records_share_commits_and_each_returns_after_its_own() {
        let log = Arc::new(MemoryLog::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let (recorder, task) = start(log.clone(), &options(1_000), async {
            let _ = stopped.await;
        });
        let mut senders = JoinSet::new();
        for id in 0..300 {
            let recorder = recorder.clone();
            senders.spawn(async move { recorder.record(event(id)).await });
        }
        while let Some(result) = senders.join_next().await {
            assert_eq!(result.unwrap(), Ok(()));
        }
        assert_eq!(log.stored.lock().unwrap().len(), 300);
        let batches = log.batches.lock().unwrap().clone();
        assert!(
            batches.len() < 300 && batches.iter().all(|size| *size <= 100),
            "commits were grouped, none above max_batch: {batches:?}"
        );
        assert_eq!(recorder.stats().stored.load(Ordering::Relaxed), 300);
        let _ = stop.send(());
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_resent_message_is_stored_once() {
        let log = Arc::new(MemoryLog::default());
        let (recorder, _task) = start(log.clone(), &options(10), std::future::pending());
        recorder.record(event(1)).await.unwrap();
        recorder.record(event(1)).await.unwrap();
        assert_eq!(*log.stored.lock().unwrap(), vec!["m-1".to_owned()]);
        assert_eq!(recorder.stats().duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(*recorder.committed().borrow(), 2, "each commit is told");
    }

    #[tokio::test]
    async fn a_failing_database_holds_events_back_until_it_returns() {
        let log = Arc::new(MemoryLog::default());
        log.failing.store(true, Ordering::SeqCst);
        let (recorder, _task) = start(log.clone(), &options(4), std::future::pending());
        let waiting = {
            let recorder = recorder.clone();
            tokio::spawn(async move { recorder.record(event(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "no answer while nothing is stored");
        // The queue is bounded: best-effort events beyond it are dropped and counted.
        let offered = (2..20).filter(|id| recorder.offer(event(*id))).count();
        assert!(offered <= 4, "{offered}");
        assert!(recorder.stats().dropped.load(Ordering::Relaxed) >= 14);
        log.failing.store(false, Ordering::SeqCst);
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert!(recorder.stats().failed_commits.load(Ordering::Relaxed) >= 1);
        assert!(log.stored.lock().unwrap().contains(&"m-1".to_owned()));
    }

    #[tokio::test]
    async fn an_event_the_database_refuses_does_not_hold_back_the_others() {
        let log = Arc::new(MemoryLog::default());
        *log.poison.lock().unwrap() = Some("m-7".to_owned());
        let (recorder, _task) = start(log.clone(), &options(100), std::future::pending());
        let mut senders = JoinSet::new();
        for id in 0..20 {
            let recorder = recorder.clone();
            senders.spawn(async move { (id, recorder.record(event(id)).await) });
        }
        while let Some(result) = senders.join_next().await {
            let (id, answer) = result.unwrap();
            let expected = if id == 7 { Err(NotStored) } else { Ok(()) };
            assert_eq!(answer, expected, "event {id}");
        }
        assert_eq!(log.stored.lock().unwrap().len(), 19);
        assert_eq!(recorder.stats().refused.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn stopping_with_the_database_down_answers_not_stored() {
        let log = Arc::new(MemoryLog::default());
        log.failing.store(true, Ordering::SeqCst);
        let (stop, stopped) = oneshot::channel::<()>();
        let (recorder, task) = start(log.clone(), &options(10), async {
            let _ = stopped.await;
        });
        let waiting = {
            let recorder = recorder.clone();
            tokio::spawn(async move { recorder.record(event(1)).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        assert_eq!(waiting.await.unwrap(), Err(NotStored));
        task.await.unwrap();
        assert_eq!(recorder.record(event(2)).await, Err(NotStored));
    }
}
