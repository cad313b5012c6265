"""Fuse the 4- and 8-bit projections that read the same input into one MatMulNBits.

A decode step multiplies one row of activations by each weight matrix, and at that size each
MatMulNBits pays a fixed price to hand work to onnxruntime's threads and to quantize its input to
int8 (measured here: a 576x576 layer takes 10-12 us on two threads, as on one; a 3072x576 layer
31-35 us against 51).
SmolLM2's MLP gate and up projections read the same normed input: run as one operator of twice the
width and split after, they pay that price once. The logits are bit for bit the same; decode on two
threads was 0-6% faster in four side-by-side runs (bench/exact_cost.py has the unfused variant).
The attention's q, k and v come packed from the exporter already.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FUSED_SUFFIX = "/fused"


def fuse_sibling_matmuls(graph) -> int:
    """Replace each group of MatMulNBits nodes with the same input and the same settings (all but N)
    by one node whose rows are theirs in turn, followed by a Split into their outputs. Returns how
    many MatMulNBits nodes are gone."""
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    old = list(graph.node)
    groups: dict[tuple, list[int]] = {}  # node positions by what must match
    for at, node in enumerate(old):
        key = _fusion_key(node, inits)
        if key is not None:
            groups.setdefault(key, []).append(at)
    gone = 0
    fused_into: dict[int, list] = {}  # a group's first position -> the nodes that replace the group
    dropped: set[int] = set()
    for positions in groups.values():
        if len(positions) < 2:
            continue
        members = [old[at] for at in positions]
        first = members[0]
        name = (first.name or f"ember/node{positions[0]}") + FUSED_SUFFIX  # names the new constants
        weights = [name + "/weights", name + "/scales", name + "/zero_points"][:len(first.input) - 1]
        for slot, tensor in enumerate(weights, start=1):
            arrays = [numpy_helper.to_array(inits[m.input[slot]]) for m in members]
            joined = np.concatenate([a.reshape(_rows(m), -1) for a, m in zip(arrays, members, strict=True)])
            graph.initializer.append(numpy_helper.from_array(joined.reshape(-1, *arrays[0].shape[1:]), tensor))
        widths = [_rows(m) for m in members]
        node = helper.make_node("MatMulNBits", [first.input[0], *weights], [name + "/output"], name=name,
                                domain=first.domain)
        node.attribute.extend(a for a in first.attribute if a.name != "N")
        node.attribute.append(helper.make_attribute("N", sum(widths)))
        graph.initializer.append(numpy_helper.from_array(np.array(widths, dtype=np.int64), name + "/widths"))
        split = helper.make_node("Split", [name + "/output", name + "/widths"],
                                 [m.output[0] for m in members], name=name + "/split", axis=-1)
        fused_into[positions[0]] = [node, split]
        dropped.update(positions)
        gone += len(members) - 1
    if not gone:
        return 0
    nodes = []
    for at, node in enumerate(old):
        if at in fused_into:
            nodes.extend(fused_into[at])
        elif at not in dropped:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    drop_unused_initializers(graph)
    return gone


def fuse_saved_model(model_dir: Path) -> int:
    """fuse_sibling_matmuls on the model saved in `model_dir` (the exporter's own int4 and int8)."""
    import onnx

    model = onnx.load(str(model_dir / "model.onnx"))
    gone = fuse_sibling_matmuls(model.graph)
    if gone:
        save_model(model, model_dir)
    return gone


def save_model(model, model_dir: Path) -> None:
    """Write `model` (every tensor in memory) over model.onnx and model.onnx.data in `model_dir`. The
    data file is written anew: onnx would append to an existing one."""
    import onnx

    (model_dir / "model.onnx.data").unlink(missing_ok=True)
    onnx.save(model, str(model_dir / "model.onnx"), save_as_external_data=True, location="model.onnx.data")


def _rows(node) -> int:
    return int(next(a.i for a in node.attribute if a.name == "N"))


def _fusion_key(node, inits: dict) -> tuple | None:
    """What must match for nodes to fuse: the input, every attribute but N, and which inputs are
    given. Only weights, scales and (optionally) zero points held as initializers; one output."""
    if node.op_type != "MatMulNBits" or len(node.output) != 1 or not 3 <= len(node.input) <= 4:
        return None
    if any(not name or name not in inits for name in node.input[1:]):
        return None
    if any(a.type != a.INT for a in node.attribute):
        return None
    settings = tuple(sorted((a.name, a.i) for a in node.attribute if a.name != "N"))
    return (node.input[0], node.domain, settings, len(node.input))


def drop_unused_initializers(graph) -> None:
    """Constants no node reads any more would still be saved and loaded."""
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
