"""Where the shared daemon lives: a private folder holding its socket, lock file and log.

The folder is `shared.socket_dir` if set, else `$XDG_RUNTIME_DIR/ember`, else `/tmp/ember-$UID`.
It must be a real directory owned by the user with no access for group or others: anyone who can
write there could put a socket of their own in our place. Daemon and clients both check it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOCKET_NAME = "ember.sock"
LOCK_NAME = "ember.lock"
LOG_NAME = "ember.log"
# sockaddr_un.sun_path is 108 bytes on Linux (104 on macOS), including the terminating NUL.
MAX_SOCKET_PATH = 103


class UnsafeSocketDir(Exception):
    """The socket folder is missing and cannot be made, or others could reach into it."""


def default_socket_dir(configured: str | None = None) -> Path:
    if configured:
        return Path(configured).expanduser()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "ember"
    return Path(tempfile.gettempdir()) / f"ember-{os.getuid()}"


def check_private_dir(folder: Path, create: bool = True) -> None:
    """Make `folder` (mode 0700) if needed, then insist it is ours alone. Raises UnsafeSocketDir."""
    if create:
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise UnsafeSocketDir(f"cannot create the socket folder {folder}: {exc.strerror}") from None
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        raise UnsafeSocketDir(f"the socket folder {folder} does not exist") from None
    fix = "set shared.socket_dir to a private folder"
    if not stat.S_ISDIR(st.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise UnsafeSocketDir(f"refusing the socket folder {folder}: it is {what}; remove it or {fix}")
    if st.st_uid != os.getuid():
        raise UnsafeSocketDir(f"refusing the socket folder {folder}: it is owned by uid {st.st_uid}, "
                              f"not by you (uid {os.getuid()}); {fix}")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise UnsafeSocketDir(f"refusing the socket folder {folder}: its mode is {mode:04o}, so others "
                              f"can reach the socket; run `chmod 700 {folder}` or {fix}")


@dataclass(frozen=True)
class SharedPaths:
    folder: Path

    @classmethod
    def resolve(cls, configured: str | None = None) -> SharedPaths:
        return cls(default_socket_dir(configured))

    @property
    def socket(self) -> Path:
        return self.folder / SOCKET_NAME

    @property
    def lock(self) -> Path:
        return self.folder / LOCK_NAME

    @property
    def log(self) -> Path:
        return self.folder / LOG_NAME

    def check(self, create: bool = True) -> None:
        check_private_dir(self.folder, create)
        if len(os.fsencode(self.socket)) > MAX_SOCKET_PATH:
            raise UnsafeSocketDir(f"the socket path {self.socket} is too long for a Unix socket "
                                  f"({len(os.fsencode(self.socket))} bytes, at most {MAX_SOCKET_PATH}); "
                                  "set shared.socket_dir to a shorter folder")


# -- the instance lock -------------------------------------------------------------------------


class InstanceLock:
    """An fcntl lock held for the daemon's whole life; the kernel drops it when the process dies,
    so a free lock means any socket file left in the folder is stale."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True


def lock_holder(path: Path) -> int | None:
    """The pid of the running daemon, or None when the lock is free (no daemon, or a crashed one)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            pid = _read_pid(fd)
            return pid if pid is not None else 0  # held, but its pid is still being written
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        return int(os.read(fd, 32).decode().strip())
    except ValueError:
        return None
