//! The CA through `warden admin ca|certs` and the public `/pki/…` endpoints, with OpenSSL as the
//! independent judge of what Warden issues and revokes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use model::Clock;
use pki::CaRole;
use testkit::{TestApp, warden_command};

fn admin(app: &TestApp, args: &[&str]) -> Output {
    let mut full = vec!["admin"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--data-dir", app.data_dir.path().to_str().unwrap()]);
    warden_command(&full).output().unwrap()
}

pub(crate) fn admin_ok(app: &TestApp, args: &[&str]) -> String {
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

/// A self-signed P-256 certificate for `common_name` from no CA of Warden's, made by openssl in
/// `dir`: the certificate's and the key's paths.
pub(crate) fn self_signed(dir: &Path, common_name: &str) -> (PathBuf, PathBuf) {
    let (certificate, key) = (dir.join("self.pem"), dir.join("self.key"));
    let subject = format!("/CN={common_name}");
    let made = openssl(&[
        "req",
        "-x509",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-subj",
        &subject,
        "-days",
        "30",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        certificate.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{made:?}");
    (certificate, key)
}

/// `openssl x509 -in CERTIFICATE -noout ARGS`.
fn x509_run(certificate: &Path, args: &[&str]) -> Output {
    let mut all = vec!["x509", "-in", certificate.to_str().unwrap(), "-noout"];
    all.extend_from_slice(args);
    openssl(&all)
}

/// What `openssl x509 -in CERTIFICATE -noout ARGS` prints.
fn x509(certificate: &Path, args: &[&str]) -> String {
    String::from_utf8(x509_run(certificate, args).stdout).unwrap()
}

/// Whether OpenSSL finds `certificate` still valid `seconds` from now.
fn valid_for(certificate: &Path, seconds: u64) -> bool {
    x509_run(certificate, &["-checkend", &seconds.to_string()])
        .status
        .success()
}

/// `openssl verify -CAfile CA_FILE OPTIONS CERTIFICATE`.
fn verify(ca_file: &Path, options: &[&str], certificate: &Path) -> Output {
    let mut args = vec!["verify", "-CAfile", ca_file.to_str().unwrap()];
    args.extend_from_slice(options);
    args.push(certificate.to_str().unwrap());
    openssl(&args)
}

fn assert_verifies(ca_file: &Path, options: &[&str], certificate: &Path) {
    let verified = verify(ca_file, options, certificate);
    assert!(
        verified.status.success(),
        "{options:?}: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
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
    assert_verifies(
        &dir.path().join("chain.pem"),
        &["-purpose", "sslclient"],
        &cert_path,
    );
    let serial = x509(&cert_path, &["-serial"])
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

    // An operator renews the washer's certificate from a new request: both are listed.
    let renewal = device_request(dir.path(), "washer-renewal", "/CN=washer-1");
    let renewed = admin_ok(
        &app,
        &[
            "certs",
            "renew",
            &serial,
            "--csr",
            renewal.to_str().unwrap(),
        ],
    );
    assert!(renewed.starts_with("-----BEGIN CERTIFICATE-----"));
    let washer = admin_ok(&app, &["certs", "list", "--device", "washer-1"]);
    assert_eq!(washer.lines().count(), 3, "{washer}");
    let foreign_renewal = admin(
        &app,
        &[
            "certs",
            "renew",
            &serial,
            "--csr",
            foreign.to_str().unwrap(),
        ],
    );
    assert_eq!(foreign_renewal.status.code(), Some(2));

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
    let refused = verify(
        &dir.path().join("chain.pem"),
        &["-crl_check", "-CRLfile", crl_path.to_str().unwrap()],
        &cert_path,
    );
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
    assert_verifies(&export, &[], &intermediate_path);
}

/// An HTTPS client for the device listener, presenting `identity_pem` (certificate chain and key)
/// when given.
pub(crate) fn device_client(app: &TestApp, identity_pem: Option<&[u8]>) -> reqwest::Client {
    let ca = std::fs::read(&app.warden.tls_files.ca_cert).unwrap();
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", app.warden.addresses.device.unwrap())
        .timeout(std::time::Duration::from_secs(30));
    if let Some(pem) = identity_pem {
        builder = builder.identity(reqwest::Identity::from_pem(pem).unwrap());
    }
    builder.build().unwrap()
}

async fn renew(
    app: &TestApp,
    client: &reqwest::Client,
    csr: &Path,
) -> reqwest::Result<reqwest::Response> {
    let port = app.warden.addresses.device.unwrap().port();
    client
        .post(format!("https://localhost:{port}/certificate/renew"))
        .body(std::fs::read(csr).unwrap())
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_renews_over_mutual_tls_in_its_window_and_bad_certificates_are_refused() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let factory = dir.path().join("factory");
    admin_ok(
        &app,
        &[
            "certs",
            "issue",
            "--device",
            "washer-3",
            "--bundle",
            factory.to_str().unwrap(),
        ],
    );
    let mut identity = std::fs::read(factory.join("washer-3.crt")).unwrap();
    identity.extend(std::fs::read(factory.join("washer-3.key")).unwrap());
    let device = device_client(&app, Some(&identity));
    let csr = device_request(dir.path(), "renewal", "/CN=washer-3");

    let early = renew(&app, &device, &csr).await.unwrap();
    assert_eq!(early.status(), 409);
    let body = early.text().await.unwrap();
    assert!(body.contains("too early to renew"), "{body}");

    // 340 days later the 30-day window is open.
    app.clock
        .advance(std::time::Duration::from_secs(340 * 86_400));
    let renewed = renew(&app, &device, &csr).await.unwrap();
    assert_eq!(renewed.status(), 201);
    let chain = renewed.text().await.unwrap();
    std::fs::write(dir.path().join("renewed.pem"), &chain).unwrap();
    std::fs::write(
        dir.path().join("chain.pem"),
        app.get("/pki/ca.pem").await.text().await.unwrap(),
    )
    .unwrap();
    // OpenSSL judges at the test clock's time, 340 days ahead, when the new certificate starts.
    let at = (app.clock.now().unix_millis() / 1000 + 60).to_string();
    assert_verifies(
        &dir.path().join("chain.pem"),
        &["-attime", &at],
        &dir.path().join("renewed.pem"),
    );
    let listed = admin_ok(&app, &["certs", "list", "--device", "washer-3"]);
    assert_eq!(
        listed.lines().count(),
        3,
        "the header, the old and the new: {listed}"
    );

    // A request naming another device is refused with its reason.
    let foreign = device_request(dir.path(), "foreign", "/CN=dryer-1");
    let refused = renew(&app, &device, &foreign).await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("for device washer-3")
    );

    // A revoked certificate renews nothing.
    admin_ok(
        &app,
        &[
            "certs",
            "revoke",
            "--device",
            "washer-3",
            "--reason",
            "key-compromise",
        ],
    );
    let revoked = renew(&app, &device, &csr).await.unwrap();
    assert_eq!(revoked.status(), 403);
    assert!(
        revoked
            .text()
            .await
            .unwrap()
            .contains("revoked (key-compromise)")
    );

    // The handshake itself refuses: no certificate, an expired one, one from another CA.
    assert!(renew(&app, &device_client(&app, None), &csr).await.is_err());
    let key = server::ca::encryption_key(&app.settings.pki, app.data_dir.path()).unwrap();
    let authority = server::ca::load(&app.warden.store, &key)
        .await
        .unwrap()
        .unwrap();
    let long_ago = model::Timestamp::from_unix_millis(
        model::Timestamp::from_system_time(std::time::SystemTime::now()).unix_millis()
            - 3 * 86_400_000,
    );
    let expired = authority
        .issue_device_bundle(
            &model::DeviceId::parse("washer-3").unwrap(),
            std::time::Duration::from_secs(86_400),
            long_ago,
        )
        .unwrap();
    let expired_identity = format!(
        "{}{}{}",
        expired.certificate.certificate_pem,
        authority.intermediate_pem(),
        expired.private_key_pem
    );
    let expired_client = device_client(&app, Some(expired_identity.as_bytes()));
    assert!(renew(&app, &expired_client, &csr).await.is_err());
    let (foreign_cert, foreign_key) = self_signed(dir.path(), "washer-3");
    let mut foreign_identity = std::fs::read(&foreign_cert).unwrap();
    foreign_identity.extend(std::fs::read(&foreign_key).unwrap());
    assert!(
        renew(&app, &device_client(&app, Some(&foreign_identity)), &csr)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_expiring_soon_are_counted_in_the_metrics() {
    use pki::{CertificateKind, IssuedCertificate, RevocationReason};

    // Two servers one after the other on one database, sharing its key-encryption key.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("warden.db").display());
    let key = pki::KeyEncryptionKey::generate_hex();
    let spawn = || {
        let (url, key) = (url.clone(), key.clone());
        TestApp::spawn_with(move |config| {
            config.database.url = url;
            config.pki.encryption_key = key;
        })
    };
    let first = spawn().await;
    let now = first.clock.now();
    let days = |n: u64| now.plus(std::time::Duration::from_secs(n * 86_400));
    let certificates = first.warden.store.certificates();
    for (serial, expires) in [("0a", days(10)), ("0b", days(100)), ("0c", days(3))] {
        certificates
            .insert(&IssuedCertificate {
                serial: serial.into(),
                kind: CertificateKind::Device,
                subject: "washer-4".into(),
                not_before: now,
                not_after: expires,
                certificate_pem: String::new(),
            })
            .await
            .unwrap();
    }
    certificates
        .revoke("0c", RevocationReason::Superseded, now)
        .await
        .unwrap();
    first.stop().await;

    // A server started on that database counts at once, then every minute.
    let app = spawn().await;
    let started = std::time::Instant::now();
    loop {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        if metrics.contains("warden_pki_certificates_expiring{within_days=\"30\"} 1")
            && metrics.contains("warden_pki_certificates_expiring{within_days=\"7\"} 0")
        {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_requests_is_issued_whole_or_not_at_all() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let requests = dir.path().join("requests");
    std::fs::create_dir(&requests).unwrap();
    for device in ["fridge-1", "fridge-2"] {
        let made = device_request(dir.path(), device, &format!("/CN={device}"));
        std::fs::rename(made, requests.join(format!("{device}.csr"))).unwrap();
    }
    // One request names the wrong device: nothing is issued, and the refusal says which and why.
    let wrong = device_request(dir.path(), "wrong", "/CN=fridge-1");
    std::fs::rename(wrong, requests.join("fridge-3.csr")).unwrap();
    let out = dir.path().join("out");
    let refused = admin(
        &app,
        &[
            "certs",
            "issue-batch",
            "--csr-dir",
            requests.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("nothing issued") && message.contains("fridge-3.csr"),
        "{message}"
    );
    assert!(
        admin_ok(&app, &["certs", "list", "--device", "fridge-1"])
            .lines()
            .count()
            == 1
    );
    assert!(!out.exists());

    std::fs::remove_file(requests.join("fridge-3.csr")).unwrap();
    admin_ok(
        &app,
        &[
            "certs",
            "issue-batch",
            "--csr-dir",
            requests.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    for device in ["fridge-1", "fridge-2"] {
        let issued = out.join(format!("{device}.crt"));
        assert_verifies(
            &out.join("ca.pem"),
            &["-untrusted", issued.to_str().unwrap()],
            &issued,
        );
        assert!(admin_ok(&app, &["certs", "list", "--device", device]).contains(device));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_running_apart_gets_a_short_lived_certificate_for_mutual_tls() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gateway");
    admin_ok(
        &app,
        &[
            "certs",
            "issue-workload",
            "--part",
            "gateway",
            "--hours",
            "12",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let certificate = out.join("gateway.crt");
    for purpose in ["sslclient", "sslserver"] {
        assert_verifies(
            &out.join("ca.pem"),
            &[
                "-untrusted",
                certificate.to_str().unwrap(),
                "-purpose",
                purpose,
            ],
            &certificate,
        );
    }
    let text = x509(&certificate, &["-text"]);
    assert!(text.contains("URI:urn:warden:part:gateway"), "{text}");
    let dates = x509(&certificate, &["-startdate", "-enddate"]);
    let end_within = |seconds: u64| valid_for(&certificate, seconds);
    assert!(end_within(11 * 3600), "valid for 11 more hours: {dates}");
    assert!(!end_within(13 * 3600), "but not for 13: {dates}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("gateway.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let listed = admin_ok(&app, &["certs", "list", "--expiring-within-days", "1"]);
    assert!(
        listed.contains("workload") && listed.contains("gateway"),
        "{listed}"
    );

    // The part renews over mutual TLS with its current certificate and a key of its own making,
    // any time, for the same lifetime; a request naming another part is refused.
    let mut identity = std::fs::read(&certificate).unwrap();
    identity.extend(std::fs::read(out.join("gateway.key")).unwrap());
    let part = device_client(&app, Some(&identity));
    let foreign = device_request(dir.path(), "identity", "/CN=identity");
    let refused = renew(&app, &part, &foreign).await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("for part gateway"));
    let csr = device_request(dir.path(), "gateway-next", "/CN=gateway");
    let renewed = renew(&app, &part, &csr).await.unwrap();
    assert_eq!(renewed.status(), 201);
    let renewed_path = dir.path().join("gateway-next.pem");
    std::fs::write(&renewed_path, renewed.text().await.unwrap()).unwrap();
    let checkend = |seconds: u64| valid_for(&renewed_path, seconds);
    assert!(
        checkend(11 * 3600) && !checkend(13 * 3600),
        "the same 12 hours again"
    );
    let text = x509(&renewed_path, &["-text"]);
    assert!(
        text.contains("URI:urn:warden:part:gateway")
            && text.contains("TLS Web Server Authentication"),
        "{text}"
    );
    for bad in [
        &["--part", "Gate/way", "--hours", "12"][..],
        &["--part", "gateway", "--hours", "100"],
    ] {
        let mut args = vec!["certs", "issue-workload", "--out", out.to_str().unwrap()];
        args.extend_from_slice(bad);
        assert_eq!(admin(&app, &args).status.code(), Some(2), "{bad:?}");
    }
}

/// Publishes `request` on the device's certificate request topic and returns the answer on its
/// certificate topic.
async fn ask_over_mqtt(
    client: &rumqttc::AsyncClient,
    events: &mut rumqttc::EventLoop,
    device_id: &str,
    request: String,
) -> serde_json::Value {
    client
        .publish(
            format!("devices/{device_id}/certificate/request"),
            rumqttc::QoS::AtLeastOnce,
            false,
            request,
        )
        .await
        .unwrap();
    let answers = format!("devices/{device_id}/certificate");
    crate::mqtt::next(events, |packet| match packet {
        rumqttc::Packet::Publish(message) if message.topic == answers => {
            serde_json::from_slice(&message.payload).ok()
        }
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_renews_over_mqtt_in_its_window() {
    let fleet = crate::devices::Fleet::new().await;
    let admin = fleet.person("admin@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let device_id = crate::mqtt::id(&devices[0]).to_owned();
    let (client, mut events) = crate::mqtt::connect_device(&fleet, &devices[0]).await;
    let answers = format!("devices/{device_id}/certificate");
    assert_eq!(
        crate::mqtt::subscribe(&client, &mut events, &[&answers]).await,
        [true]
    );
    let dir = tempfile::tempdir().unwrap();
    let csr = device_request(dir.path(), "mqtt", &format!("/CN={device_id}"));
    let csr_pem = std::fs::read_to_string(&csr).unwrap();
    let request = |id: &str| serde_json::json!({"request_id": id, "csr": csr_pem}).to_string();

    let early = ask_over_mqtt(&client, &mut events, &device_id, request("r1")).await;
    assert_eq!(early["request_id"], "r1");
    assert!(
        early["error"]
            .as_str()
            .unwrap()
            .contains("too early to renew"),
        "{early}"
    );

    // 340 days later the 30-day window is open.
    fleet
        .app
        .clock
        .advance(std::time::Duration::from_secs(340 * 86_400));
    let renewed = ask_over_mqtt(&client, &mut events, &device_id, request("r2")).await;
    assert_eq!(renewed["request_id"], "r2");
    let chain = renewed["chain"]
        .as_str()
        .unwrap_or_else(|| panic!("{renewed}"));
    std::fs::write(dir.path().join("renewed.pem"), chain).unwrap();
    std::fs::write(
        dir.path().join("ca.pem"),
        fleet.app.get("/pki/ca.pem").await.text().await.unwrap(),
    )
    .unwrap();
    // OpenSSL judges at the test clock's time, 340 days ahead, when the new certificate starts.
    let at = (fleet.app.clock.now().unix_millis() / 1000 + 60).to_string();
    assert_verifies(
        &dir.path().join("ca.pem"),
        &["-attime", &at, "-purpose", "sslclient"],
        &dir.path().join("renewed.pem"),
    );
    assert!(
        x509(&dir.path().join("renewed.pem"), &["-subject"]).contains(&device_id),
        "the new certificate names the device"
    );

    // A device that lost the answer asks again, the CSR alone as the payload, and gets one.
    let again = ask_over_mqtt(&client, &mut events, &device_id, csr_pem.clone()).await;
    assert!(again["chain"].is_string(), "{again}");
    // A request for another device's name, or without a CSR, is refused with the reason.
    let other = device_request(dir.path(), "other", "/CN=someone-else");
    let foreign = ask_over_mqtt(
        &client,
        &mut events,
        &device_id,
        serde_json::json!({"request_id": "r3", "csr": std::fs::read_to_string(other).unwrap()})
            .to_string(),
    )
    .await;
    assert_eq!(foreign["request_id"], "r3");
    assert!(foreign["error"].is_string(), "{foreign}");
    let empty = ask_over_mqtt(
        &client,
        &mut events,
        &device_id,
        r#"{"request_id":"r4"}"#.into(),
    )
    .await;
    assert_eq!(empty["error"], "the request has no csr");

    // Each renewal is in the inventory and the audit journal, by the device. (The admin's token
    // ran out with the 340 days; the operator's commands read the same.)
    let listed = fleet.admin(&["certs", "list", "--device", &device_id]);
    assert_eq!(
        listed
            .lines()
            .filter(|line| line.contains(&device_id))
            .count(),
        3,
        "{listed}"
    );
    let exported = warden_command(&[
        "audit",
        "export",
        "--action",
        "certificate.renew",
        "--data-dir",
        fleet.app.data_dir.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let renewals: Vec<serde_json::Value> = String::from_utf8(exported.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(renewals.len(), 2, "{renewals:?}");
    assert!(
        renewals
            .iter()
            .all(|entry| entry["actor"]["id"] == device_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_certificate_is_renewed_by_the_agent_when_due() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("broker");
    admin_ok(
        &app,
        &[
            "certs",
            "issue-workload",
            "--part",
            "broker",
            "--hours",
            "1",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let certificate = out.join("broker.crt");
    let key = out.join("broker.key");
    let first_serial = x509(&certificate, &["-serial"]);
    let first_key = std::fs::read_to_string(&key).unwrap();
    let server = format!(
        "https://localhost:{}",
        app.warden.addresses.device.unwrap().port()
    );
    let renew = |extra: &[&str]| {
        let mut args = vec![
            "workload",
            "renew",
            "--dir",
            out.to_str().unwrap(),
            "--part",
            "broker",
            "--server",
            &server,
            "--once",
        ];
        args.extend_from_slice(extra);
        let ran = warden_command(&args).output().unwrap();
        assert!(
            ran.status.success(),
            "{}",
            String::from_utf8_lossy(&ran.stderr)
        );
        String::from_utf8(ran.stdout).unwrap()
    };

    // An hour's certificate is due after 40 minutes: not now.
    let early = renew(&[]);
    assert!(early.starts_with("not due"), "{early}");
    assert_eq!(x509(&certificate, &["-serial"]), first_serial);

    // Renewing two hours before the end is due at once: a new key and certificate, which verify
    // and which the next renewal authenticates with.
    for _ in 0..2 {
        let renewed = renew(&["--renew-before", "7200"]);
        assert!(renewed.starts_with("renewed"), "{renewed}");
    }
    assert_ne!(x509(&certificate, &["-serial"]), first_serial);
    assert_ne!(std::fs::read_to_string(&key).unwrap(), first_key);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(x509(&certificate, &["-subject"]).contains("broker"));
    assert_verifies(
        &out.join("ca.pem"),
        &["-untrusted", certificate.to_str().unwrap()],
        &certificate,
    );
    assert!(valid_for(&certificate, 3000), "the same hour again");
    let listed = admin_ok(&app, &["certs", "list", "--expiring-within-days", "1"]);
    assert_eq!(
        listed
            .lines()
            .filter(|line| line.contains("broker"))
            .count(),
        3,
        "{listed}"
    );
}
