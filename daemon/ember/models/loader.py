"""Load one configured model (tokenizer and weights) onto its device, with its quantization."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ModelSettings
from ..errors import ModelLoadError
from .loaded import LoadedModel

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 2048


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"device '{requested}' was requested but CUDA is not available")
    return "cuda:0" if requested == "cuda" else requested


def _model_class(kind: str) -> Any:
    import transformers

    return {
        "causal-lm": transformers.AutoModelForCausalLM,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
        "text-classification": transformers.AutoModelForSequenceClassification,
        "zero-shot-classification": transformers.AutoModelForSequenceClassification,
        "token-classification": transformers.AutoModelForTokenClassification,
    }[kind]


def _check_weights(folder: Path, settings: ModelSettings) -> None:
    """Refuse pickle weights unless the user allowed them for this model: they can run code."""
    if any(folder.glob("*.safetensors")):
        return
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        if settings.allow_pickle:
            return
        raise ModelLoadError(
            f"{folder} has only pickle (.bin) weights, which can run arbitrary code when loaded; "
            "set allow_pickle = true for this model if you trust it"
        )
    raise ModelLoadError(f"no model weights (*.safetensors) in {folder}")


def context_length(config: Any, tokenizer: Any, override: int | None) -> int:
    if override:
        return override
    for attr in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    return DEFAULT_CONTEXT


def load_tokenizer(folder: Path, settings: ModelSettings) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=settings.trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types here
        raise ModelLoadError(f"could not load the tokenizer from {folder}: {exc}") from exc


def load(name: str, settings: ModelSettings, folder: Path,
         progress: Callable[..., None] | None = None) -> LoadedModel:
    """Load and quantize a model from its resolved folder. Raises ModelLoadError for the user."""
    from transformers import AutoConfig

    from . import quantization

    started = time.monotonic()
    if progress:
        progress("load", 0.0)
    device = resolve_device(settings.device)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=settings.trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"could not read the model config in {folder}: {exc}") from exc
    _check_weights(folder, settings)
    tokenizer = load_tokenizer(folder, settings)
    plan = quantization.plan(settings, device, config)
    if plan.note:
        log.warning("Model %s: %s", name, plan.note)
    if progress:
        progress("load", 30.0)
    try:
        model = _model_class(settings.kind).from_pretrained(
            folder,
            trust_remote_code=settings.trust_remote_code,
            use_safetensors=None if settings.allow_pickle else True,
            **plan.from_pretrained_kwargs,
        )
    except Exception as exc:  # noqa: BLE001
        log.exception("Loading %s failed", name)
        raise ModelLoadError(f"could not load model '{name}' from {folder}: {exc}") from exc
    if progress:
        progress("quantize", 80.0)
    model = quantization.finish(model, plan)
    if "device_map" not in plan.from_pretrained_kwargs and plan.applied not in ("bnb-8bit", "bnb-4bit"):
        model.to(device)
    model.eval()
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    loaded = LoadedModel(
        name=name,
        settings=settings,
        kind=settings.kind,
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        quantization=plan.applied,
        quantization_note=plan.note,
        context_length=context_length(config, tokenizer, settings.context_length),
        memory_bytes=quantization.weight_bytes(model),
        load_seconds=time.monotonic() - started,
        source_path=str(folder),
    )
    log.info("Loaded %s (%s, %s, %s) in %.2fs", name, device, dtype, plan.applied, loaded.load_seconds)
    return loaded
