//! Warden's CA at start: loaded from the database and unsealed, or made on first start; and the
//! operations on it that `warden admin ca …` runs.

use std::path::Path;

use anyhow::Context;
use model::Timestamp;
use pki::{Authority, CaCertificate, CaRole, KeyEncryptionKey};
use store::{Store, StoredCa};

use crate::config::PkiSettings;

/// Where the key-encryption key is made on first start when the configuration gives none.
pub const PKI_KEY_FILE: &str = "secrets/pki.key";

/// The configured key-encryption key, or the one in the data directory (made if missing).
pub fn encryption_key(settings: &PkiSettings, data_dir: &Path) -> anyhow::Result<KeyEncryptionKey> {
    match &settings.encryption_key {
        Some(key) => Ok(KeyEncryptionKey::parse(key)?),
        None => {
            let bytes = crate::signing::load_or_create_secret(&data_dir.join(PKI_KEY_FILE))?;
            Ok(KeyEncryptionKey::from_bytes(&bytes)?)
        }
    }
}

/// The issuing CA, made (root and intermediate) if the database has none yet. Two processes
/// starting at once agree: the second one's CA is not stored, and it loads the first one's.
pub async fn load_or_create(
    store: &Store,
    key: &KeyEncryptionKey,
    now: Timestamp,
) -> anyhow::Result<Authority> {
    if let Some(authority) = load(store, key).await? {
        return Ok(authority);
    }
    let root = pki::create_root(now)?;
    let intermediate = pki::issue_intermediate(&root, now)?;
    let created = store
        .certificates()
        .create_ca(&sealed(key, &root), &sealed(key, &intermediate), now)
        .await?;
    if created {
        tracing::info!("created Warden's certificate authority (root and intermediate)");
    }
    load(store, key)
        .await?
        .context("the CA was created but cannot be read back")
}

/// The issuing CA, if the database has one.
pub async fn load(store: &Store, key: &KeyEncryptionKey) -> anyhow::Result<Option<Authority>> {
    let certificates = store.certificates();
    let (Some(root), Some(intermediate)) = (
        certificates.ca(CaRole::Root).await?,
        certificates.ca(CaRole::Intermediate).await?,
    ) else {
        return Ok(None);
    };
    let intermediate = unseal(key, CaRole::Intermediate, &intermediate)?
        .context("the intermediate CA has no key in the database")?;
    Ok(Some(Authority::new(&root.certificate_pem, &intermediate)?))
}

/// The root CA with its key, when the key is in the database (not taken offline).
pub async fn root(store: &Store, key: &KeyEncryptionKey) -> anyhow::Result<Option<CaCertificate>> {
    match store.certificates().ca(CaRole::Root).await? {
        Some(stored) => unseal(key, CaRole::Root, &stored),
        None => Ok(None),
    }
}

/// A new intermediate signed by the root (whose key must be in the database), replacing the old.
/// Certificates the old intermediate issued stay valid: they chain to the same root.
pub async fn reissue_intermediate(
    store: &Store,
    key: &KeyEncryptionKey,
    now: Timestamp,
) -> anyhow::Result<()> {
    let root = root(store, key).await?.context(
        "the root CA's key is not in the database; bring it back with `warden admin ca import-root-key` first",
    )?;
    let intermediate = pki::issue_intermediate(&root, now)?;
    store
        .certificates()
        .replace_ca(CaRole::Intermediate, &sealed(key, &intermediate), now)
        .await?;
    Ok(())
}

pub fn sealed(key: &KeyEncryptionKey, ca: &CaCertificate) -> StoredCa {
    StoredCa {
        certificate_pem: ca.certificate_pem.clone(),
        sealed_key: Some(key.seal(ca.role.seal_purpose(), &ca.key_pkcs8)),
    }
}

fn unseal(
    key: &KeyEncryptionKey,
    role: CaRole,
    stored: &StoredCa,
) -> anyhow::Result<Option<CaCertificate>> {
    let Some(sealed_key) = &stored.sealed_key else {
        return Ok(None);
    };
    let key_pkcs8 = key.open(role.seal_purpose(), sealed_key).with_context(|| {
        format!(
            "cannot open the {} CA's key: is pki.encryption_key the key the CA was made with?",
            role.as_str()
        )
    })?;
    Ok(Some(CaCertificate {
        role,
        certificate_pem: stored.certificate_pem.clone(),
        key_pkcs8,
    }))
}
