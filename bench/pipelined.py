"""Requests piped into `ember serve` faster than it answers them (issue 22): wall time, peak RSS,
answered and refused, for this tree and, side by side, for another checkout.

    .venv/bin/python bench/pipelined.py --requests 1000 --runs 3 --base /tmp/base22/daemon

Each run starts a fresh `ember serve`, writes every request at once and reads until EOF. `--base`
runs the same command with PYTHONPATH pointing at another checkout's daemon/ (the same venv), in
turn with this tree's runs so both see the same machine load. `--set` passes daemon settings to
both, `--base-set` to the base only (daemon.max_client_queue=1000: the old code answers all 1,000,
with nothing bounding what it holds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable


def requests(count: int) -> bytes:
    lines = (json.dumps({"jsonrpc": "2.0", "id": i, "method": "tokenize",
                         "params": {"text": f"Request number {i}: the quick brown fox jumps over the lazy dog."}})
             for i in range(count))
    return ("\n".join(lines) + "\n").encode()


def run_once(data: bytes, pythonpath: str | None, settings: list[str]) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    args = [PYTHON, "-m", "ember", "serve"]
    for s in settings:
        args += ["--set", s]
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout:
        stdin.write(data)
        stdin.seek(0)
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        replies = [json.loads(line) for line in stdout.read().splitlines()]
    return {
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,  # KB on Linux
        "answered": sum(1 for r in replies if "result" in r),
        "busy": sum(1 for r in replies if r.get("error", {}).get("code") == -32003),
        "exit": proc.returncode,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--base", help="another checkout's daemon/ folder, run side by side")
    parser.add_argument("--set", action="append", default=[], dest="settings")
    parser.add_argument("--base-set", action="append", default=[], dest="base_settings",
                        help="settings for the base only (e.g. daemon.max_client_queue=1000)")
    args = parser.parse_args()
    data = requests(args.requests)
    variants = [("this tree", str(Path(__file__).resolve().parent.parent / "daemon"))]
    if args.base:
        variants.insert(0, ("base", args.base))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    for _ in range(args.runs):
        for name, path in variants:  # in turn, so both see the same load
            extra = args.base_settings if name == "base" else []
            results[name].append(run_once(data, path, args.settings + extra))
    print(f"{args.requests} tokenize requests piped into `ember serve`, {args.runs} runs each, "
          f"settings {args.settings or 'default'}, base also {args.base_settings or 'nothing'}")
    print("| variant | answered | -32003 | wall s (median, min-max) | peak RSS MB (median) |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        walls = [r["wall_s"] for r in runs]
        print(f"| {name} | {statistics.median(r['answered'] for r in runs):.0f} "
              f"| {statistics.median(r['busy'] for r in runs):.0f} "
              f"| {statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f}) "
              f"| {statistics.median(r['peak_rss_mb'] for r in runs):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
