"""Message framing: Content-Length headers or one JSON value per line, detected from the first bytes.

Pure and incremental: `FrameDecoder.feed(bytes)` returns the complete message bodies seen so far and
any framing errors, so it works the same over a pipe, a file or a socket.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from ..errors import ParseError

Framing = Literal["headers", "lines"]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024


class FramingError(ParseError):
    """Bytes that cannot be a message; the reply is a -32700 with id null."""

    def __init__(self, problem: str):
        super().__init__(f"Parse error: {problem}")

    def __eq__(self, other: object) -> bool:  # a value, as the frames beside it are
        return isinstance(other, FramingError) and other.message == self.message

    def __hash__(self) -> int:
        return hash(self.message)



_HEADER_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9-]*\s*:")
_HEADER_PREFIX = re.compile(rb"[A-Za-z][A-Za-z0-9-]*\s*")


def detect(data: bytes) -> Framing | None:
    """Headers if the input starts like `Name:`, else one JSON value per line.

    None while too little has arrived to tell (only blanks, or a header name still arriving).
    """
    stripped = data.lstrip()
    if not stripped:
        return None
    if _HEADER_NAME.match(stripped):
        return "headers"
    first_line_done = b"\n" in stripped
    if not first_line_done and _HEADER_PREFIX.fullmatch(stripped) and len(stripped) < 64:
        return None
    return "lines"


class FrameDecoder:
    def __init__(self, framing: Framing | None = None):
        self.framing: Framing | None = framing
        self._buffer = bytearray()
        self._skip = 0  # bytes of an oversized body still to discard
        self._scanned = 0  # bytes of the buffer already searched for a newline (lines framing)
        self._skip_line = False  # inside an oversized line: discard up to its newline

    def feed(self, data: bytes) -> list[bytes | FramingError]:
        self._buffer += data
        if self.framing is None:
            self.framing = detect(bytes(self._buffer[:64]))
            if self.framing is None:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    self._buffer.clear()
                return []
        if self.framing == "lines":
            return self._lines()
        return self._headers()

    def pending(self) -> bytes:
        """Bytes received but not yet a whole message (what EOF cuts short)."""
        return bytes(self._buffer)

    def _lines(self) -> list[bytes | FramingError]:
        out: list[bytes | FramingError] = []
        # Search only the bytes that are new since the last call: a long line arriving in many
        # chunks must not be rescanned from its start each time.
        while (end := self._buffer.find(b"\n", self._scanned)) >= 0:
            line = bytes(self._buffer[:end]).strip()
            del self._buffer[: end + 1]
            self._scanned = 0
            if self._skip_line:
                self._skip_line = False  # the tail of an oversized line
            elif line:
                out.append(line)
        self._scanned = len(self._buffer)
        if len(self._buffer) > MAX_MESSAGE_BYTES:
            self._buffer.clear()
            self._scanned = 0
            if not self._skip_line:
                self._skip_line = True
                out.append(FramingError(f"line longer than {MAX_MESSAGE_BYTES} bytes"))
        return out

    def finish(self) -> list[bytes | FramingError]:
        """At EOF: a last line without a newline still counts in line framing."""
        if self._skip_line:
            self._buffer.clear()
            return []
        if self.framing == "lines" and self._buffer.strip():
            line = bytes(self._buffer).strip()
            self._buffer.clear()
            return [line]
        if self._buffer.strip():
            self._buffer.clear()
            return [FramingError("input ended in the middle of a message")]
        return []

    def _headers(self) -> list[bytes | FramingError]:
        out: list[bytes | FramingError] = []
        while True:
            if self._skip:
                dropped = min(self._skip, len(self._buffer))
                del self._buffer[:dropped]
                self._skip -= dropped
                if self._skip:
                    return out
            # Blank lines between messages are harmless; tolerate them.
            while self._buffer[:2] == b"\r\n" or self._buffer[:1] == b"\n":
                del self._buffer[: 2 if self._buffer[:1] == b"\r" else 1]
            end, sep_len = _header_end(self._buffer)
            if end < 0:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    self._buffer.clear()
                    out.append(FramingError("header block too long or missing its blank line"))
                return out
            header_block = bytes(self._buffer[:end])
            length, problem = _content_length(header_block)
            if problem:
                del self._buffer[: end + sep_len]
                out.append(FramingError(problem))
                continue
            assert length is not None
            if length > MAX_MESSAGE_BYTES:
                del self._buffer[: end + sep_len]
                self._skip = length
                out.append(FramingError(f"message of {length} bytes is over the {MAX_MESSAGE_BYTES} limit"))
                continue
            start = end + sep_len
            if len(self._buffer) < start + length:
                return out
            out.append(bytes(self._buffer[start : start + length]))
            del self._buffer[: start + length]


def _header_end(buffer: bytearray) -> tuple[int, int]:
    crlf = buffer.find(b"\r\n\r\n")
    lf = buffer.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        return crlf, 4
    if lf >= 0:
        return lf, 2
    return -1, 0


def _content_length(block: bytes) -> tuple[int | None, str | None]:
    length = None
    for raw in block.split(b"\n"):
        line = raw.strip()
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            return None, f"malformed header line: {line[:80]!r}"
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return None, f"Content-Length is not a number: {value.strip()[:40]!r}"
            if length < 0:
                return None, "Content-Length is negative"
    if length is None:
        return None, "missing Content-Length header"
    return length, None


def frame(body: bytes, framing: Framing) -> bytes:
    """One encoded message body, framed for the wire."""
    if framing == "lines":
        return body + b"\n"
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def encode(message: Any, framing: Framing) -> bytes:
    return frame(json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(),
                 framing)
