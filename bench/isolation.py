"""What every benchmark's daemon runs in: none of the user's config or EMBER_ settings, a private
runtime folder, the conversion cache the tests use (converted once), and the hub offline."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EMBER_TEST_CACHE") or ROOT / ".ember-cache" / "test")


def daemon_environment(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment for daemons started under `tmp` (a fresh temporary folder); `extra` adds
    or overrides variables, such as EMBER_DAEMON__LOG_LEVEL."""
    run = tmp / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env.update({"XDG_RUNTIME_DIR": str(run), "XDG_CONFIG_HOME": str(tmp / "config"),
                "EMBER_DAEMON__CACHE_DIR": str(CACHE), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp / "hf"),
                **extra})
    return env
