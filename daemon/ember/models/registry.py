"""The model registry: load on first use, keep resident, evict by memory budget and idle time.

Model loads happen on the worker that will run the model, so requests for a model that is loading
simply queue behind that one load. Tokenizers load separately (and quickly) so that `tokenize` never
waits for weights.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from ..config import AdapterSettings, ModelSettings, Settings
from ..errors import EmberError, InvalidParams, ModelLoadError
from . import adapters, loader, sources
from .cache import remove_stale_work
from .loaded import LoadedModel

log = logging.getLogger(__name__)

ProgressSink = Callable[[dict[str, Any]], None]


class Registry:
    def __init__(self, settings: Settings, progress: ProgressSink | None = None):
        self.settings = settings
        self.cache_dir = Path(settings.daemon.cache_dir).expanduser()
        self._progress = progress
        self._loaded: dict[str, LoadedModel] = {}
        self._tokenizers: dict[str, Any] = {}
        self._raw_tokenizers: dict[str, Any] = {}  # `tokenizers.Tokenizer` from tokenizer.json
        self._folders: dict[str, Path | None] = {}  # None: a remote model's tokenizer is not here
        self._folder_notes: dict[str, str | None] = {}
        self._locks: dict[str, threading.Lock] = {name: threading.Lock() for name in settings.models}
        self._added_adapters: dict[str, dict[str, AdapterSettings]] = {}  # models/load at run time
        self._guard = threading.Lock()
        self.loads = 0  # how many model loads this daemon has done
        self._endpoints = self._make_endpoints(settings)
        remove_stale_work(self.cache_dir)  # conversions that a killed daemon left half-written

    @staticmethod
    def _make_endpoints(settings: Settings) -> dict[str, Any]:
        """One Endpoint per server (models on the same base URL share its counters and limit)."""
        remote = {name: m for name, m in settings.models.items() if m.remote}
        if not remote:
            return {}
        from ..engines.endpoint import Endpoint, split_base_url, use_session_for_servers

        by_root: dict[tuple[str, str], Any] = {}
        out = {}
        for name, m in remote.items():
            root = split_base_url(m.base_url or "")
            if root not in by_root:
                by_root[root] = Endpoint(m.base_url or "", m.max_concurrent)
            endpoint = by_root[root]
            endpoint.max_concurrent = max(endpoint.max_concurrent, m.max_concurrent)
            out[name] = endpoint
        use_session_for_servers()  # now, before any hub download could be using the old session
        return out

    def endpoint(self, name: str) -> Any:
        """The server a remote model runs on (engines.endpoint.Endpoint), or None for a local one."""
        return self._endpoints.get(name)

    # -- queries -------------------------------------------------------------------------------

    def check_name(self, name: str) -> None:
        if name not in self.settings.models:
            known = ", ".join(sorted(self.settings.models))
            raise InvalidParams(f"model: no model named '{name}' is configured (known: {known})")

    def loaded(self) -> list[LoadedModel]:
        with self._guard:
            return list(self._loaded.values())

    def get_loaded(self, name: str) -> LoadedModel | None:
        with self._guard:
            return self._loaded.get(name)

    def describe_all(self) -> list[dict[str, Any]]:
        out = []
        for name, settings in self.settings.models.items():
            lm = self.get_loaded(name)
            entry: dict[str, Any] = {
                "name": name,
                "source": sources.describe_source(settings),
                "label": sources.label(settings),
                "kind": settings.kind,
                "quantization_requested": settings.quantization,
                "loaded": lm is not None,
                "tasks": [t for t, m in self.settings.tasks.models().items() if m == name],
            }
            if takes_adapters(settings):
                entry["adapters"] = [adapters.describe_one(n, spec, None, None, None, None)
                                     for n, spec in self.adapter_specs(name).items()]
            if settings.remote:
                del entry["quantization_requested"]
                entry["engine"] = "remote"
                entry["remote"] = {"served_model": settings.served_model, **self._endpoints[name].describe()}
            if lm is not None:
                entry.update(lm.describe())
            out.append(entry)
        return out

    def adapter_specs(self, name: str) -> dict[str, AdapterSettings]:
        """Model `name`'s LoRA adapters: configured, then added at run time (models/load)."""
        with self._guard:
            return {**self.settings.models[name].adapters, **self._added_adapters.get(name, {})}

    def check_adapter(self, model: str, adapter: str) -> None:
        known = self.adapter_specs(model) if takes_adapters(self.settings.models[model]) else {}
        if adapter and adapter not in known:
            raise adapters.unknown_adapter(model, adapter, known)

    # -- loading -------------------------------------------------------------------------------

    def folder(self, name: str) -> Path | None:
        """The model's local files, downloading or converting them once. For a remote model: its
        tokenizer's folder, or None where it is not available here."""
        self.check_name(name)
        settings = self.settings.models[name]
        with self._locks[name]:
            if name not in self._folders:
                if settings.remote:
                    self._folders[name], self._folder_notes[name] = sources.remote_tokenizer(
                        settings, settings.served_model, self.cache_dir)
                else:
                    self._folders[name] = sources.resolve(settings, self.cache_dir, self._reporter(name))
            return self._folders[name]

    def tokenizer(self, name: str) -> Any:
        """The model's tokenizer, without loading its weights. Safe from any thread. None for a
        remote model whose tokenizer is not here (the caller may ask its server)."""
        lm = self.get_loaded(name)
        if lm is not None:
            return lm.tokenizer
        with self._guard:
            if name in self._tokenizers:
                return self._tokenizers[name]
        folder = self.folder(name)
        if folder is None:
            return None
        with self._locks[name]:  # one tokenizer load per model, however many ask at once
            with self._guard:
                if name in self._tokenizers:
                    return self._tokenizers[name]
            tok = loader.load_tokenizer(folder, self.settings.models[name])
            with self._guard:
                self._tokenizers[name] = tok
            return tok

    def text_tokenizer(self, name: str) -> Any:
        """A tokenizer for plain text, as cheap as possible: the loaded transformers tokenizer if
        there is one, else the model's tokenizer.json straight through the `tokenizers` library
        (milliseconds, no torch import), so the first `tokenize` after start is instant."""
        with self._guard:
            known = self._tokenizers.get(name)
        lm = self.get_loaded(name)
        if lm is not None or known is not None:
            return lm.tokenizer if lm is not None else known
        folder = self.folder(name)
        if folder is None:
            return None
        tokenizer_json = folder / "tokenizer.json"
        if not tokenizer_json.is_file():
            return self.tokenizer(name)
        with self._guard:
            raw = self._raw_tokenizers.get(name)
        if raw is None:
            from tokenizers import Tokenizer

            raw = Tokenizer.from_file(str(tokenizer_json))
            with self._guard:
                raw = self._raw_tokenizers.setdefault(name, raw)
        return raw

    def acquire(self, name: str) -> tuple[LoadedModel, float]:
        """The loaded model (loading it now if needed) and the seconds spent loading. Worker only."""
        self.check_name(name)
        lm = self.get_loaded(name)
        if lm is not None:
            lm.touch()
            return lm, 0.0
        started = time.monotonic()
        folder = self.folder(name)  # resolved once, under the per-model lock: one download
        with self._locks[name]:
            lm = self.get_loaded(name)
            if lm is None:
                report = self._reporter(name)
                ctx = loader.LoadContext(self.cache_dir, self.settings.daemon.threads, report)
                settings = self.settings.models[name]
                try:
                    if settings.remote:
                        lm = loader.load_remote(name, settings, (folder, self._folder_notes.get(name)),
                                                self._endpoints[name], ctx)
                    else:
                        assert folder is not None
                        lm = loader.load(name, settings, folder, ctx)
                except EmberError as exc:  # ModelLoadError, a remote server's refusal
                    report("error", None, message=exc.message)
                    raise
                except Exception as exc:  # noqa: BLE001
                    log.exception("Unexpected failure loading %s", name)
                    report("error", None, message=str(exc))
                    raise ModelLoadError(f"could not load model '{name}': {exc}") from exc
                if takes_adapters(settings):
                    lm.adapters = self._adapters_of(lm, folder, ctx)
                with self._guard:
                    self._loaded[name] = lm
                    self._tokenizers.pop(name, None)
                    self.loads += 1
                report("ready", 100.0)
                self._enforce_budget(keep=name)
        lm.touch()
        return lm, time.monotonic() - started

    def _adapters_of(self, lm: LoadedModel, folder: Path | None, ctx: loader.LoadContext) -> adapters.Adapters:
        name, settings = lm.name, lm.settings
        specs = partial(self.adapter_specs, name)
        if lm.engine is not None and lm.engine.name == "transformers":
            own = adapters.Runner(lm.engine, lm.prefix_cache, owned=False)
            return adapters.Adapters(name, specs, settings.allow_pickle, [("transformers", lambda: own)])
        assert folder is not None

        def onnx_lora() -> adapters.Runner:
            engine, cache = loader.load_onnx_lora(lm)
            return adapters.Runner(engine, cache, owned=True, extra_bytes=engine.weight_bytes())

        def transformers_copy() -> adapters.Runner:
            engine, cache, nbytes = loader.load_transformers_copy(name, settings, folder, ctx)
            return adapters.Runner(engine, cache, owned=True, extra_bytes=nbytes)

        return adapters.Adapters(name, specs, settings.allow_pickle,
                                 [("onnxruntime", onnx_lora), ("transformers", transformers_copy)])

    def load_adapter(self, model: str, adapter: str, spec: AdapterSettings | None) -> LoadedModel:
        """Load (and with `spec`, first add) a LoRA adapter of a model, loading the model if needed.
        Nothing changes when it fails. Worker only."""
        settings = self.settings.models[model]
        if not takes_adapters(settings):
            raise InvalidParams(f"adapter: model '{model}' is {'remote' if settings.remote else settings.kind}; "
                                "adapters apply to causal LMs that run here")
        if spec is not None:
            if adapter in settings.adapters and settings.adapters[adapter] != spec:
                raise InvalidParams(f"adapter: '{adapter}' is configured for model '{model}' with another "
                                    "source; pick another name")
            adapters.resolve(adapter, spec, settings.allow_pickle)  # check the files before adding it
            with self._guard:
                previous = self._added_adapters.setdefault(model, {}).get(adapter)
                self._added_adapters[model][adapter] = spec
        lm, _ = self.acquire(model)
        try:
            if spec is not None and previous is not None and previous != spec:
                lm.adapters.unload(adapter)  # the same name from another source: load it anew
            lm.adapters.load(adapter)
        except Exception:
            if spec is not None:
                with self._guard:
                    if previous is None:
                        self._added_adapters[model].pop(adapter, None)
                    else:
                        self._added_adapters[model][adapter] = previous
            raise
        return lm

    def unload_adapter(self, model: str, adapter: str) -> bool:
        """Drop a LoRA adapter: unloaded, and forgotten if it was added at run time. Worker only."""
        self.check_adapter(model, adapter)
        with self._guard:
            added = self._added_adapters.get(model, {}).pop(adapter, None) is not None
        lm = self.get_loaded(model)
        dropped = lm is not None and lm.adapters is not None and lm.adapters.unload(adapter)
        return dropped or added

    def unload(self, name: str) -> bool:
        self.check_name(name)
        with self._guard:
            lm = self._loaded.pop(name, None)
        if lm is None:
            return False
        if lm.unload():
            del lm
            _free_memory()
            log.info("Unloaded %s", name)
        else:  # a task paused between its steps still runs on it: closed when it ends
            log.info("Unloaded %s (its engine closes when %d running task(s) end)", name, lm.users)
        return True

    def unload_idle(self) -> list[str]:
        """Unload models unused for longer than keep_alive_s. Returns their names."""
        keep_alive = self.settings.daemon.keep_alive_s
        if keep_alive < 0:
            return []
        now = time.monotonic()
        idle = [lm.name for lm in self.loaded()
                if now - lm.last_used >= keep_alive and not lm.users]
        for name in idle:
            log.info("Unloading %s after %.0fs idle (keep_alive_s)", name, keep_alive)
            self.unload(name)
        return idle

    def _enforce_budget(self, keep: str) -> None:
        budget = self.settings.daemon.memory_budget_mb * 1024 * 1024
        if budget <= 0:
            return
        while True:
            models = self.loaded()
            total = sum(m.resident_bytes for m in models)
            # a remote model holds no memory here: unloading it would free nothing
            victims = sorted((m for m in models if m.name != keep and not m.remote and not m.users),
                             key=lambda m: m.last_used)
            if total <= budget or not victims:
                return
            log.info("Memory budget %d MB exceeded (%d MB): evicting %s",
                     budget >> 20, total >> 20, victims[0].name)
            self.unload(victims[0].name)

    def _reporter(self, name: str) -> Callable[..., None]:
        label = sources.label(self.settings.models[name])

        def report(phase: str, percent: float | None, nbytes: int | None = None,
                   total: int | None = None, message: str | None = None) -> None:
            if self._progress is None:
                return
            self._progress({
                "model": name,
                "label": label,
                "phase": phase,
                "percent": None if percent is None else round(percent, 1),
                "bytes": nbytes,
                "total_bytes": total,
                "message": message or _PHASE_TEXT.get(phase, phase),
            })

        return report


def takes_adapters(settings: ModelSettings) -> bool:
    """LoRA adapters apply to causal LMs that run here (a remote model's server holds its own)."""
    return settings.kind == "causal-lm" and not settings.remote


_PHASE_TEXT = {
    "download": "downloading model files",
    "convert": "converting the model (once)",
    "load": "loading weights",
    "quantize": "quantizing",
    "ready": "model ready",
}


def _free_memory() -> None:
    import sys

    gc.collect()
    torch = sys.modules.get("torch")  # never import it just to free memory
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    from .quantization import return_freed_heap

    return_freed_heap()
