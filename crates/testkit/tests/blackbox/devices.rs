//! Devices and authorization through the public API: the maker creates devices, customers claim
//! them through an OIDC login, owners change settings, grant and revoke technicians; every cell of
//! subjects × actions is asserted through HTTP; devices talk to the device listener with their
//! certificate and password.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::DatabaseUrl;
use testkit::postgres::Cluster;
use testkit::{TestApp, warden_command};

use crate::oauth::{Registered, client_credentials};
use crate::oidc::{Client, PASSWORD, discover, token_for};
use crate::pki::device_client;

/// A test on SQLite and the same test on PostgreSQL.
macro_rules! on_both_backends {
    ($sqlite:ident, $postgres:ident, $body:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $body(Fleet::new().await).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            $body(Fleet::on_postgres().await).await;
        }
    };
}

pub(crate) use on_both_backends;

/// Every scope a person's console token can carry for devices.
const PERSON_SCOPES: &[&str] = &[
    "openid",
    "devices:read",
    "devices:write",
    "devices:command",
    "devices:manage",
    "firmware:manage",
];

/// A Warden with a first-party console client that can ask for every device scope.
pub(crate) struct Fleet {
    pub(crate) app: TestApp,
    /// Set right after start, once the client is registered.
    console: Option<Client>,
    /// The PostgreSQL database the app runs on, which admin commands must use too.
    database_url: Option<String>,
}

impl Fleet {
    pub(crate) async fn new() -> Self {
        Self::on(TestApp::spawn().await, None).await
    }

    /// A fleet on a Warden with changed settings.
    pub(crate) async fn with(change: impl FnOnce(&mut server::config::Config)) -> Self {
        Self::on(TestApp::spawn_with(change).await, None).await
    }

    pub(crate) async fn on_postgres() -> Self {
        Self::on_database(Cluster::shared().create_database().await).await
    }

    /// A fleet on a PostgreSQL database of the caller's cluster.
    pub(crate) async fn on_database(url: DatabaseUrl) -> Self {
        let text = match &url {
            DatabaseUrl::Postgres(text) => text.clone(),
            DatabaseUrl::Sqlite(_) => unreachable!("the cluster makes PostgreSQL databases"),
        };
        Self::on(TestApp::spawn_on(&url).await, Some(text)).await
    }

    async fn on(app: TestApp, database_url: Option<String>) -> Self {
        let mut fleet = Self {
            app,
            console: None,
            database_url,
        };
        let scopes = format!("{} admin", PERSON_SCOPES.join(" "));
        let out = fleet.admin(&[
            "clients",
            "create",
            "--name",
            "Warden console",
            "--public",
            "--first-party",
            "--scope",
            &scopes,
            "--redirect-uri",
            "http://127.0.0.1/callback",
        ]);
        let client_id = out
            .lines()
            .find_map(|line| line.strip_prefix("client_id:"))
            .unwrap()
            .trim()
            .to_owned();
        fleet.console = Some(discover(&fleet.app, &client_id).await);
        fleet
    }

    /// Makes `count` devices of `model` with the command line into a new directory, one factory
    /// bundle each.
    pub(crate) fn factory(&self, model: &str, count: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        self.admin(&[
            "device",
            "create",
            "--model",
            model,
            "--count",
            count,
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        dir
    }

    /// The same fleet after a restart of its Warden (tokens issued before name the old address
    /// as their issuer, so callers log in again).
    pub(crate) async fn restart(self) -> Self {
        self.restart_after(async {}).await
    }

    /// The same fleet after its Warden was stopped, `meanwhile` ran, and it started again.
    pub(crate) async fn restart_after(self, meanwhile: impl Future<Output = ()>) -> Self {
        let client_id = self.console_id();
        let app = self.app.restart_after(meanwhile).await;
        let console = Some(discover(&app, &client_id).await);
        Self {
            app,
            console,
            database_url: self.database_url,
        }
    }

    fn console(&self) -> &Client {
        self.console.as_ref().unwrap()
    }

    /// The console's client id, for what a public client does itself (revoking a token).
    pub(crate) fn console_id(&self) -> String {
        self.console().client_id().to_string()
    }

    /// `warden admin ARGS` on this app's data directory and database.
    pub(crate) fn admin(&self, args: &[&str]) -> String {
        let mut full = vec!["admin"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--data-dir", self.app.data_dir.path().to_str().unwrap()]);
        let mut command = warden_command(&full);
        if let Some(url) = &self.database_url {
            command.env("WARDEN_DATABASE_URL", url);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// A client-credentials token for a new service client with `scopes`.
    pub(crate) async fn service_token(&self, scopes: &[&str]) -> String {
        let out = self.admin(&[
            "clients",
            "create",
            "--name",
            "fleet service",
            "--scope",
            &scopes.join(" "),
        ]);
        let field = |name: &str| {
            out.lines()
                .find_map(|line| line.strip_prefix(name))
                .unwrap()
                .trim()
                .to_owned()
        };
        let service = Registered {
            id: field("client_id:"),
            secret: field("client_secret:"),
        };
        let response = client_credentials(&self.app, &service, &service.secret, scopes)
            .await
            .unwrap();
        oauth2::TokenResponse::access_token(&response)
            .secret()
            .clone()
    }

    /// Signs `email` up with `role` and returns an access token from the OIDC login.
    pub(crate) async fn person(&self, email: &str, role: &str) -> String {
        assert_eq!(
            self.app.signup(email, PASSWORD).await.status(),
            StatusCode::SEE_OTHER
        );
        if role != "customer" {
            self.admin(&["users", "set-role", email, role]);
        }
        self.log_in(email, role).await
    }

    /// An access token from the OIDC login of `email`, who has `role`.
    pub(crate) async fn log_in(&self, email: &str, role: &str) -> String {
        let mut scopes = PERSON_SCOPES.to_vec();
        if role == "admin" {
            scopes.push("admin");
        }
        token_for(&self.app, self.console(), email, &scopes)
            .await
            .unwrap()
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .app
            .client
            .request(method.clone(), self.app.url(path))
            .bearer_auth(token);
        if method == Method::PUT {
            request = request.header("If-Match", "*");
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub(crate) async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Devices made through the admin API, with their secrets.
    pub(crate) async fn make_devices(&self, admin: &str, count: usize) -> Vec<Value> {
        let (status, body) = self
            .post(
                "/api/v1/admin/devices",
                admin,
                json!({"model": "washer-w500", "count": count}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["devices"].as_array().unwrap().clone()
    }

    pub(crate) async fn claim(&self, token: &str, device: &Value) -> (StatusCode, Value) {
        self.post(
            "/api/v1/devices/claim",
            token,
            json!({"device_id": device["device_id"], "claim_code": device["claim_code"]}),
        )
        .await
    }

    pub(crate) async fn grant(
        &self,
        owner: &str,
        device_id: &str,
        email: &str,
        scopes: &[&str],
        seconds: u64,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/api/v1/devices/{device_id}/grants"),
            owner,
            json!({"email": email, "scopes": scopes, "expires_in_seconds": seconds}),
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_story_from_factory_to_a_revoked_technician() {
    let fleet = Fleet::new().await;
    let app = &fleet.app;
    // The maker makes a device with the command line; the bundle holds its secrets and label.
    let factory = tempfile::tempdir().unwrap();
    let out_dir = factory.path().to_str().unwrap();
    let printed = fleet.admin(&[
        "device",
        "create",
        "--model",
        "washer-w500",
        "--count",
        "2",
        "--out",
        out_dir,
    ]);
    let device_id = printed
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let bundle_dir = factory.path().join(&device_id);
    let bundle: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle_dir.join("device.json")).unwrap())
            .unwrap();
    assert_eq!(bundle["model"], "washer-w500");
    assert!(printed.contains(bundle["claim_code"].as_str().unwrap()));
    let label = std::fs::read_to_string(bundle_dir.join("label.svg")).unwrap();
    assert!(
        label.starts_with("<?xml") && label.contains("<svg"),
        "{label}"
    );
    for secret in ["device.json", "device.key"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(bundle_dir.join(secret))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o077, 0, "{secret} is readable by others");
    }

    // A customer signs up, logs in through OIDC, claims the device and reads it.
    let owner = fleet.person("owner@example.com", "customer").await;
    let (status, claimed) = fleet.claim(&owner, &bundle).await;
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(claimed["device_id"], device_id);
    let (status, list) = fleet.get("/api/v1/devices", &owner).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["devices"].as_array().unwrap().len(), 1, "{list}");
    let (status, detail) = fleet
        .get(&format!("/api/v1/devices/{device_id}"), &owner)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["access"], "owner");
    assert_eq!(detail["model"], "washer-w500");

    // The owner changes a setting, based on the version read.
    let state_path = format!("/api/v1/devices/{device_id}/state");
    let read = app
        .client
        .get(app.url(&state_path))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    let etag = read.headers()["etag"].to_str().unwrap().to_owned();
    let written = app
        .client
        .put(app.url(&format!("{state_path}/desired")))
        .bearer_auth(&owner)
        .header("If-Match", &etag)
        .json(&json!({"temperature": 40}))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), StatusCode::OK);
    let (_, state) = fleet.get(&state_path, &owner).await;
    assert_eq!(state["desired"]["settings"], json!({"temperature": 40}));
    assert_eq!(state["delta"], json!({"temperature": 40}));

    // A technician gets read-only access for an hour: reads, cannot write.
    let technician = fleet.person("tech@example.com", "technician").await;
    let (status, grant) = fleet
        .grant(
            &owner,
            &device_id,
            "tech@example.com",
            &["read_status"],
            3600,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    let (status, seen) = fleet.get(&state_path, &technician).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["desired"]["settings"], json!({"temperature": 40}));
    let (status, list) = fleet.get("/api/v1/devices", &technician).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["devices"][0]["permissions"], json!(["read_status"]));
    let (status, refused) = fleet
        .call(
            Method::PUT,
            &format!("{state_path}/desired"),
            &technician,
            Some(json!({"temperature": 90})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");

    // The owner revokes: the technician's next request finds no device at all.
    let grant_id = grant["grant_id"].as_str().unwrap();
    let (status, _) = fleet
        .call(
            Method::DELETE,
            &format!("/api/v1/devices/{device_id}/grants/{grant_id}"),
            &owner,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = fleet.get(&state_path, &technician).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (_, list) = fleet.get("/api/v1/devices", &technician).await;
    assert_eq!(list["devices"], json!([]));
    let (_, grants) = fleet
        .get(&format!("/api/v1/devices/{device_id}/grants"), &owner)
        .await;
    assert_eq!(grants["grants"][0]["active"], false);
    assert!(grants["grants"][0]["revoked_at"].is_string());
}

/// The actions in the order of the table's columns.
const ACTIONS: [&str; 7] = [
    "read_status",
    "read_events",
    "write_settings",
    "send_commands",
    "manage_grants",
    "manage_ownership",
    "manage_firmware",
];

/// Asks about one action through the endpoint that takes it where there is one, and always
/// through `POST /api/v1/authz/check`; both answers must agree with `expected` (a status: 200 for
/// allowed, 403 seen-but-refused, 404 not visible).
async fn assert_cell(
    fleet: &Fleet,
    who: &str,
    token: &str,
    device_id: &str,
    action: &str,
    expected: StatusCode,
) {
    let base = format!("/api/v1/devices/{device_id}");
    let endpoint = match action {
        "read_status" => Some(fleet.get(&format!("{base}/state"), token).await),
        "write_settings" => Some(
            fleet
                .call(
                    Method::PUT,
                    &format!("{base}/state/desired"),
                    token,
                    Some(json!({"mode": who})),
                )
                .await,
        ),
        "send_commands" => Some(
            fleet
                .post(
                    &format!("{base}/commands"),
                    token,
                    json!({"name": "start", "ttl_seconds": 5}),
                )
                .await,
        ),
        "manage_grants" => Some(fleet.get(&format!("{base}/grants"), token).await),
        _ => None,
    };
    if let Some((status, body)) = endpoint {
        let status = if status.is_success() {
            StatusCode::OK
        } else {
            status
        };
        assert_eq!(
            status, expected,
            "{who} {action} through its endpoint: {body}"
        );
    }
    let (status, answer) = fleet
        .post(
            "/api/v1/authz/check",
            token,
            json!({"action": action, "device_id": device_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["allowed"],
        expected == StatusCode::OK,
        "{who} {action} through the check API: {answer}"
    );
}

on_both_backends!(
    every_subject_and_action_through_the_http_api,
    every_subject_and_action_through_the_http_api_on_postgres,
    subjects_and_actions
);

async fn subjects_and_actions(fleet: Fleet) {
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let device_id = devices[0]["device_id"].as_str().unwrap().to_owned();
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, &devices[0]).await.0, StatusCode::OK);

    let grantable = [
        "read_status",
        "read_events",
        "write_settings",
        "send_commands",
        "manage_firmware",
    ];
    let full = fleet.person("full@example.com", "technician").await;
    assert_eq!(
        fleet
            .grant(&owner, &device_id, "full@example.com", &grantable, 3600)
            .await
            .0,
        StatusCode::CREATED
    );
    let reader = fleet.person("reader@example.com", "technician").await;
    assert_eq!(
        fleet
            .grant(
                &owner,
                &device_id,
                "reader@example.com",
                &["read_status"],
                3600
            )
            .await
            .0,
        StatusCode::CREATED
    );
    let writer = fleet.person("writer@example.com", "technician").await;
    assert_eq!(
        fleet
            .grant(
                &owner,
                &device_id,
                "writer@example.com",
                &["write_settings"],
                3600
            )
            .await
            .0,
        StatusCode::CREATED
    );
    let revoked = fleet.person("revoked@example.com", "technician").await;
    let (_, grant) = fleet
        .grant(&owner, &device_id, "revoked@example.com", &grantable, 3600)
        .await;
    let grant_id = grant["grant_id"].as_str().unwrap();
    let (status, _) = fleet
        .call(
            Method::DELETE,
            &format!("/api/v1/devices/{device_id}/grants/{grant_id}"),
            &owner,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let expired = fleet.person("expired@example.com", "technician").await;
    assert_eq!(
        fleet
            .grant(&owner, &device_id, "expired@example.com", &grantable, 60)
            .await
            .0,
        StatusCode::CREATED
    );
    fleet.app.clock.advance(Duration::from_secs(61));
    let stranger = fleet.person("stranger@example.com", "customer").await;
    let service_token = fleet
        .service_token(&["devices:read", "devices:write", "firmware:manage"])
        .await;

    const A: StatusCode = StatusCode::OK;
    const F: StatusCode = StatusCode::FORBIDDEN;
    const N: StatusCode = StatusCode::NOT_FOUND;
    // Columns: read_status read_events write_settings send_commands manage_grants
    // manage_ownership manage_firmware.
    let table: [(&str, &str, [StatusCode; 7]); 9] = [
        ("owner", &owner, [A, A, A, A, A, A, A]),
        ("technician with every scope", &full, [A, A, A, A, F, F, A]),
        (
            "technician with read_status",
            &reader,
            [A, F, F, F, F, F, F],
        ),
        (
            "technician with write_settings",
            &writer,
            [F, F, A, F, F, F, F],
        ),
        (
            "technician with a revoked grant",
            &revoked,
            [N, N, N, N, N, N, N],
        ),
        (
            "technician with an expired grant",
            &expired,
            [N, N, N, N, N, N, N],
        ),
        ("stranger", &stranger, [N, N, N, N, N, N, N]),
        ("admin", &admin, [A, A, F, F, F, F, A]),
        (
            "service with read, write and firmware scopes",
            &service_token,
            [A, A, A, F, F, F, A],
        ),
    ];
    for (who, token, expected) in table {
        for (action, expected) in ACTIONS.iter().zip(expected) {
            assert_cell(&fleet, who, token, &device_id, action, expected).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_change_nothing_and_say_why() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 2).await;
    let device_id = devices[0]["device_id"].as_str().unwrap().to_owned();
    let owner = fleet.person("owner@example.com", "customer").await;
    let other = fleet.person("other@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, &devices[0]).await.0, StatusCode::OK);

    // Claiming a claimed device, with its right code.
    let (status, body) = fleet.claim(&other, &devices[0]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Wrong codes: five are free, the sixth locks the person out for a while, and then even the
    // right code waits.
    let wrong =
        json!({"device_id": devices[1]["device_id"], "claim_code": "0000-0000-0000-0000-0000"});
    for _ in 0..6 {
        let (status, body) = fleet
            .post("/api/v1/devices/claim", &other, wrong.clone())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, body) = fleet
        .post("/api/v1/devices/claim", &other, wrong.clone())
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (status, _) = fleet.claim(&other, &devices[1]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, body) = fleet
        .post(
            "/api/v1/devices/claim",
            &other,
            json!({"device_id": "x", "claim_code": "not a code!"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Settings: a stale version, no version, not an object, against the model's schema.
    let desired = format!("/api/v1/devices/{device_id}/state/desired");
    let put = |version: Option<&str>, body: Value| {
        let mut request = fleet
            .app
            .client
            .put(fleet.app.url(&desired))
            .bearer_auth(&owner)
            .json(&body);
        if let Some(version) = version {
            request = request.header("If-Match", version);
        }
        request.send()
    };
    assert_eq!(
        put(Some("\"0\""), json!({"temperature": 30}))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let stale = put(Some("\"0\""), json!({"temperature": 60}))
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    assert!(stale.text().await.unwrap().contains("version 1"));
    assert_eq!(
        put(None, json!({"temperature": 60}))
            .await
            .unwrap()
            .status(),
        StatusCode::PRECONDITION_REQUIRED
    );
    assert_eq!(
        put(Some("\"1\""), json!([60])).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let broken = fleet
        .app
        .client
        .put(fleet.app.url(&desired))
        .bearer_auth(&owner)
        .header("If-Match", "\"1\"")
        .header("Content-Type", "application/json")
        .body("{\"temperature\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    let schema = json!({
        "type": "object",
        "properties": {"temperature": {"type": "integer", "minimum": 20, "maximum": 90}},
        "additionalProperties": false
    });
    let (status, _) = fleet
        .call(
            Method::PUT,
            "/api/v1/admin/models/washer-w500/settings-schema",
            &admin,
            Some(schema),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let invalid = put(Some("\"1\""), json!({"temperature": 95}))
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    let message = invalid.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("/temperature"), "{message}");
    let (_, state) = fleet
        .get(&format!("/api/v1/devices/{device_id}/state"), &owner)
        .await;
    assert_eq!(
        state["desired"],
        json!({"version": 1, "settings": {"temperature": 30}, "updated_at": state["desired"]["updated_at"]})
    );

    // Grants: only to technicians, only by the owner, never of the owner's own powers.
    let _technician = fleet.person("tech@example.com", "technician").await;
    let (status, body) = fleet
        .grant(
            &owner,
            &device_id,
            "other@example.com",
            &["read_status"],
            3600,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("technician"),
        "{body}"
    );
    let (status, _) = fleet
        .grant(
            &owner,
            &device_id,
            "tech@example.com",
            &["manage_grants"],
            3600,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = fleet
        .grant(
            &owner,
            &device_id,
            "tech@example.com",
            &["read_status"],
            91 * 86_400,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = fleet
        .grant(
            &other,
            &device_id,
            "tech@example.com",
            &["read_status"],
            3600,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let technician = token_for(
        &fleet.app,
        fleet.console(),
        "tech@example.com",
        PERSON_SCOPES,
    )
    .await
    .unwrap();
    assert_eq!(
        fleet
            .grant(
                &owner,
                &device_id,
                "tech@example.com",
                &["read_status"],
                3600
            )
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, _) = fleet
        .grant(
            &technician,
            &device_id,
            "tech@example.com",
            &["write_settings"],
            3600,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, grants) = fleet
        .get(&format!("/api/v1/devices/{device_id}/grants"), &owner)
        .await;
    assert_eq!(grants["grants"].as_array().unwrap().len(), 1);

    // A token without the scope for an action is refused even for the owner.
    let read_only = token_for(
        &fleet.app,
        fleet.console(),
        "owner@example.com",
        &["openid", "devices:read"],
    )
    .await
    .unwrap();
    let (status, body) = fleet
        .call(
            Method::PUT,
            &desired,
            &read_only,
            Some(json!({"temperature": 50})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("devices:write"),
        "{body}"
    );
    // Only admins reach the maker's API.
    let (status, _) = fleet
        .post(
            "/api/v1/admin/devices",
            &owner,
            json!({"model": "washer-w500"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

on_both_backends!(
    a_device_reads_settings_reports_state_and_answers_commands_over_mutual_tls,
    the_device_side_works_on_postgres,
    device_side
);

async fn device_side(fleet: Fleet) {
    let app = &fleet.app;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 2).await;
    let device = &devices[0];
    let device_id = device["device_id"].as_str().unwrap().to_owned();
    let password = device["mqtt_password"].as_str().unwrap().to_owned();
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, device).await.0, StatusCode::OK);

    let identity = format!(
        "{}{}",
        device["certificate_pem"].as_str().unwrap(),
        device["private_key_pem"].as_str().unwrap()
    );
    let client = device_client(app, Some(identity.as_bytes()));
    let port = app.warden.addresses.device.unwrap().port();
    let url = move |path: &str| format!("https://localhost:{port}{path}");

    // Both credentials are needed: the certificate and the password, under the certificate's id.
    let no_password = client.get(url("/device/state")).send().await.unwrap();
    assert_eq!(no_password.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .get(url("/device/state"))
        .basic_auth(&device_id, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let other_id = devices[1]["device_id"].as_str().unwrap();
    let other_password = devices[1]["mqtt_password"].as_str().unwrap();
    let borrowed = client
        .get(url("/device/state"))
        .basic_auth(other_id, Some(other_password))
        .send()
        .await
        .unwrap();
    assert_eq!(borrowed.status(), StatusCode::FORBIDDEN);
    let without_certificate = device_client(app, None)
        .get(url("/device/state"))
        .basic_auth(&device_id, Some(&password))
        .send()
        .await;
    assert!(
        without_certificate.is_err(),
        "the handshake needs a client certificate"
    );

    // The owner's setting reaches the device; the device's report clears the delta.
    let (status, _) = fleet
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{device_id}/state/desired"),
            &owner,
            Some(json!({"program": {"temperature": 40}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let state: Value = client
        .get(url("/device/state"))
        .basic_auth(&device_id, Some(&password))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        state["desired"],
        json!({"version": 1, "settings": {"program": {"temperature": 40}}})
    );
    let reported = client
        .put(url("/device/state/reported"))
        .basic_auth(&device_id, Some(&password))
        .json(&json!({"program": {"temperature": 40}, "door": "closed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reported.status(), StatusCode::NO_CONTENT);
    let (_, state) = fleet
        .get(&format!("/api/v1/devices/{device_id}/state"), &owner)
        .await;
    assert_eq!(state["delta"], json!({}));
    assert_eq!(state["reported"]["state"]["door"], "closed");
    let (_, detail) = fleet
        .get(&format!("/api/v1/devices/{device_id}"), &owner)
        .await;
    assert!(detail["last_seen_at"].is_string(), "{detail}");

    // A command waits for the device's answer, which a device-side task gives.
    let device_side = {
        let client = client.clone();
        let device_id = device_id.clone();
        let password = password.clone();
        tokio::spawn(async move {
            loop {
                let pending: Value = client
                    .get(url("/device/commands"))
                    .basic_auth(&device_id, Some(&password))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if let Some(command) = pending["commands"].as_array().unwrap().first() {
                    let command_id = command["command_id"].as_str().unwrap();
                    let answered = client
                        .post(url(&format!("/device/commands/{command_id}/response")))
                        .basic_auth(&device_id, Some(&password))
                        .json(&json!({"started": true, "echo": command["payload"]}))
                        .send()
                        .await
                        .unwrap();
                    return (answered.status(), command_id.to_owned());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let (status, command) = fleet
        .post(
            &format!("/api/v1/devices/{device_id}/commands"),
            &owner,
            json!({"name": "start", "payload": {"program": "eco"}, "ttl_seconds": 60, "wait_seconds": 20}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{command}");
    assert_eq!(command["status"], "answered");
    assert_eq!(
        command["response"],
        json!({"started": true, "echo": {"program": "eco"}})
    );
    let (answer_status, command_id) = device_side.await.unwrap();
    assert_eq!(answer_status, StatusCode::NO_CONTENT);
    let again = client
        .post(url(&format!("/device/commands/{command_id}/response")))
        .basic_auth(&device_id, Some(&password))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);

    // A command nobody answers expires with a clear status, and a late answer is refused.
    let (status, pending) = fleet
        .post(
            &format!("/api/v1/devices/{device_id}/commands"),
            &owner,
            json!({"name": "stop", "ttl_seconds": 30}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(pending["status"], "pending");
    app.clock.advance(Duration::from_secs(31));
    let late_id = pending["command_id"].as_str().unwrap();
    let (_, expired) = fleet
        .get(
            &format!("/api/v1/devices/{device_id}/commands/{late_id}"),
            &owner,
        )
        .await;
    assert_eq!(expired["status"], "expired");
    let late = client
        .post(url(&format!("/device/commands/{late_id}/response")))
        .basic_auth(&device_id, Some(&password))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::CONFLICT);

    // What the device sent over HTTPS and was accepted is stored as its MQTT twin would be; the
    // refused answers are not.
    let (_, stored) = fleet
        .get(
            &format!("/api/v1/devices/{device_id}/events?order=oldest"),
            &owner,
        )
        .await;
    let stored: Vec<(&str, &Value)> = stored["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| (event["topic"].as_str().unwrap(), &event["payload"]))
        .collect();
    let report = json!({"program": {"temperature": 40}, "door": "closed"});
    let answer = json!({
        "command_id": command["command_id"],
        "response": {"started": true, "echo": {"program": "eco"}},
    });
    assert_eq!(
        stored,
        [
            (
                format!("devices/{device_id}/state/reported").as_str(),
                &report
            ),
            (
                format!("devices/{device_id}/commands/start/response").as_str(),
                &answer
            ),
        ]
    );

    // A revoked certificate is refused even with the right password.
    let serial = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(device["certificate_pem"].as_str().unwrap().as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let serial = String::from_utf8(serial.stdout)
        .unwrap()
        .trim()
        .trim_start_matches("serial=")
        .to_lowercase();
    fleet.admin(&["certs", "revoke", &serial]);
    let refused = client
        .get(url("/device/state"))
        .basic_auth(&device_id, Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

on_both_backends!(
    release_transfer_and_a_new_claim_code,
    release_and_transfer_work_on_postgres,
    ownership_changes
);

async fn ownership_changes(fleet: Fleet) {
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let device = &devices[0];
    let device_id = device["device_id"].as_str().unwrap().to_owned();
    let first = fleet.person("first@example.com", "customer").await;
    let second = fleet.person("second@example.com", "customer").await;
    let technician = fleet.person("tech@example.com", "technician").await;
    assert_eq!(fleet.claim(&first, device).await.0, StatusCode::OK);
    assert_eq!(
        fleet
            .grant(
                &first,
                &device_id,
                "tech@example.com",
                &["read_status"],
                3600
            )
            .await
            .0,
        StatusCode::CREATED
    );

    // A transfer hands the device over and ends the old owner's grants.
    let (status, body) = fleet
        .post(
            &format!("/api/v1/devices/{device_id}/transfer"),
            &first,
            json!({"email": "second@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for (who, token, expected) in [
        ("the old owner", &first, StatusCode::NOT_FOUND),
        (
            "the old owner's technician",
            &technician,
            StatusCode::NOT_FOUND,
        ),
        ("the new owner", &second, StatusCode::OK),
    ] {
        let (status, _) = fleet
            .get(&format!("/api/v1/devices/{device_id}"), token)
            .await;
        assert_eq!(status, expected, "{who}");
    }

    // A release is a factory reset: no owner, empty state, and the old code is used up.
    let (status, _) = fleet
        .call(
            Method::PUT,
            &format!("/api/v1/devices/{device_id}/state/desired"),
            &second,
            Some(json!({"temperature": 60})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = fleet
        .post(
            &format!("/api/v1/devices/{device_id}/release"),
            &second,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        fleet
            .get(&format!("/api/v1/devices/{device_id}"), &second)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(fleet.claim(&first, device).await.0, StatusCode::FORBIDDEN);

    // The maker issues a new code; the next buyer claims with it and finds a clean device.
    let (status, fresh) = fleet
        .post(
            &format!("/api/v1/admin/devices/{device_id}/claim-code"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{fresh}");
    let (status, _) = fleet
        .claim(
            &first,
            &json!({"device_id": device_id, "claim_code": fresh["claim_code"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, state) = fleet
        .get(&format!("/api/v1/devices/{device_id}/state"), &first)
        .await;
    assert_eq!(state["desired"]["settings"], json!({}));
    assert_eq!(state["desired"]["version"], 2);
    let (status, _) = fleet
        .post(
            &format!("/api/v1/admin/devices/{device_id}/claim-code"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A service with authz:check asks about a person's token.
    let gateway_token = fleet.service_token(&["authz:check"]).await;
    let (status, answer) = fleet
        .post(
            "/api/v1/authz/check",
            &gateway_token,
            json!({"access_token": first, "action": "write_settings", "device_id": device_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"allowed": true, "basis": "owner"}));
    let (_, listed) = fleet
        .post(
            "/api/v1/authz/devices",
            &gateway_token,
            json!({"access_token": first, "action": "read_status"}),
        )
        .await;
    assert_eq!(
        listed,
        json!({"all_devices": false, "device_ids": [device_id]})
    );
    let (_, listed) = fleet
        .post(
            "/api/v1/authz/devices",
            &gateway_token,
            json!({"access_token": admin, "action": "read_status"}),
        )
        .await;
    assert_eq!(listed, json!({"all_devices": true}));
    // Without authz:check nobody may ask about someone else's token.
    let (status, _) = fleet
        .post(
            "/api/v1/authz/check",
            &second,
            json!({"access_token": first, "action": "read_status", "device_id": device_id}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_list_accounts_certificates_and_rollouts() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("admin@example.com", "admin").await;
    let customer = fleet.person("customer@example.com", "customer").await;
    let devices = fleet.make_devices(&admin, 2).await;
    let device_id = devices[0]["device_id"].as_str().unwrap();

    let (status, users) = fleet.get("/api/v1/admin/users?limit=1", &admin).await;
    assert_eq!(status, StatusCode::OK, "{users}");
    assert_eq!(users["users"][0]["email"], "admin@example.com");
    assert_eq!(users["users"][0]["role"], "admin");
    assert!(users["users"][0].get("password_hash").is_none());
    let (_, rest) = fleet
        .get("/api/v1/admin/users?after=admin@example.com", &admin)
        .await;
    assert_eq!(rest["users"][0]["email"], "customer@example.com");
    assert_eq!(rest["next_after"], Value::Null);

    let (status, certificates) = fleet
        .get(
            &format!("/api/v1/admin/certificates?device={device_id}"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{certificates}");
    assert_eq!(certificates["certificates"][0]["subject"], device_id);
    assert_eq!(certificates["certificates"][0]["revoked_at"], Value::Null);
    // Device certificates run a year: none within 30 days, both within 400.
    let soon = fleet.get("/api/v1/admin/certificates", &admin).await.1;
    assert!(
        soon["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .all(|certificate| certificate["kind"] != "device"),
        "{soon}"
    );
    let year = fleet
        .get(
            "/api/v1/admin/certificates?expiring_within_days=400",
            &admin,
        )
        .await
        .1;
    let device_certificates = year["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|certificate| certificate["kind"] == "device")
        .count();
    assert_eq!(device_certificates, 2, "{year}");
    let (status, _) = fleet
        .get(
            &format!("/api/v1/admin/certificates?device={device_id}&expiring_within_days=5"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, rollouts) = fleet.get("/api/v1/admin/rollouts", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rollouts["rollouts"], serde_json::json!([]));

    for path in [
        "/api/v1/admin/users",
        "/api/v1/admin/certificates",
        "/api/v1/admin/rollouts",
    ] {
        assert_eq!(
            fleet.get(path, &customer).await.0,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
}
