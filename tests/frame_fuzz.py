"""Structure-aware JSON-RPC traffic for fuzzing, each unit with the replies it must get.

A unit is a few framed bytes (one message, or deliberate garbage that still ends where a frame
ends) plus what JSON-RPC 2.0 says comes back: replies under given ids, and replies with id null.
Used by tests/test_protocol_fuzz.py (through hypothesis's seeded randoms, so failures shrink and
replay) and by bench/fuzz.py (10,000 frames per framing). Pure standard library.
"""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

CHEAP = [  # methods that answer without loading a model
    ("daemon/status", None),
    ("models/list", {}),
    ("tokenize", {"text": "hello world"}),
    ("tokenize", {"text": "ünïcödé ✓ → …", "return_offsets": False}),
    ("detokenize", {"ids": [19556, 905]}),
    ("tokenize", {"text": 5}),  # -32602
    ("classify", {"labels": ["a", "b"]}),  # -32602: text missing
    ("complete", {"prompt": "x", "max_tokens": "many"}),  # -32602
    ("no/such/method", {}),  # -32601
]
ECHO = [("echo", {}), ("echo", {"a": [1, {"b": None}]}), ("nope", None)]  # in-process protocol tests


@dataclass
class Unit:
    data: bytes
    ids: list[Any] = field(default_factory=list)  # replies it must get, by id
    nulls: int = 0  # replies with id null it must get
    kind: str = ""


class FrameGen:
    def __init__(self, rng: random.Random, framing: str, methods: list[tuple[str, Any]] = CHEAP):
        self.rng = rng
        self.framing = framing
        self.methods = methods
        self._ids = itertools.count(1)

    # -- pieces --------------------------------------------------------------------------------

    def frame(self, body: bytes) -> bytes:
        if self.framing == "lines":
            return body + b"\n"
        headers = [b"Content-Length: %d" % len(body)]
        if self.rng.random() < 0.2:
            headers.insert(self.rng.randrange(2), b"Content-Type: application/vscode-jsonrpc; charset=utf-8")
        if self.rng.random() < 0.1:
            headers = [h.lower() for h in headers]
        return b"\r\n".join(headers) + b"\r\n\r\n" + body

    def new_id(self) -> Any:
        n = next(self._ids)
        return n if self.rng.random() < 0.6 else f"req-{n}-{self.rng.choice(['a', 'ü', ' ', '✓'])}"

    def request(self) -> tuple[dict[str, Any], Any]:
        method, params = self.rng.choice(self.methods)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self.new_id(), "method": method}
        if params is not None or self.rng.random() < 0.3:
            msg["params"] = {} if params is None else params
        return msg, msg["id"]

    def nested(self, levels: int) -> str:
        opener = self.rng.choice(["[", '{"a":'])
        closer = "]" if opener == "[" else "}"
        return opener * levels + ("0" if opener != "[" else "") + closer * levels

    def dumps(self, value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=self.rng.random() < 0.5).encode()

    # -- units ---------------------------------------------------------------------------------

    def unit(self) -> Unit:
        kinds = [self.u_request] * 6 + [self.u_notification, self.u_batch, self.u_batch, self.u_garbage,
                                         self.u_garbage, self.u_deep, self.u_envelope, self.u_scalar,
                                         self.u_response, self.u_empty_batch, self.u_blank, self.u_header_junk]
        return self.rng.choice(kinds)()

    def u_request(self) -> Unit:
        msg, msg_id = self.request()
        return Unit(self.frame(self.dumps(msg)), ids=[msg_id], kind="request")

    def u_notification(self) -> Unit:
        if self.rng.random() < 0.5:
            msg = {"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": self.rng.randrange(1, 50)}}
        else:
            msg = {"jsonrpc": "2.0", "method": self.rng.choice(["ember/nothing", "$/progress", "nope"]),
                   "params": {"x": 1}}
        return Unit(self.frame(self.dumps(msg)), kind="notification")

    def u_batch(self) -> Unit:
        items: list[Any] = []
        ids: list[Any] = []
        nulls = 0
        for _ in range(self.rng.randint(1, 5)):
            roll = self.rng.random()
            if roll < 0.6:
                msg, msg_id = self.request()
                items.append(msg)
                ids.append(msg_id)
            elif roll < 0.75:
                items.append({"jsonrpc": "2.0", "method": "nope"})  # a notification: no reply
            elif roll < 0.9:
                items.append(self.rng.choice([1, "x", None, [], {"jsonrpc": "2.0"}]))  # invalid, no id
                nulls += 1
            else:
                msg_id = self.new_id()
                items.append({"jsonrpc": "1.0", "id": msg_id, "method": "x"})  # invalid, id known
                ids.append(msg_id)
        # A batch of notifications only gets no reply at all.
        return Unit(self.frame(self.dumps(items)), ids=ids, nulls=nulls, kind="batch")

    def u_garbage(self) -> Unit:
        """Bytes that are never valid JSON (an unclosed object with a trailing comma, or bad UTF-8)."""
        alphabet = b'{}[]":,0123456789 abcxyz\\\t\xff\xfe\xc3'
        junk = bytes(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, 40)))
        body = self.rng.choice([b"{" + junk + b",", b"\xff" + junk, b"[" + junk + b",,"])
        body = body.replace(b"\n", b" ").replace(b"\r", b" ")
        return Unit(self.frame(body), nulls=1, kind="garbage")

    def u_deep(self) -> Unit:
        levels = self.rng.choice([65, 100, 999, 1_000, 2_000, 10_000, self.rng.randint(66, 20_000)])
        if self.rng.random() < 0.5:
            return Unit(self.frame(self.nested(levels).encode()), nulls=1, kind="deep batch")
        method, _ = self.rng.choice(self.methods)
        msg_id = self.new_id()
        body = ('{"jsonrpc":"2.0","id":' + json.dumps(msg_id) + ',"method":' + json.dumps(method)
                + ',"params":{"deep":' + self.nested(levels) + "}}")
        return Unit(self.frame(body.encode()), ids=[msg_id], kind="deep params")

    def u_envelope(self) -> Unit:
        msg_id = self.new_id()
        msg = self.rng.choice([
            {"jsonrpc": "1.0", "id": msg_id, "method": "tokenize"},
            {"jsonrpc": "2.0", "id": msg_id, "method": 42},
            {"jsonrpc": "2.0", "id": msg_id, "method": "tokenize", "params": "text"},
            {"id": msg_id, "method": "tokenize"},
        ])
        return Unit(self.frame(self.dumps(msg)), ids=[msg_id], kind="bad envelope")

    def u_scalar(self) -> Unit:
        value = self.rng.choice([1, -2.5, "x", None, True, {"jsonrpc": "2.0", "id": [1]}])
        return Unit(self.frame(self.dumps(value)), nulls=1, kind="not a request")

    def u_response(self) -> Unit:
        msg = {"jsonrpc": "2.0", "id": self.rng.randrange(1, 99), "result": {"ok": True}}
        return Unit(self.frame(self.dumps(msg)), kind="response")

    def u_empty_batch(self) -> Unit:
        return Unit(self.frame(b"[]"), nulls=1, kind="empty batch")

    def u_blank(self) -> Unit:
        return Unit(b"\n" if self.framing == "lines" else b"\r\n", kind="blank")

    def u_header_junk(self) -> Unit:
        if self.framing == "lines":
            return self.u_garbage()
        block = self.rng.choice([b"X-Nothing: 1\r\n\r\n", b"Content-Length: abc\r\n\r\n",
                                 b"Content-Length: -4\r\n\r\n", b"Content-Length 12\r\n\r\n"])
        return Unit(block, nulls=1, kind="bad headers")

    def stream(self, n: int) -> list[Unit]:
        """`n` units, the first a plain request (the daemon detects the framing from it)."""
        return [self.u_request()] + [self.unit() for _ in range(n - 1)]


def chunks(rng: random.Random, data: bytes, max_size: int = 200) -> list[bytes]:
    """`data` cut at random places, as a socket or pipe might deliver it."""
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, max_size)
        out.append(data[i:i + n])
        i += n
    return out


def check(units: list[Unit], replies: list[dict[str, Any]]) -> list[str]:
    """What is wrong with `replies` for `units` (empty if every request got exactly one)."""
    problems = []
    want = Counter(json.dumps(i) for u in units for i in u.ids)
    got = Counter(json.dumps(r.get("id")) for r in replies if r.get("id") is not None)
    if want != got:
        missing, extra = want - got, got - want
        problems.append(f"ids missing {list(missing)[:5]}, unexpected or duplicated {list(extra)[:5]}")
    nulls = sum(1 for r in replies if r.get("id") is None)
    want_nulls = sum(u.nulls for u in units)
    if nulls != want_nulls:
        problems.append(f"{nulls} replies with id null, expected {want_nulls}")
    for r in replies:
        if ("result" in r) == ("error" in r):
            problems.append(f"not a response: {str(r)[:200]}")
        elif "error" in r and ("Traceback" in json.dumps(r) or "/home/" in json.dumps(r)):
            problems.append(f"leaks internals: {str(r)[:200]}")
    return problems


def exchange(client: Any, units: list[Unit], sentinel: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Send the units, then a request of our own; every reply that arrived up to the last one owed.

    `client` has send_raw, send and next_message (tests/rpc_client.py's Daemon and SocketPeer).
    Raises TimeoutError (queue.Empty) if a reply never comes: a hang.
    """
    for unit in units:
        client.send_raw(unit.data)
    client.send({"jsonrpc": "2.0", "id": sentinel, "method": "daemon/status"})
    wanted = Counter(json.dumps(i) for u in units for i in u.ids)
    nulls_wanted = sum(u.nulls for u in units)
    replies: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    sentinel_seen = False
    while not sentinel_seen or +wanted or nulls_wanted > 0:
        msg = client.next_message(max(0.01, deadline - time.monotonic()))
        if msg is None:
            raise ConnectionError("the daemon closed the connection")
        for m in msg if isinstance(msg, list) else [msg]:
            if not isinstance(m, dict) or "method" in m:
                continue  # a notification
            if m.get("id") == sentinel:
                sentinel_seen = True
                continue
            replies.append(m)
            if m.get("id") is None:
                nulls_wanted -= 1
            else:
                wanted[json.dumps(m.get("id"))] -= 1
    return replies
