"""Deeply nested JSON, cut down before it reaches the parser.

Python's json parser recurses once per level and gives up near 1,000 levels with a RecursionError;
pydantic, repr and logging recurse too. So before parsing, every container nested deeper than
MAX_DEPTH levels is replaced by a marker string, in one pass over the bytes. The protocol then
answers the request that held it under its own id: -32602 when the depth is in its params, -32600
when it is anywhere else. Messages with few brackets skip the pass entirely.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

MAX_DEPTH = 64  # levels, counted from the outermost value of a message (a batch array is one)

# A string token, or a run of openers, or a run of closers. Runs make `[[[[...` one match, so
# even 100,000 levels cost a handful of matches.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]+|[\]}]+')
_QUOTE, _OPENERS = ord('"'), (ord("["), ord("{"))

# What stands in for a cut container. The random part means no client can send it on purpose.
MARKER = f"\x00ember:nested-too-deep:{secrets.token_hex(8)}"
_MARKER_JSON = json.dumps(MARKER).encode()


def cut_deep(body: bytes, limit: int = MAX_DEPTH) -> bytes | None:
    """`body` with every container deeper than `limit` levels replaced by MARKER; None if none is.

    Not a validator: for invalid JSON the result is whatever it is, and the parser rejects it.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return None  # fewer brackets than levels: nothing can be too deep
    out: list[bytes] = []
    depth = 0
    last = 0  # end of the part already copied to `out`
    cut_at = -1  # where the container being cut began
    for m in _TOKENS.finditer(body):
        first = body[m.start()]
        if first == _QUOTE:
            continue
        n = m.end() - m.start()
        if first in _OPENERS:
            if cut_at < 0 and depth + n > limit:
                cut_at = m.start() + (limit - depth)  # the opener of level limit + 1
            depth += n
        else:
            if cut_at >= 0 and depth - n <= limit:
                end = m.start() + (depth - limit)  # just past the closer back to level `limit`
                out += [body[last:cut_at], _MARKER_JSON]
                last, cut_at = end, -1
            depth = max(0, depth - n)
    if cut_at >= 0:  # never closed: cut to the end (the parser will reject what is left)
        out += [body[last:cut_at], _MARKER_JSON]
        last = len(body)
    if not out:
        return None
    out.append(body[last:])
    return b"".join(out)


def holds_marker(value: Any) -> bool:
    """Whether a parsed value contains a cut container (iterative: the value may be 64 deep)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if item == MARKER:
                return True
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
