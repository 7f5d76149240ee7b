//! Replicas: several `warden serve` processes on one PostgreSQL database, as a cluster runs them.
//! Background jobs (rollouts, purges, audit checkpoints, event retention) run on one replica at a
//! time; when it dies another takes them over once its leases end, and when it stops it hands
//! them over at once. With the throttle counters in the database, replicas enforce a limit
//! together.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::postgres::Cluster;
use testkit::{WardenProcess, browser};

const JOBS: [&str; 4] = ["rollouts", "purge", "audit", "event-retention"];

/// The key that seals the CA in the database: every replica needs the same one.
const PKI_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// The key of the hashes of client secrets and device passwords: the same on every replica.
const SECRET_KEY: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

/// A replica in `dir` on `database`, with the secrets every replica shares, as a cluster's
/// replicas get them from one secret store.
fn replica(dir: &Path, database: &str, settings: &[(&str, &str)]) -> (WardenProcess, PathBuf) {
    let shared = [
        ("WARDEN_LOG_LEVEL", "warn"),
        ("WARDEN_DATABASE_URL", database),
        ("WARDEN_PKI_ENCRYPTION_KEY", PKI_KEY),
        ("WARDEN_OAUTH_SECRET_KEY", SECRET_KEY),
        ("WARDEN_OAUTH_ISSUER", "https://warden.test"),
    ];
    let process = WardenProcess::serve_with_env(dir, &[], &[&shared, settings].concat());
    (process, dir.join("tls/ca.crt"))
}

/// `GET path` on a replica.
async fn get(replica: &(WardenProcess, PathBuf), path: &str) -> reqwest::Response {
    let (process, ca) = replica;
    browser(ca, process.https)
        .get(format!("https://localhost:{}{path}", process.https.port()))
        .send()
        .await
        .unwrap()
}

/// A replica's `warden_job_lease_held` and `warden_job_rounds_total` for `job` (0 when absent).
async fn job(replica: &(WardenProcess, PathBuf), job: &str) -> (f64, f64) {
    let text = get(replica, "/metrics").await.text().await.unwrap();
    let value = |name: &str| {
        let prefix = format!("{name}{{job=\"{job}\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0.0, |value| value.parse().unwrap())
    };
    (
        value("warden_job_lease_held"),
        value("warden_job_rounds_total"),
    )
}

/// Waits until `replica` holds the lease on every one of `jobs`; the time it took.
async fn until_it_holds(replica: &(WardenProcess, PathBuf), jobs: &[&str]) -> Duration {
    let started = Instant::now();
    loop {
        let mut all = true;
        for name in jobs {
            all &= job(replica, name).await.0 == 1.0;
        }
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the replica did not take {jobs:?} over:\n{}",
            replica.0.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_jobs_run_on_one_replica_and_move_when_it_dies_or_stops() {
    let database = Cluster::shared().create_database().await.to_string();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    // Audit checkpoints every second, so the audit job's lease is as short as rollouts'.
    let fast_audit = [("WARDEN_AUDIT_CHECKPOINT_SECONDS", "1")];
    let mut first = replica(&a, &database, &fast_audit);
    until_it_holds(&first, &JOBS).await;
    let mut second = replica(&b, &database, &fast_audit);

    // Both run every job's loop, but only the first runs the rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for name in JOBS {
        let (held, rounds) = job(&first, name).await;
        assert_eq!((held, rounds > 0.0), (1.0, true), "{name} on the first");
        assert_eq!(job(&second, name).await, (0.0, 0.0), "{name} on the second");
    }
    let before = job(&first, "rollouts").await.1;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(job(&first, "rollouts").await.1 > before);
    assert_eq!(job(&second, "rollouts").await, (0.0, 0.0));

    // The first dies: its leases on the one-second jobs end 12 s after its last round, and the
    // second takes those over then.
    first.0.child.kill().unwrap();
    first.0.child.wait().unwrap();
    let took = until_it_holds(&second, &["rollouts", "audit"]).await;
    assert!(
        took >= Duration::from_secs(5),
        "taken over after {took:?}, before the dead replica's lease ended"
    );

    // A third joins and runs nothing; the second stops cleanly and hands its leases over at once.
    let third = replica(&c, &database, &fast_audit);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(job(&third, "rollouts").await, (0.0, 0.0));
    second.0.stop_cleanly();
    let took = until_it_holds(&third, &["rollouts", "audit"]).await;
    assert!(
        took < Duration::from_secs(8),
        "a released lease was taken over after {took:?}"
    );
}

/// Rules with one throttled route: `/healthz`, 10 an hour in all (per rule), whoever asks.
const THROTTLED_HEALTH: &str = "\
rules:
  - id: health
    match: { url: \"/healthz\", methods: [GET] }
    authenticators: [{ handler: noop }]
    authorizer: { handler: allow }
    throttle: { limits: [{ per: rule, rate: 10/hour }] }
    upstream: { url: \"warden://health\" }
";

/// How many of `count` requests to `/healthz`, alternating between the replicas, were let
/// through (200); every other answer must be 429.
async fn health_passed(replicas: &[&(WardenProcess, PathBuf)], count: usize) -> usize {
    let mut passed = 0;
    for round in 0..count {
        let status = get(replicas[round % replicas.len()], "/healthz")
            .await
            .status()
            .as_u16();
        assert!(matches!(status, 200 | 429), "{status}");
        passed += usize::from(status == 200);
    }
    passed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_the_throttle_in_the_database_enforce_one_limit_together() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, THROTTLED_HEALTH).unwrap();
    let rules = rules.to_str().unwrap();
    for (store, expected) in [("database", 10), ("memory", 20)] {
        let database = Cluster::shared().create_database().await.to_string();
        let settings = [
            ("WARDEN_GATEWAY_RULES_FILE", rules),
            ("WARDEN_GATEWAY_THROTTLE_STORE", store),
        ];
        let (a, b) = (
            dir.path().join(format!("{store}-a")),
            dir.path().join(format!("{store}-b")),
        );
        let first = replica(&a, &database, &settings);
        let second = replica(&b, &database, &settings);
        // 30 requests, 15 to each: together 10 pass; apart, each lets its own 10 through.
        let passed = health_passed(&[&first, &second], 30).await;
        assert_eq!(passed, expected, "throttle store {store}");
    }
}
