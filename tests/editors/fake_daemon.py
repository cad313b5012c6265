"""A fake `ember serve` for editor-client tests of failure paths (crashes, slow replies, errors).

It speaks Content-Length framed JSON-RPC 2.0 on stdio and answers every method an editor client
uses with canned but protocol-shaped results. Params are checked against the real wire types
(daemon/ember/wire.py) when they can be imported, so a client that passes here sends what the real
daemon accepts. Switches, in the manner of conform.nvim's tests/fake_formatter.sh:

  --record FILE          append every message received and sent as a JSON line
  --crash-after N        exit with code 3 on receiving the N-th request (initialize counts)
  --crash-once FILE      like --crash-after, but only while FILE does not exist (it is created)
  --slow SECONDS         delay every task reply
  --complete-delays LIST comma-separated delays of the 1st, 2nd, ... `complete` (last repeats)
  --complete-texts LIST  texts of the 1st, 2nd, ... `complete`, separated by '|' (last repeats)
  --ignore-cancel        answer cancelled requests anyway (a daemon that finished first)
  --error METHOD=CODE:MESSAGE   answer METHOD with this error
  --progress             send ember/progress (load 0, 50, 100, ready) before the first task
  --stderr TEXT          write TEXT to stderr at start (for log tests)
  --kill-on METHOD       die by SIGKILL (signal 9) on receiving a METHOD request
  --load-delay SECONDS   `models/load` takes this long, with ember/progress steps meanwhile
  --type-through         answer a `complete` whose prefix only adds the start of the last
                         completion for the same `supersede` key with that completion's rest
                         (same completion_id, usage.typed_through), as the daemon does

As the daemon does, a `complete` cancels the one still running with the same `supersede` key (it
gets -32800). Notifications that carry data (context/add, completion/feedback) are checked against
wire.NOTIFICATION_PARAMS; one that does not fit is recorded with "dir": "invalid".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

try:  # strict params, exactly as the daemon checks them
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "daemon"))
    from ember import wire  # type: ignore
except Exception:  # pragma: no cover - pydantic or the package missing
    wire = None

TASKS = {"complete", "summarize", "translate", "classify", "tokenize"}
MODEL = "fake-model"  # its config name
LABEL = "FakeLM-7M-Instruct"  # its own name, as the daemon reports it (`label`)


class Fake:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = sys.stdout.buffer
        self.lock = threading.Lock()
        self.requests = 0
        self.completes = 0
        self.shutdown = False
        self.cancelled: dict[Any, threading.Event] = {}
        self.progress_sent = False
        self.running_by_key: dict[str, Any] = {}  # supersede key -> id of the complete running
        self.last_by_key: dict[str, dict[str, Any]] = {}  # supersede key -> {prefix, text, id}
        self.started = time.time()
        self.errors = {}
        for spec in args.error or []:
            method, _, rest = spec.partition("=")
            code, _, message = rest.partition(":")
            self.errors[method] = (int(code), message)

    # -- io --------------------------------------------------------------------------------------

    def record(self, direction: str, msg: Any) -> None:
        if not self.args.record:
            return
        with open(self.args.record, "a", encoding="utf-8") as f:
            f.write(json.dumps({"pid": os.getpid(), "dir": direction, "msg": msg}) + "\n")

    def send(self, msg: dict[str, Any]) -> None:
        body = json.dumps(msg).encode()
        with self.lock:
            self.record("out", msg)
            self.out.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.out.flush()

    def reply(self, rid: Any, result: Any = None, error: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rid}
        if error is not None:
            msg["error"] = error
        else:
            msg["result"] = result
        self.send(msg)

    def read(self) -> dict[str, Any] | None:
        inp = sys.stdin.buffer
        length = None
        while True:
            line = inp.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                if length is not None:
                    break
                continue
            name, _, value = line.decode().partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return json.loads(inp.read(length))

    # -- dispatch --------------------------------------------------------------------------------

    def crash_now(self) -> bool:
        a = self.args
        if a.crash_once:
            if Path(a.crash_once).exists():
                return False
            if self.requests >= (a.crash_after or 1):
                Path(a.crash_once).touch()
                return True
            return False
        return a.crash_after is not None and self.requests >= a.crash_after

    def serve(self) -> None:
        if self.args.stderr:
            sys.stderr.write(self.args.stderr + "\n")
            sys.stderr.flush()
        while True:
            msg = self.read()
            if msg is None:
                os._exit(0)
            self.record("in", msg)
            method, rid = msg.get("method"), msg.get("id")
            if rid is None:
                if method == "$/cancelRequest":
                    self.cancelled.setdefault(msg["params"]["id"], threading.Event()).set()
                elif method == "exit":
                    os._exit(0 if self.shutdown else 1)
                elif wire is not None and method in wire.NOTIFICATION_PARAMS:
                    try:
                        wire.NOTIFICATION_PARAMS[method].model_validate(msg.get("params") or {})
                    except Exception as e:  # noqa: BLE001 - the daemon drops it; tests look for this
                        self.record("invalid", {"method": method, "error": str(e)})
                continue
            self.requests += 1
            if self.args.kill_on and method == self.args.kill_on:
                sys.stderr.write("fake daemon: killing itself with SIGKILL\n")
                sys.stderr.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            if self.crash_now():
                sys.stderr.write("fake daemon: crashing on purpose\n")
                sys.stderr.flush()
                os._exit(3)
            self.cancelled.setdefault(rid, threading.Event())
            nth = 0
            if method == "complete":
                self.completes += 1
                nth = self.completes
                key = (msg.get("params") or {}).get("supersede")
                if key:
                    older = self.running_by_key.get(key)
                    if older is not None:
                        self.cancelled.setdefault(older, threading.Event()).set()
                    self.running_by_key[key] = rid
            threading.Thread(target=self.handle, args=(rid, method, msg.get("params"), nth),
                             daemon=True).start()

    def handle(self, rid: Any, method: str, params: Any, nth: int) -> None:
        if method in self.errors:
            code, message = self.errors[method]
            data = {"tokens": 5000, "limit": 2048} if code == -32002 else None
            err = {"code": code, "message": message}
            if data:
                err["data"] = data
            return self.reply(rid, error=err)
        if wire is not None and method in wire.METHODS and wire.METHODS[method].params is not None:
            try:
                wire.METHODS[method].params.model_validate(
                    {} if params in (None, []) and method not in TASKS else params
                )
            except Exception as e:  # noqa: BLE001 - reported to the client as the daemon would
                return self.reply(rid, error={"code": -32602, "message": f"invalid params: {e}"})
        fn = getattr(self, "m_" + method.replace("/", "_"), None)
        if fn is None:
            return self.reply(rid, error={"code": -32601, "message": f"method not found: {method}"})
        if method in TASKS and self.args.progress and not self.progress_sent:
            self.progress_sent = True
            self.send_progress([("load", 0), ("load", 50), ("load", 100), ("ready", 100)], 0.0)
        delay = self.args.slow if method in TASKS - {"tokenize"} else 0.0
        if method == "complete":
            delays = [float(x) for x in (self.args.complete_delays or "").split(",") if x]
            if delays:
                delay = delays[min(nth, len(delays)) - 1]
        start = time.monotonic()
        if method == "complete":
            through = self.typed_through(params or {})
            if through is not None:
                return self.reply(rid, through)
        cancelled = self.cancelled[rid].wait(delay) if delay else self.cancelled[rid].is_set()
        if cancelled and not self.args.ignore_cancel:
            return self.reply(rid, error={"code": -32800, "message": "request cancelled"})
        if cancelled:  # a daemon that had finished already: the full delay, then the answer
            time.sleep(max(0.0, delay - (time.monotonic() - start)))
        result = fn(params or {}) if method != "complete" else self.m_complete(params or {}, nth)
        if isinstance(result, dict) and "__error__" in result:
            return self.reply(rid, error=result["__error__"])
        text = result.get("text") if isinstance(result, dict) else None
        if isinstance(params, dict) and params.get("stream") and isinstance(text, str):
            pieces = [w + " " for w in text.split(" ")]
            pieces[-1] = pieces[-1][:-1]
            for i, piece in enumerate(pieces):
                self.send({"jsonrpc": "2.0", "method": "ember/stream",
                           "params": {"id": rid, "delta": piece, "index": i}})
        self.reply(rid, result)

    def send_progress(self, steps: list[tuple[str, int]], pause: float) -> None:
        for phase, pct in steps:
            self.send({"jsonrpc": "2.0", "method": "ember/progress", "params": {
                "model": MODEL, "label": LABEL, "phase": phase, "percent": pct, "bytes": None,
                "total_bytes": None, "message": "loading weights" if phase == "load" else ""}})
            time.sleep(pause)

    # -- methods ---------------------------------------------------------------------------------

    def entry(self) -> dict[str, Any]:
        return {"name": MODEL, "label": LABEL, "source": "/models/FakeLM-7M-Instruct.gguf",
                "kind": "local", "loaded": self.progress_sent,
                "tasks": ["complete", "summarize", "translate", "classify"]}

    def m_models_load(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("model") != MODEL:
            return {"__error__": {"code": -32602, "message": f"unknown model {p.get('model')!r}"}}
        if not self.progress_sent:
            self.progress_sent = True
            steps = [("load", 0), ("load", 25), ("load", 50), ("load", 75), ("load", 100)]
            self.send_progress(steps, self.args.load_delay / len(steps))
            self.send_progress([("ready", 100)], 0.0)
        return {"model": {**self.entry(), "loaded": True}}

    def m_models_list(self, p: Any) -> dict[str, Any]:
        return {"models": [self.entry()]}

    def usage(self) -> dict[str, Any]:
        return {"usage": {"prompt_tokens": 3, "completion_tokens": 2},
                "timings": {"queue_ms": 0, "load_ms": 0, "run_ms": 1, "total_ms": 1}}

    def m_initialize(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"server": {"name": "ember-fake", "version": "0.0.0"}, "protocol_version": "1",
                "methods": sorted(wire.METHODS) if wire else [], "tasks": sorted(TASKS - {"tokenize"}),
                "models": [self.entry()], "device": "cpu", "pid": os.getpid()}

    def m_shutdown(self, p: dict[str, Any]) -> None:
        self.shutdown = True
        return None

    def m_tokenize(self, p: dict[str, Any]) -> dict[str, Any]:
        words = p.get("text", "").split()
        r: dict[str, Any] = {"model": "fake-model", "count": len(words)}
        if p.get("return_ids", True):
            r["ids"] = list(range(len(words)))
        if p.get("return_tokens", True):
            r["tokens"] = words
        if p.get("return_offsets", True):
            r["offsets"] = []
        return r

    def m_complete(self, p: dict[str, Any], nth: int = 1) -> dict[str, Any]:
        texts = (self.args.complete_texts or "completion()").split("|")
        text = texts[min(max(nth, 1), len(texts)) - 1]
        cid = f"fake-{nth}"
        if p.get("supersede") and p.get("prefix") is not None:
            self.last_by_key[p["supersede"]] = {"prefix": p["prefix"], "text": text, "id": cid}
        return {"text": text, "finish_reason": "stop", "model": "fake-model", "completion_id": cid,
                **self.usage()}

    def typed_through(self, p: dict[str, Any]) -> dict[str, Any] | None:
        """The rest of the last completion for this key when the new prefix typed its start."""
        last = self.last_by_key.get(p.get("supersede") or "")
        prefix = p.get("prefix")
        if not self.args.type_through or last is None or not isinstance(prefix, str):
            return None
        if not prefix.startswith(last["prefix"]):
            return None
        typed = prefix[len(last["prefix"]):]
        if not typed or not last["text"].startswith(typed) or typed == last["text"]:
            return None
        self.last_by_key[p["supersede"]] = {"prefix": prefix, "text": last["text"][len(typed):],
                                            "id": last["id"]}
        usage = self.usage()
        usage["usage"]["typed_through"] = len(typed)
        return {"text": last["text"][len(typed):], "finish_reason": "stop", "model": "fake-model",
                "completion_id": last["id"], **usage}

    def m_summarize(self, p: dict[str, Any]) -> dict[str, Any]:
        words = p["text"].split()[:5]
        return {"text": "Summary: " + " ".join(words), "finish_reason": "stop", "stages": 1,
                "model": "fake-model", **self.usage()}

    def m_translate(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"text": f"[{p['target']}] {p['text']}", "finish_reason": "stop",
                "model": "fake-model", **self.usage()}

    def m_classify(self, p: dict[str, Any]) -> dict[str, Any]:
        labels = p.get("labels") or ["positive", "negative", "neutral"]
        rest = 0.3 / (len(labels) - 1)
        scores = [{"label": lab, "score": 0.7 if i == 0 else rest} for i, lab in enumerate(labels)]
        return {"label": labels[0], "scores": scores, "calibrated": True, "model": "fake-model",
                **self.usage()}

    def m_daemon_status(self, p: Any) -> dict[str, Any]:
        return {"version": "0.0.0", "pid": os.getpid(), "uptime_s": time.time() - self.started,
                "requests_served": self.requests, "queue_depth": 0, "running": 0,
                "memory": {"rss_bytes": 50_000_000},
                "models": [{**self.entry(), "loaded": True, "memory_bytes": 1_000_000}],
                "workers": 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--record")
    ap.add_argument("--crash-after", type=int)
    ap.add_argument("--crash-once")
    ap.add_argument("--slow", type=float, default=0.0)
    ap.add_argument("--complete-delays")
    ap.add_argument("--complete-texts")
    ap.add_argument("--ignore-cancel", action="store_true")
    ap.add_argument("--error", action="append")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--stderr")
    ap.add_argument("--type-through", action="store_true")
    ap.add_argument("--kill-on")
    ap.add_argument("--load-delay", type=float, default=0.0)
    Fake(ap.parse_args()).serve()


if __name__ == "__main__":
    main()
