"""Logging to stderr (and optionally a file). Never to stdout: stdout is the protocol."""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def quiet_libraries() -> None:
    """Before transformers is imported: no progress bars or advisory chatter on our streams."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")


def setup_logging(level: str, log_file: str | None) -> None:
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level.upper())
    stderr = logging.StreamHandler()
    stderr.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(stderr)
    if log_file:
        path = Path(log_file).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=5 << 20, backupCount=2)
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    for noisy in ("pygls", "httpx", "httpcore", "httpx2", "httpcore2", "urllib3", "filelock",
                  "huggingface_hub"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    import warnings

    warnings.filterwarnings("ignore")
