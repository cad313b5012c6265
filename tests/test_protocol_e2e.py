"""The JSON-RPC envelope over a real `ember serve`: framings, every error class, batches, ids."""

from __future__ import annotations

import json
import subprocess

import pytest

from rpc_client import EMBER

FRAMINGS = ["headers", "lines"]


def test_one_shot_tokenize_prints_one_line_and_exits(daemon_env):
    request = b'{"jsonrpc":"2.0","id":1,"method":"tokenize","params":{"text":"Hello world"}}\n'
    done = subprocess.run([EMBER, "serve"], input=request, capture_output=True, env=daemon_env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 1
    reply = json.loads(lines[0])
    assert reply["id"] == 1
    result = reply["result"]
    assert result["count"] == 2 == len(result["ids"]) == len(result["tokens"])
    assert result["tokens"] == ["Hello", "Ġworld"]
    assert result["offsets"] == [[0, 5], [5, 11]]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_initialize_and_tokenize_in_each_framing(ember, framing):
    d = ember(framing)
    info = d.call("initialize", {"process_id": None, "client_info": {"name": "test"}})
    assert info["server"]["name"] == "ember"
    assert "summarize" in info["tasks"] and "tokenize" in info["methods"]
    assert info["models"][0]["name"] == "default"
    tok = d.call("tokenize", {"text": "Hello world"})
    assert tok["ids"] == [19556, 905]


def test_header_names_are_case_insensitive_and_extra_headers_ignored(ember):
    d = ember("headers")
    body = b'{"jsonrpc":"2.0","id":7,"method":"tokenize","params":{"text":"hi"}}'
    d.send_raw(b"content-length: %d\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n"
               % len(body) + body)
    assert d.reply(7)["result"]["count"] == 1


@pytest.mark.parametrize("framing", FRAMINGS)
def test_invalid_json_is_a_parse_error_and_the_daemon_keeps_serving(ember, framing):
    d = ember(framing)
    d.send_raw(d.frame(b'{"jsonrpc": "2.0", "id": 1, "method": '))
    reply = d.reply(None)
    assert reply["error"]["code"] == -32700
    assert d.call("tokenize", {"text": "still alive"})["count"] > 0


@pytest.mark.parametrize("message, expected_id", [
    (1, None),
    ("text", None),
    ({"id": 3, "method": "tokenize"}, 3),  # no "jsonrpc"
    ({"jsonrpc": "1.0", "id": 4, "method": "tokenize"}, 4),
    ({"jsonrpc": "2.0", "id": True, "method": "tokenize"}, None),
    ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "tokenize"}, None),
    ({"jsonrpc": "2.0", "id": 5, "method": 42}, 5),
    ({"jsonrpc": "2.0", "id": 6, "method": "tokenize", "params": "text"}, 6),
    ({"jsonrpc": "2.0", "id": 8}, 8),
])
def test_invalid_requests(ember, message, expected_id):
    d = ember("lines")
    d.send(message)
    reply = d.reply(expected_id)
    assert reply["error"]["code"] == -32600
    assert reply["error"]["message"].startswith("Invalid Request")


def test_unknown_method(ember):
    reply = ember("headers").request("no/such/method", {})
    assert reply["error"] == {"code": -32601, "message": "Method not found: no/such/method"}


@pytest.mark.parametrize("params, field", [
    (None, "params"),
    ([], "params"),
    ({"text": 123}, "text"),
    ({"text": "x", "return_ids": "yes"}, "return_ids"),
    ({"text": "x", "bogus": 1}, "bogus"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"text": "half a pair \ud800 here"}, "text"),  # JSON can escape a lone surrogate
    ({"messages": [{"role": "user", "content": "\udc00"}]}, "messages.0.content"),
])
def test_bad_params_name_the_field(ember, params, field):
    reply = ember("lines").request("tokenize", params)
    error = reply["error"]
    assert error["code"] == -32602
    assert error["message"].startswith(field + ":"), error["message"]


def test_unpaired_surrogates_are_invalid_params_and_pairs_are_text(ember):
    d = ember("lines")
    reply = d.request("complete", {"prefix": "def f():\ud83d", "suffix": "\n", "max_tokens": 2})
    assert reply["error"]["code"] == -32602
    assert reply["error"]["message"].startswith("prefix: unpaired surrogate at character 8")
    assert d.request("tokenize", {"text": "ok \ud83d\ude00"})["result"]["count"] >= 2  # a pair: one emoji


def test_types_are_not_coerced(ember):
    d = ember("lines")
    reply = d.request("complete", {"prompt": "x", "max_tokens": "5"})
    assert reply["error"]["code"] == -32602
    assert "max_tokens" in reply["error"]["message"]


def test_a_task_without_params_is_invalid_params_not_a_hang(ember):
    reply = ember("headers").request("summarize")
    assert reply["error"]["code"] == -32602
    assert "text" in reply["error"]["message"]


def test_methods_without_params_accept_missing_or_empty(ember):
    d = ember("lines")
    assert "version" in d.call("daemon/status")
    assert "version" in d.call("daemon/status", {})
    assert d.request("daemon/status", {"x": 1})["error"]["code"] == -32602


def test_batch_gets_an_array_of_replies_without_notifications(ember):
    d = ember("lines")
    d.send([
        {"jsonrpc": "2.0", "id": "a", "method": "tokenize", "params": {"text": "one"}},
        {"jsonrpc": "2.0", "method": "tokenize", "params": {"text": "notification"}},
        {"jsonrpc": "2.0", "id": "b", "method": "nope"},
        42,
        {"jsonrpc": "2.0", "id": "c", "method": "detokenize", "params": {"ids": [19556]}},
    ])
    replies = d.next_message()
    assert isinstance(replies, list)
    by_id = {r["id"]: r for r in replies}
    assert set(by_id) == {"a", "b", "c", None}
    assert by_id["a"]["result"]["count"] == 1
    assert by_id["b"]["error"]["code"] == -32601
    assert by_id[None]["error"]["code"] == -32600
    assert by_id["c"]["result"]["text"] == "Hello"


def test_empty_batch_is_one_invalid_request(ember):
    d = ember("lines")
    d.send([])
    reply = d.next_message()
    assert isinstance(reply, dict) and reply["error"]["code"] == -32600 and reply["id"] is None


def test_notifications_are_never_answered(ember):
    d = ember("lines")
    d.notify("tokenize", {"text": "x"})
    d.notify("unknown/notification", {})
    d.send([{"jsonrpc": "2.0", "method": "tokenize", "params": {"text": "y"}}])
    d.send({"jsonrpc": "2.0", "id": 99, "method": "daemon/status"})
    first = d.next_message()
    assert first["id"] == 99  # nothing was sent for the notifications before it


@pytest.mark.parametrize("msg_id", ["abc", 0, -1, 2**53 + 1, 1.5, None, ""])
def test_ids_are_echoed_exactly(ember, msg_id):
    d = ember("lines")
    d.send({"jsonrpc": "2.0", "id": msg_id, "method": "tokenize", "params": {"text": "x"}})
    reply = d.next_message()
    assert reply["id"] == msg_id and type(reply["id"]) is type(msg_id)
    assert "result" in reply


def test_framing_error_in_headers_is_reported_and_serving_continues(ember):
    d = ember("headers")
    d.send_raw(b"Content-Type: text/plain\r\n\r\n")  # no Content-Length
    assert d.reply(None)["error"]["code"] == -32700
    assert d.call("tokenize", {"text": "ok"})["count"] == 1


def test_model_load_failure_is_a_clear_server_error(ember):
    d = ember("lines", ["--model", "some-org/not-cached-model"])
    reply = d.request("complete", {"prompt": "hi", "max_tokens": 2})
    error = reply["error"]
    assert error["code"] == -32001
    assert "not-cached-model" in error["message"] and "offline" in error["message"]
    assert "Traceback" not in json.dumps(reply)
    # The tokenizer of the same model fails the same way, and the daemon keeps serving.
    assert d.request("tokenize", {"text": "x"})["error"]["code"] == -32001
    assert "version" in d.call("daemon/status")


def test_unknown_model_name_is_invalid_params(ember):
    reply = ember("lines").request("tokenize", {"text": "x", "model": "nope"})
    assert reply["error"]["code"] == -32602
    assert "nope" in reply["error"]["message"]


def test_task_without_a_configured_model_is_unavailable(ember):
    reply = ember("lines").request("entities", {"text": "Ada Lovelace lived in London."})
    assert reply["error"]["code"] == -32005
    assert "tasks.entities" in reply["error"]["message"]


def test_stdout_carries_only_protocol_bytes(ember):
    d = ember("headers", ["--log-level", "debug"])
    d.call("initialize", {})
    d.call("tokenize", {"text": "Hello"})
    d.call("daemon/status")
    d.request("shutdown")
    d.notify("exit")
    assert d.wait_exit() == 0
    # Every byte the daemon wrote parsed as a frame; the chatty log went to stderr.
    assert d.raw_out.startswith(b"Content-Length: ")
    assert any("DEBUG" in line or "INFO" in line for line in d.stderr_lines)


def test_non_standard_json_constants_are_parse_errors(ember):
    d = ember("lines")
    d.send_raw(b'{"jsonrpc":"2.0","id":Infinity,"method":"tokenize","params":{"text":"x"}}\n')
    reply = d.reply(None)
    assert reply["error"]["code"] == -32700 and "Infinity" in reply["error"]["message"]
    assert d.call("tokenize", {"text": "x"})["count"] == 1
