//! `warden admin …`: work on the configured database directly, also while a server runs on it.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use accounts::import::{self, ImportError};
use anyhow::Context;
use model::{Clock, Email, Role, SystemClock, UserId};
use oauth::client::{Registration, SecretHasher};
use server::config::Settings;
use store::{LATEST_SCHEMA_VERSION, NewUser, Store};
use tokens::keys::KeyRing;

use crate::Failure;
use crate::args::{
    AdminCommand, ClientsCommand, DbCommand, FirmwareCommand, KeysCommand, UsersCommand,
};

/// Runs an admin command; one that changes something leaves an audit record of how it ended.
pub async fn run(command: AdminCommand, settings: &Settings) -> Result<(), Failure> {
    let audited = crate::audit::admin_action(&command);
    let result = run_command(command, settings).await;
    if let Some(action) = audited {
        crate::audit::record_admin(settings, action, &result).await?;
    }
    result
}

async fn run_command(command: AdminCommand, settings: &Settings) -> Result<(), Failure> {
    match command {
        AdminCommand::Db(DbCommand::Status) => {
            let store = server::connect_store(settings).await?;
            let version = store
                .schema_version()
                .await
                .context("cannot read the schema version")?;
            println!("database:        {}", settings.database);
            println!(
                "schema version:  {version} (this Warden knows up to {LATEST_SCHEMA_VERSION})"
            );
            if version > 0 {
                println!(
                    "accounts:        {}",
                    store
                        .users()
                        .count()
                        .await
                        .context("cannot count accounts")?
                );
            }
        }
        AdminCommand::Db(DbCommand::Check) => {
            let store = server::connect_store(settings).await?;
            let report = store
                .check_integrity()
                .await
                .context("the integrity check could not run")?;
            if !report.is_ok() {
                for problem in &report.problems {
                    eprintln!("problem: {problem}");
                }
                return Err(anyhow::anyhow!(
                    "{} integrity problem(s) in {}",
                    report.problems.len(),
                    settings.database
                )
                .into());
            }
            println!("{}: integrity ok", settings.database);
        }
        AdminCommand::Db(DbCommand::Migrate) => {
            let store = server::connect_store(settings).await?;
            let report = store.migrate().await.context("migration failed")?;
            println!(
                "schema version {} -> {}",
                report.from_version, report.to_version
            );
        }
        AdminCommand::Users(command) => {
            let store = server::open_store(settings).await?;
            users(command, &store).await?;
        }
        AdminCommand::Keys(command) => {
            let store = server::open_store(settings).await?;
            keys(command, &store, settings).await?;
        }
        AdminCommand::Clients(command) => {
            let store = server::open_store(settings).await?;
            clients(command, &store, settings).await?;
        }
        AdminCommand::Ca(command) => {
            let store = server::open_store(settings).await?;
            crate::pki::ca(command, &store, settings).await?;
        }
        AdminCommand::Certs(command) => {
            let store = server::open_store(settings).await?;
            crate::pki::certs(command, &store, settings).await?;
        }
        AdminCommand::Device(command) => {
            let store = server::open_store(settings).await?;
            crate::devices::run(command, &store, settings).await?;
        }
        AdminCommand::Firmware(command) => {
            let store = server::open_store(settings).await?;
            firmware(command, &store, settings).await?;
        }
    }
    Ok(())
}

async fn firmware(
    command: FirmwareCommand,
    store: &Store,
    settings: &Settings,
) -> Result<(), Failure> {
    let now = SystemClock.now();
    match command {
        FirmwareCommand::Upload {
            model,
            version,
            notes,
            file,
        } => {
            let key = server::ca::encryption_key(&settings.pki, &settings.data_dir)?;
            let new = firmware::NewRelease {
                model: &model,
                version: &version,
                notes: &notes,
            };
            let content = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("cannot read {}", file.display()))
                .map_err(Failure::Input)?;
            let release =
                server::firmware::upload(store, &key, &settings.firmware_dir, new, content, now)
                    .await
                    .map_err(|error| match error {
                        firmware::UploadError::Failed(error) => {
                            Failure::Failed(anyhow::anyhow!(error))
                        }
                        refused => Failure::Input(refused.into()),
                    })?;
            println!("release_id: {}", release.release_id);
            println!("model:      {}", release.model);
            println!("version:    {}", release.version);
            println!("size:       {}", release.size);
            println!("sha256:     {}", release.sha256);
        }
        FirmwareCommand::List => {
            let releases = store
                .firmware()
                .releases(None)
                .await
                .context("cannot list releases")?;
            println!(
                "{:<36} {:<20} {:<14} {:>10} CREATED",
                "RELEASE", "MODEL", "VERSION", "BYTES"
            );
            for release in releases {
                println!(
                    "{:<36} {:<20} {:<14} {:>10} {}",
                    release.release_id,
                    release.model,
                    release.version,
                    release.size,
                    release.created_at.to_rfc3339()
                );
            }
        }
        FirmwareCommand::RotateKey => {
            let key = server::ca::encryption_key(&settings.pki, &settings.data_dir)?;
            if let Some(kid) = server::firmware::ensure_key(store, &key, now, true).await? {
                println!("new firmware-signing key: {kid}");
            }
        }
    }
    Ok(())
}

async fn users(command: UsersCommand, store: &Store) -> Result<(), Failure> {
    match command {
        UsersCommand::Import { file, batch_size } => {
            import_users(store, &file, batch_size as usize).await
        }
        UsersCommand::List { json } => {
            let mut after: Option<Email> = None;
            if !json {
                println!("{:<40} {:<11} ID", "EMAIL", "ROLE");
            }
            loop {
                let page = store
                    .users()
                    .list(after.as_ref(), 500)
                    .await
                    .context("cannot list accounts")?;
                for user in &page {
                    if json {
                        let line = serde_json::json!({
                            "id": user.id.to_string(),
                            "email": user.email.as_str(),
                            "role": user.role.as_str(),
                            "created_at_ms": user.created_at.unix_millis(),
                        });
                        println!("{line}");
                    } else {
                        println!("{:<40} {:<11} {}", user.email, user.role, user.id);
                    }
                }
                match page.last() {
                    Some(last) => after = Some(last.email.clone()),
                    None => break,
                }
            }
            Ok(())
        }
        UsersCommand::SetRole { email, role } => {
            let email = Email::parse(&email).map_err(|e| Failure::Input(e.into()))?;
            let role: Role = role
                .parse()
                .map_err(|e: model::RoleError| Failure::Input(e.into()))?;
            let user = store
                .users()
                .by_email(&email)
                .await
                .context("cannot look up the account")?
                .ok_or_else(|| Failure::Input(anyhow::anyhow!("no account with e-mail {email}")))?;
            store
                .users()
                .set_role(user.id, role, SystemClock.now())
                .await
                .context("cannot change the role")?;
            println!("{email} is now {role}");
            Ok(())
        }
    }
}

/// Validates the whole file, then writes it in batches, printing a line after each batch is
/// committed: whatever a line reports is durably stored.
async fn import_users(store: &Store, file: &Path, batch_size: usize) -> Result<(), Failure> {
    let reader = File::open(file)
        .map(BufReader::new)
        .with_context(|| format!("cannot open {}", file.display()))
        .map_err(Failure::Input)?;
    let users = match import::parse(reader) {
        Ok(users) => users,
        Err(ImportError::BadLines(errors)) => {
            for error in errors.iter().take(50) {
                eprintln!("{}: {error}", file.display());
            }
            if errors.len() > 50 {
                eprintln!("… and {} more", errors.len() - 50);
            }
            return Err(Failure::Input(anyhow::anyhow!(
                "{} bad line(s) in {}; nothing was imported",
                errors.len(),
                file.display()
            )));
        }
        Err(error) => return Err(Failure::Input(error.into())),
    };
    let total = users.len() as u64;
    let mut done = 0;
    let mut created = 0;
    for batch in users.chunks(batch_size) {
        let now = SystemClock.now();
        let rows: Vec<NewUser> = batch
            .iter()
            .map(|user| NewUser {
                id: UserId::generate(),
                email: user.email.clone(),
                password_hash: user.password_hash.clone(),
                role: user.role,
                created_at: now,
            })
            .collect();
        created += store
            .users()
            .insert_missing(&rows)
            .await
            .context("cannot write accounts")?;
        done += batch.len() as u64;
        println!("committed {done} of {total} ({created} new)");
    }
    println!(
        "imported {total} account(s): {created} new, {} already present",
        total - created
    );
    Ok(())
}

async fn keys(command: KeysCommand, store: &Store, settings: &Settings) -> Result<(), Failure> {
    let now = SystemClock.now();
    match command {
        KeysCommand::List => {
            let all = store
                .signing_keys()
                .all()
                .await
                .context("cannot read the signing keys")?;
            let retention = settings.access_token_lifetime + std::time::Duration::from_secs(300);
            let ring = KeyRing::new(all, retention);
            let signer = ring.signer(now).map(|key| key.kid.clone());
            let published: Vec<String> = ring
                .published(now)
                .iter()
                .map(|key| key.kid.clone())
                .collect();
            println!(
                "{:<34} {:<10} {:<10} {:<14} USABLE FROM (unix ms)",
                "KID", "SIGNING", "PUBLISHED", "RETIRED"
            );
            for key in ring.all() {
                println!(
                    "{:<34} {:<10} {:<10} {:<14} {}",
                    key.kid,
                    if signer.as_deref() == Some(key.kid.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    if published.contains(&key.kid) {
                        "yes"
                    } else {
                        "no"
                    },
                    key.retired_at
                        .map_or("no".to_owned(), |at| at.unix_millis().to_string()),
                    key.usable_from.unix_millis()
                );
            }
        }
        KeysCommand::Rotate => {
            let key =
                server::signing::rotate_signing_key(store, now, settings.key_publish_lead).await?;
            println!(
                "published key {}; it signs from {} s from now",
                key.kid,
                settings.key_publish_lead.as_secs()
            );
        }
        KeysCommand::Retire { kid } => {
            if !store
                .signing_keys()
                .retire(&kid, now)
                .await
                .context("cannot retire the key")?
            {
                return Err(Failure::Input(anyhow::anyhow!(
                    "no active key with kid {kid}"
                )));
            }
            server::signing::ensure_signing_key(store, now).await?;
            println!("retired key {kid}; tokens it signed no longer verify");
        }
    }
    Ok(())
}

async fn clients(
    command: ClientsCommand,
    store: &Store,
    settings: &Settings,
) -> Result<(), Failure> {
    match command {
        ClientsCommand::Create {
            name,
            scope,
            public,
            redirect_uris,
            first_party,
            jwks,
        } => {
            let jwks = match jwks {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))
                        .map_err(Failure::Input)?,
                ),
                None => None,
            };
            let hasher = SecretHasher::new(server::signing::client_secret_key(settings)?);
            let registration = Registration {
                name,
                scope,
                public,
                redirect_uris,
                first_party,
                jwks,
            };
            let (client, secret) = registration
                .register(&hasher, SystemClock.now())
                .map_err(|e| Failure::Input(e.into()))?;
            store
                .oauth_clients()
                .insert(&client)
                .await
                .context("cannot store the client")?;
            println!("client_id:     {}", client.client_id);
            if let Some(secret) = secret {
                println!("client_secret: {}", secret.as_str());
                println!("(the secret is shown only now; Warden keeps only a hash of it)");
            }
        }
        ClientsCommand::List => {
            println!("{:<36} {:<13} {:<30} SCOPES", "CLIENT ID", "KIND", "NAME");
            for client in store
                .oauth_clients()
                .all()
                .await
                .context("cannot list clients")?
            {
                println!(
                    "{:<36} {:<13} {:<30} {}",
                    client.client_id,
                    client.kind.as_str(),
                    client.name,
                    client.allowed_scopes
                );
            }
        }
    }
    Ok(())
}
