//! `warden serve --demo` as a newcomer runs it: the demo customer logs in (with the password the
//! demo wrote down) and finds three washers online, sending events; the technician sees the one
//! granted to them; a second start finds the same demo.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use testkit::WardenProcess;

use crate::cli_client::Person;
use crate::simulator::eventually;

/// A browser of the Warden at `https`, logged in to its pages as `email`.
async fn logged_in_browser(
    https: std::net::SocketAddr,
    ca: &std::path::Path,
    email: &str,
    password: &str,
) -> reqwest::Client {
    let browser = testkit::browser(ca, https);
    let base = format!("https://localhost:{}", https.port());
    let answer = testkit::log_in(&browser, &base, email, password, "/account").await;
    assert_eq!(
        answer.status(),
        StatusCode::SEE_OTHER,
        "{email} could not log in"
    );
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_a_customer_three_washers_sending_events() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = WardenProcess::serve(&data, &["--demo"]);
    let demo: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo/demo.json")).unwrap())
            .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("demo/demo.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the demo passwords are the owner's only"
    );
    let ca = data.join("tls/ca.crt");
    let server_url = format!("https://localhost:{}", server.https.port());

    let customer = Person::of(server_url.clone(), ca.clone());
    let browser = logged_in_browser(
        server.https,
        &ca,
        demo["customer"]["email"].as_str().unwrap(),
        demo["customer"]["password"].as_str().unwrap(),
    )
    .await;
    customer.login_in(&browser).await;
    let online = eventually(20, async || {
        let listed = customer.run(&["devices", "list", "--json"]).json();
        let devices = listed["devices"].as_array()?.clone();
        (devices.len() == 3 && devices.iter().all(|device| device["online"] == true))
            .then_some(devices)
    })
    .await
    .unwrap_or_else(|| panic!("{}", customer.run(&["devices", "list"]).stdout));
    let washer = online[0]["device_id"].as_str().unwrap().to_owned();
    let sending = eventually(30, async || {
        let events = customer
            .run(&["devices", "events", &washer, "--topic", "events", "--json"])
            .json();
        (!events["events"].as_array()?.is_empty()).then_some(())
    })
    .await;
    assert!(sending.is_some(), "the demo washer sent no event");

    let technician = Person::of(server_url, ca.clone());
    let browser = logged_in_browser(
        server.https,
        &ca,
        demo["technician"]["email"].as_str().unwrap(),
        demo["technician"]["password"].as_str().unwrap(),
    )
    .await;
    technician.login_in(&browser).await;
    let granted = technician.run(&["devices", "list", "--json"]).json();
    assert_eq!(granted["devices"].as_array().unwrap().len(), 1, "{granted}");

    // A second start finds the same demo: the same accounts, no more devices.
    assert_eq!(
        server
            .signal_and_wait("TERM", Duration::from_secs(20))
            .map(|status| status.success()),
        Some(true)
    );
    let mut again = WardenProcess::serve(&data, &["--demo"]);
    let same: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("demo/demo.json")).unwrap())
            .unwrap();
    assert_eq!(same, demo);
    let count = std::fs::read_dir(data.join("demo/devices"))
        .unwrap()
        .count();
    assert_eq!(count, 3);
    assert_eq!(
        again
            .signal_and_wait("TERM", Duration::from_secs(20))
            .map(|status| status.success()),
        Some(true)
    );
}
