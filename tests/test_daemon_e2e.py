"""Concurrency, cancellation, lifecycle and the registry over a real `ember serve` on SmolLM2."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from rpc_client import EMBER
from waiting import wait_for

pytestmark = pytest.mark.model

# A raw prompt that keeps a small model busy for hundreds of tokens.
LONG = {"prompt": "Count from 1 to 1000: 1, 2, 3, 4, 5,", "max_tokens": 400, "stream": True}


def first_delta(d, msg_id):
    """Block until the request streams its first piece: it is running on the worker now."""
    while not d.stream_deltas(msg_id):
        msg = d.next_message()
        assert msg is not None
        if isinstance(msg, dict) and msg.get("id") == msg_id and "method" not in msg:
            raise AssertionError(f"request finished before streaming: {msg}")
        if isinstance(msg, dict) and "id" in msg and "method" not in msg:
            d._replies[msg["id"]] = msg


def test_tokenize_is_answered_while_a_long_request_runs(ember):
    d = ember("headers")
    long_id = d.start_request("complete", LONG)
    first_delta(d, long_id)
    tok = d.request("tokenize", {"text": "while generating"})
    assert tok["result"]["count"] > 0
    assert long_id not in d._replies  # the long request is still running
    status = d.call("daemon/status")
    assert status["running"] and status["running"][0].startswith("complete")
    d.notify("$/cancelRequest", {"id": long_id})
    assert d.reply(long_id)["error"]["code"] == -32800


def test_cancelling_a_running_request_frees_the_worker_at_once(ember):
    d = ember("lines")
    long_id = d.start_request("complete", LONG)
    first_delta(d, long_id)
    d.notify("$/cancelRequest", {"id": long_id})
    reply = d.reply(long_id)
    assert reply["error"] == {"code": -32800, "message": "Request cancelled"}
    after = len(d.stream_deltas(long_id))
    nxt = d.call("complete", {"prompt": "Hello", "max_tokens": 2})
    assert nxt["finish_reason"] == "length"
    # Generation stopped within a step or two of the cancel, not after 400 tokens.
    assert len(d.stream_deltas(long_id)) <= after + 2
    assert d.call("daemon/status")["running"] == []


def test_cancelling_a_queued_request_answers_it_before_the_running_one(ember):
    d = ember("lines")
    running = d.start_request("complete", LONG)
    first_delta(d, running)
    queued = d.start_request("complete", {"prompt": "never runs", "max_tokens": 5})
    d.notify("$/cancelRequest", {"id": queued})
    assert d.reply(queued)["error"]["code"] == -32800
    assert running not in d._replies
    d.notify("$/cancelRequest", {"id": running})
    assert d.reply(running)["error"]["code"] == -32800


def test_supersede_cancels_the_older_request_with_the_same_key_running_or_queued(ember):
    d = ember("lines")
    key = {"supersede": "file:///a.py"}
    running = d.start_request("complete", {**LONG, **key})
    first_delta(d, running)
    queued = d.start_request("complete", {**LONG, **key})
    other_key = d.start_request("complete", {"prompt": "Hi", "max_tokens": 2, "supersede": "file:///b.py"})
    # The newest for a.py replaces the queued one, which replaced the running one.
    newest = d.start_request("complete", {"prompt": "Hello", "max_tokens": 3, **key})
    assert d.reply(running)["error"]["code"] == -32800
    assert d.reply(queued)["error"]["code"] == -32800
    assert "text" in d.reply(other_key)["result"]
    assert d.reply(newest)["result"]["finish_reason"] in ("stop", "length")


def test_supersede_needs_a_non_empty_key(ember):
    d = ember("lines")
    reply = d.request("complete", {"prompt": "Hi", "supersede": ""})
    assert reply["error"]["code"] == -32602
    assert "supersede" in reply["error"]["message"]


def test_past_a_full_queue_requests_wait_and_a_cancel_still_gets_through(ember):
    # Issue 22: past daemon.max_queue a client's next requests wait for a slot, never -32003.
    d = ember("lines", ["--set", "daemon.max_queue=1"])
    running = d.start_request("complete", LONG)
    first_delta(d, running)
    queued = d.start_request("complete", {"prompt": "a", "max_tokens": 1})
    over = d.start_request("complete", {"prompt": "b", "max_tokens": 1})
    d.notify("$/cancelRequest", {"id": running})  # read ahead of the requests that wait
    assert d.reply(running)["error"]["code"] == -32800
    assert "text" in d.reply(queued)["result"]
    assert "text" in d.reply(over)["result"]


def test_eof_finishes_requests_in_flight_then_exits_zero(ember):
    d = ember("lines")
    d.send({"jsonrpc": "2.0", "id": 1, "method": "complete", "params": {"prompt": "Hi", "max_tokens": 3}})
    d.send({"jsonrpc": "2.0", "id": 2, "method": "tokenize", "params": {"text": "Hi"}})
    d.close_stdin()
    assert "text" in d.reply(1)["result"]
    assert d.reply(2)["result"]["count"] == 1
    assert d.wait_exit() == 0


def test_shutdown_then_exit(ember):
    d = ember("headers")
    assert d.request("shutdown")["result"] is None
    after = d.request("tokenize", {"text": "x"})
    assert after["error"]["code"] == -32004
    d.notify("exit")
    assert d.wait_exit() == 0


def test_shutdown_and_exit_piped_together_exit_cleanly(daemon_env):
    """A script writes both at once: `exit` is read before `shutdown` has been handled."""
    piped = (b'{"jsonrpc":"2.0","id":1,"method":"shutdown"}\n'
             b'{"jsonrpc":"2.0","method":"exit"}\n')
    done = subprocess.run([EMBER, "serve"], input=piped, capture_output=True, env=daemon_env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert [json.loads(line) for line in done.stdout.decode().splitlines()] == [
        {"jsonrpc": "2.0", "id": 1, "result": None}]


def test_exit_answers_the_requests_still_in_flight(daemon_env):
    """`exit` right behind work: nothing goes unanswered, whatever had not finished is -32800."""
    piped = (b'{"jsonrpc":"2.0","id":1,"method":"complete","params":{"prompt":"Hi","max_tokens":64}}\n'
             b'{"jsonrpc":"2.0","id":2,"method":"tokenize","params":{"text":"Hi"}}\n'
             b'{"jsonrpc":"2.0","id":3,"method":"shutdown"}\n'
             b'{"jsonrpc":"2.0","method":"exit"}\n')
    done = subprocess.run([EMBER, "serve"], input=piped, capture_output=True, env=daemon_env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    replies = {r["id"]: r for r in map(json.loads, done.stdout.decode().splitlines())}
    assert sorted(replies) == [1, 2, 3] and replies[3]["result"] is None
    for i in (1, 2):
        assert "result" in replies[i] or replies[i]["error"]["code"] == -32800, replies[i]


def test_exit_without_shutdown_is_code_one(ember):
    d = ember("headers")
    d.call("daemon/status")
    d.notify("exit")
    assert d.wait_exit() == 1


def test_sigterm_cancels_work_and_exits_cleanly(ember):
    d = ember("lines")
    long_id = d.start_request("complete", LONG)
    first_delta(d, long_id)
    d.proc.send_signal(signal.SIGTERM)
    assert d.reply(long_id)["error"]["code"] == -32800
    assert d.wait_exit() == 0


@pytest.mark.parametrize("how", ["flag", "initialize", "processId"])
def test_exits_when_the_parent_process_dies(ember, how):
    parent = subprocess.Popen(["sleep", "300"])
    try:
        args = ["--parent-pid", str(parent.pid)] if how == "flag" else []
        d = ember("headers", args)
        key = "processId" if how == "processId" else "process_id"
        d.call("initialize", {key: parent.pid if how != "flag" else None})
        assert d.proc.poll() is None
        parent.kill()
        parent.wait()
        assert d.wait_exit(timeout=30) == 0
    finally:
        parent.kill()


def test_status_and_model_management(ember):
    d = ember("headers")
    d.call("initialize", {})
    assert d.call("models/list")["models"][0]["loaded"] is False
    loaded = d.call("models/load", {"model": "default"})["model"]
    assert loaded["device"] == "cpu" and loaded["memory_bytes"] > 0
    assert loaded["engine"] == "onnxruntime" and loaded["quantization"].startswith("int4")
    status = d.call("daemon/status")
    assert status["model_loads"] == 1 and status["queue_depth"] == 0
    assert status["device"] == "cpu"  # resolved once the worker had torch
    assert status["memory"]["rss_bytes"] > 0 and status["memory"]["models_bytes"] > 0
    assert [m["name"] for m in status["models"]] == ["default"]
    phases = [n["params"]["phase"] for n in d.notifications if n["method"] == "ember/progress"]
    assert "load" in phases and phases[-1] == "ready"
    assert d.call("models/unload", {"model": "default"}) == {"unloaded": True}
    assert d.call("daemon/status")["models"] == []
    assert d.call("models/unload", {"model": "default"}) == {"unloaded": False}


def test_idle_models_are_unloaded_after_keep_alive(ember):
    d = ember("lines", ["--set", "daemon.keep_alive_s=1"])
    d.call("complete", {"prompt": "Hi", "max_tokens": 1})
    wait_for(lambda: d.call("daemon/status")["models"] == [], timeout=30)
    # And it comes back on the next request.
    assert d.call("complete", {"prompt": "Hi", "max_tokens": 1})["finish_reason"] in ("length", "stop")


def test_second_start_hits_the_gguf_conversion_cache(ember, tmp_path):
    env = {"EMBER_DAEMON__CACHE_DIR": str(tmp_path / "fresh-cache")}
    first = ember("lines", env=env)
    first.call("initialize", {})
    first.call("complete", {"prompt": "Hi", "max_tokens": 1})
    phases = [n["params"]["phase"] for n in first.notifications if n["method"] == "ember/progress"]
    assert "convert" in phases
    first.close_stdin()
    first.wait_exit()

    second = ember("lines", env=env)
    second.call("initialize", {})
    result = second.call("complete", {"prompt": "Hi", "max_tokens": 1})
    phases = [n["params"]["phase"] for n in second.notifications if n["method"] == "ember/progress"]
    assert "convert" not in phases and "ready" in phases
    assert result["timings"]["load_ms"] > 0
    assert any("GGUF cache hit" in line for line in second.stderr_lines)


def test_preload_loads_at_start_without_a_request(ember):
    d = ember("lines", ["--preload", "default"])
    status = wait_for(lambda: (s := d.call("daemon/status"))["models"] and s)
    assert status["models"][0]["name"] == "default" and status["model_loads"] == 1


def test_concurrent_requests_for_a_loading_model_share_one_load(ember):
    d = ember("lines")
    ids = [d.start_request("complete", {"prompt": f"Hi {i}", "max_tokens": 1}) for i in range(3)]
    ids.append(d.start_request("models/load", {"model": "default"}))
    for msg_id in ids:
        assert "result" in d.reply(msg_id)
    assert d.call("daemon/status")["model_loads"] == 1
