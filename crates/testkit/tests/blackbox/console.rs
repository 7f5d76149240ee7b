//! The web console in a real browser: Warden in-process, one simulated device sending events and
//! applying its desired settings (`warden device simulate`), and `browser/console.mjs` driving
//! Debian's chromium through playwright-core. `scripts/test` installs both; without them this
//! test fails and says what is missing. Screenshots of the main pages are kept in
//! `target/console-screenshots/`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::devices::Fleet;

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_uses_the_console_in_a_real_browser() {
    let scripts = browser_dir();
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: scripts/test installs Debian's chromium package"
    );
    assert!(
        scripts.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: scripts/test runs `npm ci` in {}",
        scripts.display()
    );

    let fleet = Fleet::new().await;
    fleet.person("tech@example.com", "technician").await;
    fleet.person("admin@example.com", "admin").await;
    let bundles = fleet.factory("washer-w500", "1");
    let bundle = std::fs::read_dir(bundles.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let device: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("device.json")).unwrap())
            .unwrap();
    let mut simulator = crate::simulator::simulate(
        &fleet,
        bundle.to_str().unwrap(),
        &["--rate", "2", "--duration", "180"],
    );
    // Drained as it runs, so that a full pipe never holds the device up.
    let outputs: [Option<Box<dyn std::io::Read + Send>>; 2] = [
        simulator.stdout.take().map(|out| Box::new(out) as _),
        simulator.stderr.take().map(|err| Box::new(err) as _),
    ];
    for mut output in outputs.into_iter().flatten() {
        std::thread::spawn(move || std::io::copy(&mut output, &mut std::io::sink()));
    }

    let screenshots =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let run = tokio::process::Command::new("node")
        .arg(scripts.join("console.mjs"))
        .current_dir(&scripts)
        .env("WARDEN_URL", &fleet.app.base_url)
        .env("DEVICE_ID", device["device_id"].as_str().unwrap())
        .env("CLAIM_CODE", device["claim_code"].as_str().unwrap())
        .env("TECH_EMAIL", "tech@example.com")
        .env("ADMIN_EMAIL", "admin@example.com")
        .env("ADMIN_PASSWORD", crate::oidc::PASSWORD)
        .env("SCREENSHOTS", &screenshots)
        .env("CHROMIUM", CHROMIUM)
        .output()
        .await
        .unwrap();
    let _ = simulator.kill();
    let _ = simulator.wait();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    for name in ["device", "grants", "devices", "device-phone", "admin"] {
        let shot = screenshots.join(format!("{name}.png"));
        assert!(
            std::fs::metadata(&shot).is_ok_and(|meta| meta.len() > 1_000),
            "no screenshot {}",
            shot.display()
        );
    }
}

/// The console's JavaScript passes TypeScript's strict checks (`// @ts-check` and JSDoc types).
#[test]
fn the_console_type_checks_as_strict_typescript() {
    let scripts = browser_dir();
    let compiler = scripts.join("node_modules/typescript/bin/tsc");
    assert!(
        compiler.exists(),
        "typescript is missing: scripts/test runs `npm ci` in {}",
        scripts.display()
    );
    let checked = std::process::Command::new("node")
        .arg(compiler)
        .args(["-p", "tsconfig.json"])
        .current_dir(&scripts)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
