//! A simulated device's side of a firmware update (docs/firmware.md): check the manifest's
//! signature with the keys the device listener publishes, refuse another model's firmware or a
//! downgrade not allowed, fetch the file (resuming with `Range` after a cut), check its SHA-256,
//! "install" it (failing a set share of installs on purpose), report each step on
//! `devices/{id}/ota/status`, and reconnect running the new version.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use firmware::{Manifest, PublicKey, Version};
use rand::Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::{Bundle, Counters};

/// Tries a download gets before the update fails; each resumes where the last one stopped.
const DOWNLOAD_TRIES: u32 = 5;
/// How long "installing" takes.
const INSTALL_TIME: Duration = Duration::from_millis(200);

/// One device's updater; cheap to clone into the task an offer starts.
#[derive(Clone)]
pub(crate) struct Updater {
    pub bundle: Bundle,
    /// The device listener, `https://HOST:PORT`.
    pub base: String,
    pub http: reqwest::Client,
    /// The share of installs that fail on purpose, 0 to 1.
    pub failure_share: f64,
    pub counters: Arc<Counters>,
    /// The version running, and the releases this device has dealt with (an offer is retained,
    /// so it comes again with every new session).
    pub state: Arc<Mutex<Running>>,
}

/// What an update asks of the device's connection, which sends it in order with everything else.
#[derive(Debug)]
pub(crate) enum Request {
    /// A status report for `devices/{id}/ota/status`.
    Status(Value),
    /// Restart into the new firmware: end the session; the device connects again.
    Restart,
}

#[derive(Debug, Default)]
pub(crate) struct Running {
    pub version: Option<Version>,
    pub handled: std::collections::HashSet<String>,
}

impl Updater {
    /// An HTTPS client holding the device's certificate and trusting Warden's root.
    pub fn client(bundle: &Bundle) -> Result<reqwest::Client, reqwest::Error> {
        let identity = format!("{}{}", bundle.chain_pem, bundle.key_pem);
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(bundle.ca_pem.as_bytes())?)
            .identity(reqwest::Identity::from_pem(identity.as_bytes())?)
            .timeout(Duration::from_secs(60))
            .build()
    }

    /// Takes an offer from `devices/{id}/ota`, once per release, and runs the update.
    pub async fn offered(self, requests: mpsc::Sender<Request>, offer: Value) {
        let release = offer["release"].as_str().unwrap_or_default().to_owned();
        let first_time = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .handled
            .insert(release.clone());
        if !first_time {
            return;
        }
        self.counters.ota_offered.fetch_add(1, Ordering::Relaxed);
        let outcome = self.update(&requests, &release, &offer).await;
        let status = match &outcome {
            Ok(version) => {
                self.state
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .version = Some(version.clone());
                self.counters.ota_succeeded.fetch_add(1, Ordering::Relaxed);
                json!({"release": release, "state": "succeeded"})
            }
            Err(reason) => {
                self.counters.ota_failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(device_id = %self.bundle.device_id, %release, reason, "update failed");
                json!({"release": release, "state": "failed", "reason": reason})
            }
        };
        let _ = requests.send(Request::Status(status)).await;
        if outcome.is_ok() {
            // A device restarts into the new firmware once its report is out.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = requests.send(Request::Restart).await;
        }
    }

    /// The update up to the install; the version installed, or why it failed.
    async fn update(
        &self,
        requests: &mpsc::Sender<Request>,
        release: &str,
        offer: &Value,
    ) -> Result<Version, String> {
        let report = |status: Value| async move {
            let _ = requests.send(Request::Status(status)).await;
        };
        let keys: Vec<PublicKey> = self
            .get("/device/firmware/keys", None)
            .await
            .map_err(|error| format!("cannot fetch the firmware keys: {error}"))?
            .json::<Value>()
            .await
            .ok()
            .and_then(|keys| serde_json::from_value(keys["keys"].clone()).ok())
            .ok_or("the firmware keys are not readable")?;
        let manifest = Manifest::verify(offer["manifest"].as_str().unwrap_or_default(), &keys)
            .map_err(|error| format!("manifest refused: {error}"))?;
        if manifest.release != release {
            return Err("the manifest is for another release".into());
        }
        if manifest.model != self.bundle.model {
            return Err(format!(
                "firmware for {}, this is a {}",
                manifest.model, self.bundle.model
            ));
        }
        let version = firmware::parse_version(&manifest.version)?;
        let running = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .version
            .clone();
        if let Some(running) = running
            && version <= running
            && offer["allow_downgrade"] != true
        {
            return Err(format!("{version} is not newer than {running}"));
        }
        report(json!({"release": release, "state": "downloading", "progress": 0})).await;
        let image = self.download(&manifest).await?;
        if hex::encode(Sha256::digest(&image)) != manifest.sha256 {
            self.counters.ota_refused.fetch_add(1, Ordering::Relaxed);
            return Err("hash mismatch: the file is not the one the manifest signs".into());
        }
        report(json!({"release": release, "state": "installing"})).await;
        tokio::time::sleep(INSTALL_TIME).await;
        if rand::rng().random_bool(self.failure_share.clamp(0.0, 1.0)) {
            return Err("install failed (simulated)".into());
        }
        Ok(version)
    }

    /// The whole file, fetched in as many tries as it takes: each continues with a `Range`
    /// from the bytes already received.
    async fn download(&self, manifest: &Manifest) -> Result<Vec<u8>, String> {
        let mut image: Vec<u8> = Vec::new();
        let mut last_error = String::new();
        for _ in 0..DOWNLOAD_TRIES {
            if image.len() as u64 >= manifest.size {
                break;
            }
            let range = format!("bytes={}-", image.len());
            let mut response = match self.get(&manifest.url, Some(&range)).await {
                Ok(response) if response.status() == reqwest::StatusCode::PARTIAL_CONTENT => {
                    response
                }
                Ok(response) => {
                    return Err(format!("the download was refused: {}", response.status()));
                }
                Err(error) => {
                    last_error = error.to_string();
                    continue;
                }
            };
            loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => image.extend_from_slice(&chunk),
                    Ok(None) => break,
                    Err(error) => {
                        // Cut: the next try resumes from here.
                        last_error = error.to_string();
                        self.counters.ota_resumed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        if image.len() as u64 == manifest.size {
            Ok(image)
        } else {
            Err(format!(
                "the download stopped at {} of {} bytes: {last_error}",
                image.len(),
                manifest.size
            ))
        }
    }

    async fn get(&self, path: &str, range: Option<&str>) -> reqwest::Result<reqwest::Response> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.base))
            .basic_auth(&self.bundle.device_id, Some(&self.bundle.password));
        if let Some(range) = range {
            request = request.header(reqwest::header::RANGE, range);
        }
        request.send().await
    }
}
