"""Import torch and transformers once, under a lock.

transformers resolves its names lazily, and two threads resolving them at the same moment can see
a half-initialised module (ImportError: cannot import name 'AutoTokenizer'). Every import of
transformers names by Ember's threads goes through here.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.RLock()
_ready = False


def ensure_imported() -> None:
    """torch and the transformers classes that load models (a second or two, once)."""
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        import torch  # noqa: F401
        import transformers

        for name in ("AutoConfig", "AutoTokenizer", "AutoModelForCausalLM", "AutoModelForSeq2SeqLM",
                     "AutoModelForSequenceClassification", "AutoModelForTokenClassification",
                     "BitsAndBytesConfig"):
            # Not `pipeline`: it pulls in most of transformers (~2 s) and only `entities` needs it.
            getattr(transformers, name)

        transformers.utils.logging.disable_progress_bar()  # tqdm bars would flood the log
        _ready = True


def fast_tokenizer_class() -> Any:
    """transformers' generic fast tokenizer, without importing torch (the Auto classes do)."""
    with _lock:
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast


def set_torch_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
