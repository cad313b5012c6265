"""Local acceptance figures (stats.py): counting, the file several daemons share, bounded memory,
`ember stats`, and `context/add` / `completion/feedback` sent to a real `ember serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from ember import stats as stats_module
from ember.config import CompletionSettings
from ember.stats import (
    MAX_LANGUAGES,
    MAX_PENDING,
    MAX_RULES,
    CompletionStats,
    bucket,
    read_file,
    summarize,
)
from ember.wire import CompletionFeedbackParams
from rpc_client import EMBER
from waiting import wait_for


def make(tmp_path: Path, **settings) -> CompletionStats:
    return CompletionStats(CompletionSettings(stats_file=str(tmp_path / "state" / "stats.json"), **settings))


def result(text: str = "x = 1", first: float | None = 20.0, total: float = 100.0,
           rules: list[str] | None = None, typed: int | None = None) -> dict:
    r: dict = {"text": text, "finish_reason": "cut", "model": "m", "usage": {"prompt_tokens": 5,
               "completion_tokens": 3}, "timings": {"queue_ms": 0.0, "load_ms": 0.0, "run_ms": total,
                                                    "total_ms": total}}
    if first is not None:
        r["first_token_ms"] = first
    if rules is not None:
        r["cut"] = {"mode": "line", "parser": "tree-sitter", "language": "python", "rules": rules}
    if typed is not None:
        r["usage"]["typed_through"] = typed
    return r


def fb(s: CompletionStats, cid: str, event: str, chars: int | None = None) -> None:
    s.feedback("client", CompletionFeedbackParams(completion_id=cid, event=event, accepted_chars=chars))


def test_completions_and_feedback_are_counted_per_language(tmp_path):
    s = make(tmp_path)
    s.completed("client", "p1", "python", result(rules=["fence", "suffix-repeat"]))
    s.completed("client", "p2", "python", result(text="  \n", rules=["fence"]))
    s.completed("client", "p3", "python", result(typed=4))
    s.completed("client", "l1", "lua", result(text="return x", first=None))
    fb(s, "p1", "shown")
    fb(s, "p1", "accepted")
    fb(s, "p2", "shown")
    fb(s, "p2", "dismissed")
    fb(s, "p3", "shown")
    fb(s, "p3", "partial", 3)
    fb(s, "l1", "shown")
    summary = s.summary()
    py, lua = summary["languages"]["python"], summary["languages"]["lua"]
    assert (py["completions"], py["empty"], py["typed_through"]) == (3, 1, 1)
    assert (py["shown"], py["accepted"], py["partial"], py["dismissed"]) == (3, 1, 1, 1)
    assert py["accepted_chars"] == len("x = 1") + 3  # accepted whole without a count: its length
    assert py["acceptance_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert py["rules"] == {"fence": 2, "suffix-repeat": 1}
    assert list(py["rules"]) == ["fence", "suffix-repeat"]  # most first
    assert py["first_token_ms"]["samples"] == 3 and lua["first_token_ms"]["samples"] == 0
    assert lua["first_token_ms"]["p50"] is None and lua["total_ms"]["samples"] == 1
    assert (lua["shown"], lua["acceptance_rate"]) == (1, 0.0)
    total = summary["total"]
    assert (total["completions"], total["shown"], total["accepted"], total["partial"]) == (4, 4, 1, 1)
    assert summary["enabled"] is True and summary["file"] == str(tmp_path / "state" / "stats.json")


def test_each_completion_counts_one_shown_and_its_best_outcome(tmp_path):
    s = make(tmp_path)
    s.completed("client", "a", "go", result(text="abcdefgh"))
    for _ in range(3):
        fb(s, "a", "shown")  # editors re-render: still shown once
    fb(s, "a", "partial", 2)
    fb(s, "a", "partial", 3)  # word by word: characters add up, one partial
    figures = s.summary()["languages"]["go"]
    assert (figures["shown"], figures["partial"], figures["accepted"], figures["accepted_chars"]) == (1, 1, 0, 5)
    fb(s, "a", "accepted", 8)  # then the rest: it is accepted, no longer partial
    fb(s, "a", "dismissed")  # a late dismissal does not undo it
    figures = s.summary()["languages"]["go"]
    assert (figures["shown"], figures["partial"], figures["accepted"], figures["dismissed"]) == (1, 0, 1, 0)
    assert figures["accepted_chars"] == 8 and figures["acceptance_rate"] == 1.0


def test_a_rule_counts_once_per_completion(tmp_path):
    s = make(tmp_path)
    s.completed("client", "a", "python", result(rules=["repeat-line", "repeat-line", "fence"]))
    s.completed("client", "b", "python", result(rules=["repeat-line"]))
    assert s.summary()["languages"]["python"]["rules"] == {"repeat-line": 2, "fence": 1}


def test_threads_recording_while_another_writes_lose_nothing(tmp_path):
    """The worker thread and the event loop record while the timer's thread writes the file."""
    s = make(tmp_path)
    stop = threading.Event()

    def writer():
        while not stop.is_set():
            s.flush()

    def recorder(name: str):
        for i in range(400):
            s.completed("client", f"{name}{i}", "python", result())
            fb(s, f"{name}{i}", "accepted" if i % 2 else "dismissed")

    flusher = threading.Thread(target=writer)
    flusher.start()
    recorders = [threading.Thread(target=recorder, args=(n,)) for n in "abc"]
    for t in recorders:
        t.start()
    for t in recorders:
        t.join()
    stop.set()
    flusher.join()
    s.close()
    data = read_file(s.path)
    assert data is not None
    py = data["languages"]["python"]
    assert (py["completions"], py["shown"], py["accepted"], py["dismissed"]) == (1200, 1200, 600, 600)
    assert s.summary()["languages"]["python"]["completions"] == 1200


def test_an_outcome_without_shown_counts_as_shown(tmp_path):
    s = make(tmp_path)
    s.completed("client", "a", "rust", result())
    fb(s, "a", "dismissed")
    figures = s.summary()["languages"]["rust"]
    assert (figures["shown"], figures["dismissed"], figures["acceptance_rate"]) == (1, 1, 0.0)


def test_feedback_for_an_unknown_completion_counts_under_unknown(tmp_path):
    s = make(tmp_path)
    fb(s, "never-returned", "shown")
    fb(s, "never-returned", "accepted", 7)
    fb(s, "never-returned", "shown")
    figures = s.summary()["languages"]["unknown"]
    assert (figures["completions"], figures["shown"], figures["accepted"], figures["accepted_chars"]) == (0, 1, 1, 7)
    s.completed("client", "c", None, result())  # no language sent
    assert s.summary()["languages"]["unknown"]["completions"] == 1


def test_latency_percentiles_are_within_five_percent():
    values = [float(v) for v in range(10, 1010)]  # 10 .. 1009 ms
    counts = stats_module.empty_counts()
    for v in values:
        key = str(bucket(v))
        counts["first_token_ms"][key] = counts["first_token_ms"].get(key, 0) + 1
    figures = summarize({"x": counts}, enabled=True, since=None, file=None)["languages"]["x"]
    assert figures["first_token_ms"]["p50"] == pytest.approx(509.5, rel=0.05)
    assert figures["first_token_ms"]["p95"] == pytest.approx(959.5, rel=0.05)
    assert bucket(0.2) == 0 and bucket(float("nan")) == 0 and bucket(1e30) == stats_module._MAX_BUCKET


def test_nothing_is_counted_or_written_when_stats_is_off(tmp_path):
    s = make(tmp_path, stats=False)
    s.completed("client", "a", "python", result())
    fb(s, "a", "accepted")
    summary = s.summary()
    assert summary["enabled"] is False and summary["languages"] == {} and summary["total"]["shown"] == 0
    s.close()
    assert not (tmp_path / "state").exists()


def test_memory_stays_bounded(tmp_path):
    s = make(tmp_path)
    for i in range(MAX_PENDING * 3):
        s.completed("client", f"id{i}", f"lang{i % 150}",
                    result(first=float(i % 5000) + 0.5, total=float(i), rules=[f"rule{i % 300}"]))
        fb(s, f"other{i}", "shown")  # unknown ids: remembered too, within the same bound
    assert s.pending() <= MAX_PENDING
    languages = s.summary()["languages"]
    assert len(languages) <= MAX_LANGUAGES + 1 and "other" in languages
    assert all(len(f["rules"]) <= MAX_RULES + 1 for f in languages.values())
    assert sum(f["completions"] for f in languages.values()) == MAX_PENDING * 3  # none lost
    session = s._session
    assert all(len(c["first_token_ms"]) <= stats_module._MAX_BUCKET + 1 for c in session.values())
    fb(s, "id0", "accepted")  # long gone: counted as unknown, not as lang0
    assert s.summary()["languages"]["unknown"]["accepted"] == 1


# -- the file ------------------------------------------------------------------------------------


def test_two_daemons_add_up_in_one_file(tmp_path):
    a, b = make(tmp_path), make(tmp_path)
    a.completed("client", "a1", "python", result(rules=["fence"]))
    fb(a, "a1", "accepted")
    b.completed("client", "b1", "python", result(rules=["fence", "repeat"]))
    b.completed("client", "b2", "lua", result())
    fb(b, "b1", "dismissed")
    assert a.flush() and b.flush()
    a.completed("client", "a2", "python", result())
    a.close()
    b.close()  # nothing new: the file is not rewritten
    data = read_file(a.path)
    assert data is not None
    py = data["languages"]["python"]
    assert (py["completions"], py["shown"], py["accepted"], py["dismissed"]) == (3, 2, 1, 1)
    assert py["rules"] == {"fence": 2, "repeat": 1}
    assert data["languages"]["lua"]["completions"] == 1
    assert sum(py["first_token_ms"].values()) == 3
    assert data["since"] == pytest.approx(a.since)  # the first writer's start
    # Each daemon's status still shows its own figures only.
    assert a.summary()["languages"]["python"]["completions"] == 2
    assert b.summary()["languages"]["python"]["completions"] == 1


WRITER = textwrap.dedent("""
    import sys
    from ember.config import CompletionSettings
    from ember.stats import CompletionStats
    s = CompletionStats(CompletionSettings(stats_file=sys.argv[1]))
    for i in range(int(sys.argv[2])):
        s.completed(None, f"{sys.argv[3]}{i}", "python", {"text": "x", "first_token_ms": 10.0})
        assert s.flush()
""")


def test_concurrent_writers_in_two_processes_lose_nothing(tmp_path):
    path = tmp_path / "stats.json"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), "40", name])
             for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    data = read_file(path)
    assert data is not None
    assert data["languages"]["python"]["completions"] == 80
    assert data["languages"]["python"]["first_token_ms"] == {str(bucket(10.0)): 80}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".stats.json.")] == []  # no temp left


def test_a_corrupt_file_is_kept_aside_and_counting_starts_afresh(tmp_path, caplog):
    s = make(tmp_path)
    s.path.parent.mkdir(parents=True)
    s.path.write_text("{not json")
    s.completed("client", "a", "python", result())
    assert s.flush()
    assert s.path.with_name("stats.json.corrupt").read_text() == "{not json"
    data = read_file(s.path)
    assert data is not None and data["languages"]["python"]["completions"] == 1
    assert "counting afresh" in caplog.text


def test_a_failed_write_keeps_the_figures_for_the_next_one(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    s = CompletionStats(CompletionSettings(stats_file=str(blocker / "stats.json")))
    s.completed("client", "a", "python", result())
    assert not s.flush()
    s.path = tmp_path / "ok" / "stats.json"
    assert s.flush()
    data = read_file(s.path)
    assert data is not None and data["languages"]["python"]["completions"] == 1


def test_figures_are_written_a_while_after_activity(tmp_path, monkeypatch):
    monkeypatch.setattr(stats_module, "FLUSH_S", 0.05)
    s = make(tmp_path)
    s.completed("client", "a", "python", result())
    wait_for(lambda: s.path.exists(), "the timed write", timeout=30)
    fb(s, "a", "accepted")
    wait_for(lambda: (read_file(s.path) or {"languages": {}})["languages"].get("python", {}).get("accepted"),
             "the second timed write", timeout=30)
    s.close()
    assert read_file(s.path)["languages"]["python"]["completions"] == 1  # type: ignore[index]


# -- ember stats -----------------------------------------------------------------------------------


def stats_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env.update({"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state")})
    return env


def run_stats(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EMBER, "stats", *args], capture_output=True, text=True, timeout=120,
                          env=stats_env(tmp_path))


def test_ember_stats_prints_rates_latency_and_rules_by_language(tmp_path):
    # Where the config's default puts it with XDG_STATE_HOME=tmp_path/state (stats_env below).
    s = CompletionStats(CompletionSettings(stats_file=str(tmp_path / "state" / "ember" / "stats.json")))
    s.completed("client", "a", "python", result(first=24.0, rules=["fence", "suffix-repeat"]))
    s.completed("client", "b", "python", result(first=52.0, rules=["fence"]))
    s.completed("client", "c", "lua", result(first=30.0))
    fb(s, "a", "accepted")
    fb(s, "b", "dismissed")
    fb(s, "c", "partial", 2)
    s.close()
    done = run_stats(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert str(s.path) in lines[0]
    py = next(line for line in lines if line.startswith("python")).split()
    # language completions empty shown accepted partial dismissed rate p50 / p95 ...
    assert py[:8] == ["python", "2", "0", "2", "1", "0", "1", "50%"]
    assert next(line for line in lines if line.startswith("lua")).split()[7] == "100%"
    assert next(line for line in lines if line.startswith("all")).split()[1:4] == ["3", "0", "3"]
    assert "  python: fence 2, suffix-repeat 1" in lines
    as_json = json.loads(run_stats(tmp_path, "--json").stdout)
    assert as_json == summarize(read_file(s.path)["languages"], enabled=True,  # type: ignore[index]
                                since=as_json["since"], file=str(s.path))
    assert as_json["languages"]["python"]["first_token_ms"]["p50"] == pytest.approx(24.0, rel=0.05)


def test_ember_stats_reads_the_file_the_config_names(tmp_path):
    other = tmp_path / "elsewhere.json"
    s = CompletionStats(CompletionSettings(stats_file=str(other)))
    s.completed("client", "a", "zig", result())
    s.close()
    done = run_stats(tmp_path, "--set", f"completion.stats_file={other}", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["languages"]["zig"]["completions"] == 1
    assert json.loads(run_stats(tmp_path, "--file", str(other), "--json").stdout)["total"]["completions"] == 1


def test_ember_stats_without_a_file_or_with_a_bad_one(tmp_path):
    done = run_stats(tmp_path)
    assert done.returncode == 0 and "No completion figures yet" in done.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    done = run_stats(tmp_path, "--file", str(bad))
    assert done.returncode == 1 and "not an ember stats file" in done.stderr and done.stdout == ""


# -- a real daemon -------------------------------------------------------------------------------


def test_the_daemon_takes_context_and_feedback_and_survives_bad_ones(ember, daemon_env, tmp_path):
    d = ember("headers")
    good_context = {"chunks": [{"text": "def helper(x):\n    return x * 2\n", "path": "util.py", "kind": "save"},
                               {"text": "y" * 200_000, "kind": "copy"}]}
    bad_contexts = [None, [], {"chunks": "nope"}, {"chunks": [{"text": ""}]},
                    {"chunks": [{"text": "x", "kind": "telepathy"}]}, {"chunks": [{"path": "a.py"}]},
                    {"chunks": [{"text": "x"}] * 65}, {"chunks": [], "extra": 1}]
    d.notify("context/add", good_context)
    for params in bad_contexts:
        d.send({"jsonrpc": "2.0", "method": "context/add", **({} if params is None else {"params": params})})
    bad_feedback = [{"completion_id": "", "event": "shown"}, {"completion_id": "x", "event": "clicked"},
                    {"completion_id": "x", "event": "accepted", "accepted_chars": -1},
                    {"completion_id": "x" * 65, "event": "shown"}, {"event": "shown"}, ["x", "shown"]]
    for params in bad_feedback:
        d.notify("completion/feedback", params)
    d.notify("completion/feedback", {"completion_id": "c-1", "event": "shown"})
    d.notify("completion/feedback", {"completion_id": "c-1", "event": "partial", "accepted_chars": 4})
    d.notify("completion/feedback", {"completion_id": "c-2", "event": "dismissed"})
    status = d.call("daemon/status")  # checked against results.StatusResult on both sides
    unknown = status["completions"]["languages"]["unknown"]
    assert (unknown["shown"], unknown["partial"], unknown["dismissed"], unknown["accepted_chars"]) == (2, 1, 1, 4)
    assert status["completions"]["total"]["acceptance_rate"] == 0.5
    assert status["completions"]["file"] == str(tmp_path / "state" / "ember" / "stats.json")
    wait_for(lambda: sum("Dropping context/add" in line for line in d.stderr_lines) == len(bad_contexts),
             "a log line per bad context/add", timeout=30)
    wait_for(lambda: sum("Dropping completion/feedback" in line for line in d.stderr_lines)
             == len(bad_feedback), "a log line per bad completion/feedback", timeout=30)
    assert not any("Could not handle" in line or "Traceback" in line for line in d.stderr_lines)
    assert d.request("shutdown")["result"] is None
    d.notify("exit")
    assert d.wait_exit() == 0
    # Stopping wrote the figures: `ember stats` shows them with no daemon running.
    data = read_file(tmp_path / "state" / "ember" / "stats.json")
    assert data is not None and data["languages"]["unknown"]["shown"] == 2
    done = subprocess.run([EMBER, "stats", "--json"], capture_output=True, text=True, timeout=120,
                          env=daemon_env)
    assert json.loads(done.stdout)["languages"]["unknown"]["partial"] == 1
