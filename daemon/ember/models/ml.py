"""Import torch and transformers once, under a lock.

transformers resolves its names lazily, and two threads resolving them at the same moment can see
a half-initialised module (ImportError: cannot import name 'AutoTokenizer'). The worker warms this
up at start; anyone else who needs the libraries goes through here first.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_ready = False


def ensure_imported() -> None:
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
                     "StoppingCriteria", "StoppingCriteriaList", "BitsAndBytesConfig"):
            # Not `pipeline`: it pulls in most of transformers (~2 s) and only `entities` needs it.
            getattr(transformers, name)
        import transformers.generation.streamers  # noqa: F401

        transformers.utils.logging.disable_progress_bar()  # tqdm bars would flood the log

        _ready = True
