//! A factory bundle as `warden admin device create` writes it: `device.json` with the device's id,
//! MQTT password and broker address, the certificate chain, the private key and the CA root.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What a simulated device needs from its bundle.
#[derive(Clone)]
pub struct Bundle {
    pub device_id: String,
    pub model: String,
    pub password: String,
    /// The device certificate and the intermediate, PEM.
    pub chain_pem: String,
    pub key_pem: String,
    /// The root to trust for the broker's certificate, PEM.
    pub ca_pem: String,
    /// `HOST:PORT` of the broker the bundle names, if it names one.
    pub broker: Option<(String, u16)>,
    /// `HOST:PORT` of the device listener the bundle names, if it names one.
    pub device_listener: Option<(String, u16)>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("device_id", &self.device_id)
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Deserialize)]
struct Description {
    device_id: String,
    model: String,
    mqtt_password: String,
    certificate: Option<String>,
    private_key: Option<String>,
    ca: String,
    mqtt_url: Option<String>,
    device_url: Option<String>,
}

impl Bundle {
    /// Reads the bundle in `dir`.
    pub fn read(dir: &Path) -> Result<Self, BundleError> {
        let path = dir.join("device.json");
        let description: Description =
            serde_json::from_str(&read(&path)?).map_err(|error| BundleError::Invalid {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        let invalid = |reason: &str| BundleError::Invalid {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        let (Some(certificate), Some(key)) = (&description.certificate, &description.private_key)
        else {
            return Err(invalid(
                "no certificate and key: the device was made with --csr, so its key is on the device",
            ));
        };
        let broker = description
            .mqtt_url
            .as_deref()
            .map(|url| broker_of(url).ok_or_else(|| invalid("mqtt_url is not mqtts://HOST:PORT")))
            .transpose()?;
        let device_listener = description
            .device_url
            .as_deref()
            .map(|url| {
                parse_address(
                    url.strip_prefix("https://")
                        .unwrap_or(url)
                        .trim_end_matches('/'),
                )
                .ok_or_else(|| invalid("device_url is not https://HOST:PORT"))
            })
            .transpose()?;
        Ok(Self {
            device_id: description.device_id,
            model: description.model,
            device_listener,
            password: description.mqtt_password,
            chain_pem: read(&dir.join(certificate))?,
            key_pem: read(&dir.join(key))?,
            ca_pem: read(&dir.join(&description.ca))?,
            broker,
        })
    }
}

/// `HOST:PORT` of an `mqtts://HOST:PORT` URL.
fn broker_of(url: &str) -> Option<(String, u16)> {
    parse_address(url.strip_prefix("mqtts://")?.trim_end_matches('/'))
}

/// `HOST:PORT` as a host and a port.
pub fn parse_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| Some((host.to_owned(), port.parse().ok()?)))?
}

fn read(path: &Path) -> Result<String, BundleError> {
    std::fs::read_to_string(path).map_err(|source| BundleError::Read {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_are_parsed_from_urls_and_flags() {
        assert_eq!(
            broker_of("mqtts://localhost:8883"),
            Some(("localhost".to_owned(), 8883))
        );
        assert_eq!(parse_address("[::1]:8883"), Some(("::1".to_owned(), 8883)));
        assert_eq!(broker_of("mqtt://localhost:1883"), None);
        assert_eq!(parse_address("localhost"), None);
        assert_eq!(parse_address(":8883"), None);
        assert_eq!(parse_address("localhost:port"), None);
    }
}
