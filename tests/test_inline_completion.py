"""Inline completion end to end on real models: the cut, typing through, the time budget and
workspace context in each model family's repository format."""

from __future__ import annotations

import time

import pytest

import tiny_models
from test_tasks_e2e import configured

pytestmark = pytest.mark.model

PREFIX = 'import os\n\n\ndef read_config(path):\n    """Read a config file and return its lines."""\n    with open(path) as f:\n        '
SUFFIX = '\n\n\ndef main():\n    print(read_config("x"))\n'
INLINE = {"prefix": PREFIX, "suffix": SUFFIX, "language": "python", "max_tokens": 32}


def wait_idle(d, timeout: float = 120.0) -> None:
    """Until the daemon runs and queues nothing (an idle prefill has finished)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = d.call("daemon/status")
        if not status["running"] and status["queue_depth"] == 0:
            return
        time.sleep(0.05)  # polling the daemon's own state, not waiting for a guessed duration
    raise AssertionError("the daemon did not become idle")


def test_the_cut_shapes_what_the_model_wrote(ember):
    d = ember("lines")
    raw = d.call("complete", {**INLINE, "cut": False})
    cut = d.call("complete", INLINE)
    assert "cut" not in raw and cut["cut"]["mode"] == "block" and cut["cut"]["parser"] == "tree-sitter"
    first_line = cut["text"].split("\n")[0]
    assert first_line.strip() and raw["text"].lstrip().startswith(first_line)
    assert not cut["text"].startswith(("\n", " "))  # the cursor's blank, indented line is where it starts
    assert cut["finish_reason"] in ("cut", "length", "stop")
    assert cut["completion_id"] and cut["completion_id"] != raw["completion_id"]


def test_streamed_deltas_add_up_to_the_cut_text(ember):
    d = ember("headers")
    msg_id = d.start_request("complete", {**INLINE, "stream": True})
    result = d.reply(msg_id)["result"]
    assert "".join(d.stream_deltas(msg_id)) == result["text"]


def test_typing_through_answers_from_the_suggestion_as_a_cold_greedy_run_would(ember):
    d = ember("headers")
    cold = d.call("complete", {**INLINE, "supersede": "a.py"})["text"]
    assert len(cold) > 6
    # Another document: its completion is still being generated when the user types its first
    # characters; the keystroke joins it instead of starting over.
    first = d.start_request("complete", {**INLINE, "supersede": "b.py", "stream": True})
    typed = d.start_request("complete", {**INLINE, "prefix": PREFIX + cold[:3], "supersede": "b.py",
                                         "stream": True})
    assert d.reply(first)["error"]["code"] == -32800  # superseded, as before
    answer = d.reply(typed)["result"]
    assert answer["text"] == cold[3:]
    assert answer["usage"]["typed_through"] == 3
    assert "".join(d.stream_deltas(typed)) == cold[3:]
    # Once it is done, a further keystroke is answered from it with no model work.
    before = d.call("daemon/status")["workers"][0]["jobs_done"]
    later = d.call("complete", {**INLINE, "prefix": PREFIX + cold[:5], "supersede": "b.py"})
    assert later["text"] == cold[5:] and later["usage"]["typed_through"] == 5
    assert d.call("daemon/status")["workers"][0]["jobs_done"] == before
    # Typing something else is a new completion.
    other = d.call("complete", {**INLINE, "prefix": PREFIX + "zzz", "supersede": "b.py"})
    assert "typed_through" not in other["usage"]


def test_a_time_budget_stops_at_a_line_end(ember):
    d = ember("lines")
    prompt = "Shopping list:\n1. Apples\n2. Bananas\n3. Cherries\n4."
    free = d.call("complete", {"prompt": prompt, "max_tokens": 40})
    assert free["text"].count("\n") >= 2  # the model goes on listing
    budget = d.call("complete", {"prompt": prompt, "max_tokens": 40, "max_time_ms": 1})
    assert budget["finish_reason"] == "time"
    assert budget["text"] == free["text"].split("\n")[0]  # the line it was writing, then stop


EXPECTED_CONTEXT = {
    "qwen": "<|repo_name|>workspace\n<|file_sep|>util.py\n{ctx}\n<|file_sep|>main.py\n"
            "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
    "starcoder": "<repo_name>workspace<file_sep>util.py\n{ctx}\n<file_sep>main.py\n"
                 "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
    # No repository tokens: a comment line names each file, inside the prefix.
    "deepseek": "<｜fim▁begin｜># util.py\n{ctx}\n\n# main.py\n{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>",
}


@pytest.mark.parametrize("style", ["qwen", "starcoder", "deepseek"])
def test_workspace_context_in_the_models_repository_format(ember, tmp_path, style):
    folder = tiny_models.build_fim_causal_lm(tmp_path / style, style=style)
    d = configured(ember, tmp_path, {"default": {"source": str(folder)}}, {})
    ctx = "def helper(x):\n    return x * 2\n"
    d.notify("context/add", {"chunks": [{"path": "util.py", "text": ctx, "kind": "open"},
                                        {"path": "main.py", "text": "old copy of the current file\n"}]})
    prefix, suffix = "from util import helper\nvalue = ", "\n"
    result = d.call("complete", {"prefix": prefix, "suffix": suffix, "path": "main.py", "language": "python",
                                 "max_tokens": 2})
    # The ring keeps a chunk without its blank lines at either end (workspace.trim).
    expected = EXPECTED_CONTEXT[style].format(ctx=ctx.rstrip("\n"), prefix=prefix, suffix=suffix)
    assert result["usage"]["prompt_tokens"] == d.call("tokenize", {"text": expected, "add_special_tokens": True})["count"]
    assert result["usage"]["context_tokens"] > 0
    off = d.call("complete", {"prefix": prefix, "suffix": suffix, "path": "main.py", "max_tokens": 2,
                              "context": False})
    assert "context_tokens" not in off["usage"] and off["usage"]["prompt_tokens"] < result["usage"]["prompt_tokens"]


def test_the_context_is_prefilled_while_the_user_is_idle(ember):
    d = ember("headers")
    prefix = "from util import helper\n\nvalue = "
    d.call("complete", {"prefix": prefix, "suffix": "\n", "path": "main.py", "language": "python",
                        "max_tokens": 8, "supersede": "main.py"})
    ctx = "def helper(x):\n    return x * 2\n"
    d.notify("context/add", {"chunks": [{"path": "util.py", "text": ctx, "kind": "open"}]})
    wait_idle(d)  # the context's prefill runs at batch priority once the ring changes
    result = d.call("complete", {"prefix": prefix + "h", "suffix": "\n", "path": "main.py", "language": "python",
                                 "max_tokens": 8, "supersede": "main.py"})
    # SmolLM2's vocabulary has StarCoder's repository tokens. The context is tokenized on its own
    # (its ids stay the same whatever the prefix window holds).
    context = f"<repo_name>workspace<file_sep>util.py\n{ctx.rstrip()}\n<file_sep>main.py\n"
    counted = sum(d.call("tokenize", {"text": part})["count"] for part in (context, prefix + "h"))
    assert result["usage"]["prompt_tokens"] == counted
    # Everything but the last keystroke's tokens came from the idle prefill.
    assert result["usage"]["cached_tokens"] >= counted - 4


def test_context_can_be_switched_off_in_the_config(ember):
    d = ember("lines", ["--set", "completion.context=false"])
    d.notify("context/add", {"chunks": [{"path": "util.py", "text": "def helper(x):\n    return x\n"}]})
    result = d.call("complete", {"prefix": "value = ", "suffix": "\n", "path": "main.py", "max_tokens": 4})
    assert "context_tokens" not in result["usage"]
