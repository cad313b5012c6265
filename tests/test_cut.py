"""The completion cut (ember.tasks.cut) on real tree-sitter parses, fed as a model streams text."""

from __future__ import annotations

import time

import pytest

from ember.tasks.cut import Cut, LineDeadline, plan


def cut(prefix: str, suffix: str, generated: str, language: str | None = "python", step: int = 1,
        deadline: float | None = None):
    """Feed `generated` `step` characters at a time, as a decode loop does; check that the streamed
    deltas add up to the final text. Returns (text, reason, rules, mode)."""
    deltas: list[str] = []
    c = Cut(prefix, suffix, language, deltas.append, deadline)
    seen = generated
    for end in range(step, len(generated) + step, step):
        seen = generated[:end]
        c.update(seen)
        if c.stopped:
            break
    result = c.finish(seen)
    assert "".join(deltas) == result.text
    return result.text, result.reason, result.rules, c.plan.mode


FUNC = 'def area(w, h):\n    """Area of a rectangle."""\n    '
AFTER = "\n\nprint(area(2, 3))\n"


def test_modes_come_from_the_syntax_at_the_cursor():
    assert plan("x = foo(", ")\n").mode == "line"  # text right of the cursor
    assert plan("    total = ", "\n").mode == "line"  # a statement the cursor is inside
    assert plan("def f(x):\n    ", "\n").mode == "block"  # an empty line after a block opener
    assert plan("def f(x):", "\n").mode == "block"  # at the end of the opener itself
    assert plan("x = 1\n", "\ny = 2\n").mode == "lines"
    assert plan("local function f(x)\n  ", "\nend\n").mode == "block"


def test_a_line_hole_ends_with_its_line():
    text, reason, rules, mode = cut("def f(x):\n    y = ", "\n    return y\n", "x + 1\n    return y\n")
    assert (text, reason, mode) == ("x + 1", "cut", "line")
    assert "line-end" in rules


def test_a_line_continues_while_its_brackets_are_open():
    text, reason, _, _ = cut("total = compute(", "\n", "a,\n    b)\nprint(total)\n")
    assert text == "a,\n    b)"
    assert reason == "cut"


def test_a_block_ends_where_a_line_dedents_out_of_it():
    text, _, rules, mode = cut("def f(x):\n", "\nprint(1)\n", "    y = x + 1\n    return y\nprint(2)\n")
    assert mode == "block" and text == "    y = x + 1\n    return y"
    assert rules == ["dedent"]


def test_a_blank_cursor_line_keeps_its_own_indentation():
    # The model starts on a new line with full indentation; the cursor's line has it already.
    text, _, rules, _ = cut(FUNC, AFTER, "\n    return w * h\n\ndef other():\n")
    assert text == "return w * h"
    assert "dedent" in rules or "blank-line" in rules


def test_markdown_fences_and_chat_preambles_never_come_back():
    text, _, rules, _ = cut(FUNC, AFTER, "Here is the code:\n```python\nreturn w * h\n```\n")
    assert text == "return w * h"
    assert {"preamble", "fence"} <= set(rules)
    assert "```" not in text


def test_fences_are_kept_in_markdown():
    text, _, rules, _ = cut("Some text.\n\n", "\n", "```python\nprint(1)\n```\n", language="markdown")
    assert text.startswith("```python") and "fence" not in rules


def test_the_prefix_own_last_lines_are_not_written_again():
    text, _, rules, _ = cut(FUNC, AFTER, '"""Area of a rectangle."""\n    return w * h\n')
    assert text == "" and rules[0] == "repeat-prefix"


def test_it_stops_where_the_suffix_begins_again():
    prefix = "def f(items):\n    out = []\n"
    suffix = "\n    return out\n"
    text, _, rules, _ = cut(prefix, suffix, "    for i in items:\n        out.append(i)\n    return out\n")
    assert text == "    for i in items:\n        out.append(i)"
    assert "repeat-suffix" in rules


def test_a_loop_of_repeated_lines_is_cut():
    generated = "    line = line.strip()\n    if not line:\n        continue\n    line = line.strip()\n"
    text, _, rules, _ = cut("for line in f:\n", "\n", generated)
    assert text.count("line = line.strip()") == 1 and "repeat-line" in rules


@pytest.mark.parametrize("generated, expected", [("a, b)", "a, b"), ("len(x))", "len(x)"), ("len(x)", "len(x)")])
def test_closing_brackets_the_suffix_already_has_are_dropped(generated, expected):
    text, _, _, _ = cut("x = max(", ")\nprint(x)\n", generated + "\n")
    assert text == expected


def test_the_file_stays_parseable_or_nothing_is_returned():
    # The only line the model wrote leaves a bracket open: nothing keeps the file parseable.
    text, _, rules, _ = cut("def f(x):\n    y = ", "\n    return y\n", "foo(x\n")
    assert text == "" and "parse-empty" in rules


def test_it_cuts_back_to_the_longest_prefix_that_parses():
    # Generation ran out (length) inside a second statement: the first one is kept.
    prefix = "def f(x):\n"
    text, reason, rules, _ = cut(prefix, "\n", "    y = x + 1\n    z = (y *")
    assert text == "    y = x + 1" and reason is None and "parse" in rules


def test_errors_outside_the_hole_do_not_block_a_completion():
    # The prefix window starts mid-expression (as an editor's window does): that error stays the same.
    prefix = "  3, 4]\n\ndef f(x):\n    y = "
    text, _, _, _ = cut(prefix, "\n    return y\n", "x * 2\n")
    assert text == "x * 2"


def test_streaming_releases_only_text_that_stays():
    deltas: list[str] = []
    c = Cut("def f(x):\n", "\nprint(1)\n", "python", deltas.append)
    c.update("    y = x + 1\n    z = (")
    assert "".join(deltas) == "    y = x + 1"  # the unfinished line is held back
    c.update("    y = x + 1\n    z = (y\n")
    assert "".join(deltas) == "    y = x + 1"  # a line that leaves a bracket open is held back too
    result = c.finish("    y = x + 1\n    z = (y\n")
    assert result.text == "    y = x + 1" and "".join(deltas) == result.text


def test_languages_without_a_grammar_get_bracket_rules():
    text, _, rules, _ = cut("foo(", ")\n", "a, b))\n", language="no-such-language")
    assert text == "a, b" and "suffix-overlap" in rules
    text, _, rules, _ = cut("x = [", "\n", "1, (2\n", language="no-such-language")
    assert text == "" and "brackets-empty" in rules


def test_lua_and_rust_parse_with_their_grammars():
    assert cut("local t = {", "}\n", "1, 2, 3}\n", language="lua")[0] == "1, 2, 3"
    assert cut("fn main() {\n    let x = ", ";\n}\n", "compute(1);\n", language="rust")[0] == "compute(1)"


def test_a_time_budget_ends_at_the_next_line_end():
    past = time.monotonic() - 1
    text, reason, rules, _ = cut("def f(x):\n", "\n", "    a = 1\n    b = 2\n    c = 3\n", deadline=past)
    assert (text, reason) == ("    a = 1", "time") and "time" in rules


def test_line_deadline_without_the_cut():
    deltas: list[str] = []
    d = LineDeadline(time.monotonic() - 1, deltas.append)
    d.update("one tw")
    d.update("one two\nthree")
    assert d.stopped and d.reason == "time"
    assert d.finish("one two\nthree").text == "one two" == "".join(deltas)


def test_an_unclosed_block_is_refused_where_the_window_ends_inside_one_too():
    # The suffix window ends inside the function, so the file without the completion already
    # misses an `end` there; a completion that opens another block would miss a second one.
    prefix = "local function f(x)\n  if x then\n    "
    suffix = "\n    return 1\n"
    assert cut(prefix, suffix, "y = 1\n", language="lua")[0] == "y = 1"
    text, _, rules, _ = cut(prefix, suffix, "if y then\n", language="lua")
    assert text == "" and "parse-empty" in rules


def test_a_bracket_left_open_at_the_end_of_generation_is_cut_back():
    # max_tokens ran out inside a call's arguments: the error would only show at the window's end.
    prefix = "def f(self):\n    "
    suffix = "\n    return self._options\n" + "x = [\n"  # the window ends inside a list
    text, reason, rules, _ = cut(prefix, suffix, "self.a = 1\n    self._options = dict(a,\n        b,")
    assert text == "self.a = 1" and reason is None and "parse" in rules


def test_errors_before_the_cursors_line_are_the_windows_own():
    # The window starts inside a triple-quoted string that it does not open.
    prefix = 'ring of a docstring.\n    """\n    return 1\n\n\ndef g(x):\n    y = '
    assert cut(prefix, "\n    return y\n", "x + 1\n")[0] == "x + 1"


def test_block_lines_must_parse_on_their_own():
    # After the opener itself: the body the model wrote leaves an `if` open (the suffix window
    # ends inside the function, so the file misses an `end` with or without it).
    text, _, rules, _ = cut("local function f(x)", "\n  return x\n", "\n  local y = 1\n  if y then\n",
                            language="lua")
    assert text == "\n  local y = 1" and "parse" in rules


def test_a_closer_the_completion_needs_is_not_a_repeat_of_the_suffix():
    prefix = "for i, v in ipairs(t) do\n  "
    suffix = "\nend\n"
    text, _, _, _ = cut(prefix, suffix, "if v == x then\n    return i\n  end\nend\n", language="lua")
    assert text == "if v == x then\n    return i\n  end"
    # Without a block of its own, the suffix's `end` written again is a repeat.
    text, _, rules, _ = cut(prefix, suffix, "print(v)\nend\n", language="lua")
    assert text == "print(v)" and "repeat-suffix" in rules


def test_a_space_the_model_adds_to_the_cursors_indentation_is_dropped():
    # The cursor is at the body's indentation; the model's first token is " return".
    text, _, rules, _ = cut("def add(a, b):\n    ", "\n", " return a + b\n")
    assert text == "return a + b" and "indent" in rules
    # A line the cursor is inside keeps its spaces: they are part of the statement.
    assert cut("x =", "\n", " 1\n")[0] == " 1"
