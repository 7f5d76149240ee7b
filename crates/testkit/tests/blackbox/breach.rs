//! The breached-password filter end to end: `warden breach build` on a generated file in
//! HaveIBeenPwned's download format, Warden started with it, sign-up refusing a password in it,
//! and the internal lookup endpoint answering services, and only them, on the mutual-TLS
//! listener (the gateway in front of the public one has no rule for it).

use std::path::Path;

use accounts::breached::sha1_of;
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::{TestApp, warden_command};

const BREACHED_PASSWORD: &str = "correct horse battery staple";
const GOOD_PASSWORD: &str = "a perfectly fine passphrase";

fn hex_upper(sha1: &[u8; 20]) -> String {
    sha1.iter().map(|byte| format!("{byte:02X}")).collect()
}

/// A download-format file: the breached password among a few thousand generated hashes, with a
/// bad line in the middle.
fn download_file(dir: &Path) -> std::path::PathBuf {
    let mut text = String::new();
    for index in 0..5_000 {
        text.push_str(&format!(
            "{}:{}\r\n",
            hex_upper(&sha1_of(&format!("generated password {index}"))),
            index + 1
        ));
        if index == 2_000 {
            text.push_str(&format!(
                "{}:12\r\n",
                hex_upper(&sha1_of(BREACHED_PASSWORD))
            ));
            text.push_str("this is no hash\r\n");
        }
    }
    let path = dir.join("pwned.txt");
    std::fs::write(&path, text).unwrap();
    path
}

fn build_filter(dir: &Path, input: &Path, bad_lines: &str) -> std::process::Output {
    warden_command(&[
        "breach",
        "build",
        "--input",
        input.to_str().unwrap(),
        "--output",
        dir.join("breached.filter").to_str().unwrap(),
        "--bad-lines",
        bad_lines,
    ])
    .output()
    .unwrap()
}

/// `warden admin ARGS` on the app's data directory; its output, once it succeeded.
fn admin(app: &TestApp, args: &[&str]) -> String {
    let mut full = vec!["admin"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--data-dir", app.data_dir.path().to_str().unwrap()]);
    let output = warden_command(&full).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn token(app: &TestApp, scope: &str) -> String {
    let out = admin(
        app,
        &[
            "clients",
            "create",
            "--name",
            "password checker",
            "--scope",
            scope,
        ],
    );
    let field = |name: &str| {
        out.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
            .unwrap()
            .to_owned()
    };
    let response = app
        .client
        .post(app.url("/oauth2/token"))
        .basic_auth(field("client_id:"), Some(field("client_secret:")))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// A part of Warden running apart: a client presenting the `identity` workload certificate to
/// the mutual-TLS listener, and that listener's URL for `path`.
struct Part {
    client: reqwest::Client,
    port: u16,
}

impl Part {
    fn of(app: &TestApp) -> Self {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join("identity");
        admin(
            app,
            &[
                "certs",
                "issue-workload",
                "--part",
                "identity",
                "--out",
                dir.to_str().unwrap(),
            ],
        );
        let mut identity = std::fs::read(dir.join("identity.crt")).unwrap();
        identity.extend(std::fs::read(dir.join("identity.key")).unwrap());
        Self {
            client: crate::pki::device_client(app, Some(&identity)),
            port: app.warden.addresses.device.unwrap().port(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }
}

async fn lookup(part: &Part, sha1: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut request = part
        .client
        .get(part.url(&format!("/internal/breached/{sha1}")));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_filter_refuses_its_passwords_at_sign_up_and_answers_services() {
    let dir = tempfile::tempdir().unwrap();
    let input = download_file(dir.path());

    let refused = build_filter(dir.path(), &input, "fail");
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains(&format!("{}:2003:", input.display())),
        "the bad line is named by file and number: {message}"
    );

    let built = build_filter(dir.path(), &input, "skip");
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    assert!(stderr.contains("skipped bad line"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&built.stdout).contains("5001 hashes"),
        "{}",
        String::from_utf8_lossy(&built.stdout)
    );

    let filter = dir.path().join("breached.filter");
    let app = TestApp::spawn_with(|config| {
        config.accounts.breached_filter = filter.to_str().unwrap().to_owned();
    })
    .await;

    let response = app.signup("someone@example.com", BREACHED_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("known data breaches")
    );
    assert_eq!(app.warden.store.users().count().await.unwrap(), 0);
    let response = app.signup("someone@example.com", GOOD_PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    let breached = hex_upper(&sha1_of(BREACHED_PASSWORD));
    let fine = hex_upper(&sha1_of(GOOD_PASSWORD));

    // The public listener's gateway has no rule for internal endpoints.
    let public = app
        .client
        .get(app.url(&format!("/internal/breached/{breached}")))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let part = Part::of(&app);
    let anonymous = lookup(&part, &breached, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let forged = lookup(&part, &breached, Some("not-a-token")).await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let other_scope = token(&app, "devices:read").await;
    assert_eq!(
        lookup(&part, &breached, Some(&other_scope)).await.status(),
        StatusCode::FORBIDDEN
    );

    let service = token(&app, "breach:read").await;
    let answer = lookup(&part, &breached, Some(&service)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<Value>().await.unwrap()["breached"], true);
    let answer = lookup(&part, &breached.to_lowercase(), Some(&service)).await;
    assert_eq!(answer.json::<Value>().await.unwrap()["breached"], true);
    let answer = lookup(&part, &fine, Some(&service)).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<Value>().await.unwrap()["breached"], false);
    for malformed in ["abc", &breached[..39], &format!("{}Z", &breached[..39])] {
        let answer = lookup(&part, malformed, Some(&service)).await;
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{malformed}");
        let body: Value = answer.json().await.unwrap();
        assert!(
            body.to_string().contains("40 hex digits"),
            "{malformed}: {body}"
        );
    }

    // Many at once, answered in order; the same authorization as one at a time.
    let many = |bearer: Option<String>, body: Value| {
        let mut request = part.client.post(part.url("/internal/breached")).json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let list = json!({"sha1": [&breached, &fine, breached.to_lowercase()]});
    let answer = many(None, list.clone()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let answer = many(Some(other_scope), list.clone()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let answer = many(Some(service.clone()), list).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        json!({"breached": [true, false, true]})
    );
    let answer = many(Some(service.clone()), json!({"sha1": [&fine, "abc"]}))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let body: Value = answer.json().await.unwrap();
    assert!(body.to_string().contains("sha1[1]"), "{body}");
    let too_many = vec![fine.clone(); 10_001];
    let answer = many(Some(service), json!({ "sha1": too_many }))
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let body: Value = answer.json().await.unwrap();
    assert!(body.to_string().contains("at most 10000"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn the_built_in_list_answers_the_internal_lookup_too() {
    let app = TestApp::spawn().await;
    let part = Part::of(&app);
    let service = token(&app, "breach:read").await;
    let answer = lookup(&part, &hex_upper(&sha1_of("password123")), Some(&service)).await;
    assert_eq!(answer.json::<Value>().await.unwrap()["breached"], true);
    app.stop().await;
}

#[test]
fn a_damaged_filter_stops_the_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let filter = dir.path().join("breached.filter");
    std::fs::write(&filter, b"WBREACH\x1a but cut short").unwrap();
    let output = warden_command(&[
        "serve",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--device-listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "127.0.0.1:0",
    ])
    .env("WARDEN_ACCOUNTS_BREACHED_FILTER", &filter)
    .output()
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("cannot use the breached-password filter")
            && message.contains("accounts.breached_filter")
            && message.contains("too short"),
        "{message}"
    );
}
