"""API fuzzing of a running Warden by schemathesis, from the OpenAPI document it serves.

Four runs, one per kind of caller, each against the listener that serves its operations:

  anonymous  main listener, no credentials (every operation but the device listener's);
  service    main listener, a client-credentials access token (devices:* firmware:manage
             authz:check);
  admin      main listener, an admin person's access token from the authorization code flow
             with PKCE (admin, devices:*, firmware:manage);
  device     device listener (mutual TLS), the operations tagged `device listener`, with a
             device's certificate and its id and password as basic credentials.

Every run uses schemathesis's CLI with exactly two checks, `not_a_server_error` (no 5xx) and
`response_schema_conformance` (the body, and its media type, match what the document says for
that status), in all four phases (examples, coverage, fuzzing, stateful) with at most N
generated cases per operation. Half the time a `{device_id}` in a path is one of the devices
made for the run (so requests reach the handlers, not just the 404 for an unknown id); the other
half it is whatever schemathesis generates.

One operation is left out of the authenticated runs: `GET …/events/live` is a Server-Sent
Events stream that by design stays open for the token's lifetime, and schemathesis's requests
transport reads a whole body, so every request to a device the caller may read would end in a
timeout, not in a finding. The anonymous run still sends it every kind of request (all refused
with 401).

The check FAILS on any failure of the two checks, and on any request that got no answer from
Warden (a timeout or a dropped connection: a crash or a hang of a connection is a finding too).
Each failure is listed with schemathesis's reproduction (a curl command; the access token shows
as [Filtered]).
"""

import argparse
import base64
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHECKS = "not_a_server_error,response_schema_conformance"
LIVE_TAIL = "tailDeviceEvents"
# The titles schemathesis gives an error when Warden did not answer (a requests exception:
# refused, reset or dropped connection, timeout; or an operation that stopped answering). Its
# other errors are its own (a media type it cannot generate, a schema it cannot satisfy, a bug in
# a library it uses) and are listed, not failed.
NO_ANSWER = ("Network Error", "Unresponsive Operation", "Server Unavailable", "Unhealthy API")


def token(work: Path, kind: str) -> str:
    return subprocess.run(
        [sys.executable, str(HERE / "identities.py"), "token", "--work", str(work), kind],
        capture_output=True, text=True, check=True,
    ).stdout.strip()


def config_file(path: Path, devices: list[str], timeout: float) -> Path:
    values = ", ".join(json.dumps(device) for device in devices)
    path.write_text(
        "# Written by scripts/harden.d/fuzz.py for one run.\n"
        f"request-timeout = {timeout}\n\n"
        "[dictionaries.devices]\n"
        f"values = [{values}]\n\n"
        "[parameters]\n"
        '"path.device_id" = { dictionary = "devices", probability = 0.5 }\n'
    )
    return path


def run_one(name: str, args: argparse.Namespace, state: dict, addresses: dict, out: Path) -> dict:
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    https_port = addresses["https"].rsplit(":", 1)[1]
    schema = f"https://localhost:{https_port}/api/v1/openapi.json"
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file", str(config_file(run_dir / "schemathesis.toml", state["devices"], args.request_timeout)),
        "run", schema,
        "--checks", CHECKS,
        "--max-examples", str(args.examples),
        "--workers", str(args.workers),
        "--tls-verify", state["ca"],
        "--seed", str(args.seed),
        "--no-color",
        "--output-truncate", "true",
        "--report", "junit,ndjson",
        "--report-junit-path", str(run_dir / "junit.xml"),
        "--report-ndjson-path", str(run_dir / "events.ndjson"),
    ]
    if name == "device":
        device_port = addresses["device"].rsplit(":", 1)[1]
        command += [
            "--url", f"https://localhost:{device_port}/",
            "--include-tag", "device listener",
            "--request-cert", state["device_cert"],
            "--request-cert-key", state["device_key"],
            "--auth", f"{state['device_id']}:{state['device_password']}",
        ]
    else:
        command += ["--exclude-tag", "device listener"]
        if name != "anonymous":
            command += ["--exclude-operation-id", LIVE_TAIL]
            command += ["-H", f"Authorization: Bearer {token(Path(args.work), name)}"]

    environment = dict(os.environ)
    # requests would let these replace --tls-verify's CA with the system's bundle.
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        environment.pop(variable, None)
    environment["SCHEMATHESIS_HOOKS"] = "st_hooks"
    environment["PYTHONPATH"] = str(HERE) + os.pathsep + environment.get("PYTHONPATH", "")
    started = time.monotonic()
    with open(run_dir / "output.txt", "w") as output:
        shown = [part if not part.startswith("Authorization:") else "Authorization: Bearer [Filtered]"
                 for part in command]
        shown = [re.sub(r":[^:]+$", ":[Filtered]", part) if part.startswith(state["device_id"] + ":")
                 else part for part in shown]
        output.write("$ " + " ".join(shown) + "\n\n")
        output.flush()
        completed = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, env=environment)
    seconds = time.monotonic() - started
    summary = summarize(name, run_dir, completed.returncode)
    summary["seconds"] = seconds
    print(f"  {name}: {summary['line']} ({seconds:.0f} s)", flush=True)
    return summary


def summarize(name: str, run_dir: Path, returncode: int) -> dict:
    statuses: Counter = Counter()
    unanswered: list[str] = []
    cases = 0
    operations = set()
    events = run_dir / "events.ndjson"
    if events.exists():
        with open(events) as lines:
            for line in lines:
                if '"ScenarioFinished"' not in line[:40]:
                    continue
                recorder = json.loads(line)["ScenarioFinished"]["recorder"]
                interactions = recorder.get("interactions") or {}
                if interactions and re.match(r"^[A-Z]+ /", recorder["label"]):
                    operations.add(recorder["label"])
                cases += len(recorder.get("cases") or {})
                for interaction in interactions.values():
                    response = interaction.get("response")
                    statuses[f"{response['status_code'] // 100}xx" if response else "no answer"] += 1
                    if not response:
                        request = interaction["request"]
                        body = (request.get("body") or {}).get("$base64", "")
                        size = len(base64.b64decode(body)) if body else 0
                        unanswered.append(f"{request['method']} {shorten(request['uri'], 200)}"
                                          + (f" with a {size}-byte body" if size else ""))

    failures, errors = [], []
    junit = run_dir / "junit.xml"
    if junit.exists():
        for testcase in ElementTree.parse(junit).getroot().iter("testcase"):
            for failure in testcase.findall("failure"):
                failures += split_failures(testcase.get("name"), failure.text or "", failure.get("message", ""))
            for error in testcase.findall("error"):
                text = (error.text or error.get("message") or "").strip()
                errors.append({"operation": testcase.get("name"), "text": text,
                               "no_answer": text.startswith(NO_ANSWER)})
    output = (run_dir / "output.txt").read_text(errors="replace")
    seed = re.search(r"^Seed: (\d+)", output, re.M)
    # schemathesis's own warnings (operations it could not get past 404, or whose generated data
    # the API mostly refused): not failures, but they say where the fuzzing stayed shallow.
    warnings = re.search(r"^Warnings:\n(.*?)\n\n", output, re.M | re.S)
    warning_lines = [line.strip().lstrip("⚠️").strip() for line in warnings.group(1).splitlines()] if warnings else []
    crashed = returncode not in (0, 1) or not junit.exists()
    requests = sum(statuses.values())
    line = (f"{len(operations)} operations, {cases} cases, {requests} requests "
            f"({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}); "
            f"{len(failures)} failures, {len(errors)} errors")
    return {
        "run": name,
        "line": line,
        "operations": len(operations),
        "cases": cases,
        "requests": requests,
        "statuses": dict(statuses),
        "failures": failures,
        "errors": errors,
        "seed": seed.group(1) if seed else None,
        "warnings": warning_lines,
        "unanswered": unanswered,
        "returncode": returncode,
        "crashed": crashed,
    }


def split_failures(operation: str, text: str, codes: str) -> list[dict]:
    """One entry per test case in a JUnit failure: what was wrong, the answer, the curl."""
    found = []
    for chunk in re.split(r"^\d+\. Test Case ID: ", text, flags=re.M)[1:]:
        case_id = chunk.split("\n", 1)[0].strip()
        checks = re.findall(r"^- (ST\d+ [^\n]+|[A-Z][^\n]+)$", chunk, flags=re.M)
        answer = re.search(r"^\[(\d{3})\] ([^\n]*):", chunk, flags=re.M)
        curl = re.search(r"Reproduce with:\s*(curl [^\n]*)", chunk)
        found.append(
            {
                "operation": operation,
                "case_id": case_id,
                "codes": codes,
                "checks": checks,
                "status": int(answer.group(1)) if answer else None,
                "reason": answer.group(2) if answer else None,
                "curl": curl.group(1).strip() if curl else None,
                "text": chunk.strip(),
            }
        )
    if not found:
        found.append({"operation": operation, "case_id": None, "codes": codes, "checks": [],
                      "status": None, "reason": None, "curl": None, "text": text.strip()})
    return found


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f" … ({len(text)} characters in all)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="where identities.py setup wrote identities.json")
    parser.add_argument("--addresses", required=True, help="DATA_DIR/addresses.json")
    parser.add_argument("--examples", type=int, required=True, help="most generated cases per operation")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--request-timeout", type=float, default=20.0)
    parser.add_argument("--out", required=True, help="directory for each run's files")
    parser.add_argument("--result", required=True, help="result JSON")
    args = parser.parse_args()
    started = time.monotonic()

    state = json.loads((Path(args.work) / "identities.json").read_text())
    addresses = json.loads(Path(args.addresses).read_text())
    out = Path(args.out)
    runs = [run_one(name, args, state, addresses, out)
            for name in ("anonymous", "device", "service", "admin")]

    failures = [f | {"run": r["run"]} for r in runs for f in r["failures"]]
    hard_errors = [e | {"run": r["run"]} for r in runs for e in r["errors"] if e["no_answer"]]
    soft_errors = [e | {"run": r["run"]} for r in runs for e in r["errors"] if not e["no_answer"]]
    crashed = [r["run"] for r in runs if r["crashed"]]
    server_errors = sum(r["statuses"].get("5xx", 0) for r in runs)
    status = "FAIL" if failures or hard_errors or crashed else "PASS"

    details = [
        f"schemathesis {schemathesis_version()}, checks `{CHECKS}`, at most {args.examples} cases "
        f"per operation and phase setting, {args.workers} workers, seed {args.seed} "
        f"(replay a run with `HARDEN_SEED={args.seed}`). Files: `{out}/RUN/` (output.txt, junit.xml, "
        "events.ndjson with every request and answer).",
        "",
        "| run | operations | cases | requests | answers | failures | errors | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
        details.append(f"| {r['run']} | {r['operations']} | {r['cases']} | {r['requests']} | {answers} | "
                       f"{len(r['failures'])} | {len(r['errors'])} | {r['seconds']:.0f} |")
    if crashed:
        details += ["", f"**schemathesis itself did not finish** in: {', '.join(crashed)} "
                        "(see output.txt)."]
    if failures:
        details += ["", "Failures (each is a finding to fix in Warden or in its OpenAPI document; "
                        "one entry per operation, problem and status, with the runs that hit it):", ""]
        distinct: dict = {}
        for failure in failures:
            key = (failure["operation"], tuple(failure["checks"]) or failure["codes"], failure["status"])
            distinct.setdefault(key, []).append(failure)
        for number, same in enumerate(distinct.values(), 1):
            failure = same[0]
            runs_hit = ", ".join(sorted({f["run"] for f in same}, key=[r["run"] for r in runs].index))
            details.append(
                f"{number}. **{failure['operation']}** ({runs_hit}): "
                f"{'; '.join(failure['checks']) or failure['codes']}; answer "
                f"{failure['status']} {failure['reason'] or ''}".rstrip()
            )
            if failure["curl"]:
                details += ["", "   ```sh", "   " + shorten(failure["curl"], 1200), "   ```", ""]
            else:
                details += ["", "   ```", "   " + shorten(failure["text"], 1200).replace("\n", "\n   "),
                            "   ```", ""]
        failures_distinct = len(distinct)
    else:
        failures_distinct = 0
    counted = Counter((r["run"], request) for r in runs for request in r["unanswered"])
    unanswered = [f"- {run}: {request}" + (f" ({count}×)" if count > 1 else "")
                  for (run, request), count in counted.items()]
    if unanswered:
        details += ["", "Requests that got no answer (from events.ndjson; an `SSLEOFError` means Warden "
                        "closed the connection without a TLS close_notify, which schemathesis calls "
                        "an \"SSL verification problem\"; a GET here was retried by the client, so "
                        "it shows no error):", "", *unanswered[:20]]
        if len(unanswered) > 20:
            details.append(f"- … and {len(unanswered) - 20} more")
    shallow = [f"- {r['run']}: {w}" for r in runs for w in r["warnings"]]
    if shallow:
        details += ["", "schemathesis's warnings (where fuzzing stayed shallow; the operations are "
                        "named in each run's output.txt):", "", *shallow]
    if hard_errors or soft_errors:
        details += ["", "Errors (the same error in the same run and operation counted once):"]
        for label, errors, limit in (("**no answer from Warden**", hard_errors, 600),
                                     ("schemathesis could not test it (not a Warden fault)", soft_errors, 300)):
            grouped = Counter((e["run"], e["operation"], shorten(" ".join(e["text"].split()), limit))
                              for e in errors)
            for (run, operation, text), count in grouped.items():
                details.append(f"- {label} in {run}, {operation}" + (f" ({count}×)" if count > 1 else "")
                               + f": {text}")
    figures = (
        f"{sum(r['cases'] for r in runs)} cases, {sum(r['requests'] for r in runs)} requests in "
        f"{len(runs)} runs ({', '.join(r['run'] for r in runs)}); 5xx answers: {server_errors}, "
        f"{failures_distinct} distinct failures ({len(failures)} in all), {len(hard_errors)} unanswered"
    )
    result = {
        "name": "API fuzzing (schemathesis, served OpenAPI)",
        "status": status,
        "figures": figures,
        "details": "\n".join(details),
        "seconds": time.monotonic() - started,
        "runs": runs,
    }
    Path(args.result).write_text(json.dumps(result, indent=2))
    print(f"{status}: {figures}")


def schemathesis_version() -> str:
    from importlib.metadata import version

    return version("schemathesis")


if __name__ == "__main__":
    main()
