"""The engines on the real SmolLM2: Ember's decode loop, prefix reuse, cancellation and failure
handling, on transformers (the reference) and onnxruntime (the fast CPU engine), in process."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from ember.engines import decode
from ember.engines.base import EngineError
from ember.engines.decode import DecodeRequest
from ember.engines.prefix_cache import FRESH_TOKENS, PrefixCache
from ember.engines.sampling import Sampling, pick
from ember.engines.text import TextAccumulator
from ember.errors import RequestCancelled
from ember.tasks.base import PREFILL_CHUNK, RunContext

pytestmark = pytest.mark.model

ENGINES = ["transformers", "onnxruntime"]
BUDGET = 256 << 20
SOURCE = open(textwrap.__file__).read()  # a real file nobody on the team wrote


@pytest.fixture(scope="session")
def tokenizer(smollm2_folder):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(smollm2_folder)


@pytest.fixture(scope="session")
def smollm2_onnx(smollm2_folder, cache_dir):
    from ember.models import onnx_convert

    return onnx_convert.ensure(smollm2_folder, "int4", cache_dir, require_exact=True)


@pytest.fixture(scope="session")
def engines(smollm2_folder, smollm2_onnx):
    import torch
    from transformers import AutoModelForCausalLM

    from ember.engines.onnx_engine import OnnxRuntimeEngine
    from ember.engines.torch_engine import TransformersEngine

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(smollm2_folder).eval()
    yield {
        "transformers": TransformersEngine(model, "cpu", 8192),
        "onnxruntime": OnnxRuntimeEngine(smollm2_onnx.folder, 1, smollm2_onnx.kv_bytes_per_token),
    }
    torch.set_num_threads(threads)


def ids_of(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text)["input_ids"])


def run(cache, tokenizer, prompt: list[int], ctx=None, max_new: int = 16, **kw) -> decode.Generated:
    request = DecodeRequest(prompt, max_new, eos_ids={2}, **kw)
    return decode.generate(cache, tokenizer, request, ctx or RunContext(), 8192)


class CancelAfter(RunContext):
    """A request cancelled after `checks` cancellation checks (prefill chunks and decode steps)."""

    def __init__(self, checks: int):
        super().__init__()
        self.left = checks

    def check_cancelled(self) -> None:
        self.left -= 1
        if self.left < 0:
            self.cancelled.set()
        super().check_cancelled()


def kv_length(seq) -> int:
    """How many tokens of KV state the runtime itself holds for `seq`."""
    if hasattr(seq, "generator"):
        return seq.generator.token_count()
    return 0 if seq.cache is None else int(seq.cache.get_seq_length())


def check_consistent(cache: PrefixCache) -> None:
    assert cache._busy == []  # nothing left checked out
    for seq in cache._idle:
        assert kv_length(seq) == len(seq.tokens)
    assert cache.nbytes <= cache.budget_bytes


# -- prefix reuse ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENGINES)
def test_prefix_reuse_gives_the_same_tokens_as_a_cold_run(engines, tokenizer, name):
    engine = engines[name]
    before = ids_of(tokenizer, SOURCE[:1500])
    after = ids_of(tokenizer, SOURCE[:1530])  # the user typed on
    cold = run(PrefixCache(engine, 0), tokenizer, after)
    assert cold.cached_tokens == 0

    warm_cache = PrefixCache(engine, BUDGET)
    run(warm_cache, tokenizer, before)
    warm = run(warm_cache, tokenizer, after)
    common = decode_common(before, after)
    assert warm.cached_tokens == min(common, len(after) - FRESH_TOKENS) > 300
    assert warm.text == cold.text and warm.completion_tokens == cold.completion_tokens
    again = run(warm_cache, tokenizer, after)  # the same prompt: all but the last tokens reused
    assert again.cached_tokens == len(after) - FRESH_TOKENS
    assert again.text == cold.text
    check_consistent(warm_cache)


def decode_common(a: list[int], b: list[int]) -> int:
    from ember.engines.prefix_cache import common_prefix

    return common_prefix(a, b)


def test_a_changed_last_token_is_run_again(engines, tokenizer):
    """Typing a character can merge into the prompt's last token: reuse stops before it."""
    engine = engines["onnxruntime"]
    text = SOURCE[:800].rstrip() + "\n\ndef wra"
    first, second = ids_of(tokenizer, text), ids_of(tokenizer, text + "p")
    common = decode_common(first, second)
    assert common < len(first)  # "wra" + "p" is not "wra" followed by "p"
    cache = PrefixCache(engine, BUDGET)
    run(cache, tokenizer, first)
    warm = run(cache, tokenizer, second)
    assert warm.cached_tokens == min(common, len(second) - FRESH_TOKENS)
    assert warm.text == run(PrefixCache(engine, 0), tokenizer, second).text


def test_chat_history_reuses_the_earlier_turns(engines, tokenizer):
    engine = engines["onnxruntime"]
    turns = [{"role": "user", "content": "Name a fruit."}]
    first = list(tokenizer.apply_chat_template(turns, add_generation_prompt=True)["input_ids"])
    cache = PrefixCache(engine, BUDGET)
    answer = run(cache, tokenizer, first, max_new=8)
    turns += [{"role": "assistant", "content": answer.text}, {"role": "user", "content": "Another one."}]
    second = list(tokenizer.apply_chat_template(turns, add_generation_prompt=True)["input_ids"])
    warm = run(cache, tokenizer, second, max_new=8)
    assert warm.cached_tokens >= len(first) - FRESH_TOKENS


@pytest.mark.parametrize("name", ENGINES)
def test_the_budget_evicts_the_least_recently_used_prompt(engines, tokenizer, name):
    engine = engines[name]
    prompts = [ids_of(tokenizer, SOURCE[i * 2000:i * 2000 + 600]) for i in range(3)]
    one = engine.kv_bytes(max(len(p) for p in prompts) + 8)
    cache = PrefixCache(engine, int(one * 1.5))
    for prompt in prompts:
        run(cache, tokenizer, prompt, max_new=4)
    assert cache.evictions >= 2
    check_consistent(cache)
    assert run(cache, tokenizer, prompts[-1], max_new=4).cached_tokens > 0  # the newest survived
    assert run(cache, tokenizer, prompts[0], max_new=4).cached_tokens == 0


def test_editors_sequences_are_evicted_after_batch_work(engines, tokenizer):
    engine = engines["onnxruntime"]
    prompts = [ids_of(tokenizer, SOURCE[i * 2000:i * 2000 + 600]) for i in range(3)]
    one = engine.kv_bytes(max(len(p) for p in prompts) + 8)
    cache = PrefixCache(engine, int(one * 2.5))  # two fit
    run(cache, tokenizer, prompts[0], max_new=4, ctx=RunContext(priority="interactive"))
    run(cache, tokenizer, prompts[1], max_new=4, ctx=RunContext(priority="batch"))  # more recent
    run(cache, tokenizer, prompts[2], max_new=4, ctx=RunContext(priority="interactive"))
    check_consistent(cache)
    assert run(cache, tokenizer, prompts[0], max_new=4).cached_tokens > 0  # the editor's stayed
    assert run(cache, tokenizer, prompts[1], max_new=4).cached_tokens == 0


# -- cancellation and failures -------------------------------------------------------------------


@pytest.mark.parametrize("name", ENGINES)
def test_a_request_cancelled_while_decoding_leaves_only_exact_state(engines, tokenizer, name):
    engine = engines[name]
    prompt = ids_of(tokenizer, SOURCE[:700])
    cache = PrefixCache(engine, BUDGET)
    with pytest.raises(RequestCancelled):
        run(cache, tokenizer, prompt, ctx=CancelAfter(6), max_new=40)
    check_consistent(cache)
    assert run(cache, tokenizer, prompt).text == run(PrefixCache(engine, 0), tokenizer, prompt).text


def test_a_request_cancelled_while_prefilling_keeps_whole_chunks(engines, tokenizer):
    engine = engines["onnxruntime"]
    prompt = ids_of(tokenizer, SOURCE[:4000])
    assert len(prompt) > 2 * PREFILL_CHUNK
    cache = PrefixCache(engine, BUDGET)
    with pytest.raises(RequestCancelled):
        run(cache, tokenizer, prompt, ctx=CancelAfter(1))
    check_consistent(cache)
    assert [len(s.tokens) for s in cache._idle] == [PREFILL_CHUNK]


def test_a_runtime_failure_discards_the_sequence(engines, tokenizer, monkeypatch):
    engine = engines["onnxruntime"]
    cache = PrefixCache(engine, BUDGET)
    prompt = ids_of(tokenizer, SOURCE[:300])
    run(cache, tokenizer, prompt)
    seq = cache._idle[0]

    def broken(ids, all_logits):
        raise RuntimeError("simulated runtime failure")  # a fault we cannot cause for real

    monkeypatch.setattr(seq, "_forward", broken)
    with pytest.raises(EngineError, match="simulated"):
        run(cache, tokenizer, prompt + ids_of(tokenizer, " more"))
    assert seq not in cache._idle and cache._busy == []
    assert run(cache, tokenizer, prompt).completion_tokens > 0  # a fresh sequence takes over


def test_an_onnxruntime_forward_lets_other_threads_run(engines, tokenizer):
    """The daemon's event loop keeps writing deltas and reading requests while a forward runs:
    the engine releases the GIL (through oga.py; onnxruntime-genai's binding holds it)."""
    import threading

    seq = engines["onnxruntime"].new_sequence(1024)
    prompt = ids_of(tokenizer, SOURCE)[:768]  # one forward long enough to notice
    started, finished = threading.Event(), threading.Event()

    def forward():
        started.set()
        seq.append(prompt)
        finished.set()

    worker = threading.Thread(target=forward)
    worker.start()
    started.wait()
    steps = 0
    while not finished.is_set():  # runs only while this thread can take the GIL
        steps += 1
    worker.join()
    seq.free()
    # Held, the GIL lets this loop run one switch interval (5 ms: under 100,000 steps here); released,
    # the whole forward (seconds: tens of millions of steps).
    assert steps > 1_000_000, f"only {steps} steps of another thread during a forward: the GIL was held"


def test_onnxruntime_errors_name_the_problem(tmp_path):
    from ember.engines import oga

    with pytest.raises(oga.OgaError, match="genai_config.json"):
        oga.Model(tmp_path, {})


# -- accuracy of the fast engine -----------------------------------------------------------------


def test_onnxruntime_int4_copies_the_ggufs_blocks(smollm2_onnx):
    assert smollm2_onnx.method.startswith("int4 (the GGUF's own blocks: 150 4-bit layers")
    assert "150 Q4_1 layers with integer zero points and their remainders as 1 4-bit digit" in smollm2_onnx.method
    assert "top 64 logits from its 8-bit rows" in smollm2_onnx.method
    assert "30 projections fused with another that reads the same input" in smollm2_onnx.method


def test_the_logits_that_pick_tokens_are_the_8_bit_output_layers(engines, tokenizer):
    """The output layer is read at 4 bits and each position's top logits are recomputed from its
    8-bit rows: those must match the float32 reference about as closely as the 8-bit layer does
    (about 0.18 here with one remainder digit, 0.15 with two), far closer than 4-bit values (about
    0.65). The Q4_1 layers' remainders count too: without them the error is about 1.2."""
    import torch

    ids = ids_of(tokenizer, SOURCE)[:200]
    seq = engines["onnxruntime"].new_sequence(256)
    got = decode.prefill(seq, ids, RunContext(), all_logits=True)
    seq.free()
    with torch.inference_mode():
        ref = engines["transformers"].model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
    order = np.argsort(-got, axis=-1)[:, :16]
    error = np.abs(np.take_along_axis(got, order, -1) - np.take_along_axis(ref, order, -1))
    assert error.mean() < 0.25
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.9


def test_onnxruntime_perplexity_is_within_five_percent_of_float32(engines, tokenizer):
    ids = ids_of(tokenizer, SOURCE)[:512]
    ppl = {name: decode.perplexity(engines[name].new_sequence(600), ids, RunContext()) for name in ENGINES}
    assert ppl["onnxruntime"] <= ppl["transformers"] * 1.05


def test_label_scores_match_a_plain_forward(engines, tokenizer):
    import torch

    engine = engines["transformers"]
    prompt = ids_of(tokenizer, "The weather today is")
    continuations = [ids_of(tokenizer, " sunny and warm"), ids_of(tokenizer, " cold")]
    scores = decode.loglikelihoods(PrefixCache(engine, BUDGET), prompt, continuations, RunContext())
    expected = []
    with torch.inference_mode():
        for cont in continuations:
            logits = engine.model(input_ids=torch.tensor([prompt + cont])).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            expected.append(sum(float(logprobs[len(prompt) - 1 + j, t]) for j, t in enumerate(cont)))
    assert scores == pytest.approx(expected, abs=1e-3)
    ort = decode.loglikelihoods(PrefixCache(engines["onnxruntime"], BUDGET), prompt, continuations, RunContext())
    assert np.argmax(ort) == np.argmax(scores)


# -- sampling and text ---------------------------------------------------------------------------


def test_sampling_is_repeatable_with_a_seed_and_top_k_one_is_greedy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(1000).astype(np.float32)
    seeded = Sampling(temperature=0.8, top_p=0.9, top_k=50, seed=3)
    first = [pick(logits, seeded, r) for r in [seeded.rng()] for _ in range(20)]
    second = [pick(logits, seeded, r) for r in [seeded.rng()] for _ in range(20)]
    assert first == second and len(set(first)) > 1
    assert pick(logits, Sampling(temperature=1.5, top_k=1), rng) == int(np.argmax(logits))
    assert pick(logits, Sampling(), rng) == int(np.argmax(logits))


def test_top_p_keeps_only_the_nucleus():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float64))
    rng = np.random.default_rng(1)
    seen = {pick(logits, Sampling(temperature=1.0, top_p=0.7), rng) for _ in range(300)}
    assert seen == {0, 1}  # 0.5 + 0.3 reaches 0.7; 2 and 3 are outside the nucleus


def test_incremental_detokenization_matches_a_full_decode(tokenizer):
    text = SOURCE[:3000] + " naïve café ✓ 日本語 😀 done"
    ids = ids_of(tokenizer, text)
    deltas: list[str] = []
    acc = TextAccumulator(tokenizer, [], deltas.append)
    for i in ids:
        acc.add([i])
    final = acc.finish()
    assert final == tokenizer.decode(ids, skip_special_tokens=True)
    assert "".join(deltas) == final
