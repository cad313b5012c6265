"""LoRA adapters (peft) of a loaded causal LM: find and check their files, load them on first use
into an engine that runs them, and hand out that engine's sequences for a request's adapter.

The transformers engine runs adapters itself (peft's LoRA layers). An onnxruntime model runs them
on a second graph of the same model with LoRA inputs (models/onnx_lora.py), so requests without an
adapter keep the graph without them; an adapter that graph cannot take (LoRA on the embeddings,
DoRA, ...) runs on a transformers copy of the same weights, and `engine_note` says why. Switching
adapters never reloads anything: each sequence runs with its own adapter, and the prefix cache
reuses KV state only within one adapter. Adapter files are read as safetensors, never unpickled
(unless the model's `allow_pickle`), and nothing in an adapter folder is executed.
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


class Runner:
    """An engine that runs adapters, with its prefix cache. `owned`: loaded for the adapters (a
    second graph or a copy), so its memory is theirs and it closes with them."""

    def __init__(self, engine: Any, prefix_cache: Any, owned: bool, extra_bytes: int = 0):
        self.engine, self.prefix_cache, self.owned, self.extra_bytes = engine, prefix_cache, owned, extra_bytes

    @property
    def name(self) -> str:
        return str(self.engine.name)

    def add(self, name: str, files: AdapterFiles, weights: dict[str, Any]) -> None:
        """Raises onnx_lora.Unsupported (another engine may take it) or ValueError (it does not fit)."""
        if self.name == "onnxruntime":
            from . import onnx_lora

            inputs = onnx_lora.adapter_inputs(self.engine.groups, files.config, weights)
            onnx_lora.write_adapter(inputs, self.engine.adapter_file(name))
            self.engine.load_adapter(name, sum(v.nbytes for v in inputs.values()))
        else:
            self.engine.add_adapter(name, files.config, weights)

    def drop(self, name: str) -> None:
        self.prefix_cache.drop_adapter(name)
        self.engine.drop_adapter(name)

    @property
    def resident_bytes(self) -> int:
        adapters = sum(self.engine.adapter_bytes.values())
        return adapters + (self.extra_bytes + self.prefix_cache.nbytes if self.owned else 0)

    def close(self) -> None:
        if self.owned:
            self.prefix_cache.clear()
            self.engine.close()


class AdapterSequences:
    """The prefix cache of the engine that runs an adapter, for that adapter (a SequenceSource)."""

    def __init__(self, adapters: Adapters, name: str, runner: Runner):
        self._adapters = adapters
        self._runner = runner
        self.name = name

    @contextmanager
    def sequence_for(self, prompt: list[int], capacity: int, owner: str = "",
                     priority: str = "normal") -> Iterator[Any]:
        with self._adapters.using(self.name), \
                self._runner.prefix_cache.sequence_for(prompt, capacity, owner, priority, self.name) as got:
            yield got


RunnerFactory = Callable[[], Runner]


class Adapters:
    """The adapters of one loaded causal LM. Used on the model's worker, status from any thread."""

    def __init__(self, model_name: str, specs: Callable[[], dict[str, AdapterSettings]], allow_pickle: bool,
                 runners: list[tuple[str, RunnerFactory]]):
        """`specs`: the adapters configured or added (the registry's). `runners`: (kind, factory) of
        the engines that can run adapters, tried in order: an adapter runs on the first that takes
        it. A factory is called once, at the first adapter that needs it."""
        self.model_name = model_name
        self._specs = specs
        self._allow_pickle = allow_pickle
        self._factories = runners
        self._runners: dict[str, Runner] = {}
        self._broken: dict[str, str] = {}  # runners that failed to load, and why
        self._loaded: dict[str, tuple[AdapterFiles, Runner, str | None]] = {}  # name -> files, runner, note
        self._users: dict[str, int] = {}
        self._dropping: set[str] = set()
        self._lock = threading.Lock()

    def check_name(self, name: str) -> None:
        if name and name not in self._specs():
            raise unknown_adapter(self.model_name, name, self._specs())

    def sequences(self, name: str) -> AdapterSequences:
        """Where a request with adapter `name` runs, the adapter loaded first if needed. Worker only."""
        self.load(name)
        return AdapterSequences(self, name, self._loaded[name][1])

    def use(self, name: str) -> dict[str, Any]:
        """What a result says of the adapter it ran with."""
        _, runner, note = self._loaded[name]
        return {"name": name, "engine": runner.name, "engine_note": note}

    def load(self, name: str) -> None:
        """Load adapter `name` on the first engine that takes it. Raises ModelLoadError or
        InvalidParams, leaving everything loaded before as it was. Worker only."""
        self.check_name(name)
        with self._lock:
            if name in self._loaded:
                self._dropping.discard(name)  # unloaded while a request used it, then asked for again
                return
        files = resolve(name, self._specs()[name], self._allow_pickle)
        try:
            weights = _read_weights(files)
        except Exception as exc:  # noqa: BLE001 - a damaged file
            raise ModelLoadError(f"adapter '{name}': could not read its weights: {exc}") from exc
        from .onnx_lora import Unsupported

        skipped: list[str] = []
        for kind, _ in self._factories:
            runner = self._runner(kind)
            if runner is None:
                skipped.append(f"{kind}: {self._broken[kind]}")
                continue
            try:
                runner.add(name, files, weights)
            except Unsupported as exc:
                skipped.append(f"{kind} takes no {exc}")
                continue
            except ValueError as exc:
                raise ModelLoadError(f"adapter '{name}' does not fit model '{self.model_name}': {exc}",
                                     {"adapter": name}) from exc
            note = f"runs on {kind}: {'; '.join(skipped)}" if skipped else None
            with self._lock:
                self._loaded[name] = (files, runner, note)
            log.info("Loaded adapter %s of %s on %s (rank %s, %s)%s", name, self.model_name, kind, files.rank,
                     ", ".join(files.target_modules), f"; {note}" if note else "")
            return
        raise ModelLoadError(f"adapter '{name}': no engine of model '{self.model_name}' can run it "
                             f"({'; '.join(skipped)})", {"adapter": name})

    def _runner(self, kind: str) -> Runner | None:
        if kind not in self._runners and kind not in self._broken:
            factory = dict(self._factories)[kind]
            try:
                self._runners[kind] = factory()
            except ModelLoadError as exc:
                self._broken[kind] = exc.message
            except Exception as exc:  # noqa: BLE001 - the next engine may still run adapters
                log.exception("Could not prepare %s for the adapters of %s", kind, self.model_name)
                self._broken[kind] = f"{type(exc).__name__}: {exc}"
        return self._runners.get(kind)

    def unload(self, name: str) -> bool:
        """Drop adapter `name` now, or when the last request using it ends. Worker only."""
        with self._lock:
            if name not in self._loaded or name in self._dropping:
                return False
            if self._users.get(name):
                self._dropping.add(name)
                return True
        self._drop(name)
        return True

    def _drop(self, name: str) -> None:
        with self._lock:
            _, runner, _ = self._loaded.pop(name)
            self._dropping.discard(name)
        runner.drop(name)
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
        """What adapters add to the model's memory: their weights, and the second graph or copy
        that runs them with its KV state."""
        return sum(r.resident_bytes for r in list(self._runners.values()))

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            loaded = {n: v for n, v in self._loaded.items() if n not in self._dropping}
        out = []
        for name, spec in self._specs().items():
            if name in loaded:
                files, runner, note = loaded[name]
                out.append(describe_one(name, spec, files, runner.engine.adapter_bytes.get(name, 0),
                                        runner.name, note))
            else:
                out.append(describe_one(name, spec, None, None, None, None))
        return out

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
        self._loaded.clear()


def describe_one(name: str, spec: AdapterSettings, files: AdapterFiles | None, nbytes: int | None,
                 engine: str | None, note: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "source": spec.source, "loaded": files is not None}
    if files is not None:
        entry.update({"engine": engine, "engine_note": note, "rank": files.rank,
                      "alpha": files.alpha, "target_modules": files.target_modules,
                      "memory_bytes": nbytes or 0})
    return entry


def unknown_adapter(model: str, name: str, known: dict[str, Any]) -> InvalidParams:
    return InvalidParams(f"adapter: model '{model}' has no adapter named '{name}' "
                         f"(its adapters: {', '.join(sorted(known)) or 'none'})", {"adapter": name})
