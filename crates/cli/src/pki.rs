//! `warden admin ca …` and `warden admin certs …`: the CA's life and the certificates it issues.

use anyhow::{Context, anyhow};
use model::{Clock, DeviceId, SystemClock};
use pki::{CaCertificate, CaRole, CheckedCsr, PartName, RevocationReason};
use server::config::Settings;
use server::tls::write_atomically;
use store::Store;

use crate::Failure;
use crate::args::{CaCommand, CertsCommand};

pub async fn ca(command: CaCommand, store: &Store, settings: &Settings) -> Result<(), Failure> {
    let key = server::ca::encryption_key(&settings.pki, &settings.data_dir)?;
    let now = SystemClock.now();
    match command {
        CaCommand::Init | CaCommand::Show => {
            let authority = if matches!(command, CaCommand::Init) {
                server::ca::load_or_create(store, &key, now).await?
            } else {
                server::ca::load(store, &key).await?.ok_or_else(|| {
                    Failure::Input(anyhow!("there is no CA yet; run `warden admin ca init`"))
                })?
            };
            let root_online = server::ca::root(store, &key).await?.is_some();
            print!("{}{}", authority.intermediate_pem(), authority.root_pem());
            eprintln!(
                "root key: {}",
                if root_online {
                    "in the database (export it and remove it to keep it offline)"
                } else {
                    "offline"
                }
            );
        }
        CaCommand::ExportRoot { out } => {
            let root = server::ca::root(store, &key)
                .await?
                .ok_or_else(|| Failure::Input(anyhow!("the root's key is not in the database")))?;
            let content = format!(
                "{}{}",
                root.certificate_pem,
                root.key_pem().map_err(anyhow::Error::from)?
            );
            write_atomically(&out, &content, 0o600)?;
            println!("wrote the root certificate and key to {}", out.display());
        }
        CaCommand::RemoveRootKey { exported } => {
            if !exported {
                return Err(Failure::Input(anyhow!(
                    "export the root first (`warden admin ca export-root --out FILE`), then confirm with --exported"
                )));
            }
            store
                .certificates()
                .set_ca_key(CaRole::Root, None)
                .await
                .context("cannot remove the root key")?;
            println!("removed the root's key from the database; the root is offline");
        }
        CaCommand::ImportRootKey { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))
                .map_err(Failure::Input)?;
            let stored = store
                .certificates()
                .ca(CaRole::Root)
                .await
                .context("cannot read the root")?
                .ok_or_else(|| {
                    Failure::Input(anyhow!("there is no CA yet; run `warden admin ca init`"))
                })?;
            let root = CaCertificate::with_key_pem(CaRole::Root, &stored.certificate_pem, &text)
                .map_err(|error| Failure::Input(error.into()))?;
            let sealed = server::ca::sealed(&key, &root);
            store
                .certificates()
                .set_ca_key(CaRole::Root, sealed.sealed_key.as_deref())
                .await
                .context("cannot store the root key")?;
            println!("the root's key is back in the database");
        }
        CaCommand::ReissueIntermediate => {
            server::ca::reissue_intermediate(store, &key, now).await?;
            println!("issued a new intermediate CA; restart servers to sign with it");
        }
    }
    Ok(())
}

pub async fn certs(
    command: CertsCommand,
    store: &Store,
    settings: &Settings,
) -> Result<(), Failure> {
    let now = SystemClock.now();
    let validity = settings.pki.device_certificate_validity;
    match command {
        CertsCommand::Issue {
            device,
            csr,
            bundle,
        } => {
            let device = parse_device(&device)?;
            let authority = authority(store, settings).await?;
            let issued = match (csr, bundle) {
                (Some(path), _) => issue_from_csr(&authority, &device, &path, validity)?,
                (None, Some(dir)) => {
                    let bundle = authority
                        .issue_device_bundle(&device, validity, now)
                        .map_err(anyhow::Error::from)?;
                    write_bundle(&dir, device.as_str(), &bundle, &authority)?;
                    println!(
                        "wrote {device}.crt, {device}.key and ca.pem to {}",
                        dir.display()
                    );
                    bundle.certificate
                }
                (None, None) => {
                    return Err(Failure::Input(anyhow!("give --csr FILE or --bundle DIR")));
                }
            };
            record_issued(store, std::slice::from_ref(&issued)).await?;
            eprintln!(
                "serial {} valid until {}",
                issued.serial,
                issued.not_after.to_rfc3339()
            );
        }
        CertsCommand::IssueBatch { csr_dir, out } => {
            let requests = read_requests(&csr_dir)?;
            let authority = authority(store, settings).await?;
            let issued = requests
                .iter()
                .map(|request| authority.issue_device(request, validity, now))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::from)?;
            record_issued(store, &issued).await?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            for certificate in &issued {
                let chain = format!(
                    "{}{}",
                    certificate.certificate_pem,
                    authority.intermediate_pem()
                );
                write_atomically(
                    &out.join(format!("{}.crt", certificate.subject)),
                    &chain,
                    0o644,
                )?;
            }
            write_atomically(&out.join("ca.pem"), authority.root_pem(), 0o644)?;
            println!(
                "issued {} certificate(s) into {}",
                issued.len(),
                out.display()
            );
        }
        CertsCommand::IssueWorkload { part, hours, out } => {
            let part = PartName::parse(&part).map_err(|error| Failure::Input(error.into()))?;
            if !(1..=MAX_WORKLOAD_HOURS).contains(&hours) {
                return Err(Failure::Input(anyhow!(
                    "--hours must be 1 to {MAX_WORKLOAD_HOURS}: workload certificates are short-lived"
                )));
            }
            let authority = authority(store, settings).await?;
            let bundle = authority
                .issue_workload(&part, std::time::Duration::from_secs(hours * 3600), now)
                .map_err(anyhow::Error::from)?;
            record_issued(store, std::slice::from_ref(&bundle.certificate)).await?;
            write_bundle(&out, part.as_str(), &bundle, &authority)?;
            println!(
                "wrote {part}.crt, {part}.key and ca.pem to {}; valid until {}",
                out.display(),
                bundle.certificate.not_after.to_rfc3339(),
                part = part.as_str()
            );
        }
        CertsCommand::Renew { serial, csr } => {
            let serial = serial.trim().to_ascii_lowercase();
            let record = store
                .certificates()
                .by_serial(&serial)
                .await
                .context("cannot read the inventory")?
                .ok_or_else(|| Failure::Input(anyhow!("no certificate with serial {serial}")))?;
            if record.revoked.is_some() {
                return Err(Failure::Input(anyhow!("certificate {serial} is revoked")));
            }
            let device = parse_device(&record.certificate.subject)?;
            let authority = authority(store, settings).await?;
            let issued = issue_from_csr(&authority, &device, &csr, validity)?;
            record_issued(store, std::slice::from_ref(&issued)).await?;
            eprintln!(
                "serial {} renews {serial}, valid until {}",
                issued.serial,
                issued.not_after.to_rfc3339()
            );
        }
        CertsCommand::List {
            device,
            expiring_within_days,
        } => {
            let certificates = store.certificates();
            let records = match (device, expiring_within_days) {
                (Some(device), _) => {
                    certificates
                        .by_subject(parse_device(&device)?.as_str())
                        .await
                }
                (None, Some(days)) => {
                    certificates
                        .expiring(now, now.plus(std::time::Duration::from_secs(days * 86_400)))
                        .await
                }
                (None, None) => {
                    return Err(Failure::Input(anyhow!(
                        "give --device or --expiring-within-days"
                    )));
                }
            }
            .context("cannot read the inventory")?;
            println!(
                "{:<34} {:<8} {:<24} {:<22} STATUS",
                "SERIAL", "KIND", "SUBJECT", "NOT AFTER"
            );
            for record in records {
                let issued = &record.certificate;
                let status = match record.revoked {
                    Some((at, reason)) => {
                        format!("revoked {} ({})", at.to_rfc3339(), reason.as_str())
                    }
                    None if issued.not_after <= now => "expired".to_owned(),
                    None => "valid".to_owned(),
                };
                println!(
                    "{:<34} {:<8} {:<24} {:<22} {status}",
                    issued.serial,
                    issued.kind.as_str(),
                    issued.subject,
                    issued.not_after.to_rfc3339()
                );
            }
        }
        CertsCommand::Revoke {
            serial,
            device,
            reason,
        } => {
            let reason =
                RevocationReason::parse(&reason).map_err(|error| Failure::Input(error.into()))?;
            let certificates = store.certificates();
            match (serial, device) {
                (Some(serial), _) => {
                    let serial = serial.trim().to_ascii_lowercase();
                    if !certificates
                        .revoke(&serial, reason, now)
                        .await
                        .context("cannot revoke")?
                    {
                        return Err(Failure::Input(anyhow!(
                            "no unrevoked certificate with serial {serial}"
                        )));
                    }
                    println!("revoked {serial} ({})", reason.as_str());
                }
                (None, Some(device)) => {
                    let device = parse_device(&device)?;
                    let count = certificates
                        .revoke_subject(device.as_str(), reason, now)
                        .await
                        .context("cannot revoke")?;
                    println!(
                        "revoked {count} certificate(s) of {device} ({})",
                        reason.as_str()
                    );
                }
                (None, None) => return Err(Failure::Input(anyhow!("give a serial or --device"))),
            }
        }
    }
    Ok(())
}

/// The issuing CA, made if the database has none yet.
pub(crate) async fn authority(
    store: &Store,
    settings: &Settings,
) -> Result<pki::Authority, Failure> {
    let key = server::ca::encryption_key(&settings.pki, &settings.data_dir)?;
    Ok(server::ca::load_or_create(store, &key, SystemClock.now()).await?)
}

/// Records issued certificates in the inventory, in one transaction.
async fn record_issued(store: &Store, issued: &[pki::IssuedCertificate]) -> Result<(), Failure> {
    store
        .certificates()
        .insert_all(issued)
        .await
        .context("cannot record the certificates")?;
    Ok(())
}

/// The longest a workload certificate may live: parts renew theirs well before.
const MAX_WORKLOAD_HOURS: u64 = 72;

/// Writes DIR/NAME.crt (certificate and intermediate), DIR/NAME.key (0600) and DIR/ca.pem.
fn write_bundle(
    dir: &std::path::Path,
    name: &str,
    bundle: &pki::Bundle,
    authority: &pki::Authority,
) -> Result<(), Failure> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let chain = format!(
        "{}{}",
        bundle.certificate.certificate_pem,
        authority.intermediate_pem()
    );
    write_atomically(&dir.join(format!("{name}.crt")), &chain, 0o644)?;
    write_atomically(
        &dir.join(format!("{name}.key")),
        &bundle.private_key_pem,
        0o600,
    )?;
    write_atomically(&dir.join("ca.pem"), authority.root_pem(), 0o644)?;
    Ok(())
}

/// A certificate for `device` from the request in `path`, printed with its chain on stdout.
fn issue_from_csr(
    authority: &pki::Authority,
    device: &DeviceId,
    path: &std::path::Path,
    validity: std::time::Duration,
) -> Result<pki::IssuedCertificate, Failure> {
    let request = std::fs::read(path)
        .with_context(|| format!("cannot read {}", path.display()))
        .map_err(Failure::Input)?;
    let checked = CheckedCsr::check(&request, device)
        .map_err(|rejection| Failure::Input(anyhow!("refused: {rejection}")))?;
    let issued = authority
        .issue_device(&checked, validity, SystemClock.now())
        .map_err(anyhow::Error::from)?;
    print!("{}{}", issued.certificate_pem, authority.intermediate_pem());
    Ok(issued)
}

/// Every `ID.csr` in `dir`, checked as a request for device ID. All refusals are reported at
/// once, and any refusal means none is issued.
fn read_requests(dir: &std::path::Path) -> Result<Vec<CheckedCsr>, Failure> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))
        .map_err(Failure::Input)?;
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "csr"))
        .collect();
    paths.sort();
    let mut requests = Vec::new();
    let mut refusals = Vec::new();
    for path in paths {
        let stem = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .unwrap_or_default();
        let checked = DeviceId::parse(stem)
            .map_err(|error| format!("device id {stem:?}: {error}"))
            .and_then(|device| {
                let bytes = std::fs::read(&path).map_err(|error| error.to_string())?;
                CheckedCsr::check(&bytes, &device).map_err(|rejection| rejection.to_string())
            });
        match checked {
            Ok(request) => requests.push(request),
            Err(reason) => refusals.push(format!("{}: {reason}", path.display())),
        }
    }
    if !refusals.is_empty() {
        return Err(Failure::Input(anyhow!(
            "nothing issued; refused:\n{}",
            refusals.join("\n")
        )));
    }
    if requests.is_empty() {
        return Err(Failure::Input(anyhow!(
            "no *.csr files in {}",
            dir.display()
        )));
    }
    Ok(requests)
}

fn parse_device(text: &str) -> Result<DeviceId, Failure> {
    DeviceId::parse(text).map_err(|error| Failure::Input(anyhow!("device id {text:?}: {error}")))
}
