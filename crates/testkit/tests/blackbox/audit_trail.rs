//! The audit journal through the running server: each security-relevant action leaves exactly one
//! entry with the right fields, a technician's reads reach the owner's access log (and nothing of
//! it reaches the technician), admins read and export everything, and `warden audit verify` names
//! an entry changed, one removed and one inserted straight in the database, on both backends.

use audit::Entry;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::{DatabaseUrl, Store, StoreOptions};
use testkit::{TestApp, warden_command};

use crate::accounts::authenticator_code;
use crate::devices::{Fleet, on_both_backends};
use crate::oidc::PASSWORD;
use crate::storage::sqlx_try;

/// What `Fleet::person` leaves for someone with a role besides customer: the sign-up, the role
/// the operator sets, and the console's login (logout, login, tokens).
const NEW_PERSON_WITH_A_ROLE: &[&str] = &[
    "account.signup",
    "account.role_change",
    "account.logout",
    "account.login",
    "token.issue",
];

/// Reads the journal straight from the database, remembering how far it has read.
struct Journal {
    store: Store,
    seen: i64,
}

impl Journal {
    async fn of(app: &TestApp) -> Self {
        let store = Store::connect(&app.settings.database, &StoreOptions::default())
            .await
            .unwrap();
        let seen = store.audit().head().await.unwrap().seq;
        Self { store, seen }
    }

    /// The entries since the last call, which must be exactly `actions`, in order.
    async fn expect(&mut self, actions: &[&str]) -> Vec<Entry> {
        let entries = self
            .store
            .audit()
            .entries_after(self.seen, 1_000)
            .await
            .unwrap();
        if let Some(last) = entries.last() {
            self.seen = last.seq;
        }
        let got: Vec<&str> = entries.iter().map(|e| e.record.action.as_str()).collect();
        assert_eq!(got, actions, "{entries:#?}");
        entries
    }
}

fn detail(entry: &Entry) -> Value {
    entry.record.detail_json()
}

/// Asserts who did it, to what, and how it ended, and that it names where it came from.
fn assert_entry(entry: &Entry, actor: (&str, Option<&str>), target_kind: &str, outcome: &str) {
    let record = &entry.record;
    assert_eq!(record.actor.kind(), actor.0, "{entry:#?}");
    if let Some(label) = actor.1 {
        assert_eq!(record.actor.label(), Some(label), "{entry:#?}");
    }
    assert_eq!(record.target.kind, target_kind, "{entry:#?}");
    assert_eq!(record.outcome.as_str(), outcome, "{entry:#?}");
    if record.actor.kind() != "operator" {
        assert_eq!(record.source.as_deref(), Some("127.0.0.1"), "{entry:#?}");
        assert!(
            record
                .request_id
                .as_deref()
                .is_some_and(|id| !id.is_empty()),
            "{entry:#?}"
        );
    }
    assert!(entry.is_intact());
}

/// `warden audit ARGS` against the fleet's data directory and database.
fn audit_command(fleet: &Fleet, args: &[&str]) -> std::process::Output {
    let mut full = vec!["audit"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--data-dir", fleet.app.data_dir.path().to_str().unwrap()]);
    let mut command = warden_command(&full);
    if let DatabaseUrl::Postgres(url) = &fleet.app.settings.database {
        command.env("WARDEN_DATABASE_URL", url);
    }
    command.output().unwrap()
}

on_both_backends!(
    each_action_leaves_one_entry_with_its_fields_on_sqlite,
    each_action_leaves_one_entry_with_its_fields_on_postgres,
    each_action_leaves_one_entry_with_its_fields
);

async fn each_action_leaves_one_entry_with_its_fields(fleet: Fleet) {
    let app = &fleet.app;
    let mut journal = Journal::of(app).await;
    // The console client was registered with the command line when the fleet started.
    let setup = journal
        .store
        .audit()
        .query(&audit::Query {
            action: Some("client.create".into()),
            limit: 10,
            ..audit::Query::default()
        })
        .await
        .unwrap();
    assert_eq!(setup.len(), 1);
    assert_eq!(setup[0].record.actor.kind(), "operator");

    // People: sign-up, a role set by the operator, logout, login, tokens.
    let admin = fleet.person("admin@example.com", "admin").await;
    let entries = journal.expect(NEW_PERSON_WITH_A_ROLE).await;
    assert_entry(
        &entries[0],
        ("user", Some("admin@example.com")),
        "account",
        "success",
    );
    assert_entry(&entries[1], ("operator", None), "account", "success");
    assert_eq!(entries[1].record.target.id, "admin@example.com");
    assert_eq!(detail(&entries[1])["role"], "admin");
    assert_entry(
        &entries[3],
        ("user", Some("admin@example.com")),
        "account",
        "success",
    );
    assert_entry(&entries[4], ("user", None), "client", "success");
    assert_eq!(entries[4].record.target.id, fleet.console_id());
    assert_eq!(detail(&entries[4])["grant_type"], "authorization_code");
    let owner = fleet.person("owner@example.com", "customer").await;
    journal
        .expect(&[
            "account.signup",
            "account.logout",
            "account.login",
            "token.issue",
        ])
        .await;
    let technician = fleet.person("tech@example.com", "technician").await;
    let entries = journal.expect(NEW_PERSON_WITH_A_ROLE).await;
    let technician_id = entries[0].record.actor.id().to_owned();

    // A wrong password and an unknown account: failures, by nobody known yet.
    app.login("owner@example.com", "not the password", "/account")
        .await;
    let entries = journal.expect(&["account.login"]).await;
    assert_entry(&entries[0], ("anonymous", None), "account", "failure");
    assert_eq!(detail(&entries[0])["reason"], "wrong_credentials");
    assert!(!entries[0].record.target.id.is_empty());
    app.login("nobody@example.com", "whatever it is", "/account")
        .await;
    let entries = journal.expect(&["account.login"]).await;
    assert_eq!(entries[0].record.target.id, "");
    assert_eq!(detail(&entries[0])["email"], "nobody@example.com");

    // The maker's admin API.
    let devices = fleet.make_devices(&admin, 1).await;
    let device_id = devices[0]["device_id"].as_str().unwrap().to_owned();
    let entries = journal.expect(&["device.create"]).await;
    assert_entry(
        &entries[0],
        ("user", Some("admin@example.com")),
        "model",
        "success",
    );
    assert_eq!(detail(&entries[0])["devices"], json!([device_id]));
    let (status, _) = fleet
        .post(
            "/api/v1/admin/clients",
            &admin,
            json!({"name": "reports", "scope": "devices:read"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    journal.expect(&["client.create"]).await;

    // Ownership and grants.
    let (status, _) = fleet.claim(&owner, &devices[0]).await;
    assert_eq!(status, StatusCode::OK);
    let entries = journal.expect(&["device.claim"]).await;
    assert_entry(&entries[0], ("user", None), "device", "success");
    assert_eq!(
        entries[0].record.device.as_deref(),
        Some(device_id.as_str())
    );
    let (status, grant) = fleet
        .grant(
            &owner,
            &device_id,
            "tech@example.com",
            &["read_status", "write_settings"],
            3600,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    let entries = journal.expect(&["grant.create"]).await;
    assert_eq!(detail(&entries[0])["grant_id"], grant["grant_id"]);
    assert_eq!(detail(&entries[0])["grantee"]["email"], "tech@example.com");

    // The technician's use of the grant: a read, a settings change, a refused command.
    let state = format!("/api/v1/devices/{device_id}/state");
    assert_eq!(fleet.get(&state, &technician).await.0, StatusCode::OK);
    let entries = journal.expect(&["device.read"]).await;
    assert_entry(&entries[0], ("user", None), "device", "success");
    assert_eq!(entries[0].record.actor.id(), technician_id);
    assert_eq!(detail(&entries[0])["basis"], "grant");
    assert_eq!(detail(&entries[0])["permission"], "read_status");
    let (status, _) = fleet
        .call(
            Method::PUT,
            &format!("{state}/desired"),
            &technician,
            Some(json!({"temperature": 40})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let entries = journal.expect(&["device.settings_change"]).await;
    assert_eq!(detail(&entries[0])["basis"], "grant");
    let commands = format!("/api/v1/devices/{device_id}/commands");
    let (status, _) = fleet
        .post(&commands, &technician, json!({"name": "start"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let entries = journal.expect(&["device.access_denied"]).await;
    assert_entry(&entries[0], ("user", None), "device", "denied");
    assert_eq!(detail(&entries[0])["permission"], "send_commands");

    // The owner's own reads are not logged; an admin's are; the owner's command is.
    assert_eq!(fleet.get(&state, &owner).await.0, StatusCode::OK);
    journal.expect(&[]).await;
    assert_eq!(fleet.get(&state, &admin).await.0, StatusCode::OK);
    let entries = journal.expect(&["device.read"]).await;
    assert_eq!(detail(&entries[0])["basis"], "admin");
    let (status, _) = fleet
        .post(&commands, &owner, json!({"name": "start"}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    journal.expect(&["device.command"]).await;

    // The owner reads who did what; the technician reads none of it (and that is logged too).
    let log = format!("/api/v1/devices/{device_id}/access-log?order=oldest");
    let (status, body) = fleet.get(&log, &owner).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seen: Vec<(&str, &str)> = body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"]["email"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("device.claim", "owner@example.com"),
            ("grant.create", "owner@example.com"),
            ("device.read", "tech@example.com"),
            ("device.settings_change", "tech@example.com"),
            ("device.access_denied", "tech@example.com"),
            ("device.read", "admin@example.com"),
            ("device.command", "owner@example.com"),
        ]
    );
    assert!(body["entries"][0].get("source").is_none(), "{body}");
    assert_eq!(fleet.get(&log, &technician).await.0, StatusCode::FORBIDDEN);
    journal.expect(&["device.access_denied"]).await;

    let grant_path = format!(
        "/api/v1/devices/{device_id}/grants/{}",
        grant["grant_id"].as_str().unwrap()
    );
    let (status, _) = fleet.call(Method::DELETE, &grant_path, &owner, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    journal.expect(&["grant.revoke"]).await;

    // Admins read and export everything, and their reading is recorded.
    let (status, body) = fleet
        .get(
            "/api/v1/admin/audit?action=device.read&order=oldest",
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reads = body["entries"].as_array().unwrap();
    assert_eq!(reads.len(), 2);
    assert_eq!(reads[0]["source"], "127.0.0.1");
    assert_eq!(reads[0]["device_id"], device_id.as_str());
    journal.expect(&["audit.read"]).await;
    let export = app
        .client
        .get(app.url(&format!("/api/v1/admin/audit/export?device={device_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), StatusCode::OK);
    let text = export.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 9, "{text}");
    assert!(
        lines
            .windows(2)
            .all(|pair| pair[0]["seq"].as_i64() < pair[1]["seq"].as_i64())
    );
    journal.expect(&["audit.read"]).await;
    assert_eq!(
        fleet.get("/api/v1/admin/audit", &owner).await.0,
        StatusCode::FORBIDDEN
    );

    // Token revocation (RFC 7009) by the console, which is a public client.
    let revoked = app
        .client
        .post(app.url("/oauth2/revoke"))
        .form(&[
            ("token", technician.as_str()),
            ("client_id", fleet.console_id().as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let entries = journal.expect(&["token.revoke"]).await;
    assert_entry(&entries[0], ("client", None), "access_token", "success");

    // Transfer and release.
    let (status, _) = fleet
        .post(
            &format!("/api/v1/devices/{device_id}/transfer"),
            &owner,
            json!({"email": "admin@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let entries = journal.expect(&["device.transfer"]).await;
    assert_eq!(
        detail(&entries[0])["new_owner"]["email"],
        "admin@example.com"
    );
    let (status, _) = fleet
        .post(
            &format!("/api/v1/devices/{device_id}/release"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    journal.expect(&["device.release"]).await;

    // The account pages: password change (a wrong current password first) and two-step login.
    app.logout().await;
    journal.expect(&["account.logout"]).await;
    app.login("tech@example.com", PASSWORD, "/account").await;
    journal.expect(&["account.login"]).await;
    let change = |current: &'static str| async move {
        let token = app.csrf("/account/password").await;
        app.client
            .post(app.url("/account/password"))
            .form(&[
                ("current", current),
                ("new", "another long passphrase"),
                ("csrf", token.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(change("wrong").await, StatusCode::UNAUTHORIZED);
    let entries = journal.expect(&["account.password_change"]).await;
    assert_entry(
        &entries[0],
        ("user", Some("tech@example.com")),
        "account",
        "failure",
    );
    assert_eq!(change(PASSWORD).await, StatusCode::SEE_OTHER);
    journal.expect(&["account.password_change"]).await;
    let setup = app.get("/account/totp").await.text().await.unwrap();
    let secret = setup
        .split(r#"<code id="totp-secret">"#)
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .unwrap()
        .to_owned();
    let token = app.csrf("/account/totp").await;
    let code = authenticator_code(app, &secret);
    let enabled = app
        .client
        .post(app.url("/account/totp"))
        .form(&[("code", code.as_str()), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), StatusCode::OK);
    journal.expect(&["account.second_factor_enable"]).await;
    let token = app.csrf("/account").await;
    let disabled = app
        .client
        .post(app.url("/account/totp/disable"))
        .form(&[
            ("password", "another long passphrase"),
            ("csrf", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
    journal.expect(&["account.second_factor_disable"]).await;

    // The operator's commands name the operating-system user.
    fleet.admin(&["keys", "rotate"]);
    let entries = journal.expect(&["key.rotate"]).await;
    assert_entry(&entries[0], ("operator", None), "signing_key", "success");
    fleet.admin(&["device", "claim-code", &device_id]);
    let entries = journal.expect(&["device.claim_code"]).await;
    assert_eq!(
        entries[0].record.device.as_deref(),
        Some(device_id.as_str())
    );

    // Everything above chains; the command line says so.
    let output = audit_command(&fleet, &["verify"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("audit journal intact"), "{stdout}");
    let exported = audit_command(&fleet, &["export", "--action", "device.read"]);
    assert!(exported.status.success());
    assert_eq!(String::from_utf8_lossy(&exported.stdout).lines().count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_makers_api_and_the_operators_commands_leave_one_entry_each() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("admin@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let device_id = devices[0]["device_id"].as_str().unwrap().to_owned();
    let mut journal = Journal::of(&fleet.app).await;

    let (status, _) = fleet
        .post(
            &format!("/api/v1/admin/devices/{device_id}/claim-code"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let entries = journal.expect(&["device.claim_code"]).await;
    assert_entry(
        &entries[0],
        ("user", Some("admin@example.com")),
        "device",
        "success",
    );
    assert_eq!(
        entries[0].record.device.as_deref(),
        Some(device_id.as_str())
    );
    let schema = "/api/v1/admin/models/washer-w500/settings-schema";
    let (status, _) = fleet
        .call(Method::PUT, schema, &admin, Some(json!({"type": "object"})))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = fleet.call(Method::DELETE, schema, &admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let entries = journal.expect(&["device.schema", "device.schema"]).await;
    assert_eq!(detail(&entries[0])["schema"], "set");
    assert_eq!(detail(&entries[1])["schema"], "removed");

    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_str().unwrap();
    fleet.admin(&[
        "certs",
        "issue-workload",
        "--part",
        "broker",
        "--out",
        out_dir,
    ]);
    let entries = journal.expect(&["certificate.issue"]).await;
    assert_entry(&entries[0], ("operator", None), "certificate", "success");
    assert_eq!(detail(&entries[0])["part"], "broker");
    let root = out.path().join("root.pem");
    fleet.admin(&["ca", "export-root", "--out", root.to_str().unwrap()]);
    journal.expect(&["ca.export_root"]).await;
    fleet.admin(&["users", "list"]);
    fleet.admin(&["certs", "list", "--device", &device_id]);
    journal.expect(&[]).await;

    // A command that fails is recorded with its reason.
    let mut revoke = warden_command(&[
        "admin",
        "certs",
        "revoke",
        "0badc0de",
        "--data-dir",
        out_dir_of(&fleet),
    ]);
    let output = revoke.output().unwrap();
    assert!(!output.status.success());
    let entries = journal.expect(&["certificate.revoke"]).await;
    assert_entry(&entries[0], ("operator", None), "certificate", "failure");
    assert!(
        detail(&entries[0])["reason"]
            .as_str()
            .is_some_and(|reason| !reason.is_empty()),
        "{entries:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_subscription_across_devices_is_recorded_as_a_read_of_every_device() {
    let fleet = Fleet::new().await;
    let service = fleet.service_token(&["devices:read"]).await;
    let mut journal = Journal::of(&fleet.app).await;
    let (client, mut events) = crate::mqtt::connect(&fleet, "event-store", ("svc", &service), None)
        .await
        .unwrap();
    let granted = crate::mqtt::subscribe(&client, &mut events, &["devices/+/events"]).await;
    assert_eq!(granted, [true]);
    let entries = journal.expect(&["device.read"]).await;
    let record = &entries[0].record;
    assert_eq!(record.actor.kind(), "client");
    assert_eq!(
        (record.target.kind.as_str(), record.target.id.as_str()),
        ("device", "*")
    );
    assert_eq!(record.device, None);
    assert_eq!(detail(&entries[0])["filter"], "devices/+/events");
}

fn out_dir_of(fleet: &Fleet) -> &str {
    fleet.app.data_dir.path().to_str().unwrap()
}

on_both_backends!(
    verify_names_an_entry_changed_removed_or_inserted_in_the_database_on_sqlite,
    verify_names_an_entry_changed_removed_or_inserted_in_the_database_on_postgres,
    verify_names_an_entry_changed_removed_or_inserted_in_the_database
);

/// What someone with write access to the database (and the will to drop the guarding triggers)
/// can do, and what `warden audit verify` then says.
async fn verify_names_an_entry_changed_removed_or_inserted_in_the_database(fleet: Fleet) {
    let app = &fleet.app;
    let url = &app.settings.database;
    let _admin = fleet.person("admin@example.com", "admin").await;
    for wrong in ["first wrong password", "second wrong password"] {
        app.login("admin@example.com", wrong, "/account").await;
    }
    let journal = Journal::of(app).await;
    let entries = journal.store.audit().entries_after(0, 1_000).await.unwrap();
    assert!(entries.len() >= 8, "{entries:#?}");
    let verify = || {
        let output = audit_command(&fleet, &["verify"]);
        (
            output.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let (code, said) = verify();
    assert_eq!(code, Some(0), "{said}");

    // The database itself refuses changes while its guards are in place.
    let guarded = sqlx_try(
        url,
        "UPDATE audit_entries SET outcome = 'success' WHERE seq = 2",
    )
    .await;
    assert!(guarded.is_err());
    let drop_guards = match url {
        DatabaseUrl::Sqlite(_) => {
            "DROP TRIGGER audit_entries_never_updated; \
             DROP TRIGGER audit_entries_removed_only_by_retention;"
        }
        DatabaseUrl::Postgres(_) => "DROP TRIGGER audit_entries_guard ON audit_entries;",
    };
    sqlx_try(url, drop_guards).await.unwrap();

    // Changed: the last failed login made to look like a success.
    let failed = entries
        .iter()
        .rev()
        .find(|e| e.record.outcome == audit::Outcome::Failure)
        .unwrap();
    let seq = failed.seq;
    sqlx_try(
        url,
        &format!("UPDATE audit_entries SET outcome = 'success' WHERE seq = {seq}"),
    )
    .await
    .unwrap();
    let (code, said) = verify();
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains(&format!("entry {seq} was changed")), "{said}");
    sqlx_try(
        url,
        &format!("UPDATE audit_entries SET outcome = 'failure' WHERE seq = {seq}"),
    )
    .await
    .unwrap();
    assert_eq!(verify().0, Some(0));

    // Removed: an entry in the middle.
    let removed = &entries[3];
    sqlx_try(
        url,
        &format!("DELETE FROM audit_entries WHERE seq = {}", removed.seq),
    )
    .await
    .unwrap();
    let (code, said) = verify();
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!("entry {} was removed", removed.seq)),
        "{said}"
    );
    sqlx_try(url, &insert_sql(removed)).await.unwrap();
    assert_eq!(verify().0, Some(0));

    // Inserted: a forged login that chains correctly after entry 4, the entries after it
    // renumbered to make room.
    let before = &entries[3];
    let mut forged = before.record.clone();
    forged.action = "account.login".into();
    forged.detail = r#"{"forged":true}"#.into();
    let forged = Entry {
        seq: before.seq + 1,
        hash: forged.hash_after(before.hash),
        prev_hash: before.hash,
        record: forged,
    };
    let shift = 1_000_000;
    sqlx_try(
        url,
        &format!(
            "UPDATE audit_entries SET seq = seq + {shift} WHERE seq > {}",
            before.seq
        ),
    )
    .await
    .unwrap();
    sqlx_try(
        url,
        &format!(
            "UPDATE audit_entries SET seq = seq - {} WHERE seq > {shift}",
            shift - 1
        ),
    )
    .await
    .unwrap();
    sqlx_try(url, &insert_sql(&forged)).await.unwrap();
    let (code, said) = verify();
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains(&format!("entry {} was inserted", forged.seq)),
        "{said}"
    );
}

/// An INSERT that puts `entry` back as it was, byte for byte.
fn insert_sql(entry: &Entry) -> String {
    let text = |value: Option<&str>| match value {
        Some(value) => format!("'{}'", value.replace('\'', "''")),
        None => "NULL".to_owned(),
    };
    let record = &entry.record;
    format!(
        "INSERT INTO audit_entries (seq, at, actor_kind, actor_id, actor_label, action, \
         target_kind, target_id, device_id, outcome, source, request_id, detail, prev_hash, hash) \
         VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
        entry.seq,
        record.at.unix_millis(),
        text(Some(record.actor.kind())),
        text(Some(record.actor.id())),
        text(record.actor.label()),
        text(Some(&record.action)),
        text(Some(&record.target.kind)),
        text(Some(&record.target.id)),
        text(record.device.as_deref()),
        text(Some(record.outcome.as_str())),
        text(record.source.as_deref()),
        text(record.request_id.as_deref()),
        text(Some(&record.detail)),
        text(Some(&entry.prev_hash.to_hex())),
        text(Some(&entry.hash.to_hex())),
    )
}
