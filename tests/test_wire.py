"""wire.py and results.py are the protocol's one source of truth: the files generated from them are
current, the daemon refuses to send a reply that disagrees with them, the Python client returns their
types, and every method's real reply on SmolLM2 matches them."""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path

import pytest
from pygls.protocol import default_converter
from pygls.server import JsonRPCServer

from ember import client
from ember.protocol_ts import render_typescript
from ember.rpc import protocol
from ember.wire import METHODS, NOTIFICATIONS_OUT, STREAM, check_payload

REPO = Path(__file__).resolve().parent.parent


def test_the_vscode_types_are_generated_from_wire():
    current = (REPO / "editor-clients/vscode/src/wire.ts").read_text()
    assert current == render_typescript(), \
        "src/wire.ts is stale: run `python -m ember.protocol_ts editor-clients/vscode/src/wire.ts`"


def test_the_typescript_names_every_method_and_notification():
    ts = render_typescript()
    for name in (*METHODS, *NOTIFICATIONS_OUT):
        assert f"  '{name}': " in ts


def test_the_python_client_returns_the_wire_types():
    helpers = {"complete": "complete", "summarize": "summarize", "translate": "translate",
               "classify": "classify", "tokenize": "tokenize", "detokenize": "detokenize",
               "status": "daemon/status", "models": "models/list"}
    for cls in (client.Client, client.AsyncClient):
        for helper, method in helpers.items():
            returns = inspect.get_annotations(getattr(cls, helper), eval_str=True)["return"]
            assert returns is METHODS[method].result, f"{cls.__name__}.{helper} returns {returns}"


def _serve_one(method: str, result: object) -> dict:
    """The reply the protocol sends for a handler returning `result` (tests run with the check on)."""
    assert protocol.CHECK_RESULTS, "conftest.py sets EMBER_CHECK_RESULTS=1 for the whole run"
    server = JsonRPCServer(protocol.EmberProtocol, default_converter)

    @server.feature(method)
    async def handler(params):
        return result

    sent: list[bytes] = []

    async def main():
        proto = server.protocol
        proto.attach(sent.append, asyncio.get_running_loop())
        proto.receive(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}).encode())
        await proto.wait_idle()

    asyncio.run(main())
    return json.loads(sent[0])


def test_a_reply_with_a_field_wire_does_not_know_is_refused():
    good = {"model": "m", "text": "hi"}
    assert _serve_one("detokenize", good)["result"] == good
    reply = _serve_one("detokenize", {**good, "surprise": 1})
    assert reply["error"]["code"] == -32603
    assert "detokenize" in reply["error"]["message"] and "surprise" in reply["error"]["message"]


def test_a_reply_missing_a_field_or_with_a_wrong_type_is_refused():
    assert "text" in _serve_one("detokenize", {"model": "m"})["error"]["message"]
    assert _serve_one("models/unload", {"unloaded": "yes"})["error"]["code"] == -32603
    assert _serve_one("models/unload", {"unloaded": False})["result"] == {"unloaded": False}


def test_a_notification_that_disagrees_with_wire_is_not_sent():
    proto = JsonRPCServer(protocol.EmberProtocol, default_converter).protocol
    with pytest.raises(ValueError, match="ember/stream"):
        proto.send_notification(STREAM, {"id": 1, "delta": "x"})  # no index


@pytest.mark.model
def test_every_method_replies_as_wire_says(ember):
    """Each method on the real model, with the options that change the result's shape; both the
    daemon (EMBER_CHECK_RESULTS) and this client (rpc_client.call) check every reply."""
    d = ember("headers")
    init = d.call("initialize", {"process_id": None, "client_info": {"name": "test"}})
    assert init["models"] and "complete" in init["methods"]
    assert d.call("models/list")["models"][0]["loaded"] is False
    loaded = d.call("models/load", {"model": "default"})["model"]
    assert loaded["engine"] in ("onnxruntime", "transformers")
    assert d.call("models/list")["models"][0]["loaded"] is True

    tok = d.call("tokenize", {"text": "def add(a, b):"})
    assert tok["count"] == len(tok["ids"]) == len(tok["offsets"])
    assert set(d.call("tokenize", {"text": "x", "return_ids": False, "return_tokens": False,
                                   "return_offsets": False})) == {"model", "count"}
    chat = d.call("tokenize", {"messages": [{"role": "user", "content": "hi"}]})
    assert "hi" in chat["text"]
    assert d.call("detokenize", {"ids": tok["ids"]})["text"] == "def add(a, b):"

    code = "import math\n\n\ndef area(radius):\n    return math.pi * radius ** 2\n\n\ndef add(a, b):"
    msg_id = d.start_request("complete", {"prompt": code, "max_tokens": 4, "stream": True,
                                          "supersede": "file:///a.py"})
    done = d.reply(msg_id)["result"]
    check_payload(METHODS["complete"].result, done, "complete")
    streamed = [n["params"] for n in d.notifications if n.get("method") == STREAM]
    for params in streamed:
        check_payload(NOTIFICATIONS_OUT[STREAM], params, STREAM)
    assert "".join(p["delta"] for p in streamed) == done["text"]
    again = d.call("complete", {"prompt": code, "max_tokens": 4})
    assert again["usage"]["cached_tokens"] > 0 and "first_token_ms" in again
    assert "fim" in d.call("complete", {"prefix": "x = ", "suffix": "\n", "max_tokens": 2})

    for form in ("sentence", "paragraph", "bullets"):
        d.call("summarize", {"text": "The cat sat on the mat. It slept all day.", "form": form,
                             "max_tokens": 16})
    d.call("translate", {"text": "Good morning", "target": "French", "max_tokens": 8})
    for labels in (None, ["bug", "question"]):
        d.call("classify", {"text": "It crashes on start.", **({"labels": labels} if labels else {})})
    d.call("classify", {"text": "fine", "calibrate": False})

    status = d.call("daemon/status")
    assert status["models"][0]["prefix_cache"]["requests"] >= 2
    assert d.call("models/unload", {"model": "default"}) == {"unloaded": True}
    assert d.call("models/unload", {"model": "default"}) == {"unloaded": False}
    assert d.call("shutdown") is None
    progress = [n["params"] for n in d.notifications if n.get("method") == "ember/progress"]
    assert progress, "initialize subscribes to model-load progress"
    for params in progress:
        check_payload(NOTIFICATIONS_OUT["ember/progress"], params, "ember/progress")
