//! End-entity certificates: one per device, from its request or, for factories that cannot make
//! keys on the device, with a key made here and handed over once.

use std::net::IpAddr;
use std::time::Duration;

use model::{DeviceId, Timestamp};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber, SubjectPublicKeyInfo,
};

use crate::authority::{Authority, BACKDATE, PkiError};
use crate::csr::{CheckedCsr, Requester};
use crate::time::to_offset;

/// What a certificate is for; kept in the inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificateKind {
    /// A device's client certificate.
    Device,
    /// A Warden listener's server certificate.
    Server,
    /// A short-lived certificate for a part of Warden that runs apart, for mutual TLS both ways.
    Workload,
}

impl CertificateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Server => "server",
            Self::Workload => "workload",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Device, Self::Server, Self::Workload]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// A certificate Warden signed, with what the inventory records of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// Lower-case hex, as `openssl x509 -serial` prints it (there in upper case).
    pub serial: String,
    pub kind: CertificateKind,
    /// The device id.
    pub subject: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub certificate_pem: String,
}

/// A certificate with the private key made for it. The key is shown once and never stored.
pub struct Bundle {
    pub certificate: IssuedCertificate,
    pub private_key_pem: String,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

/// The name of a part of Warden that runs apart (`gateway`, `identity`, …): 1 to 32 lower-case
/// letters, digits and `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a part name is 1 to 32 lower-case letters, digits and '-': {0:?}")]
pub struct BadPartName(pub String);

impl PartName {
    pub fn parse(text: &str) -> Result<Self, BadPartName> {
        let valid = !text.is_empty()
            && text.len() <= 32
            && !text.starts_with('-')
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(BadPartName(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URI alternative name that names the part in its certificate.
    pub fn uri(&self) -> String {
        format!("urn:warden:part:{}", self.0)
    }
}

/// The URI alternative name that names a device in its certificate.
pub fn device_uri(device: &DeviceId) -> String {
    format!("urn:warden:device:{device}")
}

/// 127 random bits: unpredictable (RFC 5280 asks for at least 64 bits of entropy from public CAs)
/// and, with the top bit clear, a positive integer of at most 16 bytes.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    // A leading zero byte would be dropped in DER and make the serial print differently.
    bytes[0] |= 0x01;
    SerialNumber::from(bytes.to_vec())
}

impl Authority {
    /// A client certificate for the device that sent `request`.
    pub fn issue_device(
        &self,
        request: &CheckedCsr,
        validity: Duration,
        now: Timestamp,
    ) -> Result<IssuedCertificate, PkiError> {
        let Requester::Device(device) = &request.requester else {
            return Err(PkiError::WrongRequester);
        };
        let public_key = SubjectPublicKeyInfo::from_der(&request.public_key_der)?;
        self.sign(&device_leaf(device)?, &public_key, validity, now)
    }

    /// A client certificate for `device` with a new key, for factories that cannot make keys on
    /// the device.
    pub fn issue_device_bundle(
        &self,
        device: &DeviceId,
        validity: Duration,
        now: Timestamp,
    ) -> Result<Bundle, PkiError> {
        self.bundle(&device_leaf(device)?, validity, now)
    }

    /// A server certificate with a new key for a Warden listener reached by `names` (DNS names
    /// or IP addresses; the first is the subject's common name).
    pub fn issue_server(
        &self,
        names: &[String],
        validity: Duration,
        now: Timestamp,
    ) -> Result<Bundle, PkiError> {
        let subject = names.first().cloned().unwrap_or_else(|| "localhost".into());
        let alternative_names = names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(name.clone().try_into()?)),
            })
            .collect::<Result<Vec<_>, rcgen::Error>>()?;
        let leaf = Leaf {
            kind: CertificateKind::Server,
            subject,
            alternative_names,
            usages: vec![ExtendedKeyUsagePurpose::ServerAuth],
        };
        self.bundle(&leaf, validity, now)
    }

    /// A short-lived certificate with a new key for `part` (for example `gateway`), naming it as
    /// `urn:warden:part:{part}` so that the callee can check which part calls, and usable as both
    /// client and server certificate.
    pub fn issue_workload(
        &self,
        part: &PartName,
        validity: Duration,
        now: Timestamp,
    ) -> Result<Bundle, PkiError> {
        self.bundle(&workload_leaf(part)?, validity, now)
    }

    /// A workload certificate for the part that sent `request` (its renewal: the part keeps its
    /// new key).
    pub fn issue_workload_from(
        &self,
        request: &CheckedCsr,
        validity: Duration,
        now: Timestamp,
    ) -> Result<IssuedCertificate, PkiError> {
        let Requester::Part(part) = &request.requester else {
            return Err(PkiError::WrongRequester);
        };
        let public_key = SubjectPublicKeyInfo::from_der(&request.public_key_der)?;
        self.sign(&workload_leaf(part)?, &public_key, validity, now)
    }

    fn bundle(&self, leaf: &Leaf, validity: Duration, now: Timestamp) -> Result<Bundle, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let certificate = self.sign(leaf, &key, validity, now)?;
        Ok(Bundle {
            certificate,
            private_key_pem: key.serialize_pem(),
        })
    }

    fn sign(
        &self,
        leaf: &Leaf,
        public_key: &impl rcgen::PublicKeyData,
        validity: Duration,
        now: Timestamp,
    ) -> Result<IssuedCertificate, PkiError> {
        let serial = random_serial();
        let not_before = Timestamp::from_unix_millis(
            now.unix_millis() - i64::try_from(BACKDATE.as_millis()).unwrap_or(0),
        );
        let not_after = now.plus(validity);
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, leaf.subject.as_str());
        params.distinguished_name = name;
        params.subject_alt_names = leaf.alternative_names.clone();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = leaf.usages.clone();
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial.clone());
        params.not_before = to_offset(not_before)?;
        params.not_after = to_offset(not_after)?;
        let certificate = params.signed_by(public_key, &self.issuer)?;
        let whole_seconds =
            |at: Timestamp| Timestamp::from_unix_millis(at.unix_millis().div_euclid(1000) * 1000);
        Ok(IssuedCertificate {
            serial: hex::encode(serial.as_ref()),
            kind: leaf.kind,
            subject: leaf.subject.clone(),
            // Whole seconds, as the certificate carries them.
            not_before: whole_seconds(not_before),
            not_after: whole_seconds(not_after),
            certificate_pem: certificate.pem(),
        })
    }
}

/// What distinguishes one kind of end-entity certificate from another.
struct Leaf {
    kind: CertificateKind,
    subject: String,
    alternative_names: Vec<SanType>,
    usages: Vec<ExtendedKeyUsagePurpose>,
}

fn workload_leaf(part: &PartName) -> Result<Leaf, PkiError> {
    Ok(Leaf {
        kind: CertificateKind::Workload,
        subject: part.as_str().to_owned(),
        alternative_names: vec![SanType::URI(part.uri().try_into()?)],
        usages: vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ],
    })
}

fn device_leaf(device: &DeviceId) -> Result<Leaf, PkiError> {
    Ok(Leaf {
        kind: CertificateKind::Device,
        subject: device.to_string(),
        alternative_names: vec![SanType::URI(device_uri(device).try_into()?)],
        usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
    })
}

/// A new P-256 key and a certificate request for `requester` (its common name and URI), as a
/// device or a part that renews makes them: `(private key PEM, CSR PEM)`.
pub fn new_request(requester: &Requester) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, requester.common_name());
    params.distinguished_name = name;
    params.subject_alt_names = vec![SanType::URI(requester.uri().try_into()?)];
    let request = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), request.pem()?))
}

/// When a certificate (PEM, the first one of a chain) starts and stops being valid.
pub fn validity_of(pem: &str) -> Option<(Timestamp, Timestamp)> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let certificate = block.parse_x509().ok()?;
    let validity = certificate.validity();
    Some((
        Timestamp::from_unix_millis(validity.not_before.timestamp() * 1000),
        Timestamp::from_unix_millis(validity.not_after.timestamp() * 1000),
    ))
}

/// The serial (hex, as the inventory keeps it) of a certificate a client presented; the
/// inventory says the rest.
pub fn serial_of(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(hex::encode(certificate.raw_serial()))
}
