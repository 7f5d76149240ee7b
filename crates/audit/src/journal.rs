//! The journal's writer: callers hand records to a bounded queue and wait until the transaction
//! that chains them has committed. Commits are grouped without a timer: while one runs, the next
//! records gather, so a busy server appends many records per commit and the chain (one head, one
//! writer at a time) does not become the bottleneck.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::Record;

/// Where records are chained and committed: the store, which numbers and hashes them after the
/// head it locks in the same transaction.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    async fn append(&self, records: &[Record]) -> Result<(), AuditLogError>;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuditLogError(pub String);

/// The record was not committed because the journal is stopping.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the audit record was not written: the journal is stopping")]
pub struct NotRecorded;

type Waiting = (Record, oneshot::Sender<()>);

/// The sending side: cheap to clone.
#[derive(Clone, Debug)]
pub struct Journal {
    queue: mpsc::Sender<Waiting>,
}

/// Backoff between retries of a failed commit: records are never dropped while the database is
/// away, so their callers wait.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(2);

impl Journal {
    /// The journal and its commit loop, for the caller to run as a task. The loop ends when
    /// `stop` resolves, after committing what is already queued.
    pub fn new(
        log: Arc<dyn AuditLog>,
        queue: usize,
        max_batch: usize,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (sender, receiver) = mpsc::channel(queue.max(1));
        let commits = commit_loop(log, receiver, max_batch.max(1), stop);
        (Self { queue: sender }, commits)
    }

    /// Appends `record` and returns once it is committed.
    pub async fn append(&self, record: Record) -> Result<(), NotRecorded> {
        let (committed, done) = oneshot::channel();
        self.queue
            .send((record, committed))
            .await
            .map_err(|_| NotRecorded)?;
        done.await.map_err(|_| NotRecorded)
    }
}

async fn commit_loop(
    log: Arc<dyn AuditLog>,
    mut receiver: mpsc::Receiver<Waiting>,
    max_batch: usize,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(stop);
    let mut stopping = false;
    loop {
        let first = if stopping {
            match receiver.try_recv() {
                Ok(waiting) => waiting,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                waiting = receiver.recv() => match waiting {
                    Some(waiting) => waiting,
                    None => return,
                },
                () = &mut stop => {
                    stopping = true;
                    receiver.close();
                    continue;
                }
            }
        };
        let mut batch = vec![first];
        while batch.len() < max_batch
            && let Ok(waiting) = receiver.try_recv()
        {
            batch.push(waiting);
        }
        let (records, waiters): (Vec<Record>, Vec<oneshot::Sender<()>>) = batch.into_iter().unzip();
        let mut backoff = FIRST_RETRY;
        loop {
            match log.append(&records).await {
                Ok(()) => {
                    for waiter in waiters {
                        // A caller that stopped waiting has nothing to be told.
                        let _ = waiter.send(());
                    }
                    break;
                }
                Err(error) if stopping => {
                    tracing::error!(%error, records = records.len(), "audit records not written at shutdown");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, records = records.len(), "audit commit failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(LAST_RETRY);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use model::Timestamp;

    use super::*;
    use crate::{Action, Actor, Target};

    #[derive(Default)]
    struct Memory {
        commits: Mutex<Vec<Vec<Record>>>,
        failures_left: AtomicUsize,
    }

    #[async_trait]
    impl AuditLog for Memory {
        async fn append(&self, records: &[Record]) -> Result<(), AuditLogError> {
            if self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
            {
                return Err(AuditLogError("database away".into()));
            }
            self.commits.lock().unwrap().push(records.to_vec());
            Ok(())
        }
    }

    fn record(index: i64) -> Record {
        Record::new(
            Timestamp::from_unix_millis(index),
            Actor::Anonymous,
            Action::AccountLogin,
            Target::new("account", index.to_string()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn records_wait_for_their_commit_and_survive_failed_ones() {
        let log = Arc::new(Memory::default());
        log.failures_left.store(3, Ordering::SeqCst);
        let (journal, commits) = Journal::new(log.clone(), 100, 10, std::future::pending());
        tokio::spawn(commits);
        let appends: Vec<_> = (0..25)
            .map(|index| {
                let journal = journal.clone();
                tokio::spawn(async move { journal.append(record(index)).await })
            })
            .collect();
        for append in appends {
            append.await.unwrap().unwrap();
        }
        let commits = log.commits.lock().unwrap();
        let mut stored: Vec<i64> = commits
            .iter()
            .flatten()
            .map(|record| record.at.unix_millis())
            .collect();
        assert!(commits.iter().all(|batch| batch.len() <= 10));
        stored.sort_unstable();
        assert_eq!(stored, (0..25).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_stopped_journal_refuses_new_records() {
        let log = Arc::new(Memory::default());
        let (journal, commits) = Journal::new(log, 10, 10, async {});
        commits.await;
        assert_eq!(journal.append(record(1)).await, Err(NotRecorded));
    }
}
