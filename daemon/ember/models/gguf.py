"""Convert a GGUF checkpoint once into a safetensors folder that loads in about a second.

transformers dequantizes GGUF weights on every load (20-30 s for a 135M model), and in 5.x refuses
`save_pretrained` on such a model. So we save the state dict with safetensors ourselves, keyed by the
GGUF file's content hash, and later starts load that folder directly. The folder remembers its GGUF
(MARKER), so the onnxruntime conversion can take the GGUF's own quantized blocks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from .cache import atomic_folder, cached_digest, entry_lock

log = logging.getLogger(__name__)

MARKER = "ember-gguf.json"
Progress = Callable[[str, float | None], None]  # (phase, percent)


def cached_folder(gguf_path: Path, cache_root: Path) -> Path:
    return cache_root / "gguf" / f"{gguf_path.stem}-{cached_digest(gguf_path, cache_root)[:16]}"


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def source_of(folder: Path) -> dict | None:
    """What a converted folder was made from ({"source": path, "sha256": digest}), if it was."""
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def ensure_converted(gguf_path: Path, cache_root: Path, progress: Progress | None = None) -> Path:
    """Return a folder with config, tokenizer and safetensors weights for `gguf_path`.

    Converts on the first call only, atomically (models/cache.py).
    """
    gguf_path = Path(gguf_path).resolve()
    target = cached_folder(gguf_path, cache_root)
    if is_complete(target):
        log.info("GGUF cache hit: %s", target)
        return target
    with entry_lock(target):
        if is_complete(target):  # another daemon converted it while we waited
            return target
        _convert(gguf_path, target, cache_root, progress)
    return target


def _convert(gguf_path: Path, target: Path, cache_root: Path, progress: Progress | None) -> None:
    from safetensors.torch import save_file

    from .ml import ensure_imported

    ensure_imported()  # the worker may be importing transformers at this moment
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        progress("convert", 0.0)
    log.info("Converting %s to safetensors (one time)", gguf_path.name)
    with atomic_folder(target) as work:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        if progress:
            progress("convert", 20.0)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        if progress:
            progress("convert", 80.0)
        tokenizer.save_pretrained(work)
        model.generation_config.save_pretrained(work)
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["architectures"] = [type(model).__name__]  # exporters (onnxruntime-genai) need it
        (work / "config.json").write_text(json.dumps(config, indent=2))
        state = model.state_dict()
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)  # tied: safetensors refuses shared storage
        save_file({k: v.contiguous() for k, v in state.items()}, work / "model.safetensors",
                  metadata={"format": "pt"})
        (work / MARKER).write_text(json.dumps({"source": str(gguf_path),
                                               "sha256": cached_digest(gguf_path, cache_root)}))
    if progress:
        progress("convert", 100.0)
