//! Making devices at the factory: an id, an MQTT password, a claim code and (optionally) a
//! certificate with a key made here, for devices that cannot make their own key. The secrets are
//! in the [`FactoryDevice`] once, for the bundle written for the device and the label printed for
//! its box; the registry keeps only their keyed hashes ([`NewDevice`]).

use std::time::Duration;

use model::{DeviceId, Timestamp};

use crate::{ClaimCode, DeviceHashers, DevicePassword, ModelName};

/// What the registry stores of a new device.
#[derive(Clone, Debug)]
pub struct NewDevice {
    pub device_id: DeviceId,
    pub model: ModelName,
    pub password_hash: String,
    pub claim_code_hash: String,
    pub created_at: Timestamp,
}

/// A new device with its secrets in the clear, shown once.
#[derive(Debug)]
pub struct FactoryDevice {
    pub record: NewDevice,
    pub password: DevicePassword,
    pub claim_code: ClaimCode,
    /// The certificate and its key, when the factory makes the key.
    pub bundle: Option<pki::Bundle>,
}

/// A random device id: 16 lower-case Crockford base-32 characters (80 bits), so ids cannot be
/// enumerated, and read off a label without confusion.
pub fn generate_device_id() -> DeviceId {
    let id = crate::claim::random_base32(16).to_ascii_lowercase();
    DeviceId::parse(&id).unwrap_or_else(|_| unreachable!("the alphabet is DeviceId-safe"))
}

/// The most devices one batch makes: a batch is one transaction, and its secrets one answer.
pub const MAX_BATCH: usize = 1000;

/// How devices are made.
#[derive(Debug)]
pub struct Factory<'a> {
    pub hashers: &'a DeviceHashers,
    /// Signs a bundle per device; `None` leaves certificates to the CSR path.
    pub authority: Option<&'a pki::Authority>,
    pub certificate_validity: Duration,
}

impl Factory<'_> {
    /// `count` new devices of `model`.
    pub fn make(
        &self,
        model: &ModelName,
        count: usize,
        now: Timestamp,
    ) -> Result<Vec<FactoryDevice>, pki::PkiError> {
        (0..count)
            .map(|_| {
                let device_id = generate_device_id();
                let password = DevicePassword::generate();
                let claim_code = ClaimCode::generate();
                let bundle = self
                    .authority
                    .map(|authority| {
                        authority.issue_device_bundle(&device_id, self.certificate_validity, now)
                    })
                    .transpose()?;
                Ok(FactoryDevice {
                    record: NewDevice {
                        device_id,
                        model: model.clone(),
                        password_hash: self.hashers.password_hash(&password),
                        claim_code_hash: self.hashers.claim_code_hash(&claim_code),
                        created_at: now,
                    },
                    password,
                    claim_code,
                    bundle,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use tokens::keyed::SecretHasher;

    use super::*;

    #[test]
    fn factory_devices_carry_hashes_of_their_own_secrets() {
        let hashers = DeviceHashers::new(&SecretHasher::new(vec![9; 32]));
        let factory = Factory {
            hashers: &hashers,
            authority: None,
            certificate_validity: Duration::from_secs(60),
        };
        let model = ModelName::parse("washer-w500").unwrap();
        let devices = factory
            .make(&model, 3, Timestamp::from_unix_millis(5))
            .unwrap();
        assert_eq!(devices.len(), 3);
        for device in &devices {
            assert_eq!(device.record.device_id.as_str().len(), 16);
            assert!(hashers.password_matches(&device.password, &device.record.password_hash));
            assert!(hashers.claim_code_matches(&device.claim_code, &device.record.claim_code_hash));
            assert!(device.bundle.is_none());
        }
        assert_ne!(devices[0].record.device_id, devices[1].record.device_id);
    }
}
