//! The audit journal wired up: the writer committing into the store, the checkpoint key sealed
//! under the key-encryption key, checkpoints at an interval, retention by whole segments, and the
//! walk `warden audit verify` runs (docs/audit.md).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use audit::{CheckpointKey, Finding, Journal, Summary, Verifier};
use model::{Clock, Timestamp};
use pki::KeyEncryptionKey;
use store::{Store, StoredAuditKey};
use tokio_util::sync::CancellationToken;

use crate::config::AuditSettings;
use crate::jobs::Lease;

/// What the audit key is sealed for (bound as associated data).
const SEAL_PURPOSE: &str = "audit-checkpoint";
/// Records that may wait for their commit; beyond this, actions wait to be recorded.
const QUEUE: usize = 10_000;
/// The most records one commit chains.
const MAX_BATCH: usize = 500;
/// Entries one retention delete removes at most.
const RETENTION_BATCH: u32 = 5_000;
/// Entries read per page while verifying.
const VERIFY_PAGE: u32 = 5_000;
/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// The journal over `store`, and its commit loop for the caller to own; it stops with `shutdown`.
pub(crate) fn journal(
    store: &Store,
    shutdown: &CancellationToken,
) -> (Journal, impl Future<Output = ()> + Send + 'static) {
    Journal::new(
        Arc::new(store.clone()),
        QUEUE,
        MAX_BATCH,
        shutdown.clone().cancelled_owned(),
    )
}

/// The key that signs checkpoints: the first stored one, or a new one made and stored (sealed)
/// on first start. Every replica uses the oldest key, so they agree.
pub async fn checkpoint_key(
    store: &Store,
    key: &KeyEncryptionKey,
    now: Timestamp,
) -> anyhow::Result<CheckpointKey> {
    if store.audit().keys().await?.is_empty() {
        let (new, pkcs8) = CheckpointKey::generate().context("cannot make the audit key")?;
        let stored = StoredAuditKey {
            id: new.id().to_owned(),
            public_key: new.public_key().to_vec(),
            sealed_private: key.seal(SEAL_PURPOSE, &pkcs8),
        };
        store.audit().add_key(&stored, now).await?;
    }
    let first = store
        .audit()
        .keys()
        .await?
        .into_iter()
        .next()
        .context("the audit key was not stored")?;
    open(&first, key)
}

/// Opens a stored key and checks that its public half is the one stored beside it.
fn open(stored: &StoredAuditKey, key: &KeyEncryptionKey) -> anyhow::Result<CheckpointKey> {
    let pkcs8 = key
        .open(SEAL_PURPOSE, &stored.sealed_private)
        .with_context(|| {
            format!(
                "audit key {} does not open with the configured pki.encryption_key",
                stored.id
            )
        })?;
    let opened = CheckpointKey::from_pkcs8(&pkcs8)?;
    anyhow::ensure!(
        opened.public_key() == stored.public_key.as_slice() && opened.id() == stored.id,
        "audit key {}: the stored public key is not the sealed key's; it was replaced",
        stored.id
    );
    Ok(opened)
}

/// Signs a checkpoint every `settings.checkpoint_interval` (when entries were added), and removes
/// segments past retention every hour, on the replica holding `lease`.
pub(crate) async fn upkeep(
    store: Store,
    key: CheckpointKey,
    settings: AuditSettings,
    clock: Arc<dyn Clock>,
    lease: Lease,
    shutdown: CancellationToken,
) {
    let mut last_retention: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(settings.checkpoint_interval) => {}
        }
        if !lease.hold().await {
            continue;
        }
        match store.audit().checkpoint(&key, clock.now()).await {
            Ok(Some(checkpoint)) => tracing::debug!(
                number = checkpoint.number,
                last_seq = checkpoint.last_seq,
                "audit checkpoint signed"
            ),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "audit checkpoint failed; will retry"),
        }
        let due = last_retention.is_none_or(|at| at.elapsed() >= RETENTION_INTERVAL);
        if let Some(retention) = settings.retention
            && due
        {
            last_retention = Some(std::time::Instant::now());
            let now = clock.now();
            let cutoff = Timestamp::from_unix_millis(
                now.unix_millis()
                    .saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX)),
            );
            match store
                .audit()
                .remove_segments_before(cutoff, now, RETENTION_BATCH)
                .await
            {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "removed audit segments past retention"),
                Err(error) => tracing::warn!(%error, "audit retention failed; will retry"),
            }
        }
    }
    lease.release().await;
}

/// What `warden audit verify` found: nothing wrong (with what was covered), or the first problem.
pub type Verdict = Result<Summary, Finding>;

/// Walks the whole journal: every audit key against its sealed half, every checkpoint's
/// signature, every entry's hash and link, and the head. Reads a page at a time.
pub async fn verify(store: &Store, key: &KeyEncryptionKey) -> anyhow::Result<Verdict> {
    let mut public_keys = HashMap::new();
    for stored in store.audit().keys().await? {
        open(&stored, key)?;
        public_keys.insert(stored.id, stored.public_key);
    }
    let checkpoints = store.audit().checkpoints().await?;
    let mut verifier = match Verifier::new(&public_keys, checkpoints) {
        Ok(verifier) => verifier,
        Err(finding) => return Ok(Err(finding)),
    };
    let mut after = verifier.first_seq() - 1;
    loop {
        let page = store.audit().entries_after(after, VERIFY_PAGE).await?;
        for entry in &page {
            if let Err(finding) = verifier.push(entry) {
                return Ok(Err(finding));
            }
        }
        match page.last() {
            Some(last) if page.len() == VERIFY_PAGE as usize => after = last.seq,
            _ => break,
        }
    }
    let head = store.audit().head().await?;
    Ok(verifier.finish(head))
}
