"""Throw generated JSON-RPC traffic at real daemons: no crash, no hang, every request answered once.

    python bench/fuzz.py [--frames 10000] [--seed 1] [--chunk 50]

Three transports, each with its own daemon: `ember serve` with one JSON value per line, `ember serve`
with Content-Length headers, and the shared daemon's Unix socket. Each gets `--frames` units from
tests/frame_fuzz.py (valid requests, notifications, batches, garbage, nesting 65 to 20,000 deep,
bad envelopes and headers), sent `--chunk` at a time followed by a request of our own; every
reply owed must arrive exactly once, and nothing else. A reply that takes over 60 s is a hang.

Runs offline in a private runtime and config folder, with the model cache the tests use
(EMBER_TEST_CACHE, default .ember-cache/test). Only methods that need no model weights are sent
(the tokenizer is loaded). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from isolation import daemon_environment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from frame_fuzz import FrameGen, check, exchange  # noqa: E402
from rpc_client import EMBER, Daemon, SocketPeer  # noqa: E402


def fuzz(client, framing: str, frames: int, chunk: int, seed: int) -> dict:
    rng = random.Random(seed)
    gen = FrameGen(rng, framing)
    sent = requests = nulls = 0
    problems: list[str] = []
    kinds: dict[str, int] = {}
    started = time.perf_counter()
    round_no = 0
    while sent < frames:
        n = min(chunk, frames - sent)
        units = gen.stream(n)
        round_no += 1
        try:
            replies = exchange(client, units, f"sentinel-{round_no}")
        except Exception as exc:  # noqa: BLE001 - a hang or a dropped connection is the finding
            problems.append(f"round {round_no}: {type(exc).__name__}: {exc}")
            break
        problems += [f"round {round_no}: {p}" for p in check(units, replies)]
        sent += n
        requests += sum(len(u.ids) for u in units)
        nulls += sum(u.nulls for u in units)
        for u in units:
            kinds[u.kind] = kinds.get(u.kind, 0) + 1
    return {"frames": sent, "requests": requests, "nulls": nulls, "problems": problems,
            "seconds": time.perf_counter() - started, "kinds": kinds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=10_000, help="units per transport")
    ap.add_argument("--chunk", type=int, default=50, help="units sent before waiting for the replies")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ember-fuzz-") as tmp:
        env = daemon_environment(Path(tmp))
        started = subprocess.run([EMBER, "daemon", "start"], capture_output=True, timeout=300, env=env)
        if started.returncode != 0:
            sys.exit(f"ember daemon start failed:\n{started.stderr.decode()}")
        clients = {
            "stdio, lines": (Daemon("lines", [], env), "lines"),
            "stdio, Content-Length": (Daemon("headers", [], env), "headers"),
            "socket, Content-Length": (SocketPeer(Path(tmp) / "run" / "ember" / "ember.sock"), "headers"),
        }
        rows = []
        try:
            for name, (client, framing) in clients.items():
                result = fuzz(client, framing, args.frames, args.chunk, args.seed)
                alive = client.proc.poll() is None if isinstance(client, Daemon) else \
                    subprocess.run([EMBER, "daemon", "status"], capture_output=True, env=env).returncode == 0
                rows.append((name, result, alive))
                print(f"{name}: {result['frames']} frames in {result['seconds']:.1f} s, "
                      f"{len(result['problems'])} problems", file=sys.stderr)
        finally:
            for client, _ in clients.values():
                if isinstance(client, Daemon):
                    client.kill()
                else:
                    client.close()
            subprocess.run([EMBER, "daemon", "stop"], capture_output=True, timeout=60, env=env)

    print(f"# bench/fuzz.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, seed {args.seed}\n")
    print("| transport | frames | requests owed a reply | id-null errors owed | problems | daemon alive | seconds | frames/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r, alive in rows:
        print(f"| {name} | {r['frames']} | {r['requests']} | {r['nulls']} | {len(r['problems'])} | "
              f"{'yes' if alive else 'NO'} | {r['seconds']:.1f} | {r['frames'] / r['seconds']:.0f} |")
    kinds: dict[str, int] = {}
    for _, r, _ in rows:
        for k, v in r["kinds"].items():
            kinds[k] = kinds.get(k, 0) + v
    print("\nFrames by kind (all transports): " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    for name, r, _ in rows:
        for p in r["problems"][:10]:
            print(f"- {name}: {p}")
    if any(r["problems"] or not alive for _, r, alive in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
