"""Pure text helpers of the tasks: streaming accumulation, Markdown blocks, staged splitting."""

from __future__ import annotations

from ember.engines.text import TextAccumulator
from ember.tasks.summarize import split_text
from ember.tasks.translate import split_blocks


class CharTokenizer:
    """Each id is one character (ids >= 256 are a two-id UTF-8 character half)."""

    def decode(self, ids, skip_special_tokens=True):
        return bytes(ids).decode("utf-8", errors="replace")


def feed(acc, text):
    for b in text.encode():
        acc.add([b])


def test_deltas_concatenate_and_hold_back_stop_prefixes():
    deltas = []
    acc = TextAccumulator(CharTokenizer(), ["END"], deltas.append)
    feed(acc, "hello EN")
    assert "".join(deltas) == "hello "  # "EN" might be the start of "END"
    feed(acc, "Xless END more")
    assert acc.stopped
    assert acc.finish() == "hello ENXless "
    assert "".join(deltas) == acc.text


def test_partial_utf8_is_never_emitted():
    deltas = []
    acc = TextAccumulator(CharTokenizer(), [], deltas.append)
    data = "é".encode()
    acc.add([data[0]])
    assert deltas == []
    acc.add([data[1]])
    assert "".join(deltas) == "é" == acc.finish()


def test_markdown_blocks_round_trip_and_protect_code():
    text = ("# Title\n\nSome prose with `code`.\n\n```py\nx = 1\n```\n- item\n> quote\n"
            "    indented()\n| a | b |\n|---|---|\n1. first\n")
    blocks = split_blocks(text)
    assert "".join(b.text for b in blocks) == text
    translated = [b.text for b in blocks if b.translate]
    assert translated == ["Title", "Some prose with `code`.", "item", "quote", " a ", " b ", "first"]
    assert any(b.text == "```py\nx = 1\n```\n" and not b.translate for b in blocks)


def test_split_text_respects_the_budget_and_keeps_every_word():
    words = [f"w{i}" for i in range(300)]
    text = " ".join(words[:100]) + ".\n\n" + ". ".join(words[100:]) + "."

    def count(t):
        return len(t.split())

    pieces = split_text(text, count, 40)
    assert all(count(p) <= 40 for p in pieces)
    assert " ".join(pieces).replace(".", "").split() == [w for w in words]
