"""Ember's cache of converted models: content digests, atomic writes, stale work cleanup.

A conversion writes into a work folder beside its final place and renames it into place only when
complete, so a crash never leaves a half-written entry that loads. Work folders are named after the
converting process (`.convert-PID-...`), so the next start can tell an abandoned one from one that a
live daemon is still writing, and remove it. A lock file per entry makes two daemons that want the
same conversion wait for each other instead of converting twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..lifecycle import pid_alive

log = logging.getLogger(__name__)

WORK_PREFIX = ".convert-"
_WORK_PID = re.compile(r"^\.convert-(\d+)-")
# Work folders from before they carried a pid count as abandoned after this long.
_LEGACY_STALE_S = 3600.0


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cached_digest(path: Path, cache_root: Path) -> str:
    """file_digest, remembered by (path, size, mtime): hashing 100 MB on every start costs ~0.3 s."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index = cache_root / "digests.json"
    try:
        known = json.loads(index.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = file_digest(path)
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, index)
    return known[key]


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename: a reader sees the old file or the whole
    new one, never a half-written one (two daemons may write the same entry at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_work(root: Path) -> list[Path]:
    """Delete work folders that no live process is writing, anywhere under `root`. Returns them."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for parent in [root, *(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))]:
        for entry in parent.glob(WORK_PREFIX + "*"):
            found = _WORK_PID.match(entry.name)
            if found:
                stale = int(found.group(1)) != os.getpid() and not pid_alive(int(found.group(1)))
            else:
                stale = time.time() - entry.stat().st_mtime > _LEGACY_STALE_S
            if stale:
                log.info("Removing an abandoned conversion: %s", entry)
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


@contextmanager
def entry_lock(target: Path) -> Iterator[None]:
    """Hold the lock of one cache entry (blocks while another process converts the same entry)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """A work folder that becomes `target` when the block ends without an error (else is removed).

    Call with the entry's lock held."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=target.parent))
    try:
        yield work
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
