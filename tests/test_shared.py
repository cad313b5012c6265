"""The shared daemon over real processes: `ember daemon`, `connect`, `call`, `pipe` and ember.client.

Each test gets its own XDG_RUNTIME_DIR (from `daemon_env`), so its own socket folder and daemon;
the fixture stops the daemon afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

import rpc_client
from ember.client import AsyncClient, Client
from ember.shared.paths import lock_holder
from rpc_client import EMBER, Daemon
from waiting import wait_for

TIMEOUT = 120
LONG = {"prompt": "1, 2, 3, 4,", "max_tokens": 2000}  # counting on: runs for minutes unless cancelled


class Shared:
    """One test's shared daemon: its folder, commands run against it, and cleanup."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.folder = Path(env["XDG_RUNTIME_DIR"]) / "ember"
        self.procs: list[subprocess.Popen] = []
        self.bridges: list[Daemon] = []

    @property
    def socket(self) -> Path:
        return self.folder / "ember.sock"

    def ember(self, *args: str, input: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([EMBER, *args], input=input, capture_output=True, timeout=TIMEOUT,
                              env={**self.env, **(env or {})})

    def spawn(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen([EMBER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        self.procs.append(proc)
        return proc

    def start(self, env: dict | None = None) -> int:
        done = self.ember("daemon", "start", env=env)
        assert done.returncode == 0, done.stderr.decode()
        pid = self.pid()
        assert pid, "no daemon holds the lock after start"
        return pid

    def pid(self) -> int | None:
        return lock_holder(self.folder / "ember.lock")

    def client(self) -> Client:
        return Client.connect(self.socket, start=False)

    def status(self) -> dict[str, Any]:
        with self.client() as c:
            return c.status()

    def connect(self, framing: str) -> Daemon:
        """`ember connect`, driven by the same test client as `ember serve`."""

        class ConnectInsteadOfServe:
            PIPE = subprocess.PIPE

            @staticmethod
            def Popen(cmd: list[str], **kw: Any) -> subprocess.Popen:  # noqa: N802 - subprocess's name
                return subprocess.Popen([EMBER, "connect", *cmd[2:]], **kw)

        with mock.patch.object(rpc_client, "subprocess", ConnectInsteadOfServe):
            bridge = Daemon(framing, [], self.env)
        self.bridges.append(bridge)
        return bridge

    def log(self) -> str:
        path = self.folder / "ember.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for b in self.bridges:
            b.kill()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=10)
        self.ember("daemon", "stop")
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def shared(daemon_env):
    s = Shared(daemon_env)
    yield s
    s.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- the daemon itself --------------------------------------------------------------------------


def test_start_status_stop_and_permissions(shared):
    pid = shared.start()
    assert stat.S_ISSOCK(os.lstat(shared.socket).st_mode)
    assert mode(shared.socket) == 0o600
    assert mode(shared.folder) == 0o700

    status = shared.ember("daemon", "status")
    assert status.returncode == 0
    assert f"pid:      {pid}" in status.stdout.decode() and str(shared.socket) in status.stdout.decode()
    report = json.loads(shared.ember("daemon", "status", "--json").stdout)
    assert report["running"] is True and report["pid"] == pid == report["status"]["pid"]
    assert report["status"]["model_loads"] == 0

    assert shared.ember("daemon", "stop").returncode == 0
    assert shared.pid() is None
    assert not shared.socket.exists()
    stopped = shared.ember("daemon", "status")
    assert stopped.returncode == 3 and "not running" in stopped.stdout.decode()


def test_a_folder_others_can_reach_is_refused(shared):
    shared.folder.mkdir(mode=0o755)
    os.chmod(shared.folder, 0o755)  # whatever the umask
    for args in (["daemon", "start"], ["call", "tokenize", "--text", "x"]):
        done = shared.ember(*args)
        assert done.returncode == 3
        message = done.stderr.decode()
        assert "refusing the socket folder" in message and "0755" in message and "chmod 700" in message
    assert not shared.socket.exists() and shared.pid() is None


def test_only_one_daemon_per_user(shared):
    pid = shared.start()
    second = shared.ember("daemon", "run")
    assert second.returncode == 3
    assert f"already running (pid {pid}" in second.stderr.decode()
    again = shared.ember("daemon", "start")
    assert again.returncode == 0 and "already running" in again.stdout.decode()
    assert shared.pid() == pid


def test_stale_socket_after_a_crash_is_replaced(shared):
    old = shared.start()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: shared.pid() is None, "the killed daemon's lock to be released")
    assert shared.socket.exists()  # left behind by the crash
    probe = socket.socket(socket.AF_UNIX)
    with pytest.raises(ConnectionRefusedError):
        probe.connect(str(shared.socket))
    probe.close()

    done = shared.ember("call", "daemon/status", "--json")
    assert done.returncode == 0, done.stderr.decode()
    new = json.loads(done.stdout)["pid"]
    assert new != old and shared.pid() == new
    assert mode(shared.socket) == 0o600


def test_idle_daemon_exits_but_not_while_a_client_is_connected(shared):
    shared.start(env={"EMBER_SHARED__IDLE_TIMEOUT_S": "2"})
    shared.env["EMBER_SHARED__IDLE_TIMEOUT_S"] = "2"
    with shared.client() as client:
        since = client.status()["uptime_s"]
        # Polled on the daemon's own clock: longer than the timeout with this client connected.
        wait_for(lambda: client.status()["uptime_s"] >= since + 3, "3 s of daemon uptime")
    wait_for(lambda: shared.pid() is None, "the idle daemon to exit")
    assert not shared.socket.exists()
    assert "No clients and no work" in shared.log()


# -- ember call and ember pipe ------------------------------------------------------------------


def test_call_plain_json_and_stdin(shared):
    plain = shared.ember("call", "tokenize", "--text", "Hello world")
    assert (plain.returncode, plain.stdout, plain.stderr) == (0, b"2\n", b"")
    piped = shared.ember("call", "tokenize", "--text", "-", input=b"Hello world")
    assert piped.stdout == b"2\n"
    as_json = json.loads(shared.ember("call", "tokenize", "--text", "Hello world", "--json").stdout)
    assert as_json["tokens"] == ["Hello", "Ġworld"]
    params = json.loads(shared.ember("call", "tokenize", "--params", '{"text": "Hello"}',
                                     "--param", "return_offsets=false", "--json").stdout)
    assert params["count"] == 1 and "offsets" not in params
    text = shared.ember("call", "detokenize", "--param", "ids=[19556, 905]")
    assert text.stdout == b"Hello world\n"


CALL_ERRORS = [
    (["tokenize", "--param", "bogus=1"], 2, "ember: bogus: unknown parameter (code -32602)"),
    (["tokenize"], 2, "(code -32602)"),
    (["no/such/method"], 2, "ember: Method not found: no/such/method (code -32601)"),
    (["tokenize", "--param", "novalue"], 2, "expected KEY=VALUE"),
    (["tokenize", "--params", "[1]"], 2, "--params must be a JSON object"),
    (["tokenize", "--text", "x", "--stream"], 2, "--stream works with"),
]


def test_call_errors_go_to_stderr_with_distinct_exit_codes(shared):
    # A second, unloadable model (naming any model replaces the default table, so name both).
    shared.env.update(EMBER_MODELS__DEFAULT__SOURCE="smollm2",
                      EMBER_MODELS__BROKEN__SOURCE="some-org/not-cached-model")
    for args, code, message in CALL_ERRORS:
        done = shared.ember("call", *args)
        assert (done.returncode, done.stdout) == (code, b""), args
        assert message in done.stderr.decode(), args
    broken = shared.ember("call", "complete", "--text", "hi", "--param", "model=broken")
    assert (broken.returncode, broken.stdout) == (3, b"")
    assert "not-cached-model" in broken.stderr.decode() and "(code -32001)" in broken.stderr.decode()


def test_pipe_answers_every_line_in_order(shared):
    lines = [
        '{"method": "tokenize", "params": {"text": "Hello world"}}',
        "",
        '{"id": "a", "method": "tokenize", "params": {"text": "Hello"}}',
        "not json",
        '{"jsonrpc": "2.0", "id": 7, "method": "tokenize", "params": {"bogus": 1}}',
        '{"method": "daemon/status"}',
    ]
    done = shared.ember("pipe", input="\n".join(lines).encode())  # EOF at once: in flight must finish
    assert done.returncode == 0, done.stderr.decode()
    replies = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["id"] for r in replies] == [1, "a", None, 7, 6]
    assert replies[0]["result"]["count"] == 2 and replies[1]["result"]["count"] == 1
    assert replies[2]["error"]["code"] == -32700
    assert replies[3]["error"]["code"] == -32602
    assert replies[4]["result"]["pid"] == shared.pid()


# -- ember connect ------------------------------------------------------------------------------


def test_connect_bridges_either_framing(shared):
    bridges = {framing: shared.connect(framing) for framing in ("headers", "lines")}
    for bridge in bridges.values():
        bridge.call("tokenize", {"text": "x"})  # an answer means this bridge is connected
    for framing, bridge in bridges.items():
        info = bridge.call("initialize", {"process_id": os.getpid(), "client_info": {"name": framing}})
        assert info["server"]["name"] == "ember" and info["pid"] == shared.pid()
        assert bridge.call("tokenize", {"text": "Hello world"})["ids"] == [19556, 905]
        bridge.send_raw(bridge.frame(b'{"jsonrpc": "2.0", "id": 1, "method": '))
        assert bridge.reply(None)["error"]["code"] == -32700
        assert bridge.call("daemon/status")["connections"] == 2
        # Only protocol bytes on stdout, in the client's own framing.
        assert bridge.raw_out.startswith(b"Content-Length: " if framing == "headers" else b'{"jsonrpc"')
    for bridge in bridges.values():
        # EOF right after a request: the reply still comes, then the bridge exits 0.
        msg_id = bridge.start_request("tokenize", {"text": "last"})
        bridge.close_stdin()
        assert bridge.reply(msg_id)["result"]["count"] == 1
        assert bridge.wait_exit() == 0


def test_connect_no_start_joins_a_running_daemon_only(shared):
    # No daemon: exit 3 at once, with a message that says how to start one; nothing is started.
    done = shared.ember("connect", "--no-start", input=b"")
    assert done.returncode == 3
    assert b"not running" in done.stderr and b"ember daemon start" in done.stderr
    assert done.stdout == b""
    assert shared.pid() is None and not shared.socket.exists()
    # With one running, it bridges like `ember connect`.
    pid = shared.start()
    request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "daemon/status"}).encode() + b"\n"
    bridged = shared.ember("connect", "--no-start", input=request)
    assert bridged.returncode == 0, bridged.stderr.decode()
    assert json.loads(bridged.stdout.splitlines()[0])["result"]["pid"] == pid


def test_exit_ends_only_that_client(shared):
    first, second = shared.connect("headers"), shared.connect("lines")
    second.call("daemon/status")  # both bridges are connected once each has had an answer
    assert first.call("daemon/status")["connections"] == 2
    assert first.request("shutdown")["result"] is None
    assert first.request("daemon/status")["error"]["code"] == -32004  # only this client shuts down
    first.notify("exit")
    assert first.wait_exit() == 0
    # The daemon notices the first client's disconnect on its own time: poll, from the second.
    status = wait_for(lambda: (st := second.call("daemon/status"))["connections"] == 1 and st,
                      "the first client's disconnect")
    assert status["pid"] == shared.pid()


# -- with the real model ------------------------------------------------------------------------


@pytest.mark.model
def test_clients_share_one_loaded_model_and_get_only_their_own_replies(shared):
    a, b = shared.connect("headers"), shared.connect("lines")
    # The same request id on both connections: each reply and delta must reach its own client.
    a.send({"jsonrpc": "2.0", "id": 50, "method": "complete",
            "params": {"prompt": "1, 2, 3,", "max_tokens": 6, "stream": True}})
    b.send({"jsonrpc": "2.0", "id": 50, "method": "complete",
            "params": {"prompt": "The capital of France is", "max_tokens": 6, "stream": True}})
    text_a, text_b = a.reply(50)["result"]["text"], b.reply(50)["result"]["text"]
    assert text_a != text_b
    assert "".join(a.stream_deltas(50)) == text_a
    assert "".join(b.stream_deltas(50)) == text_b
    status = a.call("daemon/status")
    assert status["model_loads"] == 1 and len(status["models"]) == 1
    assert (status["connections"], status["requests_served"]) == (2, 3)
    # One-shot `ember call`s use the same resident model: no second load.
    for prompt in ("Hello", "Goodbye"):
        done = shared.ember("call", "complete", "--text", prompt, "--param", "max_tokens=2")
        assert done.returncode == 0, done.stderr.decode()
    status = a.call("daemon/status")
    assert (status["model_loads"], status["requests_served"]) == (1, 6)


@pytest.mark.model
def test_supersede_is_per_client(shared):
    a, b = shared.connect("lines"), shared.connect("lines")
    key = "file:///same/uri.py"
    a.send({"jsonrpc": "2.0", "id": 1, "method": "complete",
            "params": {"prompt": "1, 2, 3,", "max_tokens": 6, "supersede": key}})
    b.send({"jsonrpc": "2.0", "id": 2, "method": "complete",
            "params": {"prompt": "1, 2, 3,", "max_tokens": 6, "supersede": key}})
    # Another client's key of the same name supersedes nothing: both are answered.
    assert "text" in a.reply(1)["result"]
    assert "text" in b.reply(2)["result"]


@pytest.mark.model
def test_model_results_in_plain_json_and_stream_form(shared):
    labels = ["--param", 'labels=["good","bad"]']
    as_json = shared.ember("call", "classify", "--text", "great", *labels, "--json")
    assert as_json.returncode == 0, as_json.stderr.decode()
    result = json.loads(as_json.stdout)
    assert result["label"] in ("good", "bad")
    assert abs(sum(s["score"] for s in result["scores"]) - 1) < 1e-6

    plain = shared.ember("call", "classify", "--text", "great", *labels).stdout.decode().splitlines()
    assert [line.split("\t")[0] for line in plain] == [s["label"] for s in result["scores"]]
    assert all(float(line.split("\t")[1]) >= 0 for line in plain)

    text = b"The city council voted on Tuesday to extend the bike lane network by 40 km."
    summary = shared.ember("call", "summarize", "--text", "-", "--param", "max_tokens=16", input=text)
    assert summary.returncode == 0, summary.stderr.decode()
    assert summary.stdout.strip() and summary.stdout.endswith(b"\n")

    streamed = shared.ember("call", "complete", "--text", "1, 2, 3,", "--param", "max_tokens=6", "--stream")
    as_json = json.loads(shared.ember("call", "complete", "--text", "1, 2, 3,", "--param", "max_tokens=6",
                                      "--json").stdout)
    assert streamed.stdout.decode() == as_json["text"] + ("" if as_json["text"].endswith("\n") else "\n")


@pytest.mark.model
def test_a_long_request_does_not_hold_up_others_and_a_killed_client_is_cancelled(shared):
    caller = shared.spawn("call", "complete", "--params", json.dumps(LONG), "--stream")
    assert caller.stdout.read(1), "the long request never produced text"
    with shared.client() as other:
        assert other.tokenize("Hello world")["count"] == 2
        assert other.status()["running"], "the long request should still be running"
    caller.kill()
    wait_for(lambda: "disconnected: cancelling 1 request(s)" in shared.log(), "the cancellation")
    idle = wait_for(lambda: (s := shared.status())["running"] == [] and s["queue_depth"] == 0 and s,
                    "the worker to stop")
    # Only this status call's own connection remains, once the closed ones are noticed.
    wait_for(lambda: shared.status()["connections"] == 1, "the other clients' disconnects")
    assert idle["queue_depth"] == 0


@pytest.mark.model
def test_async_client_streams_and_cancelling_the_task_cancels_the_request(shared):
    shared.start()

    async def scenario() -> dict[str, Any]:
        async with await AsyncClient.connect(shared.socket, start=False) as client:
            assert (await client.tokenize("Hello world"))["count"] == 2
            first_delta = asyncio.Event()
            long = asyncio.ensure_future(client.complete(on_delta=lambda _d: first_delta.set(), **LONG))
            await asyncio.wait_for(first_delta.wait(), TIMEOUT)
            long.cancel()
            with pytest.raises(asyncio.CancelledError):
                await long
            while (status := await client.status())["running"]:
                await asyncio.sleep(0.05)
            return status

    status = asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))
    assert status["queue_depth"] == 0 and status["model_loads"] == 1


@pytest.mark.model
def test_stop_cancels_running_calls_with_exit_code_4(shared):
    caller = shared.spawn("call", "complete", "--params", json.dumps(LONG), "--stream")
    assert caller.stdout.read(1), "the long request never produced text"
    assert shared.ember("daemon", "stop").returncode == 0
    _, err = caller.communicate(timeout=TIMEOUT)
    assert caller.returncode == 4
    assert "(code -32800)" in err.decode()

