//! `warden serve --demo` (docs/console.md): Warden as `serve` runs it, plus a demo customer who
//! owns three washers, a technician granted read access to one of them, and the three devices
//! simulated in this process, sending events and applying their settings. What it makes is kept in
//! `DATA_DIR/demo/` (the accounts with their passwords, mode 0600, and the devices' factory
//! bundles), so a second start finds the same demo again.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use model::{Clock, DeviceId, Email, Role, SystemClock, Timestamp, UserId};
use policy::{ActionSet, Subject};
use registry::{ClaimCode, ModelName};
use serde::{Deserialize, Serialize};
use server::RunningWarden;
use server::config::Settings;
use store::{GrantRecord, NewUser, Store};
use tokio_util::sync::CancellationToken;

use crate::Failure;

const DEVICES: usize = 3;
const MODEL: &str = "washer-w500";
/// How long the technician's grant runs from the first demo start.
const GRANT: Duration = Duration::from_secs(90 * 24 * 3600);

/// One demo account, as the banner prints it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Account {
    email: String,
    password: String,
}

/// What the demo made, kept between starts.
#[derive(Debug, Serialize, Deserialize)]
struct Demo {
    customer: Account,
    technician: Account,
}

pub async fn run(settings: &Settings) -> Result<(), Failure> {
    let simulation = CancellationToken::new();
    let stop = simulation.clone();
    server::run_until_signal_with(settings, async |warden: &RunningWarden| {
        let (demo, bundles) = prepare(settings, &warden.store).await?;
        let mqtt = warden
            .addresses
            .mqtt
            .context("the demo needs the MQTT broker (mqtt.listen)")?;
        let load = simulator::Load {
            events_per_second: 0.2,
            payload_bytes: 64,
            install_failure_share: 0.0,
        };
        let device_listener = warden
            .addresses
            .device
            .map(|address| ("localhost".to_owned(), address.port()));
        tokio::spawn(simulator::run(
            bundles,
            ("localhost".to_owned(), mqtt.port()),
            device_listener,
            load,
            Arc::new(simulator::Counters::default()),
            simulation,
        ));
        Ok(vec![
            "  Demo:            three simulated washers send events every few seconds".to_owned(),
            format!("  Console:         {}console/", warden.base_url),
            format!(
                "  Customer:        {}  password: {}",
                demo.customer.email, demo.customer.password
            ),
            format!(
                "  Technician:      {}  password: {}",
                demo.technician.email, demo.technician.password
            ),
        ])
    })
    .await?;
    stop.cancel();
    Ok(())
}

/// Makes the demo on the first start (accounts, devices claimed by the customer, a grant to the
/// technician); reads what it made on later ones. Each step is safe to repeat, and the accounts'
/// passwords are written down before the accounts exist, so a first start cut short is finished
/// by the next one. Returns the accounts and the device bundles.
async fn prepare(
    settings: &Settings,
    store: &Store,
) -> anyhow::Result<(Demo, Vec<simulator::Bundle>)> {
    let dir = settings.data_dir.join("demo");
    let file = dir.join("demo.json");
    let ready = dir.join("ready");
    let bundles_dir = dir.join("devices");
    let demo: Demo = match std::fs::read_to_string(&file) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a demo this Warden made", file.display()))?,
        Err(_) => {
            let demo = Demo {
                customer: Account {
                    email: "customer@demo.warden.test".to_owned(),
                    password: passphrase(),
                },
                technician: Account {
                    email: "technician@demo.warden.test".to_owned(),
                    password: passphrase(),
                },
            };
            write_private(&file, &serde_json::to_string_pretty(&demo)?)?;
            demo
        }
    };
    if !ready.exists() {
        seed(settings, store, &demo, &bundles_dir).await?;
        write_private(&ready, "")?;
    }
    let bundles = crate::simulate::read_bundles(&[bundles_dir])
        .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    Ok((demo, bundles))
}

async fn seed(
    settings: &Settings,
    store: &Store,
    demo: &Demo,
    bundles_dir: &Path,
) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let customer = account(store, &demo.customer, Role::Customer, now).await?;
    let technician = account(store, &demo.technician, Role::Technician, now).await?;
    if !bundles_dir.exists() {
        let model = ModelName::parse(MODEL).map_err(|error| anyhow::anyhow!("{error}"))?;
        crate::devices::make(store, settings, &model, DEVICES, bundles_dir, false)
            .await
            .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    }
    let hashers =
        crate::devices::hashers(settings).map_err(|failure| anyhow::anyhow!("{failure}"))?;
    let devices = store.devices();
    let mut claimed = Vec::new();
    for entry in std::fs::read_dir(bundles_dir)? {
        let path = entry?.path().join("device.json");
        let bundle: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{} is not a factory bundle", path.display()))?;
        let (Some(device_id), Some(code)) =
            (bundle["device_id"].as_str(), bundle["claim_code"].as_str())
        else {
            anyhow::bail!("{} has no device id or claim code", path.display());
        };
        let device_id = DeviceId::parse(device_id).map_err(|error| anyhow::anyhow!("{error}"))?;
        let code = ClaimCode::parse(code).map_err(|error| anyhow::anyhow!("{error}"))?;
        // A device the customer owns already (a repeated step) is left as it is.
        devices
            .claim(&device_id, &hashers.claim_code_hash(&code), customer, now)
            .await
            .context("cannot claim a demo device")?;
        claimed.push(device_id);
    }
    claimed.sort();
    let Some(first) = claimed.first() else {
        return Ok(());
    };
    let relation = devices
        .relation(first, now)
        .await?
        .map(|(_, relation)| relation)
        .context("the demo device is gone")?;
    let owner = Subject::Person {
        user_id: customer,
        role: Role::Customer,
        token_allows: ActionSet::all(),
    };
    let permit = policy::authorize(&owner, &relation, now)
        .map_err(|denial| anyhow::anyhow!("the demo grant was refused: {denial:?}"))?;
    if devices
        .grants(&permit)
        .await?
        .iter()
        .any(|grant| grant.grantee == technician)
    {
        return Ok(());
    }
    let grant = GrantRecord {
        grant_id: format!("gr_{}", uuid::Uuid::now_v7().simple()),
        device_id: first.clone(),
        grantee: technician,
        granted_by: customer,
        actions: ActionSet::parse("read_status,read_events")
            .map_err(|error| anyhow::anyhow!("{error}"))?,
        created_at: now,
        expires_at: now.plus(GRANT),
        revoked_at: None,
    };
    devices.insert_grant(&permit, &grant).await?;
    Ok(())
}

/// The account for `who`, made with the password hashed as sign-up hashes it.
async fn account(
    store: &Store,
    who: &Account,
    role: Role,
    now: Timestamp,
) -> anyhow::Result<UserId> {
    let email = Email::parse(&who.email).map_err(|error| anyhow::anyhow!("{error}"))?;
    if let Some(existing) = store.users().by_email(&email).await? {
        return Ok(existing.id);
    }
    let password = accounts::password::Password::new(who.password.clone());
    let hasher = accounts::password::Hasher::new(accounts::password::HashCost::OWASP)?;
    let password_hash = tokio::task::spawn_blocking(move || hasher.hash(&password)).await??;
    let user = NewUser {
        id: UserId::generate(),
        email,
        password_hash,
        role,
        created_at: now,
    };
    store.users().insert(&user).await?;
    Ok(user.id)
}

/// Sixteen random letters and digits in groups of four (80 bits): easy to type, hard to guess.
fn passphrase() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let bytes: [u8; 16] = rand::random();
    let characters: Vec<char> = bytes
        .iter()
        .map(|byte| char::from(ALPHABET[usize::from(*byte) % ALPHABET.len()]))
        .collect();
    characters
        .chunks(4)
        .map(|chunk| chunk.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Writes `text` readable by its owner only, creating the directory first.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    server::tls::write_atomically(path, text, 0o600)
}
