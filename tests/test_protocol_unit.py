"""EmberProtocol in-process: internal failures stay short, and PROTOCOL.md covers every method."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from pygls.protocol import default_converter
from pygls.server import JsonRPCServer

from ember.rpc.protocol import EmberProtocol
from ember.tasks import TASKS
from ember.wire import METHODS, NOTIFICATIONS_IN, NOTIFICATIONS_OUT

REPO = Path(__file__).resolve().parent.parent


def test_internal_errors_do_not_leak_tracebacks_or_paths():
    server = JsonRPCServer(EmberProtocol, default_converter)

    @server.feature("boom")
    async def boom(params):
        raise RuntimeError("secret detail at /home/user/.cache/model.bin")

    sent: list[bytes] = []

    async def main():
        proto = server.protocol
        proto.attach(sent.append, asyncio.get_running_loop())
        proto.receive(b'{"jsonrpc":"2.0","id":1,"method":"boom","params":{}}')
        await proto.wait_idle()

    asyncio.run(main())
    reply = json.loads(sent[0])
    assert reply == {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "Internal error: RuntimeError"}}


def test_protocol_md_documents_every_method_and_notification():
    doc = (REPO / "PROTOCOL.md").read_text()
    documented = set(re.findall(r"^### `([^`]+)`", doc, re.M))
    assert documented == set(METHODS), f"missing: {set(METHODS) - documented}, stale: {documented - set(METHODS)}"
    for name in (*NOTIFICATIONS_IN, *NOTIFICATIONS_OUT):
        assert f"`{name}`" in doc
    assert set(TASKS) <= set(METHODS)


def test_protocol_md_methods_section_is_generated_from_wire():
    from ember.protocol_doc import render_methods

    assert render_methods() in (REPO / "PROTOCOL.md").read_text(), \
        "PROTOCOL.md is stale: run `python -m ember.protocol_doc PROTOCOL.md`"
