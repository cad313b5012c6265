"""LoRA adapters (peft) of a loaded causal LM: find and check their files, load them on first use
into the engine that runs them, and hand out that engine's sequences for a request's adapter.

The transformers engine runs adapters itself. onnxruntime runs the GGUF's own blocks, a graph with
no LoRA inputs, so requests with an adapter run on a transformers copy of the same weights, loaded
once with the first adapter; `engine_note` says so. Switching adapters never reloads anything: each
forward pass runs with its sequence's adapter, and the prefix cache reuses KV state only within one
adapter. Adapter files are read as safetensors, never unpickled (unless the model's `allow_pickle`),
and nothing in an adapter folder is executed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import AdapterSettings
from ..errors import InvalidParams, ModelLoadError

log = logging.getLogger(__name__)

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLED_FILE = "adapter_model.bin"
COPY_NOTE = ("adapters run on a transformers copy of the same weights (float32): this model's "
             "onnxruntime graph has no LoRA inputs")


@dataclass(frozen=True)
class AdapterFiles:
    folder: Path
    config: dict[str, Any]

    @property
    def rank(self) -> int | None:
        return self.config.get("r")

    @property
    def alpha(self) -> float | None:
        return self.config.get("lora_alpha")

    @property
    def target_modules(self) -> list[str]:
        targets = self.config.get("target_modules") or []
        return sorted(targets) if isinstance(targets, list | set | tuple) else [str(targets)]


def resolve(name: str, spec: AdapterSettings, allow_pickle: bool) -> AdapterFiles:
    """The adapter's local folder (downloaded from the hub once), checked. Raises ModelLoadError."""
    path = Path(spec.source).expanduser()
    if path.is_dir():
        folder = path
    elif spec.source.startswith(("/", "./", "../", "~")) or path.exists():
        raise ModelLoadError(f"adapter '{name}': folder not found: {path}")
    else:
        folder = _from_hub(name, spec, allow_pickle)
    return AdapterFiles(folder, _read_config(name, folder, allow_pickle))


def _from_hub(name: str, spec: AdapterSettings, allow_pickle: bool) -> Path:
    from huggingface_hub import snapshot_download

    patterns = [CONFIG_FILE, WEIGHTS_FILE] + ([PICKLED_FILE] if allow_pickle else [])
    try:
        return Path(snapshot_download(spec.source, revision=spec.revision, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - offline, gated, missing: one message
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ModelLoadError(f"adapter '{name}': could not get '{spec.source}' from the hub "
                             f"({type(exc).__name__}: {first}); point its source at a local folder",
                             {"adapter": name}) from exc


def _read_config(name: str, folder: Path, allow_pickle: bool) -> dict[str, Any]:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"adapter '{name}': {folder} has no {CONFIG_FILE}: not a peft adapter") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"adapter '{name}': could not read {folder / CONFIG_FILE}: {exc}") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"adapter '{name}': {CONFIG_FILE} is not a JSON object")
    kind = str(config.get("peft_type", "")).upper()
    if kind != "LORA":
        raise ModelLoadError(f"adapter '{name}': peft_type is {kind or 'missing'}; Ember loads LoRA adapters")
    if not (folder / WEIGHTS_FILE).is_file():
        if (folder / PICKLED_FILE).is_file() and not allow_pickle:
            raise ModelLoadError(
                f"adapter '{name}': {folder} has only pickle ({PICKLED_FILE}) weights, which can run "
                "arbitrary code when loaded; set allow_pickle = true for this model if you trust it")
        if not (folder / PICKLED_FILE).is_file():
            raise ModelLoadError(f"adapter '{name}': no {WEIGHTS_FILE} in {folder}")
    return config


def _read_weights(files: AdapterFiles) -> dict[str, Any]:
    """The adapter's tensors; pickled ones only where allowed (resolve checked that)."""
    safetensors = files.folder / WEIGHTS_FILE
    if safetensors.is_file():
        from safetensors.torch import load_file

        return load_file(str(safetensors))
    import torch

    return torch.load(files.folder / PICKLED_FILE, map_location="cpu", weights_only=True)


class AdapterSequences:
    """The prefix cache of the engine that runs adapters, for one adapter (a SequenceSource)."""

    def __init__(self, adapters: Adapters, name: str):
        self._adapters = adapters
        self.name = name

    @contextmanager
    def sequence_for(self, prompt: list[int], capacity: int, owner: str = "",
                     priority: str = "normal") -> Iterator[Any]:
        with self._adapters.using(self.name), \
                self._adapters.prefix_cache.sequence_for(prompt, capacity, owner, priority, self.name) as got:
            yield got


class Adapters:
    """The adapters of one loaded causal LM. Used on the model's worker, status from any thread."""

    def __init__(self, model_name: str, specs: Callable[[], dict[str, AdapterSettings]], allow_pickle: bool,
                 own: tuple[Any, Any] | None, load_copy: Callable[[], tuple[Any, Any, int]] | None):
        """`specs`: the adapters configured or added (the registry's). `own`: the model's
        (engine, prefix cache) when it runs adapters itself; else `load_copy` loads a transformers
        copy and returns its (engine, prefix cache, weight bytes)."""
        self.model_name = model_name
        self._specs = specs
        self._allow_pickle = allow_pickle
        self._load_copy = load_copy
        self.engine: Any = own[0] if own is not None else None
        self.prefix_cache: Any = own[1] if own is not None else None
        self.note = None if own is not None else COPY_NOTE
        self.copy_bytes = 0
        self._files: dict[str, AdapterFiles] = {}  # loaded: name -> its files
        self._users: dict[str, int] = {}
        self._dropping: set[str] = set()
        self._lock = threading.Lock()

    def known(self) -> dict[str, AdapterSettings]:
        return self._specs()

    def check_name(self, name: str) -> None:
        if name and name not in self._specs():
            raise unknown_adapter(self.model_name, name, self._specs())

    def sequences(self, name: str) -> AdapterSequences:
        """Where a request with adapter `name` runs, the adapter loaded first if needed. Worker only."""
        self.load(name)
        return AdapterSequences(self, name)

    def load(self, name: str) -> None:
        """Load adapter `name` (and the transformers copy with the first). Raises ModelLoadError or
        InvalidParams, leaving everything loaded before as it was. Worker only."""
        self.check_name(name)
        if name in self._files and name not in self._dropping:
            return
        if name in self._dropping:  # unloaded while a request used it, then asked for again
            with self._lock:
                self._dropping.discard(name)
            return
        files = resolve(name, self._specs()[name], self._allow_pickle)
        try:
            weights = _read_weights(files)
        except Exception as exc:  # noqa: BLE001 - a damaged file
            raise ModelLoadError(f"adapter '{name}': could not read its weights: {exc}") from exc
        if self.engine is None:
            assert self._load_copy is not None
            log.info("Loading a transformers copy of %s for its adapters", self.model_name)
            self.engine, self.prefix_cache, self.copy_bytes = self._load_copy()
        try:
            self.engine.add_adapter(name, files.config, weights)
        except ValueError as exc:
            raise ModelLoadError(f"adapter '{name}' does not fit model '{self.model_name}': {exc}",
                                 {"adapter": name}) from exc
        with self._lock:
            self._files[name] = files
        log.info("Loaded adapter %s of %s (rank %s, %s)", name, self.model_name, files.rank,
                 ", ".join(files.target_modules))

    def unload(self, name: str) -> bool:
        """Drop adapter `name` now, or when the last request using it ends. Worker only."""
        with self._lock:
            if name not in self._files or name in self._dropping:
                return False
            if self._users.get(name):
                self._dropping.add(name)
                return True
        self._drop(name)
        return True

    def _drop(self, name: str) -> None:
        with self._lock:
            self._files.pop(name, None)
            self._dropping.discard(name)
        if self.prefix_cache is not None:
            self.prefix_cache.drop_adapter(name)
        if self.engine is not None:
            self.engine.drop_adapter(name)
        log.info("Unloaded adapter %s of %s", name, self.model_name)

    @contextmanager
    def using(self, name: str) -> Iterator[None]:
        with self._lock:
            self._users[name] = self._users.get(name, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._users[name] -= 1
                drop = not self._users[name] and name in self._dropping
            if drop:
                self._drop(name)

    @property
    def resident_bytes(self) -> int:
        """What adapters add to the model's memory: the copy, its KV state, the adapters' weights."""
        own_cache = self.note is None  # the model's own prefix cache is counted with the model
        cache = self.prefix_cache.nbytes if self.prefix_cache is not None and not own_cache else 0
        adapters = sum(self.engine.adapter_bytes.values()) if self.engine is not None else 0
        return self.copy_bytes + cache + adapters

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            loaded = {n: f for n, f in self._files.items() if n not in self._dropping}
        sizes = dict(self.engine.adapter_bytes) if self.engine is not None else {}
        return [describe_one(name, spec, loaded.get(name), sizes.get(name), self.note)
                for name, spec in self._specs().items()]

    def close(self) -> None:
        if self.note is not None:  # the copy is ours to close; the model's own engine is not
            if self.prefix_cache is not None:
                self.prefix_cache.clear()
            if self.engine is not None:
                self.engine.close()
        self.engine = self.prefix_cache = None
        self._files.clear()


def describe_one(name: str, spec: AdapterSettings, files: AdapterFiles | None, nbytes: int | None,
                 note: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "source": spec.source, "loaded": files is not None}
    if files is not None:
        entry.update({"engine": "transformers", "engine_note": note, "rank": files.rank,
                      "alpha": files.alpha, "target_modules": files.target_modules,
                      "memory_bytes": nbytes or 0})
    return entry


def unknown_adapter(model: str, name: str, known: dict[str, Any]) -> InvalidParams:
    return InvalidParams(f"adapter: model '{model}' has no adapter named '{name}' "
                         f"(its adapters: {', '.join(sorted(known)) or 'none'})", {"adapter": name})
