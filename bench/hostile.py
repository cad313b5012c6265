"""Issue 9's two findings, measured side by side: this checkout against an older one.

    git archive e60073f daemon | tar -x -C /tmp/before      # the code before the fixes
    python bench/hostile.py --baseline-src /tmp/before/daemon [--rounds 2] [--also NAME=SRC]

Two scenarios on the shared daemon, each run on both builds in turn (alternating, `--rounds`
times, so that a busy machine hurts both alike):

- flood: one client keeps 30 `tokenize` requests of 200,000 characters in flight (150 in all, reading
  its replies); meanwhile a status bar's client sends `tokenize("hello world")` every 50 ms. Reported:
  the status bar's latency during the flood (p50, p95, max).
- non-reader: one client sends 150 such requests and reads nothing. Reported: the daemon's RSS
  growth over the next 30 s (sampled every 0.5 s by another client), and whether the other client's
  `tokenize` still answers.

The baseline runs the same `ember` command with PYTHONPATH pointing at `--baseline-src`, so it needs
no venv of its own. Offline, private runtime folders, the tests' model cache (EMBER_TEST_CACHE).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from rpc_client import EMBER, SocketPeer  # noqa: E402

BIG = ((ROOT / "daemon" / "ember" / "rpc" / "protocol.py").read_text() * 30)[:200_000]
FLOOD = 150
WINDOW = 30


def frame(msg_id: int, method: str, params: dict) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class Build:
    def __init__(self, name: str, src: str | None, tmp: Path):
        self.name = name
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
        run = tmp / name / "run"
        run.mkdir(parents=True, mode=0o700)
        cache = os.environ.get("EMBER_TEST_CACHE") or str(ROOT / ".ember-cache" / "test")
        self.env.update({"XDG_RUNTIME_DIR": str(run), "XDG_CONFIG_HOME": str(tmp / name / "config"),
                         "EMBER_DAEMON__CACHE_DIR": cache, "HF_HUB_OFFLINE": "1"})
        if src:
            self.env["PYTHONPATH"] = src
        self.socket = run / "ember" / "ember.sock"

    def start(self) -> None:
        done = subprocess.run([EMBER, "daemon", "start"], capture_output=True, timeout=300, env=self.env)
        if done.returncode != 0:
            sys.exit(f"{self.name}: ember daemon start failed:\n{done.stderr.decode()}")
        peer = SocketPeer(self.socket)
        peer.call("tokenize", {"text": "warm up"})
        while not peer.call("daemon/status").get("device"):
            time.sleep(0.2)  # torch is imported in the background: wait, so RSS is steady
        peer.close()

    def stop(self) -> None:
        subprocess.run([EMBER, "daemon", "stop"], capture_output=True, timeout=120, env=self.env)


def flood(build: Build) -> dict:
    build.start()
    try:
        flooder = SocketPeer(build.socket)
        status_bar = SocketPeer(build.socket)
        done = threading.Event()

        def run_flood():
            in_flight: list[int] = []
            sent = 0
            while sent < FLOOD or in_flight:
                while sent < FLOOD and len(in_flight) < WINDOW:
                    in_flight.append(flooder.start_request("tokenize", {"text": BIG}))
                    sent += 1
                flooder.reply(in_flight.pop(0), timeout=600)
            done.set()

        t = threading.Thread(target=run_flood)
        started = time.perf_counter()
        t.start()
        latencies = []
        errors = 0
        while not done.is_set():
            begin = time.perf_counter()
            reply = status_bar.reply(status_bar.start_request("tokenize", {"text": "hello world"}), timeout=600)
            latencies.append(time.perf_counter() - begin)
            errors += "error" in reply
            time.sleep(0.05)
        t.join()
        elapsed = time.perf_counter() - started
        flooder.close()
        status_bar.close()
    finally:
        build.stop()
    latencies.sort()
    return {"n": len(latencies), "p50": statistics.median(latencies),
            "p95": latencies[int(0.95 * (len(latencies) - 1))], "max": latencies[-1],
            "errors": errors, "flood_s": elapsed}


def non_reader(build: Build, seconds: float = 30.0) -> dict:
    build.start()
    try:
        other = SocketPeer(build.socket)
        before = other.call("daemon/status")["memory"]["rss_bytes"]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(build.socket))

        def send_all():
            try:
                for i in range(FLOOD):
                    sock.sendall(frame(i, "tokenize", {"text": BIG}))
            except OSError:
                pass

        threading.Thread(target=send_all, daemon=True).start()
        peak = before
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            peak = max(peak, other.call("daemon/status")["memory"]["rss_bytes"])
            time.sleep(0.5)
        begin = time.perf_counter()
        answered = "result" in other.reply(other.start_request("tokenize", {"text": "hello world"}), timeout=600)
        small_s = time.perf_counter() - begin
        sock.close()
        other.close()
    finally:
        build.stop()
    return {"growth_mb": (peak - before) / 2**20, "answered": answered, "small_s": small_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-src", required=True, help="a `daemon` folder of the older code")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=SRC",
                    help="one more build to compare: a name and its `daemon` folder (repeatable)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    builds = [("before", args.baseline_src), ("after", None)]
    builds += [tuple(spec.split("=", 1)) for spec in args.also]
    results: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory(prefix="ember-hostile-") as tmp:
        for r in range(args.rounds):
            for name, src in builds:
                build = Build(f"{name}{r}", src, Path(tmp))
                res = results.setdefault(name, {"flood": [], "non_reader": []})
                res["flood"].append(flood(build))
                build = Build(f"{name}{r}nr", src, Path(tmp))
                res["non_reader"].append(non_reader(build))
                print(f"round {r + 1} {name}: {res['flood'][-1]} {res['non_reader'][-1]}", file=sys.stderr)

    print(f"# bench/hostile.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {args.rounds} rounds\n")
    print("| build | status-bar tokenize during the flood: p50 ms | p95 ms | max ms | samples | "
          "non-reader: RSS growth MB | other client answered |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for name, _ in builds:
        fl, nr = results[name]["flood"], results[name]["non_reader"]
        p50 = statistics.median(f["p50"] for f in fl) * 1000
        p95 = statistics.median(f["p95"] for f in fl) * 1000
        mx = max(f["max"] for f in fl) * 1000
        growth = statistics.median(n["growth_mb"] for n in nr)
        summary[name] = (p50, p95, growth)
        print(f"| {name} | {p50:.0f} | {p95:.0f} | {mx:.0f} | {sum(f['n'] for f in fl)} | {growth:.0f} | "
              f"{'yes' if all(n['answered'] for n in nr) else 'no'} |")
    b = summary["before"]
    for name, _ in builds[1:]:
        a = summary[name]
        print(f"\nRatios before/{name}: p50 {b[0] / a[0]:.1f}x, p95 {b[1] / a[1]:.1f}x, "
              f"RSS growth {b[2] / max(a[2], 1):.1f}x (medians over rounds).")


if __name__ == "__main__":
    main()
