"""classify on the real SmolLM2 (marked `model`) and on tiny random-weight models (fast, always run)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

import tiny_models as tm
from ember.config import ModelSettings
from ember.errors import InputTooLong, InvalidParams, RequestCancelled, TaskUnavailable
from ember.models.loaded import LoadedModel
from ember.tasks import classify
from ember.tasks.base import RunContext
from ember.wire import ClassifyParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTIMENT = ["positive", "negative", "neutral"]
CLEAR_POSITIVE = "This is the best product I have ever bought. I love it, it works perfectly!"
CLEAR_NEGATIVE = "Terrible product. It broke on the first day and support ignored me. I hate it."
CLEAR_NEUTRAL = "The store opens at nine in the morning and closes at six."
DATA = Path(__file__).parent / "data"
DEV = DATA / "sentiment-dev.jsonl"
STYLES = DATA / "sentiment-styles.jsonl"  # reported, never tuned on (tests/data/README.md)
STYLES_FLOOR = 0.87  # measured 0.891 on transformers float32 (the target, 0.90, is not met): docs/classify.md


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def fresh_calibration_cache():
    classify.clear_calibration_cache()
    yield
    classify.clear_calibration_cache()


def loaded(name: str, kind: str, folder: Path, context_length: int | None = None) -> LoadedModel:
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    started = time.perf_counter()
    auto = AutoModelForCausalLM if kind == "causal-lm" else AutoModelForSequenceClassification
    model = auto.from_pretrained(folder).eval()
    length = context_length or int(model.config.max_position_embeddings)
    engine = prefix_cache = None
    if kind == "causal-lm":
        from ember.engines.prefix_cache import PrefixCache
        from ember.engines.torch_engine import TransformersEngine

        engine = TransformersEngine(model, "cpu", length)
        prefix_cache = PrefixCache(engine, 64 << 20)
    return LoadedModel(
        name=name, settings=ModelSettings(source=str(folder), kind=kind), kind=kind, model=model,
        tokenizer=AutoTokenizer.from_pretrained(folder), device="cpu", dtype="float32",
        quantization="none", quantization_note=None,
        context_length=length,
        memory_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        load_seconds=time.perf_counter() - started, source_path=str(folder),
        engine=engine, prefix_cache=prefix_cache,
    )


def check_shape(out: dict, labels: list[str], calibrated: bool) -> None:
    assert set(out) >= {"label", "scores", "calibrated", "usage"}
    scores = out["scores"]
    assert sorted(s["label"] for s in scores) == sorted(labels)
    assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-6)
    assert all(0.0 <= s["score"] <= 1.0 for s in scores)
    assert [s["score"] for s in scores] == sorted((s["score"] for s in scores), reverse=True)
    assert out["label"] == scores[0]["label"]
    assert out["calibrated"] is calibrated
    assert out["usage"]["completion_tokens"] == 0 and out["usage"]["prompt_tokens"] > 0


def by_label(out: dict) -> dict[str, float]:
    return {s["label"]: s["score"] for s in out["scores"]}


# -- real SmolLM2 ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2(smollm2_folder) -> LoadedModel:
    return loaded("smollm2", "causal-lm", smollm2_folder)


@pytest.mark.model
def test_clear_reviews_get_the_right_label(smollm2):
    ctx = RunContext()
    # The default labels: the sentiment preset (prototype calibration).
    for text, label in ((CLEAR_POSITIVE, "positive"), (CLEAR_NEGATIVE, "negative"),
                        (CLEAR_NEUTRAL, "neutral")):
        out = classify.run(ClassifyParams(text=text), smollm2, ctx)
        check_shape(out, SENTIMENT, calibrated=True)
        assert out["label"] == label, out
    # Two labels: the preset's polar half.
    pos2 = classify.run(ClassifyParams(text=CLEAR_POSITIVE, labels=["positive", "negative"]), smollm2, ctx)
    neg2 = classify.run(ClassifyParams(text=CLEAR_NEGATIVE, labels=["Positive", "Negative"]), smollm2, ctx)
    check_shape(pos2, ["positive", "negative"], calibrated=True)
    check_shape(neg2, ["Positive", "Negative"], calibrated=True)  # the request's spelling
    assert pos2["label"] == "positive"
    assert neg2["label"] == "Negative"


@pytest.mark.model
def test_uncalibrated_scores_are_the_plain_label_likelihoods(smollm2):
    out = classify.run(ClassifyParams(text=CLEAR_POSITIVE, calibrate=False), smollm2, RunContext())
    check_shape(out, SENTIMENT, calibrated=False)
    assert out["label"] == "positive"
    tok = smollm2.tokenizer
    prompt = classify._encode(tok, classify.build_prompt(tok, CLEAR_POSITIVE, SENTIMENT))
    loglik = classify._label_loglik(smollm2, prompt, classify._answer_ids(tok, SENTIMENT), RunContext())
    expected = classify._softmax(loglik)
    # (1e-5: the second run reuses the first's prompt KV state, float32 rounds a little apart)
    assert [by_label(out)[lab] for lab in SENTIMENT] == pytest.approx(expected, abs=1e-5)


@pytest.mark.model
def test_custom_labels(smollm2):
    labels = ["English", "French", "German"]
    out = classify.run(ClassifyParams(text="Bonjour, comment allez-vous ?", labels=labels,
                                      calibrate=False), smollm2, RunContext())
    check_shape(out, labels, calibrated=False)
    assert out["label"] == "French"
    labels = ["question", "statement"]
    out = classify.run(ClassifyParams(text="How do I open a file in Python?", labels=labels,
                                      calibrate=False), smollm2, RunContext())
    check_shape(out, labels, calibrated=False)
    assert out["label"] == "question"


@pytest.mark.model
def test_calibration_changes_scores_and_reuses_the_prior(smollm2, monkeypatch):
    ctx = RunContext()
    labels = ["praise", "complaint"]  # no preset: contextual calibration
    text = "The meeting is scheduled for Tuesday at 10 am."
    raw = classify.run(ClassifyParams(text=text, labels=labels, calibrate=False), smollm2, ctx)
    assert classify.calibration_cache_info()["misses"] == 0  # no prior needed without calibration

    forwards = []
    real = classify._label_probs
    monkeypatch.setattr(classify, "_label_probs",
                        lambda lm, t, *a, **k: forwards.append(t) or real(lm, t, *a, **k))
    cal = classify.run(ClassifyParams(text=text, labels=labels), smollm2, ctx)  # the default
    check_shape(cal, labels, calibrated=True)
    assert forwards == [text, *classify.CONTENT_FREE_INPUTS]  # the prior was computed once ...
    assert classify.calibration_cache_info() == {"hits": 0, "misses": 1, "size": 1}

    forwards.clear()
    again = classify.run(ClassifyParams(text="Nice work, thanks!", labels=labels), smollm2, ctx)
    assert forwards == ["Nice work, thanks!"]  # ... and reused for the same labels
    assert classify.calibration_cache_info() == {"hits": 1, "misses": 1, "size": 1}
    check_shape(again, labels, calibrated=True)

    # Calibrated = raw / p_cf, renormalized; and it really moves the scores.
    prior = classify.content_free_prior(smollm2, labels, ctx)
    expected = classify.calibrate([by_label(raw)[lab] for lab in labels], prior)
    # (1e-5: the calibrated run reuses the raw run's prompt KV state, float32 rounds a little apart)
    assert [by_label(cal)[lab] for lab in labels] == pytest.approx(expected, abs=1e-5)
    assert max(abs(by_label(cal)[lab] - by_label(raw)[lab]) for lab in labels) > 0.01

    # Other labels (or order) are another cache entry.
    classify.run(ClassifyParams(text=text, labels=["complaint", "praise"]), smollm2, ctx)
    assert classify.calibration_cache_info()["size"] == 2


@pytest.mark.model
def test_accuracy_on_the_dev_split(smollm2):
    """A guard against regressions, on the dev split (the test split is for the docs' figures)."""
    rows = [json.loads(line) for line in DEV.read_text().splitlines() if line.strip()][::5]
    ctx = RunContext()
    correct = sum(classify.run(ClassifyParams(text=r["text"]), smollm2, ctx)["label"] == r["label"]
                  for r in rows)
    assert correct / len(rows) >= 0.7, f"{correct}/{len(rows)}"


@pytest.mark.model
@pytest.mark.timeout(1800)  # ~500 forwards: a minute on an idle machine, far more on a loaded one
def test_styles_set_accuracy_and_honest_confidence(smollm2):
    """The styles set (short statements, reviews, chat, commit messages, people's feelings; never
    tuned on): the accuracy floor, and no wrong answer above 0.9. Scoring is deterministic (label
    likelihoods, no sampling), so the floors hold run after run; docs/classify.md has the figures."""
    rows = read_rows(STYLES)
    ctx = RunContext()
    right, confident_wrong = 0, []
    for r in rows:
        out = classify.run(ClassifyParams(text=r["text"]), smollm2, ctx)
        if out["label"] == r["label"]:
            right += 1
        elif out["scores"][0]["score"] > 0.9:
            confident_wrong.append((r["text"], out["label"], out["scores"][0]["score"]))
    assert right / len(rows) >= STYLES_FLOOR, f"{right}/{len(rows)}"
    assert not confident_wrong
    # The sentences of the report that started this (issue 22), wrong and confident before.
    for text, label in (("Our hotel room was spotless and the view was breathtaking.", "positive"),
                        ("She was thrilled with the results of the experiment.", "positive"),
                        ("The food was cold and the waiter was rude.", "negative"),
                        ("He was furious that the package arrived broken.", "negative")):
        assert classify.run(ClassifyParams(text=text), smollm2, ctx)["label"] == label, text


# -- tiny models (random weights: shapes and mechanics, not accuracy) -------------------------


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="module")
def tiny_chat(tiny_root) -> LoadedModel:
    return loaded("tiny-chat", "causal-lm", tm.build_chat_causal_lm(tiny_root / "chat"))


@pytest.fixture(scope="module")
def tiny_sentiment(tiny_root) -> LoadedModel:
    folder = tm.build_text_classification(tiny_root / "tc", labels=["NEGATIVE", "NEUTRAL", "POSITIVE"])
    return loaded("tiny-tc", "text-classification", folder)


@pytest.fixture(scope="module")
def tiny_nli(tiny_root) -> LoadedModel:
    return loaded("tiny-nli", "zero-shot-classification", tm.build_zero_shot(tiny_root / "zs"))


def test_text_classification_reports_the_models_labels(tiny_sentiment):
    out = classify.run(ClassifyParams(text="Great job!", labels=["spam", "ham"]), tiny_sentiment,
                       RunContext())
    check_shape(out, ["NEGATIVE", "NEUTRAL", "POSITIVE"], calibrated=False)
    # The default labels match the model's (case-insensitively): reported in the model's spelling.
    out = classify.run(ClassifyParams(text="Great job!"), tiny_sentiment, RunContext())
    check_shape(out, ["NEGATIVE", "NEUTRAL", "POSITIVE"], calibrated=False)


def test_text_classification_restricts_to_matching_labels(tiny_sentiment):
    full = by_label(classify.run(ClassifyParams(text="Great job!", labels=["x", "y"]), tiny_sentiment,
                                 RunContext()))
    out = classify.run(ClassifyParams(text="Great job!", labels=["positive", "negative"]),
                       tiny_sentiment, RunContext())
    check_shape(out, ["POSITIVE", "NEGATIVE"], calibrated=False)
    total = full["POSITIVE"] + full["NEGATIVE"]
    assert by_label(out)["POSITIVE"] == pytest.approx(full["POSITIVE"] / total, abs=1e-6)


def test_zero_shot(tiny_nli):
    labels = ["bug report", "feature request", "praise"]
    out = classify.run(ClassifyParams(text="The editor crashes on save.", labels=labels), tiny_nli,
                       RunContext())
    check_shape(out, labels, calibrated=False)


def test_zero_shot_matches_the_pipeline(tiny_nli):
    from transformers import pipeline

    labels = ["bug", "praise", "question"]
    text = "The build failed on the CI server."
    ours = by_label(classify.run(ClassifyParams(text=text, labels=labels), tiny_nli, RunContext()))
    pipe = pipeline("zero-shot-classification", model=tiny_nli.model, tokenizer=tiny_nli.tokenizer)
    theirs = pipe(text, candidate_labels=labels, hypothesis_template="This example is {}.")
    assert [ours[label] for label in theirs["labels"]] == pytest.approx(theirs["scores"], abs=1e-5)


def test_causal_kv_cache_path_matches_full_forwards(tiny_chat):
    labels = ["positive", "negative", "not sure at all"]  # labels of different token lengths
    tok = tiny_chat.tokenizer
    prompt = classify._encode(tok, classify.build_prompt(tok, "Some text.", labels))
    answers = classify._answer_ids(tok, labels)
    assert len({len(a) for a in answers}) > 1
    assert all(a[-1] == tok.convert_tokens_to_ids("<|im_end|>") for a in answers)
    fast = classify._label_loglik(tiny_chat, prompt, answers, RunContext())
    reference = []
    with torch.inference_mode():
        for a in answers:
            logits = tiny_chat.model(input_ids=torch.tensor([prompt + a])).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            reference.append(sum(float(logprobs[len(prompt) - 1 + j, t]) for j, t in enumerate(a)))
    assert fast == pytest.approx(reference, abs=1e-4)


def test_sentiment_preset_on_tiny_model(tiny_chat, monkeypatch):
    calls = []
    real = classify._label_loglik
    monkeypatch.setattr(classify, "_label_loglik", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = classify.run(ClassifyParams(text="Great job!"), tiny_chat, RunContext())
    check_shape(out, SENTIMENT, calibrated=True)
    preset = classify.sentiment_preset(SENTIMENT)
    examples = sum(len(v) for v in preset.examples.values())
    framings = len(preset.framings)
    assert len(calls) == framings * (1 + examples)  # the text, then every example once
    assert classify.calibration_cache_info() == {"hits": 0, "misses": 1, "size": 1}
    calls.clear()
    again = classify.run(ClassifyParams(text="Meh.", labels=["Neutral", "Negative", "Positive"]),
                         tiny_chat, RunContext())
    check_shape(again, ["Neutral", "Negative", "Positive"], calibrated=True)
    assert len(calls) == framings  # the prototypes were reused
    assert classify.calibration_cache_info()["hits"] == 1
    plain = classify.run(ClassifyParams(text="Great job!", calibrate=False), tiny_chat, RunContext())
    check_shape(plain, SENTIMENT, calibrated=False)


def test_sentiment_preset_matches_label_sets():
    assert classify.sentiment_preset(["Positive", "NEGATIVE", "neutral"]).labels == (
        "positive", "negative", "neutral")
    assert classify.sentiment_preset(["negative", "positive"]).labels == ("positive", "negative")
    assert classify.sentiment_preset(["positive", "negative", "other"]) is None
    assert classify.sentiment_preset(["positive", "Positive"]) is None


def test_prototype_posterior_prefers_the_nearest_prototype():
    protos = classify.Prototypes(means=[[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]],
                                 variances=[[0.25, 1.0], [0.25, 1.0], [0.25, 1.0]])
    probs = protos.posterior([0.8, 0.3])
    assert sum(probs) == pytest.approx(1.0)
    assert probs.index(max(probs)) == 0
    assert protos.posterior([0.1, -0.2]).index(max(protos.posterior([0.1, -0.2]))) == 2
    # A temperature softens without changing the winner.
    soft = classify.Prototypes(protos.means, protos.variances, temperature=4.0).posterior([0.8, 0.3])
    assert soft.index(max(soft)) == 0 and max(soft) < max(probs)


def test_a_tight_label_wins_only_close_to_its_prototype():
    # Neutral (the last) is tight around 0, positive spread around 2: a point at 0.8 lies nearer
    # neutral's mean, but is far more typical of positive than of neutral.
    protos = classify.Prototypes(means=[[2.0], [-2.0], [0.0]], variances=[[0.5], [0.5], [0.04]])
    near = protos.posterior([0.8])
    assert near.index(max(near)) == 0
    assert protos.posterior([0.1]).index(max(protos.posterior([0.1]))) == 2


def test_leave_one_out_temperature():
    preset = classify.sentiment_preset(SENTIMENT)
    apart = {"positive": [[3.0 + d] for d in (-0.1, 0.0, 0.1)], "negative": [[-3.0 + d] for d in (-0.1, 0.0, 0.1)],
             "neutral": [[d] for d in (-0.1, 0.0, 0.1)]}
    assert classify.fit_prototypes(preset, apart).temperature == 1.0  # never sharper than the model
    # Overlapping labels: a held-out example is often nearer another label's prototype, so the
    # posteriors must be softened to be honest.
    overlap = {"positive": [[v] for v in (0.2, 1.0, 2.0, 3.0)], "negative": [[v] for v in (-3.0, -2.0, -1.0, -0.2)],
               "neutral": [[v] for v in (-0.9, -0.1, 0.1, 0.9)]}
    fitted = classify.fit_prototypes(preset, overlap)
    assert fitted.temperature > 1.5
    assert fitted.means == [[pytest.approx(1.55)], [pytest.approx(-1.55)], [pytest.approx(0.0)]]


def test_stored_prototypes_must_have_the_right_shape():
    good = classify.Prototypes([[1.0, 2.0], [0.0, 0.0]], [[0.1, 0.2], [0.3, 0.4]], 2.0)
    assert classify.Prototypes.from_json(json.loads(json.dumps(good.to_json())), 2, 2) == good
    assert classify.Prototypes.from_json(good.to_json(), 3, 2) is None  # another label count
    assert classify.Prototypes.from_json(good.to_json(), 2, 3) is None  # another score count
    for bad in ({**good.to_json(), "temperature": 0}, {**good.to_json(), "variances": [[0.1, -1], [1, 1]]},
                {**good.to_json(), "means": [[1.0, "x"], [0, 0]]}, {"means": []}, None, [1, 2],
                {**good.to_json(), "means": [[1.0, float("nan")], [0, 0]]}):
        assert classify.Prototypes.from_json(bad, 2, 2) is None


def test_prototypes_are_stored_on_disk_and_read_back(tiny_chat, tmp_path, monkeypatch, caplog):
    """A second daemon start (here: the process cache emptied, the model loaded again) reads the
    prototypes from disk instead of scoring every example again; a damaged file is recomputed."""
    monkeypatch.setattr(classify, "calibration_folder", lambda lm: tmp_path / ".classify")
    calls = []
    real = classify._label_loglik
    monkeypatch.setattr(classify, "_label_loglik", lambda *a, **k: calls.append(1) or real(*a, **k))
    preset = classify.sentiment_preset(SENTIMENT)
    examples = sum(len(v) for v in preset.examples.values())
    framings = len(preset.framings)

    first = classify.run(ClassifyParams(text="Great job!"), tiny_chat, RunContext())
    assert len(calls) == framings * (1 + examples)
    stored = list((tmp_path / ".classify").glob("prototypes-positive-negative-neutral-*.json"))
    assert len(stored) == 1
    assert not [p for p in (tmp_path / ".classify").iterdir() if p.name.endswith(".tmp")]

    classify.clear_calibration_cache()
    calls.clear()
    again = LoadedModel(**{**tiny_chat.__dict__, "loaded_at": tiny_chat.loaded_at + 1})  # a new load
    second = classify.run(ClassifyParams(text="Great job!"), again, RunContext())
    assert len(calls) == framings  # only the text: the prototypes came from disk
    assert by_label(second) == pytest.approx(by_label(first), abs=1e-6)

    stored[0].write_text('{"means": [[1, 2]]')  # cut short
    classify.clear_calibration_cache()
    calls.clear()
    third = classify.run(ClassifyParams(text="Great job!"), again, RunContext())
    assert len(calls) == framings * (1 + examples)  # recomputed ...
    assert "damaged classify prototypes" in caplog.text
    assert by_label(third) == pytest.approx(by_label(first), abs=1e-6)
    assert classify.Prototypes.from_json(json.loads(stored[0].read_text()), 3,
                                         classify._score_count(preset)) is not None  # ... and rewritten

    # Other examples (or framings, engine, quantization) are another file, never a stale one.
    two = classify.run(ClassifyParams(text="Great job!", labels=["positive", "negative"]), again, RunContext())
    check_shape(two, ["positive", "negative"], calibrated=True)
    assert len(list((tmp_path / ".classify").glob("prototypes-*.json"))) == 2


def test_calibration_folder_is_inside_embers_conversion(tiny_chat, tmp_path):
    from ember.models import gguf, onnx_convert

    assert classify.calibration_folder(tiny_chat) is None  # a user's folder is never written to
    converted = tmp_path / "gguf-entry"
    converted.mkdir()
    (converted / gguf.MARKER).write_text("{}")
    from_gguf = LoadedModel(**{**tiny_chat.__dict__, "source_path": str(converted)})
    assert classify.calibration_folder(from_gguf) == converted / ".classify"

    class Engine:  # the onnxruntime engine names its converted folder
        name = "onnxruntime"
        folder = tmp_path / "onnx-entry"

    Engine.folder.mkdir()
    (Engine.folder / onnx_convert.MARKER).write_text("{}")
    on_onnx = LoadedModel(**{**from_gguf.__dict__, "engine": Engine()})
    assert classify.calibration_folder(on_onnx) == Engine.folder / ".classify"
    # Unwritable: a warning, and the prototypes still work from memory.
    (converted / ".classify").write_text("a file where the folder should be")
    preset = classify.sentiment_preset(["positive", "negative"])
    path = classify._stored_path(from_gguf, preset)
    classify._write_stored(path, from_gguf, preset, classify.Prototypes([[1.0], [0.0]], [[1.0], [1.0]]))
    assert classify._read_stored(path, preset) is None


def test_preset_examples_are_not_in_the_evaluation_data():
    texts = {r["text"].lower() for name in ("dev", "test", "styles")
             for r in read_rows(DATA / f"sentiment-{name}.jsonl")}
    examples = [t.lower() for v in classify.SENTIMENT_EXAMPLES.values() for t in v]
    assert len(set(examples)) == len(examples) == 72
    assert not texts & set(examples)


def test_evaluation_splits_are_balanced_and_disjoint():
    splits = {name: [json.loads(line) for line in (DATA / f"sentiment-{name}.jsonl").read_text().splitlines()
                     if line.strip()] for name in ("dev", "test")}
    for rows in splits.values():
        assert len(rows) >= 150
        assert {r["label"] for r in rows} == set(SENTIMENT)
        assert len({r["text"] for r in rows}) == len(rows)
    assert not {r["text"] for r in splits["dev"]} & {r["text"] for r in splits["test"]}
    styles = read_rows(STYLES)
    assert len(styles) >= 150 and len({r["text"] for r in styles}) == len(styles)
    domains = {"statement", "review", "chat", "commit", "emotion"}
    for domain in domains:  # each style with every label, equally
        counts = [sum(r["domain"] == domain and r["label"] == label for r in styles) for label in SENTIMENT]
        assert counts[0] >= 10 and len(set(counts)) == 1, (domain, counts)
    assert {r["domain"] for r in styles} == domains
    tuned = {r["text"].lower() for rows in splits.values() for r in rows}
    assert not tuned & {r["text"].lower() for r in styles}


def test_causal_shape_and_cache_on_tiny_model(tiny_chat):
    labels = ["red", "green", "blue"]
    out = classify.run(ClassifyParams(text="The sky.", labels=labels), tiny_chat, RunContext())
    check_shape(out, labels, calibrated=True)
    classify.run(ClassifyParams(text="Grass.", labels=labels), tiny_chat, RunContext())
    assert classify.calibration_cache_info() == {"hits": 1, "misses": 1, "size": 1}


def test_calibration_cache_is_bounded(tiny_chat, monkeypatch):
    monkeypatch.setattr(classify, "CALIBRATION_CACHE_SIZE", 2)
    for labels in (["a", "b"], ["b", "c"], ["c", "d"]):
        classify.run(ClassifyParams(text="x", labels=labels), tiny_chat, RunContext())
    assert classify.calibration_cache_info()["size"] == 2
    classify.run(ClassifyParams(text="x", labels=["c", "d"]), tiny_chat, RunContext())
    assert classify.calibration_cache_info()["hits"] == 1  # the newest entries survive


def test_causal_without_chat_template(tiny_root):
    # A base model (no chat template): a plain-text prompt; GPT-2 also checks the KV-cache path there.
    lm = loaded("tiny-gpt2", "causal-lm", tm.build_fim_causal_lm(tiny_root / "starcoder", "starcoder"))
    assert not lm.tokenizer.chat_template
    out = classify.run(ClassifyParams(text="def f(): pass", labels=["code", "prose"]), lm, RunContext())
    check_shape(out, ["code", "prose"], calibrated=True)


def test_input_too_long(tiny_chat, tiny_sentiment, tiny_nli):
    long_text = "word " * 600
    for lm in (tiny_chat, tiny_sentiment, tiny_nli):
        with pytest.raises(InputTooLong) as err:
            classify.run(ClassifyParams(text=long_text, calibrate=False), lm, RunContext())
        assert err.value.data["limit"] == lm.context_length
        assert err.value.data["tokens"] > lm.context_length
    with pytest.raises(InputTooLong):  # the sentiment preset checks before building its prototypes
        classify.run(ClassifyParams(text=long_text), tiny_chat, RunContext())
    assert classify.calibration_cache_info()["misses"] == 0


def test_cancelled_before_any_forward(tiny_chat):
    ctx = RunContext()
    ctx.cancelled.set()
    with pytest.raises(RequestCancelled):
        classify.run(ClassifyParams(text="hello"), tiny_chat, ctx)


def test_rejects_duplicate_labels_and_other_kinds(tiny_chat):
    with pytest.raises(InvalidParams):
        classify.run(ClassifyParams(text="x", labels=["a", "a"]), tiny_chat, RunContext())
    other = LoadedModel(**{**tiny_chat.__dict__, "kind": "seq2seq"})
    with pytest.raises(TaskUnavailable):
        classify.run(ClassifyParams(text="x"), other, RunContext())


def test_calibration_by_default_only_without_a_catch_all_label():
    from ember.tasks.classify import should_calibrate

    assert should_calibrate(["positive", "negative"], None) is True
    assert should_calibrate(["positive", "negative", "neutral"], None) is False
    assert should_calibrate(["bug", "Other"], None) is False
    assert should_calibrate(["positive", "negative", "neutral"], True) is True
    assert should_calibrate(["positive", "negative"], False) is False
