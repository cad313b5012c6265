"""Each tiny-model builder writes a folder that loads and runs the way a user's model would."""

from __future__ import annotations

from pathlib import Path

import pytest

import tiny_models as tm

MAX_BYTES = 3 * 1024 * 1024

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _built(builder, folder: Path, *args, **kwargs) -> Path:
    out = builder(folder, *args, **kwargs)  # how long builds take: bench/tiny_models.py
    assert out == folder
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < MAX_BYTES, f"{folder.name} is {size} bytes"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).is_file(), name
    return out


def _hidden_sizes_ok(config) -> None:
    for attr in ("hidden_size", "d_model", "n_embd", "intermediate_size", "d_ff", "encoder_ffn_dim"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            assert value % 32 == 0, (attr, value)
    assert config.vocab_size % 32 == 0


@pytest.mark.parametrize("arch, model_type", [("marian", "marian"), ("t5", "t5"), ("bart", "bart")])
def test_seq2seq_generates(tmp_path, arch, model_type):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    folder = _built(tm.build_seq2seq, tmp_path / arch, arch=arch)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    assert model.config.model_type == model_type
    assert model.config.is_encoder_decoder
    _hidden_sizes_ok(model.config)

    enc = tokenizer(["Translate the following sentence into German.", "Hello"], padding=True,
                    return_tensors="pt")
    first = enc["input_ids"][0].tolist()
    assert first[-1] == tokenizer.eos_token_id  # every family ends the source with </s>
    if arch == "bart":
        assert first[0] == tokenizer.bos_token_id
    out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    assert out.shape[0] == 2 and 2 <= out.shape[1] <= 7
    start = model.generation_config.decoder_start_token_id
    assert start is not None and out[:, 0].tolist() == [start, start]
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)
    assert all(isinstance(t, str) for t in texts)
    # The tokenizer round-trips ordinary text (no unknown characters in it).
    sample = "Das Wetter ist heute schön."
    assert tokenizer.decode(tokenizer(sample)["input_ids"], skip_special_tokens=True).strip() == sample


def test_bad_seq2seq_arch(tmp_path):
    with pytest.raises(ValueError):
        tm.build_seq2seq(tmp_path / "x", arch="pegasus")


def test_text_classification_pipeline(tmp_path):
    from transformers import AutoConfig, pipeline

    labels = ["negative", "neutral", "positive"]
    folder = _built(tm.build_text_classification, tmp_path / "tc", labels=labels)
    config = AutoConfig.from_pretrained(folder)
    assert [config.id2label[i] for i in range(3)] == labels
    assert config.label2id == {label: i for i, label in enumerate(labels)}
    _hidden_sizes_ok(config)

    clf = pipeline("text-classification", model=str(folder))
    out = clf("I loved this movie", top_k=None)
    assert sorted(r["label"] for r in out) == sorted(labels)
    assert sum(r["score"] for r in out) == pytest.approx(1.0, abs=1e-5)


def test_zero_shot_pipeline(tmp_path):
    from transformers import AutoTokenizer, pipeline

    folder = _built(tm.build_zero_shot, tmp_path / "zs")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pair = tokenizer("a premise", "a hypothesis")
    assert pair["token_type_ids"][-1] == 1  # BERT-style segments for the NLI pair
    zsc = pipeline("zero-shot-classification", model=str(folder))
    assert zsc.entailment_id == zsc.model.config.label2id["entailment"]
    out = zsc("The build failed on the CI server.", candidate_labels=["bug", "praise", "question"])
    assert sorted(out["labels"]) == ["bug", "praise", "question"]
    assert sum(out["scores"]) == pytest.approx(1.0, abs=1e-5)


def test_token_classification_pipeline(tmp_path):
    from transformers import AutoConfig, pipeline

    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    folder = _built(tm.build_token_classification, tmp_path / "ner", labels=labels)
    config = AutoConfig.from_pretrained(folder)
    assert [config.id2label[i] for i in range(len(labels))] == labels

    text = "Alice Johnson moved from Paris to Berlin."
    ner = pipeline("token-classification", model=str(folder), aggregation_strategy="simple")
    for entity in ner(text):
        assert entity["entity_group"] in {"PER", "LOC"}
        assert 0 <= entity["start"] < entity["end"] <= len(text)
        assert text[entity["start"]:entity["end"]].lower() == entity["word"].replace(" ##", "")
    raw = pipeline("token-classification", model=str(folder))(text)
    assert all(r["entity"] in labels for r in raw)


@pytest.mark.parametrize("style, model_type", [
    ("starcoder", "gpt2"), ("codellama", "llama"), ("deepseek", "llama"), ("qwen", "qwen2"),
])
def test_fim_causal_lm(tmp_path, style, model_type):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _built(tm.build_fim_causal_lm, tmp_path / style, style=style)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert model.config.model_type == model_type
    _hidden_sizes_ok(model.config)

    fim = tm.FIM_TOKENS[style]
    ids = {role: tokenizer.convert_tokens_to_ids(fim[role]) for role in ("prefix", "suffix", "middle")}
    assert len(set(ids.values())) == 3 and tokenizer.unk_token_id not in ids.values()
    assert all(fim[role] in tokenizer.all_special_tokens for role in ("prefix", "suffix", "middle"))

    prompt = tm.FIM_FORMATS[style].format(prefix="def add(a, b):\n    return ", suffix="\n")
    enc = tokenizer(prompt, return_tensors="pt")
    tokens = enc["input_ids"][0].tolist()
    for role in ("prefix", "suffix", "middle"):
        assert tokens.count(ids[role]) == 1, (role, tokenizer.convert_ids_to_tokens(tokens))
    assert tokens.index(ids["prefix"]) < tokens.index(ids["suffix"]) < tokens.index(ids["middle"])
    out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 5 or tokenizer.eos_token_id in out[0].tolist()
    assert isinstance(tokenizer.decode(out[0, enc["input_ids"].shape[1]:]), str)


def test_chat_causal_lm(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _built(tm.build_chat_causal_lm, tmp_path / "chat")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    enc = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    assert enc["input_ids"][0, 0].item() == tokenizer.convert_tokens_to_ids("<|im_start|>")
    out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


def test_builds_repeat_within_a_process(tmp_path):
    a = tm.build_text_classification(tmp_path / "a")
    b = tm.build_text_classification(tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_chat_model_size_suits_a_one_mib_budget(tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tm.build_chat_causal_lm(tmp_path / "chat"))
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    assert (1 << 20) // 2 < size < (1 << 20)  # one fits in 1 MiB, two do not
