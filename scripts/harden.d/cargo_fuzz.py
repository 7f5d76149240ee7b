"""Fuzz targets (cargo-fuzz, `scripts/fuzz`): each target replays its kept crashing inputs and
seeds, then fuzzes for SECONDS. Writes the check's result to --out: PASS when no input crashed
in either step. The table shows each target's inputs run, speed and coverage."""

import argparse
import json
import subprocess
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", required=True, type=Path)
    parser.add_argument("--seconds", required=True, type=int, help="fuzzing time per target")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    script = str(args.repo / "scripts" / "fuzz")

    replay = subprocess.run([script, "--replay"], capture_output=True, text=True)
    print(replay.stdout + replay.stderr)
    fuzz = subprocess.run([script, "--seconds", str(args.seconds)], capture_output=True, text=True)
    print(fuzz.stdout + fuzz.stderr)

    rows, runs, crashed = [], 0, []
    for line in fuzz.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 12 and fields[2] == "runs":
            target, runs_here = fields[0], fields[3]
            runs += int(runs_here) if runs_here.isdigit() else 0
            verdict = " ".join(fields[12:])
            if verdict != "ok":
                crashed.append(target)
            rows.append(f"| {target} | {runs_here} | {fields[5]} | {fields[7]} | {fields[11]} | {verdict} |")
    replayed = [line for line in replay.stdout.splitlines() if "inputs" in line]
    replay_failed = [line.split()[0] for line in replayed if "none crashes" not in line]
    ok = replay.returncode == 0 and fuzz.returncode == 0 and rows and not crashed
    figures = (f"{len(rows)} targets × {args.seconds} s: {runs} inputs, "
               f"crashed: {', '.join(crashed) or 'none'}; regressions and seeds replayed: "
               f"{'all pass' if replay.returncode == 0 else 'FAILED ' + ', '.join(replay_failed)}")
    details = ["| target | inputs | per second | coverage (edges) | corpus | result |",
               "|---|---|---|---|---|---|", *rows, "",
               "Replay of `fuzz/regressions/` and `fuzz/seeds/`:", "```", *replayed, "```"]
    if not rows:
        details += ["No target ran; the end of the output:", "```",
                    *(fuzz.stdout + fuzz.stderr).splitlines()[-20:], "```"]
    args.out.write_text(json.dumps({"name": "fuzz targets (cargo-fuzz)",
                                    "status": "PASS" if ok else "FAIL",
                                    "figures": figures, "details": "\n".join(details)}, indent=2))


if __name__ == "__main__":
    main()
