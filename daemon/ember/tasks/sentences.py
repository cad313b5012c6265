"""Sentence ends and answer preambles in generated English text (pure string rules, no model).

`summarize` uses them to cut a one-sentence summary at its end while the model is still generating,
and to drop a lead-in such as "Here is a one-sentence summary:" that small instruct models often
write first. The bench that measures summaries splits sentences with the same rules.

A period ends a sentence when whitespace follows and the next word does not start in lower case,
unless the word before it is an abbreviation that does not end sentences ("Dr.", "e.g.", a single
initial "J."). "3.5" and "U.S" are never ends (no whitespace follows the period). A line break ends
a sentence too. When the text stops right after a period (the model is still generating), the end
is certain only after an ordinary word; after a number or an abbreviation the next token decides.
"""

from __future__ import annotations

import re

# Followed by a capitalized word, these still do not end the sentence ("Dr. Smith", "e.g. Paris").
NON_FINAL = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "st", "mt", "sr", "jr", "gen", "col", "capt", "lt", "sgt", "gov",
    "sen", "rep", "rev", "fr", "e.g", "i.e", "vs", "cf", "approx", "ca", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
})
# Not an end only when a number follows ("No. 5", "Fig. 3"); "He said no." ends.
NUMBERED = frozenset({"no", "nos", "fig", "figs", "vol", "pp", "p", "ch", "sec", "art"})
# These may end a sentence or not ("etc.", "Inc.", "U.S."): the next word decides.
AMBIGUOUS = frozenset({"etc", "inc", "ltd", "co", "corp", "u.s", "u.k", "a.m", "p.m", "al"})

UNDECIDED = -1  # returned when the text so far cannot tell

_PUNCT = re.compile(r"[.!?]+[\"'”’)\]]*")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")


def _abbreviation(text: str, dot: int, after: str = "") -> str | None:
    """'non-final', 'ambiguous' or None for the word that ends at text[dot] == '.'; `after` is the
    next word's first character ("" while it is not known)."""
    m = _WORD_BEFORE.search(text[:dot])
    if not m:
        return None
    word = m.group(1).lower().rstrip(".")
    if word in NON_FINAL or (len(word) == 1 and word.isalpha() and m.group(1).isupper()):
        return "non-final"
    if word in NUMBERED:
        return "non-final" if after.isdigit() else "ambiguous"
    if word in AMBIGUOUS:
        return "ambiguous"
    return None


def sentence_end(text: str, start: int = 0, complete: bool = True) -> int | None:
    """Index just past the end of the first sentence in text[start:], None if it has no end yet.

    `complete`: the text is final (no more tokens will come). When it is not, UNDECIDED means that
    the first candidate end sits at the very end of the text and the next token decides.
    """
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            if text[start:i].strip():
                return i
            i += 1
            continue
        if ch not in ".!?":
            i += 1
            continue
        m = _PUNCT.match(text, i)
        assert m is not None
        end = m.end()
        if end == n:  # the text stops right after the punctuation
            if complete or ch != "." or text[i:end].startswith("..."):
                return end
            if text[i - 1: i].isdigit() or _abbreviation(text, i) is not None:
                return UNDECIDED
            return end
        nxt = text[end]
        if not nxt.isspace():  # "3.5", "U.S", "example.com"
            i = end
            continue
        if nxt == "\n":
            return end
        rest = text[end:].lstrip(" \t")
        if not rest:  # only spaces after it so far
            return end if complete else UNDECIDED
        if rest[0].islower():
            i = end
            continue
        if ch == "." and _abbreviation(text, i, rest[0]) == "non-final":
            i = end
            continue
        return end
    return None


def split_sentences(text: str) -> list[str]:
    """The sentences of a finished text, stripped (Markdown bullets count as sentences)."""
    out = []
    pos = 0
    while pos < len(text):
        end = sentence_end(text, pos, complete=True)
        if end is None:
            end = len(text)
        piece = text[pos:end].strip()
        if piece:
            out.append(piece)
        pos = max(end, pos + 1)
    return out


# A lead-in on its own line: ends with ":", a Markdown heading, a bold or bare "Summary", or a
# greeting copied from a letter ("Hi all,").
_PREAMBLE_LINE = re.compile(
    r"^(?:.*:|#+\s.*|\*\*[^*\n]+\*\*:?|(?:one-sentence |short |brief )?summary"
    r"|(?:hi|hello|hey|dear|greetings|good (?:morning|afternoon|evening))\b[^\n.!?]{0,40}[,!])$", re.I)
# A lead-in that the answer follows on the same line.
_PREAMBLE_LEAD = re.compile(
    r"^(?:(?:sure|certainly|of course|okay|ok|absolutely)\b[,!.]?\s*"
    r"|(?:here(?:'s| is| are)|below is|this is|the following is)\b[^\n:.]{0,100}?"
    r"\b(?:summary|summari[sz]ed|overview|points|sentence|version)\b[^\n:.]{0,60}[:.]\s*"
    r"|(?:(?:a |the )?(?:one-sentence |short |brief )?summary(?: of [^\n:]{0,60})?(?: is| reads)?"
    r"|tl;?dr|in (?:one|a single) sentence|in summary|to summarize|to sum up)\s*[:,]\s*[\"“]?)",
    re.I)
# Starts that may still turn into a lead-in (decided once the line is long enough or ends).
_OPENER = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|absolutely|here|below|this is|the following|"
    r"(?:a |the )?(?:one-sentence |short |brief )?summary|tl;?dr|in (?:one|a single)|in summary|"
    r"to sum|\*\*|#)", re.I)


def answer_start(text: str, complete: bool = True) -> int | None:
    """Where the answer starts after any lead-ins and leading whitespace; None while undecided."""
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        rest = text[pos:]
        newline = rest.find("\n")
        line = rest if newline < 0 else rest[:newline]
        if newline >= 0 and _PREAMBLE_LINE.match(line.strip()):
            pos += newline + 1
            continue
        lead = _PREAMBLE_LEAD.match(rest)
        if lead and (lead.end() < len(rest) or complete):
            pos += lead.end()
            continue
        if complete or newline >= 0:
            return pos
        words = len(line.split())
        if line.rstrip().endswith(":"):
            return None  # a line break may follow
        if _OPENER.match(line):
            # "Here is a summary of the article" may still end with ":".
            return pos if words >= 24 else None
        return None if words < 6 else pos  # "The key points:" is still to come
