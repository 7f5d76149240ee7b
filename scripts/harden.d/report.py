"""Writes DIR/report.md from the checks' result files and Warden's log.

Each check left `DIR/results/NN-name.json` with `name`, `status` (PASS, FAIL, or SKIPPED when left out by --skip), `figures` (one
line), `details` (Markdown) and `seconds`. The report puts one line per check first, then the
details, then what Warden itself logged as an error or warning while the checks ran (the cause of
a 5xx is there, under the request id the response carried). Exits 1 when any check failed;
skipped checks neither pass nor fail, and the verdict line counts them.
"""

import argparse
import json
import platform
import re
from collections import Counter
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def log_summary(log: Path) -> tuple[str, list[str]]:
    """Counts of Warden's ERROR and WARN lines, and each kind (level, source, message) with how
    often it came and the first one's fields and request."""
    if not log.exists():
        return "no log", []
    levels: Counter = Counter()
    kinds: Counter = Counter()
    first: dict = {}
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        level = entry.get("level")
        if level not in ("ERROR", "WARN"):
            continue
        levels[level] += 1
        # A message that names a peer address is the same kind of line for every peer.
        message = re.sub(r"\[?[0-9a-f.:]+\]?:\d{2,5}\b", "ADDRESS", str(entry.get("message", "")))
        key = f"{level} {entry.get('target', '')}: {message}"
        kinds[key] += 1
        if key not in first:
            fields = {k: v for k, v in entry.items()
                      if k not in ("timestamp", "level", "span", "spans", "target", "message")
                      and not k.startswith("log.")}
            span = entry.get("span") or {}
            where = " ".join(str(span[k]) for k in ("method", "route") if k in span) or span.get("path", "")
            first[key] = (", ".join(f"{k}={v}" for k, v in sorted(fields.items())),
                          f"{where} request {span['request_id']}" if "request_id" in span else "")
    counts = f"{levels['ERROR']} ERROR and {levels['WARN']} WARN lines"
    lines = []
    for key, count in sorted(kinds.items(), key=lambda item: (not item[0].startswith("ERROR"), -item[1])):
        fields, request = first[key]
        text = f"- {count}× {key}"
        if fields or request:
            text += " — first: " + "; ".join(part for part in (fields[:400], request) if part)
        lines.append(text)
    return counts, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the report's directory")
    parser.add_argument("--mode", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--version", required=True, help="what identifies the Warden tested")
    parser.add_argument("--started", required=True, type=float, help="epoch seconds")
    args = parser.parse_args()
    out = Path(args.out)

    results = []
    for path in sorted((out / "results").glob("*.json")):
        results.append(json.loads(path.read_text()))
    failed = [r for r in results if r["status"] not in ("PASS", "SKIPPED")]
    skipped = [r for r in results if r["status"] == "SKIPPED"]
    ran = len(results) - len(skipped)
    started = datetime.fromtimestamp(args.started, timezone.utc)
    total = datetime.now(timezone.utc).timestamp() - args.started
    verdict = "PASS" if ran and not failed else "FAIL"

    report = [
        "# Warden hardening report",
        "",
        f"**{verdict}**: {ran - len(failed)} of {ran} checks pass"
        + (f"; {len(skipped)} skipped ({', '.join(r['name'] for r in skipped)})." if skipped else "."),
        "",
        f"- Warden: {args.version}",
        f"- Run: `{args.command}` ({args.mode}), started {started:%Y-%m-%d %H:%M:%S} UTC, "
        f"{total:.0f} s in all",
        f"- Tools: sslyze {package('sslyze')}, schemathesis {package('schemathesis')}, Python "
        f"{platform.python_version()}, on {platform.machine()} Linux with {__import__('os').cpu_count()} cores",
        "",
        "| # | check | result | figures | wall time |",
        "|---|---|---|---|---|",
    ]
    for number, result in enumerate(results, 1):
        report.append(f"| {number} | {result['name']} | **{result['status']}** | {result['figures']} | "
                      f"{result['seconds']:.0f} s |")
    report += ["", "## Details", ""]
    for number, result in enumerate(results, 1):
        report += [f"### {number}. {result['name']}: {result['status']}", "", result["details"], ""]
    counts, lines = log_summary(out / "warden.log")
    report += ["## What Warden logged", "",
               f"`warden.log` beside this report holds Warden's own log of the run ({counts}); "
               "each kind, errors first, then by count:", "",
               *(lines or ["- none"]), ""]
    (out / "report.md").write_text("\n".join(report))
    print(f"{verdict}: {ran - len(failed)} of {ran} checks pass, {len(skipped)} skipped; "
          f"report in {out / 'report.md'}")
    raise SystemExit(0 if verdict == "PASS" else 1)


if __name__ == "__main__":
    main()
