"""Load and soak: a fleet of simulated devices against a Warden of its own, with TLS.

Starts `warden serve` on a fresh data directory (SQLite, every listener on 127.0.0.1, ports
chosen here), makes DEVICES devices with `warden admin device create`, then:

1. connect storm: every device connects at once (`warden device simulate --rate 0`) and stays
   idle; the time until all were connected, and Warden's resident memory per connection;
2. soak: every device publishes RATE QoS 1 events per second for SECONDS, with the simulator's
   ledger of what was acknowledged; Warden's CPU and memory are sampled every second from /proc;
3. loss: every acknowledged event must be in the database (exactly once: the table's unique key
   on device and message id), Warden must still answer /readyz and stop cleanly on SIGTERM.

Writes the check's result (PASS when every device connected in both phases, nothing
acknowledged is missing, and Warden stayed up) to --out.
"""

import argparse
import json
import os
import resource
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    # Fields after the command name (which is in parentheses and may hold spaces): utime and
    # stime are the 12th and 13th of those.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Sampler(threading.Thread):
    """Warden's resident memory and CPU time, once a second, until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.samples.append((time.monotonic(), rss_bytes(self.pid), cpu_seconds(self.pid)))
            except (OSError, IndexError, ValueError):
                return
            self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
        self.join()

    def cpu_percent(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, _, c0), (t1, _, c1) = self.samples[0], self.samples[-1]
        return 100.0 * (c1 - c0) / (t1 - t0)

    def peak_rss(self) -> int:
        return max((rss for _, rss, _ in self.samples), default=0)


def open_file_limits(devices: int) -> str:
    """Warden holds three descriptors per MQTT connection (docs/mqtt.md) and the simulator one
    per device; each raises its soft limit to the hard limit it inherits from here, so that hard
    limit must cover the fleet. Raises it when it does not (only root may); else stops the
    check with what it needs."""
    need = 3 * devices + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= need:
        return f"soft {soft}, hard {hard}"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, need), need))
    except (ValueError, OSError):
        raise SystemExit(f"{devices} devices need a hard open-file limit of {need} or more; it is "
                         f"{hard} (raise it with `ulimit -Hn {need}` as root)")
    return f"soft {soft}, hard raised from {hard} to {need} (Warden raises its soft limit itself)"


def simulate(warden: str, bundles: Path, port: int, rate: float, seconds: int,
             ledger: Path | None, log: Path) -> dict:
    command = [warden, "device", "simulate", "--bundle", str(bundles), "--broker",
               f"localhost:{port}", "--rate", str(rate), "--duration", str(seconds), "--json"]
    if ledger:
        command += ["--ledger", str(ledger)]
    with open(log, "w") as errors:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=errors, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warden", required=True)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--devices", required=True, type=int)
    parser.add_argument("--rate", required=True, type=float, help="events per device per second")
    parser.add_argument("--seconds", required=True, type=int, help="length of the soak")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    data, bundles = work / "data", work / "bundles"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    environment["WARDEN_LOG_LEVEL"] = "warn"
    https, mqtt = free_port(), free_port()
    limits = open_file_limits(args.devices)

    warden_log = open(work / "warden.log", "w")
    server = subprocess.Popen(
        [args.warden, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{https}",
         "--device-listen", "127.0.0.1:0", "--mqtt-listen", f"127.0.0.1:{mqtt}"],
        stdout=warden_log, stderr=subprocess.STDOUT, env=environment)
    context = None
    figures, problems, details = {}, [], [f"- Open-file limits given to Warden and the simulator: {limits}"]
    try:
        deadline = time.monotonic() + 90
        while not (data / "addresses.json").exists():
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("Warden did not start; see its log")
            time.sleep(0.2)
        context = ssl.create_default_context(cafile=str(data / "tls" / "ca.crt"))

        made = time.monotonic()
        left = args.devices
        while left > 0:
            batch = min(left, 1000)
            subprocess.run([args.warden, "admin", "device", "create", "--data-dir", str(data),
                            "--model", "load", "--count", str(batch), "--out", str(bundles)],
                           check=True, env=environment, capture_output=True)
            left -= batch
        figures["devices made in"] = f"{time.monotonic() - made:.0f} s"

        # 1. Connect storm, then idle sessions.
        before = rss_bytes(server.pid)
        storm_seconds = 15 + args.devices // 250
        sampler = Sampler(server.pid)
        sampler.start()
        storm = simulate(args.warden, bundles, mqtt, 0, storm_seconds, None, work / "storm.log")
        sampler.stop()
        connected = storm["all_connected_seconds"]
        per_connection = (sampler.peak_rss() - before) / args.devices
        figures["connect storm"] = (f"{args.devices} devices in {connected:.1f} s "
                                    f"({args.devices / connected:.0f}/s)" if connected else "not all connected")
        figures["memory per idle connection"] = f"{per_connection / 1024:.1f} KiB"
        if not connected:
            problems.append(f"not every device connected in the storm: {storm}")
        details.append(f"- Connect storm: `{json.dumps(storm)}`")

        # 2. Soak with a ledger.
        ledger = work / "acknowledged.txt"
        sampler = Sampler(server.pid)
        sampler.start()
        soak = simulate(args.warden, bundles, mqtt, args.rate, args.seconds, ledger, work / "soak.log")
        sampler.stop()
        latency = soak["latency_ms"]
        figures["soak"] = (f"{args.devices} devices × {args.rate:g}/s for {args.seconds} s: "
                           f"{soak['steady_rate'] or 0:.0f} events/s held, sent {soak['sent']}, "
                           f"acknowledged {soak['acknowledged']}")
        figures["PUBACK latency"] = f"p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms, max {latency['max']:.0f} ms"
        figures["Warden during the soak"] = (f"CPU {sampler.cpu_percent():.0f} % of one core, "
                                             f"peak RSS {sampler.peak_rss() / 2**20:.0f} MiB")
        figures["connection errors, reconnects"] = f"{soak['errors']}, {soak['reconnects']}"
        if not soak["all_connected_seconds"]:
            problems.append("not every device connected for the soak")
        details.append(f"- Soak: `{json.dumps(soak)}`")

        # 3. Loss.
        acknowledged = set()
        for line in ledger.read_text().splitlines():
            device, message = line.split(" ", 1)
            acknowledged.add((device, message))
        database = sqlite3.connect(f"file:{data / 'warden.db'}?mode=ro", uri=True)
        stored = set(database.execute(
            "SELECT device_id, message_id FROM device_events WHERE topic LIKE 'devices/%/events'"))
        database.close()
        missing = acknowledged - stored
        figures["acknowledged events missing from the database"] = f"{len(missing)} of {len(acknowledged)}"
        if missing:
            problems.append(f"{len(missing)} acknowledged events are not stored, e.g. {sorted(missing)[:3]}")
        if len(acknowledged) == 0:
            problems.append("nothing was acknowledged")

        with urllib.request.urlopen(f"https://localhost:{https}/readyz", context=context, timeout=10) as ready:
            if ready.status != 200:
                problems.append(f"/readyz answered {ready.status} after the soak")
    except subprocess.CalledProcessError as error:
        problems.append(f"{' '.join(error.cmd[:4])} failed: {(error.stderr or b'').decode(errors='replace')[-500:]}")
    except (OSError, KeyError, ValueError) as error:
        problems.append(f"the check could not run: {error!r}")
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                status = server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                status = server.wait()
            if status != 0:
                problems.append(f"Warden exited with status {status} on SIGTERM")
        else:
            problems.append(f"Warden died during the check (status {server.returncode}); see {work}/warden.log")
        warden_log.close()

    line = "; ".join(f"{name}: {value}" for name, value in figures.items())
    report = ["| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in figures.items()]
    report += [""] + details + [f"- Problems: {'; '.join(problems)}" if problems else "- No problems."]
    args.out.write_text(json.dumps({"name": "load and soak", "status": "FAIL" if problems else "PASS",
                                    "figures": line, "details": "\n".join(report)}, indent=2))
    for problem in problems:
        print("problem:", problem)
    print(line)


if __name__ == "__main__":
    main()
