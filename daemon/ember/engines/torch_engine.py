"""The transformers engine: any causal LM (or seq2seq decoder) that transformers loads, on any
device, quantized or not. The reference engine, the GPU path with bitsandbytes, and the engine that
runs LoRA adapters (peft): each forward pass runs with its sequence's adapter, or none."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from .base import LocalEngine, Sequence


def _forward_params(model: Any) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def _kv_bytes_per_token(config: Any, dtype: torch.dtype) -> int:
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = int(getattr(config, "num_hidden_layers", 0) or getattr(config, "num_layers", 0) or 0)
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or getattr(config, "hidden_size", 0) // heads)
    element = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    return 2 * layers * kv_heads * head_dim * element


class TransformersEngine(LocalEngine):
    name = "transformers"

    def __init__(self, model: Any, device: str, context_length: int):
        super().__init__(context_length, int(model.config.get_text_config().vocab_size))
        self.model = model
        self.device = device
        accepted = _forward_params(model)
        # transformers 5.2x renamed the KV-cache argument and output `past_key_values` -> `cache`.
        self.cache_arg = "cache" if "cache" in accepted else "past_key_values"
        self.keeps_logits = "logits_to_keep" in accepted
        dtype = next(model.parameters()).dtype
        compute = dtype if dtype.is_floating_point else torch.float32
        self.kv_bytes_per_token = _kv_bytes_per_token(model.config, compute)
        self.lora: Any = None  # peft's PeftModel around `model` once an adapter is added
        self.adapter_bytes: dict[str, int] = {}  # the adapters added, and their weights' memory
        self._active: str | None = None  # the adapter the LoRA layers run now ("": none)

    def new_sequence(self, capacity: int) -> Sequence:
        # A DynamicCache grows as needed: every sequence can take the whole context.
        return TorchSequence(self, self.context_length)

    def kv_bytes(self, tokens: int) -> int:
        return tokens * self.kv_bytes_per_token  # allocated as it grows

    def weight_bytes(self) -> int:
        from ..models.quantization import weight_bytes

        return weight_bytes(self.model)

    # -- LoRA adapters -------------------------------------------------------------------------

    def add_adapter(self, name: str, config: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        """Add a LoRA adapter (peft's adapter_config.json and its tensors) under `name`. Raises
        ValueError, leaving the engine as it was, when the adapter does not fit this model."""
        from peft import LoraConfig, PeftModel, set_peft_model_state_dict

        lora_config = LoraConfig(**{k: v for k, v in config.items() if k in LoraConfig.__dataclass_fields__})
        lora_config.inference_mode = True
        first = self.lora is None
        try:
            if first:
                self.lora = PeftModel(self.model, lora_config, adapter_name=name)
            else:
                self.lora.add_adapter(name, lora_config)
            result: Any = set_peft_model_state_dict(self.lora, weights, adapter_name=name)
            expected = [n for n, _ in self.lora.named_parameters() if f".{name}." in n]
            if result.unexpected_keys or len(expected) != len(weights):
                raise ValueError(f"{len(weights)} tensors in the adapter, {len(expected)} LoRA weights in "
                                 f"this model for its target modules ({len(result.unexpected_keys)} match "
                                 "no module): it was trained for another model")
        except Exception as exc:
            self._remove(name, first)
            if isinstance(exc, ValueError):
                raise
            raise ValueError(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from exc
        self.adapter_bytes[name] = sum(t.numel() * t.element_size() for t in weights.values())
        self._active = None  # peft made the new adapter active: choose again at the next forward

    def drop_adapter(self, name: str) -> None:
        if name in self.adapter_bytes:
            del self.adapter_bytes[name]
            self._remove(name, not self.adapter_bytes)

    def _remove(self, name: str, last: bool) -> None:
        if self.lora is None:
            return
        if last:  # the plain model again, without LoRA layers
            self.lora.base_model.unload()
            self.lora = None
        elif name in self.lora.peft_config:
            self.lora.delete_adapter(name)
        self._active = None

    def _use_adapter(self, adapter: str) -> None:
        if adapter == self._active or (self.lora is None and not adapter):
            return
        if adapter not in self.adapter_bytes and adapter:
            raise ValueError(f"adapter '{adapter}' is not loaded")
        if adapter:
            self.lora.base_model.enable_adapter_layers()
            self.lora.base_model.set_adapter(adapter)
        else:
            self.lora.base_model.disable_adapter_layers()
        self._active = adapter

    def forward(self, ids: list[int], cache: Any, all_logits: bool,
                encoder_outputs: Any = None, adapter: str = "") -> tuple[np.ndarray, Any]:
        """Logits for `ids` after `cache`'s tokens (of the decoder, given `encoder_outputs`),
        and the grown cache; with `adapter`'s LoRA weights, or none."""
        self._use_adapter(adapter)
        kwargs: dict[str, Any] = {}
        if cache is not None:
            kwargs[self.cache_arg] = cache
        if self.keeps_logits and not all_logits:
            kwargs["logits_to_keep"] = 1
        with torch.inference_mode():
            tokens = torch.tensor([ids], dtype=torch.long, device=self.device)
            if encoder_outputs is None:
                out = self.model(input_ids=tokens, use_cache=True, **kwargs)
            else:
                out = self.model(decoder_input_ids=tokens, encoder_outputs=encoder_outputs,
                                 use_cache=True, **kwargs)
            logits = out.logits[0].float().cpu().numpy()
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = getattr(out, "past_key_values", None)
        return (logits if all_logits else logits[-1]), new_cache

    def close(self) -> None:
        self.model = self.lora = None


class TorchSequence(Sequence):
    """A DynamicCache that grows as tokens are appended; rewinding crops it."""

    def __init__(self, engine: TransformersEngine, capacity: int):
        super().__init__(capacity)
        self.engine = engine
        self.cache: Any = None

    def _forward(self, ids: list[int], all_logits: bool) -> np.ndarray:
        logits, self.cache = self.engine.forward(ids, self.cache, all_logits, adapter=self.adapter)
        return logits

    def _truncate(self, n: int) -> int:
        if n > 0 and self.cache is not None:
            try:
                # transformers 5: a negative count of tokens to drop from the end
                self.cache.crop(n - self.cache.get_seq_length())
                return n
            except (RuntimeError, ValueError):  # e.g. a sliding window already past its size
                pass
        self.cache = None
        return 0

    def nbytes(self) -> int:
        return self.engine.kv_bytes(len(self.tokens))

    def free(self) -> None:
        self.cache = None
        super().free()


class Seq2SeqSequence(Sequence):
    """The decoder of an encoder-decoder model over one encoded input (no prefix reuse)."""

    def __init__(self, engine: TransformersEngine, input_ids: list[int], capacity: int):
        super().__init__(capacity)
        self.engine = engine
        model = engine.model
        with torch.inference_mode():
            ids = torch.tensor([input_ids], dtype=torch.long, device=engine.device)
            self.encoder_outputs = model.get_encoder()(input_ids=ids, attention_mask=torch.ones_like(ids))
        self.cache: Any = None

    def _forward(self, ids: list[int], all_logits: bool) -> np.ndarray:
        logits, self.cache = self.engine.forward(ids, self.cache, all_logits,
                                                 encoder_outputs=self.encoder_outputs)
        return logits

    def _truncate(self, n: int) -> int:
        self.cache = None  # never rewound in practice: one sequence per request
        return 0

    def nbytes(self) -> int:
        return self.engine.kv_bytes(len(self.tokens))

    def free(self) -> None:
        self.cache = None
        self.encoder_outputs = None
        super().free()
