"""Faithfulness, coverage and form of `summarize` on tests/data/summaries.jsonl with SmolLM2-135M-Instruct.

    python bench/summary_faithfulness.py [--split dev|test|all] [--forms sentence,paragraph,bullets]
        [--variant NAME ...] [--threads 1] [--json out.json] [--show]

Every text is summarized in every form, greedily, through `summarize.run` (the daemon's code path).
Measures, per form (docs/summarize.md explains them):

- faithful: the share of summary sentences whose content words all appear in the source text
  (after lower-casing and stripping common suffixes; stop words and words that only talk about
  the text, such as "text" or "describes", do not count);
- precision: the share of all summary content words that appear in the source;
- coverage: the share of the text's reference points that the summary mentions (each point lists
  keyword alternatives, every group must match);
- form: the share of summaries with the asked shape (sentence: exactly one sentence; paragraph: one
  paragraph, no list; bullets: 3 to 5 lines, each starting with "- ");
- length: summary words / source words.

`--variant` runs variants side by side (see VARIANTS; each sets summarize.SYSTEM, USER, FORMS or
PREFILL): "current" is the shipped task, "plain-generation" the same prompt without the clean-up of
the answer (lead-ins, the one-sentence cut, bullets), as summarize worked before.
Choose on the dev split, then report on the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "daemon"))
sys.path.insert(0, str(ROOT / "bench"))

DATA = ROOT / "tests" / "data" / "summaries.jsonl"
FORMS = ("sentence", "paragraph", "bullets")

STOP_WORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had
has have having he her here hers herself him himself his how i if in into is it its itself just
me more most my myself no nor not now of off on once only or other our ours ourselves out over own
same she should so some such than that the their theirs them themselves then there these they this
those through to too under until up very was we were what when where which while who whom why will
with would you your yours yourself yourselves one ones may might must shall upon via per within
without across along among around etc s t would also however overall new
""".split())
# Words that talk about the text rather than its content; a summary may use them freely.
META_WORDS = frozenset("""
text article passage summary summarize summarized report reports describe describes described
discuss discusses discussed explain explains explained mention mentions mentioned outline outlines
state states stated note notes noted author authors writer key point points main highlight
highlights including include includes detail details say says said provide provides provided
""".split())

WORD = re.compile(r"[A-Za-z0-9]+(?:[.,'’][A-Za-z0-9]+)*")


def stem(word: str) -> str:
    """A crude English stemmer, applied to both sides, so "voted" matches "votes" and "voting"."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    for suffix, repl in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""),
                         ("ly", "")):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)] + repl
    return w


def content_words(text: str) -> list[str]:
    words = [w for w in WORD.findall(text)]
    return [w for w in words if w.lower() not in STOP_WORDS and stem(w) not in _META_STEMS]


_META_STEMS = frozenset(stem(w) for w in META_WORDS)


def summary_sentences(summary: str) -> list[str]:
    from ember.tasks.sentences import split_sentences

    out = []
    for piece in split_sentences(summary):
        piece = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", piece).strip()
        if WORD.search(piece):
            out.append(piece)
    return out


def faithfulness(summary: str, source: str) -> dict:
    source_stems = {stem(w) for w in WORD.findall(source)}
    sentences = summary_sentences(summary)
    unsupported: list[list[str]] = []
    total = supported = 0
    for sentence in sentences:
        words = content_words(sentence)
        missing = [w for w in words if stem(w) not in source_stems]
        unsupported.append(missing)
        total += len(words)
        supported += len(words) - len(missing)
    faithful = sum(1 for m in unsupported if not m)
    return {
        "sentences": len(sentences),
        "faithful_sentences": faithful,
        "content_words": total,
        "supported_words": supported,
        "unsupported": sorted({w for m in unsupported for w in m}),
    }


def coverage(summary: str, points: list[dict]) -> list[bool]:
    low = summary.lower()
    stems = {stem(w) for w in WORD.findall(summary)}

    def has(alternative: str) -> bool:
        if " " in alternative or not alternative.isalpha():
            return alternative.lower() in low
        return stem(alternative) in stems

    return [all(any(has(a) for a in group) for group in p["keywords"]) for p in points]


def form_ok(summary: str, form: str) -> bool:
    text = summary.strip()
    if not text:
        return False
    if form == "sentence":
        return len(summary_sentences(text)) == 1 and "\n" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    if form == "bullets":
        return 3 <= len(lines) <= 5 and all(line.lstrip().startswith("- ") for line in lines)
    return "\n\n" not in text and not any(re.match(r"\s*(?:[-*•]|\d+[.)])\s", line) for line in lines)


# -- prompt variants (a variant sets summarize.SYSTEM, USER and FORMS) ----------------------------

VARIANTS: dict[str, dict] = {
    "current": {},
    "plain-generation": {  # the current prompt, the model's text as generated (no clean-up)
        "_generate_answer": "plain",
    },
    "text-first": {
        "USER": "{text}\n\nSummarize the text above {form}.",
    },
    "short-forms": {
        "FORMS": {
            "sentence": "in one sentence",
            "paragraph": "in a short paragraph of two or three sentences",
            "bullets": "as three to five bullet points. Write each point on its own line, starting "
                       "with '- '",
        },
    },
    "prefill-bullets": {
        "PREFILL": {"bullets": "- "},
    },
    "short-forms+prefill": {
        "FORMS": {
            "sentence": "in one sentence",
            "paragraph": "in a short paragraph of two or three sentences",
            "bullets": "as three to five bullet points. Write each point on its own line, starting "
                       "with '- '",
        },
        "PREFILL": {"bullets": "- "},
    },
    "main-points": {
        "FORMS": {
            "sentence": "in one sentence that covers its main points",
            "paragraph": "in one short paragraph that covers its main points",
            "bullets": "as three to five short bullet points, each starting with '- '",
        },
    },
    "word-limits": {
        "FORMS": {
            "sentence": "in one sentence of at most 30 words",
            "paragraph": "in one short paragraph of at most 60 words",
            "bullets": "as three to five short bullet points, each starting with '- '",
        },
    },
    "default-system": {  # the model's own system prompt, the rules in the user turn
        "SYSTEM": None,
        "USER": "Summarize the following text {form}. Use only facts from the text. Reply with the "
                "summary only.\n\n{text}",
    },
}


def apply_variant(name: str) -> dict:
    from ember.tasks import summarize

    saved = {k: getattr(summarize, k) for k in ("SYSTEM", "USER", "FORMS", "PREFILL",
                                                 "_generate_answer")}
    for key, value in VARIANTS[name].items():
        setattr(summarize, key, _plain_generation if value == "plain" else value)
    return saved


def _plain_generation(lm, prompt_ids, params, ctx, max_new, form, stream):
    """What summarize did before its answers were cleaned: the generated text, stripped."""
    from ember.tasks import summarize

    gen = summarize.generate(lm, prompt_ids, params, ctx, max_new, stream=stream)
    gen.text = gen.text.strip()
    return gen


def evaluate(lm, rows: list[dict], forms: list[str], show: bool) -> dict:
    from ember.tasks import summarize
    from ember.tasks.base import RunContext
    from ember.wire import SummarizeParams

    out: dict = {}
    for form in forms:
        items = []
        started = time.perf_counter()
        for r in rows:
            res = summarize.run(SummarizeParams.model_validate({"text": r["text"], "form": form}), lm,
                                RunContext())
            summary = res["text"]
            f = faithfulness(summary, r["text"])
            cov = coverage(summary, r["points"])
            item = {"id": r["id"], "summary": summary, "finish_reason": res["finish_reason"], **f,
                    "covered": cov, "form_ok": form_ok(summary, form),
                    "length": len(WORD.findall(summary)) / len(WORD.findall(r["text"]))}
            items.append(item)
            if show:
                print(f"--- {r['id']} / {form}: faithful {f['faithful_sentences']}/{f['sentences']}, "
                      f"covered {sum(cov)}/{len(cov)}, form {'ok' if item['form_ok'] else 'WRONG'}"
                      + (f", unsupported {f['unsupported']}" if f["unsupported"] else ""))
                print(summary)
        sentences = sum(i["sentences"] for i in items)
        out[form] = {
            "items": items,
            "faithful": sum(i["faithful_sentences"] for i in items) / max(1, sentences),
            "precision": sum(i["supported_words"] for i in items)
            / max(1, sum(i["content_words"] for i in items)),
            "coverage": sum(sum(i["covered"]) for i in items) / sum(len(i["covered"]) for i in items),
            "form": sum(i["form_ok"] for i in items) / len(items),
            "length": sum(i["length"] for i in items) / len(items),
            "sentences": sentences,
            "seconds": time.perf_counter() - started,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--split", choices=["dev", "test", "all"], default="test")
    parser.add_argument("--forms", default=",".join(FORMS))
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the numbers and summaries here")
    parser.add_argument("--show", action="store_true", help="print every summary")
    args = parser.parse_args()

    import torch

    from classify_accuracy import load_smollm2

    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    if args.split != "all":
        rows = [r for r in rows if r["split"] == args.split]
    forms = [f for f in args.forms.split(",") if f]
    cache_root = Path(os.environ.get("EMBER_TEST_CACHE")
                      or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ember")
    lm = load_smollm2(cache_root, "transformers", args.threads)  # where the prompts were chosen
    print(f"model: SmolLM2-135M-Instruct Q4_1 (dequantized to float32), {args.threads} thread(s); "
          f"{len(rows)} texts ({args.split} split of {args.data.name})\n")
    results = {}
    for name in args.variant or ["current"]:
        saved = apply_variant(name)
        try:
            results[name] = evaluate(lm, rows, forms, args.show)
        finally:
            apply_variant_restore(saved)
        print(f"== variant {name}")
        print(f"{'form':12}{'faithful':>10}{'precision':>11}{'coverage':>10}{'form ok':>9}"
              f"{'length':>8}{'sentences':>11}{'s/text':>8}")
        for form, m in results[name].items():
            print(f"{form:12}{m['faithful']:>10.2f}{m['precision']:>11.2f}{m['coverage']:>10.2f}"
                  f"{m['form']:>9.2f}{m['length']:>8.2f}{m['sentences']:>11}"
                  f"{m['seconds'] / len(rows):>8.1f}")
        print()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def apply_variant_restore(saved: dict) -> None:
    from ember.tasks import summarize

    for key, value in saved.items():
        setattr(summarize, key, value)


if __name__ == "__main__":
    main()
