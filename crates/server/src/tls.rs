//! TLS for Warden's listeners: the local CA and server certificate made on first start, and the
//! rustls configuration that allows only TLS 1.2/1.3 with ECDHE and AEAD cipher suites.
//!
//! The CA made here is the single-machine default: its key sits in the data directory with mode
//! 0600. It signs the server certificate and is what a browser or device is told to trust.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::crypto::{CryptoProvider, ring};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

use crate::config::TlsSettings;

/// The CA's lifetime: long, since replacing it means every client must trust a new one.
const CA_VALIDITY: Duration = Duration::days(3650);
/// Browsers refuse server certificates valid for longer than 398 days.
const SERVER_VALIDITY: Duration = Duration::days(397);
/// A server certificate this close to expiry is replaced at start.
const RENEW_BEFORE: Duration = Duration::days(30);

/// Where the TLS files live in the data directory.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TlsFiles {
    pub fn in_data_dir(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        }
    }
}

/// The cipher suites Warden offers: AEAD only (AES-GCM, ChaCha20-Poly1305), ECDHE key exchange
/// for TLS 1.2, and TLS 1.3's own suites.
fn provider() -> CryptoProvider {
    use rustls::crypto::ring::cipher_suite::*;
    CryptoProvider {
        cipher_suites: vec![
            TLS13_AES_256_GCM_SHA384,
            TLS13_AES_128_GCM_SHA256,
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..ring::default_provider()
    }
}

/// Makes the CA and server certificate when missing (or the server certificate when it no longer
/// covers the configured names or is close to expiry), and returns the server's TLS configuration.
pub fn server_config(
    settings: &TlsSettings,
    files: &TlsFiles,
) -> anyhow::Result<Arc<ServerConfig>> {
    config_with(settings, files, None)
}

/// The same, for the device listener: every client must present a certificate that chains to
/// `client_roots_pem` (Warden's own CA) and is within its validity. Revocation is checked per
/// request against the inventory, which is always current, rather than in the handshake.
pub fn device_server_config(
    settings: &TlsSettings,
    files: &TlsFiles,
    client_roots_pem: &str,
) -> anyhow::Result<Arc<ServerConfig>> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(client_roots_pem.as_bytes()) {
        roots
            .add(certificate.context("the CA certificate is not PEM")?)
            .context("the CA certificate cannot be a trust anchor")?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider()))
            .build()
            .context("cannot build the client certificate verifier")?;
    config_with(settings, files, Some(verifier))
}

fn config_with(
    settings: &TlsSettings,
    files: &TlsFiles,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let (cert_path, key_path) = match &settings.provided {
        Some((cert, key)) => (cert.clone(), key.clone()),
        None => {
            ensure_certificates(settings, files)?;
            (files.server_cert.clone(), files.server_key.clone())
        }
    };
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificate chain {}", cert_path.display()))?;
    if chain.is_empty() {
        bail!("{} holds no PEM certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("cannot read the private key {}", key_path.display()))?;
    let builder = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("the TLS protocol versions do not fit the cipher suites")?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "{} and {} do not form a usable pair",
            cert_path.display(),
            key_path.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn ensure_certificates(settings: &TlsSettings, files: &TlsFiles) -> anyhow::Result<()> {
    if let Some(dir) = files.ca_cert.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    if !files.ca_cert.exists() || !files.ca_key.exists() {
        create_ca(files)?;
        // A new CA invalidates whatever server certificate was there.
        issue_server_certificate(settings, files)?;
        return Ok(());
    }
    let current = fs::read(&files.server_cert).ok();
    let fresh = current
        .as_deref()
        .is_some_and(|pem| server_certificate_fits(pem, settings).unwrap_or(false));
    if !fresh || !files.server_key.exists() {
        issue_server_certificate(settings, files)?;
    }
    Ok(())
}

fn create_ca(files: &TlsFiles) -> anyhow::Result<()> {
    let key = KeyPair::generate().context("cannot generate the CA key")?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Warden");
    name.push(DnType::CommonName, "Warden local CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, CA_VALIDITY);
    let cert = params
        .self_signed(&key)
        .context("cannot sign the CA certificate")?;
    write_private(&files.ca_key, &key.serialize_pem())?;
    write_public(&files.ca_cert, &cert.pem())?;
    tracing::info!(path = %files.ca_cert.display(), "created the local certificate authority");
    Ok(())
}

fn issue_server_certificate(settings: &TlsSettings, files: &TlsFiles) -> anyhow::Result<()> {
    let ca_key_pem = fs::read_to_string(&files.ca_key)
        .with_context(|| format!("cannot read the CA key {}", files.ca_key.display()))?;
    let ca_cert_pem = fs::read_to_string(&files.ca_cert)
        .with_context(|| format!("cannot read the CA certificate {}", files.ca_cert.display()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).context("the CA key is not a usable PEM key")?;
    let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)
        .context("the CA certificate is not usable")?;

    let key = KeyPair::generate().context("cannot generate the server key")?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, settings.primary_hostname());
    params.distinguished_name = name;
    params.subject_alt_names = subject_alt_names(settings)?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, SERVER_VALIDITY);
    let cert = params
        .signed_by(&key, &issuer)
        .context("cannot sign the server certificate")?;
    write_private(&files.server_key, &key.serialize_pem())?;
    // The chain the server presents: its certificate, then the CA's.
    write_public(
        &files.server_cert,
        &format!("{}{}", cert.pem(), ca_cert_pem),
    )?;
    tracing::info!(hostnames = ?settings.hostnames, "issued the HTTPS server certificate");
    Ok(())
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = OffsetDateTime::now_utc();
    // An hour of slack for clients whose clocks run behind.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + validity;
    // 127 random bits, top bit clear so that the DER integer is positive.
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

/// The names the server certificate must cover: the configured ones and the loopback names.
fn required_names(settings: &TlsSettings) -> Vec<String> {
    let mut names = settings.hostnames.clone();
    for local in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|name| name == local) {
            names.push(local.to_owned());
        }
    }
    names
}

fn subject_alt_names(settings: &TlsSettings) -> anyhow::Result<Vec<SanType>> {
    required_names(settings)
        .into_iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => {
                Ok(SanType::DnsName(name.clone().try_into().with_context(
                    || format!("{name:?} cannot be a DNS name"),
                )?))
            }
        })
        .collect()
}

/// Whether an existing server certificate still covers every required name and is not about to expire.
fn server_certificate_fits(pem: &[u8], settings: &TlsSettings) -> anyhow::Result<bool> {
    use x509_parser::prelude::*;
    let der = CertificateDer::from_pem_slice(pem).context("not a PEM certificate")?;
    let (_, cert) = X509Certificate::from_der(&der).context("not an X.509 certificate")?;
    let expires = cert.validity().not_after.timestamp();
    if expires - RENEW_BEFORE.whole_seconds() < OffsetDateTime::now_utc().unix_timestamp() {
        return Ok(false);
    }
    let mut present = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => present.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    present.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    Ok(required_names(settings)
        .iter()
        .all(|name| present.contains(name)))
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    write_atomically(path, content, 0o600)
}

fn write_public(path: &Path, content: &str) -> anyhow::Result<()> {
    write_atomically(path, content, 0o644)
}

/// Writes through a temporary file and a rename, so a crash leaves the old file or the new one,
/// never half of one; the mode is set at creation, so a key is never readable by others.
pub fn write_atomically(path: &Path, content: &str, mode: u32) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let _ = fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    file.write_all(content.as_bytes())?;
    file.sync_all()?;
    fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(hostnames: &[&str]) -> TlsSettings {
        TlsSettings {
            hostnames: hostnames.iter().map(|h| (*h).to_owned()).collect(),
            provided: None,
        }
    }

    #[test]
    fn keys_are_private_and_the_certificate_is_reissued_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::in_data_dir(dir.path());
        server_config(&settings(&["localhost"]), &files).unwrap();
        for key in [&files.ca_key, &files.server_key] {
            let mode = fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let first = fs::read(&files.server_cert).unwrap();
        assert!(server_certificate_fits(&first, &settings(&["localhost"])).unwrap());
        assert!(!server_certificate_fits(&first, &settings(&["warden.example.com"])).unwrap());

        server_config(&settings(&["localhost"]), &files).unwrap();
        assert_eq!(
            fs::read(&files.server_cert).unwrap(),
            first,
            "an unchanged certificate is kept"
        );

        let ca_before = fs::read(&files.ca_cert).unwrap();
        server_config(&settings(&["warden.example.com", "10.0.0.9"]), &files).unwrap();
        let reissued = fs::read(&files.server_cert).unwrap();
        assert_ne!(reissued, first);
        assert!(
            server_certificate_fits(&reissued, &settings(&["warden.example.com", "10.0.0.9"]))
                .unwrap()
        );
        assert_eq!(
            fs::read(&files.ca_cert).unwrap(),
            ca_before,
            "the CA is kept"
        );
    }
}
