//! The real `warden` program as a child process, for what only a separate process can show:
//! exit codes, signals, and `kill -9` in the middle of writing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The `warden` binary, built by cargo once per test run with the same profile as the tests.
/// No `--target`: the build shares `target/debug` with the tests' own, so the dependencies the
/// tests compiled are not compiled a second time.
pub fn warden_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        escargot::CargoBuild::new()
            .package("cli")
            .bin("warden")
            .manifest_path(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
            .run()
            .expect("cannot build the warden binary")
            .path()
            .to_path_buf()
    })
}

/// `warden ARGS…` with a clean environment: no `WARDEN_*` variable of the test run leaks in.
pub fn warden_command(args: &[&str]) -> Command {
    let mut command = Command::new(warden_binary());
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("WARDEN_") {
            command.env_remove(name);
        }
    }
    command
}

/// `warden serve` running as a child process on free ports.
#[derive(Debug)]
pub struct WardenProcess {
    pub child: Child,
    pub https: std::net::SocketAddr,
    pub mqtt: Option<std::net::SocketAddr>,
    logs: Arc<Mutex<String>>,
}

impl WardenProcess {
    /// Starts `warden serve` on `data_dir` and waits until it has written its addresses.
    pub fn serve(data_dir: &Path, extra_args: &[&str]) -> Self {
        Self::serve_with_env(data_dir, extra_args, &[("WARDEN_LOG_LEVEL", "warn")])
    }

    /// [`WardenProcess::serve`] with extra `WARDEN_*` variables.
    pub fn serve_with_env(data_dir: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let addresses = data_dir.join(server::ADDRESSES_FILE);
        let _ = std::fs::remove_file(&addresses);
        let dir = data_dir.to_str().unwrap();
        let mut args = vec![
            "serve",
            "--data-dir",
            dir,
            "--listen",
            "127.0.0.1:0",
            "--device-listen",
            "127.0.0.1:0",
        ];
        // A caller may pin the broker's port, to restart on the one its clients know.
        if !extra_args.contains(&"--mqtt-listen") {
            args.extend(["--mqtt-listen", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra_args);
        let mut command = warden_command(&args);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        // The banner is printed once every listener is up; drain it on a thread so the child
        // never blocks on a full pipe.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Press Ctrl-C") {
                    let _ = ready_tx.send(());
                }
            }
        });
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("warden serve did not come up:\n{}", logs.lock().unwrap());
        }
        let text = std::fs::read_to_string(&addresses).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let https = parsed["https"].as_str().unwrap().parse().unwrap();
        let mqtt = parsed["mqtt"].as_str().map(|text| text.parse().unwrap());
        Self {
            child,
            https,
            mqtt,
            logs,
        }
    }

    /// Everything the process has written to standard error so far: its log.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Sends SIGTERM and asserts that the process ends with success within 20 s, as a clean
    /// shutdown does.
    pub fn stop_cleanly(&mut self) {
        assert_eq!(
            self.signal_and_wait("TERM", Duration::from_secs(20))
                .map(|status| status.success()),
            Some(true),
            "{}",
            self.logs()
        );
    }

    /// Sends `signal` (for example `TERM`) and waits up to `limit` for the process to end.
    pub fn signal_and_wait(
        &mut self,
        signal: &str,
        limit: Duration,
    ) -> Option<std::process::ExitStatus> {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for WardenProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
