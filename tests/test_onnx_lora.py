"""LoRA on onnxruntime (models/onnx_lora.py): the stacked inputs are each member's own LoRA product
in its own columns, what the graph cannot take is named, and on a tiny model converted by the
builder the graph with an adapter gives peft's own logits."""

from __future__ import annotations

import numpy as np
import pytest

import tiny_models
from ember.models import onnx_lora
from ember.models.onnx_lora import Group, Unsupported, adapter_inputs

KEY = "base_model.model.model.layers.{}.{}.{}.lora_{}.weight"


def lora_pair(rng, layer: int, part: str, module: str, rank: int, n_in: int, n_out: int) -> dict:
    return {KEY.format(layer, part, module, "A"): rng.normal(size=(rank, n_in)).astype(np.float32),
            KEY.format(layer, part, module, "B"): rng.normal(size=(n_out, rank)).astype(np.float32)}


def test_stacked_inputs_are_each_members_own_product_in_its_columns():
    rng = np.random.default_rng(0)
    groups = {"lora.layers.0.qkv_proj": Group(0, 8, 12, (("q_proj", 0, 6), ("k_proj", 6, 3), ("v_proj", 9, 3))),
              "lora.layers.0.down_proj": Group(0, 10, 8, (("down_proj", 0, 8),))}
    weights = {**lora_pair(rng, 0, "self_attn", "q_proj", 2, 8, 6), **lora_pair(rng, 0, "self_attn", "v_proj", 2, 8, 3)}
    config = {"r": 2, "lora_alpha": 6, "peft_type": "LORA"}
    inputs = adapter_inputs(groups, config, weights)
    x = rng.normal(size=(4, 8)).astype(np.float32)
    got = x @ inputs["lora.layers.0.qkv_proj.A"] @ inputs["lora.layers.0.qkv_proj.B"]
    scale = 6 / 2
    q = scale * x @ weights[KEY.format(0, "self_attn", "q_proj", "A")].T @ weights[KEY.format(0, "self_attn", "q_proj", "B")].T
    v = scale * x @ weights[KEY.format(0, "self_attn", "v_proj", "A")].T @ weights[KEY.format(0, "self_attn", "v_proj", "B")].T
    np.testing.assert_allclose(got[:, 0:6], q, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, 6:9], 0, atol=0)  # k has no LoRA in this adapter
    np.testing.assert_allclose(got[:, 9:12], v, rtol=1e-5, atol=1e-5)
    # a projection the adapter leaves alone gets a product of zeros
    assert not inputs["lora.layers.0.down_proj.A"].any() and not inputs["lora.layers.0.down_proj.B"].any()
    # rsLoRA scales by alpha / sqrt(r)
    rs = adapter_inputs(groups, {**config, "use_rslora": True}, weights)
    np.testing.assert_allclose(rs["lora.layers.0.qkv_proj.B"], inputs["lora.layers.0.qkv_proj.B"] * (2 / 2 ** 0.5),
                               rtol=1e-6)


@pytest.mark.parametrize("change, error, words", [
    ({"config": {"use_dora": True}}, Unsupported, "use_dora"),
    ({"config": {"alpha_pattern": {"q_proj": 4}}}, Unsupported, "patterns"),
    ({"weights": {"base_model.model.lm_head.lora_A.weight": np.zeros((2, 8), np.float32)}}, Unsupported,
     "outside the decoder layers"),
    ({"weights": lora_pair(np.random.default_rng(1), 0, "mlp", "gate_proj", 2, 8, 4)}, Unsupported, "gate_proj"),
    ({"config": {"r": 4}}, ValueError, "rank 2"),
    ({"weights": lora_pair(np.random.default_rng(1), 0, "self_attn", "q_proj", 2, 9, 6)}, ValueError, "(2, 8)"),
])
def test_what_the_graph_cannot_take_is_named(change, error, words):
    groups = {"lora.layers.0.qkv_proj": Group(0, 8, 12, (("q_proj", 0, 6), ("k_proj", 6, 3), ("v_proj", 9, 3)))}
    weights = lora_pair(np.random.default_rng(0), 0, "self_attn", "k_proj", 2, 8, 3)
    config = {"r": 2, "lora_alpha": 4, **change.get("config", {})}
    with pytest.raises(error) as err:
        adapter_inputs(groups, config, {**weights, **change.get("weights", {})})
    assert words in str(err.value)


def test_the_lora_graph_gives_pefts_logits_on_a_builder_converted_model(tmp_path, one_torch_thread):
    """A tiny Llama converted by the builder (float32: exact arithmetic to compare), an adapter with
    random A and B on every projection: the graph with LoRA inputs and peft agree on the logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from ember.engines.onnx_engine import OnnxLoraEngine
    from ember.models import onnx_convert

    folder = tiny_models.build_chat_causal_lm(tmp_path / "chat", layers=2)
    converted = onnx_convert.ensure(folder, "float32", tmp_path / "cache")
    groups = onnx_lora.ensure_graph(converted.folder)
    assert {g.layer for g in groups.values()} == {0, 1}
    modules = {m for g in groups.values() for m, _, _ in g.members}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= modules
    mapping = converted.folder / onnx_lora.LORA_MAP
    mapping.write_text('{"version": 0, "groups": {}}')  # an older layout: written again
    assert onnx_lora.ensure_graph(converted.folder) == groups

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                  target_modules="all-linear"))
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = [1, 40, 41, 42, 43, 44, 45, 46]
    with torch.no_grad():
        expected = peft_model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
        with peft_model.disable_adapter():
            base = peft_model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()

    engine = OnnxLoraEngine(converted.folder, onnx_lora.LORA_GRAPH, groups, threads=1)
    config = {"r": 4, "lora_alpha": 8}
    inputs = adapter_inputs(groups, config, load_file(str(tmp_path / "adapter" / "adapter_model.safetensors")))
    onnx_lora.write_adapter(inputs, engine.adapter_file("random"))
    engine.load_adapter("random", 0)
    seq = engine.new_sequence(32)
    seq.adapter = "random"
    got = seq.append(ids)
    seq.free()
    engine.close()
    assert np.abs(expected - base).max() > 0.1  # the adapter changes the logits...
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)  # ...as peft does
