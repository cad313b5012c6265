"""How models/onnx_exact.py writes Q4_1 blocks for MatMulNBits: integer zero points plus remainders
carried as 4-bit digits. The whole converted model is checked against float32 in test_engines.py."""

import numpy as np
import pytest

from ember.models import onnx_exact
from ember.models.onnx_exact import BLOCK, Blocks, ExactMappingError


def q4_1_blocks(rows: int = 64, blocks: int = 18, seed: int = 0) -> Blocks:
    """Blocks shaped like a GGUF's: fp16 steps and minimums, the minimum near -8 steps."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.002, 0.03, (rows, blocks)).astype(np.float16).astype(np.float32)
    m = (-d * rng.uniform(6.5, 9.5, (rows, blocks))).astype(np.float16).astype(np.float32)
    q = rng.integers(0, 16, (rows, blocks, BLOCK)).astype(np.uint8)
    return Blocks("Q4_1", q, d, m)


def test_zero_points_leave_a_remainder_of_at_most_half_a_step():
    blocks = q4_1_blocks()
    z, r = onnx_exact._zero_points(blocks)
    rebuilt = blocks.d[..., None].astype(np.float64) * (blocks.q - z[..., None].astype(np.float64)) + r[..., None]
    assert np.abs(rebuilt.reshape(blocks.q.shape[0], -1) - blocks.dequantize()).max() < 1e-6
    assert np.all(np.abs(r) <= blocks.d / 2 + 1e-7)
    assert z.min() >= 0 and z.max() <= 15


def off_by(blocks: Blocks, r: np.ndarray, count: int) -> float:
    """How far `count` digits carry the remainders r, at worst, in the row's largest steps."""
    q, d = onnx_exact._digits(r, count)
    return float((np.abs(r - onnx_exact._undigit(q, d, r.shape[1])) / blocks.d.max(axis=1, keepdims=True)).max())


def test_each_digit_carries_what_the_one_before_left_over():
    blocks = q4_1_blocks()
    _, r = onnx_exact._zero_points(blocks)
    for count in (1, 2, 3):
        q, d = onnx_exact._digits(r, count)
        assert q.shape == (r.shape[0], count, BLOCK) and d.shape == (r.shape[0], count)  # 18 sums: 1 block each
        assert q.min() >= 0 and q.max() <= 15
    worst = [off_by(blocks, r, count) for count in (1, 2, 3)]
    assert worst[0] <= 1 / 28 + 1e-6  # half a step of a scale that puts half the largest step at 7
    assert worst[1] < worst[0] / 4 and worst[2] < worst[1] / 4
    assert worst[onnx_exact.REMAINDER_DIGITS - 1] <= onnx_exact.REMAINDER_TOLERANCE


def test_wide_layers_take_one_digit_block_per_32_sums():
    blocks = q4_1_blocks(rows=8, blocks=48)  # a 1,536-wide input: 48 sums, padded to 64
    _, r = onnx_exact._zero_points(blocks)
    q, d = onnx_exact._digits(r, 2)
    assert q.shape == (8, 4, BLOCK) and d.shape == (8, 4)
    assert np.abs(r - onnx_exact._undigit(q, d, 48)).max() < blocks.d.min() * onnx_exact.REMAINDER_TOLERANCE


def test_a_tiny_step_is_no_reason_to_refuse_the_mapping():
    """A block whose step is far below the others' has a remainder as small: its absolute error,
    which is what reaches the product, stays within the row's."""
    blocks = q4_1_blocks(rows=4)
    blocks.d[:, 0], blocks.m[:, 0] = 1e-6, -7.6e-6
    _, r = onnx_exact._zero_points(blocks)
    q, d = onnx_exact._digits(r, onnx_exact.REMAINDER_DIGITS)
    onnx_exact._check_remainders("layer", blocks, r - onnx_exact._undigit(q, d, r.shape[1]))


def test_a_minimum_beyond_the_zero_points_reach_stops_the_mapping():
    blocks = q4_1_blocks(rows=4)
    _, r = onnx_exact._zero_points(blocks)
    r[:, 1] = 0.5  # -m/d far outside 0..15: a remainder of many steps, which coarsens the others' digit
    q, d = onnx_exact._digits(r, onnx_exact.REMAINDER_DIGITS)
    with pytest.raises(ExactMappingError, match="remainders off by .* of the row's largest step"):
        onnx_exact._check_remainders("layer", blocks, r - onnx_exact._undigit(q, d, r.shape[1]))


def test_four_bit_values_pack_low_nibble_first():
    packed = onnx_exact._pack(np.array([[1, 2, 3, 4, 5]]))
    assert packed.tolist() == [[0x21, 0x43, 0x05]]
