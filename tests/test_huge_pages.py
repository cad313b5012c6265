"""The daemon backs its allocations with transparent huge pages where the system offers them
(huge_pages.py): decoding reads every weight once per token, and 2 MB pages make that faster."""

from __future__ import annotations

from pathlib import Path

import pytest

from ember.huge_pages import TUNABLE, glibc_version, wanted


def thp(tmp_path: Path, mode: str) -> Path:
    path = tmp_path / "enabled"
    path.write_text(mode + "\n")
    return path


@pytest.mark.parametrize("mode, expected", [
    ("always [madvise] never", True), ("[always] madvise never", True), ("always madvise [never]", False)])
def test_huge_pages_follow_the_kernels_mode(tmp_path, mode, expected):
    glibc_ok = (glibc_version() or (0,)) >= (2, 35)
    assert wanted({}, thp(tmp_path, mode)) == (expected and glibc_ok)


def test_a_users_glibc_tunables_or_a_kernel_without_thp_are_left_alone(tmp_path):
    assert not wanted({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, thp(tmp_path, "[always] madvise never"))
    assert not wanted({}, tmp_path / "missing")


def test_a_failed_restart_runs_on_without_huge_pages(monkeypatch, capsys):
    import os

    from ember import huge_pages

    def refuse(*args):
        raise PermissionError("not allowed here")

    monkeypatch.setattr(huge_pages, "wanted", lambda: True)
    monkeypatch.setattr(os, "execve", refuse)
    huge_pages.restart_with_huge_pages()  # returns instead of raising
    assert "running without huge pages" in capsys.readouterr().err


@pytest.mark.model
def test_the_daemon_restarts_itself_with_huge_pages_and_answers(ember, daemon_env):
    expected = wanted(daemon_env)
    d = ember("lines")
    assert d.call("complete", {"prompt": "def add(a, b):", "max_tokens": 4})["usage"]["completion_tokens"] > 0
    environ = Path(f"/proc/{d.proc.pid}/environ").read_bytes().split(b"\0")
    assert (f"GLIBC_TUNABLES={TUNABLE}".encode() in environ) == expected
    if expected:  # the model's weights landed in huge pages
        rollup = Path(f"/proc/{d.proc.pid}/smaps_rollup").read_text().splitlines()
        huge_kb = next(int(line.split()[1]) for line in rollup if line.startswith("AnonHugePages:"))
        assert huge_kb > 0

    opted_out = ember("lines", env={"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})
    assert opted_out.call("initialize", {})
    environ = Path(f"/proc/{opted_out.proc.pid}/environ").read_bytes().split(b"\0")
    assert b"GLIBC_TUNABLES=glibc.malloc.hugetlb=0" in environ


def test_ember_config_says_whether_the_daemon_will_use_huge_pages(daemon_env):
    import subprocess

    from rpc_client import EMBER

    def shown(env: dict[str, str]) -> str:
        out = subprocess.run([EMBER, "config"], env=env, capture_output=True, text=True, check=True).stdout
        return next(line for line in out.splitlines() if line.startswith("# huge pages:"))

    assert shown(daemon_env).startswith("# huge pages: on" if wanted(daemon_env) else "# huge pages: off")
    assert shown({**daemon_env, "GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) == \
        "# huge pages: as GLIBC_TUNABLES=glibc.malloc.hugetlb=0 says"
