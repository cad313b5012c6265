"""`tokenize` and `detokenize`: pure tokenizer work, run off the model worker so they stay instant."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidParams
from ..wire import DetokenizeParams, TokenizeParams


def tokenize(params: TokenizeParams, tokenizer: Any, model_name: str) -> dict[str, Any]:
    if (params.text is None) == (params.messages is None):
        raise InvalidParams("give exactly one of: text, messages")
    result: dict[str, Any] = {"model": model_name}
    if params.messages is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidParams(f"messages: model '{model_name}' has no chat template")
        text = tokenizer.apply_chat_template(
            [m.model_dump() for m in params.messages],
            add_generation_prompt=params.add_generation_prompt,
            tokenize=False,
        )
        result["text"] = text
        # The template already wrote the special tokens as text: do not add them twice.
        add_special = False
    else:
        text = params.text
        add_special = params.add_special_tokens
    backend = _rust_tokenizer(tokenizer)
    if backend is not None:
        # The Rust tokenizer is read-only, so it is safe beside a running generation. Its
        # encode_batch releases the GIL while it works (encode holds it: 0.36 s for 200,000
        # characters, during which every other client waited); tokens and offsets are built only
        # when asked for (building them holds the GIL too).
        if hasattr(backend, "encode_batch"):
            enc = backend.encode_batch([text], add_special_tokens=add_special)[0]
        else:  # a server's tokenize route
            enc = backend.encode(text, add_special_tokens=add_special)
        ids = list(enc.ids)
        tokens = list(enc.tokens) if params.return_tokens else None
        offsets = ([list(o) for o in enc.offsets] if params.return_offsets and enc.offsets is not None
                   else None)
    else:
        enc = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=False)
        ids = list(enc["input_ids"])
        tokens = tokenizer.convert_ids_to_tokens(ids) if params.return_tokens else None
        offsets = None
    result["count"] = len(ids)
    if params.return_ids:
        result["ids"] = ids
    if params.return_tokens:
        result["tokens"] = tokens
    if params.return_offsets:
        result["offsets"] = offsets
    return result


def _rust_tokenizer(tokenizer: Any) -> Any:
    """The `tokenizers.Tokenizer` behind a transformers tokenizer, or the object itself if it is one
    (or a remote server's tokenize route, which answers the same way: ids, tokens, offsets or None)."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, Tokenizer) or getattr(tokenizer, "is_server_tokenizer", False):
        return tokenizer
    return getattr(tokenizer, "backend_tokenizer", None)


def detokenize(params: DetokenizeParams, tokenizer: Any, model_name: str) -> dict[str, Any]:
    from tokenizers import Tokenizer

    if getattr(tokenizer, "is_server_tokenizer", False):  # the server checks the ids
        return {"model": model_name,
                "text": tokenizer.decode(params.ids, skip_special_tokens=params.skip_special_tokens)}

    if isinstance(tokenizer, Tokenizer):
        size = tokenizer.get_vocab_size(with_added_tokens=True)
        bad = [i for i in params.ids if not 0 <= i < size]
        if bad:
            raise InvalidParams(f"ids: {bad[:5]} out of the vocabulary range 0..{size - 1}")
        return {"model": model_name,
                "text": tokenizer.decode(params.ids, skip_special_tokens=params.skip_special_tokens)}
    size = len(tokenizer)
    bad = [i for i in params.ids if not 0 <= i < size]
    if bad:
        raise InvalidParams(f"ids: {bad[:5]} out of the vocabulary range 0..{size - 1}")
    return {"model": model_name,
            "text": tokenizer.decode(params.ids, skip_special_tokens=params.skip_special_tokens)}
