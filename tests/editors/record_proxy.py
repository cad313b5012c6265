"""Run a daemon command between an editor and itself, recording every JSON-RPC message.

    python record_proxy.py RECORD CMD [ARGS...]

Messages pass through unchanged (Content-Length framing both ways); each one is also appended to
RECORD as a JSON line, `{"pid": <the daemon's pid>, "dir": "in" | "out", "msg": ...}` ("in": to
the daemon), the format of fake_daemon.py's --record. The daemon's stderr is the proxy's. Stdin EOF
is passed on; the proxy ends as the daemon did: its exit code, or killed by the same signal.
For tests that must see what the real daemon answered, e.g. the -32800 of a superseded request,
which Neovim's RPC client drops.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Any


def read_frame(stream: IO[bytes]) -> bytes | None:
    """One message body, or None at EOF."""
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("ascii").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        return None
    return stream.read(length)


def main() -> int:
    record_path, cmd = sys.argv[1], sys.argv[2:]
    daemon = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lock = threading.Lock()

    def record(direction: str, body: bytes) -> None:
        try:
            msg: Any = json.loads(body)
        except ValueError:
            msg = body.decode(errors="replace")
        with lock, open(record_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"pid": daemon.pid, "dir": direction, "msg": msg}) + "\n")

    def pump(source: IO[bytes], sink: IO[bytes], direction: str) -> None:
        while (body := read_frame(source)) is not None:
            record(direction, body)
            try:
                sink.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
                sink.flush()
            except (BrokenPipeError, ValueError):
                break
        if direction == "in":  # the editor closed our stdin: close the daemon's
            try:
                sink.close()
            except BrokenPipeError:
                pass

    assert daemon.stdin is not None and daemon.stdout is not None
    to_daemon = threading.Thread(target=pump, args=(sys.stdin.buffer, daemon.stdin, "in"), daemon=True)
    to_daemon.start()
    pump(daemon.stdout, sys.stdout.buffer, "out")
    rc = daemon.wait()
    if rc < 0:  # killed by a signal: die of the same one, so the editor sees what the daemon got
        if -rc != signal.SIGKILL:  # the one signal whose handler cannot be (re)set
            signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
