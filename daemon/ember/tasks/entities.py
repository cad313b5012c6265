"""`entities`: named entities through a configured token-classification model."""

from __future__ import annotations

from typing import Any

from ..errors import InputTooLong
from ..models.loaded import LoadedModel
from ..wire import EntitiesParams
from .base import RunContext
from .generation import usage


def run(params: EntitiesParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    import torch
    from transformers import pipeline

    tokens = len(lm.tokenizer(params.text, add_special_tokens=True)["input_ids"])
    if tokens > lm.context_length:
        raise InputTooLong(tokens, lm.context_length, "the text")
    ctx.check_cancelled()
    ner = pipeline("token-classification", model=lm.model, tokenizer=lm.tokenizer,
                   aggregation_strategy="simple", device=torch.device(lm.device))
    found = ner(params.text) if params.text.strip() else []
    entities = [
        {
            "text": params.text[int(e["start"]):int(e["end"])],
            "label": e["entity_group"],
            "start": int(e["start"]),
            "end": int(e["end"]),
            "score": round(float(e["score"]), 4),
        }
        for e in found
    ]
    return {"entities": entities, "usage": usage(tokens, 0)}
