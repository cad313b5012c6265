"""Where an inline completion ends (the cut).

One post-processing stage for the text that any engine generates at a cursor, streamed or not:
- the syntax at the cursor picks the shape: `line` (text right of the cursor, or a statement the
  cursor is inside: finish that line, and the brackets it opens), `block` (an empty line after a
  block opener: lines until one dedents out of the block) or `lines` (an empty line elsewhere: lines
  up to a blank line or a dedent);
- line rules drop Markdown fences and chat preambles, stop where the text starts repeating the
  suffix, the prefix's last lines or itself, and drop closing brackets that the suffix already has;
- the result keeps the file parseable: a tree-sitter grammar where the language has one (no syntax
  error that the file without the completion did not have), else balanced brackets. Text is only
  released at line ends that pass that check, so streamed deltas always add up to the final text.
"""

from __future__ import annotations

import logging
import re
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

log = logging.getLogger(__name__)

# Editors' language ids (VS Code's languageId, Neovim's filetype) whose grammar has another name in
# tree-sitter-language-pack.
GRAMMAR_NAMES = {
    "javascriptreact": "javascript", "typescriptreact": "tsx", "shellscript": "bash", "sh": "bash",
    "zsh": "bash", "cs": "csharp", "c++": "cpp", "objc": "objc", "py": "python", "js": "javascript",
    "ts": "typescript", "rs": "rust", "rb": "ruby", "golang": "go", "dockerfile": "dockerfile",
}
# Prose: no grammar check and no fence rule (a fence is legitimate in Markdown).
PROSE = {"markdown", "plaintext", "text", "txt", "gitcommit", "help", "rst", "org", "tex", "latex",
         "mail", "asciidoc", "vimwiki"}

# Grammars (tree-sitter names) that take statements at the top level, so a block's lines parse alone.
STANDALONE = {"python", "lua", "javascript", "typescript", "tsx", "ruby", "bash"}
OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in OPENERS.items()}
# A line that ends like this opens a block on the next line.
BLOCK_OPENER = re.compile(r"(:|\{|\(|\[|\bdo|\bthen|\belse|->|=>|\bbegin)\s*(#.*|--.*|//.*)?$")
BLOCK_KEYWORD = re.compile(r"^\s*(local\s+)?function\b.*\)\s*$")
PREAMBLE = re.compile(
    r"^\s*(sure|certainly|of course|okay|ok|here('s| is| are)|below is|the following|this (code|function)"
    r"|i('ve| have)|let me)\b.*[:.!]\s*$", re.IGNORECASE)
# Lines too generic to call a repeat when they come again (closers, `else:`, `pass`, `end`).
TRIVIAL = re.compile(r"^[\s)\]}:;,]*$|^(else|end|pass|break|continue|return|try|finally|\}\s*else\s*\{)\W*$")
LOCAL_LINES = 4  # the cursor's line and the next three: where a completion's syntax errors show
REPEAT_WINDOW = 5  # the prefix's last non-blank lines that the completion must not write again
MAX_LINES = 64  # a block longer than this is cut (an editor shows a screenful at most)


@dataclass(frozen=True)
class Plan:
    """What the syntax at the cursor says about the completion's shape."""

    mode: str  # line | block | lines
    line_prefix: str  # the cursor's line up to the cursor
    rest_of_line: str  # the cursor's line after the cursor
    indent: int | None  # block/lines: the least indentation of the completion's lines (None: from its first line)
    opener_indent: int | None  # block: the indentation of the line that opens the block


def indentation(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def plan(prefix: str, suffix: str) -> Plan:
    line_prefix = prefix.rsplit("\n", 1)[-1]
    rest = suffix.split("\n", 1)[0]
    if rest.strip():
        return Plan("line", line_prefix, rest, None, None)
    if line_prefix.strip():
        if _opens_block(line_prefix):  # cursor at the end of `def f():`: the body comes next
            return Plan("block", line_prefix, rest, None, indentation(line_prefix))
        return Plan("line", line_prefix, rest, None, None)
    before = [ln for ln in prefix.split("\n")[:-1] if ln.strip()]
    cursor_indent = indentation(line_prefix) if line_prefix else None
    if before and _opens_block(before[-1]):
        opener = indentation(before[-1])
        return Plan("block", line_prefix, rest, cursor_indent, opener)
    return Plan("lines", line_prefix, rest, cursor_indent, None)


def _opens_block(line: str) -> bool:
    return bool(BLOCK_OPENER.search(line.rstrip()) or BLOCK_KEYWORD.match(line))


# -- parse checks ------------------------------------------------------------------------------


@cache
def _parser(language: str) -> Any:
    """A tree-sitter parser, or None where no grammar is bundled."""
    try:
        from tree_sitter_language_pack import get_parser

        return get_parser(GRAMMAR_NAMES.get(language, language))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - an unknown language id, or a grammar that fails to load
        return None


def grammar_for(language: str | None) -> Any:
    if not language or language.lower() in PROSE:
        return None
    return _parser(language.lower())


def _errors(parser: Any, text: str, at: int, inserted: int, region: tuple[int, int]) -> Counter[tuple[str, int]]:
    """Syntax errors of `text` that start in `region` (bytes of the text without the completion),
    as (kind, start); starts past the completion are shifted back by its length, so that the same
    error with and without a completion compares equal. Counted, so that a second error of a kind
    at one place is new."""
    data = text.encode()
    at_byte, ins_bytes = len(text[:at].encode()), len(text[at:at + inserted].encode())
    tree = parser.parse(data)
    found: Counter[tuple[str, int]] = Counter()
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            start = node.start_byte
            if start >= at_byte + ins_bytes:
                start -= ins_bytes
            elif start > at_byte:
                found["inside", at_byte] += 1  # an error inside the completion: new by definition
            if region[0] <= start < region[1]:
                found["missing " + node.type if node.is_missing else "error", start] += 1
        if node.has_error:
            stack.extend(node.children)
    return found


class SyntaxCheck:
    """Does a candidate completion keep the file as parseable as it was without it?"""

    def __init__(self, language: str | None, prefix: str, suffix: str, mode: str = "line"):
        self.parser = grammar_for(language)
        # Lines of a block must parse on their own too where the grammar takes statements at the
        # top level: an unclosed `if ... then` shows no new error in a window that ends inside a
        # function already (tree-sitter reports one error for the whole of it).
        self.standalone = (mode != "line" and self.parser is not None
                           and GRAMMAR_NAMES.get((language or "").lower(), (language or "").lower()) in STANDALONE)
        self._indent = prefix.rsplit("\n", 1)[-1]
        self.prefix, self.suffix = prefix, suffix
        self.kind = "tree-sitter" if self.parser is not None else "indentation"
        self._baseline: Counter[tuple[str, int]] | None = None
        # Only errors from the cursor's line to a few lines past it count: the editor's window may
        # start inside a string and end inside a block, and how the parser recovers from that
        # differs with the completion in place. What a completion leaves open far away (brackets,
        # a block) the bracket and standalone checks catch.
        start = len(prefix.encode()) - len(prefix.rsplit("\n", 1)[-1].encode())
        near = "\n".join(suffix.split("\n")[:LOCAL_LINES])
        self._region = (start, len(prefix.encode()) + len(near.encode()) + 1)
        self._line_open = _open_brackets(prefix.rsplit("\n", 1)[-1])
        self._rest_of_line = suffix.split("\n", 1)[0]

    def ok(self, completion: str) -> bool:
        if not completion:
            return True
        if self.parser is None:
            return _balanced(completion, self._line_open, self._rest_of_line)
        if _depth(completion)[0] > 0:
            # A bracket left open swallows the suffix and can push the error to the window's end,
            # where the window's own cut may already have one.
            return False
        if self.standalone:
            # The block's lines: after the opener's line end, or from the cursor's blank line.
            body = completion.lstrip("\n") if completion.startswith("\n") else (
                self._indent + completion if not self._indent.strip() else None)
            if body is not None and self.parser.parse(textwrap.dedent(body).encode()).root_node.has_error:
                return False
        if self._baseline is None:
            self._baseline = _errors(self.parser, self.prefix + self.suffix, len(self.prefix), 0, self._region)
        now = _errors(self.parser, self.prefix + completion + self.suffix, len(self.prefix), len(completion),
                      self._region)
        return not now - self._baseline


def _strip_strings(text: str) -> str:
    """The text without its string literals and line comments (`#`, `--`, `//`), roughly: enough
    to count brackets, not to parse."""
    return _STRINGS_AND_COMMENTS.sub("", text)


_STRINGS_AND_COMMENTS = re.compile(
    r"\"(\\.|[^\"\\\n])*\"|'(\\.|[^'\\\n])*'|`[^`]*`|(#|--|//)[^\n]*")


def _open_brackets(line: str) -> list[str]:
    """Brackets the cursor's line opened and did not close (for the bracket rules)."""
    stack: list[str] = []
    for ch in _strip_strings(line):
        if ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS and stack and stack[-1] == CLOSERS[ch]:
            stack.pop()
    return stack


def _depth(text: str, start: int = 0) -> tuple[int, bool]:
    """Bracket depth after `text` (from `start`), and whether a closer went below zero."""
    depth, under = start, False
    for ch in _strip_strings(text):
        if ch in OPENERS:
            depth += 1
        elif ch in CLOSERS:
            depth -= 1
            under = under or depth < 0
    return depth, under


def _balanced(completion: str, line_open: list[str], rest_of_line: str) -> bool:
    """Without a grammar: the completion leaves no bracket open, and closes only brackets that its
    line opened before the cursor and the text after the cursor does not close."""
    depth, _ = _depth(completion)
    still_open = max(0, len(line_open) + _depth(rest_of_line)[0])
    return -still_open <= depth <= 0


# -- the streaming cut -------------------------------------------------------------------------


@dataclass
class CutResult:
    text: str
    reason: str | None  # "cut" or "time" when the cut ended generation, else None
    rules: list[str] = field(default_factory=list)


class Cut:
    """Text that grows (from the stop filter) to released deltas and a final completion.

    `update(text)` takes everything generated so far; `stopped` tells the decode loop to end;
    `finish(text)` gives the final text. Deltas only ever cover text that the final text starts with.
    """

    def __init__(self, prefix: str, suffix: str, language: str | None,
                 on_delta: Callable[[str], None] | None = None, deadline: float | None = None,
                 on_preview: Callable[[str], None] | None = None):
        self.on_preview = on_preview  # sees `preview()` after each update (typing through matches it)
        self.plan = plan(prefix, suffix)
        self.check = SyntaxCheck(language, prefix, suffix, self.plan.mode)
        self.language = language
        self.prose = bool(language and language.lower() in PROSE)
        self.on_delta = on_delta
        self.deadline = deadline  # time.monotonic() past which generation ends at the next line end
        self.rules: list[str] = []
        self.stopped = False
        self.reason: str | None = None
        self._kept: list[str] = []  # finished lines that passed the line rules (first: the cursor's line)
        self._done_lines = 0  # lines of the generated text already judged
        self._emitted = ""
        self._started = False  # a line with content was kept (preambles and fences only lead)
        self._floor = 0  # lines mode: the first kept line's indentation, when the cursor's says none
        prev = [ln.strip() for ln in prefix.split("\n")[:-1] if ln.strip()]
        self._recent = {ln for ln in prev[-REPEAT_WINDOW:] if not TRIVIAL.match(ln)}
        self._suffix_lines = [ln.strip() for ln in suffix.split("\n")[1:] if ln.strip()][:3]

    def describe(self) -> dict[str, Any]:
        return {"mode": self.plan.mode, "parser": self.check.kind, "language": self.language,
                "rules": list(self.rules)}

    def _fire(self, rule: str) -> None:
        if rule not in self.rules:
            self.rules.append(rule)

    def _stop(self, rule: str) -> None:
        self._fire(rule)
        self.stopped = True
        self.reason = "cut"

    # -- feeding -------------------------------------------------------------------------------

    def update(self, text: str) -> None:
        self._feed(text)
        if self.on_preview is not None:
            self.on_preview(self.preview(text))

    def preview(self, text: str) -> str:
        """The completion as it reads so far: the kept lines, and the line being written started
        the way the line rules would start it (leading blank lines and indentation dropped)."""
        kept = "\n".join(self._kept)
        lines = text.split("\n")
        if self.stopped or len(lines) <= self._done_lines:
            return kept
        partial = lines[-1]
        if not self._kept:
            if self._done_lines > 0 and not self.plan.line_prefix.strip():
                lead = len(partial) - len(partial.lstrip())
                partial = partial[min(lead, len(self.plan.line_prefix)):]
            return partial
        return kept + "\n" + partial

    def _feed(self, text: str) -> None:
        if self.stopped:
            return
        lines = text.split("\n")
        for line in lines[self._done_lines:-1]:  # every line that has its newline now
            self._done_lines += 1
            self._judge(line, final=False)
            if self.stopped:
                break
            if self.deadline is not None and time.monotonic() > self.deadline:
                self._fire("time")
                self.stopped, self.reason = True, "time"
                break
        self._release()

    def finish(self, text: str) -> CutResult:
        """The final completion from the whole generated text (the stop filter's final text)."""
        if not self.stopped:
            lines = text.split("\n")
            for line in lines[self._done_lines:]:
                self._done_lines += 1
                self._judge(line, final=True)
                if self.stopped:
                    break
        final = self._best()
        self._emit(final)
        return CutResult(final, self.reason, list(self.rules))

    # -- line rules ----------------------------------------------------------------------------

    def _judge(self, line: str, final: bool) -> None:
        """Keep, drop or stop at one line of the generated text (line 0 continues the cursor's)."""
        plan = self.plan
        index = self._done_lines - 1
        blank_cursor = not plan.line_prefix.strip()
        if line != line.rstrip():
            line = line.rstrip()
            if line.strip():
                self._fire("trailing-whitespace")
        if not self._started:  # leading blank lines, fences and preambles are dropped
            if not line.strip():
                if index == 0 and not blank_cursor:
                    self._kept.append("")  # after `def f():` the body starts on the next line
                elif index > 0:
                    self._fire("leading-blank")
                return
            if not self.prose and line.strip().startswith("```"):
                self._fire("fence")
                return
            if blank_cursor and PREAMBLE.match(line):
                self._fire("preamble")
                return
            if not self._kept and index > 0:
                # This line becomes the rest of the cursor's blank line, whose indentation is there.
                lead = len(line) - len(line.lstrip())
                line = line[min(lead, len(plan.line_prefix)):]
            elif not self._kept and index == 0 and plan.line_prefix and blank_cursor and line[:1].isspace():
                # The cursor stands at its line's indentation, and the model, whose tokens mostly
                # begin with a space, adds one (" return" after "    "): the line would be indented
                # one step off, which Python refuses.
                line = line.lstrip()
                self._fire("indent")
        full = plan.line_prefix + line if not self._kept else line
        stripped = full.strip()
        if stripped:
            if not self.prose and stripped.startswith("```"):
                return self._stop("fence")
            if stripped in self._recent:
                return self._stop("repeat-prefix")
            if self._repeats_suffix(stripped):
                return self._stop("repeat-suffix")
            if not TRIVIAL.match(stripped) and self._written_before(stripped):
                return self._stop("repeat-line")
            if plan.mode != "line" and self._started and self._dedents(full):
                return self._stop("dedent")
        elif plan.mode == "lines" and self._started:
            return self._stop("blank-line")
        if not self._kept and plan.mode == "line":
            line = self._drop_suffix_overlap(line)
        if not self._kept:
            self._floor = indentation(full)
        self._kept.append(line)
        self._started = self._started or bool(stripped)
        if final:
            return
        if plan.mode == "line":
            if _depth("\n".join(self._kept))[0] <= 0:
                self._stop("line-end")
        elif len(self._kept) >= MAX_LINES:
            self._stop("max-lines")

    def _written_before(self, stripped: str) -> bool:
        """The line came in this completion already: right before it, or (a line long enough to
        say something) anywhere, as a model that loops writes a block again."""
        earlier = [k.strip() for k in self._kept if k.strip()]
        return bool(earlier) and (earlier[-1] == stripped or (len(stripped) >= 12 and stripped in earlier))

    def _repeats_suffix(self, stripped: str) -> bool:
        """The suffix's next lines written again: the first one even when it is only a closer (the
        suffix has it already) once the completion's own brackets are closed, later ones when they
        say something."""
        if not self._suffix_lines or not self._started:
            return False
        if stripped == self._suffix_lines[0] and _depth("\n".join(self._kept))[0] <= 0:
            # A closer (`end`, `}`) that the completion needs for a block of its own is not the
            # suffix's: it is a repeat only when the completion parses without it.
            return not TRIVIAL.match(stripped) or self.check.ok(self._text(self._kept))
        return any(stripped == s for s in self._suffix_lines[1:] if not TRIVIAL.match(s))

    def _dedents(self, full: str) -> bool:
        indent = indentation(full)
        if self.plan.mode == "block" and self.plan.opener_indent is not None:
            return indent <= self.plan.opener_indent
        floor = self.plan.indent if self.plan.indent is not None else self._floor
        return indent < floor

    def _drop_suffix_overlap(self, line: str) -> str:
        """Text at the end of the cursor's line that the text right of the cursor already has: the
        whole rest of the line, or closing brackets that the completion does not open itself."""
        rest = self.plan.rest_of_line.strip()
        body = line.rstrip()
        if not rest or not body:
            return line
        short = all(ch in ")]}:;," for ch in rest) and (
            _depth(body)[0] < 0 or not any(ch in CLOSERS for ch in rest))  # `;` twice, or one `)` too many
        if body.endswith(rest) and (len(rest) >= 3 or short):
            body = body[:-len(rest)].rstrip()
        elif _depth(body)[0] < 0:
            for k in range(min(len(rest), len(body)), 0, -1):
                tail = rest[:k]
                if body.endswith(tail) and all(ch in ")]}:;," for ch in tail):
                    body = body[:-k]
                    break
        while _depth(body)[0] < 0 and body[-1:] in CLOSERS and body[-1] in rest:
            body = body[:-1]
        if body != line.rstrip():
            self._fire("suffix-overlap")
            return body
        return line

    # -- release -------------------------------------------------------------------------------

    def _text(self, lines: list[str]) -> str:
        return "\n".join(lines).rstrip()

    def _best(self) -> str:
        """The longest kept prefix of lines that keeps the file parseable (brackets balanced)."""
        for n in range(len(self._kept), 0, -1):
            candidate = self._text(self._kept[:n])
            if not candidate.strip():
                continue
            if self.check.ok(candidate):
                if n < len(self._kept):
                    self._fire("parse" if self.check.parser is not None else "brackets")
                return candidate
        if any(k.strip() for k in self._kept):
            self._fire("parse-empty" if self.check.parser is not None else "brackets-empty")
        return ""

    def _release(self) -> None:
        """Stream out the kept lines up to the last line end that passes the syntax check."""
        if self.on_delta is None or not self._kept:
            return
        candidate = self._text(self._kept)
        if len(candidate) > len(self._emitted) and candidate.startswith(self._emitted) and self.check.ok(candidate):
            self._emit(candidate)

    def _emit(self, text: str) -> None:
        if not text.startswith(self._emitted):  # never: released text is always a kept prefix
            log.error("cut: the final text does not extend what was streamed")
            return
        delta = text[len(self._emitted):]
        self._emitted = text
        if delta and self.on_delta is not None:
            self.on_delta(delta)


class LineDeadline:
    """`max_time_ms` without the cut: past the deadline, generation ends at the next line end."""

    def __init__(self, deadline: float, on_delta: Callable[[str], None] | None = None):
        self.deadline = deadline
        self.on_delta = on_delta
        self.stopped = False
        self.reason: str | None = None
        self._emitted = ""
        self._late_from: int | None = None  # where the text stood when the deadline passed

    def update(self, text: str) -> None:
        if self.stopped:
            return
        if self._late_from is None and time.monotonic() > self.deadline:
            self._late_from = len(self._emitted)
        if self._late_from is not None:
            end = text.find("\n", self._late_from)
            if end >= 0:
                text, self.stopped, self.reason = text[:end], True, "time"
        self._emit(text)

    def finish(self, text: str) -> CutResult:
        if not self.stopped:
            self._emit(text)
        return CutResult(self._emitted, self.reason, ["time"] if self.stopped else [])

    def _emit(self, text: str) -> None:
        delta = text[len(self._emitted):]
        self._emitted = text
        if delta and self.on_delta is not None:
            self.on_delta(delta)
