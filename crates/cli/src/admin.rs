//! `warden admin …`: work on the configured database directly, also while a server runs on it.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use accounts::import::{self, ImportError};
use anyhow::Context;
use model::{Clock, Email, Role, SystemClock, UserId};
use server::config::Settings;
use store::{LATEST_SCHEMA_VERSION, NewUser, Store};

use crate::Failure;
use crate::args::{AdminCommand, DbCommand, UsersCommand};

pub async fn run(command: AdminCommand, settings: &Settings) -> Result<(), Failure> {
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
