//! Certificate revocation lists (RFC 5280 section 5), signed by the issuing CA.

use model::Timestamp;
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};

use crate::authority::{Authority, PkiError};
use crate::time::to_offset;

/// Why a certificate was revoked: the RFC 5280 reason codes that apply to a device or service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown revocation reason {0:?}; one of: unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation, privilege-withdrawn"
)]
pub struct UnknownReason(pub String);

impl RevocationReason {
    const ALL: [Self; 6] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::PrivilegeWithdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "key-compromise",
            Self::AffiliationChanged => "affiliation-changed",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessation-of-operation",
            Self::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    pub fn parse(text: &str) -> Result<Self, UnknownReason> {
        Self::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
            .ok_or_else(|| UnknownReason(text.to_owned()))
    }

    fn code(self) -> rcgen::RevocationReason {
        match self {
            Self::Unspecified => rcgen::RevocationReason::Unspecified,
            Self::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            Self::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            Self::Superseded => rcgen::RevocationReason::Superseded,
            Self::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            Self::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
        }
    }
}

/// One entry of the list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedCertificate {
    /// Hex, as in [`crate::IssuedCertificate::serial`].
    pub serial: String,
    pub revoked_at: Timestamp,
    pub reason: RevocationReason,
}

/// A signed CRL: DER, and the same in PEM.
pub fn revocation_list(
    authority: &Authority,
    revoked: &[RevokedCertificate],
    crl_number: u64,
    this_update: Timestamp,
    next_update: Timestamp,
) -> Result<(Vec<u8>, String), PkiError> {
    let revoked_certs = revoked
        .iter()
        .map(|entry| {
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from(
                    hex::decode(&entry.serial).map_err(|_| PkiError::BadSerial)?,
                ),
                revocation_time: to_offset(entry.revoked_at)?,
                reason_code: Some(entry.reason.code()),
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, PkiError>>()?;
    let params = CertificateRevocationListParams {
        this_update: to_offset(this_update)?,
        next_update: to_offset(next_update)?,
        crl_number: SerialNumber::from(crl_number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let list = params.signed_by(&authority.issuer)?;
    Ok((list.der().to_vec(), list.pem()?))
}
