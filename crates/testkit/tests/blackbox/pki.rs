//! The CA through `warden admin ca|certs` and the public `/pki/…` endpoints, with OpenSSL as the
//! independent judge of what Warden issues and revokes.

use std::path::Path;
use std::process::{Command, Output};

use pki::CaRole;
use testkit::{TestApp, warden_command};

fn admin(app: &TestApp, args: &[&str]) -> Output {
    let mut full = vec!["admin"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--data-dir", app.data_dir.path().to_str().unwrap()]);
    warden_command(&full).output().unwrap()
}

fn admin_ok(app: &TestApp, args: &[&str]) -> String {
    let output = admin(app, args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl").args(args).output().unwrap()
}

/// A device key and request made by OpenSSL.
fn device_request(dir: &Path, name: &str, subject: &str) -> std::path::PathBuf {
    let csr = dir.join(format!("{name}.csr"));
    let made = openssl(&[
        "req",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-subj",
        subject,
        "-keyout",
        dir.join(format!("{name}.key")).to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]);
    assert!(made.status.success());
    csr
}

/// The CRL as served, written to DIR/crl.pem, its signature checked by OpenSSL; OpenSSL's reading.
async fn crl_text(app: &TestApp, dir: &Path) -> String {
    let pem = app.get("/pki/crl.pem").await.text().await.unwrap();
    std::fs::write(dir.join("crl.pem"), pem).unwrap();
    let checked = openssl(&[
        "crl",
        "-in",
        dir.join("crl.pem").to_str().unwrap(),
        "-CAfile",
        dir.join("chain.pem").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    String::from_utf8(checked.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_certificate_verifies_with_openssl_and_its_revocation_reaches_the_crl() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let root_and_intermediate = app.get("/pki/ca.pem").await.text().await.unwrap();
    assert_eq!(
        root_and_intermediate.matches("BEGIN CERTIFICATE").count(),
        2
    );
    std::fs::write(dir.path().join("chain.pem"), &root_and_intermediate).unwrap();

    let csr = device_request(dir.path(), "washer", "/CN=washer-1");
    let issued = admin(
        &app,
        &[
            "certs",
            "issue",
            "--device",
            "washer-1",
            "--csr",
            csr.to_str().unwrap(),
        ],
    );
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let cert_path = dir.path().join("washer.pem");
    std::fs::write(&cert_path, &issued.stdout).unwrap();
    let verified = openssl(&[
        "verify",
        "-CAfile",
        dir.path().join("chain.pem").to_str().unwrap(),
        "-purpose",
        "sslclient",
        cert_path.to_str().unwrap(),
    ]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let serial = String::from_utf8(
        openssl(&[
            "x509",
            "-in",
            cert_path.to_str().unwrap(),
            "-noout",
            "-serial",
        ])
        .stdout,
    )
    .unwrap()
    .trim()
    .trim_start_matches("serial=")
    .to_ascii_lowercase();

    // A request for another device is refused with its reason, and nothing is issued.
    let foreign = device_request(dir.path(), "dryer", "/CN=dryer-9");
    let refused = admin(
        &app,
        &[
            "certs",
            "issue",
            "--device",
            "washer-1",
            "--csr",
            foreign.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("CN=dryer-9, but it is for device washer-1"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // A factory bundle for a second device.
    let bundle_dir = dir.path().join("factory");
    admin_ok(
        &app,
        &[
            "certs",
            "issue",
            "--device",
            "oven-2",
            "--bundle",
            bundle_dir.to_str().unwrap(),
        ],
    );
    let listed = admin_ok(&app, &["certs", "list", "--expiring-within-days", "400"]);
    assert!(
        listed.contains(&serial) && listed.contains("oven-2"),
        "{listed}"
    );
    assert!(
        admin_ok(&app, &["certs", "list", "--expiring-within-days", "30"])
            .lines()
            .count()
            == 1
    );

    // Before the revocation the list names nothing; after it, the washer's certificate.
    let crl_path = dir.path().join("crl.pem");
    let before = crl_text(&app, dir.path()).await;
    assert!(before.contains("No Revoked Certificates"), "{before}");
    assert!(before.contains("Next Update"), "{before}");
    admin_ok(
        &app,
        &["certs", "revoke", &serial, "--reason", "key-compromise"],
    );
    let after = crl_text(&app, dir.path()).await;
    assert!(after.contains(&serial.to_uppercase()), "{after}");
    assert!(after.contains("Key Compromise"), "{after}");
    let refused = openssl(&[
        "verify",
        "-CAfile",
        dir.path().join("chain.pem").to_str().unwrap(),
        "-crl_check",
        "-CRLfile",
        crl_path.to_str().unwrap(),
        cert_path.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    let der = app.get("/pki/crl.der").await;
    assert_eq!(der.headers()["content-type"], "application/pkix-crl");
    assert!(!der.bytes().await.unwrap().is_empty());

    let washer = admin_ok(&app, &["certs", "list", "--device", "washer-1"]);
    assert!(
        washer.contains("revoked") && washer.contains("key-compromise"),
        "{washer}"
    );
    let unknown = admin(&app, &["certs", "revoke", "00ff", "--reason", "superseded"]);
    assert_eq!(unknown.status.code(), Some(2));
    let bad_reason = admin(&app, &["certs", "revoke", &serial, "--reason", "bored"]);
    assert_eq!(bad_reason.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_key_is_sealed_can_go_offline_and_come_back_to_reissue_the_intermediate() {
    let app = TestApp::spawn().await;
    let certificates = app.warden.store.certificates();
    for role in [CaRole::Root, CaRole::Intermediate] {
        let stored = certificates.ca(role).await.unwrap().unwrap();
        let sealed = stored.sealed_key.unwrap();
        assert!(sealed.starts_with("warden-sealed-v1:"), "{sealed}");
        assert!(!sealed.contains("PRIVATE KEY"));
    }
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("root.pem");
    admin_ok(
        &app,
        &["ca", "export-root", "--out", export.to_str().unwrap()],
    );
    let exported = std::fs::read_to_string(&export).unwrap();
    assert!(exported.contains("BEGIN CERTIFICATE") && exported.contains("BEGIN PRIVATE KEY"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&export).unwrap().permissions().mode() & 0o777,
        0o600
    );

    assert_eq!(
        admin(&app, &["ca", "remove-root-key"]).status.code(),
        Some(2),
        "needs --exported"
    );
    admin_ok(&app, &["ca", "remove-root-key", "--exported"]);
    assert_eq!(
        certificates
            .ca(CaRole::Root)
            .await
            .unwrap()
            .unwrap()
            .sealed_key,
        None
    );
    let offline = admin(&app, &["ca", "reissue-intermediate"]);
    assert!(!offline.status.success());
    assert!(String::from_utf8_lossy(&offline.stderr).contains("import-root-key"));

    // A key that is not the root's is refused; the root's own is taken back.
    let other = dir.path().join("other.pem");
    assert!(
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            other.to_str().unwrap()
        ])
        .status
        .success()
    );
    assert_eq!(
        admin(
            &app,
            &["ca", "import-root-key", "--file", other.to_str().unwrap()]
        )
        .status
        .code(),
        Some(2)
    );
    admin_ok(
        &app,
        &["ca", "import-root-key", "--file", export.to_str().unwrap()],
    );
    let old_intermediate = certificates
        .ca(CaRole::Intermediate)
        .await
        .unwrap()
        .unwrap()
        .certificate_pem;
    admin_ok(&app, &["ca", "reissue-intermediate"]);
    let chain = admin_ok(&app, &["ca", "show"]);
    assert!(!chain.contains(&old_intermediate), "a new intermediate");
    let chain_path = dir.path().join("chain.pem");
    std::fs::write(&chain_path, &chain).unwrap();
    let intermediate_path = dir.path().join("intermediate.pem");
    let intermediate_only = &chain[..chain.find("-----END CERTIFICATE-----").unwrap() + 25];
    std::fs::write(&intermediate_path, intermediate_only).unwrap();
    let verified = openssl(&[
        "verify",
        "-CAfile",
        export.to_str().unwrap(),
        intermediate_path.to_str().unwrap(),
    ]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}
