"""Cross-file holes: completions that need a name defined in another file, with and without workspace context.

    python bench/completion_context.py [--holes 16] [--seed 21] [--json FILE|-] [--daemon-code DIR]

Holes from standard-library packages (asyncio, email, json, logging, concurrent.futures, urllib, http,
multiprocessing, importlib, xml.etree: code nobody on the team wrote) where a module calls a function
or class of a sibling module (`events.get_running_loop()` after `from . import events`, or `_fmt(...)`
after `from .util import _fmt`). The cursor is where that name starts (after `events.`, or at the
start of a bare name), the truth is the rest of the line, and only holes whose name appears nowhere in
the prefix and suffix windows count: the sibling file is the only place to learn it from.

Each hole is sent twice to one `ember serve`, with the VS Code extension's window (as in
completion_quality.py), `max_tokens` 48:
  without   `context: false`
  ring      after a `context/add` notification with the sibling file's lines around the name's
            definition (`kind: "open"`, 40 lines: what a client sends when the user opened that file
            at that definition), `context: true`. The ring keeps the earlier holes' chunks too, as a
            client's ring keeps the files met before.
Reported: first-line exact match with the truth, the share whose completion starts with the needed
name (after any spaces), and usage.context_tokens.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from completion_quality import MAX_TOKENS, commit_of, first_line, start_daemon, window
from editor import Daemon, log

PACKAGES = ["asyncio", "email", "json", "logging", "concurrent.futures", "urllib", "http", "multiprocessing",
            "importlib", "xml.etree"]
CHUNK_BEFORE, CHUNK_LINES = 5, 40


@dataclass
class CrossHole:
    path: str
    start: int  # the hole is text[start:end], the rest of the line from where the name starts
    end: int
    name: str
    sibling: str
    chunk: str  # the sibling's lines around the name's definition


def _definitions(tree: ast.Module) -> dict[str, int]:
    return {node.name: node.lineno for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _char(line: str, col: int) -> int:
    return len(line.encode()[:col].decode(errors="replace"))  # ast columns count UTF-8 bytes


def package_holes(package: str) -> list[CrossHole]:
    folder = Path(str(importlib.import_module(package).__file__)).parent
    modules = {p.stem: p for p in sorted(folder.glob("*.py")) if p.stem != "__init__"}
    trees = {name: ast.parse(p.read_text()) for name, p in modules.items()}
    defs = {name: _definitions(tree) for name, tree in trees.items()}
    holes = []
    for name, tree in trees.items():
        text = modules[name].read_text()
        lines = text.split("\n")
        line_starts = [0]
        for ln in lines:
            line_starts.append(line_starts[-1] + len(ln) + 1)
        as_module: dict[str, str] = {}  # local name -> sibling module
        as_name: dict[str, tuple[str, str]] = {}  # local name -> (sibling module, its name there)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            target = node.module or ""
            if node.level == 0 and target.startswith(package + "."):
                target = target[len(package) + 1:]
            elif node.level != 1:
                continue
            for alias in node.names:
                local = alias.asname or alias.name
                if not target and alias.name in modules:
                    as_module[local] = alias.name
                elif target in modules and alias.name in defs[target]:
                    as_name[local] = (target, alias.name)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            one_line = {s.lineno for s in ast.walk(fn) if isinstance(s, ast.stmt) and s.lineno == s.end_lineno
                        and not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
            for call in ast.walk(fn):
                if not isinstance(call, ast.Call) or call.lineno not in one_line or call.end_lineno != call.lineno:
                    continue
                f = call.func
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in as_module \
                        and f.attr in defs[as_module[f.value.id]]:
                    sibling, needed, col = as_module[f.value.id], f.attr, (f.end_col_offset or 0) - len(f.attr)
                elif isinstance(f, ast.Name) and f.id in as_name:
                    (sibling, defined), needed, col = as_name[f.id], f.id, f.col_offset
                    if defined != needed:
                        continue  # imported under another name: the sibling does not show it
                else:
                    continue
                row = call.lineno - 1
                start = line_starts[row] + _char(lines[row], col)
                end = line_starts[row] + len(lines[row])
                if text[start:start + len(needed)] != needed or len(text[start:end].strip()) < 3:
                    continue
                def_row = defs[sibling][needed] - 1
                sib_lines = modules[sibling].read_text().split("\n")
                chunk = "\n".join(sib_lines[max(0, def_row - CHUNK_BEFORE):def_row + CHUNK_LINES - CHUNK_BEFORE])
                holes.append(CrossHole(str(modules[name]), start, end, needed, str(modules[sibling]), chunk))
    return holes


def sample(count: int, seed: int) -> list[CrossHole]:
    """Holes whose name is nowhere in the windows, at most two per (module, name), spread over packages."""
    rng = random.Random(seed)
    pools = []
    for package in PACKAGES:
        kept: list[CrossHole] = []
        seen: dict[tuple[str, str], int] = {}
        for h in package_holes(package):
            text = Path(h.path).read_text()
            prefix, suffix = window(text, h.start, h.end)
            word = re.compile(rf"\b{re.escape(h.name)}\b")
            key = (h.path, h.name)
            if word.search(prefix) or word.search(suffix) or seen.get(key, 0) >= 2:
                continue
            seen[key] = seen.get(key, 0) + 1
            kept.append(h)
        rng.shuffle(kept)
        pools.append(kept)
    holes: list[CrossHole] = []
    while len(holes) < count and any(pools):
        for pool in pools:
            if pool and len(holes) < count:
                holes.append(pool.pop())
    return holes


def run(d: Daemon, holes: list[CrossHole]) -> list[dict[str, Any]]:
    records = []
    for i, h in enumerate(holes):
        text = Path(h.path).read_text()
        prefix, suffix = window(text, h.start, h.end)
        params = {"prefix": prefix, "suffix": suffix, "max_tokens": MAX_TOKENS, "language": "python", "path": h.path}
        rec: dict[str, Any] = {**asdict(h), "truth": text[h.start:h.end]}
        without = d.call("complete", {**params, "context": False})
        # A notification: no id, no reply (Daemon.send numbers every message, so write it here).
        note = {"jsonrpc": "2.0", "method": "context/add",
                "params": {"chunks": [{"path": h.sibling, "text": h.chunk, "kind": "open"}]}}
        assert d.proc.stdin
        d.proc.stdin.write((json.dumps(note) + "\n").encode())
        d.proc.stdin.flush()
        ring = d.call("complete", {**params, "context": True})
        for label, result in (("without", without), ("ring", ring)):
            got = result["text"]
            rec[label] = {"text": got, "exact": first_line(got) == first_line(rec["truth"]),
                          "name": re.match(rf"\s*{re.escape(h.name)}\b", got) is not None,
                          "context_tokens": result["usage"].get("context_tokens", 0),
                          "finish_reason": result["finish_reason"]}
        records.append(rec)
        log(f"  hole {i + 1} of {len(holes)}: {h.name}")
    return records


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"holes": len(records)}
    for label in ("without", "ring"):
        rs = [r[label] for r in records]
        out[label] = {"exact": sum(r["exact"] for r in rs), "name": sum(r["name"] for r in rs),
                      "context_tokens_p50": statistics.median(r["context_tokens"] for r in rs) if rs else 0}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--holes", type=int, default=16)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--json", metavar="FILE", help="write the report and every hole as JSON (`-`: print it)")
    ap.add_argument("--daemon-code", help="a checkout whose daemon/ runs instead of this one's")
    ap.add_argument("--set", action="append", default=[], help="daemon setting KEY=VALUE (ember serve --set)")
    args = ap.parse_args()
    began = time.time()
    holes = sample(args.holes, args.seed)
    log(f"{len(holes)} cross-file holes; starting the daemon ({commit_of(args.daemon_code)})")
    d = start_daemon(args.daemon_code, args.set, Path(tempfile.mkdtemp(prefix="ember-bench-")))
    try:
        records = run(d, holes)
    finally:
        d.close()
    rep = summarize(records)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(began)), "daemon": commit_of(args.daemon_code),
            "seed": args.seed, "took_s": round(time.time() - began)}
    if args.json:
        out = {"meta": meta, "report": rep, "holes": records}
        if args.json == "-":
            json.dump(out, sys.stdout, indent=1)
            print()
            return
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"## bench/completion_context.py, {meta['when']}\n")
    print(f"Daemon {meta['daemon']}; seed {args.seed}, {len(holes)} holes, max_tokens {MAX_TOKENS}. "
          f"Took {meta['took_s']} s.\n")
    print("| request | first line exact | starts with the needed name | context tokens p50 |")
    print("|---|---|---|---|")
    for label, name in (("without", "`context: false`"), ("ring", "sibling chunk sent, `context: true`")):
        s = rep[label]
        print(f"| {name} | {s['exact']} / {len(holes)} | {s['name']} / {len(holes)} | {s['context_tokens_p50']:.0f} |")
    print()


if __name__ == "__main__":
    main()
