//! Warden's composition root: turns [`config::Settings`] into a running Warden.
//!
//! This is the one crate that reads files and the environment, binds sockets and spawns the tasks
//! that serve them. [`start`] brings every part up and returns a [`RunningWarden`] that knows its
//! bound addresses and shuts down on request; [`run_until_signal`] is what `warden serve` calls.

pub mod audit;
pub mod ca;
pub mod config;
mod events;
mod external;
pub mod firmware;
mod gateway;
mod jobs;
mod listen;
mod mqtt;
pub mod signing;
mod telemetry;
pub mod tls;
pub mod workload;

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use accounts::breached::{self, BreachedPasswords};
use accounts::password::{HashCost, Hasher};
use anyhow::Context;
use http_api::{
    ActiveTokens, ApiContext, BrokerSessions, ClientCache, DeviceContext, HttpMetrics, Identity,
    KeyCache, Limits, OAuthSettings, PkiContext,
};
use model::{Clock, SystemClock};
use oauth::client::SecretHasher;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use store::{Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, ThrottleStore, TlsSettings};
use crate::tls::{ServerCertificate, TlsFiles};

pub use telemetry::init_logging;

/// The file in the data directory that names every bound address, for scripts and tests.
pub const ADDRESSES_FILE: &str = "addresses.json";

/// The server key client secrets are hashed under, in the data directory.
pub const CLIENT_SECRET_KEY_FILE: &str = "secrets/client-secret.key";

/// The longest an HTTP command sender waits for the device's answer in one request.
const MAX_COMMAND_WAIT: Duration = Duration::from_secs(30);

/// The addresses Warden actually listens on (port 0 in the settings becomes a real port here).
#[derive(Clone, Debug)]
pub struct Addresses {
    pub https: SocketAddr,
    pub http_redirect: Option<SocketAddr>,
    /// The mutual-TLS listener for devices.
    pub device: Option<SocketAddr>,
    /// The MQTT broker's TLS listener.
    pub mqtt: Option<SocketAddr>,
    /// The broker's MQTT-over-WebSocket listener (TLS).
    pub mqtt_websocket: Option<SocketAddr>,
    /// The MQTT development listener (plain, loopback, a broker of its own).
    pub mqtt_development: Option<SocketAddr>,
}

/// A Warden whose listeners are up. Dropping it does not stop it; call [`RunningWarden::shutdown`].
#[derive(Debug)]
pub struct RunningWarden {
    pub addresses: Addresses,
    pub store: Store,
    pub tls_files: TlsFiles,
    /// The URL a person opens: `https://HOSTNAME:PORT/`.
    pub base_url: String,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningWarden {
    /// Stops accepting connections, lets requests in flight finish within the grace period, and
    /// closes the database.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.store.close().await;
    }
}

/// Brings every part of Warden up: data directory, TLS material, database (with migrations),
/// HTTP listeners.
pub async fn start(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<RunningWarden> {
    let data_dir = &settings.data_dir;
    fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict the data directory {}", data_dir.display()))?;

    let breached_passwords = open_breached_passwords(settings).await?;
    let store = open_store(settings).await?;

    let pki_key = Arc::new(ca::encryption_key(&settings.pki, data_dir)?);
    let certificate_authority = ca::load_or_create(&store, &pki_key, clock.now()).await?;
    let tls_files = TlsFiles::in_data_dir(data_dir);
    if let Some(issued) = tls::ensure_server_certificate(
        &settings.tls,
        &tls_files,
        &certificate_authority,
        clock.now(),
    )? {
        store.certificates().insert(&issued).await?;
    }
    let server_certificate = ServerCertificate::load(&settings.tls, &tls_files)?;
    let tls = tls::server_config(server_certificate.clone())?;
    let device_tls =
        tls::device_server_config(server_certificate.clone(), certificate_authority.root_pem())?;
    let mqtt_tls =
        tls::mqtt_server_config(server_certificate.clone(), certificate_authority.root_pem())?;
    let ca_root_pem = certificate_authority.root_pem().as_bytes().to_vec();

    let https_listener = bind(settings.https_listen, "http.listen").await?;
    let https = https_listener.local_addr()?;
    let (redirect_listener, http_redirect) =
        bind_optional(settings.redirect_listen, "http.redirect_listen").await?;
    let (device_listener, device) =
        bind_optional(settings.device_listen, "http.device_listen").await?;
    let (mqtt_listener, mqtt) = bind_optional(settings.mqtt_listen, "mqtt.listen").await?;
    let (mqtt_websocket_listener, mqtt_websocket) =
        bind_optional(settings.mqtt_websocket_listen, "mqtt.websocket_listen").await?;
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mqtt_development = match &settings.mqtt_development {
        Some((address, denied)) => {
            let (bound, serve) =
                ::mqtt::start_development(*address, denied.clone(), shutdown.clone()).await?;
            tasks.spawn(serve);
            Some(bound)
        }
        None => None,
    };
    let addresses = Addresses {
        https,
        http_redirect,
        device,
        mqtt,
        mqtt_websocket,
        mqtt_development,
    };
    let base_url = format!(
        "https://{}/",
        authority(settings.tls.primary_hostname(), https.port())
    );

    let clock_now = clock.now();
    signing::ensure_signing_key(&store, clock_now).await?;
    let issuer = settings
        .oauth_issuer
        .clone()
        .unwrap_or_else(|| base_url.trim_end_matches('/').to_owned());
    signing::ensure_builtin_clients(&store, &issuer, clock_now).await?;
    let oauth = OAuthSettings {
        audience: format!("{issuer}/api"),
        issuer,
        access_token_lifetime: settings.access_token_lifetime,
        refresh_reuse_grace: settings.refresh_reuse_grace,
        keys: KeyCache::new(settings.cache),
        clients: ClientCache::new(settings.cache),
        active_tokens: ActiveTokens::default(),
        secret_hasher: SecretHasher::new(signing::client_secret_key(settings)?),
    };

    let mut registry = Registry::with_prefix("warden");
    let (event_recorder, event_commits) =
        events::recorder(&store, &settings.events, &mut registry, &shutdown);
    tasks.spawn(event_commits);
    let (audit_journal, audit_commits) = audit::journal(&store, &shutdown);
    tasks.spawn(audit_commits);
    let audit_key = audit::checkpoint_key(&store, &pki_key, clock.now()).await?;
    firmware::ensure_key(&store, &pki_key, clock.now(), false).await?;

    let devices = Arc::new(DeviceContext {
        events: event_recorder,
        hashers: registry::DeviceHashers::new(&oauth.secret_hasher),
        command_answers: tokio::sync::Notify::new(),
        messages: std::sync::OnceLock::new(),
        // A sender waits for an answer within one request, so never as long as the request
        // timeout allows.
        max_command_wait: MAX_COMMAND_WAIT.min(
            settings
                .request_timeout
                .saturating_sub(Duration::from_secs(1)),
        ),
        broker_sessions: BrokerSessions::default(),
        firmware_files: Arc::new(firmware::DiskFiles {
            dir: settings.firmware_dir.clone(),
            store: store.clone(),
            key: pki_key.clone(),
        }),
    });
    let oauth = Arc::new(oauth);
    let pki = Arc::new(PkiContext::new(
        certificate_authority,
        settings.pki.crl_validity,
        settings.pki.device_certificate_validity,
        settings.pki.renewal_window,
    ));

    register_build_info(&mut registry);
    let jobs = jobs::Jobs::new(store.clone(), clock.clone(), &mut registry);
    let expiring = Family::<Vec<(String, String)>, Gauge>::default();
    registry.register(
        "pki_certificates_expiring",
        "Unrevoked certificates that expire within `within_days` days",
        expiring.clone(),
    );
    let metrics = Arc::new(HttpMetrics::register(&mut registry));
    let gateway_metrics = ::gateway::GatewayMetrics::register(&mut registry);
    let identity_clock = clock.clone();
    let identity = Identity {
        hasher: Hasher::new(HashCost::OWASP).context("cannot set up password hashing")?,
        breached: breached_passwords,
        clock,
        session_lifetime: settings.session_lifetime,
        hash_slots: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, usize::from),
        )),
        hash_wait: settings.hash_wait,
    };
    let context = ApiContext {
        store: store.clone(),
        metrics,
        registry: Arc::new(registry),
        limits: Limits {
            max_body_bytes: settings.max_body_bytes,
            request_timeout: settings.request_timeout,
        },
        identity: Arc::new(identity),
        oauth: oauth.clone(),
        pki: pki.clone(),
        devices,
        audit: audit_journal,
    };
    // Every request to the HTTPS listener passes the gateway; Warden's own router is its
    // upstream for `warden://` rules.
    let gateway = ::gateway::Gateway::new(
        gateway::initial_rules(settings.gateway.rules_file.as_deref())?,
        Arc::new(gateway::WardenFacts {
            context: context.clone(),
        }),
        http_api::router(context.clone()),
        identity_clock.clone(),
        gateway_metrics,
        ::gateway::GatewaySettings {
            upstream_timeout: settings.gateway.upstream_timeout,
            upstream_roots: vec![ca_root_pem.clone()],
            cors_origins: settings.gateway.cors_origins.clone(),
            max_body_bytes: settings.max_body_bytes,
            part_urls: settings.gateway.part_urls.clone(),
            shared_counters: match settings.gateway.throttle_store {
                ThrottleStore::Memory => None,
                ThrottleStore::Database => Some(Arc::new(gateway::DatabaseCounters {
                    store: store.clone(),
                })),
            },
        },
    )
    .context("cannot set up the gateway")?;

    // Each revocation epoch the watch reads, for whatever must react to revocations.
    let (revocations, _) = tokio::sync::watch::channel(0);
    tasks.spawn(listen::serve_https(
        https_listener,
        tls,
        gateway.clone().router(),
        shutdown.clone(),
        settings.shutdown_grace,
    ));
    if let Some(path) = settings.gateway.rules_file.clone() {
        tasks.spawn(gateway::reload_rules(
            gateway.clone(),
            path,
            shutdown.clone(),
        ));
    }
    tasks.spawn(gateway::upkeep(gateway, shutdown.clone()));
    if let Some(listener) = mqtt_listener {
        let authority = Arc::new(mqtt::BrokerAuthority {
            context: context.clone(),
        });
        let listeners = ::mqtt::Listeners {
            tls: listener,
            websocket: mqtt_websocket_listener,
        };
        let (broker, serve) =
            ::mqtt::Broker::start(listeners, mqtt_tls, authority, shutdown.clone()).await?;
        tasks.spawn(mqtt::recheck_sessions(
            broker.clone(),
            revocations.subscribe(),
            shutdown.clone(),
        ));
        // Set once, here, before any request can be served.
        let _ = context
            .devices
            .messages
            .set(Arc::new(mqtt::BrokerMessages { outlet: broker }));
        tasks.spawn(serve);
    }
    if let Some(external) = &settings.mqtt_external {
        let (outlet, run) =
            external::connect(context.clone(), external, &ca_root_pem, shutdown.clone())?;
        let _ = context
            .devices
            .messages
            .set(Arc::new(mqtt::BrokerMessages { outlet }));
        tasks.spawn(run);
    }
    tasks.spawn(tend_rollouts(
        context.clone(),
        jobs.lease("rollouts", ROLLOUT_INTERVAL),
        shutdown.clone(),
    ));
    if let Some(listener) = device_listener {
        tasks.spawn(listen::serve_https(
            listener,
            device_tls,
            http_api::device_router(context),
            shutdown.clone(),
            settings.shutdown_grace,
        ));
    }
    if let Some(listener) = redirect_listener {
        let https_base = base_url.trim_end_matches('/').to_owned();
        tasks.spawn(listen::serve_redirect(
            listener,
            https_base,
            shutdown.clone(),
            settings.shutdown_grace,
        ));
    }
    tasks.spawn(purge_periodically(
        store.clone(),
        identity_clock.clone(),
        jobs.lease("purge", PURGE_INTERVAL),
        shutdown.clone(),
    ));
    tasks.spawn(audit::upkeep(
        store.clone(),
        audit_key,
        settings.audit.clone(),
        identity_clock.clone(),
        jobs.lease("audit", settings.audit.checkpoint_interval),
        shutdown.clone(),
    ));
    tasks.spawn(events::enforce_retention(
        store.clone(),
        settings.events.clone(),
        identity_clock.clone(),
        jobs.lease("event-retention", events::RETENTION_INTERVAL),
        shutdown.clone(),
    ));
    tasks.spawn(watch_revocations(
        store.clone(),
        oauth,
        revocations,
        shutdown.clone(),
    ));
    tasks.spawn(renew_server_certificate(
        ServerRenewal {
            settings: settings.tls.clone(),
            files: tls_files.clone(),
            certificate: server_certificate,
            pki: pki.clone(),
            store: store.clone(),
            clock: identity_clock.clone(),
            interval: settings.tls_renewal_check,
        },
        shutdown.clone(),
    ));
    tasks.spawn(count_expiring_certificates(
        store.clone(),
        identity_clock,
        expiring,
        shutdown.clone(),
    ));
    write_addresses(data_dir, &addresses)?;
    tracing::info!(https = %addresses.https, redirect = ?addresses.http_redirect, device = ?addresses.device, mqtt = ?addresses.mqtt, mqtt_websocket = ?addresses.mqtt_websocket, mqtt_development = ?addresses.mqtt_development, "Warden is listening");
    Ok(RunningWarden {
        addresses,
        store,
        tls_files,
        base_url,
        shutdown,
        tasks,
    })
}

/// The configured breached-password filter, checked whole, or the built-in list.
async fn open_breached_passwords(
    settings: &Settings,
) -> anyhow::Result<Arc<dyn BreachedPasswords>> {
    let Some(path) = settings.breached_filter.clone() else {
        return Ok(Arc::new(breached::common_passwords()?));
    };
    // Checking a full filter reads a few gigabytes: off the async threads.
    let filter = tokio::task::spawn_blocking({
        let path = path.clone();
        move || breach::BreachFilter::open(&path)
    })
    .await?
    .with_context(|| {
        format!(
            "cannot use the breached-password filter {} (accounts.breached_filter)",
            path.display()
        )
    })?;
    tracing::info!(
        path = %path.display(),
        keys = filter.key_count(),
        bytes = filter.size_bytes(),
        "breached-password filter opened"
    );
    Ok(Arc::new(filter))
}

/// Opens the configured database and brings its schema up to date.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: settings.database_max_connections,
        acquire_timeout: settings.database_acquire_timeout,
    };
    Store::open(&settings.database, &options)
        .await
        .with_context(|| format!("cannot open the database {}", settings.database))
}

/// Opens the configured database without migrating it, for admin commands that only look.
pub async fn connect_store(settings: &Settings) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: 2,
        acquire_timeout: settings.database_acquire_timeout,
    };
    Store::connect(&settings.database, &options)
        .await
        .with_context(|| format!("cannot open the database {}", settings.database))
}

/// Starts Warden, prints where to find it, and runs until SIGINT or SIGTERM.
pub async fn run_until_signal(settings: &Settings) -> anyhow::Result<()> {
    run_until_signal_with(settings, async |_| Ok(Vec::new())).await
}

/// [`run_until_signal`] with `after_start` run once Warden is up (for example to seed demo data
/// and start simulated devices); the lines it returns close the banner.
pub async fn run_until_signal_with(
    settings: &Settings,
    after_start: impl AsyncFnOnce(&RunningWarden) -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<()> {
    // Listen for signals before anything is announced, so a signal sent right after the banner
    // (by a supervisor or a test) is a clean shutdown, not the default kill.
    let signals = Signals::install()?;
    raise_open_file_limit();
    let warden = start(settings, Arc::new(SystemClock)).await?;
    let extra = match after_start(&warden).await {
        Ok(lines) => lines,
        Err(error) => {
            warden.shutdown().await;
            return Err(error);
        }
    };
    println!("{}", banner(settings, &warden, extra));
    signals.wait().await;
    tracing::info!(grace = ?settings.shutdown_grace, "shutting down");
    warden.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Raises this process's soft limit of open files to its hard limit, for the programs that hold a
/// descriptor per device: the server (three per MQTT connection: the TLS socket and the loopback
/// pair to the broker, docs/mqtt.md), where the usual soft limit of 1024 would cap it at about 300
/// devices, and the device simulator (one per device). The hard limit is the operator's
/// (`LimitNOFILE=` in systemd, `ulimit -Hn`). A refusal is logged, not fatal.
pub fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "the open-file limit could not be raised"),
    }
}

fn banner(settings: &Settings, warden: &RunningWarden, extra: Vec<String>) -> String {
    let mut lines = vec![
        "Warden is running.".to_owned(),
        format!("  Open:            {}", warden.base_url),
        format!("  Health:          {}healthz", warden.base_url),
        format!("  Metrics:         {}metrics", warden.base_url),
        format!("  Listening on:    https {}", warden.addresses.https),
    ];
    if let Some(redirect) = warden.addresses.http_redirect {
        lines.push(format!(
            "                   http  {redirect} (redirects to https)"
        ));
    }
    if let Some(device) = warden.addresses.device {
        lines.push(format!(
            "                   https {device} (devices, with their certificate)"
        ));
    }
    if let Some(mqtt) = warden.addresses.mqtt {
        lines.push(format!("                   mqtts {mqtt} (the MQTT broker)"));
    }
    if let Some(websocket) = warden.addresses.mqtt_websocket {
        lines.push(format!(
            "                   wss   {websocket} (MQTT over WebSocket)"
        ));
    }
    if let Some(development) = warden.addresses.mqtt_development {
        lines.push(format!(
            "                   mqtt  {development} (development broker: anonymous, no TLS, no devices)"
        ));
    }
    lines.push(format!(
        "  Data directory:  {}",
        settings.data_dir.display()
    ));
    if settings.tls.provided.is_none() {
        lines.push(format!(
            "  Trust this CA to avoid certificate warnings: {}",
            warden.tls_files.ca_cert.display()
        ));
    }
    lines.extend(extra);
    lines.push("Press Ctrl-C to stop.".to_owned());
    lines.join("\n")
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// A listener for an optional setting, with the address it got.
async fn bind_optional(
    address: Option<SocketAddr>,
    setting: &str,
) -> anyhow::Result<(Option<TcpListener>, Option<SocketAddr>)> {
    let Some(address) = address else {
        return Ok((None, None));
    };
    let listener = bind(address, setting).await?;
    let bound = listener.local_addr()?;
    Ok((Some(listener), Some(bound)))
}

async fn bind(address: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| {
        format!("cannot listen on {address} (setting {setting}); is another program using it?")
    })
}

/// `host:port`, with IPv6 literals in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn write_addresses(data_dir: &std::path::Path, addresses: &Addresses) -> anyhow::Result<PathBuf> {
    let mut map = BTreeMap::new();
    map.insert("https", addresses.https.to_string());
    if let Some(device) = addresses.device {
        map.insert("device", device.to_string());
    }
    if let Some(mqtt) = addresses.mqtt {
        map.insert("mqtt", mqtt.to_string());
    }
    if let Some(websocket) = addresses.mqtt_websocket {
        map.insert("mqtt_websocket", websocket.to_string());
    }
    if let Some(development) = addresses.mqtt_development {
        map.insert("mqtt_development", development.to_string());
    }
    if let Some(redirect) = addresses.http_redirect {
        map.insert("http_redirect", redirect.to_string());
    }
    let path = data_dir.join(ADDRESSES_FILE);
    tls::write_atomically(&path, &serde_json::to_string_pretty(&map)?, 0o644)?;
    Ok(path)
}

/// How often expired sessions, codes and tokens are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);
/// The horizons `warden_pki_certificates_expiring` counts for, in days.
const EXPIRY_HORIZON_DAYS: [u64; 2] = [7, 30];
const EXPIRY_COUNT_INTERVAL: Duration = Duration::from_secs(60);
/// How often the revocation epoch is read: the longest a revocation made by another process
/// (another replica, the admin command) leaves a remembered token active here.
const REVOCATION_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Login failures are remembered this long (the throttle's memory).
const THROTTLE_MEMORY: Duration = Duration::from_secs(3600);

/// Deletes expired rows every [`PURGE_INTERVAL`] until shutdown, so that tables stay bounded.
/// How often running firmware rollouts are looked at.
const ROLLOUT_INTERVAL: Duration = Duration::from_secs(1);

/// Aborts, advances and completes firmware rollouts as their policies say, every
/// [`ROLLOUT_INTERVAL`], on the replica holding the lease. Each change is a conditional write
/// besides, so that a round on a replica whose lease just ended changes nothing twice
/// (docs/firmware.md).
async fn tend_rollouts(context: ApiContext, lease: jobs::Lease, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(ROLLOUT_INTERVAL) => {
                if lease.hold().await {
                    http_api::tend_rollouts(&context).await;
                }
            }
        }
    }
    lease.release().await;
}

async fn purge_periodically(
    store: Store,
    clock: Arc<dyn Clock>,
    lease: jobs::Lease,
    shutdown: CancellationToken,
) {
    let memory = i64::try_from(THROTTLE_MEMORY.as_millis()).unwrap_or(i64::MAX);
    loop {
        if lease.hold().await {
            match store.purge_expired(clock.now(), memory).await {
                Ok(report) if report.total() > 0 => {
                    tracing::info!(?report, "purged expired rows");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "purging expired rows failed; will retry"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(PURGE_INTERVAL) => {}
        }
    }
    lease.release().await;
}

/// Adopts revocations made by any process sharing the database, so that tokens this process
/// remembers as active, and live MQTT sessions, are checked again within one interval of a
/// revocation anywhere. `epochs` tells the others (the broker) each new epoch.
async fn watch_revocations(
    store: Store,
    oauth: Arc<OAuthSettings>,
    epochs: tokio::sync::watch::Sender<i64>,
    shutdown: CancellationToken,
) {
    loop {
        match store.grants().revocation_epoch().await {
            Ok(epoch) => {
                oauth.active_tokens.observe_epoch(epoch);
                epochs.send_if_modified(|known| std::mem::replace(known, epoch) != epoch);
            }
            Err(error) => {
                // Without the epoch nothing remembered can be trusted; tokens are checked afresh.
                oauth.active_tokens.forget_all();
                tracing::warn!(%error, "cannot read the revocation epoch; will retry");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(REVOCATION_POLL_INTERVAL) => {}
        }
    }
}

/// What the server-certificate renewal needs.
struct ServerRenewal {
    settings: TlsSettings,
    files: TlsFiles,
    certificate: Arc<ServerCertificate>,
    pki: Arc<PkiContext>,
    store: Store,
    clock: Arc<dyn Clock>,
    interval: Duration,
}

/// Every `interval`: re-issues the server certificate when it comes close to expiry (recording it
/// in the inventory) and loads the files again, so a renewed certificate, or an operator's new
/// one, is served without a restart.
async fn renew_server_certificate(renewal: ServerRenewal, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(renewal.interval) => {}
        }
        let issued = tls::ensure_server_certificate(
            &renewal.settings,
            &renewal.files,
            &renewal.pki.authority,
            renewal.clock.now(),
        );
        let outcome = match issued {
            Ok(Some(certificate)) => renewal
                .store
                .certificates()
                .insert(&certificate)
                .await
                .map_err(anyhow::Error::from),
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        }
        .and_then(|()| {
            renewal
                .certificate
                .reload(&renewal.settings, &renewal.files)
        });
        if let Err(error) = outcome {
            tracing::warn!(error = %format!("{error:#}"), "cannot renew or reload the server certificate; will retry");
        }
    }
}

/// Keeps `warden_pki_certificates_expiring` current: one count per horizon every minute.
async fn count_expiring_certificates(
    store: Store,
    clock: Arc<dyn Clock>,
    gauges: Family<Vec<(String, String)>, Gauge>,
    shutdown: CancellationToken,
) {
    loop {
        let now = clock.now();
        for days in EXPIRY_HORIZON_DAYS {
            let horizon = now.plus(Duration::from_secs(days * 86_400));
            match store.certificates().count_expiring(now, horizon).await {
                Ok(count) => {
                    gauges
                        .get_or_create(&vec![("within_days".to_owned(), days.to_string())])
                        .set(count);
                }
                Err(error) => tracing::warn!(%error, "cannot count expiring certificates"),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(EXPIRY_COUNT_INTERVAL) => {}
        }
    }
}

fn register_build_info(registry: &mut Registry) {
    let info = Family::<Vec<(String, String)>, Gauge>::default();
    info.get_or_create(&vec![(
        "version".to_owned(),
        env!("CARGO_PKG_VERSION").to_owned(),
    )])
    .set(1);
    registry.register(
        "build_info",
        "Warden's version; the value is always 1",
        info,
    );
}
