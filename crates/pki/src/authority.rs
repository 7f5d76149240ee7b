//! The two CA levels: a root that signs only the intermediate (and can then be taken offline), and
//! the intermediate that signs device, server and workload certificates and the revocation list.

use std::time::Duration;

use model::Timestamp;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use crate::time::to_offset;

/// How long the root is valid: long, since replacing it means touching every device's trust store.
const ROOT_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// How long an intermediate is valid; it is re-issued from the root well before.
const INTERMEDIATE_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
/// Certificates start this long before they are made, so that a device whose clock is a little
/// behind does not find a fresh certificate not yet valid.
pub(crate) const BACKDATE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot build or sign the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("the time is outside what a certificate can carry")]
    Time,
    #[error("the stored CA key cannot be used: {0}")]
    BadKey(String),
    #[error("a stored certificate serial is not hex")]
    BadSerial,
    #[error("the request was checked for another kind of certificate")]
    WrongRequester,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaRole {
    Root,
    Intermediate,
}

impl CaRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Intermediate => "intermediate",
        }
    }

    /// The associated data its key is sealed under.
    pub fn seal_purpose(self) -> &'static str {
        match self {
            Self::Root => "ca-root",
            Self::Intermediate => "ca-intermediate",
        }
    }
}

/// A CA certificate and its private key (PKCS#8 DER). The key lives in memory only; at rest it is
/// sealed (see [`crate::KeyEncryptionKey`]).
pub struct CaCertificate {
    pub role: CaRole,
    pub certificate_pem: String,
    pub key_pkcs8: Vec<u8>,
}

impl std::fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaCertificate")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl CaCertificate {
    /// The private key in PEM (PKCS#8), for taking the root offline.
    pub fn key_pem(&self) -> Result<String, PkiError> {
        let key = KeyPair::try_from(self.key_pkcs8.as_slice())
            .map_err(|error| PkiError::BadKey(error.to_string()))?;
        Ok(key.serialize_pem())
    }

    /// A CA certificate with a key brought back from offline storage; refused unless the key is
    /// the certificate's own.
    pub fn with_key_pem(
        role: CaRole,
        certificate_pem: &str,
        key_pem: &str,
    ) -> Result<Self, PkiError> {
        // The file `export-root` writes holds the certificate first; the key is the block after.
        let key_block = key_pem
            .find("-----BEGIN PRIVATE KEY-----")
            .map_or(key_pem, |start| &key_pem[start..]);
        let key =
            KeyPair::from_pem(key_block).map_err(|error| PkiError::BadKey(error.to_string()))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(certificate_pem.as_bytes())
            .map_err(|_| PkiError::BadKey("the CA certificate is not PEM".into()))?;
        let certificate = pem
            .parse_x509()
            .map_err(|_| PkiError::BadKey("the CA certificate cannot be parsed".into()))?;
        if certificate.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::BadKey(format!(
                "the key is not the {} CA's",
                role.as_str()
            )));
        }
        Ok(Self {
            role,
            certificate_pem: certificate_pem.to_owned(),
            key_pkcs8: key.serialize_der(),
        })
    }
}

fn ca_params(
    common_name: &str,
    path_length: u8,
    now: Timestamp,
    validity: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Warden");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_length));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(crate::issue::random_serial());
    params.not_before = to_offset(now)?;
    params.not_after = to_offset(now.plus(validity))?;
    Ok(params)
}

/// A new self-signed root CA with a new key.
pub fn create_root(now: Timestamp) -> Result<CaCertificate, PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let params = ca_params("Warden Root CA", 1, now, ROOT_VALIDITY)?;
    let certificate = params.self_signed(&key)?;
    Ok(CaCertificate {
        role: CaRole::Root,
        certificate_pem: certificate.pem(),
        key_pkcs8: key.serialize_der(),
    })
}

/// A new intermediate CA with a new key, signed by `root`.
pub fn issue_intermediate(root: &CaCertificate, now: Timestamp) -> Result<CaCertificate, PkiError> {
    let root_issuer = issuer(root)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let params = ca_params("Warden Issuing CA", 0, now, INTERMEDIATE_VALIDITY)?;
    let certificate = params.signed_by(&key, &root_issuer)?;
    Ok(CaCertificate {
        role: CaRole::Intermediate,
        certificate_pem: certificate.pem(),
        key_pkcs8: key.serialize_der(),
    })
}

fn issuer(ca: &CaCertificate) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key = KeyPair::try_from(ca.key_pkcs8.as_slice())
        .map_err(|error| PkiError::BadKey(error.to_string()))?;
    Ok(Issuer::from_ca_cert_pem(&ca.certificate_pem, key)?)
}

/// The issuing CA in use: the intermediate's key, and both certificates for the chains it hands out.
pub struct Authority {
    pub(crate) issuer: Issuer<'static, KeyPair>,
    intermediate_pem: String,
    root_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    pub fn new(root_certificate_pem: &str, intermediate: &CaCertificate) -> Result<Self, PkiError> {
        Ok(Self {
            issuer: issuer(intermediate)?,
            intermediate_pem: intermediate.certificate_pem.clone(),
            root_pem: root_certificate_pem.to_owned(),
        })
    }

    /// The root certificate: the trust anchor devices and services are given.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The intermediate certificate, which a leaf's chain needs between it and the root.
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate_pem
    }
}
