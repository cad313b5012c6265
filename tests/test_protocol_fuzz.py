"""Whatever arrives, the protocol answers every request exactly once and never raises.

In-process first (the framing decoder and EmberProtocol, hundreds of cases), then the same
structure-aware traffic (tests/frame_fuzz.py) against real daemons: `ember serve` in both framings
and the shared daemon's socket.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pygls.protocol import default_converter
from pygls.server import JsonRPCServer

from ember.rpc.protocol import EmberProtocol
from ember.transport.framing import FrameDecoder
from frame_fuzz import ECHO, FrameGen, check, chunks, exchange
from rpc_client import EMBER, Daemon, SocketPeer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
ids = st.none() | st.integers() | st.text(max_size=6) | st.booleans() | st.floats()
requestish = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0", 2]), "method": st.sampled_from(["echo", "nope", 5, "$/cancelRequest"])},
    optional={"id": ids, "params": json_values},
)
messages = st.one_of(requestish, st.lists(requestish, max_size=4), json_values)


def make_protocol(sent: list[bytes]):
    server = JsonRPCServer(EmberProtocol, default_converter)

    @server.feature("echo")
    async def echo(params):
        return {"params": params}

    return server.protocol


def _non_finite(value) -> bool:
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_non_finite(v) for v in value)
    return False


def _valid_id(value) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def expected_replies(msg) -> int:
    """How many reply objects JSON-RPC 2.0 prescribes for one message (NaN/Infinity: a parse error)."""
    if _non_finite(msg):
        return 1
    def one(m) -> int:
        if not isinstance(m, dict) or m.get("jsonrpc") != "2.0" or ("id" in m and not _valid_id(m["id"])):
            return 1
        if "method" not in m:
            return 0 if "id" in m and ("result" in m or "error" in m) else 1  # a response: ignored
        if not isinstance(m["method"], str) or ("params" in m and not isinstance(m["params"], (dict, list))):
            return 1
        return 1 if "id" in m else 0
    if isinstance(msg, list):
        return 1 if not msg else sum(one(m) for m in msg)
    return one(msg)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages, min_size=1, max_size=6), st.sampled_from(["lines", "headers"]))
def test_every_request_gets_exactly_one_reply(batch, framing):
    sent: list[bytes] = []
    proto = make_protocol(sent)

    async def main():
        proto.attach(sent.append, asyncio.get_running_loop())
        decoder = FrameDecoder(framing)
        for msg in batch:
            body = json.dumps(msg).encode()
            data = body + b"\n" if framing == "lines" else b"Content-Length: %d\r\n\r\n" % len(body) + body
            for frame in decoder.feed(data):
                proto.receive(frame)
        await proto.wait_idle()
        await asyncio.sleep(0)

    asyncio.run(main())
    replies = []
    for body in sent:  # the protocol writes bare JSON bodies; the transport frames them
        value = json.loads(body)
        replies.extend(value if isinstance(value, list) else [value])
    assert all("result" in r or "error" in r for r in replies)
    assert len(replies) == sum(expected_replies(m) for m in batch)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data):
    sent: list[bytes] = []
    proto = make_protocol(sent)

    async def main():
        proto.attach(sent.append, asyncio.get_running_loop())
        decoder = FrameDecoder()
        for frame in decoder.feed(data) + decoder.finish():
            proto.receive(frame)
        await proto.wait_idle()

    asyncio.run(main())
    for raw in sent:
        assert b"Traceback" not in raw


# -- structure-aware streams ---------------------------------------------------------------------

seeds = st.randoms(use_true_random=False)
framings = st.sampled_from(["lines", "headers"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeds, framings)
def test_how_bytes_are_chunked_never_changes_what_is_decoded(rng, framing):
    data = b"".join(u.data for u in FrameGen(rng, framing, ECHO).stream(8))
    whole = FrameDecoder()
    expected = whole.feed(data) + whole.finish()
    pieces = FrameDecoder()
    got = [frame for chunk in chunks(rng, data, 64) for frame in pieces.feed(chunk)] + pieces.finish()
    assert got == expected
    assert pieces.framing == framing


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seeds, framings)
def test_generated_streams_get_every_reply_exactly_once(rng, framing):
    units = FrameGen(rng, framing, ECHO).stream(rng.randint(1, 12))
    sent: list[bytes] = []
    proto = make_protocol(sent)

    async def main():
        proto.attach(sent.append, asyncio.get_running_loop())
        decoder = FrameDecoder()
        for chunk in chunks(rng, b"".join(u.data for u in units), 300):
            for frame in decoder.feed(chunk):
                proto.receive(frame)
        await proto.wait_idle()
        await asyncio.sleep(0)

    asyncio.run(main())
    replies = []
    for body in sent:  # the protocol writes bare JSON bodies; the transport frames them
        value = json.loads(body)
        replies.extend(value if isinstance(value, list) else [value])
    assert check(units, replies) == []


# -- against real daemons ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One `ember serve` per framing and one shared daemon, reused by every example."""
    tmp = tmp_path_factory.mktemp("fuzz")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env.update({"XDG_CONFIG_HOME": str(tmp / "config"), "XDG_RUNTIME_DIR": str(tmp / "run"),
                "EMBER_DAEMON__CACHE_DIR": os.environ["EMBER_TEST_CACHE"], "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf")})
    (tmp / "run").mkdir(mode=0o700)
    daemons = {framing: Daemon(framing, [], env) for framing in ("lines", "headers")}
    started = subprocess.run([EMBER, "daemon", "start"], capture_output=True, timeout=120, env=env)
    assert started.returncode == 0, started.stderr.decode()
    peer = SocketPeer(tmp / "run" / "ember" / "ember.sock")
    yield {"stdio lines": daemons["lines"], "stdio headers": daemons["headers"], "socket": peer}
    peer.close()
    subprocess.run([EMBER, "daemon", "stop"], capture_output=True, timeout=120, env=env)
    for d in daemons.values():
        d.kill()


@pytest.mark.parametrize("transport", ["stdio lines", "stdio headers", "socket"])
def test_real_daemons_answer_generated_streams(live, transport):
    client = live[transport]
    framing = "lines" if transport == "stdio lines" else "headers"

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(seeds)
    def run(rng: random.Random):
        gen = FrameGen(rng, framing)
        units = gen.stream(rng.randint(1, 10))
        sentinel = f"sentinel-{rng.random()}"
        assert check(units, exchange(client, units, sentinel)) == []

    run()
