"""Fault tests: the black-box tests that inflict each fault on a running Warden under load and
prove what users see and that nothing acknowledged was lost. Runs them with `cargo test` and
writes the check's result to --out: PASS when every one passed."""

import argparse
import json
import re
import subprocess
from pathlib import Path

# Each fault, the test that inflicts it, and what users see (what the test asserts).
FAULTS = [
    ("server killed (SIGKILL) under load", "crash::kill_9_during_a_qos_1_stream_loses_no_acknowledged_event",
     "devices lose their connection, reconnect to the restarted server and resend what was not "
     "acknowledged; every acknowledged event is stored"),
    ("database stopped and restarted under load (PostgreSQL)",
     "events::while_the_database_is_down_devices_wait_and_nothing_is_lost",
     "acknowledgements are withheld while the database is down, the devices wait; everything "
     "arrives once it is back"),
    ("disk full under load", "faults::a_full_disk_stalls_the_devices_and_loses_nothing",
     "commits stall and acknowledgements are withheld while the disk is full; Warden keeps "
     "running; once space is freed everything sent is acknowledged and stored"),
    ("slow upstream behind the gateway", "faults::a_slow_upstream_is_answered_504_and_holds_nothing_else_up",
     "callers get 504 after the upstream timeout, without the upstream's address; Warden's own "
     "routes answer meanwhile"),
    ("wall-clock jump back and forth under load", "faults::a_clock_jump_back_and_forth_loses_nothing",
     "devices stay connected, everything is acknowledged and stored, received at the time the "
     "clock said"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    names = [test for _, test, _ in FAULTS]
    run = subprocess.run(["cargo", "test", "--locked", "-p", "testkit", "--test", "blackbox",
                          "--", "--exact", "--test-threads=1", *names],
                         cwd=args.repo, capture_output=True, text=True)
    output = run.stdout + run.stderr
    print(output)
    outcome = dict(re.findall(r"^test (\S+) \.\.\. (\w+)", output, re.MULTILINE))
    rows = ["| fault | result | what users see (asserted) | test |", "|---|---|---|---|"]
    passed = 0
    for fault, test, seen in FAULTS:
        result = {"ok": "PASS", "FAILED": "FAIL"}.get(outcome.get(test, ""), "did not run")
        passed += result == "PASS"
        rows.append(f"| {fault} | {result} | {seen} | `{test}` |")
    ok = run.returncode == 0 and passed == len(FAULTS)
    details = rows
    if not ok:
        details += ["", "```", *output.splitlines()[-40:], "```"]
    args.out.write_text(json.dumps({"name": "faults under load", "status": "PASS" if ok else "FAIL",
                                    "figures": f"{passed} of {len(FAULTS)} faults survived as asserted",
                                    "details": "\n".join(details)}, indent=2))


if __name__ == "__main__":
    main()
