//! The CA checked by an independent implementation: OpenSSL's command line makes the devices' keys
//! and requests, and verifies what Warden issues (chains, extensions, revocation lists).

// Test code: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use model::{DeviceId, Timestamp};
use pki::{
    Authority, CheckedCsr, CsrRejection, RevocationReason, RevokedCertificate, create_root,
    issue_intermediate, revocation_list,
};

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (scripts/test installs it)")
}

fn openssl_ok(args: &[&str]) -> String {
    let output = openssl(args);
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

struct Ca {
    authority: Authority,
    dir: tempfile::TempDir,
}

impl Ca {
    fn new() -> Self {
        let root = create_root(now()).unwrap();
        let intermediate = issue_intermediate(&root, now()).unwrap();
        let authority = Authority::new(&root.certificate_pem, &intermediate).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("root.pem"), authority.root_pem()).unwrap();
        std::fs::write(
            dir.path().join("intermediate.pem"),
            authority.intermediate_pem(),
        )
        .unwrap();
        Self { authority, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A key and request made by OpenSSL, as a device would; `extra` adds `req` arguments.
    fn request(&self, name: &str, subject: &str, key: &[&str], extra: &[&str]) -> Vec<u8> {
        let key_path = self.path(&format!("{name}.key"));
        let csr_path = self.path(&format!("{name}.csr"));
        let mut args = vec!["req", "-new", "-nodes", "-subj", subject];
        args.extend_from_slice(key);
        args.extend_from_slice(&[
            "-keyout",
            key_path.to_str().unwrap(),
            "-out",
            csr_path.to_str().unwrap(),
        ]);
        args.extend_from_slice(extra);
        openssl_ok(&args);
        std::fs::read(csr_path).unwrap()
    }

    fn verify(&self, certificate: &Path, extra: &[&str]) -> std::process::Output {
        let root = self.path("root.pem");
        let intermediate = self.path("intermediate.pem");
        let mut args = vec![
            "verify",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            intermediate.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(certificate.to_str().unwrap());
        openssl(&args)
    }
}

const P256: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn now() -> Timestamp {
    Timestamp::from_unix_millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
    )
}

#[test]
fn a_certificate_from_a_device_request_verifies_with_openssl_and_names_the_device() {
    let ca = Ca::new();
    let device = DeviceId::parse("washer-0042").unwrap();
    let csr = ca.request("device", "/CN=washer-0042", &P256, &[]);
    let checked = CheckedCsr::check(&csr, &device).unwrap();
    let issued = ca.authority.issue_device(&checked, YEAR, now()).unwrap();
    let cert_path = ca.path("device.pem");
    std::fs::write(&cert_path, &issued.certificate_pem).unwrap();

    let verified = ca.verify(&cert_path, &["-purpose", "sslclient"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let text = openssl_ok(&[
        "x509",
        "-in",
        cert_path.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(text.contains("Subject: CN = washer-0042"), "{text}");
    assert!(text.contains("URI:urn:warden:device:washer-0042"), "{text}");
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    let serial = openssl_ok(&[
        "x509",
        "-in",
        cert_path.to_str().unwrap(),
        "-noout",
        "-serial",
    ]);
    assert_eq!(
        serial.trim(),
        format!("serial={}", issued.serial.to_uppercase())
    );
    let days = (issued.not_after.unix_millis() - issued.not_before.unix_millis()) / 86_400_000;
    assert_eq!(days, 365, "a year, plus the few minutes of back-dating");

    // The public key in the certificate is the device's own.
    let from_cert = openssl_ok(&[
        "x509",
        "-in",
        cert_path.to_str().unwrap(),
        "-noout",
        "-pubkey",
    ]);
    let from_key = openssl_ok(&[
        "pkey",
        "-in",
        ca.path("device.key").to_str().unwrap(),
        "-pubout",
    ]);
    assert_eq!(from_cert, from_key);
}

#[test]
fn a_factory_bundle_carries_a_key_that_matches_its_certificate() {
    let ca = Ca::new();
    let device = DeviceId::parse("oven-7").unwrap();
    let bundle = ca
        .authority
        .issue_device_bundle(&device, YEAR, now())
        .unwrap();
    std::fs::write(ca.path("oven.pem"), &bundle.certificate.certificate_pem).unwrap();
    std::fs::write(ca.path("oven.key"), &bundle.private_key_pem).unwrap();
    assert!(ca.verify(&ca.path("oven.pem"), &[]).status.success());
    let from_cert = openssl_ok(&[
        "x509",
        "-in",
        ca.path("oven.pem").to_str().unwrap(),
        "-noout",
        "-pubkey",
    ]);
    let from_key = openssl_ok(&[
        "pkey",
        "-in",
        ca.path("oven.key").to_str().unwrap(),
        "-pubout",
    ]);
    assert_eq!(from_cert, from_key);
    let other = ca
        .authority
        .issue_device_bundle(&device, YEAR, now())
        .unwrap();
    assert_ne!(
        other.certificate.serial, bundle.certificate.serial,
        "serials are random"
    );
}

#[test]
fn bad_requests_are_refused_with_their_reason() {
    let ca = Ca::new();
    let device = DeviceId::parse("washer-0042").unwrap();

    let ca_flag = ca.request(
        "ca",
        "/CN=washer-0042",
        &P256,
        &["-addext", "basicConstraints=critical,CA:TRUE"],
    );
    assert_eq!(
        CheckedCsr::check(&ca_flag, &device).unwrap_err(),
        CsrRejection::CaRequested
    );

    let foreign_cn = ca.request("cn", "/CN=dryer-1", &P256, &[]);
    assert!(matches!(
        CheckedCsr::check(&foreign_cn, &device).unwrap_err(),
        CsrRejection::ForeignName { .. }
    ));
    let foreign_san = ca.request(
        "san",
        "/CN=washer-0042",
        &P256,
        &["-addext", "subjectAltName=URI:urn:warden:device:dryer-1"],
    );
    assert!(matches!(
        CheckedCsr::check(&foreign_san, &device).unwrap_err(),
        CsrRejection::ForeignName { .. }
    ));
    let dns_san = ca.request(
        "dns",
        "/CN=washer-0042",
        &P256,
        &["-addext", "subjectAltName=DNS:bank.example"],
    );
    assert!(matches!(
        CheckedCsr::check(&dns_san, &device).unwrap_err(),
        CsrRejection::ForeignName { .. }
    ));
    let own_san = ca.request(
        "own",
        "/CN=washer-0042",
        &P256,
        &[
            "-addext",
            "subjectAltName=URI:urn:warden:device:washer-0042",
        ],
    );
    assert!(CheckedCsr::check(&own_san, &device).is_ok());

    let rsa_1024 = ca.request("rsa1024", "/CN=washer-0042", &["-newkey", "rsa:1024"], &[]);
    let rejection = CheckedCsr::check(&rsa_1024, &device).unwrap_err();
    assert_eq!(
        rejection,
        CsrRejection::WeakKey("RSA with 1024 bits (at least 2048 are needed)".into())
    );
    let rsa_2048 = ca.request("rsa2048", "/CN=washer-0042", &["-newkey", "rsa:2048"], &[]);
    assert!(CheckedCsr::check(&rsa_2048, &device).is_ok());
    let k256 = ca.request(
        "k256",
        "/CN=washer-0042",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
        &[],
    );
    assert!(matches!(
        CheckedCsr::check(&k256, &device).unwrap_err(),
        CsrRejection::WeakKey(_)
    ));

    // A request whose signature does not match its content: one byte of the signed part changed.
    let good = ca.request("good", "/CN=washer-0042", &P256, &["-outform", "DER"]);
    assert!(CheckedCsr::check(&good, &device).is_ok());
    let mut tampered = good.clone();
    let position = tampered
        .windows(b"washer-0042".len())
        .position(|window| window == b"washer-0042")
        .unwrap();
    tampered[position] = b'W';
    assert_eq!(
        CheckedCsr::check(&tampered, &DeviceId::parse("washer-0042").unwrap()).unwrap_err(),
        CsrRejection::BadSignature
    );

    assert_eq!(
        CheckedCsr::check(b"not a request", &device).unwrap_err(),
        CsrRejection::Malformed
    );
    assert_eq!(
        CheckedCsr::check(
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            &device
        )
        .unwrap_err(),
        CsrRejection::Malformed
    );
}

#[test]
fn a_revoked_certificate_is_in_the_signed_revocation_list() {
    let ca = Ca::new();
    let device = DeviceId::parse("washer-0042").unwrap();
    let issued = ca
        .authority
        .issue_device_bundle(&device, YEAR, now())
        .unwrap()
        .certificate;
    let kept = ca
        .authority
        .issue_device_bundle(&device, YEAR, now())
        .unwrap()
        .certificate;
    std::fs::write(ca.path("revoked.pem"), &issued.certificate_pem).unwrap();
    std::fs::write(ca.path("kept.pem"), &kept.certificate_pem).unwrap();
    let this_update = now();
    let (der, pem) = revocation_list(
        &ca.authority,
        &[RevokedCertificate {
            serial: issued.serial.clone(),
            revoked_at: this_update,
            reason: RevocationReason::KeyCompromise,
        }],
        7,
        this_update,
        this_update.plus(Duration::from_secs(24 * 3600)),
    )
    .unwrap();
    std::fs::write(ca.path("crl.pem"), &pem).unwrap();
    std::fs::write(ca.path("crl.der"), &der).unwrap();

    // OpenSSL checks the list's signature against the issuing CA and reads it.
    let text = openssl_ok(&[
        "crl",
        "-in",
        ca.path("crl.der").to_str().unwrap(),
        "-inform",
        "DER",
        "-CAfile",
        ca.path("intermediate.pem").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(text.contains(&issued.serial.to_uppercase()), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains("Next Update"), "{text}");
    assert!(
        text.contains("X509v3 CRL Number: \n                7"),
        "{text}"
    );

    // With the list, OpenSSL refuses the revoked certificate and still accepts the other.
    let crl_path = ca.path("crl.pem");
    let crl_args = ["-crl_check", "-CRLfile", crl_path.to_str().unwrap()];
    let revoked = ca.verify(&ca.path("revoked.pem"), &crl_args);
    assert!(!revoked.status.success());
    assert!(
        String::from_utf8_lossy(&revoked.stdout).contains("certificate revoked")
            || String::from_utf8_lossy(&revoked.stderr).contains("certificate revoked")
    );
    assert!(ca.verify(&ca.path("kept.pem"), &crl_args).status.success());
}

#[test]
fn a_root_key_taken_offline_comes_back_only_onto_its_own_certificate() {
    let root = create_root(now()).unwrap();
    let exported = root.key_pem().unwrap();
    assert!(exported.starts_with("-----BEGIN PRIVATE KEY-----"));
    let back =
        pki::CaCertificate::with_key_pem(pki::CaRole::Root, &root.certificate_pem, &exported)
            .unwrap();
    assert_eq!(back.key_pkcs8, root.key_pkcs8);
    // The restored root can sign a new intermediate.
    assert!(issue_intermediate(&back, now()).is_ok());
    let other = create_root(now()).unwrap();
    assert!(
        pki::CaCertificate::with_key_pem(
            pki::CaRole::Root,
            &root.certificate_pem,
            &other.key_pem().unwrap()
        )
        .is_err()
    );
}
