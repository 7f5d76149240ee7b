//! The `warden` program's start: configuration mistakes stop it with a clear message, good
//! configuration brings it up on the addresses it reports, and signals stop it cleanly.

use std::process::Output;
use std::time::Duration;

use testkit::{WardenProcess, warden_command};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = warden_command(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_config(dir: &std::path::Path, content: &str) -> String {
    let path = dir.join("warden.toml");
    std::fs::write(&path, content).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn an_unknown_key_stops_the_start_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[http]\nlisten = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n",
    );
    let data = dir.path().join("data");
    let output = run(
        &[
            "serve",
            "--config",
            &config,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("unknown field `listen_adress`"),
        "{message}"
    );
    assert!(
        message.contains("warden.toml") && message.contains("line 3"),
        "{message}"
    );
    assert!(
        !data.exists(),
        "nothing may be created when the configuration is refused"
    );
}

#[test]
fn a_malformed_value_stops_the_start_naming_the_setting_and_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[http]\nlisten = \"localhost:https\"\n");
    let output = run(&["serve", "--config", &config], &[]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("invalid setting `http.listen`"),
        "{message}"
    );
    assert!(message.contains("write IP:PORT"), "{message}");

    let output = run(&["serve"], &[("WARDEN_DATABASE_MAX_CONNECTIONS", "many")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("WARDEN_DATABASE_MAX_CONNECTIONS"),
        "{}",
        stderr(&output)
    );

    let output = run(&["serve"], &[("WARDEN_DATABSE_URL", "sqlite://x.db")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unknown environment variable WARDEN_DATABSE_URL"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn config_check_accepts_a_good_file_and_refuses_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_config(
        dir.path(),
        "data_dir = \"/var/lib/warden\"\n[log]\nformat = \"json\"\n",
    );
    let output = run(&["config", "check", &good], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok"));

    let bad = write_config(dir.path(), "[log]\nformat = \"xml\"\n");
    let output = run(&["config", "check", &bad], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("unknown variant `xml`"),
        "{}",
        stderr(&output)
    );
}

/// The `ENV` settings of `Containerfile`, as `NAME=VALUE` pairs (continuation lines included).
fn container_environment() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Containerfile");
    let text = std::fs::read_to_string(path).unwrap();
    let mut pairs = Vec::new();
    let mut in_env = false;
    for line in text.lines() {
        let rest = match line.strip_prefix("ENV ") {
            Some(rest) => rest,
            None if in_env => line,
            None => continue,
        };
        in_env = rest.trim_end().ends_with('\\');
        for word in rest.split_whitespace().filter(|word| *word != "\\") {
            let (name, value) = word.split_once('=').expect("ENV NAME=VALUE");
            pairs.push((name.to_owned(), value.to_owned()));
        }
    }
    pairs
}

/// The image cannot be built on these machines, so what it configures is checked instead: its
/// environment is configuration that `serve` accepts, and a misspelt name in it would not be.
#[test]
fn the_container_image_s_environment_is_accepted_configuration() {
    let environment = container_environment();
    assert!(
        environment
            .iter()
            .any(|(name, _)| name == "WARDEN_DATA_DIR")
            && environment.len() >= 4,
        "{environment:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let empty = write_config(dir.path(), "");
    let pairs: Vec<(&str, &str)> = environment
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let output = run(&["config", "check", &empty], &pairs);
    assert!(output.status.success(), "{}", stderr(&output));

    let misspelt = [pairs.as_slice(), &[("WARDEN_HTTP_LISTN", "0.0.0.0:8443")]].concat();
    let output = run(&["config", "check", &empty], &misspelt);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
}

#[test]
fn serve_reports_its_addresses_and_exits_0_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let mut warden = WardenProcess::serve(dir.path(), &["--redirect-listen", "127.0.0.1:0"]);
        let addresses: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("addresses.json")).unwrap(),
        )
        .unwrap();
        assert_ne!(warden.https.port(), 0);
        assert!(
            addresses["http_redirect"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
        // An idle keep-alive connection must not hold the shutdown up until the grace period ends.
        let _idle = std::net::TcpStream::connect(warden.https).unwrap();
        let status = warden.signal_and_wait(signal, Duration::from_secs(30));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "SIG{signal}");
    }
}

#[test]
fn first_start_creates_keys_readable_only_by_the_owner_and_the_database() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let warden = WardenProcess::serve(&data, &[]);
    drop(warden);
    let mode = |path: &str| {
        std::fs::metadata(data.join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700);
    assert_eq!(mode("secrets/pki.key"), 0o600);
    assert_eq!(mode("tls/server.key"), 0o600);
    assert!(
        !data.join("tls/ca.key").exists(),
        "the CA's keys live sealed in the database"
    );
    assert!(data.join("tls/ca.crt").exists() && data.join("warden.db").exists());
    // The independent check: openssl accepts the server certificate (with the intermediate that
    // follows it in the file) under the generated root.
    let output = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(data.join("tls/ca.crt"))
        .arg("-untrusted")
        .arg(data.join("tls/server.crt"))
        .arg(data.join("tls/server.crt"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_on_every_line_of_a_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let warden = WardenProcess::serve_with_env(
        &data,
        &[],
        &[("WARDEN_LOG_FORMAT", "json"), ("WARDEN_LOG_LEVEL", "info")],
    );
    let ca = std::fs::read(data.join("tls/ca.crt")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", warden.https)
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{}/nowhere", warden.https.port()))
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let line = loop {
        let logs = warden.logs();
        if let Some(line) = logs
            .lines()
            .find(|line| line.contains(&request_id) && line.contains("\"decision\""))
        {
            break line.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line with {request_id}:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["span"]["request_id"], request_id.as_str(), "{line}");
    // The gateway's access line: no rule matched this path.
    assert_eq!(entry["rule"], "none", "{line}");
    assert_eq!(entry["decision"], "no_rule", "{line}");
    assert_eq!(entry["status"], 404, "{line}");
    assert_eq!(entry["level"], "INFO");
    // Every line is JSON, startup lines included.
    for line in warden.logs().lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
}
