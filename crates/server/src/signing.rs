//! Key material of the authorization server: the token signing keys in the database, and the
//! server key that client secrets are hashed under; and the clients Warden registers itself.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use model::Timestamp;
use store::Store;
use tokens::keys::{KeyRing, SigningKey};

use crate::config::Settings;

/// Makes sure some key can sign now; on a fresh database, creates the first one.
pub async fn ensure_signing_key(store: &Store, now: Timestamp) -> anyhow::Result<()> {
    let keys = store
        .signing_keys()
        .all()
        .await
        .context("cannot read the signing keys")?;
    if KeyRing::new(keys, Duration::ZERO).signer(now).is_none() {
        let key = SigningKey::generate(now, now)?;
        store
            .signing_keys()
            .insert(&key)
            .await
            .context("cannot store the signing key")?;
        tracing::info!(kid = %key.kid, "created the first token signing key");
    }
    Ok(())
}

/// Registers Warden's own clients when the database has none: the command-line client and the
/// web console (`oauth::client::{CLI_CLIENT_ID, CONSOLE_CLIENT_ID}`). A client an operator changed
/// is left as it is, except that the console's redirect URI follows Warden's public address
/// (`issuer`), so that the console works after the address changed.
pub async fn ensure_builtin_clients(
    store: &Store,
    issuer: &str,
    now: Timestamp,
) -> anyhow::Result<()> {
    let invalid = |error: oauth::scope::UnknownScope| anyhow::anyhow!("{error}");
    let clients = store.oauth_clients();
    for client in [
        oauth::client::cli_client(now).map_err(invalid)?,
        oauth::client::console_client(issuer, now).map_err(invalid)?,
    ] {
        let found = async || {
            clients
                .by_id(&client.client_id)
                .await
                .context("cannot read the OAuth clients")
        };
        match found().await? {
            Some(registered) => {
                if client.client_id == oauth::client::CONSOLE_CLIENT_ID
                    && registered.redirect_uris != client.redirect_uris
                {
                    clients
                        .set_redirect_uris(&client.client_id, &client.redirect_uris)
                        .await
                        .context("cannot update the console's redirect URI")?;
                }
            }
            None => {
                if let Err(error) = clients.insert(&client).await {
                    // Another replica may have registered it at the same moment.
                    if found().await?.is_none() {
                        return Err(error).context("cannot register Warden's own clients");
                    }
                }
                tracing::info!(client_id = %client.client_id, "registered a client of Warden's own");
            }
        }
    }
    Ok(())
}

/// Publishes a new signing key that starts signing after `lead`; the current key keeps signing
/// until then and stays published until its tokens have expired.
pub async fn rotate_signing_key(
    store: &Store,
    now: Timestamp,
    lead: Duration,
) -> anyhow::Result<SigningKey> {
    let key = SigningKey::generate(now, now.plus(lead))?;
    store
        .signing_keys()
        .insert(&key)
        .await
        .context("cannot store the signing key")?;
    Ok(key)
}

/// The server key for client-secret hashes: read from `path`, or made (32 random bytes, mode 0600)
/// on first start. Replicas sharing one database must share this file.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(text) = std::fs::read_to_string(path) {
        return parse_secret_key(&text).with_context(|| format!("{}", path.display()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let key: [u8; 32] = rand::random();
    let text: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
    crate::tls::write_atomically(path, &text, 0o600)?;
    Ok(key.to_vec())
}

/// The server key that keys the hashes of client secrets and device passwords: the configured
/// one (`oauth.secret_key`), or the one in the data directory, made on first start.
pub fn client_secret_key(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    match &settings.secret_key {
        Some(key) => Ok(key.clone()),
        None => load_or_create_secret(&settings.data_dir.join(crate::CLIENT_SECRET_KEY_FILE)),
    }
}

/// A 32-byte key written as 64 hex digits (surrounding white space allowed).
pub(crate) fn parse_secret_key(text: &str) -> anyhow::Result<Vec<u8>> {
    hex_decode(text.trim()).context("not a key of 64 hex digits")
}

fn hex_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    if text.len() != 64 {
        anyhow::bail!("expected 64 hex digits");
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).context("not hex"))
        .collect()
}
