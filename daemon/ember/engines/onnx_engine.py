"""The onnxruntime engine: a causal LM converted once to ONNX (models/onnx_convert.py) and run by
onnxruntime-genai's Generator, whose append/rewind shape our Sequence interface copies. It is driven
through the library's C API (oga.py), so that forward passes release the GIL.

On a CPU it decodes several times faster than transformers in float32 (docs/benchmarks.md): its
MatMulNBits kernels read 4-bit weights, where float32 decoding is bound by memory bandwidth.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import oga
from .base import LocalEngine, Sequence

# A generator preallocates KV memory for its whole capacity, so capacities come in steps with room
# to grow: an editor's prompt grows as the user types (about a token every three keystrokes, until
# its window start moves and the prompt changes anyway), and outgrowing a sequence loses its state.
# Steps are small because the prefix cache's budget counts what is allocated: with 1,024-token
# steps and 512 of headroom an editor's 800-token prompt took 2,048 tokens (94 MB for SmolLM2), and
# the default 256 MB held two editors, so a third and fourth thrashed (docs/engines.md).
CAPACITY_STEP = 256
CAPACITY_HEADROOM = 256


class OnnxRuntimeEngine(LocalEngine):
    name = "onnxruntime"

    def __init__(self, folder: Path, threads: int, kv_bytes_per_token: int | None = None,
                 graph: str = "model.onnx"):
        self.folder = folder
        genai = json.loads((folder / "genai_config.json").read_text())
        model = genai["model"]
        decoder = model["decoder"]
        super().__init__(int(model.get("context_length") or 2048), int(model["vocab_size"]))
        # No memory arena: it keeps each prefill chunk's peak (its logits alone are 50 MB) for good.
        # Measured with the keystroke replay: 560 MB resident instead of 625, decode unchanged, a cold
        # 1,300-token prefill 4% slower.
        self.model: oga.Model | None = oga.Model(folder, {"model": {"decoder": {"filename": graph, "session_options": {
            "intra_op_num_threads": threads, "inter_op_num_threads": 1, "enable_cpu_mem_arena": False}}}})
        # The conversion records the KV element size; CPU models keep their KV cache in float32.
        self.kv_bytes_per_token = kv_bytes_per_token or (
            2 * int(decoder["num_hidden_layers"]) * int(decoder["num_key_value_heads"])
            * int(decoder["head_size"]) * 4)
        self._weights = sum(f.stat().st_size for f in [folder / graph, *folder.glob("*.onnx.data")]
                            if f.is_file())
        self.threads = threads

    def new_sequence(self, capacity: int) -> Sequence:
        steps = -(-(capacity + CAPACITY_HEADROOM) // CAPACITY_STEP)
        return OnnxSequence(self, min(self.context_length, steps * CAPACITY_STEP))

    def kv_bytes(self, tokens: int) -> int:
        steps = -(-(tokens + CAPACITY_HEADROOM) // CAPACITY_STEP)
        return min(self.context_length, steps * CAPACITY_STEP) * self.kv_bytes_per_token

    def weight_bytes(self) -> int:
        return self._weights

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "folder": str(self.folder), "threads": self.threads}

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
            self.model = None


class OnnxLoraEngine(OnnxRuntimeEngine):
    """The same converted model through its graph with LoRA inputs (models/onnx_lora.py), for
    requests with an adapter: each sequence runs with the adapter the prefix cache gave it."""

    name = "onnxruntime"

    def __init__(self, folder: Path, graph: str, groups: dict[str, Any], threads: int,
                 kv_bytes_per_token: int | None = None):
        super().__init__(folder, threads, kv_bytes_per_token, graph=graph)
        assert self.model is not None
        self.adapters: oga.Adapters | None = oga.Adapters(self.model)
        self.adapter_bytes: dict[str, int] = {}
        self.groups = groups  # models.onnx_lora.Group by input prefix: what the adapters feed
        self._files = tempfile.TemporaryDirectory(prefix="ember-lora-")  # the .onnx_adapter files

    def adapter_file(self, name: str) -> Path:
        return Path(self._files.name) / f"{name}.onnx_adapter"

    def load_adapter(self, name: str, nbytes: int) -> None:
        """Load adapter_file(name), written by the caller."""
        assert self.adapters is not None
        self.adapters.load(self.adapter_file(name), name)
        self.adapter_bytes[name] = nbytes

    def drop_adapter(self, name: str) -> None:
        if self.adapter_bytes.pop(name, None) is not None and self.adapters is not None:
            self.adapters.unload(name)
            self.adapter_file(name).unlink(missing_ok=True)

    def close(self) -> None:
        if self.adapters is not None:
            self.adapters.close()
            self.adapters = None
        super().close()
        self._files.cleanup()


class OnnxSequence(Sequence):
    def __init__(self, engine: OnnxRuntimeEngine, capacity: int):
        super().__init__(capacity)
        if engine.model is None:
            raise oga.OgaError("the model was unloaded")
        self.generator: oga.Generator | None = oga.Generator(engine.model, capacity)
        self._bytes = capacity * engine.kv_bytes_per_token
        self._engine = engine
        self._adapter_set = False

    def _forward(self, ids: list[int], all_logits: bool) -> np.ndarray:
        assert self.generator is not None, "append on a freed sequence"
        if self.adapter and not self._adapter_set:  # the prefix cache names it before the first forward
            adapters = getattr(self._engine, "adapters", None)
            if adapters is None:
                raise oga.OgaError(f"adapter '{self.adapter}' on a graph without LoRA inputs")
            self.generator.set_active_adapter(adapters, self.adapter)
            self._adapter_set = True
        self.generator.append(ids)
        if all_logits:
            return self.generator.output("logits")[0, -len(ids):]
        return self.generator.last_logits()

    def _truncate(self, n: int) -> int:
        assert self.generator is not None, "rewind on a freed sequence"
        self.generator.rewind(n)
        return n

    def nbytes(self) -> int:
        return self._bytes if self.generator is not None else 0

    def free(self) -> None:
        if self.generator is not None:
            self.generator.close()
            self.generator = None
        super().free()
