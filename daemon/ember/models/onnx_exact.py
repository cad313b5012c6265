"""Put a GGUF's own quantized blocks into an onnxruntime-genai model, as they are stored.

The ONNX builder quantizes from float weights. For a GGUF source those floats are dequantized
blocks already, and rounding them again loses accuracy (SmolLM2's Q4_1: perplexity 17.05 against
12.63). So every linear layer takes the GGUF's blocks as they are stored:

- Q4_0 (w = d*(q-8)) and Q8_0 (w = d*q) are MatMulNBits' own symmetric 4- and 8-bit formats (zero
  point 8 or 128 implied): copied.
- Q4_1 (w = d*q + m) has a float minimum per block, which MatMulNBits' fast kernels cannot take
  (float zero points ran 40x slower). It is written as w = d*(q - z) + r: z the integer zero point
  nearest -m/d, which the kernels take, and a remainder r = m + d*z of at most half a step. Since
  r is constant over a block, its share of the product is S(x) @ r, S(x) the sums of x over each
  32-wide block. Those sums are appended to the layer's input and r to its weights as
  REMAINDER_DIGITS extra 4-bit digits (each carrying what the one before left over), so one
  MatMulNBits still computes the whole layer. One digit carries every remainder of SmolLM2's GGUF
  to within 3.6% of its row's largest step (1.3% on average); a second would cut that to 0.08% but
  costs a block and an operator per layer input (one digit decodes 1.01-1.07x faster on two
  threads) for a perplexity change within noise (docs/engines.md). A GGUF whose remainders fit
  worse than REMAINDER_TOLERANCE is not mapped. A float32 product for r (`digits=0`) is exact but
  a second pass per layer: 13 MB more per token in 150 small products.

Each GGUF tensor is dequantized and compared with the float weights that transformers read from
the same GGUF; any difference aborts (ExactMappingError), so a wrong layout can never be used.
Supported: the `llama` architecture (Llama, SmolLM, Mistral GGUFs) with Q4_0, Q4_1 and Q8_0 tensors.

A Q8_0 output layer is read at 4 bits to pick a shortlist: each position's SHORTLIST highest logits
are then computed again from the 8-bit rows themselves (in float32), and the rest keep their 4-bit
values. The output layer is the largest single weight (a quarter of the bytes read per token), so
this decodes about 5% faster; the logits that decide greedy and sampled tokens stay those of the
GGUF's weights, and perplexity rises 2.6% (12.97 against 12.65; docs/engines.md, measured by
bench/exact_cost.py). The 8-bit rows also serve the tied embedding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .onnx_fuse import drop_unused_initializers, fuse_sibling_matmuls, save_model

BLOCK = 32
SHORTLIST = 64  # output-layer logits per position recomputed from the 8-bit rows
SHORTLIST_BLOCK = 64  # block size of the 4-bit output layer that picks them
REMAINDER_DIGITS = 1  # 4-bit digits per Q4_1 remainder (docs/engines.md: why one)
REMAINDER_TOLERANCE = 1 / 16  # of the largest step in a row: a worse fit is no mapping of the GGUF
SUPPORTED_TYPES = {"Q4_0", "Q4_1", "Q8_0"}
SUPPORTED_ARCHS = {"llama"}
_LAYER_NODE = re.compile(r"^/model/layers\.(\d+)/(?:attn|mlp)/(\w+)/MatMul")


class ExactMappingError(Exception):
    """This GGUF cannot be mapped exactly; the caller converts another way."""


@dataclass
class Blocks:
    kind: str  # Q4_0, Q4_1 or Q8_0
    q: np.ndarray  # [rows, blocks, 32]: 0..15 for 4-bit kinds, int8 for Q8_0
    d: np.ndarray  # [rows, blocks] float32 scales
    m: np.ndarray | None  # [rows, blocks] float32 minimums (Q4_1)

    def dequantize(self) -> np.ndarray:
        if self.kind == "Q8_0":
            w = self.d[..., None] * self.q.astype(np.float32)
        elif self.kind == "Q4_0":
            w = self.d[..., None] * (self.q.astype(np.float32) - 8)
        else:
            assert self.m is not None
            w = self.d[..., None] * self.q.astype(np.float32) + self.m[..., None]
        return w.reshape(self.q.shape[0], -1)


def _half(raw: np.ndarray) -> np.ndarray:
    return raw.copy().view(np.float16)[..., 0].astype(np.float32)


def read_blocks(tensor) -> Blocks:
    """A GGUF tensor's blocks, rows in the file's order (a gguf.ReaderTensor)."""
    kind = tensor.tensor_type.name
    raw = np.asarray(tensor.data)
    rows = raw.shape[0]
    if kind == "Q8_0":
        b = raw.reshape(rows, -1, 34)
        return Blocks(kind, b[..., 2:34].copy().view(np.int8), _half(b[..., 0:2]), None)
    if kind in ("Q4_0", "Q4_1"):
        size = 18 if kind == "Q4_0" else 20
        b = raw.reshape(rows, -1, size)
        qs = b[..., size - 16:]
        # ggml packs element j in the low nibble of byte j and element j+16 in its high nibble.
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)
        m = _half(b[..., 2:4]) if kind == "Q4_1" else None
        return Blocks(kind, q, _half(b[..., 0:2]), m)
    raise ExactMappingError(f"tensor {tensor.name} is {kind}; exact mapping takes "
                            f"{', '.join(sorted(SUPPORTED_TYPES))}")


def _unpermute(rows: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter reorders q/k rows for its rotary layout; undo it, as transformers does."""
    half = rows.shape[0] // heads // 2
    return rows.reshape(heads, half, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _rows(blocks: Blocks, heads: int | None) -> Blocks:
    if heads is None:
        return blocks
    m = _unpermute(blocks.m, heads) if blocks.m is not None else None
    return Blocks(blocks.kind, _unpermute(blocks.q, heads), _unpermute(blocks.d, heads), m)


def _concat(parts: list[Blocks]) -> Blocks:
    kinds = {p.kind for p in parts}
    if len(kinds) > 1 and kinds != {"Q4_0", "Q4_1"}:
        raise ExactMappingError(f"packed projections mix block kinds {sorted(kinds)}")
    if len(kinds) == 1:
        kind = parts[0].kind
        m = np.concatenate([p.m for p in parts]) if kind == "Q4_1" else None
    else:  # Q4_0 is Q4_1 with m = -8d
        kind = "Q4_1"
        m = np.concatenate([p.m if p.m is not None else -8 * p.d for p in parts])
    return Blocks(kind, np.concatenate([p.q for p in parts]), np.concatenate([p.d for p in parts]), m)


def _projections(layer: int, part: str, n_head: int, n_kv: int) -> list[tuple[str, int | None, str]]:
    """(GGUF tensor, heads to unpermute by, transformers weight) for one builder MatMul node."""
    attn = f"model.layers.{layer}.self_attn"
    mlp = f"model.layers.{layer}.mlp"
    q = (f"blk.{layer}.attn_q.weight", n_head, f"{attn}.q_proj.weight")
    k = (f"blk.{layer}.attn_k.weight", n_kv, f"{attn}.k_proj.weight")
    v = (f"blk.{layer}.attn_v.weight", None, f"{attn}.v_proj.weight")
    gate = (f"blk.{layer}.ffn_gate.weight", None, f"{mlp}.gate_proj.weight")
    up = (f"blk.{layer}.ffn_up.weight", None, f"{mlp}.up_proj.weight")
    table: dict[str, list[tuple[str, int | None, str]]] = {
        "qkv_proj": [q, k, v], "q_proj": [q], "k_proj": [k], "v_proj": [v],
        "o_proj": [(f"blk.{layer}.attn_output.weight", None, f"{attn}.o_proj.weight")],
        "gate_up_proj": [gate, up], "gate_proj": [gate], "up_proj": [up],
        "down_proj": [(f"blk.{layer}.ffn_down.weight", None, f"{mlp}.down_proj.weight")],
    }
    if part not in table:
        raise ExactMappingError(f"unexpected builder node for layer {layer}: {part}")
    return table[part]


def check_supported(gguf_path: Path) -> None:
    """Raise ExactMappingError unless this GGUF can be mapped exactly."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    arch = reader.fields["general.architecture"].contents()
    if arch not in SUPPORTED_ARCHS:
        raise ExactMappingError(f"architecture {arch!r} (exact mapping takes {sorted(SUPPORTED_ARCHS)})")
    kinds = {t.tensor_type.name for t in reader.tensors if len(t.shape) == 2}
    if not kinds <= SUPPORTED_TYPES:
        raise ExactMappingError(f"tensor types {sorted(kinds - SUPPORTED_TYPES)} "
                                f"(exact mapping takes {sorted(SUPPORTED_TYPES)})")


def apply(model_dir: Path, gguf_path: Path, reference_dir: Path,
          digits: int = REMAINDER_DIGITS, tolerance: float = REMAINDER_TOLERANCE, fuse: bool = True) -> dict[str, int]:
    """Rewrite the builder's 4-bit model in `model_dir` with the GGUF's blocks. Returns counts.
    `digits`: the 4-bit digits that carry Q4_1 remainders; 0 adds them as a float32 product.
    `tolerance`: how far off a remainder may be carried, in steps of its block.
    `fuse`: run the projections that read the same input as one (models/onnx_fuse.py)."""
    import onnx
    from gguf import GGUFReader
    from onnx import helper, numpy_helper
    from safetensors import safe_open

    check_supported(gguf_path)
    reader = GGUFReader(str(gguf_path))
    tensors = {t.name: t for t in reader.tensors}
    n_head = int(reader.fields["llama.attention.head_count"].contents())
    n_kv = int(reader.fields["llama.attention.head_count_kv"].contents())
    handles = [safe_open(str(f), framework="numpy") for f in sorted(reference_dir.glob("*.safetensors"))]

    def reference(name: str) -> np.ndarray:
        for h in handles:
            if name in h.keys():
                return h.get_tensor(name).astype(np.float32)
        raise ExactMappingError(f"reference weight {name} not found")

    model = onnx.load(str(model_dir / "model.onnx"))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes: list = []
    made: set[str] = set()  # the block-sum tensors already made
    counts = {"copied": 0, "with_remainders": 0, "eight_bit": 0, "shortlist": 0, "fused": 0}
    table: tuple[str, str] | None = None  # the output layer's 8-bit rows: (weights, scales)
    last_axis = "ember/last_axis"
    graph.initializer.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), last_axis))
    lm_head: Blocks | None = None

    def replace(name: str, array: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    def block_sums(x: str, k: int) -> str:
        """The sums of `x` over each block of 32 (made once per layer input)."""
        sums = f"ember/{x}/block_sums"
        if sums not in made:
            shape = f"ember/{x}/block_shape"
            graph.initializer.append(
                numpy_helper.from_array(np.array([0, 0, k // BLOCK, BLOCK], dtype=np.int64), shape))
            nodes.extend([helper.make_node("Reshape", [x, shape], [f"ember/{x}/blocks"]),
                          helper.make_node("ReduceSum", [f"ember/{x}/blocks", last_axis], [sums], keepdims=0)])
            made.add(sums)
        return sums

    def with_sums(x: str, k: int) -> str:
        """`x` followed by its block sums once per remainder digit: the input of the Q4_1 layers
        that read x. Each digit starts a block, so the sums are padded to whole blocks, except
        after the last digit: MatMulNBits pads a partial last block itself (one operator less)."""
        out = f"ember/{x}/with_sums"
        if out not in made:
            sums = block_sums(x, k)
            padded = []
            if digits > 1:
                pads, padded = f"ember/{x}/pads", [f"ember/{x}/padded_sums"] * (digits - 1)
                graph.initializer.append(numpy_helper.from_array(
                    np.array([0, 0, 0, 0, 0, _whole_blocks(k // BLOCK) - k // BLOCK], dtype=np.int64), pads))
                nodes.append(helper.make_node("Pad", [sums, pads], [padded[0]]))
            nodes.append(helper.make_node("Concat", [x, *padded, sums], [out], axis=-1))
            made.add(out)
        return out

    for node in graph.node:
        if node.op_type != "MatMulNBits":
            nodes.append(node)
            continue
        layer_node = _LAYER_NODE.match(node.name)
        if layer_node:
            parts = _projections(int(layer_node.group(1)), layer_node.group(2), n_head, n_kv)
        elif node.name.startswith("/lm_head/"):
            tied = "output.weight" not in tensors
            parts = [("token_embd.weight" if tied else "output.weight", None,
                      "model.embed_tokens.weight" if tied else "lm_head.weight")]
        else:
            raise ExactMappingError(f"unexpected MatMulNBits node {node.name}")
        blocks = _concat([_rows(read_blocks(tensors[g]), heads) for g, heads, _ in parts])
        expected = np.concatenate([reference(h) for _, _, h in parts])
        got = blocks.dequantize()
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=0, atol=1e-6 * float(
                np.abs(expected).max() or 1)):
            raise ExactMappingError(f"{node.name}: the GGUF blocks do not reproduce the reference weights")
        attrs = {a.name: a for a in node.attribute}
        if int(attrs["N"].i) != got.shape[0]:  # say, a graph whose projections are fused already
            raise ExactMappingError(f"{node.name}: {attrs['N'].i} rows, the GGUF has {got.shape[0]}")
        if int(attrs["block_size"].i) != BLOCK:
            raise ExactMappingError(f"{node.name}: builder block size {attrs['block_size'].i}")
        if len(node.input) > 3 and node.input[3]:
            node.input[3] = ""  # symmetric unless a Q4_1 mapping below sets its own
        head = node.name.startswith("/lm_head/")
        if head:
            lm_head = blocks
        if head and blocks.kind == "Q8_0":
            table = ("ember/token_table", "ember/token_table_scales")
            graph.initializer.extend([
                numpy_helper.from_array(_unsigned(blocks.q).reshape(blocks.q.shape[0], -1), table[0]),
                numpy_helper.from_array(blocks.d.astype(np.float32), table[1])])
            packed, scales = _four_bit(blocks.dequantize(), SHORTLIST_BLOCK)
            replace(node.input[1], packed)
            replace(node.input[2], scales)
            attrs["bits"].i, attrs["block_size"].i = 4, SHORTLIST_BLOCK
            nodes.append(node)
            nodes.extend(_shortlist(graph, node, table, SHORTLIST))
            counts["shortlist"] = SHORTLIST
            continue
        if blocks.kind == "Q8_0":
            attrs["bits"].i = 8
            replace(node.input[1], _unsigned(blocks.q))
            replace(node.input[2], blocks.d.astype(np.float32))
            counts["eight_bit"] += 1
        elif blocks.kind == "Q4_0":
            attrs["bits"].i = 4
            replace(node.input[1], _pack(blocks.q))
            replace(node.input[2], blocks.d.astype(np.float32))
            counts["copied"] += 1
            if head:
                table = (node.input[1], node.input[2])
        else:  # Q4_1 as w = d*(q - z) + r, the remainders r riding on the block sums
            k = int(attrs["K"].i)
            zero_points, remainders = _zero_points(blocks)
            digits_q, digits_d = _digits(remainders, digits)
            if digits:
                _check_remainders(node.name, blocks,
                                  remainders - _undigit(digits_q, digits_d, remainders.shape[1]), tolerance)
            attrs["bits"].i = 4
            replace(node.input[1], _pack(np.concatenate([blocks.q, digits_q], axis=1)))
            replace(node.input[2], np.concatenate([blocks.d, digits_d], axis=1).astype(np.float32))
            _set_zero_points(graph, node, np.concatenate(
                [zero_points, np.full(digits_d.shape, 8, dtype=np.uint8)], axis=1))  # digits sit around 8
            counts["copied"] += 1
            counts["with_remainders"] += 1
            if not digits:
                sums = block_sums(node.input[0], k)
                nodes.append(node)
                nodes.extend(_float_remainders(graph, node, remainders, sums))
                continue
            node.input[0] = with_sums(node.input[0], k)
            attrs["K"].i = k + (digits - 1) * _whole_blocks(k // BLOCK) + k // BLOCK
        nodes.append(node)

    _map_embedding(graph, lm_head, table)
    del graph.node[:]
    graph.node.extend(nodes)
    counts["fused"] = fuse_sibling_matmuls(graph) if fuse else 0
    drop_unused_initializers(graph)
    # The whole folder is a work folder that is renamed into the cache only once complete.
    save_model(model, model_dir)
    return counts


def _map_embedding(graph, lm_head: Blocks | None, table: tuple[str, str] | None) -> None:
    """The builder's tied embedding gathers from lm_head's quantized weights: gather from the output
    layer's own blocks instead (`table`: its 8-bit rows, or its Q4_0 weights) at their bit width.
    A float embedding (untied models) was exact already."""
    from onnx import numpy_helper

    gathers = [n for n in graph.node if n.op_type == "GatherBlockQuantized"]
    if not gathers:
        return
    if lm_head is None or table is None or lm_head.kind not in ("Q8_0", "Q4_0"):
        raise ExactMappingError("the tied embedding needs a Q8_0 or Q4_0 output tensor")
    rows, blocks = lm_head.q.shape[:2]
    width = blocks * BLOCK if lm_head.kind == "Q8_0" else blocks * BLOCK // 2
    shape = "ember/embedding_shape"
    graph.initializer.append(numpy_helper.from_array(np.array([rows, width], dtype=np.int64), shape))
    reshapes = {n.output[0]: n for n in graph.node if n.op_type == "Reshape"}
    for gather in gathers:
        for attr in gather.attribute:
            if attr.name == "bits":
                attr.i = 8 if lm_head.kind == "Q8_0" else 4
        source = reshapes.get(gather.input[0])
        if source is None:
            raise ExactMappingError("the embedding does not share lm_head's weights")
        source.input[0], source.input[1] = table[0], shape
        gather.input[2] = table[1]


def _set_zero_points(graph, node, zero_points: np.ndarray) -> None:
    from onnx import numpy_helper

    name = f"ember/{node.name}/zero_points"
    graph.initializer.append(numpy_helper.from_array(_pack(zero_points).reshape(-1), name))
    del node.input[3:]
    node.input.extend([""] * (3 - len(node.input)) + [name])


def _float_remainders(graph, node, remainders: np.ndarray, sums: str) -> list:
    """The remainders as a float32 product of their own, added to `node`'s output: exact, and
    slower than digits (a second pass over as many bytes as the layer's scales)."""
    from onnx import helper, numpy_helper

    y = node.output[0]
    node.output[0] = f"ember/{y}/without_remainders"
    name = f"ember/{node.name}/remainders"
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(remainders.T).astype(np.float32), name))
    return [helper.make_node("MatMul", [sums, name], [f"ember/{y}/remainders"]),
            helper.make_node("Add", [node.output[0], f"ember/{y}/remainders"], [y])]


def _zero_points(blocks: Blocks) -> tuple[np.ndarray, np.ndarray]:
    """Q4_1's w = d*q + m as d*(q - z) + r: z the integer zero point (0..15) nearest -m/d, and the
    remainder r = m + d*z per block, at most half a step where -m/d lies within 0..15."""
    assert blocks.m is not None
    d, m = blocks.d.astype(np.float64), blocks.m.astype(np.float64)
    z = np.clip(np.round(np.divide(-m, d, out=np.zeros_like(m), where=d != 0)), 0, 15)
    return z.astype(np.uint8), m + d * z


def _whole_blocks(n: int) -> int:
    """n columns rounded up to whole blocks."""
    return -(-n // BLOCK) * BLOCK


def _digits(r: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """[rows, n] remainders as `count` 4-bit digits over blocks of 32 (n padded with zeros), each
    digit carrying what the ones before left over: values 0..15 around 8, [rows, count*blocks, 32],
    and float32 scales [rows, count*blocks]."""
    rows, n = r.shape
    width = _whole_blocks(n)
    rest = np.zeros((rows, width))
    rest[:, :n] = r
    qs, scales = [], []
    for _ in range(count):
        b = rest.reshape(rows, -1, BLOCK)
        d = (np.abs(b).max(-1) / 7).astype(np.float32).astype(np.float64)
        d[d == 0] = 1
        q = np.clip(np.round(b / d[..., None]), -8, 7)
        rest -= (q * d[..., None]).reshape(rows, width)
        qs.append((q + 8).astype(np.uint8))
        scales.append(d.astype(np.float32))
    return (np.concatenate(qs, axis=1) if qs else np.zeros((rows, 0, BLOCK), np.uint8),
            np.concatenate(scales, axis=1) if scales else np.zeros((rows, 0), np.float32))


def _undigit(q: np.ndarray, d: np.ndarray, n: int) -> np.ndarray:
    """The remainders that `_digits`' output carries (the first n of each row)."""
    rows = q.shape[0]
    per_digit = (q.astype(np.float64) - 8) * d[..., None]
    if not per_digit.size:
        return np.zeros((rows, n))
    count = q.shape[1] // -(-n // BLOCK)
    return per_digit.reshape(rows, count, -1).sum(axis=1)[:, :n]


def _check_remainders(name: str, blocks: Blocks, error: np.ndarray,
                      tolerance: float = REMAINDER_TOLERANCE) -> None:
    """Every remainder must be carried to within `tolerance` of the largest step in its row.

    What reaches the product is a remainder's absolute error (times its block's input sum), so it
    is measured against the row's coarsest step, not its own block's: a block with a tiny step
    has a tiny remainder. One digit carries remainders of at most half a step to within 1/28 of
    the row's largest step; it fails where a minimum lies far outside the zero points' reach."""
    step = blocks.d.max(axis=1, keepdims=True)
    worst = float((np.abs(error) / np.maximum(step, 1e-12)).max()) if error.size else 0.0
    if worst > tolerance:
        raise ExactMappingError(f"{name}: Q4_1 remainders off by {worst:.2f} of the row's largest step")


def _pack(q: np.ndarray) -> np.ndarray:
    """4-bit values along the last axis, two to a byte, the first in the low nibble (odd lengths
    padded)."""
    q = q.astype(np.uint8)
    if q.shape[-1] % 2:
        q = np.concatenate([q, np.zeros(q.shape[:-1] + (1,), np.uint8)], axis=-1)
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def _unsigned(q: np.ndarray) -> np.ndarray:
    """Q8_0's int8 values as MatMulNBits and GatherBlockQuantized store 8 bits: uint8, zero point 128."""
    return (q.astype(np.int16) + 128).astype(np.uint8)


def _four_bit(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """[rows, K] floats as MatMulNBits' symmetric 4-bit blocks: (packed, scales). Each block's
    largest magnitude maps to -8, as ggml's Q4_0 does."""
    rows, k = w.shape
    if k % block:
        raise ExactMappingError(f"the output layer's width {k} is not a multiple of {block}")
    b = w.reshape(rows, -1, block)
    extreme = np.take_along_axis(b, np.abs(b).argmax(-1)[..., None], -1)[..., 0]
    d = extreme / -8
    d[d == 0] = 1
    q = np.clip(np.round(b / d[..., None]) + 8, 0, 15)
    return _pack(q), d.astype(np.float32)


def _shortlist(graph, node, table: tuple[str, str], k: int) -> list:
    """Nodes after the (now 4-bit) output layer `node` that recompute each position's k highest
    logits from the 8-bit rows in `table`. Rows are gathered once per distinct token of the run
    (Unique), so a 256-token prefill chunk gathers a few thousand rows, not 256 * k."""
    from onnx import helper, numpy_helper

    h, logits = node.input[0], node.output[0]
    approx = "ember/shortlist/approx_logits"
    node.output[0] = approx
    hidden = int(next(a.i for a in node.attribute if a.name == "K"))
    consts = {"ember/shortlist/k": [k], "ember/shortlist/flat": [-1],
              "ember/shortlist/rows_by_hidden": [-1, hidden], "ember/shortlist/rows_by_k": [-1, k]}
    for name, value in consts.items():
        graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.int64), name))
    p = "ember/shortlist/"
    return [
        helper.make_node("TopK", [approx, p + "k"], [p + "values", p + "ids"], axis=-1),
        helper.make_node("Reshape", [p + "ids", p + "flat"], [p + "flat_ids"]),
        helper.make_node("Unique", [p + "flat_ids"], [p + "tokens", "", p + "inverse", ""], sorted=0),
        helper.make_node("GatherBlockQuantized", [table[0], p + "tokens", table[1]], [p + "rows"],
                         domain="com.microsoft", bits=8, block_size=BLOCK, gather_axis=0, quantize_axis=1),
        helper.make_node("Reshape", [h, p + "rows_by_hidden"], [p + "hidden"]),
        helper.make_node("Gemm", [p + "hidden", p + "rows"], [p + "scores"], transB=1),
        helper.make_node("Reshape", [p + "inverse", p + "rows_by_k"], [p + "columns"]),
        helper.make_node("GatherElements", [p + "scores", p + "columns"], [p + "exact_2d"], axis=1),
        helper.make_node("Shape", [p + "ids"], [p + "ids_shape"]),
        helper.make_node("Reshape", [p + "exact_2d", p + "ids_shape"], [p + "exact"]),
        helper.make_node("ScatterElements", [approx, p + "ids", p + "exact"], [logits], axis=-1),
    ]
