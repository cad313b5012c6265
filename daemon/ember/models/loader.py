"""Load one configured model (tokenizer, weights, engine) onto its device.

Causal LMs run on an engine: onnxruntime on a CPU (converted once, several times faster), or
transformers (any device, bitsandbytes on CUDA); `engine = "auto"` picks the first where it can run.
If the chosen engine cannot take the model, it falls back to transformers and says why
(`engine_note`, shown in daemon/status). Other kinds load with transformers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ModelSettings, onnxruntime_threads, torch_threads
from ..errors import ModelLoadError
from . import devices
from .loaded import LoadedModel
from .ml import ensure_imported, fast_tokenizer_class, set_torch_threads

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 2048
# Tokenizer classes that are transformers' generic fast tokenizer: loaded without torch.
GENERIC_TOKENIZERS = {None, "PreTrainedTokenizerFast", "TokenizersBackend"}
# quantization values that the onnxruntime engine takes, and what they mean there
ONNX_PRECISIONS = {"auto": None, "int4": "int4", "int8": "int8", "none": "float32"}

Progress = Callable[..., None]


@dataclass(frozen=True)
class LoadContext:
    cache_dir: Path
    threads: int | None  # daemon.threads; None: each engine's default
    progress: Progress | None = None

    def report(self, phase: str, percent: float | None, **kw: Any) -> None:
        if self.progress:
            self.progress(phase, percent, **kw)


def _model_class(kind: str) -> Any:
    import transformers

    return {
        "causal-lm": transformers.AutoModelForCausalLM,
        "seq2seq": transformers.AutoModelForSeq2SeqLM,
        "text-classification": transformers.AutoModelForSequenceClassification,
        "zero-shot-classification": transformers.AutoModelForSequenceClassification,
        "token-classification": transformers.AutoModelForTokenClassification,
        "question-answering": transformers.AutoModelForQuestionAnswering,
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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _config_json(folder: Path) -> dict[str, Any]:
    config = _read_json(folder / "config.json")
    if not config:
        raise ModelLoadError(f"could not read the model config in {folder} (config.json)")
    return config


def context_length(config: Any, tokenizer: Any, override: int | None) -> int:
    """From a config object or its config.json dict."""
    if override:
        return override
    for attr in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = config.get(attr) if isinstance(config, dict) else getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        return limit
    return DEFAULT_CONTEXT


def _ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    return tuple(int(v) for v in (value if isinstance(value, list) else [value]))


def eos_ids(folder: Path, tokenizer: Any) -> tuple[int, ...]:
    """The tokens that end a generation: generation_config.json's, else config.json's, else the
    tokenizer's."""
    for source in (_read_json(folder / "generation_config.json"), _read_json(folder / "config.json")):
        found = _ids(source.get("eos_token_id"))
        if found:
            return found
    return _ids(getattr(tokenizer, "eos_token_id", None))


def load_tokenizer(folder: Path, settings: ModelSettings) -> Any:
    kind = _read_json(folder / "tokenizer_config.json").get("tokenizer_class")
    try:
        if (folder / "tokenizer.json").is_file() and kind in GENERIC_TOKENIZERS \
                and not settings.trust_remote_code:
            return fast_tokenizer_class().from_pretrained(folder)
        ensure_imported()
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, trust_remote_code=settings.trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types here
        raise ModelLoadError(f"could not load the tokenizer from {folder}: {exc}") from exc


# -- engine choice ---------------------------------------------------------------------------


def onnxruntime_problem(settings: ModelSettings, device: str) -> tuple[str, bool] | None:
    """Why the onnxruntime engine cannot run this model here, and whether that is a fault (rather
    than a choice the configuration made); None if it can."""
    if settings.kind != "causal-lm":
        return f"it runs causal LMs only (this model is {settings.kind})", False
    if device != "cpu":
        return f"Ember runs it on the CPU only (this model is on {device})", False
    if settings.quantization not in ONNX_PRECISIONS:
        return f"quantization {settings.quantization} is a transformers method", False
    if settings.trust_remote_code:
        return "models with remote code are not converted", False
    try:
        import onnxruntime_genai  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, or its native library failing
        return f"onnxruntime-genai is not importable ({exc})", True
    return None


def load(name: str, settings: ModelSettings, folder: Path, ctx: LoadContext) -> LoadedModel:
    """Load a model from its resolved folder. Raises ModelLoadError for the user."""
    started = time.monotonic()
    device = devices.resolve(settings.device)
    note = None
    if settings.kind == "causal-lm" and settings.engine != "transformers":
        problem = onnxruntime_problem(settings, device)
        if problem is None:
            try:
                return _load_onnxruntime(name, settings, folder, ctx, started)
            except ModelLoadError as exc:
                problem = (exc.message, True)
        reason, fault = problem
        if fault or settings.engine == "onnxruntime":
            note = f"onnxruntime engine not used: {reason}; running on transformers"
            log.warning("Model %s: %s", name, note)
    return _load_transformers(name, settings, folder, device, ctx, started, note)


def _onnx_precision(settings: ModelSettings, folder: Path, cache_dir: Path) -> tuple[str, bool]:
    """(precision, whether int4 must be the exact GGUF mapping) for the onnxruntime engine."""
    from . import onnx_convert

    requested = ONNX_PRECISIONS[settings.quantization]
    if requested is not None:
        return requested, False
    # auto: the fastest choice that keeps perplexity within a few percent (docs/quantization.md):
    # int4 only where it copies a GGUF's blocks exactly; round-to-nearest int4 is far off.
    if onnx_convert.gguf_source(folder) is None:
        return "int8", False
    done = onnx_convert.read_entry(onnx_convert.cache_entry(folder, "int4", cache_dir))
    if done is not None and done.method.startswith(onnx_convert.EXACT_METHOD):
        return "int4", True  # converted before: no need to read the GGUF again (seconds)
    if onnx_convert.exact_int4_possible(folder) is None:
        return "int4", True
    return "int8", False


def _load_onnxruntime(name: str, settings: ModelSettings, folder: Path, ctx: LoadContext,
                      started: float) -> LoadedModel:
    from ..engines.onnx_engine import OnnxRuntimeEngine
    from ..engines.prefix_cache import PrefixCache
    from . import onnx_convert

    config = _config_json(folder)
    _check_weights(folder, settings)  # before the exporter unpickles anything
    # The tokenizer (importing transformers: a second) loads while onnxruntime loads the model.
    pool = ThreadPoolExecutor(1, thread_name_prefix="ember-tokenizer")
    tokenizer_loading = pool.submit(load_tokenizer, folder, settings)
    pool.shutdown(wait=False)
    precision, exact = _onnx_precision(settings, folder, ctx.cache_dir)
    threads = onnxruntime_threads(ctx.threads)
    note = None

    def convert(precision: str, exact: bool) -> onnx_convert.Converted:
        return onnx_convert.ensure(folder, precision, ctx.cache_dir, ctx.report, require_exact=exact)

    try:
        try:
            converted = convert(precision, exact)
        except onnx_convert.NotExact as exc:
            note = f"int4 cannot copy this GGUF's blocks exactly ({exc}): int8"
            log.warning("Model %s: %s", name, note)
            converted = convert("int8", False)
        ctx.report("load", 60.0)
        try:
            engine = OnnxRuntimeEngine(converted.folder, threads, converted.kv_bytes_per_token)
        except Exception as exc:  # noqa: BLE001 - a damaged entry: convert it once more
            log.warning("Converted model %s would not load (%s): converting again", converted.folder, exc)
            onnx_convert.discard(converted.folder)
            converted = convert(converted.precision, False)
            engine = OnnxRuntimeEngine(converted.folder, threads, converted.kv_bytes_per_token)
    except onnx_convert.ConversionError as exc:
        raise ModelLoadError(f"could not convert model '{name}' for onnxruntime: {exc}") from exc
    except Exception as exc:  # noqa: BLE001
        log.exception("onnxruntime could not load %s", name)
        raise ModelLoadError(f"could not load model '{name}' on onnxruntime: {exc}") from exc
    tokenizer = tokenizer_loading.result()
    loaded = LoadedModel(
        name=name, settings=settings, kind=settings.kind, model=None, tokenizer=tokenizer,
        device="cpu", dtype="float32", quantization=converted.method, quantization_note=note,
        context_length=min(engine.context_length, context_length(config, tokenizer, settings.context_length)),
        memory_bytes=engine.weight_bytes(), load_seconds=time.monotonic() - started,
        source_path=str(folder), engine=engine,
        prefix_cache=PrefixCache(engine, settings.prefix_cache_mb << 20),
        eos_ids=eos_ids(folder, tokenizer),
    )
    log.info("Loaded %s on onnxruntime (%s) in %.2fs", name, converted.method, loaded.load_seconds)
    return loaded


def _load_transformers(name: str, settings: ModelSettings, folder: Path, device: str, ctx: LoadContext,
                       started: float, engine_note: str | None) -> LoadedModel:
    from . import quantization

    ensure_imported()
    set_torch_threads(torch_threads(ctx.threads))
    from transformers import AutoConfig

    ctx.report("load", 0.0)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=settings.trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"could not read the model config in {folder}: {exc}") from exc
    _check_weights(folder, settings)
    tokenizer = load_tokenizer(folder, settings)
    plan = quantization.plan(settings, device, config)
    if plan.note:
        log.warning("Model %s: %s", name, plan.note)
    ctx.report("load", 30.0)
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
    ctx.report("quantize", 80.0)
    model = quantization.finish(model, plan)
    if "device_map" not in plan.from_pretrained_kwargs and plan.applied not in ("bnb-8bit", "bnb-4bit"):
        model.to(device)
    model.eval()
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    length = context_length(config, tokenizer, settings.context_length)
    engine = prefix_cache = None
    eos: tuple[int, ...] = ()
    decoder_prefix: tuple[int, ...] = ()
    if settings.kind in ("causal-lm", "seq2seq"):
        from ..engines.prefix_cache import PrefixCache
        from ..engines.torch_engine import TransformersEngine

        engine = TransformersEngine(model, device, length)
        eos = _ids(model.generation_config.eos_token_id) or eos_ids(folder, tokenizer)
        if settings.kind == "causal-lm":
            prefix_cache = PrefixCache(engine, settings.prefix_cache_mb << 20)
        else:
            start_id = getattr(model.generation_config, "decoder_start_token_id", None)
            if start_id is None:
                start_id = getattr(model.config, "decoder_start_token_id", None)
            forced = getattr(model.generation_config, "forced_bos_token_id", None)
            decoder_prefix = tuple(_ids(start_id) + _ids(forced))
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
        context_length=length,
        memory_bytes=quantization.weight_bytes(model),
        load_seconds=time.monotonic() - started,
        source_path=str(folder),
        engine=engine,
        engine_note=engine_note,
        prefix_cache=prefix_cache,
        eos_ids=eos,
        decoder_prefix=decoder_prefix,
    )
    log.info("Loaded %s (%s, %s, %s) in %.2fs", name, device, dtype, plan.applied, loaded.load_seconds)
    return loaded


def load_onnx_lora(lm: LoadedModel) -> tuple[Any, Any]:
    """The onnxruntime model `lm` again, through its graph with LoRA inputs (written once next to
    the converted model), for requests with an adapter: (engine, prefix cache)."""
    from ..engines.onnx_engine import OnnxLoraEngine
    from ..engines.prefix_cache import PrefixCache
    from . import onnx_lora

    base = lm.engine
    try:
        groups = onnx_lora.ensure_graph(base.folder)
        engine = OnnxLoraEngine(base.folder, onnx_lora.LORA_GRAPH, groups, base.threads, base.kv_bytes_per_token)
    except onnx_lora.Unsupported as exc:
        raise ModelLoadError(str(exc)) from exc
    log.info("Loaded %s's graph with LoRA inputs (%d projections)", lm.name, len(groups))
    return engine, PrefixCache(engine, lm.settings.prefix_cache_mb << 20)


def load_transformers_copy(name: str, settings: ModelSettings, folder: Path,
                           ctx: LoadContext) -> tuple[Any, Any, int]:
    """The model on transformers, float32 on the CPU, for what its own engine cannot run (LoRA
    adapters on onnxruntime): (engine, prefix cache, weight bytes)."""
    copy = settings.model_copy(update={"engine": "transformers", "quantization": "none",
                                       "device": "cpu", "dtype": "float32"})
    lm = _load_transformers(name, copy, folder, "cpu", LoadContext(ctx.cache_dir, ctx.threads),
                            time.monotonic(), None)
    return lm.engine, lm.prefix_cache, lm.memory_bytes


# -- remote models ---------------------------------------------------------------------------


def load_remote(name: str, settings: ModelSettings, tokenizer: tuple[Path | None, str | None],
                endpoint: Any, ctx: LoadContext) -> LoadedModel:
    """Connect a remote model: ask its server what it serves, and load the model's tokenizer when
    it is available here (`tokenizer`: its folder, or None and why, from sources.remote_tokenizer).
    No weights are loaded. Raises RemoteUnavailable / ModelLoadError."""
    from ..config import remote_token, token_env
    from ..engines.endpoint import Access
    from ..engines.remote import RemoteEngine, probe
    from . import sources

    started = time.monotonic()
    access = Access(remote_token(settings), token_env(settings), settings.connect_timeout_s,
                    settings.read_timeout_s, settings.retries)
    ctx.report("load", 0.0, message=f"connecting to {endpoint.public_url}")
    info = probe(endpoint, access, settings.served_model)
    tokenizer_folder, note = tokenizer
    if tokenizer_folder is None and settings.tokenizer is None and settings.served_model is None:
        # the name the server serves is known only now: it may be a hub id or a folder
        tokenizer_folder, note = sources.remote_tokenizer(settings, info.served_model, ctx.cache_dir)
    tok = load_tokenizer(tokenizer_folder, settings) if tokenizer_folder is not None else None
    config = _read_json(tokenizer_folder / "config.json") if tokenizer_folder is not None else {}
    length = settings.context_length or info.context_length or context_length(config, tok, None)
    loaded = LoadedModel(
        name=name, settings=settings, kind="causal-lm", model=None, tokenizer=tok,
        device="remote", dtype="n/a", quantization="n/a (the server's)", quantization_note=None,
        context_length=int(length), memory_bytes=0, load_seconds=time.monotonic() - started,
        source_path=str(tokenizer_folder) if tokenizer_folder is not None else "",
        engine=RemoteEngine(endpoint, access, info, tok),
        engine_note=f"tokenizer: {note}" if note else None,
        eos_ids=eos_ids(tokenizer_folder, tok) if tokenizer_folder is not None else (),
    )
    log.info("Connected %s to %s (%s, serving %s)%s", name, endpoint.public_url, info.server,
             info.served_model, f"; {note}" if note else "")
    return loaded
