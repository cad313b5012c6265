"""classify: a probability for each label, summing to 1, and the top label.

How each model kind scores the labels:

- causal-lm (an instruct model): the chat template asks the model to answer with one of the labels;
  each label is scored by the log-likelihood of its tokens as the assistant's answer (the sum of the
  token log-probabilities, then the end-of-turn token), and a softmax over those sums gives the
  probabilities. No text is generated or parsed. The prompt runs once; its KV cache is copied for
  all labels, which then run in one batched forward.
  The sentiment labels (positive/negative/neutral, or positive/negative) use a preset: the text is
  scored in three framings and the score vector is compared with prototypes, the mean score vectors
  of shipped example sentences of each label (prototype calibration; cached per model).
  Other label sets get contextual calibration (Zhao et al. 2021, "Calibrate Before Use") unless one
  of them is a catch-all: each probability is divided by the probability the model gives that label
  for content-free inputs ("N/A", "", "[MASK]") in the same prompt, and renormalized. Those
  content-free probabilities are cached per (model, labels). Every forward goes through
  `_label_loglik`. docs/classify.md has the measurements behind these choices.
- text-classification: the model's own softmax over its id2label. The request's labels are ignored
  unless every one of them names a model label (case-insensitively): then only those are reported,
  renormalized.
- zero-shot-classification: an NLI model scores "This example is {label}." against the text; the
  entailment logits, softmaxed over the labels, give the probabilities (the zero-shot pipeline's
  single-label mode).

A remote causal LM (engine = "remote") scores labels the same way where its server returns prompt
log-probabilities; otherwise by the first answer token's top log-probabilities, or, where the
server returns no log-probabilities at all, by its generated answer (engines/remote.py). The
result's `method` says which: loglikelihood, first-token-logprobs, generated-answer (or
classifier / zero-shot-nli for the sequence classifiers).

This module runs on a model's worker only; torch is imported where a local classifier runs, so a
remote model's classify never loads it.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..engines.decode import loglikelihoods
from ..errors import InputTooLong, InvalidParams, TaskUnavailable
from ..models.loaded import LoadedModel
from ..wire import ClassifyParams
from .base import RunContext

# -- prompt --------------------------------------------------------------------------------------

# The text first, the instruction last (closest to the answer). The model's own default system prompt
# is kept. Chosen among seven wordings on a separate dev set; see docs/classify.md.
USER_PROMPT = "{text}\n\nClassify this text as {labels}. Reply with only the label."
# A plain-text prompt for causal models without a chat template (base models).
PLAIN_PROMPT = "Text: {text}\nClassify this text as {labels}.\nLabel:"

# Inputs without content, for contextual calibration (Zhao et al. 2021 use these three).
CONTENT_FREE_INPUTS: tuple[str, ...] = ("N/A", "", "[MASK]")

ZERO_SHOT_HYPOTHESIS = "This example is {}."

# -- the calibration cache -----------------------------------------------------------------------

# Content-free priors (p_cf) and the sentiment preset's prototypes, least recently used first out.
CALIBRATION_CACHE_SIZE = 64
_calibration: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_calibration_lock = threading.Lock()
_calibration_stats = {"hits": 0, "misses": 0}


def calibration_cache_info() -> dict[str, int]:
    """Hits, misses (computations of p_cf or prototypes) and the number of cached entries."""
    with _calibration_lock:
        return {**_calibration_stats, "size": len(_calibration)}


def clear_calibration_cache() -> None:
    with _calibration_lock:
        _calibration.clear()
        _calibration_stats.update(hits=0, misses=0)


def _calibration_key(lm: LoadedModel, labels: Sequence[str], method: str) -> tuple[Any, ...]:
    # loaded_at: a model reloaded (perhaps quantized differently) gets fresh priors.
    return (lm.name, lm.loaded_at, tuple(labels), method)


def _cache_get(key: tuple[Any, ...]) -> Any:
    with _calibration_lock:
        prior = _calibration.get(key)
        if prior is None:
            _calibration_stats["misses"] += 1
            return None
        _calibration.move_to_end(key)
        _calibration_stats["hits"] += 1
        return prior


def _cache_put(key: tuple[Any, ...], value: Any) -> None:
    with _calibration_lock:
        _calibration[key] = value
        _calibration.move_to_end(key)
        while len(_calibration) > CALIBRATION_CACHE_SIZE:
            _calibration.popitem(last=False)


# -- entry point ---------------------------------------------------------------------------------


def run(params: ClassifyParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    if len(set(params.labels)) != len(params.labels):
        raise InvalidParams("labels must be distinct", {"labels": list(params.labels)})
    if lm.kind == "causal-lm":
        return _run_causal(params, lm, ctx)
    if lm.kind == "text-classification":
        return _run_text_classification(params, lm, ctx)
    if lm.kind == "zero-shot-classification":
        return _run_zero_shot(params, lm, ctx)
    raise TaskUnavailable(f"model {lm.name!r} ({lm.kind}) cannot classify",
                          {"model": lm.name, "kind": lm.kind})


def _result(labels: Sequence[str], probs: Sequence[float], *, calibrated: bool,
            prompt_tokens: int, method: str) -> dict[str, Any]:
    total = float(sum(probs))
    ranked = sorted(zip(labels, (float(p) / total for p in probs), strict=True),
                    key=lambda pair: pair[1], reverse=True)
    scores = [{"label": label, "score": score} for label, score in ranked]
    return {
        "label": scores[0]["label"],
        "scores": scores,
        "calibrated": calibrated,
        "method": method,
        "usage": {"prompt_tokens": int(prompt_tokens), "completion_tokens": 0},
    }


# -- causal LM: label likelihoods ----------------------------------------------------------------


def build_prompt(tokenizer: Any, text: str, labels: Sequence[str]) -> str:
    """The prompt that ends where the label should start (after the assistant turn's opening)."""
    if _has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(_messages(text, labels), tokenize=False,
                                             add_generation_prompt=True)
    return PLAIN_PROMPT.format(labels=_label_list(labels), text=text)


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _label_list(labels: Sequence[str]) -> str:
    """"a, b or c"."""
    return ", ".join(labels[:-1]) + " or " + labels[-1]


def _messages(text: str, labels: Sequence[str]) -> list[dict[str, str]]:
    return [{"role": "user", "content": USER_PROMPT.format(labels=_label_list(labels), text=text)}]


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _end_of_answer(tokenizer: Any, text: str, labels: Sequence[str]) -> int | None:
    """The token that closes an assistant answer in this chat template (e.g. <|im_end|>).

    Found by rendering a conversation whose last turn is the assistant's answer; the eos token
    when the template renders answers differently from its generation prompt.
    """
    probe = labels[0]
    try:
        prompt = build_prompt(tokenizer, text, labels)
        messages = _messages(text, labels) + [{"role": "assistant", "content": probe}]
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        if full.startswith(prompt):
            after = _encode(tokenizer, full[len(prompt):])
            label_ids = _encode(tokenizer, probe)
            if after[: len(label_ids)] == label_ids and len(after) > len(label_ids):
                return int(after[len(label_ids)])
    except Exception:  # noqa: BLE001 - an unusual template: fall back to eos
        pass
    eos = tokenizer.eos_token_id
    return int(eos) if eos is not None else None


def _answer_ids(tokenizer: Any, labels: Sequence[str]) -> list[list[int]]:
    """Each label's tokens as the answer, followed by the end of the answer when the model has one.

    Ending with the end-of-turn token scores "the answer is exactly this label", so a label that is
    a prefix of another ("pos" / "positive") does not win on the shared tokens alone.
    """
    if _has_chat_template(tokenizer):
        end = _end_of_answer(tokenizer, "", labels)
        ids = [_encode(tokenizer, label) for label in labels]
    else:
        end = None  # a base model's answer ends with a newline or more text; leave it open
        ids = [_encode(tokenizer, " " + label) for label in labels]
    if any(not seq for seq in ids):
        raise InvalidParams("a label encodes to no tokens", {"labels": list(labels)})
    if end is not None:
        ids = [seq + [end] for seq in ids]
    return ids


def _label_loglik(lm: LoadedModel, prompt_ids: list[int], answers: list[list[int]],
                  ctx: RunContext, prompt: str | None = None) -> list[float]:
    """Sum of log P(answer tokens | prompt) for each answer. Locally the prompt runs once (and its
    KV state stays in the prefix cache, so calibration inputs and repeated texts are cheap); a
    remote model's server scores the prompt followed by each answer."""
    if lm.remote:  # the server takes text: the prompt as rendered, the answers decoded
        decode = lm.tokenizer.decode
        texts = [decode(a, skip_special_tokens=False) for a in answers]
        text = prompt if prompt is not None else decode(prompt_ids, skip_special_tokens=False)
        return lm.engine.loglikelihoods(text, texts, ctx)
    return loglikelihoods(lm.prefix_cache, prompt_ids, answers, ctx)


def _softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _label_probs(lm: LoadedModel, text: str, labels: Sequence[str], answers: list[list[int]],
                 ctx: RunContext) -> tuple[list[float], int]:
    prompt = build_prompt(lm.tokenizer, text, labels)
    prompt_ids = _encode(lm.tokenizer, prompt)
    needed = len(prompt_ids) + max(len(a) for a in answers)
    if needed > lm.context_length:
        raise InputTooLong(needed, lm.context_length, "prompt")
    return _softmax(_label_loglik(lm, prompt_ids, answers, ctx, prompt)), len(prompt_ids)


def content_free_prior(lm: LoadedModel, labels: Sequence[str], ctx: RunContext,
                       method: str = "loglikelihood") -> list[float]:
    """p_cf: label probabilities averaged over the content-free inputs (cached per model, labels
    and scoring method)."""
    key = _calibration_key(lm, labels, method)
    prior = _cache_get(key)
    if prior is not None:
        return prior
    answers = _answer_ids(lm.tokenizer, labels) if method == "loglikelihood" else []
    sums = [0.0] * len(labels)
    for text in CONTENT_FREE_INPUTS:
        ctx.check_cancelled()
        if method == "loglikelihood":
            probs, _ = _label_probs(lm, text, labels, answers, ctx)
        else:
            probs = _first_token_probs(lm, text, labels, ctx)
        sums = [s + p for s, p in zip(sums, probs, strict=True)]
    prior = [s / len(CONTENT_FREE_INPUTS) for s in sums]
    _cache_put(key, prior)
    return prior


def calibrate(probs: Sequence[float], prior: Sequence[float]) -> list[float]:
    """Contextual calibration: p / p_cf, renormalized."""
    scaled = [p / max(q, 1e-12) for p, q in zip(probs, prior, strict=True)]
    total = sum(scaled)
    return [s / total for s in scaled]


def _run_causal(params: ClassifyParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    if lm.remote:
        return _run_remote(params, lm, ctx)
    labels = list(params.labels)
    ctx.check_cancelled()
    preset = sentiment_preset(labels) if _has_chat_template(lm.tokenizer) else None
    if preset is not None and params.calibrate is not False:
        return _run_preset(preset, params.text, labels, lm, ctx)
    answers = _answer_ids(lm.tokenizer, labels)
    probs, prompt_tokens = _label_probs(lm, params.text, labels, answers, ctx)
    calibrated = should_calibrate(labels, params.calibrate)
    if calibrated:
        probs = calibrate(probs, content_free_prior(lm, labels, ctx))
    return _result(labels, probs, calibrated=calibrated, prompt_tokens=prompt_tokens,
                   method="loglikelihood")


# -- remote causal LM: what the server returns decides the method ------------------------------


def _run_remote(params: ClassifyParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    from ..engines.remote import NotSupported

    labels = list(params.labels)
    calibrated = should_calibrate(labels, params.calibrate)
    ctx.check_cancelled()
    if lm.tokenizer is not None:  # the chat template and the label tokens are known here
        try:
            answers = _answer_ids(lm.tokenizer, labels)
            probs, prompt_tokens = _label_probs(lm, params.text, labels, answers, ctx)
            if calibrated:
                probs = calibrate(probs, content_free_prior(lm, labels, ctx))
            return _result(labels, probs, calibrated=calibrated, prompt_tokens=prompt_tokens,
                           method="loglikelihood")
        except NotSupported:
            pass
    prompt_tokens = _remote_prompt_tokens(lm, params.text, labels)
    try:
        probs = _first_token_probs(lm, params.text, labels, ctx)
        if calibrated:
            probs = calibrate(probs, content_free_prior(lm, labels, ctx, "first-token-logprobs"))
        return _result(labels, probs, calibrated=calibrated, prompt_tokens=prompt_tokens,
                       method="first-token-logprobs")
    except NotSupported:
        pass
    return _generated_answer(lm, params.text, labels, ctx, prompt_tokens)


def _remote_prompt_tokens(lm: LoadedModel, text: str, labels: Sequence[str]) -> int:
    from .generation import chat_prompt, prompt_tokens

    return prompt_tokens(lm, chat_prompt(lm, _messages(text, labels)))


def _first_token_probs(lm: LoadedModel, text: str, labels: Sequence[str], ctx: RunContext) -> list[float]:
    """Each label's probability from the answer's first token (top log-probabilities): the best
    listed token that starts the label; a label none starts gets the least likely listed one's."""
    return probs_from_first_token(lm.engine.first_token_logprobs(_messages(text, labels), ctx), labels)


def probs_from_first_token(top: dict[str, float], labels: Sequence[str]) -> list[float]:
    """Softmax over each label's best listed token that starts it (case and spaces aside); a label
    that none starts gets the least likely listed token's log-probability (an upper bound)."""
    floor = min(top.values()) if top else 0.0
    scores = []
    for label in labels:
        want = label.strip().lower()
        matching = [lp for token, lp in top.items()
                    if (t := token.strip().lower()) and want.startswith(t)]
        scores.append(max(matching, default=floor))
    return _softmax(scores)


def _generated_answer(lm: LoadedModel, text: str, labels: Sequence[str], ctx: RunContext,
                      prompt_tokens: int) -> dict[str, Any]:
    """No log-probabilities from the server: the model answers (greedy, a few tokens) and the answer
    is matched to a label. Scores are 1 for that label, or an even split when it names none."""
    from ..wire import GenerationOptions
    from .generation import chat_prompt, generate

    gen = generate(lm, chat_prompt(lm, _messages(text, labels)), GenerationOptions(max_tokens=8), ctx,
                   8, stream=False, extra_stop=["\n"])
    answer = gen.text.strip()
    chosen = match_label(answer, labels)
    probs = [1.0 if label == chosen else 0.0 for label in labels] if chosen else [1.0] * len(labels)
    result = _result(labels, probs, calibrated=False, prompt_tokens=gen.prompt_tokens or prompt_tokens,
                     method="generated-answer")
    result["answer"] = answer
    result["usage"]["completion_tokens"] = gen.completion_tokens
    return result


def match_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label an answer names: the longest label it starts with, else the first one it contains
    as a word (case-insensitive), else None."""
    said = answer.strip().strip("\"'*`.:").lower()
    starts = [label for label in labels if said.startswith(label.strip().lower())]
    if starts:
        return max(starts, key=len)
    import re

    found = [(m.start(), label) for label in labels
             if (m := re.search(rf"\b{re.escape(label.strip().lower())}\b", said))]
    return min(found)[1] if found else None


# A content-free input ("N/A") really belongs to a catch-all label, which breaks calibration's premise
# that it is equally likely under every label: measured on SmolLM2's dev split, calibration lifts
# positive/negative from 0.690 to 0.840 but drops positive/negative/neutral from 0.560 to 0.413
# (docs/classify.md). So by default we calibrate only label sets without a catch-all.
CATCH_ALL = {"neutral", "none", "other", "unknown", "mixed", "n/a", "neither"}


def should_calibrate(labels: list[str], requested: bool | None) -> bool:
    if requested is not None:
        return requested
    return not any(label.strip().lower() in CATCH_ALL for label in labels)


# -- the sentiment preset: prototype calibration -------------------------------------------------
#
# For the default labels (positive, negative, neutral; any order and case) and for positive and
# negative alone, SmolLM2's label likelihoods tell positive from negative well but almost never pick
# "neutral", and contextual calibration cannot fix a catch-all label (docs/classify.md). The preset
# asks in a few sentiment framings and compares the resulting score vector with each label's
# prototype: the mean score vector of shipped example sentences of that label, scored by the same
# model once and cached like p_cf. The probabilities are the posteriors of Gaussians around the
# prototypes with a shared diagonal variance (equal priors): the nearest prototype wins.


@dataclass(frozen=True)
class Framing:
    """One way to ask for a label: the user turn, and the start of the assistant's answer."""

    user: str  # with {text} and {labels}
    answer_prefix: str = ""  # the label follows it after a space ("Sentiment: positive")
    end_of_turn: bool = False  # score "the answer is exactly the label" (the end token follows)


@dataclass(frozen=True)
class Preset:
    labels: tuple[str, ...]  # lower case; the order of the prototypes
    framings: tuple[tuple[Framing, tuple[str, ...]], ...]  # each with the labels it lists
    examples: dict[str, tuple[str, ...]]


# The generic prompt (as without the preset), the same with the answer begun, and a question.
LABEL_ONLY = Framing(USER_PROMPT, end_of_turn=True)
THE_SENTIMENT_IS = Framing(USER_PROMPT, answer_prefix="The sentiment is")
SENTIMENT_QUESTION = Framing("Text: {text}\n\nIs the sentiment of this text {labels}?",
                             answer_prefix="The sentiment of this text is")

# Written for the preset; none of them is in tests/data (a test checks). Each costs one forward per
# framing, once per model and label set.
SENTIMENT_EXAMPLES: dict[str, tuple[str, ...]] = {
    "positive": (
        "The new update is fantastic, everything feels faster.",
        "Thanks for the help, this works perfectly now!",
        "Great hotel, friendly staff and a beautiful pool.",
        "Lovely code, clear names and good tests.",
        "I'm so happy with this phone, the screen is gorgeous.",
        "The conference was inspiring and the talks were excellent.",
        "Nice work on the docs, they are finally easy to follow.",
        "What a fun evening, the band was amazing!",
    ),
    "negative": (
        "The package arrived broken and nobody answers my emails.",
        "This build is broken again, what a waste of a morning.",
        "Awful service, the food was cold and overpriced.",
        "The app freezes constantly, I want my money back.",
        "I'm really annoyed that the meeting ran two hours over.",
        "This code is unreadable and full of copy-paste mistakes.",
        "The train was late, crowded and filthy.",
        "Terrible update, my settings are gone and nothing loads.",
    ),
    "neutral": (
        "The meeting has been moved to room 204.",
        "What version of Python does the project need?",
        "The function reads the file and returns a list of lines.",
        "The bus leaves at 8:15 from the main square.",
        "The report is due on the last day of the month.",
        "This commit renames the test helpers.",
        "The museum has three floors and a café.",
        "Do you want to meet at the station or at the office?",
    ),
}

POLAR = ("positive", "negative")
SENTIMENT = ("positive", "negative", "neutral")
SENTIMENT_PRESETS = {
    frozenset(SENTIMENT): Preset(
        SENTIMENT,
        ((SENTIMENT_QUESTION, POLAR), (LABEL_ONLY, SENTIMENT), (THE_SENTIMENT_IS, SENTIMENT)),
        SENTIMENT_EXAMPLES),
    frozenset(POLAR): Preset(
        POLAR, ((LABEL_ONLY, POLAR), (SENTIMENT_QUESTION, POLAR)),
        {label: SENTIMENT_EXAMPLES[label] for label in POLAR}),
}
VARIANCE_FLOOR = 0.01  # nats squared: keeps one tight score from dominating the distance


def sentiment_preset(labels: Sequence[str]) -> Preset | None:
    """The preset for these labels (compared case-insensitively), if there is one."""
    names = [label.strip().lower() for label in labels]
    if len(set(names)) != len(names):
        return None
    return SENTIMENT_PRESETS.get(frozenset(names))


@dataclass(frozen=True)
class Prototypes:
    means: list[list[float]]  # one score vector per preset label
    variances: list[float]  # pooled within-label variance of each score

    def posterior(self, x: Sequence[float]) -> list[float]:
        return _softmax([-0.5 * sum((xi - mi) ** 2 / vi
                                    for xi, mi, vi in zip(x, mean, self.variances, strict=True))
                         for mean in self.means])


def _framing_prompt_ids(tokenizer: Any, framing: Framing, text: str,
                        labels: Sequence[str]) -> list[int]:
    user = framing.user.format(text=text, labels=_label_list(labels))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                           add_generation_prompt=True)
    return _encode(tokenizer, prompt + framing.answer_prefix)


def _framing_answers(tokenizer: Any, framing: Framing, labels: Sequence[str]) -> list[list[int]]:
    space = " " if framing.answer_prefix else ""
    ids = [_encode(tokenizer, space + label) for label in labels]
    end = _end_of_answer(tokenizer, "", labels) if framing.end_of_turn else None
    return [seq + [end] for seq in ids] if end is not None else ids


def preset_scores(lm: LoadedModel, preset: Preset, text: str,
                  ctx: RunContext) -> tuple[list[float], int]:
    """The text's score vector: per framing, each listed label's log-likelihood minus their mean
    (the last one left out: it is fixed by the others). Also the prompt tokens read."""
    scores: list[float] = []
    tokens = 0
    for framing, labels in preset.framings:
        ctx.check_cancelled()
        prompt_ids = _framing_prompt_ids(lm.tokenizer, framing, text, labels)
        answers = _framing_answers(lm.tokenizer, framing, labels)
        needed = len(prompt_ids) + max(len(a) for a in answers)
        if needed > lm.context_length:
            raise InputTooLong(needed, lm.context_length, "prompt")
        loglik = _label_loglik(lm, prompt_ids, answers, ctx)
        mean = sum(loglik) / len(loglik)
        scores += [v - mean for v in loglik[:-1]]
        tokens += len(prompt_ids)
    return scores, tokens


def prototypes(lm: LoadedModel, preset: Preset, ctx: RunContext) -> Prototypes:
    """Each label's mean score vector over its examples, cached per (model, preset)."""
    key = (lm.name, lm.loaded_at, "prototypes", preset.labels)
    cached = _cache_get(key)
    if cached is not None:
        return cached
    vectors = {label: [preset_scores(lm, preset, example, ctx)[0]
                       for example in preset.examples[label]] for label in preset.labels}
    means = [[sum(col) / len(col) for col in zip(*vectors[label], strict=True)]
             for label in preset.labels]
    deviations = [[(x - m) ** 2 for x, m in zip(vec, mean, strict=True)]
                  for label, mean in zip(preset.labels, means, strict=True)
                  for vec in vectors[label]]
    variances = [max(VARIANCE_FLOOR, sum(col) / len(col)) for col in zip(*deviations, strict=True)]
    found = Prototypes(means, variances)
    _cache_put(key, found)
    return found


def _run_preset(preset: Preset, text: str, labels: list[str], lm: LoadedModel,
                ctx: RunContext) -> dict[str, Any]:
    scores, prompt_tokens = preset_scores(lm, preset, text, ctx)
    probs = prototypes(lm, preset, ctx).posterior(scores)
    spelled = {label.strip().lower(): label for label in labels}  # the request's spelling
    return _result([spelled[label] for label in preset.labels], probs, calibrated=True,
                   prompt_tokens=prompt_tokens, method="loglikelihood")


# -- sequence classifiers ------------------------------------------------------------------------


def _id2label(lm: LoadedModel) -> list[str]:
    mapping = getattr(lm.model.config, "id2label", None) or {}
    return [str(mapping.get(i, mapping.get(str(i), f"LABEL_{i}"))) for i in range(len(mapping))]


def _check_length(tokens: int, lm: LoadedModel) -> None:
    if tokens > lm.context_length:
        raise InputTooLong(tokens, lm.context_length)


def _run_text_classification(params: ClassifyParams, lm: LoadedModel,
                             ctx: RunContext) -> dict[str, Any]:
    import torch

    model_labels = _id2label(lm)
    enc = lm.tokenizer(params.text, return_tensors="pt")
    tokens = int(enc["input_ids"].shape[1])
    _check_length(tokens, lm)
    ctx.check_cancelled()
    with torch.inference_mode():
        logits = lm.model(**{k: v.to(lm.device) for k, v in enc.items()}).logits[0].float()
    probs = torch.softmax(logits, dim=-1).tolist()

    by_name = {label.lower(): i for i, label in enumerate(model_labels)}
    found = [by_name.get(label.lower()) for label in params.labels]
    wanted = [i for i in found if i is not None]
    if len(wanted) == len(found):
        keep = list(dict.fromkeys(wanted))  # the user's order, each model label once
    else:
        keep = list(range(len(model_labels)))
    return _result([model_labels[i] for i in keep], [probs[i] for i in keep],
                   calibrated=False, prompt_tokens=tokens, method="classifier")


def _entailment_id(lm: LoadedModel) -> int:
    for i, label in enumerate(_id2label(lm)):
        if label.lower().startswith("entail"):
            return i
    raise TaskUnavailable(f"model {lm.name!r} has no 'entailment' label; it is not an NLI model",
                          {"model": lm.name, "labels": _id2label(lm)})


def _run_zero_shot(params: ClassifyParams, lm: LoadedModel, ctx: RunContext) -> dict[str, Any]:
    import torch

    labels = list(params.labels)
    entail = _entailment_id(lm)
    hypotheses = [ZERO_SHOT_HYPOTHESIS.format(label) for label in labels]
    enc = lm.tokenizer([params.text] * len(labels), hypotheses, padding=True, return_tensors="pt")
    longest = int(enc["attention_mask"].sum(dim=1).max())
    _check_length(longest, lm)
    text_tokens = len(lm.tokenizer(params.text)["input_ids"])
    ctx.check_cancelled()
    with torch.inference_mode():
        logits = lm.model(**{k: v.to(lm.device) for k, v in enc.items()}).logits.float()
    probs = torch.softmax(logits[:, entail], dim=0).tolist()
    return _result(labels, probs, calibrated=False, prompt_tokens=text_tokens, method="zero-shot-nli")
