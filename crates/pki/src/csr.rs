//! The checks a PKCS#10 certificate signing request passes before Warden signs its key: the
//! request is signed by the key it carries (proof of possession), asks for no CA powers, names the
//! device (or part of Warden) it is for and nothing else, and carries a key strong enough. Only the public key is taken
//! from a request; everything else in the certificate is Warden's choice.

use model::DeviceId;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::issue::{PartName, device_uri};

/// The smallest RSA modulus accepted, NIST SP 800-131A's floor.
const MIN_RSA_BITS: usize = 2048;

/// Why a request was refused; the message is meant for the person or device that sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrRejection {
    #[error("the request is not a PKCS#10 certificate signing request in PEM or DER")]
    Malformed,
    #[error("the request's signature does not verify with the key it carries")]
    BadSignature,
    #[error("the request asks for a CA certificate; only end-entity certificates are issued")]
    CaRequested,
    #[error("the request names {found}, but it is for {expected}")]
    ForeignName { expected: String, found: String },
    #[error("the request's key is too weak or of an unsupported kind: {0}")]
    WeakKey(String),
}

/// Whom a request is for: the name it must carry as its common name and URI alternative name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requester {
    Device(DeviceId),
    Part(PartName),
}

impl Requester {
    pub(crate) fn common_name(&self) -> &str {
        match self {
            Self::Device(device) => device.as_str(),
            Self::Part(part) => part.as_str(),
        }
    }

    pub(crate) fn uri(&self) -> String {
        match self {
            Self::Device(device) => device_uri(device),
            Self::Part(part) => part.uri(),
        }
    }
}

impl std::fmt::Display for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device(device) => write!(f, "device {device}"),
            Self::Part(part) => write!(f, "part {}", part.as_str()),
        }
    }
}

/// A request that passed every check: the requester's public key, ready to be certified.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    pub(crate) requester: Requester,
    pub(crate) public_key_der: Vec<u8>,
}

impl CheckedCsr {
    /// Checks `input` (PEM or DER) as a request for a certificate for `device`.
    pub fn check(input: &[u8], device: &DeviceId) -> Result<Self, CsrRejection> {
        Self::check_for(input, &Requester::Device(device.clone()))
    }

    /// Checks `input` (PEM or DER) as a request for a certificate for `requester`.
    pub fn check_for(input: &[u8], requester: &Requester) -> Result<Self, CsrRejection> {
        let der = der_of(input)?;
        let (rest, request) =
            X509CertificationRequest::from_der(&der).map_err(|_| CsrRejection::Malformed)?;
        if !rest.is_empty() {
            return Err(CsrRejection::Malformed);
        }
        let info = &request.certification_request_info;
        // The key first: the signature check cannot judge keys too weak to verify with at all.
        check_key(&info.subject_pki)?;
        request
            .verify_signature()
            .map_err(|_| CsrRejection::BadSignature)?;
        check_extensions(&request, requester)?;
        check_subject(&request, requester)?;
        Ok(Self {
            requester: requester.clone(),
            public_key_der: info.subject_pki.raw.to_vec(),
        })
    }

    pub fn requester(&self) -> &Requester {
        &self.requester
    }
}

fn der_of(input: &[u8]) -> Result<Vec<u8>, CsrRejection> {
    let trimmed = input.trim_ascii_start();
    if !trimmed.starts_with(b"-----BEGIN") {
        return Ok(input.to_vec());
    }
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(trimmed).map_err(|_| CsrRejection::Malformed)?;
    if pem.label != "CERTIFICATE REQUEST" && pem.label != "NEW CERTIFICATE REQUEST" {
        return Err(CsrRejection::Malformed);
    }
    Ok(pem.contents)
}

fn check_extensions(
    request: &X509CertificationRequest<'_>,
    requester: &Requester,
) -> Result<(), CsrRejection> {
    let expected_uri = requester.uri();
    for extension in request.requested_extensions().into_iter().flatten() {
        match extension {
            ParsedExtension::BasicConstraints(constraints) if constraints.ca => {
                return Err(CsrRejection::CaRequested);
            }
            ParsedExtension::SubjectAlternativeName(names) => {
                for name in &names.general_names {
                    let named_the_requester =
                        matches!(name, GeneralName::URI(uri) if *uri == expected_uri);
                    if !named_the_requester {
                        return Err(CsrRejection::ForeignName {
                            expected: requester.to_string(),
                            found: format!("the alternative name {name}"),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_subject(
    request: &X509CertificationRequest<'_>,
    requester: &Requester,
) -> Result<(), CsrRejection> {
    let subject = &request.certification_request_info.subject;
    let names: Vec<&str> = subject
        .iter_common_name()
        .map(|name| name.as_str().unwrap_or("(unreadable)"))
        .collect();
    match names.as_slice() {
        [name] if *name == requester.common_name() => Ok(()),
        [] => Err(CsrRejection::ForeignName {
            expected: requester.to_string(),
            found: "no common name".into(),
        }),
        _ => Err(CsrRejection::ForeignName {
            expected: requester.to_string(),
            found: format!("the subject {subject}"),
        }),
    }
}

fn check_key(key: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<(), CsrRejection> {
    let algorithm = &key.algorithm.algorithm;
    if *algorithm == OID_SIG_ED25519 {
        return Ok(());
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = key
            .algorithm
            .parameters
            .as_ref()
            .and_then(|parameters| parameters.as_oid().ok());
        return match curve {
            Some(curve) if curve == OID_EC_P256 || curve == OID_NIST_EC_P384 => Ok(()),
            Some(curve) => Err(CsrRejection::WeakKey(format!(
                "elliptic curve {curve} (P-256 and P-384 are accepted)"
            ))),
            None => Err(CsrRejection::WeakKey(
                "an elliptic curve key without a named curve".into(),
            )),
        };
    }
    if *algorithm == OID_PKCS1_RSAENCRYPTION {
        let bits = match key.parsed() {
            Ok(PublicKey::RSA(rsa)) => rsa.key_size(),
            _ => 0,
        };
        return if bits >= MIN_RSA_BITS {
            Ok(())
        } else {
            Err(CsrRejection::WeakKey(format!(
                "RSA with {bits} bits (at least {MIN_RSA_BITS} are needed)"
            )))
        };
    }
    Err(CsrRejection::WeakKey(format!("key algorithm {algorithm}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::new_request;

    #[test]
    fn a_request_made_for_a_requester_passes_its_check_and_no_other() {
        let part = Requester::Part(PartName::parse("gateway").unwrap());
        let device = Requester::Device(DeviceId::parse("washer-1").unwrap());
        for requester in [&part, &device] {
            let (key, csr) = new_request(requester).unwrap();
            assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
            let checked = CheckedCsr::check_for(csr.as_bytes(), requester).unwrap();
            assert_eq!(checked.requester(), requester);
        }
        let (_, csr) = new_request(&part).unwrap();
        assert!(CheckedCsr::check_for(csr.as_bytes(), &device).is_err());
    }
}
