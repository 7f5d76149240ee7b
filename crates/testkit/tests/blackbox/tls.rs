//! The HTTPS edge as an independent TLS client (the `openssl` program) sees it.

use tokio::process::Command;

use testkit::TestApp;

/// Runs `openssl s_client` against the app with `args`; returns (handshake succeeded, output).
async fn s_client(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &app.warden.addresses.https.to_string(),
            "-servername",
            "localhost",
        ])
        .args(["-CAfile", app.warden.tls_files.ca_cert.to_str().unwrap()])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("the openssl program is needed (Debian package openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn modern_aead_suites_are_accepted_and_the_chain_verifies() {
    let app = TestApp::spawn().await;
    let cases: &[(&[&str], &str)] = &[
        (&["-tls1_3"], "TLSv1.3"),
        (
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"],
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
        (
            &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"],
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
    ];
    for (args, expected) in cases {
        let (ok, output) = s_client(&app, args).await;
        assert!(ok, "{args:?} should connect:\n{output}");
        assert!(
            output.contains(expected),
            "{args:?}: expected {expected}:\n{output}"
        );
        assert!(
            output.contains("Verify return code: 0 (ok)"),
            "{args:?}: chain must verify:\n{output}"
        );
    }
}

#[tokio::test]
async fn tls_1_1_and_1_0_are_refused_by_the_server() {
    let app = TestApp::spawn().await;
    for version in ["-tls1_1", "-tls1"] {
        // SECLEVEL=0 makes OpenSSL 3 willing to offer the old version, so the refusal seen is the
        // server's: it answers the ClientHello with an alert.
        let (ok, output) = s_client(&app, &[version, "-cipher", "DEFAULT@SECLEVEL=0"]).await;
        assert!(!ok, "{version} must be refused:\n{output}");
        assert!(
            output.contains("SSL alert number"),
            "{version}: expected an alert from the server:\n{output}"
        );
    }
}

#[tokio::test]
async fn cbc_and_non_ecdhe_suites_are_refused_by_the_server() {
    let app = TestApp::spawn().await;
    for suite in [
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA384",
        "AES128-GCM-SHA256",
        "AES128-SHA",
    ] {
        let (ok, output) = s_client(
            &app,
            &["-tls1_2", "-cipher", &format!("{suite}@SECLEVEL=0")],
        )
        .await;
        assert!(!ok, "{suite} must be refused:\n{output}");
        assert!(
            output.contains("SSL alert number"),
            "{suite}: expected an alert from the server:\n{output}"
        );
    }
}

/// The leaf certificate the HTTPS listener presents, in PEM, as `openssl s_client` saw it.
async fn served_leaf(app: &TestApp) -> String {
    let (_, output) = s_client(app, &["-showcerts"]).await;
    let start = output.find("-----BEGIN CERTIFICATE-----").unwrap();
    let end = output[start..].find("-----END CERTIFICATE-----").unwrap() + start + 25;
    output[start..end].to_owned()
}

#[tokio::test]
async fn the_server_certificate_is_renewed_before_it_expires_without_a_restart() {
    let app = TestApp::spawn_with(|config| config.tls.renewal_check_seconds = 1).await;
    let first = served_leaf(&app).await;
    let files = &app.warden.tls_files;
    assert!(
        std::fs::read_to_string(&files.server_cert)
            .unwrap()
            .starts_with(&first)
    );

    // 370 days on, the 397-day certificate is within its last 30 days.
    app.clock
        .advance(std::time::Duration::from_secs(370 * 86_400));
    let started = std::time::Instant::now();
    let renewed = loop {
        let served = served_leaf(&app).await;
        if served != first {
            break served;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "still the old certificate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        std::fs::read_to_string(&files.server_cert)
            .unwrap()
            .starts_with(&renewed)
    );
    let in_inventory = app
        .warden
        .store
        .certificates()
        .by_subject("localhost")
        .await
        .unwrap();
    assert_eq!(
        in_inventory.len(),
        2,
        "both server certificates are recorded"
    );
}
