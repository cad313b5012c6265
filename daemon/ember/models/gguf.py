"""Convert a GGUF checkpoint once into a safetensors folder that loads in about a second.

transformers dequantizes GGUF weights on every load (20-30 s for a 135M model), and in 5.x refuses
`save_pretrained` on such a model. So we save the state dict with safetensors ourselves, keyed by the
GGUF file's content hash, and later starts load that folder directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "ember-gguf.json"
Progress = Callable[[str, float | None], None]  # (phase, percent)


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of the file's bytes: the cache key, so a changed file is converted again."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cached_digest(path: Path, cache_root: Path) -> str:
    """file_digest, remembered by (path, size, mtime): hashing 100 MB on every start costs ~0.3 s."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index = cache_root / "gguf" / "digests.json"
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


def cached_folder(gguf_path: Path, cache_root: Path) -> Path:
    return cache_root / "gguf" / f"{gguf_path.stem}-{cached_digest(gguf_path, cache_root)[:16]}"


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def ensure_converted(gguf_path: Path, cache_root: Path, progress: Progress | None = None) -> Path:
    """Return a folder with config, tokenizer and safetensors weights for `gguf_path`.

    Converts on the first call only; the folder is written beside its final place and renamed
    into it, so an interrupted conversion never leaves a half-written cache entry.
    """
    gguf_path = Path(gguf_path).resolve()
    target = cached_folder(gguf_path, cache_root)
    if is_complete(target):
        log.info("GGUF cache hit: %s", target)
        return target

    from safetensors.torch import save_file

    from .ml import ensure_imported

    ensure_imported()  # the worker may be importing transformers at this moment
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        progress("convert", 0.0)
    log.info("Converting %s to safetensors (one time)", gguf_path.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
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
        (work / "config.json").write_text(json.dumps(config, indent=2))
        state = model.state_dict()
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)  # tied: safetensors refuses shared storage
        save_file({k: v.contiguous() for k, v in state.items()}, work / "model.safetensors",
                  metadata={"format": "pt"})
        (work / MARKER).write_text(json.dumps({"source": str(gguf_path),
                                               "sha256": cached_digest(gguf_path, cache_root)}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    if progress:
        progress("convert", 100.0)
    return target
