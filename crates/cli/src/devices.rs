//! `warden admin device …`: the maker's side of the registry. Creating devices writes a factory
//! bundle per device (what the device's firmware is loaded with, and what `warden device simulate`
//! reads) and a label with the claim code as text and as a QR code.

use std::path::Path;

use anyhow::{Context, anyhow};
use model::{Clock, DeviceId, SystemClock};
use registry::factory::MAX_BATCH;
use registry::{ClaimCode, DeviceHashers, Factory, FactoryDevice, ModelName, SettingsSchema};
use server::config::Settings;
use server::tls::write_atomically;
use store::Store;
use tokens::keyed::SecretHasher;

use crate::Failure;
use crate::args::DeviceCommand;

pub async fn run(
    command: DeviceCommand,
    store: &Store,
    settings: &Settings,
) -> Result<(), Failure> {
    let now = SystemClock.now();
    match command {
        DeviceCommand::Create {
            model,
            count,
            out,
            csr,
        } => {
            let model = ModelName::parse(&model).map_err(|e| Failure::Input(e.into()))?;
            if count == 0 || count > MAX_BATCH {
                return Err(Failure::Input(anyhow!(
                    "--count must be between 1 and {MAX_BATCH}"
                )));
            }
            let devices = make(store, settings, &model, count, &out, csr).await?;
            println!("{:<18} {:<26} label", "device", "claim code");
            for device in &devices {
                println!(
                    "{:<18} {:<26} {}",
                    device.record.device_id,
                    device.claim_code.grouped(),
                    device.claim_code.label_uri(&device.record.device_id)
                );
            }
            eprintln!(
                "{count} device(s) of model {model}; bundles in {}{}",
                out.display(),
                if csr {
                    " (no certificates: issue each from the device's CSR with `warden admin certs issue`)"
                } else {
                    ""
                }
            );
        }
        DeviceCommand::List { after, limit } => {
            let after = after.as_deref().map(parse_device).transpose()?;
            let devices = store
                .devices()
                .all(after.as_ref(), limit)
                .await
                .context("cannot read the registry")?;
            for device in devices {
                println!(
                    "{}  {}  {}",
                    device.device_id,
                    device.model,
                    device
                        .owner
                        .map_or_else(|| "unclaimed".to_owned(), |owner| format!("owner {owner}"))
                );
            }
        }
        DeviceCommand::ClaimCode { device_id } => {
            let device_id = parse_device(&device_id)?;
            let code = ClaimCode::generate();
            let hash = hashers(settings)?.claim_code_hash(&code);
            let devices = store.devices();
            if devices
                .get(&device_id)
                .await
                .context("cannot read the registry")?
                .is_none()
            {
                return Err(Failure::Input(anyhow!("no device {device_id}")));
            }
            if !devices
                .set_claim_code(&device_id, &hash)
                .await
                .context("cannot store the claim code")?
            {
                return Err(Failure::Input(anyhow!(
                    "device {device_id} has an owner; only an unowned device gets a new claim code"
                )));
            }
            println!("{}  {}", code.grouped(), code.label_uri(&device_id));
        }
        DeviceCommand::Tags {
            device_id,
            tags,
            clear,
        } => {
            let device_id = parse_device(&device_id)?;
            let devices = store.devices();
            if !tags.is_empty() || clear {
                let tags = registry::parse_tags(&tags).map_err(|e| Failure::Input(anyhow!(e)))?;
                if !devices
                    .set_tags(&device_id, &tags)
                    .await
                    .context("cannot store the tags")?
                {
                    return Err(Failure::Input(anyhow!("no device {device_id}")));
                }
            } else if devices
                .get(&device_id)
                .await
                .context("cannot read the registry")?
                .is_none()
            {
                return Err(Failure::Input(anyhow!("no device {device_id}")));
            }
            let tags = devices
                .tags(&device_id)
                .await
                .context("cannot read the tags")?;
            let tags: Vec<&str> = tags.iter().map(registry::Tag::as_str).collect();
            println!("{device_id}: {}", tags.join(" "));
        }
        DeviceCommand::Schema {
            model,
            file,
            remove,
        } => {
            let model = ModelName::parse(&model).map_err(|e| Failure::Input(e.into()))?;
            let schema = match (file, remove) {
                (Some(path), false) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))
                        .map_err(Failure::Input)?;
                    let schema: serde_json::Value = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", path.display()))
                        .map_err(Failure::Input)?;
                    SettingsSchema::compile(&schema).map_err(|e| Failure::Input(e.into()))?;
                    Some(schema)
                }
                (None, true) => None,
                _ => return Err(Failure::Input(anyhow!("give a schema FILE or --remove"))),
            };
            store
                .devices()
                .set_settings_schema(&model, schema.as_ref(), now)
                .await
                .context("cannot store the schema")?;
            println!(
                "model {model}: settings schema {}",
                if schema.is_some() { "set" } else { "removed" }
            );
        }
    }
    Ok(())
}

/// The device-secret hashers under the server key `warden serve` uses.
pub(crate) fn hashers(settings: &Settings) -> Result<DeviceHashers, Failure> {
    let key = server::signing::client_secret_key(settings)?;
    Ok(DeviceHashers::new(&SecretHasher::new(key)))
}

fn parse_device(text: &str) -> Result<DeviceId, Failure> {
    DeviceId::parse(text).map_err(|error| Failure::Input(anyhow!("device id {text:?}: {error}")))
}

/// Makes `count` devices (at most [`MAX_BATCH`]) of `model` and records them, after writing
/// their factory bundles to OUT/ID/ (with a key and certificate unless `csr`).
pub(crate) async fn make(
    store: &Store,
    settings: &Settings,
    model: &ModelName,
    count: usize,
    out: &Path,
    csr: bool,
) -> Result<Vec<FactoryDevice>, Failure> {
    let authority = crate::pki::authority(store, settings).await?;
    let hashers = hashers(settings)?;
    let factory = Factory {
        hashers: &hashers,
        authority: (!csr).then_some(&authority),
        certificate_validity: settings.pki.device_certificate_validity,
    };
    let devices = factory
        .make(model, count, SystemClock.now())
        .context("cannot make the device certificates")?;
    let records: Vec<_> = devices.iter().map(|device| device.record.clone()).collect();
    let certificates: Vec<_> = devices
        .iter()
        .filter_map(|device| device.bundle.as_ref().map(|b| b.certificate.clone()))
        .collect();
    // Bundles first: if writing fails, no device exists whose secrets were never shown.
    for device in &devices {
        write_factory_bundle(out, device, &authority, settings)?;
    }
    store
        .devices()
        .create(&records, &certificates)
        .await
        .context("cannot record the devices")?;
    Ok(devices)
}

/// Writes OUT/ID/: `device.json` (id, model, password, claim code, where to connect; 0600),
/// `device.crt` + `device.key` (0600) when the factory made the key, `ca.pem` (the root to trust)
/// and `label.svg` (the claim code as a QR code).
fn write_factory_bundle(
    out: &Path,
    device: &FactoryDevice,
    authority: &pki::Authority,
    settings: &Settings,
) -> Result<(), Failure> {
    let device_id = &device.record.device_id;
    let dir = out.join(device_id.as_str());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let hostname = settings.tls.primary_hostname();
    let description = serde_json::json!({
        "device_id": device_id.as_str(),
        "model": device.record.model.as_str(),
        "mqtt_password": device.password.as_str(),
        "claim_code": device.claim_code.grouped(),
        "claim_label": device.claim_code.label_uri(device_id),
        "https_url": format!("https://{hostname}:{}", settings.https_listen.port()),
        "device_url": settings
            .device_listen
            .map(|address| format!("https://{hostname}:{}", address.port())),
        "mqtt_url": settings
            .mqtt_listen
            .map(|address| format!("mqtts://{hostname}:{}", address.port())),
        "certificate": device.bundle.as_ref().map(|_| "device.crt"),
        "private_key": device.bundle.as_ref().map(|_| "device.key"),
        "ca": "ca.pem",
    });
    let json = serde_json::to_string_pretty(&description).context("cannot encode device.json")?;
    write_atomically(&dir.join("device.json"), &json, 0o600)?;
    if let Some(bundle) = &device.bundle {
        let chain = format!(
            "{}{}",
            bundle.certificate.certificate_pem,
            authority.intermediate_pem()
        );
        write_atomically(&dir.join("device.crt"), &chain, 0o644)?;
        write_atomically(&dir.join("device.key"), &bundle.private_key_pem, 0o600)?;
    }
    write_atomically(&dir.join("ca.pem"), authority.root_pem(), 0o644)?;
    let label = qrcode::QrCode::new(device.claim_code.label_uri(device_id))
        .context("cannot make the QR code")?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    write_atomically(&dir.join("label.svg"), &label, 0o644)?;
    Ok(())
}
