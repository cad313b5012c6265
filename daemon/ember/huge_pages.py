"""Back the daemon's large allocations with transparent huge pages (Linux, glibc 2.35+).

Decoding reads every weight of the model once per token: about 100 MB for the default model. With
4 KB pages that stream keeps missing the TLB; with 2 MB pages the onnxruntime engine decodes about
20% faster on one thread and 4% on two (docs/engines.md#huge-pages; llama.cpp's speed does not
change). glibc backs its allocations with huge pages when the process starts with
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 and the kernel's THP mode is `madvise` or `always`. glibc reads
tunables only at start, so the commands that load models re-execute the process once with it: same
PID, same stdin and stdout, before anything is read.

A GLIBC_TUNABLES that is already set is left as it is: GLIBC_TUNABLES=glibc.malloc.hugetlb=0 opts out.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
MIN_GLIBC = (2, 35)


def glibc_version() -> tuple[int, ...] | None:
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (ValueError, OSError, AttributeError):
        return None
    name, _, version = (found or "").partition(" ")
    if name != "glibc":
        return None
    try:
        return tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return None


def wanted(environ: os._Environ[str] | dict[str, str] = os.environ, thp_mode: Path = THP_MODE) -> bool:
    """Whether this process should restart with the tunable: Linux, glibc new enough, THP not
    `never`, and no GLIBC_TUNABLES of the user's."""
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in environ:
        return False
    version = glibc_version()
    if version is None or version < MIN_GLIBC:
        return False
    try:
        mode = thp_mode.read_text()
    except OSError:
        return False
    return "[always]" in mode or "[madvise]" in mode


def restart_with_huge_pages() -> None:
    """Re-execute this process with the tunable if wanted(); returns when it is not wanted, or when
    the restart itself fails (an embedded interpreter, a vanished executable): then Ember runs on
    without huge pages rather than not at all."""
    if not wanted() or not sys.executable or not sys.orig_argv:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, {**os.environ, "GLIBC_TUNABLES": TUNABLE})
    except OSError as exc:
        sys.stderr.write(f"ember: running without huge pages: could not restart {sys.executable}: {exc}\n")
