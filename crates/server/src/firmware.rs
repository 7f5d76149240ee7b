//! Firmware releases on disk and their signing keys (docs/firmware.md): the firmware-signing keys
//! (a timeline of their own, private halves sealed under the key-encryption key, never a CA
//! key), a release made from a file (hashed while it is copied into the firmware directory under
//! its SHA-256, then signed into a manifest), and the files served to devices.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use firmware::{MAX_FIRMWARE_BYTES, MAX_NOTES_BYTES, Manifest, NewRelease, UploadError};
use model::Timestamp;
use pki::KeyEncryptionKey;
use sha2::{Digest, Sha256};
use store::{Release, Store, StoreError};
use tokens::keys::{KeyRing, SigningKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// What firmware keys are sealed for (bound as associated data).
const SEAL_PURPOSE: &str = "firmware-signing";
/// How long a superseded firmware key stays published: manifests signed with it are kept by
/// devices and offered again for as long as their release is in use.
const KEY_RETENTION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The firmware-signing keys with their private halves opened.
pub async fn key_ring(store: &Store, key: &KeyEncryptionKey) -> anyhow::Result<KeyRing> {
    let mut keys = store
        .firmware_keys()
        .all()
        .await
        .context("cannot read the firmware keys")?;
    for stored in &mut keys {
        let pem = key
            .open(SEAL_PURPOSE, &stored.private_pem)
            .with_context(|| {
                format!(
                    "firmware key {} does not open with the configured pki.encryption_key",
                    stored.kid
                )
            })?;
        stored.private_pem = String::from_utf8(pem).context("a firmware key is not PEM")?;
    }
    Ok(KeyRing::new(keys, KEY_RETENTION))
}

/// Makes sure a firmware key can sign now; on a fresh database, or with `rotate`, adds a new one
/// that signs from now on (older ones stay published for the manifests they signed).
pub async fn ensure_key(
    store: &Store,
    key: &KeyEncryptionKey,
    now: Timestamp,
    rotate: bool,
) -> anyhow::Result<Option<String>> {
    if !rotate && key_ring(store, key).await?.signer(now).is_some() {
        return Ok(None);
    }
    let mut new = SigningKey::generate(now, now)?;
    let kid = new.kid.clone();
    new.private_pem = key.seal(SEAL_PURPOSE, new.private_pem.as_bytes());
    store
        .firmware_keys()
        .insert(&new)
        .await
        .context("cannot store the firmware key")?;
    tracing::info!(%kid, "created a firmware-signing key");
    Ok(Some(kid))
}

/// Makes a release from `content`: checks model, version and notes, copies the content into
/// `dir` under its SHA-256 (through a temporary name, synced, then renamed), signs the manifest
/// and stores the release. The same model and version twice is refused, and so is an empty or
/// oversized file; a refused upload leaves nothing behind.
pub async fn upload(
    store: &Store,
    key: &KeyEncryptionKey,
    dir: &Path,
    new: NewRelease<'_>,
    content: impl AsyncRead + Unpin,
    now: Timestamp,
) -> Result<Release, UploadError> {
    let failed = |error: anyhow::Error| UploadError::Failed(error.into());
    registry::ModelName::parse(new.model)
        .map_err(|error| UploadError::Invalid(error.to_string()))?;
    let version = firmware::parse_version(new.version).map_err(UploadError::Invalid)?;
    if new.notes.len() > MAX_NOTES_BYTES {
        return Err(UploadError::Invalid(format!(
            "the notes are longer than {MAX_NOTES_BYTES} bytes"
        )));
    }
    let duplicate =
        |model: &str| UploadError::Conflict(format!("{model} already has a release {version}"));
    let existing = store
        .firmware()
        .releases(Some(new.model))
        .await
        .map_err(|error| failed(error.into()))?;
    if existing.iter().any(|release| {
        firmware::parse_version(&release.version).is_ok_and(|known| known == version)
    }) {
        return Err(duplicate(new.model));
    }
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))
        .map_err(failed)?;
    let (sha256, size) = copy_hashed(content, dir).await?;
    let release_id = format!("fw_{}", uuid::Uuid::now_v7().simple());
    let manifest = Manifest {
        release: release_id.clone(),
        model: new.model.to_owned(),
        version: version.to_string(),
        size,
        sha256: sha256.clone(),
        url: format!("/device/firmware/{release_id}"),
        iat: now.unix_millis().div_euclid(1000),
    };
    let signed = async {
        ensure_key(store, key, now, false).await?;
        let ring = key_ring(store, key).await?;
        firmware::sign_manifest(&ring, now, &manifest).map_err(anyhow::Error::from)
    }
    .await
    .map_err(failed)?;
    let release = Release {
        release_id,
        model: manifest.model,
        version: manifest.version,
        size,
        sha256,
        notes: new.notes.to_owned(),
        manifest: signed,
        created_at: now,
    };
    match store.firmware().insert_release(&release).await {
        Ok(()) => Ok(release),
        Err(StoreError::Conflict { .. }) => Err(duplicate(new.model)),
        Err(error) => Err(failed(error.into())),
    }
}

/// Copies `content` into `dir` named by its SHA-256; returns the hash and the size.
async fn copy_hashed(
    mut content: impl AsyncRead + Unpin,
    dir: &Path,
) -> Result<(String, u64), UploadError> {
    let failed = |error: anyhow::Error| UploadError::Failed(error.into());
    let temporary = dir.join(format!(".upload-{}", uuid::Uuid::new_v4().simple()));
    let mut output = tokio::fs::File::create(&temporary)
        .await
        .with_context(|| format!("cannot write {}", temporary.display()))
        .map_err(failed)?;
    let copied = async {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = content.read(&mut buffer).await.map_err(|error| {
                UploadError::Invalid(format!("the file could not be read: {error}"))
            })?;
            if read == 0 {
                break;
            }
            size += read as u64;
            if size > MAX_FIRMWARE_BYTES {
                return Err(UploadError::TooLarge);
            }
            hasher.update(&buffer[..read]);
            output
                .write_all(&buffer[..read])
                .await
                .map_err(|error| failed(error.into()))?;
        }
        if size == 0 {
            return Err(UploadError::Invalid("the file is empty".into()));
        }
        output
            .sync_all()
            .await
            .map_err(|error| failed(error.into()))?;
        Ok((hex::encode(hasher.finalize()), size))
    }
    .await;
    match copied {
        Ok((sha256, size)) => {
            tokio::fs::rename(&temporary, dir.join(&sha256))
                .await
                .context("cannot put the firmware file in place")
                .map_err(failed)?;
            Ok((sha256, size))
        }
        Err(error) => {
            let _ = tokio::fs::remove_file(&temporary).await;
            Err(error)
        }
    }
}

/// Firmware files in a directory, named by their SHA-256, and the releases made from uploads.
#[derive(Debug)]
pub struct DiskFiles {
    pub dir: PathBuf,
    pub store: Store,
    /// Opens the firmware-signing keys.
    pub key: Arc<KeyEncryptionKey>,
}

#[async_trait::async_trait]
impl http_api::FirmwareFiles for DiskFiles {
    async fn open(&self, sha256: &str) -> std::io::Result<tokio::fs::File> {
        // The name comes from the database; only a hash names a file here.
        if sha256.len() != 64 || !sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a SHA-256",
            ));
        }
        tokio::fs::File::open(self.dir.join(sha256)).await
    }

    async fn publish(
        &self,
        new: NewRelease<'_>,
        content: &mut (dyn AsyncRead + Send + Unpin),
        now: Timestamp,
    ) -> Result<Release, UploadError> {
        upload(&self.store, &self.key, &self.dir, new, content, now).await
    }
}
