//! `kill -9` in the middle of a burst of writes: the database opens, passes its integrity check,
//! and holds everything that was reported committed.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use store::{DatabaseUrl, Store, StoreOptions};
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
    let data_arg = data.to_str().unwrap().to_owned();
    let bundles = dir.path().join("bundles");
    let ledger = dir.path().join("acknowledged.txt");
    // The broker's port is pinned so that the restarted server is where the devices look.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mqtt_listen = format!("127.0.0.1:{port}");
    let mut server = WardenProcess::serve(&data, &["--mqtt-listen", &mqtt_listen]);
    let made = warden_command(&[
        "admin",
        "device",
        "create",
        "--data-dir",
        &data_arg,
        "--model",
        "oven-x1",
        "--count",
        "10",
        "--out",
        bundles.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let simulation = warden_command(&[
        "device",
        "simulate",
        "--bundle",
        bundles.to_str().unwrap(),
        "--broker",
        &format!("localhost:{port}"),
        "--rate",
        "200",
        "--duration",
        "15",
        "--ledger",
        ledger.to_str().unwrap(),
        "--json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Ten devices at 200 events per second each: the stream is in full flow after 4 s, with
    // events arriving during every commit.
    std::thread::sleep(Duration::from_secs(4));
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut restarted = WardenProcess::serve(&data, &["--mqtt-listen", &mqtt_listen]);

    let output = simulation.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
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

    let acknowledged: Vec<(String, String)> = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(|line| {
            let (device, message) = line.split_once(' ').unwrap();
            (device.to_owned(), message.to_owned())
        })
        .collect();
    assert!(
        acknowledged.len() > 1_000,
        "the devices published before and after the kill: {summary}"
    );
    let mut database = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        data.join("warden.db").display()
    ))
    .await
    .unwrap();
    let stored: std::collections::HashSet<(String, String)> = sqlx::query_as(
        "SELECT device_id, message_id FROM device_events WHERE topic LIKE 'devices/%/events'",
    )
    .fetch_all(&mut database)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|event| !stored.contains(*event))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events are not stored, for example {:?}",
        missing.len(),
        acknowledged.len(),
        missing.first()
    );
}
