//! Certificate signing requests, as Warden checks them before it signs a key: device enrollment
//! and renewal (`pki::CheckedCsr::check`, over HTTPS and on `devices/{id}/certificate/request`)
//! and a part's workload certificate (`CheckedCsr::check_for` with a part).
//!
//! Input: a CSR in PEM or DER, or an MQTT certificate request payload `{"request_id": …, "csr":
//! PEM}`; the CSR is taken out of the payload the way `server`'s MQTT intake does (that code is
//! private, so it is repeated here: see docs/fuzzing.md).
//!
//! Properties: the check never panics; a request passes for at most one requester (a device and a
//! part cannot both be named); and a request that passes is always issued a certificate, which
//! names the requester, certifies exactly the request's public key, and whose serial and validity
//! `pki::serial_of` and `pki::validity_of` read back as issued.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use model::DeviceId;
use pki::{CheckedCsr, PartName, Requester};
use warden_fuzz::{NOW, check};
use x509_parser::prelude::FromDer;

fuzz_target!(|data: &[u8]| {
    let csr = match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(serde_json::Value::Object(request)) => match request.get("csr") {
            Some(serde_json::Value::String(pem)) => pem.as_bytes().to_vec(),
            _ => return,
        },
        _ => data.to_vec(),
    };
    let (Ok(device), Ok(part)) = (DeviceId::parse("washer-1"), PartName::parse("gateway")) else {
        return;
    };
    let as_device = CheckedCsr::check(&csr, &device);
    let as_part = CheckedCsr::check_for(&csr, &Requester::Part(part));
    check!(
        "csr-one-requester",
        !(as_device.is_ok() && as_part.is_ok()),
        "one request passed for a device and for a part"
    );
    let authority = warden_fuzz::authority();
    let validity = Duration::from_secs(365 * 86_400);
    for checked in [as_device, as_part].into_iter().flatten() {
        let issued = match checked.requester() {
            Requester::Device(_) => authority.issue_device(&checked, validity, NOW),
            Requester::Part(_) => authority.issue_workload_from(&checked, validity, NOW),
        };
        let issued = match issued {
            Ok(issued) => issued,
            Err(error) => {
                check!(
                    "csr-issue",
                    false,
                    "a request that passed was not issued: {error}"
                );
                return;
            }
        };
        let expected_name = match checked.requester() {
            Requester::Device(device) => device.as_str().to_owned(),
            Requester::Part(part) => part.as_str().to_owned(),
        };
        check!(
            "csr-issue",
            issued.subject == expected_name,
            "issued for {:?}, requested by {expected_name:?}",
            issued.subject
        );
        let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(issued.certificate_pem.as_bytes())
        else {
            check!("csr-issue", false, "the issued certificate is not PEM");
            return;
        };
        let Ok(certificate) = pem.parse_x509() else {
            check!("csr-issue", false, "the issued certificate does not parse");
            return;
        };
        let request_key = request_public_key(&csr);
        check!(
            "csr-issue",
            request_key.as_deref() == Some(certificate.public_key().raw),
            "the certificate certifies another key than the request's"
        );
        let names: Vec<&str> = certificate
            .subject()
            .iter_common_name()
            .filter_map(|name| name.as_str().ok())
            .collect();
        check!(
            "csr-issue",
            names == [expected_name.as_str()],
            "the certificate names {names:?}"
        );
        check!(
            "csr-issue",
            pki::serial_of(&pem.contents).as_deref() == Some(issued.serial.as_str()),
            "serial_of reads {:?}, issued {}",
            pki::serial_of(&pem.contents),
            issued.serial
        );
        check!(
            "csr-issue",
            pki::validity_of(&issued.certificate_pem)
                == Some((issued.not_before, issued.not_after)),
            "validity_of reads {:?}, issued {:?}",
            pki::validity_of(&issued.certificate_pem),
            (issued.not_before, issued.not_after)
        );
    }
});

/// The DER of the request's public key (its SubjectPublicKeyInfo).
fn request_public_key(input: &[u8]) -> Option<Vec<u8>> {
    let der = if input.trim_ascii_start().starts_with(b"-----BEGIN") {
        x509_parser::pem::parse_x509_pem(input.trim_ascii_start())
            .ok()?
            .1
            .contents
    } else {
        input.to_vec()
    };
    let (_, request) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&der).ok()?;
    Some(request.certification_request_info.subject_pki.raw.to_vec())
}
