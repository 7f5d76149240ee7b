//! TLS for Warden's listeners: the server certificate, issued by Warden's own CA (the `pki` crate)
//! and kept in the data directory with the root that clients are told to trust, and the rustls
//! configuration that allows only TLS 1.2/1.3 with ECDHE and AEAD cipher suites.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{Context, bail};
use std::time::Duration;

use model::Timestamp;
use pki::{Authority, IssuedCertificate};
use rustls::crypto::{CryptoProvider, ring};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;

/// Browsers refuse server certificates valid for longer than 398 days.
const SERVER_VALIDITY: Duration = Duration::from_secs(397 * 86_400);
/// A server certificate this close to expiry is replaced at start.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

/// Where the TLS files live in the data directory.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Warden's root CA certificate: what browsers, devices and services are told to trust.
    pub ca_cert: PathBuf,
    /// The server certificate and the intermediate that issued it.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Where versions before the `pki` CA kept a separate local CA's key; removed when found.
    legacy_ca_key: PathBuf,
}

impl TlsFiles {
    pub fn in_data_dir(data_dir: &Path) -> Self {
        let dir = data_dir.join("tls");
        Self {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            legacy_ca_key: dir.join("ca.key"),
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

/// The certificate and key the listeners present, read from the operator's files or the ones
/// [`ensure_server_certificate`] keeps, and swapped in place by [`ServerCertificate::reload`]:
/// a renewed certificate is served to the next handshake without a restart.
#[derive(Debug)]
pub struct ServerCertificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCertificate {
    pub fn load(settings: &TlsSettings, files: &TlsFiles) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            current: RwLock::new(read_certified_key(settings, files)?),
        }))
    }

    /// Reads the files again; the old certificate stays in use if they cannot be read.
    pub fn reload(&self, settings: &TlsSettings, files: &TlsFiles) -> anyhow::Result<()> {
        let fresh = read_certified_key(settings, files)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

fn read_certified_key(
    settings: &TlsSettings,
    files: &TlsFiles,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let (cert_path, key_path) = match &settings.provided {
        Some((cert, key)) => (cert.clone(), key.clone()),
        None => (files.server_cert.clone(), files.server_key.clone()),
    };
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificate chain {}", cert_path.display()))?;
    if chain.is_empty() {
        bail!("{} holds no PEM certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("cannot read the private key {}", key_path.display()))?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).with_context(|| {
        format!(
            "{} and {} do not form a usable pair",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok(Arc::new(certified))
}

/// The HTTPS listener's TLS configuration.
pub fn server_config(certificate: Arc<ServerCertificate>) -> anyhow::Result<Arc<ServerConfig>> {
    config_with(certificate, None)
}

/// The same, for the device listener: every client must present a certificate that chains to
/// `client_roots_pem` (Warden's own CA) and is within its validity. Revocation is checked per
/// request against the inventory, which is always current, rather than in the handshake.
pub fn device_server_config(
    certificate: Arc<ServerCertificate>,
    client_roots_pem: &str,
) -> anyhow::Result<Arc<ServerConfig>> {
    config_with(
        certificate,
        Some(client_verifier(
            client_roots_pem,
            ClientCertificate::Required,
        )?),
    )
}

/// The MQTT listener's TLS: the HTTPS side's certificate and cipher policy; client certificates
/// from Warden's CA are verified when presented (devices) but not required (people and services
/// log in with an access token).
pub fn mqtt_server_config(
    certificate: Arc<ServerCertificate>,
    client_roots_pem: &str,
) -> anyhow::Result<Arc<ServerConfig>> {
    let verifier = client_verifier(client_roots_pem, ClientCertificate::Optional)?;
    let mut config = Arc::unwrap_or_clone(config_with(certificate, Some(verifier))?);
    // MQTT clients rarely offer ALPN; none configured accepts those that do, whatever they offer.
    config.alpn_protocols = Vec::new();
    Ok(Arc::new(config))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientCertificate {
    Required,
    Optional,
}

/// Verifies client certificates against `roots_pem` (chain and validity).
fn client_verifier(
    roots_pem: &str,
    presence: ClientCertificate,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let builder = WebPkiClientVerifier::builder_with_provider(
        Arc::new(root_store(roots_pem.as_bytes())?),
        Arc::new(provider()),
    );
    let builder = match presence {
        ClientCertificate::Required => builder,
        ClientCertificate::Optional => builder.allow_unauthenticated(),
    };
    builder
        .build()
        .context("cannot build the client certificate verifier")
}

/// Trust anchors from PEM certificates.
fn root_store(roots_pem: &[u8]) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(roots_pem) {
        roots
            .add(certificate.context("the CA certificate is not PEM")?)
            .context("the CA certificate cannot be a trust anchor")?;
    }
    Ok(roots)
}

/// TLS for Warden as a client (of an external MQTT broker): the same protocol versions and
/// cipher policy as the listeners, trusting only `roots_pem`.
pub(crate) fn client_config(roots_pem: &[u8]) -> anyhow::Result<Arc<ClientConfig>> {
    let config = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .context("the TLS provider offers no protocol version")?
        .with_root_certificates(root_store(roots_pem)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn config_with(
    certificate: Arc<ServerCertificate>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let builder = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("the TLS protocol versions do not fit the cipher suites")?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Keeps the server certificate in the data directory current: issued by `authority` for every
/// required name, not close to expiry, and `ca.crt` holding the root. Returns the certificate when
/// a new one was issued, for the inventory. Nothing to do when the operator provides one.
pub fn ensure_server_certificate(
    settings: &TlsSettings,
    files: &TlsFiles,
    authority: &Authority,
    now: Timestamp,
) -> anyhow::Result<Option<IssuedCertificate>> {
    if settings.provided.is_some() {
        return Ok(None);
    }
    if let Some(dir) = files.ca_cert.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    if files.legacy_ca_key.exists() {
        fs::remove_file(&files.legacy_ca_key)
            .with_context(|| format!("cannot remove {}", files.legacy_ca_key.display()))?;
        tracing::info!(path = %files.legacy_ca_key.display(), "removed the key of the old local CA; Warden's CA issues the server certificate now");
    }
    let trusted = fs::read_to_string(&files.ca_cert).ok();
    let current = fs::read_to_string(&files.server_cert).ok();
    let fresh = trusted.as_deref() == Some(authority.root_pem())
        && current.as_deref().is_some_and(|pem| {
            pem.contains(authority.intermediate_pem())
                && server_certificate_fits(pem.as_bytes(), settings, now).unwrap_or(false)
        })
        && files.server_key.exists();
    if fresh {
        return Ok(None);
    }
    let bundle = authority.issue_server(&required_names(settings), SERVER_VALIDITY, now)?;
    write_private(&files.server_key, &bundle.private_key_pem)?;
    // The chain the server presents: its certificate, then the intermediate's.
    write_public(
        &files.server_cert,
        &format!(
            "{}{}",
            bundle.certificate.certificate_pem,
            authority.intermediate_pem()
        ),
    )?;
    write_public(&files.ca_cert, authority.root_pem())?;
    tracing::info!(hostnames = ?settings.hostnames, serial = %bundle.certificate.serial, "issued the HTTPS server certificate");
    Ok(Some(bundle.certificate))
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

/// Whether an existing server certificate still covers every required name and is not about to expire.
fn server_certificate_fits(
    pem: &[u8],
    settings: &TlsSettings,
    now: Timestamp,
) -> anyhow::Result<bool> {
    use x509_parser::prelude::*;
    let der = CertificateDer::from_pem_slice(pem).context("not a PEM certificate")?;
    let (_, cert) = X509Certificate::from_der(&der).context("not an X.509 certificate")?;
    let expires = cert.validity().not_after.timestamp();
    let renew_before = i64::try_from(RENEW_BEFORE.as_secs()).unwrap_or(i64::MAX);
    if expires - renew_before < now.unix_millis().div_euclid(1000) {
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

    fn authority(now: Timestamp) -> Authority {
        let root = pki::create_root(now).unwrap();
        let intermediate = pki::issue_intermediate(&root, now).unwrap();
        Authority::new(&root.certificate_pem, &intermediate).unwrap()
    }

    #[test]
    fn the_key_is_private_and_the_certificate_is_reissued_when_names_ca_or_time_change() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles::in_data_dir(dir.path());
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        let ca = authority(now);
        let localhost = settings(&["localhost"]);
        assert!(
            ensure_server_certificate(&localhost, &files, &ca, now)
                .unwrap()
                .is_some()
        );
        server_config(ServerCertificate::load(&localhost, &files).unwrap()).unwrap();
        let mode = fs::metadata(&files.server_key)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_to_string(&files.ca_cert).unwrap(), ca.root_pem());
        let first = fs::read(&files.server_cert).unwrap();
        assert!(server_certificate_fits(&first, &localhost, now).unwrap());
        assert!(!server_certificate_fits(&first, &settings(&["warden.example.com"]), now).unwrap());

        assert!(
            ensure_server_certificate(&localhost, &files, &ca, now)
                .unwrap()
                .is_none()
        );
        assert_eq!(
            fs::read(&files.server_cert).unwrap(),
            first,
            "an unchanged certificate is kept"
        );

        let names = settings(&["warden.example.com", "10.0.0.9"]);
        let reissued = ensure_server_certificate(&names, &files, &ca, now)
            .unwrap()
            .unwrap();
        assert_eq!(reissued.subject, "warden.example.com");
        assert!(
            server_certificate_fits(&fs::read(&files.server_cert).unwrap(), &names, now).unwrap()
        );

        let near_expiry = now.plus(SERVER_VALIDITY - RENEW_BEFORE / 2);
        assert!(
            ensure_server_certificate(&names, &files, &ca, near_expiry)
                .unwrap()
                .is_some()
        );

        let other = authority(now);
        assert!(
            ensure_server_certificate(&names, &files, &other, now)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            fs::read_to_string(&files.ca_cert).unwrap(),
            other.root_pem()
        );
    }
}
