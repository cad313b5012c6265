"""Which device a model runs on, decided without importing torch where that is possible.

Importing torch costs a second and a few hundred MB; a CPU-only machine running the onnxruntime
engine never needs it. So `auto` first asks cheap questions (is this torch build a CUDA one, is an
NVIDIA driver loaded) and imports torch only when a GPU might really be there.
"""

from __future__ import annotations

import functools
import importlib.util
import platform
import re
import sys
from pathlib import Path

from ..errors import ModelLoadError


def _torch_build_has_cuda() -> bool:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return False
    try:
        text = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return True  # cannot tell: let torch answer
    found = re.search(r"^cuda\b[^=\n]*=\s*(.+)$", text, re.M)
    return found is None or found.group(1).strip() not in ("None", "''", '""')


def _nvidia_driver_loaded() -> bool:
    if sys.platform.startswith("linux"):
        return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()
    return sys.platform == "win32"


def _apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


@functools.cache
def detect() -> str:
    """What `auto` means on this machine: "cuda", "mps" or "cpu"."""
    if _torch_build_has_cuda() and _nvidia_driver_loaded():
        import torch

        if torch.cuda.is_available():
            return "cuda"
    if _apple_silicon():
        import torch

        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
    return "cpu"


def resolve(requested: str) -> str:
    """A concrete device for a model's `device` setting: "cpu", "cuda:0", "mps"."""
    if requested == "auto":
        found = detect()
        return "cuda:0" if found == "cuda" else found
    if requested.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ModelLoadError(f"device '{requested}' was requested but CUDA is not available")
        return "cuda:0" if requested == "cuda" else requested
    return requested
