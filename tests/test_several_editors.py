"""Several editors at once through the shared daemon (real SmolLM2, real `ember daemon`): each
document keeps its own KV sequence within the prefix cache's budget, evicted least recently used
across clients; one client's cancelled work never costs another its state; and an editor's
keystroke runs between the steps of a long batch job instead of after it (worker.py).

Behaviour only: reuse comes from `usage.cached_tokens` and `daemon/status`, order from which reply
arrives while the other request still runs. No wall-clock assertions.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import make_daemon_env
from ember.client import Client
from rpc_client import EMBER

TIMEOUT = 300
FILES = {name: Path(module.__file__).read_text() for name, module in
         {"argparse": argparse, "difflib": difflib, "shutil": shutil}.items()}
LONG = {"prompt": "1, 2, 3, 4,", "max_tokens": 2000}  # counting on: runs for minutes unless cancelled


class SharedDaemon:
    def __init__(self, root: Path, cache_dir: Path, *settings: str):
        self.env = make_daemon_env(root, cache_dir)
        (root / "run").mkdir(mode=0o700, exist_ok=True)
        args = [a for s in settings for a in ("--set", s)]
        done = subprocess.run([EMBER, "daemon", "start", *args], env=self.env, capture_output=True, timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr.decode()
        self.socket = root / "run" / "ember" / "ember.sock"
        self.clients: list[Client] = []

    def client(self) -> Client:
        c = Client.connect(self.socket, start=False)
        self.clients.append(c)
        return c

    def prefix_cache(self) -> dict[str, Any]:
        return self.clients[0].status()["models"][0]["prefix_cache"]

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        subprocess.run([EMBER, "daemon", "stop"], env=self.env, capture_output=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, cache_dir):
    d = SharedDaemon(tmp_path_factory.mktemp("editors"), cache_dir)
    yield d
    d.stop()


class Typist:
    """An editor typing `name`'s text from a line start about `at` characters in; its prefix starts
    2,000 characters before that and stays put, as the clients' windows do."""

    def __init__(self, client: Client, name: str, at: int = 2000):
        self.client, self.text, self.uri = client, FILES[name], f"file:///{name}.py"
        self.cursor = self.text.index("\n", at) + 1
        self.start = self.text.index("\n", self.cursor - 2000) + 1

    def keystroke(self, **extra: Any) -> dict[str, Any]:
        self.cursor += 1
        return self.client.complete(prefix=self.text[self.start:self.cursor],
                                    suffix=self.text[self.cursor:self.cursor + 300], max_tokens=4,
                                    path=self.uri, language="python", **extra)


def reused(result: dict[str, Any]) -> float:
    return result["usage"]["cached_tokens"] / result["usage"]["prompt_tokens"]


def test_two_editors_typing_in_turn_keep_their_own_sequences(daemon):
    a, b = Typist(daemon.client(), "argparse"), Typist(daemon.client(), "difflib")
    a.keystroke(), b.keystroke()  # each document's first prompt is cold
    for _ in range(3):
        assert reused(a.keystroke()) > 0.9
        assert reused(b.keystroke()) > 0.9
    owners = {e["owner"] for e in daemon.prefix_cache()["entries"]}
    assert {"complete file:///argparse.py", "complete file:///difflib.py"} <= owners


def test_status_shows_each_sequence_and_the_reuse_rate(daemon):
    Typist(daemon.client(), "shutil").keystroke()
    cache = daemon.prefix_cache()
    assert 0 < cache["reuse_rate"] <= 1
    assert cache["kv_bytes_per_token"] > 0
    assert sum(e["bytes"] for e in cache["entries"]) == cache["bytes"] <= cache["budget_bytes"]
    for entry in cache["entries"]:
        assert entry["tokens"] <= entry["capacity"]
        assert entry["bytes"] == entry["capacity"] * cache["kv_bytes_per_token"]


def test_one_clients_cancelled_or_superseded_requests_never_drop_anothers_state(daemon):
    editor = Typist(daemon.client(), "argparse", at=6000)
    editor.keystroke()
    script = daemon.client()
    deltas = threading.Event()
    long = script.request("complete", {**LONG, "stream": True}, on_delta=lambda _: deltas.set())
    assert deltas.wait(TIMEOUT)
    long.cancel()
    with pytest.raises(Exception, match="cancel"):
        long.result(TIMEOUT)
    assert reused(editor.keystroke()) > 0.9
    deltas.clear()
    first = script.request("complete", {**LONG, "stream": True, "supersede": "file:///other.py"},
                           on_delta=lambda _: deltas.set())
    assert deltas.wait(TIMEOUT)
    second = script.request("complete", {"prompt": "x = 1", "max_tokens": 2, "supersede": "file:///other.py"})
    with pytest.raises(Exception, match="supersede|cancel"):
        first.result(TIMEOUT)
    second.result(TIMEOUT)
    assert reused(editor.keystroke()) > 0.9


def test_a_keystroke_runs_between_the_steps_of_a_long_batch_summary(daemon):
    script, editor = daemon.client(), Typist(daemon.client(), "difflib", at=9000)
    text = " ".join(FILES["argparse"].split())[:12_000]
    summary = script.request("summarize", {"text": text, "priority": "batch"})
    while "summarize" not in " ".join(script.status()["running"]):
        assert not summary.done(), summary.result()
    result = editor.keystroke()
    assert result["text"] is not None
    assert not summary.done()  # the editor did not wait for the summary
    summary.cancel()


def test_a_model_unloaded_while_a_paused_job_runs_on_it_closes_after_that_job(daemon):
    script, other = daemon.client(), daemon.client()
    pieces: list[str] = []
    started = threading.Event()

    def on_delta(delta: str) -> None:
        pieces.append(delta)
        started.set()

    long = script.request("complete", {**LONG, "stream": True, "priority": "batch"}, on_delta=on_delta)
    assert started.wait(TIMEOUT)
    assert other.call("models/unload", {"model": "default"}) == {"unloaded": True}  # ran between its steps
    before = len(pieces)
    while len(pieces) < before + 3:  # it goes on on the model it started with
        assert not long.done(), long.result()
    long.cancel()
    with pytest.raises(Exception, match="cancel"):
        long.result(TIMEOUT)
    assert other.complete(prompt="def add(a, b):", max_tokens=2)["usage"]["completion_tokens"] >= 1


def test_the_budget_holds_and_evicts_the_least_recently_used_document(tmp_path, cache_dir):
    # about 770 tokens of capacity per document (45 KB each): two fit in 80 MB, three do not
    d = SharedDaemon(tmp_path, cache_dir, "models.default.prefix_cache_mb=80")
    try:
        a, b, c = (Typist(d.client(), name) for name in ("argparse", "difflib", "shutil"))
        a.keystroke(), b.keystroke()
        assert reused(b.keystroke()) > 0.9 and reused(a.keystroke()) > 0.9  # both fit; a is now the newest
        c.keystroke()  # evicts b, the least recently used
        assert reused(a.keystroke()) > 0.9
        assert reused(b.keystroke()) < 0.1
        cache = d.prefix_cache()
        assert cache["evictions"] >= 1
        assert cache["bytes"] <= cache["budget_bytes"]
    finally:
        d.stop()
