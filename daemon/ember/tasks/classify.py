"""classify: a probability for each label, summing to 1, and the top label.

How each model kind scores the labels:

- causal-lm (an instruct model): the chat template asks the model to answer with one of the labels;
  each label is scored by the log-likelihood of its tokens as the assistant's answer (the sum of the
  token log-probabilities, then the end-of-turn token), and a softmax over those sums gives the
  probabilities. No text is generated or parsed. The prompt runs once; its KV cache is copied for
  all labels, which then run in one batched forward.
  The sentiment labels (positive/negative/neutral, or positive/negative) use a preset: the text is
  scored in two framings and the score vector is compared with prototypes, the mean score vectors
  of shipped example sentences of each label (prototype calibration; computed once per model and
  kept on disk beside Ember's conversion of it).
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

import hashlib
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engines.decode import loglikelihoods
from ..errors import InputTooLong, InvalidParams, TaskUnavailable
from ..models.cache import read_json, write_json_atomic
from ..models.loaded import LoadedModel
from ..wire import ClassifyParams
from .base import RunContext

log = logging.getLogger(__name__)

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
# "neutral", and contextual calibration cannot fix a catch-all label (docs/classify.md). What does
# tell a neutral text is how weakly the model leans either way when asked "positive or negative?".
# The preset asks in two framings and compares the resulting score vector with each label's
# prototype: the mean score vector of shipped example sentences of that label (24 per label, in many
# styles), scored by the same model once and cached in memory and on disk. The probabilities are
# the posteriors of Gaussians around the prototypes, each label with its own diagonal variance
# (equal priors), softened by a temperature fitted by leave-one-out on the examples.


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


# The instruction first, the answer begun; and a question after the text.
SENTIMENT_COLON = Framing("Classify the sentiment of this text as {labels}.\n\n{text}",
                          answer_prefix="Sentiment:")
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
        "I'm really proud of how this turned out.",
        "My friends threw me a surprise party and I loved every minute.",
        "Good job!",
        "The kids had a wonderful time at the zoo.",
        "Fixed the slow query, the dashboard loads instantly now.",
        "She smiled, happy to be home at last.",
        "This is such a cozy, charming little town.",
        "yay, we won the match!",
        "Local volunteers were praised for their heroic rescue of the stranded hikers.",
        "Hi all, great news: we hit our target a month early!",
        "Is there anything better than fresh bread on a Sunday morning?",
        "The sunset over the lake tonight was stunning.",
        "Grandma was so touched by the flowers that she cried happy tears.",
        "Merged, thanks! Really elegant solution.",
        "We had a fantastic holiday and the kids want to go back.",
        "She finally got the job she dreamed of and is over the moon.",
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
        "I'm so angry I could scream.",
        "She felt hurt and betrayed by her best friend.",
        "The kids were miserable in the rain all afternoon.",
        "Broke the build again, this is a mess.",
        "ugh, my phone died and I missed the call",
        "This neighbourhood is dirty and dangerous.",
        "He was scared and alone in the hospital.",
        "Bad idea.",
        "The factory closure left hundreds of families in despair.",
        "Hi all, bad news: the launch failed and we lost the client.",
        "Why is this app so slow and confusing?",
        "The storm ruined our garden and flooded the basement.",
        "Dad was heartbroken when he heard the news.",
        "This patch is sloppy and breaks half the tests.",
        "Our holiday was a disaster from start to finish.",
        "He hates his new job and dreads every Monday.",
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
        "She lives on the second floor.",
        "He took the bus to work.",
        "Update the README.",
        "ok see you at 5",
        "The kids had lunch at the zoo.",
        "The town has a church, a school and two shops.",
        "The parcel was delivered on Monday.",
        "The team played the match on Saturday.",
        "The council will meet on Thursday to discuss the budget.",
        "Hi all, the next release is planned for May.",
        "Is there a pharmacy near the hotel?",
        "The lake is about two kilometres long.",
        "Grandma moved to a smaller house last year.",
        "Merged into the release branch.",
        "We flew to Lisbon and took a train to Porto.",
        "She starts her new job on the first of June.",
    ),
}

POLAR = ("positive", "negative")
SENTIMENT = ("positive", "negative", "neutral")
SENTIMENT_PRESETS = {
    # "positive or negative?" (how far the text leans), and the same listing all three labels
    frozenset(SENTIMENT): Preset(
        SENTIMENT, ((SENTIMENT_COLON, POLAR), (SENTIMENT_COLON, SENTIMENT)), SENTIMENT_EXAMPLES),
    frozenset(POLAR): Preset(
        POLAR, ((SENTIMENT_COLON, POLAR), (SENTIMENT_QUESTION, POLAR)),
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
    variances: list[list[float]]  # per label, the within-label variance of each score
    temperature: float = 1.0  # divides the log-densities (fitted by leave-one-out; fit_prototypes)

    def logits(self, x: Sequence[float]) -> list[float]:
        """Each label's Gaussian log-density at x (up to a shared constant)."""
        return [-0.5 * sum((xi - mi) ** 2 / vi + math.log(vi) for xi, mi, vi in zip(x, mean, var, strict=True))
                for mean, var in zip(self.means, self.variances, strict=True)]

    def posterior(self, x: Sequence[float]) -> list[float]:
        return _softmax([v / self.temperature for v in self.logits(x)])

    def to_json(self) -> dict[str, Any]:
        return {"means": self.means, "variances": self.variances, "temperature": self.temperature}

    @classmethod
    def from_json(cls, data: Any, labels: int, scores: int) -> Prototypes | None:
        """The stored prototypes if they have the expected shape and finite values, else None."""
        try:
            means = [[float(v) for v in row] for row in data["means"]]
            variances = [[float(v) for v in row] for row in data["variances"]]
            temperature = float(data["temperature"])
        except (KeyError, TypeError, ValueError):
            return None
        rows = means + variances
        positive = [v for row in variances for v in row] + [temperature]
        if len(means) != labels or len(variances) != labels or any(len(row) != scores for row in rows) \
                or not all(math.isfinite(v) for row in rows for v in row) \
                or not all(math.isfinite(v) and v > 0 for v in positive):
            return None
        return cls(means, variances, temperature)


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
    """Each label's mean score vector over its examples, cached per (model, preset) in the process
    and on disk beside the model's conversion (calibration_folder), so a second start reads them."""
    key = (lm.name, lm.loaded_at, "prototypes", preset.labels)
    cached = _cache_get(key)
    if cached is not None:
        return cached
    path = _stored_path(lm, preset)
    found = _read_stored(path, preset) if path is not None else None
    if found is None:
        found = fit_prototypes(preset, {label: [preset_scores(lm, preset, example, ctx)[0]
                                                for example in preset.examples[label]]
                                        for label in preset.labels})
        if path is not None:
            _write_stored(path, lm, preset, found)
    _cache_put(key, found)
    return found


def fit_prototypes(preset: Preset, vectors: dict[str, list[list[float]]]) -> Prototypes:
    """Prototypes from the examples' score vectors (per label), and the temperature that makes
    their posteriors honest: fitted by leave-one-out, so it measures how far an unseen sentence
    lies from prototypes built without it, not how tight the examples are around their own mean."""
    means, variances = _means_and_variances([vectors[label] for label in preset.labels])
    held_out: list[tuple[list[float], int]] = []  # (logits of an example left out, its label)
    for index, label in enumerate(preset.labels):
        for left in range(len(vectors[label])):
            groups = [vectors[other] if other != label else vectors[label][:left] + vectors[label][left + 1:]
                      for other in preset.labels]
            loo = Prototypes(*_means_and_variances(groups))
            held_out.append((loo.logits(vectors[label][left]), index))
    return Prototypes(means, variances, _fit_temperature(held_out))


def _means_and_variances(groups: list[list[list[float]]]) -> tuple[list[list[float]], list[list[float]]]:
    """Each group's mean vector and the variance of each score around it (at least VARIANCE_FLOOR).

    Per label, not pooled: neutral texts lean weakly and alike, polar ones by varying amounts, so
    a pooled variance puts the boundary too far from the neutral prototype."""
    means = [[sum(col) / len(col) for col in zip(*vecs, strict=True)] for vecs in groups]
    variances = [[max(VARIANCE_FLOOR, sum((x - m) ** 2 for x in col) / len(col))
                  for col, m in zip(zip(*vecs, strict=True), mean, strict=True)]
                 for vecs, mean in zip(groups, means, strict=True)]
    return means, variances


# 1 to 256, 9% apart. Never below 1: when the examples separate perfectly, leave-one-out would
# sharpen without bound, and unseen text is never that clean.
TEMPERATURES = [2 ** (k / 8) for k in range(0, 65)]


def _fit_temperature(held_out: list[tuple[list[float], int]]) -> float:
    """The temperature with the least negative log-likelihood of the held-out labels."""
    def nll(t: float) -> float:
        return -sum(math.log(max(_softmax([v / t for v in logits])[label], 1e-300))
                    for logits, label in held_out)

    return min(TEMPERATURES, key=nll)


# -- the prototypes on disk ----------------------------------------------------------------------

# Bump when the prototypes' maths changes; the examples, framings and model are in the file's key.
PROTOTYPES_FORMAT = 2
STORE_FOLDER = ".classify"  # hidden: a conversion's file list and source key skip dot files


def calibration_folder(lm: LoadedModel) -> Path | None:
    """Where this model's classify calibration is kept: inside Ember's own conversion of the model
    (the onnxruntime entry, else the folder converted from a GGUF), under daemon.cache_dir. None for
    a model Ember did not convert (a user's folder or the Hugging Face cache are not written to):
    its calibration stays in memory."""
    from ..models import gguf, onnx_convert

    engine_folder = getattr(lm.engine, "folder", None)
    if engine_folder is not None and (Path(engine_folder) / onnx_convert.MARKER).is_file():
        return Path(engine_folder) / STORE_FOLDER
    source = Path(lm.source_path)
    if (source / gguf.MARKER).is_file():
        return source / STORE_FOLDER
    return None


def _preset_spec(lm: LoadedModel, preset: Preset) -> dict[str, Any]:
    """Everything the prototypes depend on besides the model's files (which the folder fixes)."""
    return {
        "format": PROTOTYPES_FORMAT, "variance_floor": VARIANCE_FLOOR, "labels": list(preset.labels),
        "framings": [[f.user, f.answer_prefix, f.end_of_turn, list(listed)] for f, listed in preset.framings],
        "examples": {label: list(preset.examples[label]) for label in preset.labels},
        "engine": getattr(lm.engine, "name", "transformers"), "quantization": lm.quantization,
        "dtype": lm.dtype, "device": lm.device,
    }


def _stored_path(lm: LoadedModel, preset: Preset) -> Path | None:
    folder = calibration_folder(lm)
    if folder is None:
        return None
    digest = hashlib.sha256(json.dumps(_preset_spec(lm, preset), sort_keys=True).encode()).hexdigest()
    return folder / f"prototypes-{'-'.join(preset.labels)}-{digest[:16]}.json"


def _score_count(preset: Preset) -> int:
    return sum(len(listed) - 1 for _, listed in preset.framings)


def _read_stored(path: Path, preset: Preset) -> Prototypes | None:
    if not path.is_file():
        return None
    found = Prototypes.from_json(read_json(path), len(preset.labels), _score_count(preset))
    if found is None:
        log.warning("Ignoring damaged classify prototypes in %s (computing them again)", path)
    return found


def _write_stored(path: Path, lm: LoadedModel, preset: Preset, found: Prototypes) -> None:
    try:
        write_json_atomic(path, {**found.to_json(), "model": lm.name, "spec": _preset_spec(lm, preset)})
    except OSError as exc:  # a read-only cache: keep them in memory only
        log.warning("Could not store classify prototypes in %s: %s", path, exc)


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
