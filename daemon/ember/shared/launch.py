"""Find, start and stop the shared daemon from a client process. Light: no service, no pygls."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import SharedPaths, lock_holder

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.05
LOG_ROTATE_BYTES = 5 << 20


class DaemonUnavailable(Exception):
    """The shared daemon is not running and could not be started, or the connection failed."""


@dataclass(frozen=True)
class DaemonState:
    paths: SharedPaths
    pid: int | None  # None: not running

    @property
    def running(self) -> bool:
        return self.pid is not None


def state(paths: SharedPaths) -> DaemonState:
    return DaemonState(paths, lock_holder(paths.lock))


def try_connect(path: Path, timeout: float = 5.0) -> socket.socket | None:
    """A connected socket, or None when nobody listens there (no socket file, or a stale one)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
            return None
        raise DaemonUnavailable(f"cannot connect to {path}: {exc.strerror or exc}") from None
    sock.settimeout(None)
    return sock


def config_argv(loaded: Any) -> list[str]:
    """Flags that give a daemon started from this process the configuration this process has.

    The environment is inherited, so only the config file and command-line settings need passing;
    every command-line flag has already become a dotted setting with a `cli` origin.
    """
    argv: list[str] = []
    if loaded.path is not None:
        argv += ["--config", str(Path(loaded.path).resolve())]
    tree = loaded.settings.model_dump(mode="json")
    for dotted, origin in sorted(loaded.sources.items()):
        if not origin.startswith("cli "):
            continue
        value: Any = tree
        for part in dotted.split("."):
            value = value[part]
        argv += ["--set", f"{dotted}={json.dumps(value, ensure_ascii=False)}"]  # JSON is a TOML literal here
    return argv


def log_path(paths: SharedPaths, configured: str | None) -> Path:
    return Path(configured).expanduser() if configured else paths.log


def spawn(paths: SharedPaths, argv: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    """Start `ember daemon run` in its own session, detached from our terminal and our stdio."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        if log_file.stat().st_size > LOG_ROTATE_BYTES:
            log_file.replace(log_file.with_name(log_file.name + ".1"))
    except FileNotFoundError:
        pass
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            [sys.executable, "-P", "-m", "ember", "daemon", "run", *argv],  # -P: not the caller's folder's modules
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, close_fds=True,
        )
    finally:
        os.close(fd)


def ensure_running(paths: SharedPaths, argv: list[str] | None = None, log_file: Path | None = None,
                   start: bool = True, timeout: float = START_TIMEOUT_S) -> socket.socket:
    """A socket connected to the shared daemon, starting the daemon first when none answers."""
    paths.check()
    sock = try_connect(paths.socket)
    if sock is not None:
        return sock
    if not start:
        raise DaemonUnavailable(f"the shared daemon is not running (no answer on {paths.socket}); "
                                "start it with `ember daemon start`")
    log_file = log_file or paths.log
    deadline = time.monotonic() + timeout
    proc = spawn(paths, argv or [], log_file)
    spawns = 1
    while time.monotonic() < deadline:
        sock = try_connect(paths.socket)
        if sock is not None:
            return sock
        if proc.poll() is not None and lock_holder(paths.lock) is None:
            # It exited without a successor holding the lock. Racing starters can lose to a daemon
            # that was itself on its way out, so try again once before giving up.
            if spawns >= 2:
                raise DaemonUnavailable(f"the shared daemon exited at start (code {proc.returncode}); "
                                        f"see {log_file}:\n{log_tail(log_file)}")
            proc = spawn(paths, argv or [], log_file)
            spawns += 1
        time.sleep(POLL_S)
    raise DaemonUnavailable(f"the shared daemon did not answer on {paths.socket} within {timeout:.0f}s; "
                            f"see {log_file}")


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join("  " + line for line in text.splitlines()[-lines:])


def stop(paths: SharedPaths, timeout: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM the daemon and wait for it to let go of its lock. Returns its pid, None if none ran."""
    deadline = time.monotonic() + timeout
    pid = lock_holder(paths.lock)
    while pid == 0 and time.monotonic() < deadline:  # holding the lock, pid not written yet
        time.sleep(POLL_S)
        pid = lock_holder(paths.lock)
    if pid is None or pid == 0:
        return None
    # SIGKILL only when it does not finish in time (stuck inside a model call).
    for sig, wait_s in ((signal.SIGTERM, max(0.0, deadline - time.monotonic())), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return pid
        until = time.monotonic() + wait_s
        while time.monotonic() < until:
            if lock_holder(paths.lock) is None:
                return pid
            time.sleep(POLL_S)
    raise DaemonUnavailable(f"the shared daemon (pid {pid}) did not exit")
