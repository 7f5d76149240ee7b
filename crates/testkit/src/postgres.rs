//! Throwaway PostgreSQL servers for tests, from Debian's `postgresql` package.
//!
//! Each [`Cluster`] lives in a fresh temporary directory on a free loopback port. A small shell
//! supervisor owns the server and reads commands on its standard input; when the test process
//! ends, even by `kill -9`, that pipe closes and the supervisor stops the server and removes the
//! directory, so no server outlives its tests. PostgreSQL refuses to run as root; as root the
//! supervisor runs as the `postgres` user.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use store::DatabaseUrl;

const SUPERVISOR: &str = r#"
set -eu
bin=$1; port=$2
dir=$(mktemp -d /tmp/warden-pg-XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
"$bin/initdb" -D "$dir/data" -U warden -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
start() {
  "$bin/postgres" -D "$dir/data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 \
    -c fsync=off -c full_page_writes=off -c max_connections=300 >>"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 200); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U warden; then echo ready; return; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$dir/server.log" >&2; echo failed; pid=; return; fi
    sleep 0.05
  done
  echo failed
}
start
while read -r command; do
  case "$command" in
    stop) kill -INT "$pid"; wait "$pid" || true; pid=; echo stopped ;;
    start) start ;;
  esac
done
"#;

/// A PostgreSQL server of its own, stopped and deleted when dropped or when the process ends.
#[derive(Debug)]
pub struct Cluster {
    port: u16,
    control: Mutex<Option<(ChildStdin, BufReader<ChildStdout>)>>,
    supervisor: Child,
}

impl Cluster {
    /// Starts a new server; panics with what to install when PostgreSQL is missing.
    pub fn start() -> Self {
        let bin = bin_dir();
        let mut last_error = String::new();
        // The port is free when chosen but another program could take it first: try a few.
        for _ in 0..5 {
            let port = free_port();
            let mut command = supervisor_command();
            command
                .arg(SUPERVISOR)
                .arg("warden-pg")
                .arg(&bin)
                .arg(port.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            let mut supervisor = command
                .spawn()
                .expect("cannot run the PostgreSQL supervisor shell");
            let stdin = supervisor.stdin.take().unwrap();
            let mut stdout = BufReader::new(supervisor.stdout.take().unwrap());
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            if line.trim() == "ready" {
                return Self {
                    port,
                    control: Mutex::new(Some((stdin, stdout))),
                    supervisor,
                };
            }
            last_error = format!("supervisor said {line:?}");
            let _ = supervisor.kill();
            let _ = supervisor.wait();
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    /// The cluster every test shares; each test makes its own database in it.
    pub fn shared() -> &'static Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(Cluster::start)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a new, empty database and returns its URL.
    pub async fn create_database(&self) -> DatabaseUrl {
        let name = format!("test_{}", uuid_like());
        let admin = format!("postgres://warden@127.0.0.1:{}/postgres", self.port);
        let mut admin_connection = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
            .await
            .expect("cannot connect to the test PostgreSQL server");
        sqlx::Executor::execute(
            &mut admin_connection,
            format!("CREATE DATABASE {name}").as_str(),
        )
        .await
        .expect("cannot create a test database");
        DatabaseUrl::parse(&format!("postgres://warden@127.0.0.1:{}/{name}", self.port)).unwrap()
    }

    /// Stops the server (fast shutdown); its data stays for [`Cluster::resume`].
    pub fn stop(&self) {
        self.command("stop", "stopped");
    }

    /// Starts the server again after [`Cluster::stop`].
    pub fn resume(&self) {
        self.command("start", "ready");
    }

    fn command(&self, command: &str, expected: &str) {
        let mut control = self.control.lock().unwrap();
        let (stdin, stdout) = control.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            expected,
            "PostgreSQL supervisor, after {command}"
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Closing the supervisor's input makes it stop the server and delete the directory.
        let control = match self.control.get_mut() {
            Ok(control) => control,
            Err(poisoned) => poisoned.into_inner(),
        };
        drop(control.take());
        let _ = self.supervisor.wait();
    }
}

fn supervisor_command() -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false);
    if is_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", "sh", "-c"]);
        command
    } else {
        let mut command = Command::new("sh");
        command.arg("-c");
        command
    }
}

/// Where PostgreSQL's programs are: `$PG_BINDIR`, or the newest `/usr/lib/postgresql/*/bin`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed: run the tests with scripts/test, which installs it, \
             or `apt-get install postgresql` (or set PG_BINDIR)"
        )
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap()
}

fn uuid_like() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
