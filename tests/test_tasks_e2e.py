"""The tasks through a real daemon: SmolLM2 for the instruct paths, tiny built models for the rest.

Tiny models have random weights, so their tests check the path (loading through the user's code
path, prompt layout, result shape), not the quality of the output.
"""

from __future__ import annotations

import json

import pytest

import tiny_models
from ember.tasks.sentences import split_sentences

pytestmark = pytest.mark.model

REVIEW_POS = "I absolutely love this keyboard. The keys feel great and it works perfectly. Five stars!"
REVIEW_NEG = "Terrible product. It broke after two days, support ignored me, and I want a refund."
ARTICLE = (
    "The city council of Springfield voted on Tuesday to build a new public library downtown. "
    "The library will have three floors, a children's section and a maker space with 3D printers. "
    "Construction starts next spring and is expected to take two years. The project costs 40 million "
    "dollars, paid for by a bond that voters approved last year. Mayor Jane Alvarez said the library "
    "would be a place for everyone in Springfield to learn and meet."
)


@pytest.fixture
def smol(ember):
    d = ember("headers")
    d.call("initialize", {})
    return d


@pytest.mark.parametrize("engine", ["transformers", "onnxruntime"])
def test_complete_answers_simple_questions(ember, engine):
    d = ember("lines", ["--set", f"models.default.engine={engine}"])
    result = d.call("complete", {"messages": [{"role": "user", "content": "What is the capital of Japan?"}],
                                 "max_tokens": 24})
    assert "Tokyo" in result["text"]
    assert d.call("daemon/status")["models"][0]["engine"] == engine
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] > 0 and result["usage"]["prompt_tokens"] > 0
    assert result["timings"]["tokens_per_second"] > 0


def test_complete_options_stop_sequences_and_seed(smol):
    counted = smol.call("complete", {"prompt": "1, 2, 3, 4,", "max_tokens": 30, "stop": [" 7"]})
    assert counted["finish_reason"] == "stop"
    assert " 7" not in counted["text"] and "6" in counted["text"]
    sampled = [smol.call("complete", {"prompt": "Once upon a time", "max_tokens": 12, "temperature": 0.9,
                                      "top_p": 0.9, "top_k": 40, "seed": 7})["text"] for _ in range(2)]
    assert sampled[0] == sampled[1]
    short = smol.call("complete", {"prompt": "Once upon a time", "max_tokens": 3})
    assert short["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 3


def test_streaming_deltas_concatenate_to_the_final_text(smol):
    msg_id = smol.start_request("complete", {
        "messages": [{"role": "user", "content": "Name three colors."}], "max_tokens": 40, "stream": True,
        "stop": ["Blue"]})
    reply = smol.reply(msg_id)
    deltas = smol.stream_deltas(msg_id)
    assert len(deltas) > 1
    assert "".join(deltas) == reply["result"]["text"]
    # Notifications come before the reply: all of them were read while waiting for it.
    assert all(n["params"]["id"] == msg_id for n in smol.notifications if n["method"] == "ember/stream")


def test_summarize_is_shorter_and_keeps_the_subject(smol):
    result = smol.call("summarize", {"text": ARTICLE, "form": "sentence"})
    assert 0 < len(result["text"]) < len(ARTICLE)
    assert len(split_sentences(result["text"])) == 1, result["text"]
    assert "library" in result["text"].lower()
    assert result["stages"] == 1


def test_summarize_streams(smol):
    msg_id = smol.start_request("summarize", {"text": ARTICLE, "form": "bullets", "stream": True})
    reply = smol.reply(msg_id)["result"]
    assert "".join(smol.stream_deltas(msg_id)) == reply["text"]


def test_long_text_is_summarized_in_stages_not_truncated(ember):
    d = ember("lines", ["--set", "models.default.context_length=512"])
    text = "\n\n".join([ARTICLE] * 8)
    tokens = d.call("tokenize", {"text": text})["count"]
    assert tokens > 512
    result = d.call("summarize", {"text": text, "length": "short"})
    assert result["stages"] >= 2
    assert result["usage"]["prompt_tokens"] > tokens  # every part of the text was read
    assert result["text"]


def test_input_too_long_names_the_counts(ember):
    d = ember("lines", ["--set", "models.default.context_length=64"])
    reply = d.request("complete", {"prompt": "word " * 200, "max_tokens": 4})
    error = reply["error"]
    assert error["code"] == -32002
    assert error["data"]["tokens"] > error["data"]["limit"]
    assert str(error["data"]["tokens"]) in error["message"]


def test_translate_keeps_code_and_markdown_structure(smol):
    text = "# Greeting\n\nGood morning, my friend. Run `make test` now.\n\n```python\nprint('hello')\n```\n\n- first item\n- second item\n"
    msg_id = smol.start_request("translate", {"text": text, "target": "French", "stream": True})
    result = smol.reply(msg_id)["result"]
    out = result["text"]
    assert "```python\nprint('hello')\n```\n" in out
    assert "`make test`" in out
    assert out.startswith("# ")
    assert out.count("\n- ") == 2
    assert "".join(smol.stream_deltas(msg_id)) == out


def test_classify_on_smollm2(smol):
    pos = smol.call("classify", {"text": REVIEW_POS})
    neg = smol.call("classify", {"text": REVIEW_NEG})
    assert pos["label"] == "positive" and neg["label"] == "negative"
    assert abs(sum(s["score"] for s in pos["scores"]) - 1) < 1e-6
    assert {s["label"] for s in pos["scores"]} == {"positive", "negative", "neutral"}
    custom = smol.call("classify", {"text": "The build failed with a segfault.", "labels": ["bug", "feature request"]})
    assert custom["label"] in ("bug", "feature request") and len(custom["scores"]) == 2


def test_tokenize_chat_template_and_special_tokens(smol):
    messages = [{"role": "user", "content": "Hi"}]
    with_prompt = smol.call("tokenize", {"messages": messages})
    assert with_prompt["text"].endswith("<|im_start|>assistant\n")
    without = smol.call("tokenize", {"messages": messages, "add_generation_prompt": False})
    assert not without["text"].endswith("<|im_start|>assistant\n")
    assert with_prompt["count"] > without["count"]
    assert smol.call("detokenize", {"ids": with_prompt["ids"]})["text"] == with_prompt["text"]
    assert smol.call("detokenize", {"ids": with_prompt["ids"], "skip_special_tokens": True})["text"] != with_prompt["text"]
    bad = smol.request("detokenize", {"ids": [10**9]})
    assert bad["error"]["code"] == -32602 and "ids" in bad["error"]["message"]


# -- tiny models through the same loading path as a user's model --------------------------------


def configured(ember, tmp_path, models: dict, tasks: dict, framing="lines"):
    lines = []
    for name, table in models.items():
        lines.append(f"[models.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    lines.append("[tasks]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in tasks.items()]
    cfg = tmp_path / "ember.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return ember(framing, ["--config", str(cfg)])


@pytest.mark.parametrize("arch", ["marian", "t5", "bart"])
def test_seq2seq_summarize_and_translate(ember, tmp_path, arch):
    folder = tiny_models.build_seq2seq(tmp_path / arch, arch=arch)
    d = configured(ember, tmp_path, {"default": {"source": "smollm2"}, "s2s": {"source": str(folder), "kind": "seq2seq"}},
                   {"summarize": "s2s", "translate": "s2s"})
    summary = d.call("summarize", {"text": "the cat sat on the mat. " * 4, "max_tokens": 8})
    assert summary["model"] == "s2s" and summary["usage"]["completion_tokens"] > 0
    translated = d.call("translate", {"text": "hello world\n\n```\ncode()\n```\n", "target": "German", "max_tokens": 8})
    assert translated["text"].endswith("```\ncode()\n```\n")
    loaded = d.call("daemon/status")["models"][0]
    assert loaded["kind"] == "seq2seq"


def test_text_and_zero_shot_classification_models(ember, tmp_path):
    tc = tiny_models.build_text_classification(tmp_path / "tc", labels=["negative", "positive"])
    zs = tiny_models.build_zero_shot(tmp_path / "zs")
    d = configured(ember, tmp_path, {"default": {"source": "smollm2"},
                                     "tc": {"source": str(tc), "kind": "text-classification"},
                                     "zs": {"source": str(zs), "kind": "zero-shot-classification"}},
                   {"classify": "tc"})
    direct = d.call("classify", {"text": "fine"})
    assert {s["label"] for s in direct["scores"]} == {"negative", "positive"}
    assert abs(sum(s["score"] for s in direct["scores"]) - 1) < 1e-6
    zero = d.call("classify", {"text": "fine", "labels": ["sports", "politics", "code"], "model": "zs"})
    assert {s["label"] for s in zero["scores"]} == {"sports", "politics", "code"}
    assert abs(sum(s["score"] for s in zero["scores"]) - 1) < 1e-6


def test_entities_through_a_token_classification_model(ember, tmp_path):
    folder = tiny_models.build_token_classification(tmp_path / "ner")
    d = configured(ember, tmp_path, {"default": {"source": "smollm2"}, "ner": {"source": str(folder), "kind": "token-classification"}},
                   {"entities": "ner"})
    text = "Ada Lovelace lived in London"
    result = d.call("entities", {"text": text})
    assert isinstance(result["entities"], list)
    for e in result["entities"]:
        assert text[e["start"]:e["end"]] == e["text"] and 0 <= e["score"] <= 1


@pytest.mark.parametrize("style", ["starcoder", "codellama", "deepseek", "qwen"])
def test_fill_in_the_middle_uses_the_models_own_tokens(ember, tmp_path, style):
    folder = tiny_models.build_fim_causal_lm(tmp_path / style, style=style)
    d = configured(ember, tmp_path, {"default": {"source": str(folder)}}, {})
    prefix, suffix = "def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n"
    result = d.call("complete", {"prefix": prefix, "suffix": suffix, "max_tokens": 4})
    assert result["fim"] == {"format": style, "truncated": False}
    expected = tiny_models.FIM_FORMATS[style].format(prefix=prefix, suffix=suffix)
    if style == "codellama":
        # The spaces before ▁<SUF> and ▁<MID> in the printed layout are those tokens' own ▁ marker
        # (CodeLlama's tokenizer puts no extra token there); only the space before the prefix is text.
        expected = expected.replace(" ▁<SUF>", "▁<SUF>").replace(" ▁<MID>", "▁<MID>")
    counted = d.call("tokenize", {"text": expected, "add_special_tokens": True})["count"]
    assert result["usage"]["prompt_tokens"] == counted


def test_fill_in_the_middle_continues_the_prefix_on_chat_only_models(smol):
    suffix = "\n\nprint(greet('Ada'))\n"
    result = smol.call("complete", {"prefix": "def greet(name):\n    return ", "suffix": suffix, "max_tokens": 24})
    assert result["fim"]["format"] == "prefix-continuation"
    assert result["text"].strip()
    assert "print(greet('Ada'))" not in result["text"]  # stops before rewriting what follows


def test_pickle_weights_are_refused_unless_allowed(ember, tmp_path):
    folder = tiny_models.build_chat_causal_lm(tmp_path / "pickled")
    import torch
    from safetensors.torch import load_file
    state = load_file(folder / "model.safetensors")
    torch.save(state, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    d = configured(ember, tmp_path, {"default": {"source": str(folder)}}, {})
    refused = d.request("complete", {"prompt": "hi", "max_tokens": 1})
    assert refused["error"]["code"] == -32001 and "allow_pickle" in refused["error"]["message"]
    allowed = configured(ember, tmp_path, {"default": {"source": str(folder), "allow_pickle": True}}, {})
    assert allowed.call("complete", {"prompt": "hi", "max_tokens": 1})["usage"]["completion_tokens"] == 1


def test_memory_budget_evicts_the_least_recently_used_model(ember, tmp_path):
    a = tiny_models.build_chat_causal_lm(tmp_path / "a")
    b = tiny_models.build_chat_causal_lm(tmp_path / "b")
    # The registry's eviction, on transformers: its tiny weights are whole megabytes there.
    d = configured(ember, tmp_path, {"default": {"source": str(a), "engine": "transformers"},
                                     "other": {"source": str(b), "engine": "transformers"}}, {})
    d.call("models/load", {"model": "default"})
    size = d.call("daemon/status")["models"][0]["memory_bytes"]
    cfg_budget_mb = max(1, (size * 3 // 2) >> 20)
    d2 = ember("lines", ["--config", str(tmp_path / "ember.toml"), "--set", f"daemon.memory_budget_mb={cfg_budget_mb}"])
    if size * 2 <= cfg_budget_mb << 20:
        pytest.fail("tiny model too small for a whole-MB budget; grow it")
    d2.call("complete", {"prompt": "x", "max_tokens": 1})
    d2.call("complete", {"prompt": "x", "max_tokens": 1, "model": "other"})
    assert [m["name"] for m in d2.call("daemon/status")["models"]] == ["other"]


@pytest.mark.parametrize("blank", ["", "   \n\t "])
def test_empty_and_blank_input_gets_a_real_answer_from_every_task(smol, blank):
    """Inline completion at the start of an empty file is an everyday case, and scripts send blanks."""
    for params in ({"prompt": blank}, {"prefix": blank, "suffix": blank}, {"prefix": "", "suffix": "x = 1\n"},
                   {"messages": [{"role": "user", "content": blank}]}):
        result = smol.call("complete", {**params, "max_tokens": 4})
        assert result["finish_reason"] in ("stop", "length") and isinstance(result["text"], str), params
        assert result["usage"]["prompt_tokens"] >= 0
    assert smol.call("summarize", {"text": blank})["text"] == ""
    assert smol.call("translate", {"text": blank, "target": "French"})["text"] == blank
    scores = smol.call("classify", {"text": blank})["scores"]
    assert abs(sum(s["score"] for s in scores) - 1) < 1e-6
    assert smol.call("tokenize", {"text": ""})["count"] == 0


@pytest.mark.parametrize("engine", ["transformers", "onnxruntime"])
def test_every_task_runs_on_both_engines(ember, engine):
    d = ember("lines", ["--set", f"models.default.engine={engine}"])
    for params in ({"prompt": "def add(a, b):"}, {"messages": [{"role": "user", "content": "Hi!"}]},
                   {"prefix": "def add(a, b):\n    ", "suffix": "\n\nprint(add(1, 2))\n"}):
        msg_id = d.start_request("complete", {**params, "max_tokens": 8, "stream": True})
        result = d.reply(msg_id)["result"]
        assert result["usage"]["completion_tokens"] > 0
        assert "".join(d.stream_deltas(msg_id)) == result["text"]
    assert d.call("summarize", {"text": ARTICLE, "max_tokens": 16})["text"]
    assert d.call("translate", {"text": "Good morning, `x = 1` stays.", "target": "French",
                                "max_tokens": 24})["text"].count("`x = 1`") == 1
    assert d.call("classify", {"text": REVIEW_POS, "labels": ["positive", "negative"]})["label"] == "positive"
    model = d.call("daemon/status")["models"][0]
    assert model["engine"] == engine and model["prefix_cache"]["requests"] > 0


def test_unload_frees_the_engine_and_its_prefix_cache(smol):
    smol.call("complete", {"prompt": "The history of the printing press " * 40, "max_tokens": 2})
    loaded = smol.call("daemon/status")
    assert loaded["models"][0]["prefix_cache"]["bytes"] > 0
    assert smol.call("models/unload", {"model": "default"}) == {"unloaded": True}
    after = smol.call("daemon/status")
    assert after["models"] == [] and after["memory"]["models_bytes"] == 0
    freed = loaded["memory"]["rss_bytes"] - after["memory"]["rss_bytes"]
    assert freed > loaded["models"][0]["memory_bytes"] // 2  # the weights' memory really went back
    assert smol.call("complete", {"prompt": "Again", "max_tokens": 2})["usage"]["cached_tokens"] == 0
