//! The command-line client as a person uses it, run as a subprocess against a running Warden:
//! `warden login` through the browser flow (the test plays the browser with the person's login
//! session), then devices, settings, commands, events, grants and the access log, each checked
//! in its table and in its `--json` output, with the exit codes scripts rely on.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use rumqttc::QoS;
use serde_json::Value;
use testkit::warden_command;

use crate::devices::Fleet;
use crate::mqtt::{connect_device, id, next};
use crate::oidc::PASSWORD;

/// One person's command line: a configuration directory of its own.
pub(crate) struct Person {
    config: tempfile::TempDir,
    server: String,
    ca_file: PathBuf,
}

/// What a command did.
pub(crate) struct Ran {
    code: i32,
    pub(crate) stdout: String,
    stderr: String,
}

impl Ran {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.stdout))
    }
}

impl Person {
    fn new(fleet: &Fleet) -> Self {
        Self::of(
            fleet.app.base_url.clone(),
            fleet.app.warden.tls_files.ca_cert.clone(),
        )
    }

    /// A person of the Warden at `server`, whose certificate chains to `ca_file`.
    pub(crate) fn of(server: String, ca_file: PathBuf) -> Self {
        Self {
            config: tempfile::tempdir().unwrap(),
            server,
            ca_file,
        }
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut command = warden_command(args);
        command.env("XDG_CONFIG_HOME", self.config.path());
        command
    }

    pub(crate) fn run(&self, args: &[&str]) -> Ran {
        let output = self.command(args).output().unwrap();
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed; returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let ran = self.run(args);
        assert_eq!(ran.code, 0, "{args:?}: {}{}", ran.stdout, ran.stderr);
        ran.stdout
    }

    fn credentials(&self) -> PathBuf {
        self.config.path().join("warden").join("credentials.json")
    }

    /// `warden login` as `email`, with the test as the browser: logged in to the in-process
    /// Warden's pages, it opens the address the client prints.
    async fn login(&self, fleet: &Fleet, email: &str) -> String {
        fleet.app.logout().await;
        let logged_in = fleet.app.login(email, PASSWORD, "/account").await;
        assert_eq!(logged_in.status(), StatusCode::SEE_OTHER);
        self.login_in(&fleet.app.client).await
    }

    /// `warden login`, with `browser` (which holds a login session) opening the address the
    /// client prints and following the redirect to the client's port.
    pub(crate) async fn login_in(&self, browser: &reqwest::Client) -> String {
        let mut child = self
            .command(&[
                "login",
                "--no-browser",
                "--server",
                &self.server,
                "--ca-file",
                self.ca_file.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let address = address_printed(&mut child);
        let authorized = browser.get(&address).send().await.unwrap();
        assert_eq!(authorized.status(), StatusCode::SEE_OTHER);
        let redirect = authorized.headers()["location"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            redirect.starts_with("http://127.0.0.1:"),
            "first-party: no consent page, straight back to the client: {redirect}"
        );
        let page = reqwest::get(&redirect).await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}");
        stdout
    }
}

/// Reads the client's standard error until the address to open.
fn address_printed(child: &mut Child) -> String {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines
            .next()
            .expect("the client printed no address")
            .unwrap();
        if let Some(address) = line.trim().strip_prefix("https://") {
            return format!("https://{address}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_and_manages_a_device_from_the_command_line() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("admin@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 2).await;
    fleet.person("owner@example.com", "customer").await;
    fleet.person("tech@example.com", "technician").await;
    let washer = id(&devices[0]).to_owned();
    let code = devices[0]["claim_code"].as_str().unwrap().to_owned();

    let owner = Person::new(&fleet);
    // Nothing works before a login, with the exit code that says so.
    let before = owner.run(&["devices", "list"]);
    assert_eq!(before.code, 3, "{}", before.stderr);
    assert!(before.stderr.contains("warden login"), "{}", before.stderr);

    let said = owner.login(&fleet, "owner@example.com").await;
    assert!(said.contains("as owner@example.com"), "{said}");
    let mode = std::fs::metadata(owner.credentials())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Claim, then list and show, as a table and as JSON.
    assert_eq!(owner.ok(&["devices", "list"]).trim(), "(none)");
    let wrong = owner.run(&["devices", "claim", &washer, "AAAA-BBBB-CCCC"]);
    assert_ne!(wrong.code, 0);
    assert!(wrong.code == 2 || wrong.code == 4, "{}", wrong.stderr);
    assert!(
        owner
            .ok(&["devices", "claim", &washer, &code])
            .contains(&format!("Claimed {washer}"))
    );
    let table = owner.ok(&["devices", "list"]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("DEVICE"), "{table}");
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&washer) && row.contains("washer-w500"),
        "{table}"
    );
    let listed = owner.run(&["devices", "list", "--json"]).json();
    assert_eq!(listed["devices"][0]["device_id"], washer.as_str());
    let shown = owner.run(&["devices", "show", &washer, "--json"]).json();
    assert_eq!(shown["access"], "owner");
    let detail = owner.ok(&["devices", "show", &washer]);
    assert!(
        detail
            .lines()
            .any(|line| line.starts_with("access ") && line.ends_with(" owner")),
        "{detail}"
    );
    assert_eq!(owner.run(&["devices", "show", id(&devices[1])]).code, 4);
    assert_eq!(owner.run(&["devices", "show", "../admin"]).code, 2);

    // Settings: a change keeps the others; the table shows what the device has not applied.
    let set = owner.ok(&[
        "devices",
        "settings",
        "set",
        &washer,
        "temperature=40",
        "mode=eco",
    ]);
    assert!(set.contains("version 1"), "{set}");
    owner.ok(&["devices", "settings", "set", &washer, "temperature=30"]);
    let state = owner
        .run(&["devices", "settings", "get", &washer, "--json"])
        .json();
    assert_eq!(state["desired"]["settings"]["temperature"], 30);
    assert_eq!(state["desired"]["settings"]["mode"], "eco");
    let settings = owner.ok(&["devices", "settings", "get", &washer]);
    assert!(
        settings.lines().any(|line| line.starts_with("temperature")
            && line.contains("30")
            && line.ends_with("pending")),
        "{settings}"
    );
    assert_eq!(
        owner
            .run(&["devices", "settings", "set", &washer, "oops"])
            .code,
        2
    );

    // Events: listed, then followed as the device sends them.
    let mut follower = owner
        .command(&["devices", "events", &washer, "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let followed = follower.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(followed).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    // The stream is open once the listed part (none yet) is out; give it a moment to connect.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (device, mut device_events) = connect_device(&fleet, &devices[0]).await;
    device
        .publish(
            format!("devices/{washer}/events"),
            QoS::AtLeastOnce,
            false,
            r#"{"kind":"door","open":true}"#,
        )
        .await
        .unwrap();
    next(&mut device_events, |packet| {
        matches!(packet, rumqttc::Packet::PubAck(_)).then_some(())
    })
    .await;
    let mut seen = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.is_none() && std::time::Instant::now() < deadline {
        if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
            let event: Value = serde_json::from_str(&line).unwrap();
            if event["topic"]
                .as_str()
                .is_some_and(|topic| topic.ends_with("/events"))
            {
                seen = Some(event);
            }
        }
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
    let seen = seen.expect("the followed stream never showed the event");
    assert_eq!(seen["payload"]["kind"], "door");
    let listed = owner
        .run(&["devices", "events", &washer, "--topic", "events", "--json"])
        .json();
    assert_eq!(listed["events"][0]["payload"]["open"], true);
    let table = owner.ok(&["devices", "events", &washer, "--topic", "events"]);
    assert!(table.contains(r#"{"kind":"door","open":true}"#), "{table}");

    // A command the device does not answer in time is reported as waiting.
    let sent = owner.run(&[
        "devices", "command", &washer, "reboot", "--wait", "0", "--json",
    ]);
    assert_eq!(sent.code, 0, "{}", sent.stderr);
    assert_eq!(sent.json()["status"], "pending");

    // Grants: create, list, revoke, and the technician's view in between.
    let granted = owner
        .run(&[
            "grants",
            "create",
            &washer,
            "tech@example.com",
            "--scopes",
            "read_status,read_events",
            "--expires-in",
            "2h",
            "--json",
        ])
        .json();
    let grant_id = granted["grant_id"].as_str().unwrap().to_owned();
    let technician = Person::new(&fleet);
    technician.login(&fleet, "tech@example.com").await;
    let theirs = technician.run(&["devices", "list", "--json"]).json();
    assert_eq!(theirs["devices"][0]["device_id"], washer.as_str());
    assert_eq!(
        technician
            .run(&["devices", "settings", "set", &washer, "mode=turbo"])
            .code,
        4,
        "read-only grant"
    );
    technician.ok(&["devices", "settings", "get", &washer]);
    let grants = owner.ok(&["grants", "list", &washer]);
    assert!(
        grants.lines().any(|line| line.starts_with(&grant_id)
            && line.contains("tech@example.com")
            && line.ends_with("active")),
        "{grants}"
    );
    assert!(
        owner
            .ok(&["grants", "revoke", &washer, &grant_id])
            .contains("Revoked")
    );
    assert!(owner.ok(&["grants", "list", &washer]).contains("revoked"));
    assert_eq!(technician.run(&["devices", "show", &washer]).code, 4);
    assert_eq!(
        owner
            .run(&[
                "grants",
                "create",
                &washer,
                "tech@example.com",
                "--scopes",
                "read_status",
                "--expires-in",
                "200d"
            ])
            .code,
        2
    );

    // The owner's access log names the technician's reads.
    let log = owner
        .run(&["audit", "log", "--device", &washer, "--json"])
        .json();
    let entries = log["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|entry| entry["actor"]["email"] == "tech@example.com"),
        "{log}"
    );
    let table = owner.ok(&["audit", "log", "--device", &washer]);
    assert!(table.starts_with("AT"), "{table}");
    assert!(table.contains("tech@example.com"), "{table}");
    // The whole journal is for administrators only.
    assert_eq!(owner.run(&["audit", "log"]).code, 4);

    // An access token that ran out is refreshed on the next command, and kept.
    let path = owner.credentials();
    let mut stored: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let old_token = stored["access_token"].clone();
    stored["expires_at"] = 0.into();
    std::fs::write(&path, stored.to_string()).unwrap();
    owner.ok(&["devices", "list"]);
    let refreshed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_ne!(refreshed["access_token"], old_token);
    assert!(refreshed["expires_at"].as_u64().unwrap() > 0);

    // Release needs saying so; a transfer hands the device over.
    assert_eq!(owner.run(&["devices", "release", &washer]).code, 2);
    assert!(
        owner
            .ok(&["devices", "transfer", &washer, "tech@example.com"])
            .contains("Transferred")
    );
    assert_eq!(owner.run(&["devices", "show", &washer]).code, 4);
    let now_theirs = technician
        .run(&["devices", "show", &washer, "--json"])
        .json();
    assert_eq!(now_theirs["access"], "owner");
    assert!(
        technician
            .ok(&["devices", "release", &washer, "--yes"])
            .contains("Released")
    );

    // Logging out revokes the refresh token and forgets the login.
    assert!(owner.ok(&["logout"]).contains("Logged out"));
    assert!(!owner.credentials().exists());
    assert_eq!(owner.run(&["devices", "list"]).code, 3);
}
