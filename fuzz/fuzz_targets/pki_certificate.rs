//! Certificates and keys Warden reads: the serial of the certificate a device presents on the
//! mutual-TLS listener (`pki::serial_of`, DER), the validity of a PEM certificate
//! (`pki::validity_of`: served and workload certificates), a CA certificate brought back with its
//! key from offline storage (`pki::CaCertificate::with_key_pem`), and the key-encryption key of
//! `pki.encryption_key` with the sealed CA keys it opens (`pki::KeyEncryptionKey`).
//!
//! Input: `D` then DER bytes; or text in parts separated by lines `---`: a PEM certificate, a PEM
//! private key, a key-encryption key, a sealed value.
//!
//! Properties: nothing panics; `serial_of` of a PEM certificate's DER is the lower-case hex that
//! the inventory keeps; a CA certificate accepted with its key is accepted again with the key as
//! `key_pem` writes it; a value sealed under an accepted key-encryption key opens to itself
//! under the same purpose and not under another.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pki::{CaCertificate, CaRole, KeyEncryptionKey};
use warden_fuzz::check;

fuzz_target!(|data: &[u8]| {
    if let Some(der) = data.strip_prefix(b"D") {
        serial(der);
        return;
    }
    let Some(text) = warden_fuzz::text(data) else {
        return;
    };
    let parts = warden_fuzz::parts(text);
    let certificate = parts[0];
    let _ = pki::validity_of(certificate);
    if let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(certificate.as_bytes()) {
        serial(&pem.contents);
    }

    if let Some(key) = parts.get(1) {
        for role in [CaRole::Root, CaRole::Intermediate] {
            let Ok(ca) = CaCertificate::with_key_pem(role, certificate, key) else {
                continue;
            };
            match ca.key_pem() {
                Ok(key_pem) => check!(
                    "ca-key-roundtrip",
                    CaCertificate::with_key_pem(role, certificate, &key_pem).is_ok(),
                    "an accepted CA key, written back as {key_pem:?}, is refused"
                ),
                Err(error) => check!(
                    "ca-key-roundtrip",
                    false,
                    "an accepted CA key cannot be written back: {error}"
                ),
            }
        }
    }

    if let Some(encryption_key) = parts.get(2)
        && let Ok(key) = KeyEncryptionKey::parse(encryption_key)
    {
        let sealed_text = parts.get(3).copied().unwrap_or_default();
        let _ = key.open("ca-root", sealed_text);
        let sealed = key.seal("ca-root", sealed_text.as_bytes());
        check!(
            "seal-roundtrip",
            key.open("ca-root", &sealed).as_deref() == Ok(sealed_text.as_bytes()),
            "a sealed value does not open to itself"
        );
        check!(
            "seal-roundtrip",
            key.open("ca-intermediate", &sealed).is_err(),
            "a value sealed for the root opens as the intermediate's"
        );
    }
});

fn serial(der: &[u8]) {
    if let Some(serial) = pki::serial_of(der) {
        check!(
            "serial-hex",
            serial.len() % 2 == 0
                && serial
                    .bytes()
                    .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')),
            "serial_of gave {serial:?}"
        );
    }
}
