"""Hostile clients, load and faults against real daemons: `ember serve` on stdio and the shared socket.

Regression tests for issue 9's defects: a client that stops reading (bounded memory, paused, then
dropped), one client's large side requests (never hold up another's small ones), deeply nested
JSON (always answered, connection kept), and per-client fairness on the model worker. Plus
`models/unload` while a request runs on the model, and the memory budget evicting under load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

import tiny_models
from ember.shared.paths import lock_holder
from rpc_client import EMBER, SocketPeer
from waiting import wait_for

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 120
# 200,000 characters of real code: its tokenize reply (ids, tokens, offsets) is about 1.4 MB.
BIG = ((REPO / "daemon" / "ember" / "rpc" / "protocol.py").read_text() * 30)[:200_000]
MB = 1 << 20


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def tokenize_frame(msg_id: int, text: str, framing: str = "lines") -> bytes:
    body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "tokenize", "params": {"text": text}}).encode()
    return body + b"\n" if framing == "lines" else b"Content-Length: %d\r\n\r\n" % len(body) + body


class SharedDaemon:
    """A shared daemon of this test's own (private XDG_RUNTIME_DIR), started with `--set` flags."""

    def __init__(self, env: dict[str, str], *settings: str):
        self.env = env
        self.folder = Path(env["XDG_RUNTIME_DIR"]) / "ember"
        args = [EMBER, "daemon", "start"]
        for setting in settings:
            args += ["--set", setting]
        done = subprocess.run(args, capture_output=True, timeout=TIMEOUT, env=env)
        assert done.returncode == 0, done.stderr.decode()
        self.peers: list[SocketPeer] = []

    @property
    def socket(self) -> Path:
        return self.folder / "ember.sock"

    def peer(self, read: bool = True) -> SocketPeer:
        p = SocketPeer(self.socket, read=read)
        self.peers.append(p)
        return p

    def log(self) -> str:
        path = self.folder / "ember.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for p in self.peers:
            p.close()
        subprocess.run([EMBER, "daemon", "stop"], capture_output=True, timeout=TIMEOUT, env=self.env)
        pid = lock_holder(self.folder / "ember.lock")
        if pid:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def shared_daemon(daemon_env):
    started: list[SharedDaemon] = []

    def start(*settings: str) -> SharedDaemon:
        d = SharedDaemon(daemon_env, *settings)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


class RawServe:
    """`ember serve` whose stdout the test reads only when it chooses to (a stalled editor)."""

    def __init__(self, env: dict[str, str], tmp_path: Path, *settings: str):
        args = [EMBER, "serve"]
        for setting in settings:
            args += ["--set", setting]
        self.stderr_path = tmp_path / "serve.log"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=env)

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def rss(self) -> int:
        return psutil.Process(self.proc.pid).memory_info().rss

    def send_in_background(self, frames: list[bytes]) -> threading.Thread:
        def run():
            try:
                for frame in frames:
                    self.proc.stdin.write(frame)
                    self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the daemon went away: what the stall test expects

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def wait_until_torch_is_imported(self) -> None:
        status = {"jsonrpc": "2.0", "id": "status", "method": "daemon/status"}
        while True:
            self.proc.stdin.write(json.dumps(status).encode() + b"\n")
            self.proc.stdin.flush()
            if self.read_line()["result"]["device"] is not None:
                return
            time.sleep(0.1)

    def read_line(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, "daemon closed stdout"
        return json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._stderr.close()


@pytest.fixture
def raw_serve(daemon_env, tmp_path):
    started: list[RawServe] = []

    def start(*settings: str) -> RawServe:
        d = RawServe(daemon_env, tmp_path, *settings)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


# -- defect 1: a client that stops reading ------------------------------------------------------


def test_stdio_pauses_a_client_that_stops_reading_and_loses_no_reply(raw_serve):
    # A queue cap above the request count: this test is about output, not Busy.
    d = raw_serve("daemon.max_unread_mb=1", "daemon.max_client_queue=100")
    d.proc.stdin.write(tokenize_frame(0, "warm up the tokenizer"))
    d.proc.stdin.flush()
    assert d.read_line()["id"] == 0
    d.wait_until_torch_is_imported()  # it is imported in the background: hundreds of MB
    before = d.rss()
    count = 80
    d.send_in_background([tokenize_frame(i, BIG) for i in range(1, count + 1)])
    wait_for(lambda: "is not reading its replies" in d.log(), "the daemon to pause reading")
    # Unbounded, 80 unread replies of 1.4 MB cost this daemon hundreds of MB (issue 9).
    assert d.rss() - before < 100 * MB
    replies = [d.read_line() for _ in range(count)]
    assert sorted(r["id"] for r in replies) == list(range(1, count + 1))  # each once
    assert all(r["result"]["count"] > 10_000 for r in replies)


def test_stdio_gives_up_on_a_client_stuck_past_the_timeout(raw_serve):
    d = raw_serve("daemon.max_unread_mb=0.5", "daemon.stall_timeout_s=2")
    d.send_in_background([tokenize_frame(i, BIG) for i in range(1, 21)])
    assert d.proc.wait(timeout=TIMEOUT) == 1
    log = d.log()
    assert "The client is stuck: it read none of its replies for 2 s" in log


def test_socket_pauses_then_drops_a_stuck_client_while_others_carry_on(shared_daemon):
    daemon = shared_daemon("daemon.max_unread_mb=1", "daemon.stall_timeout_s=4")
    fast = daemon.peer()
    assert fast.call("tokenize", {"text": "warm up"})["count"] > 0
    wait_for(lambda: fast.call("daemon/status")["device"], "torch to be imported")
    before = fast.call("daemon/status")["memory"]["rss_bytes"]
    stuck = daemon.peer(read=False)

    def flood():
        try:
            for i in range(1, 81):
                stuck.send_raw(tokenize_frame(i, BIG, "headers"))
        except OSError:
            pass  # disconnected: expected

    threading.Thread(target=flood, daemon=True).start()
    wait_for(lambda: "is not reading its replies" in daemon.log(), "the daemon to pause the client")
    assert fast.call("tokenize", {"text": "hello world"})["count"] == 2
    status = fast.call("daemon/status")
    assert status["memory"]["rss_bytes"] - before < 100 * MB
    wait_for(lambda: "is stuck: it read none of its replies for 4 s" in daemon.log(),
             "the stuck client to be dropped")
    wait_for(lambda: fast.call("daemon/status")["connections"] == 1, "the connection to close")
    assert fast.call("tokenize", {"text": "still here"})["count"] > 0


def test_a_paused_client_that_disconnects_is_cleaned_up_at_once(shared_daemon):
    daemon = shared_daemon("daemon.max_unread_mb=1", "daemon.stall_timeout_s=600")
    other = daemon.peer()
    stuck = daemon.peer(read=False)
    for i in range(1, 6):
        stuck.send_raw(tokenize_frame(i, BIG, "headers"))
    wait_for(lambda: "is not reading its replies" in daemon.log(), "the daemon to pause the client")
    stuck.close()
    # Not after the 600 s stall timeout: at once, with its queued work cancelled.
    wait_for(lambda: other.call("daemon/status")["connections"] == 1, "the connection to close", timeout=60)
    assert other.call("daemon/status")["side_queue_depth"] == 0


# -- defect 2: one client's large side requests ---------------------------------------------------


def test_small_tokenize_is_not_held_up_by_another_clients_large_ones(shared_daemon):
    daemon = shared_daemon()
    editor, script = daemon.peer(), daemon.peer()
    assert editor.call("tokenize", {"text": "warm up"})["count"] > 0
    flood = [script.start_request("tokenize", {"text": BIG}) for _ in range(30)]
    wait_for(lambda: editor.call("daemon/status")["side_queue_depth"] >= 10, "the flood to queue")
    small = editor.start_request("tokenize", {"text": "hello world"})
    assert editor.reply(small)["result"]["count"] == 2
    answered_before = len(script.arrivals)
    # First come, first served, it would wait for nearly all 30 (seconds, in issue 9).
    assert answered_before < 20
    for msg_id in flood:
        assert script.reply(msg_id)["result"]["count"] > 10_000


def test_a_batch_over_the_per_client_cap_is_busy_past_it_and_every_request_is_answered(shared_daemon):
    # A batch is one message: it cannot wait in parts, so its members past the cap get Busy
    # (PROTOCOL.md). Separate requests past the cap wait instead (test_pipelined.py).
    daemon = shared_daemon("daemon.max_client_queue=3")
    client = daemon.peer()
    assert client.call("tokenize", {"text": "warm up"})["count"] > 0
    batch = [{"jsonrpc": "2.0", "id": i, "method": "tokenize", "params": {"text": BIG}} for i in range(12)]
    body = json.dumps(batch).encode()
    client.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    replies = client.next_message()
    assert sorted(r["id"] for r in replies) == list(range(12))
    busy = [r for r in replies if "error" in r]
    assert all(r["error"]["code"] == -32003 and "max_client_queue" in r["error"]["message"] for r in busy)
    # Three may wait (and up to two more run, if the side threads take some while the batch is
    # still being queued); the rest are turned away at once.
    assert 7 <= len(busy) <= 9
    other = daemon.peer()
    assert other.call("tokenize", {"text": "my own quota"})["count"] > 0


# -- defect 3: deeply nested JSON ----------------------------------------------------------------


@pytest.mark.parametrize("framing", ["lines", "headers"])
def test_deep_json_on_stdio_is_answered_and_the_connection_stays_usable(ember, framing):
    d = ember(framing)
    for levels in (2_000, 100_000):
        d.send_raw(d.frame(nested(levels).encode()))
        batch_reply = d.next_message()  # a batch holding one invalid member: an array of one error
        assert [(r["id"], r["error"]["code"]) for r in batch_reply] == [(None, -32600)]
        d.send_raw(d.frame(('{"jsonrpc":"2.0","id":"deep","method":"tokenize","params":{"text":"x","n":'
                            + nested(levels) + "}}").encode()))
        params_reply = d.reply("deep")
        assert params_reply["error"]["code"] == -32602 and "nested deeper" in params_reply["error"]["message"]
    assert d.call("tokenize", {"text": "hello world"})["count"] == 2


def test_deep_json_on_the_socket_is_answered_and_the_connection_stays_usable(shared_daemon):
    daemon = shared_daemon()
    peer = daemon.peer()
    for levels in (2_000, 100_000):
        body = nested(levels).encode()
        peer.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert peer.reply(None)["error"]["code"] == -32600
        body = ('{"jsonrpc":"2.0","id":7,"method":"classify","params":{"text":"x","labels":'
                + nested(levels) + "}}").encode()
        peer.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert peer.reply(7)["error"]["code"] == -32602
    assert peer.call("tokenize", {"text": "hello world"})["count"] == 2


@pytest.mark.parametrize("command", [["connect", "--no-start"], ["pipe"]])
def test_deep_json_through_ember_connect_and_pipe(shared_daemon, daemon_env, command):
    shared_daemon()
    request = ('{"jsonrpc":"2.0","id":1,"method":"tokenize","params":{"text":' + nested(50_000) + "}}\n"
               '{"jsonrpc":"2.0","id":2,"method":"tokenize","params":{"text":"hello world"}}\n')
    done = subprocess.run([EMBER, *command], input=request.encode(), capture_output=True,
                          timeout=TIMEOUT, env=daemon_env)
    assert done.returncode == 0, done.stderr.decode()
    replies = {r["id"]: r for r in map(json.loads, done.stdout.decode().splitlines())}
    assert replies[1]["error"]["code"] == -32602
    assert replies[2]["result"]["count"] == 2


# -- fairness on the model worker (SmolLM2) ------------------------------------------------------


@pytest.mark.model
@pytest.mark.parametrize("method,params", [
    ("complete", {"prompt": "The capital of France is", "max_tokens": 2}),  # interactive: jumps ahead
    ("classify", {"text": "I loved it"}),  # normal, like the script's: takes its turn
])
def test_an_editor_is_served_between_a_scripts_queued_requests(shared_daemon, method, params):
    daemon = shared_daemon()
    script, editor = daemon.peer(), daemon.peer()
    assert editor.call("classify", {"text": "warm up the model"})["label"]
    queued = [script.start_request("classify", {"text": f"review number {i} was fine"}) for i in range(20)]
    wait_for(lambda: editor.call("daemon/status")["queue_depth"] >= 15, "the script's requests to queue")
    mine = editor.start_request(method, params)
    assert "result" in editor.reply(mine)
    # Issue 9: first come, first served, the editor waited for all 20.
    assert len(script.arrivals) <= 8
    script.close()  # disconnecting cancels the rest
    wait_for(lambda: editor.call("daemon/status")["queue_depth"] == 0, "the script's work to be cancelled")
    assert len(queued) == 20


@pytest.mark.model
def test_model_work_over_the_per_client_cap_waits_and_a_cancel_still_gets_through(shared_daemon):
    # Issue 22: past the cap a client is slowed down (its next requests wait), never refused.
    daemon = shared_daemon("daemon.max_client_queue=2")
    script, editor = daemon.peer(), daemon.peer()
    running = script.start_request("complete", {"prompt": "1, 2, 3,", "max_tokens": 400, "stream": True})
    wait_for(lambda: editor.call("daemon/status")["running"], "the long request to run")
    waiting = script.start_request("classify", {"text": "fine"})
    over = [script.start_request("classify", {"text": f"one too many {i}"}) for i in range(3)]
    wait_for(lambda: editor.call("daemon/status")["queue_depth"] == 1, "the script's second request to queue")
    theirs = editor.start_request("classify", {"text": "the editor's own"})
    # Behind three requests that wait for a slot, the cancel is read ahead and stops the long one.
    script.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": running}})
    assert script.reply(running)["error"]["code"] == -32800
    assert "result" in editor.reply(theirs)
    assert all("result" in script.reply(w) for w in [waiting, *over])


# -- models under load ---------------------------------------------------------------------------


@pytest.mark.model
def test_unloading_a_model_while_a_request_runs_on_it(ember):
    d = ember("lines")
    running = d.start_request("complete", {"prompt": "Count: 1, 2, 3,", "max_tokens": 24, "stream": True})
    while not d.stream_deltas(running):
        msg = d.next_message()
        assert msg is not None and not (isinstance(msg, dict) and msg.get("id") == running)
    unload = d.start_request("models/unload", {"model": "default"})
    # The unload waits for the running request, which finishes normally.
    finished = d.reply(running)
    assert finished["result"]["usage"]["completion_tokens"] > 0
    assert d.reply(unload)["result"] == {"unloaded": True}
    arrivals = [m.get("id") for m in map(json.loads, d.raw_out.decode().splitlines()) if "method" not in m]
    assert arrivals.index(running) < arrivals.index(unload)
    assert d.call("daemon/status")["models"] == []
    again = d.call("complete", {"prompt": "Hi", "max_tokens": 1})
    assert again["usage"]["completion_tokens"] == 1
    assert d.call("daemon/status")["model_loads"] == 2


def test_the_memory_budget_evicts_under_load(ember, tmp_path):
    a = tiny_models.build_chat_causal_lm(tmp_path / "a")
    b = tiny_models.build_chat_causal_lm(tmp_path / "b")
    cfg = tmp_path / "ember.toml"
    cfg.write_text(f'[daemon]\nmemory_budget_mb = 1\n[models.default]\nsource = "{a}"\n'
                   f'[models.other]\nsource = "{b}"\n')
    d = ember("lines", ["--config", str(cfg)])
    ids = [d.start_request("complete", {"prompt": f"x {i}", "max_tokens": 2,
                                        "model": "default" if i % 2 else "other"}) for i in range(30)]
    ids += [d.start_request("tokenize", {"text": f"y {i}", "model": "other"}) for i in range(10)]
    replies = [d.reply(i) for i in ids]
    assert all("result" in r for r in replies), [r for r in replies if "error" in r][:3]
    status = d.call("daemon/status")
    assert status["model_loads"] >= 3  # models took turns, evicting each other
    assert len(status["models"]) == 1 and status["memory"]["models_bytes"] <= 1 * MB
