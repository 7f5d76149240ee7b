//! Warden's own certificate authority, as pure functions over keys and certificates: a root CA
//! that can be kept offline, an intermediate that issues, the checks a device's certificate signing
//! request must pass, the certificates it gets, and revocation lists.
//!
//! Nothing here stores anything or reads files: `store` keeps the inventory and the sealed CA keys,
//! `server` and `cli` decide when to issue. Keys are ECDSA P-256 throughout, the curve every TLS
//! stack and every device-side crypto library supports.

mod authority;
mod crl;
mod csr;
mod issue;
mod sealed;
mod time;

pub use authority::{Authority, CaCertificate, CaRole, PkiError, create_root, issue_intermediate};
pub use crl::{RevocationReason, RevokedCertificate, UnknownReason, revocation_list};
pub use csr::{CheckedCsr, CsrRejection, Requester};
pub use issue::{
    BadPartName, Bundle, CertificateKind, IssuedCertificate, PartName, device_uri, new_request,
    serial_of, validity_of,
};
pub use sealed::{KeyEncryptionKey, SealError};
