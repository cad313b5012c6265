"""Deeply nested JSON: cut before parsing, answered under the request's own id, connection intact."""

from __future__ import annotations

import asyncio
import json

import pytest
from pygls.protocol import default_converter
from pygls.server import JsonRPCServer

from ember.rpc.nesting import MARKER, MAX_DEPTH, cut_deep, holds_marker
from ember.rpc.protocol import EmberProtocol


def nested(levels: int, open_: str = "[", close: str = "]") -> str:
    return open_ * levels + close * levels


def depth(value) -> int:
    level, stack = 0, [(value, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, (list, dict)):
            level = max(level, d)
            stack.extend((v, d + 1) for v in (item.values() if isinstance(item, dict) else item))
    return level


# -- cut_deep ------------------------------------------------------------------------------------


def test_shallow_messages_are_left_alone():
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"a": [[1], {"b": [2]}]}}).encode()
    assert cut_deep(body) is None


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 2_000, 100_000])
def test_deep_containers_are_cut_to_the_limit(levels):
    cut = cut_deep(nested(levels).encode())
    assert cut is not None and len(cut) < 1_000
    value = json.loads(cut)
    assert depth(value) == MAX_DEPTH and holds_marker(value)


def test_exactly_the_limit_is_kept():
    body = nested(MAX_DEPTH).encode()
    assert cut_deep(body) is None or not holds_marker(json.loads(cut_deep(body)))


def test_brackets_inside_strings_do_not_count():
    body = json.dumps({"text": "[" * 5_000 + '\\"{' * 100}).encode()
    cut = cut_deep(body)
    assert cut is None or json.loads(cut) == json.loads(body)


def test_objects_and_mixed_nesting_are_cut_too():
    body = ('{"a":' * 3_000 + "1" + "}" * 3_000).encode()
    assert depth(json.loads(cut_deep(body))) == MAX_DEPTH
    mixed = ('[{"k":' * 1_500 + "0" + "}]" * 1_500).encode()
    assert depth(json.loads(cut_deep(mixed))) == MAX_DEPTH


def test_siblings_after_a_cut_survive():
    body = ('{"deep":' + nested(500) + ',"after":[1,2,3],"id":7}').encode()
    value = json.loads(cut_deep(body))
    assert value["after"] == [1, 2, 3] and value["id"] == 7


def test_the_marker_cannot_come_from_a_client():
    assert MARKER.startswith("\x00") and len(MARKER) > 30
    assert not holds_marker(json.loads(json.dumps({"x": "\x00ember:nested-too-deep:0000"})))


# -- the protocol --------------------------------------------------------------------------------


def replies_to(*frames: bytes) -> list[dict]:
    """Run frames through a protocol with an `echo` method; every reply object, batches flattened."""
    server = JsonRPCServer(EmberProtocol, default_converter)

    @server.feature("echo")
    async def echo(params):
        return {"ok": True}

    sent: list[bytes] = []

    async def main():
        proto = server.protocol
        proto.attach(sent.append, asyncio.get_running_loop())
        for frame in frames:
            proto.receive(frame)
        await proto.wait_idle()

    asyncio.run(main())
    out = []
    for raw in sent:
        value = json.loads(raw)
        out.extend(value if isinstance(value, list) else [value])
    return out


def request(msg_id, params_json: str) -> bytes:
    return f'{{"jsonrpc":"2.0","id":{msg_id},"method":"echo","params":{params_json}}}'.encode()


@pytest.mark.parametrize("levels", [2_000, 100_000])
def test_deep_params_get_invalid_params_under_their_id(levels):
    replies = replies_to(request(5, '{"x":' + nested(levels) + "}"), request(6, "{}"))
    assert replies[0]["id"] == 5 and replies[0]["error"]["code"] == -32602
    assert "nested deeper than" in replies[0]["error"]["message"]
    assert replies[1] == {"jsonrpc": "2.0", "id": 6, "result": {"ok": True}}  # still usable


@pytest.mark.parametrize("levels", [2_000, 100_000])
def test_a_deep_batch_is_an_invalid_request(levels):
    replies = replies_to(nested(levels).encode(), request(1, "{}"))
    assert replies[0]["id"] is None and replies[0]["error"]["code"] == -32600
    assert replies[1]["result"] == {"ok": True}


def test_a_batch_answers_deep_and_shallow_members_each_once():
    batch = "[" + ",".join([request(1, "{}").decode(), request(2, "[" + nested(3_000) + "]").decode(),
                            '{"jsonrpc":"2.0","id":3,"method":"echo","extra":' + nested(300) + "}"]) + "]"
    by_id = {r["id"]: r for r in replies_to(batch.encode())}
    assert by_id[1]["result"] == {"ok": True}
    assert by_id[2]["error"]["code"] == -32602
    assert by_id[3]["error"]["code"] == -32600  # too deep, but not in params
    assert len(by_id) == 3


def test_a_deep_notification_is_dropped_without_a_reply():
    cancel = '{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":' + nested(5_000) + "}}"
    assert replies_to(cancel.encode(), request(9, "{}")) == [
        {"jsonrpc": "2.0", "id": 9, "result": {"ok": True}}]


def test_a_deep_response_from_the_client_is_ignored():
    response = '{"jsonrpc":"2.0","id":1,"result":' + nested(5_000) + "}"
    assert replies_to(response.encode(), request(2, "{}"))[0]["id"] == 2
