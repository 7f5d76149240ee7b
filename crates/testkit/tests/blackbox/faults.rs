//! Faults from outside Warden while devices stream events: the disk filling up, a clock that
//! jumps, an upstream behind the gateway that does not answer. For each, what devices and people
//! see, and the proof that nothing acknowledged is lost. (The server killed under load is in
//! `crash.rs`, the database stopped and started under load in `events.rs`.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::simulation::{Simulation, assert_all_stored, free_port, make_devices, stored_events};
use testkit::{TestApp, WardenProcess};

/// A small tmpfs mounted for one test, unmounted when dropped: a disk that can really be filled.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `megabytes` at `path`: as root, or through `sudo -n` otherwise.
    fn mount(path: &Path, megabytes: u32) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let size = format!("size={megabytes}m");
        let status = privileged(&["mount", "-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "the disk-full test mounts a small tmpfs, which needs root or passwordless sudo"
        );
        Self {
            path: path.to_owned(),
        }
    }

    /// Writes a file of zeros on the disk until it is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        // The last, partial chunk: whatever bytes are left.
        while file.write_all(&[0]).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = privileged(&["umount", "--lazy"]).arg(&self.path).status();
    }
}

fn privileged(command: &[&str]) -> Command {
    // Root: the effective user id (the second on the `Uid:` line) is 0.
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"));
    let mut built = if root {
        Command::new(command[0])
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", command[0]]);
        sudo
    };
    built.args(&command[1..]);
    built
}

/// Waits until `condition` holds, up to `limit`; whether it did.
fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The disk holding the database fills up while ten devices stream QoS 1 events: Warden keeps
/// running, withholds the acknowledgements of what it cannot commit (the devices wait), and
/// once space is freed commits and acknowledges everything; every acknowledged event is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stalls_the_devices_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"), 48);
    let data = disk.path.join("data");
    let bundles = dir.path().join("bundles");
    let port = free_port();
    let mut server = WardenProcess::serve(&data, &["--mqtt-listen", &format!("127.0.0.1:{port}")]);
    make_devices(&data, "oven-x1", 10, &bundles);

    let simulation = Simulation::start(&bundles, port, 50, 24, dir.path().join("acked.txt"));
    std::thread::sleep(Duration::from_secs(3));
    let filler = disk.fill();
    assert!(
        eventually(Duration::from_secs(15), || server
            .logs()
            .contains("cannot store events; retrying")),
        "the full disk refused a commit:\n{}",
        server.logs()
    );
    let stored_when_full = stored_events(&data).await.len();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "Warden keeps running on a full disk:\n{}",
        server.logs()
    );
    let stored_while_full = stored_events(&data).await.len();
    std::fs::remove_file(&filler).unwrap();

    let (summary, acknowledged) = simulation.finish();
    assert_eq!(
        summary["acknowledged"], summary["sent"],
        "once the disk has room, everything sent is acknowledged: {summary}"
    );
    assert!(
        stored_while_full < stored_when_full + 500,
        "commits stalled while the disk was full ({stored_when_full} then {stored_while_full})"
    );
    let stored = stored_events(&data).await;
    assert!(
        stored.len() > stored_while_full + 1_000,
        "the stream went on after space was freed ({stored_while_full} then {}): {summary}",
        stored.len()
    );
    assert_all_stored(&acknowledged, &stored);
    server.stop_cleanly();
}

/// libfaketime, from Debian's `faketime` package: it makes the wall clock of the process it is
/// preloaded into what a file says, read again on every call.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The wall clock jumps three hours back and then three hours ahead of the real time while
/// devices stream events (an NTP step, a VM resumed); the monotonic clock goes on, as it does.
/// The devices stay connected, every event is acknowledged and stored, received at the time the
/// clock said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_jump_back_and_forth_loses_nothing() {
    assert!(
        Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: apt-get install faketime"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bundles = dir.path().join("bundles");
    let clock = dir.path().join("faketime");
    std::fs::write(&clock, "+0\n").unwrap();
    let port = free_port();
    let mut server = WardenProcess::serve_with_env(
        &data,
        &["--mqtt-listen", &format!("127.0.0.1:{port}")],
        &[
            ("WARDEN_LOG_LEVEL", "warn"),
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    make_devices(&data, "oven-x1", 10, &bundles);

    let started = std::time::SystemTime::now();
    let simulation = Simulation::start(&bundles, port, 20, 18, dir.path().join("acked.txt"));
    std::thread::sleep(Duration::from_secs(5));
    std::fs::write(&clock, "-3h\n").unwrap();
    std::thread::sleep(Duration::from_secs(5));
    std::fs::write(&clock, "+3h\n").unwrap();
    let (summary, acknowledged) = simulation.finish();

    assert_eq!(
        summary["reconnects"], 0,
        "no device lost its connection: {summary}"
    );
    assert_eq!(
        summary["acknowledged"], summary["sent"],
        "everything sent was acknowledged: {summary}"
    );
    assert_all_stored(&acknowledged, &stored_events(&data).await);
    // Events were received, and stored, at the time Warden's clock said: in the past while it was
    // behind, in the future once it was ahead.
    let real_start = started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut database = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        data.join("warden.db").display()
    ))
    .await
    .unwrap();
    let (behind, ahead): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(received_at < ?1 - 7200000), 0), COALESCE(SUM(received_at > ?1 + 7200000), 0) \
         FROM device_events WHERE topic LIKE 'devices/%/events'",
    )
    .bind(real_start)
    .fetch_one(&mut database)
    .await
    .unwrap();
    assert!(
        behind > 100 && ahead > 100,
        "events received while the clock was behind ({behind}) and ahead ({ahead})"
    );
    server.stop_cleanly();
}

/// A rule sends `/slow/…` to a service that accepts connections and never answers: each caller
/// gets 504 after the upstream timeout, without the upstream's address, and the rest of Warden
/// answers as quickly as ever meanwhile.
#[tokio::test]
async fn a_slow_upstream_is_answered_504_and_holds_nothing_else_up() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            connections.push(connection);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    let slow_rule = format!(
        "rules:\n  - id: slow\n    match: {{ url: \"/slow/<.*>\", methods: [GET] }}\n    \
         authenticators: [{{ handler: anonymous }}]\n    authorizer: {{ handler: allow }}\n    \
         upstream: {{ url: \"http://{upstream}\" }}\n"
    );
    std::fs::write(
        &rules,
        gateway::SHIPPED_RULES.replacen("rules:\n", &slow_rule, 1),
    )
    .unwrap();
    let app = TestApp::spawn_with(|config| {
        config.gateway.rules_file = rules.to_str().unwrap().to_owned();
        config.gateway.upstream_timeout_seconds = 2;
    })
    .await;

    let started = Instant::now();
    let slow: Vec<_> = (0..8)
        .map(|n| {
            let client = app.client.clone();
            let url = app.url(&format!("/slow/{n}"));
            tokio::spawn(async move {
                let response = client.get(url).send().await.unwrap();
                (
                    response.status(),
                    response.text().await.unwrap(),
                    started.elapsed(),
                )
            })
        })
        .collect();
    // While eight callers wait on the silent upstream, Warden's own routes answer at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "readiness took {:?} while the upstream stalled",
        asked.elapsed()
    );
    for call in slow {
        let (status, body, took) = call.await.unwrap();
        assert_eq!(status, 504, "{body}");
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(6),
            "answered after {took:?}, the upstream timeout being 2 s"
        );
        assert!(
            !body.contains(&upstream.port().to_string()) && !body.contains("127.0.0.1"),
            "the answer does not reveal the upstream: {body}"
        );
    }
    held.abort();
}
