"""FrameDecoder: both framings, detection, errors, and messages split across reads."""

from __future__ import annotations

import json

from ember.transport.framing import MAX_MESSAGE_BYTES, FrameDecoder, FramingError, detect, encode


def frames(decoder, *chunks):
    out = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out


def test_detection():
    assert detect(b"Content-Length: 3\r\n") == "headers"
    assert detect(b"content-length:") == "headers"
    assert detect(b'  {"a": 1}') == "lines"
    assert detect(b"[1]") == "lines"
    assert detect(b"1\n") == "lines"
    assert detect(b"   ") is None
    assert detect(b"Content-Len") is None  # may still become a header name


def test_headers_split_at_every_byte():
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "x"}, separators=(",", ":")).encode()
    data = encode({"jsonrpc": "2.0", "id": 1, "method": "x"}, "headers") * 2
    d = FrameDecoder()
    out = frames(d, *[data[i:i + 1] for i in range(len(data))])
    assert out == [body, body]
    assert d.framing == "headers"


def test_header_names_any_case_extra_headers_and_lf_only():
    d = FrameDecoder()
    assert d.feed(b"CONTENT-LENGTH: 2\r\nContent-Type: x\r\n\r\n{}content-length:2\n\n[]") == [b"{}", b"[]"]


def test_header_errors_are_reported_and_decoding_continues():
    d = FrameDecoder()
    out = d.feed(b"Content-Type: x\r\n\r\nContent-Length: abc\r\n\r\nContent-Length: 2\r\n\r\n{}")
    assert isinstance(out[0], FramingError) and "missing Content-Length" in out[0].message
    assert isinstance(out[1], FramingError) and "not a number" in out[1].message
    assert out[2] == b"{}"


def test_oversized_body_is_skipped():
    d = FrameDecoder()
    n = MAX_MESSAGE_BYTES + 1
    out = d.feed(b"Content-Length: %d\r\n\r\n" % n)
    assert isinstance(out[0], FramingError)
    out = d.feed(b"x" * n + b"Content-Length: 2\r\n\r\n{}")
    assert out == [b"{}"]


def test_lines_skip_blank_lines_and_keep_the_last_line_at_eof():
    d = FrameDecoder()
    assert d.feed(b'{"a":1}\n\n  \r\n{"b"') == [b'{"a":1}']
    assert d.feed(b":2}") == []
    assert d.finish() == [b'{"b":2}']


def test_eof_inside_a_header_message_is_an_error():
    d = FrameDecoder()
    d.feed(b"Content-Length: 10\r\n\r\n{}")
    (err,) = d.finish()
    assert isinstance(err, FramingError)


def test_encode_is_compact_utf8_and_one_line():
    line = encode({"text": "é\nx"}, "lines")
    assert line == '{"text":"é\\nx"}\n'.encode()
    framed = encode({"a": 1}, "headers")
    assert framed == b'Content-Length: 7\r\n\r\n{"a":1}'
