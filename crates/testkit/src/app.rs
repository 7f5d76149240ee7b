//! A Warden running inside the test process, with an HTTPS client that trusts its CA.

use std::sync::Arc;
use std::time::Duration;

use model::{Clock, ManualClock, SystemClock};

use server::RunningWarden;
use server::config::{Config, Settings};
use store::DatabaseUrl;
use tempfile::TempDir;

/// A running Warden on a free port, with its own data directory that is removed afterwards.
#[derive(Debug)]
pub struct TestApp {
    pub warden: RunningWarden,
    /// An HTTPS client that trusts the Warden's CA and reaches it as `localhost`.
    pub client: reqwest::Client,
    /// `https://localhost:PORT`, without a trailing slash.
    pub base_url: String,
    pub settings: Settings,
    /// Warden's clock: moves only when the test moves it.
    pub clock: ManualClock,
    pub data_dir: TempDir,
}

impl TestApp {
    /// Warden with the embedded defaults (SQLite), as `warden serve` runs it.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Warden with changed settings, for example a PostgreSQL database.
    pub async fn spawn_with(change: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: data_dir.path().to_path_buf(),
            ..Config::default()
        };
        config.http.listen = "127.0.0.1:0".into();
        config.http.device_listen = "127.0.0.1:0".into();
        config.mqtt.listen = "127.0.0.1:0".into();
        config.http.shutdown_grace_seconds = 2;
        // Key changes made by `warden admin keys` in a test are seen at the next request.
        config.oauth.cache_seconds = 0;
        change(&mut config);
        let settings = config
            .validate()
            .unwrap_or_else(|e| panic!("test settings invalid: {e:?}"));
        Self::start(settings, ManualClock::new(SystemClock.now()), data_dir).await
    }

    async fn start(settings: Settings, clock: ManualClock, data_dir: TempDir) -> Self {
        let warden = server::start(&settings, Arc::new(clock.clone()))
            .await
            .unwrap();
        let client = browser_for(&warden);
        let base_url = format!("https://localhost:{}", warden.addresses.https.port());
        Self {
            warden,
            client,
            base_url,
            settings,
            clock,
            data_dir,
        }
    }

    /// A Warden on the given database URL.
    pub async fn spawn_on(database: &DatabaseUrl) -> Self {
        let url = match database {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => url.clone(),
        };
        Self::spawn_with(|config| {
            config.database.url = url;
            config.database.acquire_timeout_seconds = 2;
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Another browser: its own cookies, no session.
    pub fn browser(&self) -> reqwest::Client {
        browser_for(&self.warden)
    }

    /// The hidden CSRF field of the form on `path`, fetched as a browser would (which also
    /// stores the CSRF cookie in the client).
    pub async fn csrf(&self, path: &str) -> String {
        self.csrf_in(&self.client, path).await
    }

    /// [`TestApp::csrf`] in another browser.
    pub async fn csrf_in(&self, browser: &reqwest::Client, path: &str) -> String {
        let html = browser
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        csrf_field(&html)
    }

    /// Fills in and sends the sign-up form.
    pub async fn signup(&self, email: &str, password: &str) -> reqwest::Response {
        let token = self.csrf("/signup").await;
        self.client
            .post(self.url("/signup"))
            .form(&[("email", email), ("password", password), ("csrf", &token)])
            .send()
            .await
            .unwrap()
    }

    /// Fills in and sends the login form, asking to go to `next` afterwards.
    pub async fn login(&self, email: &str, password: &str, next: &str) -> reqwest::Response {
        self.login_in(&self.client, email, password, next).await
    }

    /// [`TestApp::login`] in another browser.
    pub async fn login_in(
        &self,
        browser: &reqwest::Client,
        email: &str,
        password: &str,
        next: &str,
    ) -> reqwest::Response {
        log_in(browser, &self.base_url, email, password, next).await
    }

    /// Logs the client's browser session out.
    pub async fn logout(&self) {
        let token = self.csrf("/login").await;
        let response = self
            .client
            .post(self.url("/logout"))
            .form(&[("csrf", token.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    }

    pub async fn stop(self) {
        self.warden.shutdown().await;
    }

    /// Stops this Warden and starts it again on the same data directory and settings, as after
    /// a restart of the process: what it kept in memory only (retained MQTT messages, caches) is
    /// gone. Listeners come up on new ports.
    pub async fn restart(self) -> Self {
        self.restart_after(async {}).await
    }

    /// Stops this Warden, runs `meanwhile`, and starts it again on the same data directory.
    pub async fn restart_after(self, meanwhile: impl Future<Output = ()>) -> Self {
        let Self {
            warden,
            settings,
            clock,
            data_dir,
            ..
        } = self;
        warden.shutdown().await;
        meanwhile.await;
        Self::start(settings, clock, data_dir).await
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Fills in and sends the login form of the Warden at `base_url` in `browser`, asking to go to
/// `next` afterwards.
pub async fn log_in(
    browser: &reqwest::Client,
    base_url: &str,
    email: &str,
    password: &str,
    next: &str,
) -> reqwest::Response {
    let page = browser
        .get(format!("{base_url}/login?next={}", urlencode(next)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf_field(&page);
    browser
        .post(format!("{base_url}/login"))
        .form(&[
            ("email", email),
            ("password", password),
            ("csrf", &token),
            ("next", next),
        ])
        .send()
        .await
        .unwrap()
}

/// The value of the hidden CSRF field of the form in `html`.
pub fn csrf_field(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("the form has a CSRF field") + marker.len();
    html[start..start + 43].to_owned()
}

fn browser_for(warden: &RunningWarden) -> reqwest::Client {
    browser(&warden.tls_files.ca_cert, warden.addresses.https)
}

/// A browser-like HTTPS client: trusts the CA in `ca_file`, reaches `https` as `localhost`, keeps
/// cookies and does not follow redirects (tests look at each one).
pub fn browser(ca_file: &std::path::Path, https: std::net::SocketAddr) -> reqwest::Client {
    let ca = std::fs::read(ca_file).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .resolve("localhost", https)
        .timeout(Duration::from_secs(30))
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
