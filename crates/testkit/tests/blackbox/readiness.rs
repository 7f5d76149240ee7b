//! Liveness and readiness as a load balancer sees them, including when the database goes away.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use testkit::TestApp;
use testkit::postgres::Cluster;

#[tokio::test]
async fn healthz_and_readyz_answer_on_the_default_sqlite_database() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_when_postgresql_is_gone_and_recovers_when_it_is_back() {
    // A cluster of its own: stopping the shared one would break the other tests.
    let cluster = Cluster::start();
    let url = cluster.create_database().await;
    let app = TestApp::spawn_on(&url).await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);

    tokio::task::block_in_place(|| cluster.stop());
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "no internals: {body}"
    );
    assert_eq!(
        app.get("/healthz").await.status(),
        StatusCode::OK,
        "the process itself is alive"
    );

    tokio::task::block_in_place(|| cluster.resume());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = app.get("/readyz").await.status();
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readyz stayed {status} after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
