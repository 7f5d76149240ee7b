//! The broker hooks through the device listener, as VerneMQ and EMQX call them with the broker's
//! workload certificate: devices and people connect, and every publish and subscribe answer for
//! owner, technician, stranger and device matches the MQTT topic table; nobody else may ask.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::devices::Fleet;
use crate::pki::device_client;

/// The topics a device has, after `devices/{id}/`, in the order of the publish tables below.
pub(crate) const PUBLISH_TOPICS: [&str; 8] = [
    "events",
    "state/reported",
    "state/desired",
    "commands/start",
    "commands/start/response",
    "ota",
    "ota/status",
    "presence",
];

/// Subscription filters; `{id}` is the claimed device, `{other}` a device nobody owns.
pub(crate) const FILTERS: [&str; 14] = [
    "devices/{id}/events",
    "devices/{id}/state/reported",
    "devices/{id}/state/desired",
    "devices/{id}/commands/start",
    "devices/{id}/commands/+",
    "devices/{id}/commands/+/response",
    "devices/{id}/ota",
    "devices/{id}/ota/status",
    "devices/{id}/presence",
    "devices/{id}/#",
    "devices/+/events",
    "$share/store/devices/+/events",
    "#",
    "devices/{other}/events",
];

/// The topic table of DESIGN.md as the policy answers it, one row per client: the device itself,
/// its owner, a technician granted `read_status` and `write_settings`, and a stranger. Each row
/// has `y` (allowed) or `n` per topic of [`PUBLISH_TOPICS`] and per filter of [`FILTERS`].
pub(crate) const TABLE: [(&str, &str); 4] = [
    ("yynnynyy", "nnyyynynnnnnnn"),
    ("nnyynnnn", "yynnnynyynnnnn"),
    ("nnynnnnn", "nynnnynnynnnnn"),
    ("nnnnnnnn", "nnnnnnnnnnnnnn"),
];

/// The broker's side: a client presenting the `broker` workload certificate.
struct Broker {
    fleet: Fleet,
    client: reqwest::Client,
    port: u16,
    device_id: String,
    other_id: String,
}

/// One MQTT client of the tables: its client id and user name at the broker.
struct Mqtt {
    who: &'static str,
    client_id: String,
    username: String,
}

impl Broker {
    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    async fn vernemq(&self, hook: &str, body: Value) -> (StatusCode, Option<String>, Value) {
        let response = self
            .client
            .post(self.url("/hooks/vernemq"))
            .header("vernemq-hook", hook)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let cache = response
            .headers()
            .get("cache-control")
            .map(|value| value.to_str().unwrap().to_owned());
        (status, cache, response.json().await.unwrap_or(Value::Null))
    }

    /// `auth_on_register`'s result: `true` for `ok`, `false` for `not_allowed`.
    async fn register(&self, client_id: &str, username: &str, password: &str) -> bool {
        let (status, cache, answer) = self
            .vernemq(
                "auth_on_register",
                json!({
                    "peer_addr": "192.0.2.7", "peer_port": 50123, "mountpoint": "",
                    "client_id": client_id, "username": username, "password": password,
                    "clean_session": true,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        vernemq_verdict(&answer, cache.as_deref())
    }

    async fn emqx(&self, path: &str, body: Value) -> Value {
        let response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn emqx_authn(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
        common_name: &str,
    ) -> Value {
        self.emqx(
            "/hooks/emqx/authn",
            json!({
                "clientid": client_id, "username": username, "password": password,
                "peerhost": "192.0.2.7", "cert_common_name": common_name,
            }),
        )
        .await
    }

    fn topic(&self, suffix: &str) -> String {
        format!("devices/{}/{suffix}", self.device_id)
    }

    fn filter(&self, template: &str) -> String {
        template
            .replace("{id}", &self.device_id)
            .replace("{other}", &self.other_id)
    }

    /// Every publish topic through `auth_on_publish` (and `_m5` for the first); `expected` has
    /// one `y` (allowed) or `n` per topic.
    async fn assert_vernemq_publish(&self, client: &Mqtt, expected: &str) {
        let mut got = String::new();
        for (index, suffix) in PUBLISH_TOPICS.iter().enumerate() {
            let hook = if index == 0 {
                "auth_on_publish_m5"
            } else {
                "auth_on_publish"
            };
            let (status, cache, answer) = self
                .vernemq(
                    hook,
                    json!({
                        "username": client.username, "client_id": client.client_id,
                        "mountpoint": "", "qos": 1, "topic": self.topic(suffix),
                        "payload": "eyJ0ZW1wIjogNDB9", "retain": false,
                    }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            got.push(if vernemq_verdict(&answer, cache.as_deref()) {
                'y'
            } else {
                'n'
            });
        }
        assert_eq!(
            got, expected,
            "{} publishing {PUBLISH_TOPICS:?}",
            client.who
        );
    }

    /// One subscription with every filter, through `auth_on_subscribe`: each comes back, allowed
    /// ones with the QoS asked for and refused ones with 128; and the same through
    /// `auth_on_subscribe_m5`, refused ones with 135.
    async fn assert_vernemq_subscribe(&self, client: &Mqtt, expected: &str) {
        let filters: Vec<String> = FILTERS.iter().map(|f| self.filter(f)).collect();
        let topics: Vec<Value> = filters
            .iter()
            .map(|filter| json!({"topic": filter, "qos": 1}))
            .collect();
        let (status, cache, answer) = self
            .vernemq(
                "auth_on_subscribe",
                json!({
                    "client_id": client.client_id, "mountpoint": "",
                    "username": client.username, "topics": topics,
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["result"], "ok", "{answer}");
        assert_eq!(cache.as_deref(), Some("max-age=5"));
        let got = subscribe_verdicts(&answer["topics"], &filters, 128);
        assert_eq!(got, expected, "{} subscribing {filters:?}", client.who);

        let m5_topics: Vec<Value> = filters
            .iter()
            .map(|filter| {
                json!({"topic": filter, "qos": 1, "no_local": true, "rap": false,
                       "retain_handling": "send_retain"})
            })
            .collect();
        let (status, _, answer) = self
            .vernemq(
                "auth_on_subscribe_m5",
                json!({
                    "client_id": client.client_id, "mountpoint": "",
                    "username": client.username, "topics": m5_topics, "properties": {},
                }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["result"], "ok", "{answer}");
        let answered = &answer["modifiers"]["topics"];
        let got = subscribe_verdicts(answered, &filters, 135);
        assert_eq!(got, expected, "{} subscribing over MQTT 5", client.who);
        // Allowed filters keep their subscription options.
        for entry in answered.as_array().unwrap() {
            assert_eq!(entry["no_local"], true, "{entry}");
        }
    }

    /// The same table through EMQX's authorizer.
    async fn assert_emqx(&self, client: &Mqtt, publish: &str, subscribe: &str) {
        let mut got = String::new();
        for suffix in PUBLISH_TOPICS {
            got.push(
                self.emqx_authz(client, "publish", &self.topic(suffix))
                    .await,
            );
        }
        assert_eq!(got, publish, "{} publishing through EMQX", client.who);
        let mut got = String::new();
        for template in FILTERS {
            got.push(
                self.emqx_authz(client, "subscribe", &self.filter(template))
                    .await,
            );
        }
        assert_eq!(got, subscribe, "{} subscribing through EMQX", client.who);
    }

    async fn emqx_authz(&self, client: &Mqtt, action: &str, topic: &str) -> char {
        let answer = self
            .emqx(
                "/hooks/emqx/authz",
                json!({
                    "clientid": client.client_id, "username": client.username,
                    "topic": topic, "action": action,
                }),
            )
            .await;
        match answer["result"].as_str() {
            Some("allow") => 'y',
            Some("deny") => 'n',
            _ => panic!("{answer}"),
        }
    }
}

/// A VerneMQ answer's verdict; an allowed answer, and only an allowed one, may be cached.
fn vernemq_verdict(answer: &Value, cache: Option<&str>) -> bool {
    if answer["result"] == "ok" {
        assert_eq!(cache, Some("max-age=5"), "{answer}");
        true
    } else {
        assert_eq!(answer["result"], json!({"error": "not_allowed"}));
        assert!(
            cache.is_none_or(|cache| !cache.contains("max-age")),
            "a refusal is never cached: {cache:?}"
        );
        false
    }
}

/// `y`/`n` per filter of a subscribe answer: every filter back in order, allowed ones with the
/// QoS asked for (1), refused ones with `refused`.
fn subscribe_verdicts(answered: &Value, filters: &[String], refused: u64) -> String {
    let answered = answered.as_array().unwrap();
    assert_eq!(answered.len(), filters.len(), "{answered:?}");
    answered
        .iter()
        .zip(filters)
        .map(|(entry, filter)| {
            assert_eq!(entry["topic"], filter.as_str());
            match entry["qos"].as_u64() {
                Some(1) => 'y',
                Some(qos) if qos == refused => 'n',
                _ => panic!("{filter}: {entry}"),
            }
        })
        .collect()
}

async fn broker_with_devices() -> (Broker, Vec<Value>) {
    let fleet = Fleet::new().await;
    let admin = fleet.person("root@example.com", "admin").await;
    let devices = fleet.make_devices(&admin, 2).await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("broker");
    fleet.admin(&[
        "certs",
        "issue-workload",
        "--part",
        "broker",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let mut identity = std::fs::read(dir.join("broker.crt")).unwrap();
    identity.extend(std::fs::read(dir.join("broker.key")).unwrap());
    let client = device_client(&fleet.app, Some(&identity));
    let port = fleet.app.warden.addresses.device.unwrap().port();
    let broker = Broker {
        client,
        port,
        device_id: devices[0]["device_id"].as_str().unwrap().to_owned(),
        other_id: devices[1]["device_id"].as_str().unwrap().to_owned(),
        fleet,
    };
    (broker, devices)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_hooks_answer_connects_publishes_and_subscriptions_from_the_topic_table() {
    let (broker, devices) = broker_with_devices().await;
    let fleet = &broker.fleet;
    let device_id = broker.device_id.clone();
    let password = devices[0]["mqtt_password"].as_str().unwrap();
    let other_id = broker.other_id.clone();
    let other_password = devices[1]["mqtt_password"].as_str().unwrap();

    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, &devices[0]).await.0, StatusCode::OK);
    let technician = fleet.person("tech@example.com", "technician").await;
    let (status, grant) = fleet
        .grant(
            &owner,
            &device_id,
            "tech@example.com",
            &["read_status", "write_settings"],
            3600,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grant}");
    let stranger = fleet.person("stranger@example.com", "customer").await;

    // Connecting: a device with its password, under its own id only.
    assert!(!broker.register(&device_id, &device_id, "wrong").await);
    assert!(
        !broker.register(&device_id, &other_id, other_password).await,
        "another device's id under this client id"
    );
    assert!(
        !broker.register(&other_id, &other_id, password).await,
        "another device's id with this device's password"
    );
    assert!(broker.register(&device_id, &device_id, password).await);
    let (status, _, answer) = broker
        .vernemq(
            "auth_on_register_m5",
            json!({
                "peer_addr": "192.0.2.8", "peer_port": 50124, "mountpoint": "",
                "client_id": other_id, "username": other_id, "password": other_password,
                "clean_start": true, "properties": {},
            }),
        )
        .await;
    assert_eq!((status, &answer["result"]), (StatusCode::OK, &json!("ok")));

    // People connect with an access token as the password; anything else is refused.
    assert!(
        !broker
            .register("owner-phone", "owner@example.com", "not-a-token")
            .await
    );
    assert!(
        !broker
            .register(&device_id, "owner@example.com", &owner)
            .await,
        "a device's client id is the device's alone"
    );
    assert!(
        broker
            .register("owner-phone", "owner@example.com", &owner)
            .await
    );
    assert!(
        broker
            .register("tech-laptop", "tech@example.com", &technician)
            .await
    );
    assert!(
        broker
            .register("stranger-app", "stranger@example.com", &stranger)
            .await
    );
    // A mountpoint is outside the topic table.
    let (_, _, answer) = broker
        .vernemq(
            "auth_on_register",
            json!({"client_id": "owner-tablet", "username": "owner@example.com",
                   "password": owner, "mountpoint": "tenant-a"}),
        )
        .await;
    assert_eq!(answer["result"], json!({"error": "not_allowed"}));

    let clients = [
        Mqtt {
            who: "device",
            client_id: device_id.clone(),
            username: device_id.clone(),
        },
        Mqtt {
            who: "owner",
            client_id: "owner-phone".into(),
            username: "owner@example.com".into(),
        },
        Mqtt {
            who: "technician (read_status, write_settings)",
            client_id: "tech-laptop".into(),
            username: "tech@example.com".into(),
        },
        Mqtt {
            who: "stranger",
            client_id: "stranger-app".into(),
            username: "stranger@example.com".into(),
        },
    ];
    for (client, (publish, subscribe)) in clients.iter().zip(TABLE) {
        broker.assert_vernemq_publish(client, publish).await;
        broker.assert_vernemq_subscribe(client, subscribe).await;
    }

    // Later questions are answered only for the client id and user name that connected.
    let unknown = Mqtt {
        who: "a client id that never connected",
        client_id: "somebody-else".into(),
        username: "owner@example.com".into(),
    };
    broker.assert_vernemq_publish(&unknown, "nnnnnnnn").await;
    let renamed = Mqtt {
        who: "the owner's client id under another user name",
        client_id: "owner-phone".into(),
        username: "stranger@example.com".into(),
    };
    broker.assert_vernemq_publish(&renamed, "nnnnnnnn").await;
    let (status, _, answer) = broker
        .vernemq(
            "auth_on_publish",
            json!({"client_id": "owner-phone", "username": "owner@example.com",
                   "topic": "devices/+/state/desired", "payload": "", "qos": 0,
                   "retain": false, "mountpoint": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["result"],
        json!({"error": "not_allowed"}),
        "a wildcard topic"
    );

    // Revoking the grant takes effect at the next question.
    let grant_id = grant["grant_id"].as_str().unwrap();
    let (status, _) = fleet
        .call(
            Method::DELETE,
            &format!("/api/v1/devices/{device_id}/grants/{grant_id}"),
            &owner,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    broker.assert_vernemq_publish(&clients[2], "nnnnnnnn").await;

    // A hook this endpoint does not serve is a configuration mistake; unreadable bodies are refused.
    let (status, _, _) = broker.vernemq("on_publish", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, answer) = broker.vernemq("auth_on_publish", json!({"topic": 5})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["result"], json!({"error": "not_allowed"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emqx_authenticates_and_authorizes_through_the_same_table() {
    let (broker, devices) = broker_with_devices().await;
    let fleet = &broker.fleet;
    let device_id = broker.device_id.clone();
    let password = devices[0]["mqtt_password"].as_str().unwrap();
    let other_id = broker.other_id.clone();

    let owner = fleet.person("owner@example.com", "customer").await;
    assert_eq!(fleet.claim(&owner, &devices[0]).await.0, StatusCode::OK);
    let technician = fleet.person("tech@example.com", "technician").await;
    let (status, _) = fleet
        .grant(
            &owner,
            &device_id,
            "tech@example.com",
            &["read_status", "write_settings"],
            3600,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let stranger = fleet.person("stranger@example.com", "customer").await;

    let deny = json!({"result": "deny", "is_superuser": false});
    let allow = json!({"result": "allow", "is_superuser": false});
    assert_eq!(
        broker.emqx_authn(&device_id, &device_id, "wrong", "").await,
        deny
    );
    assert_eq!(
        broker
            .emqx_authn(&device_id, &device_id, password, &other_id)
            .await,
        deny,
        "the certificate names another device"
    );
    assert_eq!(
        broker
            .emqx_authn(&device_id, &device_id, password, &device_id)
            .await,
        allow
    );
    let person = broker
        .emqx_authn("owner-phone", "owner@example.com", &owner, "")
        .await;
    assert_eq!(person["result"], "allow", "{person}");
    assert_eq!(person["is_superuser"], false);
    assert!(person["expire_at"].as_i64().unwrap() > 0, "{person}");
    for (client_id, username, token) in [
        ("tech-laptop", "tech@example.com", &technician),
        ("stranger-app", "stranger@example.com", &stranger),
    ] {
        let answer = broker.emqx_authn(client_id, username, token, "").await;
        assert_eq!(answer["result"], "allow", "{answer}");
    }
    assert_eq!(
        broker
            .emqx("/hooks/emqx/authn", json!({"clientid": 7}))
            .await,
        deny,
        "an unreadable body is a refusal, never a status EMQX would ignore"
    );

    let clients = [
        (device_id.clone(), device_id.clone(), "device"),
        ("owner-phone".into(), "owner@example.com".into(), "owner"),
        (
            "tech-laptop".into(),
            "tech@example.com".into(),
            "technician",
        ),
        (
            "stranger-app".into(),
            "stranger@example.com".into(),
            "stranger",
        ),
    ];
    let table = [
        ("yynnynyy", "nnyyynynnnnnnn"),
        ("nnyynnnn", "yynnnynyynnnnn"),
        ("nnynnnnn", "nynnnynnynnnnn"),
        ("nnnnnnnn", "nnnnnnnnnnnnnn"),
    ];
    for ((client_id, username, who), (publish, subscribe)) in clients.into_iter().zip(table) {
        let client = Mqtt {
            who,
            client_id,
            username,
        };
        broker.assert_emqx(&client, publish, subscribe).await;
    }
    let stranger_client = Mqtt {
        who: "stranger",
        client_id: "stranger-app".into(),
        username: "stranger@example.com".into(),
    };
    assert_eq!(
        broker
            .emqx_authz(&stranger_client, "retain", &broker.topic("events"))
            .await,
        'n'
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_broker_workload_certificate_may_call_the_hooks() {
    let (broker, devices) = broker_with_devices().await;
    let fleet = &broker.fleet;
    let device_identity = format!(
        "{}{}",
        devices[0]["certificate_pem"].as_str().unwrap(),
        devices[0]["private_key_pem"].as_str().unwrap()
    );
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("gateway");
    fleet.admin(&[
        "certs",
        "issue-workload",
        "--part",
        "gateway",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let mut gateway_identity = std::fs::read(dir.join("gateway.crt")).unwrap();
    gateway_identity.extend(std::fs::read(dir.join("gateway.key")).unwrap());

    for (who, identity) in [
        ("a device", device_identity.as_bytes()),
        ("another part", &gateway_identity[..]),
    ] {
        let client = device_client(&fleet.app, Some(identity));
        for (path, hook) in [
            ("/hooks/vernemq", Some("auth_on_register")),
            ("/hooks/emqx/authn", None),
            ("/hooks/emqx/authz", None),
        ] {
            let mut request = client.post(broker.url(path)).json(&json!({
                "client_id": broker.device_id, "clientid": broker.device_id,
                "username": broker.device_id,
                "password": devices[0]["mqtt_password"], "topic": "x", "action": "publish",
            }));
            if let Some(hook) = hook {
                request = request.header("vernemq-hook", hook);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{who} {path}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "forbidden", "{who} {path}");
        }
    }
    // The main listener does not serve the hooks at all.
    let response = fleet
        .app
        .client
        .post(fleet.app.url("/hooks/emqx/authz"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
