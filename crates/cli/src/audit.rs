//! `warden audit …` (verify the journal, export it as NDJSON) and the audit record every
//! `warden admin …` action leaves, naming the operating-system user who ran it.

use std::io::Write;

use anyhow::Context;
use audit::{Action, Actor, Outcome, Query, Record, Target};
use model::{Clock, SystemClock, Timestamp};
use serde_json::{Value, json};
use server::config::Settings;

use crate::Failure;
use crate::args::{
    AdminCommand, CaCommand, CertsCommand, ClientsCommand, DeviceCommand, FirmwareCommand,
    JournalCommand, KeysCommand, UsersCommand,
};

/// Entries read per page by exports.
const EXPORT_PAGE: u32 = 1_000;
/// The most characters of an error an audit record keeps.
const MAX_REASON: usize = 500;

pub async fn run(command: JournalCommand, settings: &Settings) -> Result<(), Failure> {
    let store = server::open_store(settings).await?;
    match command {
        JournalCommand::Verify => {
            let key = server::ca::encryption_key(&settings.pki, &settings.data_dir)?;
            match server::audit::verify(&store, &key).await? {
                Ok(summary) => {
                    println!(
                        "audit journal intact: entries {} to {} ({} checked), {} checkpoints, {} segments removed by retention, {} entries not yet in a checkpoint",
                        summary.first_seq,
                        summary.last_seq,
                        summary.entries,
                        summary.checkpoints,
                        summary.pruned_segments,
                        summary.unsigned_entries
                    );
                    Ok(())
                }
                Err(finding) => {
                    Err(anyhow::anyhow!("audit journal tampered with: {finding}").into())
                }
            }
        }
        JournalCommand::Export {
            from,
            to,
            device,
            action,
        } => {
            let time = |name: &str, text: Option<String>| {
                text.map(|text| {
                    Timestamp::parse_rfc3339(&text).ok_or_else(|| {
                        Failure::Input(anyhow::anyhow!(
                            "--{name} must be an RFC 3339 time, as 2026-12-03T08:00:00Z"
                        ))
                    })
                })
                .transpose()
            };
            if let Some(action) = &action
                && Action::parse(action).is_none()
            {
                return Err(Failure::Input(anyhow::anyhow!("unknown action {action:?}")));
            }
            let mut query = Query {
                device,
                action,
                from: time("from", from)?,
                to: time("to", to)?,
                limit: EXPORT_PAGE,
                ..Query::default()
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            loop {
                let page = store
                    .audit()
                    .query(&query)
                    .await
                    .context("cannot read the audit journal")?;
                for entry in &page {
                    writeln!(out, "{}", entry.to_json()).context("cannot write the export")?;
                }
                match page.last() {
                    Some(last) if page.len() == EXPORT_PAGE as usize => {
                        query.after = Some(last.seq)
                    }
                    _ => break,
                }
            }
            out.flush().context("cannot write the export")?;
            Ok(())
        }
    }
}

/// What an admin command does, for its audit record; `None` for commands that only look.
pub fn admin_action(command: &AdminCommand) -> Option<(Action, Target, Value)> {
    let target = Target::new;
    Some(match command {
        AdminCommand::Db(_) => return None,
        AdminCommand::Users(UsersCommand::Import { file, .. }) => (
            Action::AccountImport,
            target("account", ""),
            json!({ "file": file.display().to_string() }),
        ),
        AdminCommand::Users(UsersCommand::SetRole { email, role }) => (
            Action::AccountRoleChange,
            target("account", email.as_str()),
            json!({ "role": role }),
        ),
        AdminCommand::Users(UsersCommand::List { .. }) => return None,
        AdminCommand::Keys(KeysCommand::Rotate) => {
            (Action::KeyRotate, target("signing_key", ""), json!({}))
        }
        AdminCommand::Keys(KeysCommand::Retire { kid }) => (
            Action::KeyRetire,
            target("signing_key", kid.as_str()),
            json!({}),
        ),
        AdminCommand::Keys(KeysCommand::List) => return None,
        AdminCommand::Clients(ClientsCommand::Create { name, scope, .. }) => (
            Action::ClientCreate,
            target("client", ""),
            json!({ "name": name, "scope": scope }),
        ),
        AdminCommand::Clients(ClientsCommand::List) => return None,
        AdminCommand::Ca(command) => {
            let action = match command {
                CaCommand::Init => Action::CaInit,
                CaCommand::ExportRoot { .. } => Action::CaExportRoot,
                CaCommand::RemoveRootKey { .. } => Action::CaRemoveRootKey,
                CaCommand::ImportRootKey { .. } => Action::CaImportRootKey,
                CaCommand::ReissueIntermediate => Action::CaReissueIntermediate,
                CaCommand::Show => return None,
            };
            (action, target("ca", ""), json!({}))
        }
        AdminCommand::Certs(command) => match command {
            CertsCommand::Issue { device, .. } => (
                Action::CertificateIssue,
                target("certificate", ""),
                json!({ "device_id": device }),
            ),
            CertsCommand::IssueBatch { csr_dir, .. } => (
                Action::CertificateIssue,
                target("certificate", ""),
                json!({ "csr_dir": csr_dir.display().to_string() }),
            ),
            CertsCommand::IssueWorkload { part, hours, .. } => (
                Action::CertificateIssue,
                target("certificate", ""),
                json!({ "part": part, "hours": hours }),
            ),
            CertsCommand::Renew { serial, .. } => (
                Action::CertificateRenew,
                target("certificate", serial.as_str()),
                json!({}),
            ),
            CertsCommand::Revoke {
                serial,
                device,
                reason,
            } => (
                Action::CertificateRevoke,
                target("certificate", serial.as_deref().unwrap_or_default()),
                json!({ "device_id": device, "reason": reason }),
            ),
            CertsCommand::List { .. } => return None,
        },
        AdminCommand::Firmware(command) => match command {
            FirmwareCommand::Upload {
                model,
                version,
                file,
                ..
            } => (
                Action::FirmwareUpload,
                target("firmware", ""),
                json!({ "model": model, "version": version, "file": file.display().to_string() }),
            ),
            FirmwareCommand::RotateKey => {
                (Action::KeyRotate, target("firmware_key", ""), json!({}))
            }
            FirmwareCommand::List => return None,
        },
        AdminCommand::Device(command) => match command {
            DeviceCommand::Create { model, count, .. } => (
                Action::DeviceCreate,
                target("model", model.as_str()),
                json!({ "count": count }),
            ),
            DeviceCommand::ClaimCode { device_id } => (
                Action::DeviceClaimCode,
                target("device", device_id.as_str()),
                json!({}),
            ),
            DeviceCommand::Schema { model, remove, .. } => (
                Action::DeviceSchema,
                target("model", model.as_str()),
                json!({ "schema": if *remove { "removed" } else { "set" } }),
            ),
            DeviceCommand::Tags {
                device_id,
                tags,
                clear,
            } => {
                if tags.is_empty() && !clear {
                    return None;
                }
                (
                    Action::DeviceTags,
                    target("device", device_id.as_str()),
                    json!({ "tags": tags }),
                )
            }
            DeviceCommand::List { .. } => return None,
        },
    })
}

/// Appends the record of an admin command that ran, with how it ended.
pub async fn record_admin(
    settings: &Settings,
    (action, target, detail): (Action, Target, Value),
    result: &Result<(), Failure>,
) -> Result<(), Failure> {
    let store = server::open_store(settings).await?;
    let mut record = Record::new(SystemClock.now(), operator(), action, target)
        .detail(detail)
        .device_from_target();
    if let Err(failure) = result {
        let reason: String = failure.to_string().chars().take(MAX_REASON).collect();
        record = record
            .outcome(Outcome::Failure)
            .detail(json!({ "reason": reason }));
    }
    store
        .audit()
        .append(&[record])
        .await
        .context("cannot write the audit record of this command")?;
    Ok(())
}

/// Who runs this command: the operating-system user (`SUDO_USER` when run through sudo).
fn operator() -> Actor {
    let name = ["SUDO_USER", "USER", "LOGNAME"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    Actor::Operator { name }
}
