//! The command line's shape, as clap derives it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use server::config::Settings;

use crate::Failure;

#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    about = "Warden: a self-hosted, secure cloud for connected home appliances"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command that touches Warden's data understands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The configuration file (TOML). Settings are documented in docs/configuration.md.
    #[arg(long, global = true, env = "WARDEN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory (overrides the `data_dir` setting).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl GlobalArgs {
    /// The validated settings: file, environment, then these flags and `extra` ones.
    pub fn load(&self, extra: &[(&'static str, String)]) -> Result<Settings, Failure> {
        let mut flags: Vec<(&str, String)> = extra.to_vec();
        if let Some(dir) = &self.data_dir {
            flags.push(("data_dir", dir.display().to_string()));
        }
        server::config::load(self.config.as_deref(), &flags)
            .map_err(|error| Failure::Input(error.into()))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run Warden: every part in this process, with TLS, the database and the HTTP API.
    Serve(ServeArgs),
    /// Check a configuration file, or print the configuration reference.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Administer a Warden's data; works beside a running server.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The breached-password filter.
    #[command(subcommand)]
    Breach(BreachCommand),
    /// Tools that act as devices.
    #[command(subcommand)]
    Device(DeviceToolCommand),
    /// The gateway's access rules.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// The audit journal: verify that nothing in it was changed, removed or inserted; export it;
    /// read a device's access log as the person logged in.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Log in to a Warden as a person (OAuth2 authorization code with PKCE, through the browser);
    /// the `devices`, `grants` and `audit log` commands then act as that person.
    Login(LoginArgs),
    /// Forget the login (and revoke its refresh token).
    Logout,
    /// Your devices, as the person logged in: list, show, claim, release, transfer, settings,
    /// commands, events.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Technicians' access to your devices.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// A part's workload certificate, for parts that run apart.
    #[command(subcommand)]
    Workload(WorkloadCommand),
}

#[derive(Debug, Subcommand)]
pub enum WorkloadCommand {
    /// Renew the certificate in DIR (as `warden admin certs issue-workload` wrote it) through the
    /// device listener, with a new key, when it is due: after two thirds of its lifetime, or
    /// `--renew-before` before its end. Runs until Ctrl-C, or checks once with `--once`.
    Renew {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The part's name (the files are DIR/PART.crt and DIR/PART.key).
        #[arg(long)]
        part: String,
        /// The device listener, https://HOST:PORT.
        #[arg(long, value_name = "URL")]
        server: String,
        /// Renew this many seconds before the end instead.
        #[arg(long, value_name = "SECONDS")]
        renew_before: Option<u64>,
        /// Check once and exit.
        #[arg(long)]
        once: bool,
    },
}

/// Output options of the commands that act as the person logged in.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Print the API's JSON instead of a table (one JSON value; `--follow` prints one per line).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Warden's address.
    #[arg(long, env = "WARDEN_SERVER", default_value = "https://localhost:8443")]
    pub server: String,
    /// The root certificate to trust for the server (PEM). Without it, the CA in the local data
    /// directory (`DATA_DIR/tls/ca.crt`), as `warden serve` on this machine made it.
    #[arg(long, env = "WARDEN_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Extra scopes to ask for, as `admin` (a person gets only what their role allows).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// Print the address to open instead of opening a browser.
    #[arg(long)]
    pub no_browser: bool,
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// The devices you own or were granted.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// One device: model, firmware, whether it is online, and your access.
    Show {
        device_id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Claim a device with the code on its label.
    Claim {
        device_id: String,
        claim_code: String,
    },
    /// Factory reset: you stop owning the device, its settings and grants end.
    Release {
        device_id: String,
        /// Confirms the reset.
        #[arg(long)]
        yes: bool,
    },
    /// Hand the device to another account.
    Transfer { device_id: String, email: String },
    /// Desired and reported settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Send a command and wait for the device's answer.
    Command {
        device_id: String,
        name: String,
        /// The command's payload (JSON).
        #[arg(long)]
        payload: Option<String>,
        /// How long to wait for the answer, in seconds (0: do not wait).
        #[arg(long, default_value_t = 10)]
        wait: u64,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The device's events, newest first; with `--follow`, then every new one as it arrives.
    Events {
        device_id: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only events on this topic (`events`, `state`, `presence`, …).
        #[arg(long)]
        topic: Option<String>,
        /// Keep printing new events until interrupted.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Each setting, desired and reported.
    Get {
        device_id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Change desired settings: KEY=VALUE, the value as JSON when it is JSON, else as text.
    /// Other settings are kept; a change made meanwhile by someone else is read again first.
    Set {
        device_id: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        changes: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// Grant a technician access to one of your devices.
    Create {
        device_id: String,
        /// The technician's e-mail address.
        email: String,
        /// What they may do: read_status, read_events, write_settings, send_commands,
        /// manage_firmware (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// How long: 90m, 8h, 3d (at most 90 days).
        #[arg(long, default_value = "1d")]
        expires_in: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// The grants on a device, active or not.
    List {
        device_id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// End a grant now.
    Revoke { device_id: String, grant_id: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// As the person logged in: a device's access log (its owner), or with no device the whole
    /// journal (an administrator), newest first.
    Log {
        #[arg(long)]
        device: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        output: OutputArgs,
    },
    #[command(flatten)]
    Journal(JournalCommand),
}

/// What an operator does to the journal in the database.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Walks the whole journal (every checkpoint's signature, every entry's hash and link) and
    /// reports the first entry that was changed, removed or inserted. Exit code 1 when one was.
    Verify,
    /// Writes entries as NDJSON to standard output, oldest first (one JSON object per line, with
    /// the hashes that chain them).
    Export {
        /// Entries at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Entries before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// Only entries about this device.
        #[arg(long)]
        device: Option<String>,
        /// Only entries of this action (`account.login`, `device.read`, …).
        #[arg(long)]
        action: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Check a rules file (JSON, or YAML by its `.yaml`/`.yml` extension) as `warden serve` would
    /// load it, and explain each error with where it is. Exit code 2 when there are errors.
    CheckRules { file: PathBuf },
    /// Print the rules Warden ships with, as a start for a rules file of your own.
    ShippedRules,
}

#[derive(Debug, Subcommand)]
pub enum DeviceToolCommand {
    /// Simulate devices: each connects to the MQTT broker with its factory bundle (certificate
    /// and password over TLS), publishes events at the given rate and size, reports the desired
    /// settings it is sent, answers commands, and reconnects with backoff and jitter. Prints a
    /// live summary to stderr and the final one to stdout.
    Simulate(SimulateArgs),
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A device's factory bundle (a directory with device.json), or a directory of bundles
    /// (as `warden admin device create --out` writes them). Repeatable.
    #[arg(long = "bundle", value_name = "DIR", required_unless_present = "count")]
    pub bundles: Vec<PathBuf>,
    /// Make this many new devices in this Warden's registry (as `warden admin device create`
    /// does, with --data-dir / --config) and simulate them; their bundles are deleted at the end.
    #[arg(long, conflicts_with = "bundles")]
    pub count: Option<usize>,
    /// The model of the devices --count makes.
    #[arg(long, default_value = "simulator", requires = "count")]
    pub model: String,
    /// The broker as HOST:PORT (the host must be a name in the broker's certificate); default:
    /// what the bundles name.
    #[arg(long, value_name = "HOST:PORT")]
    pub broker: Option<String>,
    /// The device listener as HOST:PORT, where devices fetch firmware they are offered; default:
    /// what the bundles name.
    #[arg(long, value_name = "HOST:PORT")]
    pub device_listener: Option<String>,
    /// The share of firmware installs that fail on purpose (0 to 1), reported as failed.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    pub fail_installs: f64,
    /// Events per second per device (0: none).
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Size of each event's payload in bytes.
    #[arg(long, default_value_t = 64)]
    pub payload_bytes: usize,
    /// Stop after this many seconds (default: at Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// Write every acknowledged event to FILE, one `DEVICE_ID MESSAGE_ID` line each: what a
    /// durability check compares with the database.
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// Print the final summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BreachCommand {
    /// Build a filter file from HaveIBeenPwned's download (`SHA1HEX:COUNT` lines, sorted or not,
    /// plain or gzip). Interrupted (Ctrl-C, or killed), it keeps finished work in the work
    /// directory and reuses it when run again with the same inputs and options. Point
    /// `accounts.breached_filter` at the output.
    Build(BreachBuildArgs),
}

#[derive(Debug, Args)]
pub struct BreachBuildArgs {
    /// Input files in the download format (several are merged; duplicates count once).
    #[arg(long = "input", value_name = "FILE", required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// The filter file to write (through OUTPUT.partial and a rename).
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Leave out hashes seen fewer times than this.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_count: u64,
    /// Fingerprint size: 16 (false positives about 1 in 65,536, about 18 bits per hash) or 8
    /// (about 1 in 256, about 9 bits per hash).
    #[arg(long, value_name = "BITS", default_value_t = 16, value_parser = clap::value_parser!(u8).range(8..=16))]
    pub fingerprint_bits: u8,
    /// What to do with a line that is not `SHA1HEX:COUNT`: stop (`fail`), or report it with its
    /// line number and go on (`skip`).
    #[arg(long, value_name = "POLICY", default_value = "fail", value_parser = ["skip", "fail"])]
    pub bad_lines: String,
    /// Where intermediate files go (about 8 bytes per input hash): OUTPUT.work by default.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Shards built at once (each needs about 34 bytes per key of its shard); default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS listener, IP:PORT (port 0 picks a free one); overrides `http.listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address of a plain-HTTP listener that redirects to HTTPS; overrides `http.redirect_listen`.
    #[arg(long, value_name = "ADDR")]
    pub redirect_listen: Option<String>,
    /// Address of the mutual-TLS listener for devices; overrides `http.device_listen`.
    #[arg(long, value_name = "ADDR")]
    pub device_listen: Option<String>,
    /// Address of the MQTT-over-TLS listener; overrides `mqtt.listen`.
    #[arg(long, value_name = "ADDR")]
    pub mqtt_listen: Option<String>,
    /// Also make a demo customer with three simulated washers and a technician, and run the
    /// devices in this process (kept in DATA_DIR/demo; the banner shows the logins).
    #[arg(long)]
    pub demo: bool,
}

impl ServeArgs {
    pub fn flags(&self) -> Vec<(&'static str, String)> {
        let mut flags = Vec::new();
        if let Some(listen) = &self.listen {
            flags.push(("http.listen", listen.clone()));
        }
        if let Some(mqtt) = &self.mqtt_listen {
            flags.push(("mqtt.listen", mqtt.clone()));
        }
        if let Some(device) = &self.device_listen {
            flags.push(("http.device_listen", device.clone()));
        }
        if let Some(redirect) = &self.redirect_listen {
            flags.push(("http.redirect_listen", redirect.clone()));
        }
        flags
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate FILE together with the WARDEN_* environment, as `serve` would, without starting.
    Check { file: PathBuf },
    /// Print the configuration reference (Markdown), generated from the code.
    Reference,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// The database: schema status, integrity check, migrations.
    #[command(subcommand)]
    Db(DbCommand),
    /// Accounts.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Token signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// OAuth clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Warden's certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Certificates the CA issued: issue, list, revoke.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// The device registry: make devices, list them, new claim codes, settings schemas.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Firmware releases: upload one (hashed, signed into a manifest), list them, rotate the
    /// firmware-signing key.
    #[command(subcommand)]
    Firmware(FirmwareCommand),
}

#[derive(Debug, Subcommand)]
pub enum FirmwareCommand {
    /// Makes a release from FILE: copied into the firmware directory under its SHA-256, with a
    /// manifest signed by the firmware-signing key. Prints the release id.
    Upload {
        /// The device model it is for.
        #[arg(long)]
        model: String,
        /// Its semantic version, as 1.4.0.
        #[arg(long)]
        version: String,
        /// Release notes.
        #[arg(long, default_value = "")]
        notes: String,
        file: PathBuf,
    },
    /// Every release, newest first.
    List,
    /// A new firmware-signing key signs from now on; older ones stay published for the
    /// manifests they signed.
    RotateKey,
}

#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Make devices: each gets an id, an MQTT password, a claim code and (unless --csr) a key and
    /// certificate, written as a factory bundle to OUT/ID/. The secrets are shown there once;
    /// Warden keeps only hashes.
    Create {
        /// The product model, for example `washer-w500`.
        #[arg(long)]
        model: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// Where the bundles go, one directory per device.
        #[arg(long)]
        out: PathBuf,
        /// Make no key: each device sends a certificate request later (`warden admin certs issue`).
        #[arg(long)]
        csr: bool,
    },
    /// List devices in id order.
    List {
        /// Start after this device id.
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// A new claim code for an unowned device (after a release, or a lost label).
    ClaimCode { device_id: String },
    /// Show a device's tags, or replace them with TAGS (a rollout can target a tag).
    Tags {
        device_id: String,
        tags: Vec<String>,
        /// Remove every tag.
        #[arg(long, conflicts_with = "tags")]
        clear: bool,
    },
    /// Set a model's JSON Schema for desired settings (or remove it).
    Schema {
        model: String,
        /// The schema, a JSON file.
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "file")]
        remove: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the root and intermediate CA if the database has none (`warden serve` does this on
    /// first start too), and print the chain.
    Init,
    /// Print the CA chain (intermediate, then root) and whether the root's key is online.
    Show,
    /// Write the root's certificate and private key (PEM, mode 0600) to FILE, to keep offline.
    ExportRoot {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Remove the root's key from the database after exporting it: the root then signs nothing
    /// until its key is imported again.
    RemoveRootKey {
        /// Confirms that the key was exported and stored safely.
        #[arg(long)]
        exported: bool,
    },
    /// Bring the root's key back from a file written by `export-root`.
    ImportRootKey {
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Make a new intermediate signed by the root (whose key must be online). Certificates the
    /// old intermediate issued stay valid; servers load the new one at their next start.
    ReissueIntermediate,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Issue a device certificate from the device's CSR (`--csr`), or, for factories that cannot
    /// make keys on the device, a one-time bundle of key and certificate (`--bundle DIR`).
    Issue {
        #[arg(long, value_name = "ID")]
        device: String,
        /// The device's PKCS#10 request, PEM or DER. The certificate chain goes to stdout.
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "bundle",
            required_unless_present = "bundle"
        )]
        csr: Option<PathBuf>,
        /// Write DIR/ID.crt (certificate and chain), DIR/ID.key (mode 0600, not kept by Warden)
        /// and DIR/ca.pem.
        #[arg(long, value_name = "DIR")]
        bundle: Option<PathBuf>,
    },
    /// Issue certificates for many devices at once, as a factory line collects their requests:
    /// every `ID.csr` (PEM or DER) in CSR_DIR is for device ID. All requests are checked first; if
    /// any is refused, nothing is issued. Writes OUT/ID.crt (certificate and chain) and OUT/ca.pem;
    /// the inventory rows are committed in one transaction.
    IssueBatch {
        #[arg(long, value_name = "CSR_DIR")]
        csr_dir: PathBuf,
        #[arg(long, value_name = "OUT")]
        out: PathBuf,
    },
    /// Issue a short-lived certificate and key for a part of Warden that runs apart (mutual TLS
    /// between parts): writes DIR/PART.crt (with the intermediate), DIR/PART.key (mode 0600) and
    /// DIR/ca.pem.
    IssueWorkload {
        #[arg(long, value_name = "PART")]
        part: String,
        /// Validity in hours (1 to 72).
        #[arg(long, value_name = "HOURS", default_value_t = 24)]
        hours: u64,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Renew a device's certificate from a new CSR, whatever the renewal window says (an
    /// operator's decision); the old certificate must be Warden's, for a device, and unrevoked,
    /// and stays valid until it expires.
    Renew {
        /// The serial of the current certificate, in hex.
        serial: String,
        #[arg(long, value_name = "FILE")]
        csr: PathBuf,
    },
    /// List certificates: those of one device, or those expiring soon.
    List {
        #[arg(
            long,
            value_name = "ID",
            conflicts_with = "expiring_within_days",
            required_unless_present = "expiring_within_days"
        )]
        device: Option<String>,
        /// Unrevoked certificates that expire within this many days.
        #[arg(long, value_name = "DAYS")]
        expiring_within_days: Option<u64>,
    },
    /// Revoke one certificate by serial, or every certificate of a device.
    Revoke {
        /// The serial in hex, as `certs list` prints it.
        #[arg(conflicts_with = "device", required_unless_present = "device")]
        serial: Option<String>,
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// unspecified, key-compromise, affiliation-changed, superseded, cessation-of-operation
        /// or privilege-withdrawn.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List signing keys with when they sign and whether they are published.
    List,
    /// Publish a new signing key now; it starts signing after `oauth.key_publish_lead_seconds`,
    /// and the current key stays published until the tokens it signed have expired.
    Rotate,
    /// Withdraw a key at once (after a compromise): tokens it signed stop verifying.
    Retire { kid: String },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Register a client. A confidential client's secret is printed once and stored only hashed.
    Create {
        /// A name people recognise, shown on consent screens.
        #[arg(long)]
        name: String,
        /// Space-separated scopes the client may ask for.
        #[arg(long, default_value = "")]
        scope: String,
        /// A client that cannot keep a secret (browser app, CLI); it must use PKCE.
        #[arg(long)]
        public: bool,
        /// A redirect URI the authorization endpoint may send users back to (repeat for several).
        /// Matched exactly; a loopback URI (http://127.0.0.1/path) matches any port.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// One of Warden's own clients: users are not asked for consent.
        #[arg(long)]
        first_party: bool,
        /// A JWK Set file with the client's public keys: it authenticates with signed assertions
        /// (private_key_jwt) and gets no secret.
        #[arg(long, value_name = "FILE")]
        jwks: Option<std::path::PathBuf>,
    },
    /// List clients.
    List,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Show the backend, the schema version and the number of accounts.
    Status,
    /// Check the database's integrity; exits 1 when it finds a problem.
    Check,
    /// Bring the schema up to date (`serve` does this at start too).
    Migrate,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Import accounts from a JSON-lines file ({"email", "password_hash" (bcrypt or Argon2id),
    /// "role"}). Every line is checked first; a file with a bad line imports nothing. Accounts
    /// whose e-mail exists already are skipped, so an interrupted import can simply be run again.
    Import {
        file: PathBuf,
        /// Accounts written per transaction; each committed batch is reported.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch_size: u32,
    },
    /// List accounts.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change an account's role (customer, technician, admin).
    SetRole { email: String, role: String },
}
