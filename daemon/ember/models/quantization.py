"""Decide and apply the quantization of a model being loaded.

`plan()` turns the requested mode into keyword arguments for `from_pretrained` (falling back, with a
note, when the mode cannot apply on this device or model), `finish()` runs the post-load step, and
`weight_bytes()` counts what the weights really occupy. Measurements behind the choices are in
docs/quantization.md (bench/quantization.py).

Modes:
  none          full precision (float32 on CPU, bfloat16/float16 on CUDA unless `dtype` says otherwise)
  bnb-8bit      bitsandbytes LLM.int8 weights
  bnb-4bit      bitsandbytes nf4 weights
  int8-dynamic  torch dynamic quantization: int8 weights, activations quantized per call (CPU only)
  auto          bnb-4bit on CUDA; on CPU `none` (every quantized mode measured lossy or slow on
                SmolLM2, see the docs)
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import ModelSettings

# On CPU, bitsandbytes 4-bit repacks each weight for its fused kernel on the first forward: that asserts
# the output size is a multiple of 32 ("N must be divisible by block_n") and reshapes the scales
# assuming the input size is a multiple of the quantization block (64). The packed path is taken only
# on CPUs with AVX512-BF16, but we check everywhere so that a model behaves the same on every machine.
BNB4_CPU_OUT_MULTIPLE = 32
BNB4_CPU_IN_MULTIPLE = 64

AUTO_ON_CPU = "none"
AUTO_ON_CUDA = "bnb-4bit"

# What to try, in order, when a mode cannot apply: the nearest in intent (less memory) first.
FALLBACKS = {
    "bnb-4bit": ("bnb-4bit", "bnb-8bit", "int8-dynamic", "none"),
    "bnb-8bit": ("bnb-8bit", "int8-dynamic", "none"),
    "int8-dynamic": ("int8-dynamic", "bnb-8bit", "none"),
    "none": ("none",),
}


@dataclass
class QuantPlan:
    requested: str  # the setting: "auto", "none", "bnb-8bit", "bnb-4bit" or "int8-dynamic"
    applied: str  # a mode above (never "auto"), or "checkpoint (METHOD)" for a pre-quantized one
    note: str | None  # why `applied` differs from what was asked, for the log and the status
    from_pretrained_kwargs: dict[str, Any] = field(default_factory=dict)


@functools.cache
def bnb_import_error() -> str | None:
    """None if bitsandbytes imports, else the reason (its native library can fail to load)."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # ImportError, or OSError/RuntimeError from its native library
        return f"{type(exc).__name__}: {exc}"
    return None


def dynamic_int8_error() -> str | None:
    """None if torch's eager dynamic quantization can run here, else why not."""
    import torch

    ao_quantization = getattr(getattr(torch, "ao", None), "quantization", None)
    if not hasattr(ao_quantization, "quantize_dynamic"):
        return "this torch has no torch.ao.quantization.quantize_dynamic"
    if not set(torch.backends.quantized.supported_engines) & {"x86", "fbgemm", "qnnpack"}:
        return "this torch has no quantized CPU engine"
    return None


def linear_shapes(config) -> list[tuple[str, int, int]]:
    """(name, in_features, out_features) of a transformer block's Linear layers, from the config.

    The output layer (lm_head, classifier) is left out: transformers keeps the last module and the
    output embeddings unquantized, so their sizes (vocab_size, num_labels) never reach bitsandbytes.
    """
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden = getattr(config, "hidden_size", None)
    heads = getattr(config, "num_attention_heads", None)
    if not hidden or not heads:
        return []
    head_dim = getattr(config, "head_dim", None) or getattr(config, "d_kv", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    shapes = [
        ("attention query", hidden, q_dim),
        ("attention key/value", hidden, kv_dim),
        ("attention output", q_dim, hidden),
    ]
    ffn_names = ("intermediate_size", "d_ff", "ffn_dim", "encoder_ffn_dim", "decoder_ffn_dim", "n_inner")
    for name in ffn_names:
        size = getattr(config, name, None)
        if isinstance(size, int) and size > 0:
            shapes += [(f"mlp up ({name})", hidden, size), (f"mlp down ({name})", size, hidden)]
    return shapes


def bnb4_cpu_problem(config) -> str | None:
    """Why bitsandbytes 4-bit would fail on CPU for this model, or None."""
    bad = [
        f"{name} {n_in}->{n_out}"
        for name, n_in, n_out in linear_shapes(config)
        if n_out % BNB4_CPU_OUT_MULTIPLE or n_in % BNB4_CPU_IN_MULTIPLE
    ]
    if not bad:
        return None
    return (f"bitsandbytes 4-bit on CPU needs Linear output sizes divisible by {BNB4_CPU_OUT_MULTIPLE} "
            f"and input sizes by {BNB4_CPU_IN_MULTIPLE}; this model has {', '.join(sorted(set(bad)))}")


def _problem(mode: str, device: str, config) -> str | None:
    """Why `mode` cannot apply for this model on this device, or None if it can."""
    kind = device.split(":")[0]
    if mode == "none":
        return None
    if kind not in ("cpu", "cuda"):
        return f"{mode} is not supported on {device}"
    if mode == "int8-dynamic":
        if kind != "cpu":
            return "int8-dynamic runs on CPU only"
        return dynamic_int8_error()
    if (err := bnb_import_error()) is not None:
        return f"bitsandbytes is not importable ({err})"
    if mode == "bnb-4bit" and kind == "cpu":
        return bnb4_cpu_problem(config)
    return None


def _torch_dtype(settings_dtype: str, device: str):
    """The dtype to load in: the setting, or float32 on CPU and bf16 (else fp16) on CUDA for auto."""
    import torch

    if settings_dtype != "auto":
        return getattr(torch, settings_dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # Half precision on CPU is only fast with native support (AVX512-BF16, AMX), and fp16 matmuls are
    # slow nearly everywhere: float32 is the predictable default.
    return torch.float32


def _kwargs(mode: str, device: str, dtype) -> dict[str, Any]:
    import torch

    kwargs: dict[str, Any] = {"dtype": dtype}
    if device != "cpu" or mode.startswith("bnb-"):
        # accelerate places every module on that device; bitsandbytes quantizes as it places them
        kwargs["device_map"] = {"": device}
    if mode == "int8-dynamic":
        kwargs["dtype"] = torch.float32  # the quantized kernels take float32 activations
    elif mode.startswith("bnb-"):
        from transformers import BitsAndBytesConfig

        if mode == "bnb-8bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
        else:
            # On CPUs with AVX512-BF16 bitsandbytes' fused kernel computes in bf16 whatever is asked.
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    return kwargs


def plan(settings: ModelSettings, device: str, config) -> QuantPlan:
    """Choose the quantization for a model on `device` ("cpu", "cuda:0", ...) given its config."""
    requested = settings.quantization
    kind = device.split(":")[0]
    dtype = _torch_dtype(settings.dtype, device)

    existing = getattr(config, "quantization_config", None)
    if existing:
        method = (existing.get("quant_method") if isinstance(existing, dict)
                  else getattr(existing, "quant_method", None)) or "unknown"
        method = getattr(method, "value", method)
        note = None
        if requested not in ("auto", "none"):
            note = f"the checkpoint is already quantized ({method}); quantization '{requested}' ignored"
        kwargs: dict[str, Any] = {} if kind == "cpu" else {"device_map": {"": device}}
        return QuantPlan(requested, f"checkpoint ({method})", note, kwargs)

    alias_note = None
    if requested in ("int4", "int8"):  # the onnxruntime engine's names; bitsandbytes here
        alias_note = f"{requested} on the transformers engine is bitsandbytes"
        requested = "bnb-4bit" if requested == "int4" else "bnb-8bit"
    if requested == "auto":
        # On CUDA only a missing bitsandbytes stops 4-bit, and then 8-bit cannot apply either.
        chain = tuple(dict.fromkeys((AUTO_ON_CUDA if kind == "cuda" else AUTO_ON_CPU, "none")))
    else:
        chain = FALLBACKS[requested]

    reasons = []
    for mode in chain:
        problem = _problem(mode, device, config)
        if problem is None:
            break
        reasons.append(problem)
    note = None
    if reasons:
        note = f"{requested} -> {mode}: " + "; ".join(reasons)
    if alias_note:
        note = f"{alias_note}; {note}" if note else alias_note
    if mode == "int8-dynamic" and settings.dtype not in ("auto", "float32"):
        extra = f"int8-dynamic computes in float32: dtype {settings.dtype} ignored"
        note = f"{note}; {extra}" if note else extra
    return QuantPlan(requested, mode, note, _kwargs(mode, device, dtype))


class _DropInt8CastNotice(logging.Filter):
    """bitsandbytes 8-bit logs a warning on every forward of every layer when its input is not
    float16, which on CPU it never is (float32 measured fastest and closest there): drop just that."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("MatMul8bitLt: inputs will be cast")


def _quiet_bnb_int8() -> None:
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastNotice) for f in logger.filters):
        logger.addFilter(_DropInt8CastNotice())


def return_freed_heap() -> None:
    """Quantizing frees the float weights it read, but glibc keeps freed heap for reuse: on SmolLM2
    this gave 330 of 430 MB of anonymous RSS back after bnb-4bit, 40 MB after bnb-8bit."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        pass


def finish(model, plan: QuantPlan):
    """Post-load steps of the plan; returns the model to use (int8-dynamic replaces its Linears)."""
    model.eval()
    if plan.applied == "bnb-8bit":
        _quiet_bnb_int8()
    if plan.applied == "int8-dynamic":
        model = _quantize_dynamic(model)
    if plan.applied != "none":
        return_freed_heap()
    return model


def _quantize_dynamic(model):
    import torch

    with warnings.catch_warnings():
        # torch 2.13 deprecates torch.ao.quantization in favour of torchao's quantize_, but torchao's
        # eager int8 is 3x slower than float32 on CPU (docs/quantization.md); plan() checks the API
        # still exists, so a future torch without it falls back instead of failing here.
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8,
                                                      inplace=True)


def _tensor_bytes(t) -> int:
    return t.numel() * t.element_size()


def weight_bytes(model) -> int:
    """Bytes the weights occupy: parameters and buffers (shared ones once), bitsandbytes scales, and
    the int8 weights that dynamic quantization keeps in packed params rather than parameters."""
    seen: set[int] = set()
    total = 0

    def add(t) -> None:
        nonlocal total
        if t is None or not hasattr(t, "element_size"):
            return
        key = t.data_ptr() if t.numel() else id(t)
        if key in seen:
            return
        seen.add(key)
        total += _tensor_bytes(t)

    for p in model.parameters():
        add(p)
        state = getattr(p, "quant_state", None)  # bnb 4-bit: absmax per block, and nested scales
        while state is not None:
            add(getattr(state, "absmax", None))
            state = getattr(state, "state2", None)
        add(getattr(p, "SCB", None))  # bnb 8-bit: scale per row
    for b in model.buffers():
        add(b)
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            weight, bias = packed._weight_bias()  # unpacks a copy: count its size, not its address
            total += _tensor_bytes(weight) + (_tensor_bytes(bias) if bias is not None else 0)
    return total
