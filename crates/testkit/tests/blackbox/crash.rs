//! `kill -9` in the middle of a burst of writes: the database opens, passes its integrity check,
//! and holds everything that was reported committed.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use store::{DatabaseUrl, Store, StoreOptions};
use testkit::simulation::{Simulation, assert_all_stored, free_port, make_devices, stored_events};
use testkit::{WardenProcess, warden_command};

const BCRYPT: &str = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
const ACCOUNTS: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_of_writes_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let import = dir.path().join("accounts.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&import).unwrap());
    for n in 0..ACCOUNTS {
        writeln!(
            file,
            r#"{{"email":"user{n}@example.com","password_hash":"{BCRYPT}"}}"#
        )
        .unwrap();
    }
    file.flush().unwrap();
    drop(file);

    // The server runs on the same database while the admin import writes to it.
    let mut server = WardenProcess::serve(&data, &[]);
    let mut writer = warden_command(&[
        "admin",
        "users",
        "import",
        "--data-dir",
        &data_arg,
        "--batch-size",
        "50",
    ])
    .arg(&import)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
    let mut committed = 0;
    while committed < 1_000 {
        let line = lines
            .next()
            .expect("the import ended before it was killed")
            .unwrap();
        if let Some(rest) = line.strip_prefix("committed ") {
            committed = rest.split(' ').next().unwrap().parse::<u64>().unwrap();
        }
    }
    // SIGKILL both processes mid-burst: no handler runs, nothing is flushed on the way out.
    writer.kill().unwrap();
    server.child.kill().unwrap();
    writer.wait().unwrap();
    server.child.wait().unwrap();
    assert!(
        committed < ACCOUNTS,
        "the import must still have been writing"
    );

    let check = warden_command(&["admin", "db", "check", "--data-dir", &data_arg])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("integrity ok"));

    let url = DatabaseUrl::sqlite_file(&data.join("warden.db"));
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    let stored = store.users().count().await.unwrap();
    assert!(
        stored >= committed,
        "{committed} were reported committed but only {stored} are stored"
    );
    store.close().await;

    // Running the import again finishes the job without duplicates.
    let rerun = warden_command(&["admin", "users", "import", "--data-dir", &data_arg])
        .arg(&import)
        .output()
        .unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    let store = Store::connect(&url, &StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.users().count().await.unwrap(), ACCOUNTS);
    store.close().await;

    // And the server starts again on the database it was killed on.
    let restarted = WardenProcess::serve(&data, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(restarted.https).is_err() {
        assert!(
            Instant::now() < deadline,
            "the restarted server does not accept connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGKILL in the middle of a QoS 1 stream from `warden device simulate`: after a restart on the
/// same port the devices reconnect and send again what was never acknowledged, and every event
/// a device saw acknowledged is in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_qos_1_stream_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bundles = dir.path().join("bundles");
    // The broker's port is pinned so that the restarted server is where the devices look.
    let port = free_port();
    let mqtt_listen = format!("127.0.0.1:{port}");
    let mut server = WardenProcess::serve(&data, &["--mqtt-listen", &mqtt_listen]);
    make_devices(&data, "oven-x1", 10, &bundles);

    let simulation = Simulation::start(&bundles, port, 200, 15, dir.path().join("acked.txt"));
    // Ten devices at 200 events per second each: the stream is in full flow after 4 s, with
    // events arriving during every commit.
    std::thread::sleep(Duration::from_secs(4));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut restarted = WardenProcess::serve(&data, &["--mqtt-listen", &mqtt_listen]);

    let (summary, acknowledged) = simulation.finish();
    assert!(
        summary["reconnects"].as_u64().unwrap() >= 10,
        "every device lost its connection to the killed server: {summary}"
    );
    assert_eq!(
        restarted
            .signal_and_wait("TERM", Duration::from_secs(20))
            .map(|status| status.success()),
        Some(true)
    );
    assert!(
        acknowledged.len() > 1_000,
        "the devices published before and after the kill: {summary}"
    );
    assert_all_stored(&acknowledged, &stored_events(&data).await);
}
