"""Several editors typing at once through the shared daemon (`ember connect`), as the VS Code
extension shapes its requests.

    python bench/editors.py [--keystrokes 30] [--gap-ms 200] [--scenarios 1,2,4,1+batch,2+batch]
                            [--daemon-code DIR]

Each scenario starts its own shared daemon (private runtime folder, the tests' conversion cache,
default configuration), connects one `ember connect` per editor, and has every editor type a
different real file (argparse, difflib, shutil, json.decoder from this Python's standard library)
one character per `--gap-ms` (the editors' keystrokes interleave). After each keystroke an editor
sends `complete` as the extension does: the prefix from a window start at most 3,000 characters
back (a line start, in 1,024-character steps, so it stays put while typing), 1,000 characters of
suffix, `max_tokens` 32, `stream`, `supersede` with the document's URI, `language` and `path`. The
next keystroke comes `--gap-ms` after the last one, or when its reply arrives if that is later (a
typist who waits for the suggestion), so one editor alone never supersedes its own requests and
what is measured is what the editors cost each other.

`+batch` adds a script on another connection that summarizes 12,000 characters again and again
(`priority: "batch"`) while the editors type.

Per editor, over the requests that were answered by the model (superseded ones and the ones
answered from the suggestion being typed through are counted apart):
  first token: from sending to the first `ember/stream` delta (or to the reply, for an empty one)
  completion: from sending to the reply
  reuse: cached_tokens over prompt_tokens, summed
  queue: timings.queue_ms
The ratios the issue asks for (2 and 4 editors against 1; with a batch job against without) come
from one run, on one machine. `--daemon-code DIR` runs the daemons from another checkout
(PYTHONPATH=DIR/daemon) for a before figure. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from editor import EMBER, Daemon, log, pct
from isolation import daemon_environment

MODULES = ["argparse", "difflib", "shutil", "json.decoder"]
MAX_PREFIX = 3000
WINDOW_STEP = 1024
SUFFIX = 1000
BATCH_TEXT_CHARS = 12_000


def module_text(name: str) -> tuple[str, str]:
    import importlib

    path = importlib.import_module(name).__file__
    assert path
    return Path(path).read_text(), Path(path).as_uri()


def line_start_at_or_after(text: str, offset: int) -> int:
    if offset == 0 or text[offset - 1] == "\n":
        return offset
    found = text.find("\n", offset)
    return len(text) if found < 0 else found + 1


def request(text: str, uri: str, cursor: int) -> dict[str, Any]:
    """`complete` params as the VS Code extension builds them (completionWindow.ts)."""
    start = 0
    if cursor > MAX_PREFIX:
        earliest = cursor - MAX_PREFIX
        stepped = earliest + (WINDOW_STEP - earliest % WINDOW_STEP) % WINDOW_STEP
        start = min(cursor, line_start_at_or_after(text, min(stepped, cursor)))
    return {"prefix": text[start:cursor], "suffix": text[cursor:cursor + SUFFIX], "max_tokens": 32,
            "stream": True, "supersede": uri, "language": "python", "path": uri}


def start_cursor(text: str, after: int = 6000) -> int:
    """A cursor after an indentation, at a code line well into the file (a full prefix window)."""
    pos = text.find("\n", after) + 1
    while True:
        line = text[pos:text.find("\n", pos) + 1]
        if line.startswith("    ") and len(line.strip()) > 20:
            return pos + len(line) - len(line.lstrip())
        pos += len(line)


class Editor(threading.Thread):
    def __init__(self, module: str, env: dict[str, str], keystrokes: int, gap_s: float, delay_s: float):
        super().__init__(daemon=True)
        self.module = module
        self.text, self.uri = module_text(module)
        self.cursor = start_cursor(self.text)
        self.conn = Daemon([], env, command="connect")
        self.keystrokes, self.gap_s, self.delay_s = keystrokes, gap_s, delay_s
        self.sent: list[tuple[int, float]] = []

    def run(self) -> None:
        time.sleep(self.delay_s)
        for _ in range(self.keystrokes):
            msg_id, sent = self.conn.send("complete", request(self.text, self.uri, self.cursor))
            self.sent.append((msg_id, sent))
            self.cursor += 1
            self.conn.wait(msg_id)
            next_at = max(sent + self.gap_s, time.perf_counter())
            time.sleep(max(0.0, next_at - time.perf_counter()))

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for msg_id, sent in self.sent:
            arrived, msg = self.conn.replies[msg_id]
            if "result" not in msg:
                out.append({"superseded": msg["error"]["code"] == -32800, "error": msg["error"]})
                continue
            result = msg["result"]
            first = self.conn.first_delta.get(msg_id, arrived)
            out.append({"superseded": False, "ttft": (first - sent) * 1000, "total": (arrived - sent) * 1000,
                        "prompt": result["usage"]["prompt_tokens"], "cached": result["usage"].get("cached_tokens", 0),
                        "through": result["usage"].get("typed_through") is not None,
                        "queue": result["timings"]["queue_ms"]})
        return out


class BatchJob(threading.Thread):
    """A script summarizing a long text on its own connection, again and again, until stopped."""

    def __init__(self, env: dict[str, str]):
        super().__init__(daemon=True)
        self.conn = Daemon([], env, command="connect")
        text = module_text("difflib")[0]
        self.text = " ".join(line.strip() for line in text.splitlines() if line.strip().startswith("#")
                             or line.strip()[:1].isalpha())[:BATCH_TEXT_CHARS]
        self.stop = threading.Event()
        self.done = 0

    def run(self) -> None:
        while not self.stop.is_set():
            msg_id, _ = self.conn.send("summarize", {"text": self.text, "max_tokens": 64, "priority": "batch"})
            self.conn.wait(msg_id)
            self.done += 1


def scenario(name: str, env: dict[str, str], keystrokes: int, gap_s: float) -> dict[str, Any]:
    editors_n = int(name.split("+")[0])
    subprocess.run([EMBER, "daemon", "start"], env=env, check=True, capture_output=True, timeout=300)
    try:
        warm = Daemon([], env, command="connect")
        warm.call("complete", {"prompt": "warm up", "max_tokens": 1})
        batch = BatchJob(env) if name.endswith("+batch") else None
        if batch:
            batch.start()
            time.sleep(2)  # the summary is running when the first keystroke comes
        editors = [Editor(MODULES[i], env, keystrokes, gap_s, delay_s=i * gap_s / editors_n)
                   for i in range(editors_n)]
        for e in editors:
            e.start()
        for e in editors:
            e.join()
        if batch:
            batch.stop.set()
            batch.join(timeout=600)
        status = warm.call("daemon/status")
        for conn in [warm, *(e.conn for e in editors), *([batch.conn] if batch else [])]:
            conn.close()
        return {"editors": {e.module: e.rows() for e in editors}, "status": status,
                "batch_done": batch.done if batch else None}
    finally:
        subprocess.run([EMBER, "daemon", "stop"], env=env, capture_output=True, timeout=120)


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    model = [r for r in rows if not r["superseded"] and "error" not in r and not r["through"]]
    prompt = sum(r["prompt"] for r in model)
    return {
        "answered": len(model), "through": sum(1 for r in rows if r.get("through")),
        "superseded": sum(1 for r in rows if r["superseded"]),
        "errors": sum(1 for r in rows if "error" in r and not r["superseded"]),
        "ttft": [r["ttft"] for r in model], "total": [r["total"] for r in model],
        "reuse": sum(r["cached"] for r in model) / prompt if prompt else 0.0,
        "queue": [r["queue"] for r in model],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keystrokes", type=int, default=30, help="per editor")
    parser.add_argument("--gap-ms", type=float, default=200)
    parser.add_argument("--scenarios", default="1,2,4,1+batch,2+batch")
    parser.add_argument("--daemon-code", help="a checkout whose daemon/ runs instead of this one's")
    parser.add_argument("--json", help="also write every request's figures here")
    args = parser.parse_args()
    began = time.time()
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    code = Path(args.daemon_code).resolve() if args.daemon_code else Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "-C", str(code), "log", "-1", "--format=%h"], capture_output=True,
                            text=True).stdout.strip()
    results: dict[str, Any] = {}
    for name in args.scenarios.split(","):
        log(f"{name} editor(s)")
        tmp = Path(tempfile.mkdtemp(prefix="ember-editors-"))
        extra = {"EMBER_DAEMON__LOG_LEVEL": "warning", "XDG_STATE_HOME": str(tmp / "state")}
        if args.daemon_code:
            extra["PYTHONPATH"] = str(code / "daemon")
        results[name] = scenario(name, daemon_environment(tmp, **extra), args.keystrokes, args.gap_ms / 1000)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"## bench/editors.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began))}\n")
    print(f"{cpu}, {os.cpu_count()} CPUs. Daemon at {commit}, default configuration, through `ember connect`. "
          f"{args.keystrokes} keystrokes per editor, one every {args.gap_ms:.0f} ms. Load average before: "
          f"{load_before}, after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}. "
          f"Took {time.time() - began:.0f} s.\n")
    print("| editors | file | answered by the model / typed through / superseded / errors | first token p50 / p95 ms "
          "| completion p50 / p95 ms | prompt tokens reused | queue p50 / p95 ms |")
    print("|---|---|---|---|---|---|---|")
    overall: dict[str, dict[str, Any]] = {}
    for name, res in results.items():
        every: list[dict[str, Any]] = []
        for module, rows in res["editors"].items():
            every += rows
            s = summary(rows)
            if not s["answered"]:
                print(f"| {name} | {module} | 0 / {s['through']} / {s['superseded']} / {s['errors']} | - | - | - | - |")
                continue
            print(f"| {name} | {module} | {s['answered']} / {s['through']} / {s['superseded']} / {s['errors']} "
                  f"| {pct(s['ttft'], .5):.0f} / {pct(s['ttft'], .95):.0f} "
                  f"| {pct(s['total'], .5):.0f} / {pct(s['total'], .95):.0f} | {100 * s['reuse']:.1f}% "
                  f"| {pct(s['queue'], .5):.0f} / {pct(s['queue'], .95):.0f} |")
        overall[name] = summary(every)
    print("\n| editors | first token p50 / p95 ms, all editors | × one editor (p50) | completion p50 ms "
          "| prompt tokens reused | batch summaries done |")
    print("|---|---|---|---|---|---|")
    base = overall.get("1")
    for name, s in overall.items():
        if not s["answered"]:
            continue
        ratio = f"{pct(s['ttft'], .5) / pct(base['ttft'], .5):.2f}" if base and base["answered"] else "-"
        done = results[name]["batch_done"]
        print(f"| {name} | {pct(s['ttft'], .5):.0f} / {pct(s['ttft'], .95):.0f} | {ratio} "
              f"| {statistics.median(s['total']):.0f} | {100 * s['reuse']:.1f}% | {'-' if done is None else done} |")
    for with_batch in [n for n in overall if n.endswith("+batch")]:
        plain = overall.get(with_batch.split("+")[0])
        if plain and plain["answered"] and overall[with_batch]["answered"]:
            change = pct(overall[with_batch]["ttft"], .5) / pct(plain["ttft"], .5) - 1
            print(f"\nWith a batch job, {with_batch.split('+')[0]} editor(s): first token p50 {100 * change:+.0f}%.")
    last = results[list(results)[-1]]["status"]["models"]
    if last:
        print(f"\nPrefix cache after the last scenario: {json.dumps(last[0].get('prefix_cache'))}")
        workers = results[list(results)[-1]]["status"]["workers"]
        print(f"\nWorkers after the last scenario: {json.dumps(workers)}")


if __name__ == "__main__":
    main()
