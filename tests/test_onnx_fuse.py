"""models/onnx_fuse.py: MatMulNBits nodes that read the same input run as one, with the same outputs.
The converted SmolLM2 (its gate and up projections fused) is checked against float32 in
test_engines.py."""

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ember.models.onnx_fuse import fuse_sibling_matmuls

K = 96  # three blocks of 32
rng = np.random.default_rng(0)


def matmul(name: str, x: str, n: int, zero_points: bool = True, block_size: int = 32) -> tuple[list, object]:
    blocks = K // block_size
    inits = [numpy_helper.from_array(rng.integers(0, 256, (n, blocks, block_size // 2), dtype=np.uint8), name + "_b"),
             numpy_helper.from_array(rng.uniform(0.01, 0.1, (n, blocks)).astype(np.float32), name + "_s")]
    if zero_points:
        inits.append(numpy_helper.from_array(rng.integers(0, 256, n * -(-blocks // 2), dtype=np.uint8), name + "_z"))
    node = helper.make_node("MatMulNBits", [x] + [i.name for i in inits], [name + "_y"], name=name,
                            domain="com.microsoft", K=K, N=n, bits=4, block_size=block_size, accuracy_level=4)
    return inits, node


def model(parts: list[tuple[list, object]], extra_nodes: list) -> object:
    inits = [i for p in parts for i in p[0]]
    nodes = [p[1] for p in parts] + extra_nodes
    outputs = [p[1].output[0] for p in parts]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [2, K])
                                           for x in ("x", "other")],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])


FEEDS = {"x": rng.standard_normal((2, K)).astype(np.float32),
         "other": rng.standard_normal((2, K)).astype(np.float32)}


def run(m) -> list[np.ndarray]:
    session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, FEEDS)


def count(m, op: str) -> int:
    return sum(n.op_type == op for n in m.graph.node)


def test_projections_of_one_input_run_as_one_with_the_same_outputs():
    parts = [matmul("gate", "x", 64), matmul("up", "x", 64), matmul("wide", "x", 160),
             matmul("elsewhere", "other", 64)]
    m = model(parts, [])
    before = run(m)
    assert fuse_sibling_matmuls(m.graph) == 2
    after = run(m)
    assert count(m, "MatMulNBits") == 2 and count(m, "Split") == 1
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    assert {i.name for i in m.graph.initializer} == {
        "gate/fused/weights", "gate/fused/scales", "gate/fused/zero_points", "gate/fused/widths",
        "elsewhere_b", "elsewhere_s", "elsewhere_z"}


def test_projections_with_other_settings_stay_apart():
    parts = [matmul("a", "x", 32), matmul("b", "x", 32, zero_points=False), matmul("c", "x", 32, block_size=16),
             matmul("d", "other", 32)]
    m = model(parts, [])
    assert fuse_sibling_matmuls(m.graph) == 0
    assert count(m, "MatMulNBits") == 4


def test_nameless_groups_get_constants_of_their_own():
    parts = [matmul("a", "x", 32), matmul("b", "x", 32), matmul("c", "other", 48), matmul("d", "other", 16)]
    for _, node in parts:
        node.name = ""
    m = model(parts, [])
    before = run(m)
    assert fuse_sibling_matmuls(m.graph) == 2
    for a, b in zip(before, run(m), strict=True):
        np.testing.assert_array_equal(a, b)
