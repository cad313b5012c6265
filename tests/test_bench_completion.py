"""The completion-quality benchmarks: their holes, windows and judging without a model, and a tiny run
of each against a real `ember serve` that checks the report's structure."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

import completion_context  # noqa: E402
import completion_quality as cq  # noqa: E402


def test_sampling_is_deterministic_and_spread_over_languages_and_kinds():
    holes = cq.sample_holes(["python", "lua"], 18, seed=3)
    assert holes == cq.sample_holes(["python", "lua"], 18, seed=3)
    assert holes != cq.sample_holes(["python", "lua"], 18, seed=4)
    counts = {(lang, kind): sum(1 for h in holes if (h.language, h.kind) == (lang, kind))
              for lang in ("python", "lua") for kind in cq.KINDS}
    assert counts == {(lang, kind): (4 if lang == "python" else 2) for lang, kind in counts}


def test_holes_are_cut_where_a_user_asks_and_the_truth_fills_them():
    for hole in cq.sample_holes(["python", "lua"], 30, seed=1):
        text = Path(hole.path).read_text()
        truth = hole.truth(text)
        before = text[text.rfind("\n", 0, hole.start) + 1:hole.start]
        assert truth.strip() and cq.parses(hole.language, text)
        if hole.kind == "line":
            assert before.strip() == "" and "\n" not in truth and text[hole.end] == "\n"
        elif hole.kind == "tail":
            assert before.strip() != "" and "\n" not in truth and text[hole.end] == "\n"
        else:
            assert before.strip() == "" and 2 <= truth.count("\n") + 1 <= 8
        # Without the truth a block or line hole usually breaks the file; with it the file parses.
        assert cq.judge(hole, text, truth)["parses"] and cq.judge(hole, text, truth)["exact"]


def test_window_is_the_vscode_extensions():
    text = "".join(f"line {i:04d} " + "x" * 40 + "\n" for i in range(400))
    cursor = 9000
    prefix, suffix = cq.window(text, cursor, cursor + 5)
    assert len(prefix) <= cq.MAX_PREFIX_CHARS and text.endswith(prefix + text[cursor:], 0, len(text))
    start = cursor - len(prefix)
    assert text[start - 1] == "\n" and start >= cursor - cq.MAX_PREFIX_CHARS
    # The start is the first line start at or after a 1,024-character step: it stays put while typing.
    assert cq.window(text, cursor + 3, cursor + 5)[0].startswith(prefix[:100])
    assert suffix == text[cursor + 5:cursor + 5 + cq.MAX_SUFFIX_CHARS]
    assert cq.window(text, 100, 100) == (text[:100], text[100:1100])


def test_judge_counts_artifacts():
    hole = next(h for h in cq.sample_holes(["python"], 6, seed=2) if h.kind == "line")
    text = Path(hole.path).read_text()
    fenced = cq.judge(hole, text, "```python\nx = 1\n```")
    assert fenced["fence"] and not fenced["parses"] and not fenced["exact"]
    assert cq.judge(hole, text, "Here is the completed code:")["preamble"]
    assert cq.judge(hole, text, "# a comment")["comment"]
    assert not cq.judge(hole, text, "")["nonempty"]


def test_cross_file_holes_need_a_name_the_windows_do_not_show():
    holes = completion_context.sample(8, seed=5)
    assert len(holes) == 8
    for h in holes:
        text = Path(h.path).read_text()
        prefix, suffix = cq.window(text, h.start, h.end)
        assert text[h.start:].startswith(h.name)
        assert not re.search(rf"\b{re.escape(h.name)}\b", prefix + suffix)
        assert re.search(rf"^\s*(def|class|async def) {re.escape(h.name)}\b", h.chunk, re.M)
        assert Path(h.sibling).parent == Path(h.path).parent and h.sibling != h.path


@pytest.mark.model
def test_tiny_runs_report_their_structure(smollm2_folder):
    out = subprocess.run([sys.executable, str(REPO / "bench/completion_quality.py"), "--holes", "2",
                          "--languages", "python", "--json", "-"],
                         capture_output=True, text=True, timeout=900, check=True)
    report = json.loads(out.stdout)
    assert report["meta"]["holes"] == 2 and len(report["holes"]) == 2
    overall = report["report"]["all"]
    assert overall["holes"] == 2 and sum(overall["finish"].values()) == 2
    assert set(report["report"]["by_language"]["python"]) == {"all", *cq.KINDS}
    for rec in report["holes"]:
        assert {"text", "truth", "parses", "exact", "similar", "fence", "finish_reason"} <= set(rec)
        assert 0 <= rec["similar"] <= 1
    out = subprocess.run([sys.executable, str(REPO / "bench/completion_context.py"), "--holes", "1", "--json", "-"],
                         capture_output=True, text=True, timeout=900, check=True)
    cross = json.loads(out.stdout)
    assert cross["report"]["holes"] == 1
    assert {"exact", "name", "context_tokens"} <= set(cross["holes"][0]["ring"])
