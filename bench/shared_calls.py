"""`ember call summarize` through the shared daemon against one-shot `ember serve` runs.

    python bench/shared_calls.py [--runs 20] [--max-tokens 16]

Both sides run as a script would: one process per request.

- shared: `echo TEXT | ember call summarize --text - --param max_tokens=N`. The daemon is started
  with `ember daemon start` before the clock starts, but its model is not loaded: the first call
  pays the model load (once), as every one-shot run does.
- one-shot: `printf '{"jsonrpc":"2.0","id":1,"method":"summarize",...}\\n' | ember serve`: start,
  import torch, load the model, answer, exit.

Runs in a private XDG_RUNTIME_DIR and config dir, offline, with the model cache the tests use
(EMBER_TEST_CACHE, default .ember-cache/test), so it never touches the user's own daemon.
Prints a Markdown table and the ratio of the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from isolation import daemon_environment

ROOT = Path(__file__).resolve().parent.parent
EMBER = str(Path(sys.executable).parent / "ember")
TEXT = ("The city council voted on Tuesday to extend the bike lane network by 40 km over the next "
        "three years. The work is funded by a new parking levy and starts in the spring.")



def timed(cmd: list[str], stdin: bytes, env: dict[str, str]) -> tuple[float, bytes]:
    started = time.perf_counter()
    done = subprocess.run(cmd, input=stdin, capture_output=True, env=env, timeout=600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    return elapsed, done.stdout


def shared_calls(runs: int, max_tokens: int, env: dict[str, str]) -> list[float]:
    cmd = [EMBER, "call", "summarize", "--text", "-", "--param", f"max_tokens={max_tokens}"]
    times = []
    for _ in range(runs):
        elapsed, out = timed(cmd, TEXT.encode(), env)
        assert out.strip(), "empty summary"
        times.append(elapsed)
    return times


def one_shot_serves(runs: int, max_tokens: int, env: dict[str, str]) -> list[float]:
    request = {"jsonrpc": "2.0", "id": 1, "method": "summarize",
               "params": {"text": TEXT, "max_tokens": max_tokens}}
    line = (json.dumps(request) + "\n").encode()
    times = []
    for _ in range(runs):
        elapsed, out = timed([EMBER, "serve"], line, env)
        assert "result" in json.loads(out), out
        times.append(elapsed)
    return times


def row(name: str, times: list[float]) -> str:
    return (f"| {name} | {len(times)} | {sum(times):.1f} | {statistics.mean(times):.2f} | "
            f"{statistics.median(times):.2f} | {min(times):.2f} | {max(times):.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="calls per mode (at least 2: the first loads the model)")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs must be at least 2: the first shared call loads the model, the others are compared")

    with tempfile.TemporaryDirectory(prefix="ember-bench-") as tmp:
        env = daemon_environment(Path(tmp))
        started = subprocess.run([EMBER, "daemon", "start"], capture_output=True, env=env, timeout=120)
        if started.returncode != 0:
            sys.exit(started.stderr.decode())
        try:
            shared = shared_calls(args.runs, args.max_tokens, env)
            status = json.loads(subprocess.run([EMBER, "call", "daemon/status", "--json"],
                                               capture_output=True, env=env, timeout=60).stdout)
        finally:
            subprocess.run([EMBER, "daemon", "stop"], capture_output=True, env=env, timeout=60)
        serve = one_shot_serves(args.runs, args.max_tokens, env)

    load = os.getloadavg()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.platform()}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f}, python {platform.python_version()}")
    print(f"# summarize, {len(TEXT)} characters of text, max_tokens={args.max_tokens}; "
          f"shared daemon model loads: {status['model_loads']}\n")
    print("| mode | calls | total s | mean s | median s | min s | max s |")
    print("|---|---|---|---|---|---|---|")
    print(row("ember call (shared daemon)", shared))
    print(row("ember call: the first (loads the model)", shared[:1]))
    print(row("ember call: the others", shared[1:]))
    print(row("printf ... \\| ember serve", serve))
    print(f"\none-shot / shared, total: {sum(serve) / sum(shared):.1f}x; "
          f"median per call: {statistics.median(serve) / statistics.median(shared):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
