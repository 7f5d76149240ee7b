//! Firmware over the air through the running server, with devices played by rumqttc and a
//! reqwest client holding the device's certificate: a release uploaded and signed, offered over
//! MQTT, its manifest verified with the keys the device listener publishes, the file fetched in
//! two ranges (a cut download resumed), progress reported until the device runs the new version;
//! a device not offered a release is refused it; a file changed on disk is caught by the hash;
//! downgrades need saying so.

use reqwest::StatusCode;
use rumqttc::{AsyncClient, EventLoop, Packet, QoS};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::devices::Fleet;
use crate::mqtt::{connect_device, id, identity, next, password, subscribe};
use crate::pki::device_client;
use crate::simulator::{eventually, finished};

/// A device's side of an update: its MQTT session and an HTTPS client with its certificate.
struct Device {
    id: String,
    password: String,
    mqtt: AsyncClient,
    events: EventLoop,
    https: reqwest::Client,
    base: String,
}

impl Device {
    async fn connect(fleet: &Fleet, device: &Value) -> Self {
        let (mqtt, mut events) = connect_device(fleet, device).await;
        let ota = format!("devices/{}/ota", id(device));
        assert_eq!(subscribe(&mqtt, &mut events, &[&ota]).await, [true]);
        let (certificate, key) = identity(device);
        let pem = format!("{certificate}{key}");
        let port = fleet.app.warden.addresses.device.unwrap().port();
        Self {
            id: id(device).to_owned(),
            password: password(device).to_owned(),
            mqtt,
            events,
            https: device_client(&fleet.app, Some(pem.as_bytes())),
            base: format!("https://localhost:{port}"),
        }
    }

    /// The next offer on `devices/{id}/ota`.
    async fn offer(&mut self) -> Value {
        next(&mut self.events, |packet| match packet {
            Packet::Publish(publish) if publish.topic.ends_with("/ota") => {
                Some(serde_json::from_slice::<Value>(&publish.payload).unwrap())
            }
            _ => None,
        })
        .await
    }

    async fn get(&self, path: &str, range: Option<&str>) -> reqwest::Response {
        let mut request = self
            .https
            .get(format!("{}{path}", self.base))
            .basic_auth(&self.id, Some(&self.password));
        if let Some(range) = range {
            request = request.header("Range", range);
        }
        request.send().await.unwrap()
    }

    async fn manifest(&self, offer: &Value) -> firmware::Manifest {
        let keys: Value = self
            .get("/device/firmware/keys", None)
            .await
            .json()
            .await
            .unwrap();
        let keys: Vec<firmware::PublicKey> = serde_json::from_value(keys["keys"].clone()).unwrap();
        firmware::Manifest::verify(offer["manifest"].as_str().unwrap(), &keys).unwrap()
    }

    /// Reports on `devices/{id}/ota/status` and waits for the acknowledgement, which comes after
    /// the report is applied.
    async fn report(&mut self, status: Value) {
        self.mqtt
            .publish(
                format!("devices/{}/ota/status", self.id),
                QoS::AtLeastOnce,
                false,
                status.to_string(),
            )
            .await
            .unwrap();
        next(&mut self.events, |packet| {
            matches!(packet, Packet::PubAck(_)).then_some(())
        })
        .await;
    }
}

/// A release of `bytes` for washers.
fn upload(fleet: &Fleet, version: &str, bytes: &[u8]) -> String {
    upload_for(fleet, "washer-w500", version, bytes)
}

fn firmware_bytes(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Changes one byte of the stored file of `image`, as someone with access to the firmware
/// directory could after the release was signed.
fn tamper_stored(fleet: &Fleet, image: &[u8]) {
    let stored = fleet
        .app
        .data_dir
        .path()
        .join("firmware")
        .join(sha256_hex(image));
    let mut tampered = image.to_vec();
    tampered[image.len() / 2] ^= 0xff;
    std::fs::write(&stored, &tampered).unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_is_offered_verified_fetched_in_ranges_and_installed() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("admin@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 2).await;
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, &devices[0]).await.0, StatusCode::OK);
    let image = firmware_bytes(300_000, 7);
    let release = upload(&fleet, "1.1.0", &image);

    // Bad uploads change nothing.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let refused = testkit::warden_command(&[
        "admin",
        "firmware",
        "upload",
        "--model",
        "washer-w500",
        "--version",
        "1.1.0",
        empty.path().to_str().unwrap(),
        "--data-dir",
        fleet.app.data_dir.path().to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(refused.status.code(), Some(2));

    let offers = format!("/api/v1/admin/firmware/{release}/offers");
    let (status, body) = fleet
        .post(&offers, &admin, json!({"devices": [id(&devices[0])]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["offered"], json!([id(&devices[0])]));
    assert_eq!(
        fleet
            .post(&offers, &owner, json!({"devices": [id(&devices[0])]}))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = fleet
        .post(
            "/api/v1/admin/firmware/fw_unknown/offers",
            &admin,
            json!({"devices": [id(&devices[0])]}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The device is told (retained, so it gets the offer when it subscribes) and checks the
    // manifest's signature with the keys the device listener publishes.
    let mut washer = Device::connect(&fleet, &devices[0]).await;
    let offer = washer.offer().await;
    assert_eq!(offer["release"], release.as_str());
    let manifest = washer.manifest(&offer).await;
    assert_eq!(
        (
            manifest.model.as_str(),
            manifest.version.as_str(),
            manifest.size
        ),
        ("washer-w500", "1.1.0", 300_000)
    );
    assert_eq!(manifest.sha256, sha256_hex(&image));

    // A download cut after the first part resumes with a Range request.
    let first = washer.get(&manifest.url, Some("bytes=0-99999")).await;
    assert_eq!(first.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        first.headers()["content-range"].to_str().unwrap(),
        "bytes 0-99999/300000"
    );
    let mut fetched = first.bytes().await.unwrap().to_vec();
    washer
        .report(json!({"release": release, "state": "downloading", "progress": 33}))
        .await;
    let rest = washer.get(&manifest.url, Some("bytes=100000-")).await;
    assert_eq!(rest.status(), StatusCode::PARTIAL_CONTENT);
    fetched.extend_from_slice(&rest.bytes().await.unwrap());
    assert_eq!(sha256_hex(&fetched), manifest.sha256);
    let whole = washer.get(&manifest.url, None).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(whole.bytes().await.unwrap().len(), 300_000);
    assert_eq!(
        washer
            .get(&manifest.url, Some("bytes=300000-"))
            .await
            .status(),
        StatusCode::RANGE_NOT_SATISFIABLE
    );

    // A device the release was not offered to is refused it.
    let dryer = Device::connect(&fleet, &devices[1]).await;
    assert_eq!(
        dryer.get(&manifest.url, None).await.status(),
        StatusCode::NOT_FOUND
    );

    // Progress to the end; the owner sees where the device is and what it runs.
    washer
        .report(json!({"release": release, "state": "installing"}))
        .await;
    washer
        .report(json!({"release": release, "state": "succeeded"}))
        .await;
    let path = format!("/api/v1/devices/{}/firmware", washer.id);
    let (status, seen) = fleet.get(&path, &owner).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["firmware_version"], "1.1.0");
    assert_eq!(seen["updates"][0]["state"], "succeeded");
    assert_eq!(seen["updates"][0]["progress"], 33);
    // Nothing moves an update back, and a finished one is not fetched again.
    washer
        .report(json!({"release": release, "state": "downloading"}))
        .await;
    assert_eq!(
        fleet.get(&path, &owner).await.1["updates"][0]["state"],
        "succeeded"
    );
    assert_eq!(
        washer.get(&manifest.url, None).await.status(),
        StatusCode::NOT_FOUND
    );

    // An older release is a downgrade, offered only when the offer says so.
    let older = upload(&fleet, "1.0.5", &firmware_bytes(1_000, 3));
    let older_offers = format!("/api/v1/admin/firmware/{older}/offers");
    let (status, body) = fleet
        .post(&older_offers, &admin, json!({"devices": [washer.id]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = fleet
        .post(
            &older_offers,
            &admin,
            json!({"devices": [washer.id], "allow_downgrade": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(washer.offer().await["allow_downgrade"], true);

    // Every offer is in the audit journal.
    let (status, journal) = fleet
        .get("/api/v1/admin/audit?action=firmware.offer", &admin)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(journal["entries"].as_array().unwrap().len(), 2, "{journal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_on_disk_is_caught_by_the_hash_and_the_failure_is_recorded() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("admin@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let image = firmware_bytes(50_000, 9);
    let release = upload(&fleet, "2.0.0", &image);
    // Someone with access to the firmware directory changes the file after it was signed.
    tamper_stored(&fleet, &image);

    let offers = format!("/api/v1/admin/firmware/{release}/offers");
    let (status, _) = fleet
        .post(&offers, &admin, json!({"devices": [id(&devices[0])]}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut device = Device::connect(&fleet, &devices[0]).await;
    let offer = device.offer().await;
    let manifest = device.manifest(&offer).await;
    let fetched = device.get(&manifest.url, None).await.bytes().await.unwrap();
    assert_ne!(
        sha256_hex(&fetched),
        manifest.sha256,
        "the device must notice"
    );
    device
        .report(json!({"release": release, "state": "failed", "reason": "hash mismatch"}))
        .await;
    let (status, seen) = fleet
        .get(&format!("/api/v1/devices/{}/firmware", device.id), &admin)
        .await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["updates"][0]["state"], "failed");
    assert_eq!(seen["updates"][0]["reason"], "hash mismatch");
    assert_eq!(seen["firmware_version"], Value::Null);
}

/// The states of the devices' updates for `release`, as an admin reads them.
async fn states(fleet: &Fleet, admin: &str, ids: &[String], release: &str) -> Vec<String> {
    let mut states = Vec::new();
    for device_id in ids {
        let (_, seen) = fleet
            .get(&format!("/api/v1/devices/{device_id}/firmware"), admin)
            .await;
        let state = seen["updates"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|update| update["release_id"] == release)
            .map(|update| {
                format!(
                    "{} {}",
                    update["state"].as_str().unwrap_or_default(),
                    update["reason"].as_str().unwrap_or_default()
                )
            })
            .unwrap_or_default();
        states.push(state.trim().to_owned());
    }
    states
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_simulated_devices_install_a_release_and_all_refuse_a_tampered_one() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("admin@example.com", "admin").await;
    let bundles = fleet.factory("washer-w500", "20");
    let out = bundles.path().to_str().unwrap();
    let ids: Vec<String> = std::fs::read_dir(bundles.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(ids.len(), 20);
    let simulation = simulate(&fleet, out, "0", "30");

    // A release for all twenty: each verifies, fetches, installs and restarts into it.
    let image = firmware_bytes(200_000, 1);
    let release = upload(&fleet, "1.1.0", &image);
    let (status, body) = fleet
        .post(
            &format!("/api/v1/admin/firmware/{release}/offers"),
            &admin,
            json!({"devices": ids}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let done = eventually(20, async || {
        let states = states(&fleet, &admin, &ids, &release).await;
        states
            .iter()
            .all(|state| state == "succeeded")
            .then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "{:?}",
        states(&fleet, &admin, &ids, &release).await
    );
    for device_id in &ids {
        let (_, seen) = fleet
            .get(&format!("/api/v1/devices/{device_id}/firmware"), &admin)
            .await;
        assert_eq!(seen["firmware_version"], "1.1.0");
    }

    // A newer release whose file was changed on disk after signing: every device refuses it.
    let image = firmware_bytes(100_000, 2);
    let tampered_release = upload(&fleet, "1.2.0", &image);
    tamper_stored(&fleet, &image);
    let (status, _) = fleet
        .post(
            &format!("/api/v1/admin/firmware/{tampered_release}/offers"),
            &admin,
            json!({"devices": ids}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let refused = eventually(20, async || {
        let states = states(&fleet, &admin, &ids, &tampered_release).await;
        states
            .iter()
            .all(|state| state.starts_with("failed hash mismatch"))
            .then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "{:?}",
        states(&fleet, &admin, &ids, &tampered_release).await
    );

    let summary = finished(simulation).await;
    assert_eq!(summary["ota_offered"], 40, "{summary}");
    assert_eq!(summary["ota_succeeded"], 20, "{summary}");
    assert_eq!(summary["ota_failed"], 20, "{summary}");
    assert_eq!(summary["ota_refused"], 20, "{summary}");
    // Every device restarted into the new firmware once: a reconnect each.
    assert!(summary["reconnects"].as_u64().unwrap() >= 20, "{summary}");
}

/// `warden device simulate` for the bundles in `dir`, taking offers from the device listener and
/// failing `fail` of the installs.
fn simulate(fleet: &Fleet, dir: &str, fail: &str, seconds: &str) -> std::process::Child {
    let listener = format!(
        "localhost:{}",
        fleet.app.warden.addresses.device.unwrap().port()
    );
    crate::simulator::simulate(
        fleet,
        dir,
        &[
            "--device-listener",
            &listener,
            "--rate",
            "0",
            "--fail-installs",
            fail,
            "--duration",
            seconds,
        ],
    )
}

fn upload_for(fleet: &Fleet, model: &str, version: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("firmware.bin");
    std::fs::write(&file, bytes).unwrap();
    let out = fleet.admin(&[
        "firmware",
        "upload",
        "--model",
        model,
        "--version",
        version,
        file.to_str().unwrap(),
    ]);
    out.lines()
        .find_map(|line| line.strip_prefix("release_id:"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rollout_completes_and_one_whose_installs_fail_aborts_itself() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("admin@example.com", "admin").await;
    let washers = fleet.factory("washer-w500", "20");
    let dryers = fleet.factory("dryer-d100", "20");
    let healthy = simulate(&fleet, washers.path().to_str().unwrap(), "0", "40");
    let failing = simulate(&fleet, dryers.path().to_str().unwrap(), "1", "40");
    let washer_release = upload_for(&fleet, "washer-w500", "1.1.0", &firmware_bytes(50_000, 4));
    let dryer_release = upload_for(&fleet, "dryer-d100", "3.0.0", &firmware_bytes(50_000, 5));
    let read = async |id: &str| {
        fleet
            .get(&format!("/api/v1/admin/rollouts/{id}"), &admin)
            .await
            .1
    };

    // Washers: 10 % by hand, then the rest after a one-second soak.
    let (status, rollout) = fleet
        .post(
            "/api/v1/admin/rollouts",
            &admin,
            json!({"release_id": washer_release, "stages": [10, 100]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rollout}");
    assert_eq!(
        (rollout["devices"].as_u64(), rollout["offered"].as_u64()),
        (Some(20), Some(2))
    );
    let id = rollout["rollout_id"].as_str().unwrap().to_owned();
    let first = eventually(20, async || {
        let rollout = read(&id).await;
        (rollout["succeeded"] == 2 && rollout["stage"] == 0).then_some(rollout)
    })
    .await;
    assert!(first.is_some(), "{}", read(&id).await);
    // Without a soak time the next stage waits for an admin.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(read(&id).await["stage"], 0);
    let step = async |step: &str| {
        fleet
            .post(
                &format!("/api/v1/admin/rollouts/{id}/{step}"),
                &admin,
                json!({}),
            )
            .await
    };
    assert_eq!(step("pause").await.1["state"], "paused");
    assert_eq!(step("advance").await.0, StatusCode::CONFLICT);
    assert_eq!(step("resume").await.1["state"], "running");
    assert_eq!(step("leap").await.0, StatusCode::NOT_FOUND);
    let (status, advanced) = step("advance").await;
    assert_eq!(status, StatusCode::OK, "{advanced}");
    assert_eq!(advanced["offered"], 20);
    let completed = eventually(30, async || {
        let rollout = read(&id).await;
        (rollout["state"] == "completed").then_some(rollout)
    })
    .await
    .expect("the rollout never completed");
    assert_eq!(
        (
            completed["succeeded"].as_u64(),
            completed["failed"].as_u64()
        ),
        (Some(20), Some(0))
    );
    assert_eq!(step("abort").await.0, StatusCode::CONFLICT);

    // Dryers whose installs all fail: the first stage crosses the threshold, and the rollout
    // aborts itself before the other 18 are offered anything.
    let (status, rollout) = fleet
        .post(
            "/api/v1/admin/rollouts",
            &admin,
            json!({"release_id": dryer_release, "stages": [10, 100], "soak_seconds": 1, "failure_threshold_percent": 20}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rollout}");
    let id = rollout["rollout_id"].as_str().unwrap().to_owned();
    let aborted = eventually(30, async || {
        let rollout = read(&id).await;
        (rollout["state"] == "aborted").then_some(rollout)
    })
    .await;
    let aborted = aborted.unwrap_or_else(|| panic!("never aborted"));
    assert_eq!(
        (aborted["offered"].as_u64(), aborted["failed"].as_u64()),
        (Some(2), Some(2)),
        "{aborted}"
    );
    assert!(
        aborted["reason"].as_str().unwrap().contains("threshold"),
        "{aborted}"
    );

    let healthy = finished(healthy).await;
    assert_eq!(healthy["ota_succeeded"], 20, "{healthy}");
    let failing = finished(failing).await;
    assert_eq!(
        (
            failing["ota_offered"].as_u64(),
            failing["ota_failed"].as_u64()
        ),
        (Some(2), Some(2)),
        "{failing}"
    );
    // The rollouts' steps are in the audit journal, the automatic ones by the rollouts part.
    let (_, journal) = fleet
        .get(
            "/api/v1/admin/audit?action=firmware.rollout&order=oldest",
            &admin,
        )
        .await;
    let steps: Vec<&str> = journal["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["detail"]["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "create", "pause", "resume", "advance", "complete", "create", "abort"
        ]
    );
}

/// `POST /api/v1/admin/firmware` with `query` and `body` as `token`.
async fn upload_over_api(
    fleet: &Fleet,
    token: &str,
    query: &str,
    body: reqwest::Body,
) -> (StatusCode, Value) {
    let response = fleet
        .app
        .client
        .post(fleet.app.url(&format!("/api/v1/admin/firmware?{query}")))
        .bearer_auth(token)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The names in the firmware directory.
fn stored_files(fleet: &Fleet) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fleet.app.data_dir.path().join("firmware"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_uploaded_through_the_api_and_a_rollout_targets_a_tag() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("admin@example.com", "admin").await;
    let customer = fleet.person("customer@example.com", "customer").await;

    // Three MiB, past the gateway's usual body limit, sent in chunks without a declared length.
    let image = firmware_bytes(3 * 1024 * 1024, 11);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = image
        .chunks(64 * 1024)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let (status, release) = upload_over_api(
        &fleet,
        &admin,
        "model=washer-w500&version=1.1.0&notes=Quieter%20spin",
        streamed,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{release}");
    assert_eq!(release["sha256"], sha256_hex(&image));
    assert_eq!(release["size"], image.len());
    assert_eq!(release["notes"], "Quieter spin");
    let release_id = release["release_id"].as_str().unwrap().to_owned();
    assert_eq!(stored_files(&fleet), [sha256_hex(&image)]);

    // Refusals change nothing: not an admin, the same version again, bad query, empty file.
    let small = || reqwest::Body::from(firmware_bytes(1_000, 1));
    let refusals = [
        (
            &customer,
            "model=washer-w500&version=1.2.0",
            small(),
            StatusCode::FORBIDDEN,
        ),
        (
            &admin,
            "model=washer-w500&version=1.1.0",
            small(),
            StatusCode::CONFLICT,
        ),
        (
            &admin,
            "model=washer-w500&version=1.2",
            small(),
            StatusCode::BAD_REQUEST,
        ),
        (
            &admin,
            "model=Washer&version=1.2.0",
            small(),
            StatusCode::BAD_REQUEST,
        ),
        (&admin, "version=1.2.0", small(), StatusCode::BAD_REQUEST),
        (
            &admin,
            "model=washer-w500&version=1.2.0&color=red",
            small(),
            StatusCode::BAD_REQUEST,
        ),
        (
            &admin,
            "model=washer-w500&version=1.2.0",
            reqwest::Body::from(Vec::new()),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (token, query, body, expected) in refusals {
        let (status, answer) = upload_over_api(&fleet, token, query, body).await;
        assert_eq!(status, expected, "{query}: {answer}");
    }
    assert_eq!(stored_files(&fleet), [sha256_hex(&image)]);
    let (_, releases) = fleet.get("/api/v1/admin/firmware", &admin).await;
    assert_eq!(releases["releases"].as_array().unwrap().len(), 1);
    // The raised limit is the upload's alone.
    let oversized = fleet
        .app
        .client
        .post(fleet.app.url("/api/v1/admin/devices"))
        .bearer_auth(&admin)
        .header("Content-Type", "application/json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Three of six washers are tagged (two over the API, one on the command line); a rollout to
    // the tag offers the release to them only.
    let devices = fleet.make_devices(&admin, 6).await;
    let ids: Vec<String> = devices.iter().map(|device| id(device).to_owned()).collect();
    let shown = fleet.admin(&["device", "tags", &ids[2], "region-eu", "beta"]);
    assert_eq!(shown.trim(), format!("{}: beta region-eu", ids[2]));
    for device_id in &ids[..2] {
        let (status, tags) = fleet
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/admin/devices/{device_id}/tags"),
                &admin,
                Some(json!({"tags": ["beta", "region-eu", "beta"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{tags}");
        assert_eq!(tags["tags"], json!(["beta", "region-eu"]));
    }
    let tags_of = |device_id: &str| format!("/api/v1/admin/devices/{device_id}/tags");
    for (body, expected) in [
        (json!({"tags": ["Beta"]}), StatusCode::BAD_REQUEST),
        (json!({"tags": vec!["x"; 33]}), StatusCode::BAD_REQUEST),
        (json!({"labels": []}), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, answer) = fleet
            .call(reqwest::Method::PUT, &tags_of(&ids[0]), &admin, Some(body))
            .await;
        assert_eq!(status, expected, "{answer}");
    }
    let (status, _) = fleet
        .call(
            reqwest::Method::PUT,
            &tags_of("dev_unknown"),
            &admin,
            Some(json!({"tags": ["beta"]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, tags) = fleet.get(&tags_of(&ids[0]), &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tags["tags"], json!(["beta", "region-eu"]));
    assert_eq!(
        fleet.get(&tags_of(&ids[5]), &admin).await.1["tags"],
        json!([])
    );
    assert_eq!(
        fleet.get(&tags_of(&ids[0]), &customer).await.0,
        StatusCode::FORBIDDEN
    );

    let (status, answer) = fleet
        .post(
            "/api/v1/admin/rollouts",
            &admin,
            json!({"release_id": release_id, "tag": "beta", "devices": [ids[4]]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, rollout) = fleet
        .post(
            "/api/v1/admin/rollouts",
            &admin,
            json!({"release_id": release_id, "tag": "beta"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rollout}");
    assert_eq!(
        (rollout["devices"].as_u64(), rollout["offered"].as_u64()),
        (Some(3), Some(3))
    );
    let offered = states(&fleet, &admin, &ids, &release_id).await;
    assert_eq!(offered, ["offered", "offered", "offered", "", "", ""]);
    let (_, listed) = fleet.get("/api/v1/admin/rollouts", &admin).await;
    assert_eq!(listed["rollouts"][0]["rollout_id"], rollout["rollout_id"]);
    assert_eq!(listed["rollouts"][0]["devices"], 3);

    // The upload and the tags are in the audit journal.
    for (action, count) in [("firmware.upload", 1), ("device.tags", 3)] {
        let (_, journal) = fleet
            .get(&format!("/api/v1/admin/audit?action={action}"), &admin)
            .await;
        assert_eq!(
            journal["entries"].as_array().unwrap().len(),
            count,
            "{action}: {journal}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_connects_after_a_restart_gets_its_offer_and_desired_settings() {
    let fleet = Fleet::new().await;
    let admin = fleet.person("admin@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 1).await;
    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, &devices[0]).await.0, StatusCode::OK);
    let device_id = id(&devices[0]).to_owned();
    let (status, _) = fleet
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/devices/{device_id}/state/desired"),
            &owner,
            Some(json!({"temperature": 40})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let release = upload(&fleet, "1.1.0", &firmware_bytes(10_000, 3));
    let (status, _) = fleet
        .post(
            &format!("/api/v1/admin/firmware/{release}/offers"),
            &admin,
            json!({"devices": [device_id], "allow_downgrade": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // The broker kept both retained in memory only; after the restart they come from the
    // database when the device connects.
    let fleet = fleet.restart().await;
    let mut device = Device::connect(&fleet, &devices[0]).await;
    let offer = device.offer().await;
    assert_eq!(offer["release"], release.as_str());
    assert_eq!(offer["allow_downgrade"], true);
    assert_eq!(device.manifest(&offer).await.version, "1.1.0");
    let desired = format!("devices/{device_id}/state/desired");
    assert_eq!(
        subscribe(&device.mqtt, &mut device.events, &[&desired]).await,
        [true]
    );
    let settings: Value = next(&mut device.events, |packet| match packet {
        Packet::Publish(message) if message.topic == desired => {
            serde_json::from_slice(&message.payload).ok()
        }
        _ => None,
    })
    .await;
    assert_eq!(
        settings,
        json!({"version": 1, "settings": {"temperature": 40}})
    );

    // A finished update is not offered again.
    device
        .report(json!({"release": release, "state": "succeeded"}))
        .await;
    let fleet = fleet.restart().await;
    let mut device = Device::connect(&fleet, &devices[0]).await;
    let nothing = tokio::time::timeout(std::time::Duration::from_secs(2), device.offer()).await;
    assert!(nothing.is_err(), "offered again: {nothing:?}");
}
