"""LoRA inputs for a converted onnxruntime-genai model, and peft adapters in the form it loads.

onnxruntime-genai runs a LoRA adapter as extra inputs of the graph that an `.onnx_adapter` file
feeds. Ember's graphs have none, so a second graph is written next to model.onnx, once, reading the
same weights file: every projection of a decoder layer (a MatMulNBits, or a MatMul in a float graph) gets two inputs, A [in, rank]
and B [rank, out], and adds x·A·B to its output. Projections that one MatMulNBits computes together
(q, k and v; gate and up) share one pair: A stacks the members' A matrices along the rank, and B
puts each member's scaled B in that member's output columns, so x·A·B is each member's own LoRA
product in its own columns. Requests without an adapter keep the graph without LoRA inputs, so an
adapter costs nothing where it is not used.

What this cannot take (LoRA on embeddings or the output layer, DoRA, per-module alpha or rank
patterns, biases) raises Unsupported: the caller runs that adapter on transformers instead.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

LORA_GRAPH = "model-lora.onnx"
LORA_MAP = "lora.json"
VERSION = 1  # of the graph's layout: a cached graph of another version is written again
_LAYER_NODE = re.compile(r"^/model/layers\.(\d+)/(?:attn|mlp)/(\w+?)/MatMul")
_SPLIT_OUTPUT = re.compile(r"/(\w+)/MatMul/output_0$")
_PEFT_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:[\w.]*\.)?(\w+)\.lora_([AB])\.weight$")


class Unsupported(Exception):
    """The adapter changes what the graph's LoRA inputs cannot (the reason says what)."""


@dataclass(frozen=True)
class Group:
    """One MatMulNBits of a layer and the projections it computes: (module, first column, width)."""

    layer: int
    inputs: int  # the width of the layer input x
    outputs: int
    members: tuple[tuple[str, int, int], ...]

    def names(self, prefix: str) -> tuple[str, str]:
        return f"{prefix}.A", f"{prefix}.B"


def ensure_graph(folder: Path) -> dict[str, Group]:
    """The graph with LoRA inputs in `folder` (written once) and its groups by input prefix."""
    graph, mapping = folder / LORA_GRAPH, folder / LORA_MAP
    if not (graph.is_file() and _version(mapping) == VERSION):
        _write_graph(folder)
    raw = json.loads(mapping.read_text())["groups"]
    return {prefix: Group(g["layer"], g["inputs"], g["outputs"], tuple(tuple(m) for m in g["members"]))
            for prefix, g in raw.items()}


def _version(mapping: Path) -> int | None:
    try:
        return json.loads(mapping.read_text()).get("version")
    except (OSError, ValueError, AttributeError):
        return None


def _write_graph(folder: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    graph = model.graph
    decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    head = int(decoder["head_size"])
    q_width = int(decoder["num_attention_heads"]) * head
    kv_width = int(decoder["num_key_value_heads"]) * head
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    inits = {i.name: i for i in graph.initializer}
    groups: dict[str, dict[str, Any]] = {}
    added = []
    for node in list(graph.node):
        match = _LAYER_NODE.match(node.name)
        if match is None or node.op_type not in ("MatMulNBits", "MatMul"):
            continue
        layer, proj = int(match.group(1)), match.group(2)
        if node.op_type == "MatMul":  # a float graph: the weight is an initializer [in, out]
            if node.input[1] not in inits:
                continue
            width_in, out_width = (int(d) for d in inits[node.input[1]].dims)
        else:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            width_in, out_width = int(attrs["K"]), int(attrs["N"])
        x = node.input[0]
        source = producer.get(x)
        if source is not None and source.op_type == "Concat" and x.startswith("ember/"):
            # onnx_exact appended x's block sums to the input: the LoRA product reads x itself
            x = source.input[0]
            width_in = int(numpy_helper.to_array(inits[f"ember/{x}/block_shape"])[2]) * 32
        split = [c for c in consumers.get(node.output[0], []) if c.op_type == "Split"]
        if proj == "qkv_proj":
            members = [("q_proj", 0, q_width), ("k_proj", q_width, kv_width),
                       ("v_proj", q_width + kv_width, kv_width)]
        elif split and len(split[0].input) > 1 and split[0].input[1] in inits:
            widths = numpy_helper.to_array(inits[split[0].input[1]]).tolist()
            names = [_SPLIT_OUTPUT.search(o) for o in split[0].output]
            if any(n is None for n in names):
                continue
            starts = np.cumsum([0, *widths[:-1]]).tolist()
            members = [(n.group(1), int(s), int(w)) for n, s, w in zip(names, starts, widths, strict=True) if n]
        else:
            members = [(proj, 0, out_width)]
        prefix = f"lora.layers.{layer}.{proj}"
        a, b = f"{prefix}.A", f"{prefix}.B"
        graph.input.append(helper.make_tensor_value_info(a, TensorProto.FLOAT, [width_in, f"{prefix}.rank"]))
        graph.input.append(helper.make_tensor_value_info(b, TensorProto.FLOAT, [f"{prefix}.rank", out_width]))
        base = node.output[0] + "/without_lora"
        out = node.output[0]
        node.output[0] = base
        added += [helper.make_node("MatMul", [x, a], [f"{prefix}/xa"], name=f"{prefix}/A"),
                  helper.make_node("MatMul", [f"{prefix}/xa", b], [f"{prefix}/xab"], name=f"{prefix}/B"),
                  helper.make_node("Add", [base, f"{prefix}/xab"], [out], name=f"{prefix}/Add")]
        groups[prefix] = {"layer": layer, "inputs": width_in, "outputs": out_width, "members": members}
    if not groups:
        raise Unsupported("the converted graph has no decoder projections to put LoRA inputs on")
    graph.node.extend(added)  # onnxruntime orders the nodes itself
    tmp = folder / f".{LORA_GRAPH}.{os.getpid()}"
    onnx.save(model, str(tmp))
    os.replace(tmp, folder / LORA_GRAPH)  # other daemons share the folder: whole files only
    tmp_map = folder / f".{LORA_MAP}.{os.getpid()}"
    tmp_map.write_text(json.dumps({"version": VERSION, "groups": groups}))
    os.replace(tmp_map, folder / LORA_MAP)


def adapter_inputs(groups: dict[str, Group], config: dict[str, Any], weights: dict[str, Any]) -> dict[str, np.ndarray]:
    """The graph inputs that feed a peft LoRA adapter (its adapter_config.json and tensors).
    Raises Unsupported for what the graph cannot take, ValueError where the adapter does not fit."""
    for flag in ("use_dora", "lora_bias"):
        if config.get(flag):
            raise Unsupported(f"{flag} adapters")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise Unsupported("per-module rank or alpha patterns")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(rank, int) or rank <= 0 or not isinstance(alpha, int | float):
        raise ValueError("adapter_config.json needs an integer r and a number lora_alpha")
    scale = alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
    by_module: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    other = []
    for key, tensor in weights.items():
        match = _PEFT_KEY.search(key)
        if match is None:
            other.append(key)
            continue
        by_module.setdefault((int(match.group(1)), match.group(2)), {})[match.group(3)] = _numpy(tensor)
    if other:
        raise Unsupported(f"LoRA outside the decoder layers' projections ({', '.join(sorted(other)[:3])})")
    inputs: dict[str, np.ndarray] = {}
    used = set()
    for prefix, group in groups.items():
        a_parts, b_parts = [], []
        for module, first, width in group.members:
            pair = by_module.get((group.layer, module))
            if pair is None:
                continue
            used.add((group.layer, module))
            a, b = pair.get("A"), pair.get("B")
            if a is None or b is None:
                raise ValueError(f"layer {group.layer} {module}: lora_A or lora_B is missing")
            r = a.shape[0]
            if r != rank:
                raise ValueError(f"layer {group.layer} {module}: rank {r}, but adapter_config.json says r = {rank}")
            if a.shape != (r, group.inputs) or b.shape != (width, r):
                raise ValueError(f"layer {group.layer} {module}: lora_A {tuple(a.shape)} and lora_B "
                                 f"{tuple(b.shape)}, the model needs ({r}, {group.inputs}) and ({width}, {r})")
            full_b = np.zeros((r, group.outputs), np.float32)
            full_b[:, first:first + width] = scale * b.T
            a_parts.append(a.T)
            b_parts.append(full_b)
        if not a_parts:  # an input the adapter does not change: a product of zeros
            a_parts, b_parts = [np.zeros((group.inputs, 1), np.float32)], [np.zeros((1, group.outputs), np.float32)]
        name_a, name_b = group.names(prefix)
        inputs[name_a] = np.ascontiguousarray(np.concatenate(a_parts, axis=1), dtype=np.float32)
        inputs[name_b] = np.ascontiguousarray(np.concatenate(b_parts, axis=0), dtype=np.float32)
    unused = sorted({m for _, m in by_module} - {m for _, m in used})
    if set(by_module) - used:
        raise Unsupported(f"LoRA on modules the graph does not compute apart ({', '.join(unused) or 'layers'})")
    return inputs


def write_adapter(inputs: dict[str, np.ndarray], path: Path) -> None:
    """An .onnx_adapter file (onnxruntime's adapter format) with these inputs."""
    import onnxruntime

    adapter = onnxruntime.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    adapter.set_parameters({k: onnxruntime.OrtValue.ortvalue_from_numpy(v) for k, v in inputs.items()})
    adapter.export_adapter(str(path))


def _numpy(tensor: Any) -> np.ndarray:
    if isinstance(tensor, np.ndarray):
        return tensor.astype(np.float32, copy=False)
    return tensor.detach().float().cpu().numpy()
