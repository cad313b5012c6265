"""`ember adapter train` on a few hundred real examples: time, steps/s, held-out loss and greedy output
before and after, on SmolLM2-135M-Instruct (the default model).

    python bench/adapter_train.py [--examples 300] [--epochs 1] [--max-steps N] [--threads N]
        [--show 3] [--json out.json] [--out DIR] [--build-data]

The data (bench/data/adapter_train.jsonl) is Python's standard library, text nobody on the team wrote:
each example's prompt is a function's qualified name and signature, its completion the summary line
of that function's docstring (its first paragraph, when that is one sentence of 20 to 110 characters). `--build-data` rebuilds it from this interpreter's standard library
(the committed file came from Python 3.11). 10% of it is held out (`--eval-split`, seeded).

The training is the real command (`ember adapter train --json-progress` in a subprocess, on the
default model as a user without a config gets it); the greedy before/after examples load the written
adapter with peft on the same base model. Held-out losses are the trainer's (completion tokens only).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))

DATA = ROOT / "bench" / "data" / "adapter_train.jsonl"
EMBER = str(Path(sys.executable).parent / "ember")
PROMPT = "Write the first line of the docstring of this Python function:\n{name}{signature}"
MODULES = (
    "argparse", "ast", "base64", "bisect", "calendar", "codecs", "collections", "colorsys", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "difflib", "dis", "email.utils", "filecmp",
    "fnmatch", "fractions", "ftplib", "functools", "getpass", "gettext", "glob", "gzip", "hashlib", "heapq",
    "hmac", "html", "http.cookies", "imaplib", "inspect", "ipaddress", "json", "locale", "logging",
    "mailbox", "mimetypes", "netrc", "ntpath", "operator", "optparse", "os", "os.path", "pathlib",
    "pickle", "pkgutil", "platform", "plistlib", "poplib", "posixpath", "pprint", "py_compile", "quopri",
    "random", "re", "reprlib", "sched", "secrets", "shlex", "shutil", "site", "smtplib", "socket",
    "socketserver", "statistics", "string", "subprocess", "sysconfig", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "tokenize", "trace", "traceback", "types", "typing", "unittest.mock",
    "urllib.parse", "urllib.request", "uuid", "warnings", "wave", "weakref", "webbrowser", "zipfile",
    "zipimport",
)


def docstring_pairs() -> list[dict[str, str]]:
    """(qualified name + signature, first docstring line) for public stdlib functions and methods."""
    seen: set[str] = set()
    out = []
    for module_name in MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        members: list[tuple[str, Any]] = []
        for name, obj in inspect.getmembers(module):
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                members.append((f"{module_name}.{name}", obj))
            elif inspect.isclass(obj):
                for meth_name, meth in vars(obj).items():
                    if not meth_name.startswith("_") and inspect.isfunction(meth):
                        members.append((f"{module_name}.{name}.{meth_name}", meth))
        for qualified, fn in members:
            doc = inspect.getdoc(fn)
            if not doc:
                continue
            first = " ".join(doc.strip().split("\n\n")[0].split())  # the summary paragraph, unwrapped
            try:
                signature = str(inspect.signature(fn))
            except (TypeError, ValueError):
                continue
            # one-line summaries only: not a repeated signature, not a fragment, not a paragraph
            if not 20 <= len(first) <= 110 or not first.endswith(".") or first.startswith(fn.__name__ + "(") \
                    or qualified in seen:
                continue
            if len(signature) > 90:
                continue
            seen.add(qualified)
            out.append({"prompt": PROMPT.format(name=qualified, signature=signature), "completion": first})
    return out


def build_data(path: Path, n: int, seed: int = 0) -> int:
    pairs = docstring_pairs()
    random.Random(seed).shuffle(pairs)
    pairs = pairs[:n]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return len(pairs)


def held_out(path: Path, split: float, seed: int) -> list[dict[str, str]]:
    """The examples the command holds out (its own seeded split)."""
    from ember.adapters.train import _split

    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [lines[i] for i in _split(len(lines), split, seed)]


WORD = re.compile(r"[a-z0-9]+")


def word_f1(text: str, reference: str) -> float:
    """Overlap of lower-cased words with the docstring's own summary line (SQuAD-style F1)."""
    got, want = WORD.findall(text.lower()), WORD.findall(reference.lower())
    common = sum(min(got.count(w), want.count(w)) for w in set(got))
    if not common:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def summary_form(text: str) -> bool:
    """Shaped like a docstring summary: one line, a sentence of at most 110 characters."""
    return "\n" not in text and 10 <= len(text) <= 110 and text.endswith(".")


def greedy(folder: Path, adapter: Path, examples: list[dict[str, str]], threads: int) -> list[dict[str, str]]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(folder)
    base = AutoModelForCausalLM.from_pretrained(folder)

    def run(model: Any) -> list[str]:
        texts = []
        for example in examples:
            enc: Any = tok.apply_chat_template([{"role": "user", "content": example["prompt"]}],
                                          add_generation_prompt=True, return_tensors="pt", return_dict=True)
            with torch.no_grad():
                ids = model.generate(**enc, max_new_tokens=32, do_sample=False)
            text: Any = tok.decode(ids[0][enc["input_ids"].shape[1]:], skip_special_tokens=True)
            texts.append(text.strip())
        return texts

    before = run(base)
    after = run(PeftModel.from_pretrained(base, adapter))
    return [{"prompt": e["prompt"], "reference": e["completion"], "before": b, "after": a}
            for e, b, a in zip(examples, before, after, strict=True)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=300, help="examples in the data (with --build-data)")
    ap.add_argument("--build-data", action="store_true", help="rebuild bench/data/adapter_train.jsonl first")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-split", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (daemon.threads)")
    ap.add_argument("--show", type=int, default=3, help="held-out examples to print before/after")
    ap.add_argument("--score", type=int, default=30,
                    help="held-out examples to generate greedily before/after and score (0: none)")
    ap.add_argument("--adapter", help="score this adapter (trained on this data) instead of training")
    ap.add_argument("--out", help="adapter folder (default: a temporary one)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    if args.build_data or not DATA.is_file():
        print(f"data: {build_data(DATA, args.examples)} examples -> {DATA}")
    examples = sum(1 for line in DATA.read_text().splitlines() if line.strip())
    tmp = tempfile.TemporaryDirectory(prefix="ember-adapter-bench-")
    figures: dict[str, Any] = {"examples": examples, "cpus": os.cpu_count(), "threads": args.threads}
    if args.adapter:
        out = Path(args.adapter)
    else:
        out = Path(args.out) if args.out else Path(tmp.name) / "adapter"
        figures.update(train_figures(args, out))
    meta = json.loads((out / "ember_adapter.json").read_text())
    held = held_out(DATA, args.eval_split, 0)[:max(args.score, args.show)]
    if held:
        started = time.monotonic()
        shown: list[dict[str, Any]] = list(greedy(Path(meta["base"]["folder"]), out, held, args.threads))
        for item in shown:
            item["f1_before"] = round(word_f1(item["before"], item["reference"]), 3)
            item["f1_after"] = round(word_f1(item["after"], item["reference"]), 3)
        n = len(shown)
        figures["greedy"] = {
            "examples": n, "seconds": round(time.monotonic() - started, 1),
            "word_f1_before": round(sum(i["f1_before"] for i in shown) / n, 3),
            "word_f1_after": round(sum(i["f1_after"] for i in shown) / n, 3),
            "summary_form_before": sum(summary_form(i["before"]) for i in shown),
            "summary_form_after": sum(summary_form(i["after"]) for i in shown),
            "items": shown,
        }
        g = figures["greedy"]
        print(f"greedy on {n} held-out prompts: word F1 vs the docstring {g['word_f1_before']} -> "
              f"{g['word_f1_after']}; docstring-shaped answers {g['summary_form_before']}/{n} -> "
              f"{g['summary_form_after']}/{n}")
        for item in shown[:args.show]:
            print(f"\n{item['prompt']}\n  reference: {item['reference']}\n  before:    {item['before']}\n"
                  f"  after:     {item['after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    tmp.cleanup()
    return 0


def train_figures(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Run the command once and read its JSON progress."""
    cmd = [EMBER, "adapter", "train", str(DATA), "--out", str(out), "--json-progress", "--epochs",
           str(args.epochs), "--lr", str(args.lr), "--eval-split", str(args.eval_split),
           "--threads", str(args.threads)]
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    load_start = os.getloadavg()[0]
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        sys.exit(proc.returncode)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    start = next(e for e in events if e["event"] == "start")
    done = next(e for e in events if e["event"] == "done")
    steps = [e for e in events if e["event"] == "step"]
    train_s = steps[-1]["elapsed_s"] if steps else 0.0
    before, after = done["eval_loss_before"], done["eval_loss_after"]
    figures = {
        "train_rows": start["train_rows"], "eval_rows": start["eval_rows"], "steps": done["steps"],
        "epochs": args.epochs, "lr": args.lr, "command_wall_s": round(wall, 1), "training_s": train_s,
        "steps_per_s": round(len(steps) / train_s, 3) if train_s else None,
        "eval_loss_before": before, "eval_loss_after": after,
        "loss_ratio_after_before": round(after / before, 3) if before and after else None,
        "load_average_at_start": round(load_start, 2), "load_average_at_end": round(os.getloadavg()[0], 2),
    }
    print(f"{start['train_rows']} train / {start['eval_rows']} held out, {done['steps']} steps, "
          f"{args.threads} thread(s), load average {figures['load_average_at_start']} -> "
          f"{figures['load_average_at_end']}")
    print(f"command {figures['command_wall_s']} s (training steps {train_s} s, {figures['steps_per_s']} steps/s)")
    print(f"held-out loss {before:.4f} -> {after:.4f} (x{figures['loss_ratio_after_before']})")
    return figures


if __name__ == "__main__":
    sys.exit(main())
