"""`ember stats`: the local acceptance figures of inline completions, read from the stats file.

No daemon is needed: daemons add their figures to the file every 30 s of activity and when they stop.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def register(subparsers: Any, add_config_flags: Callable[[argparse.ArgumentParser], None],
             load: Callable[[argparse.Namespace], Any]) -> None:
    p = subparsers.add_parser(
        "stats", help="acceptance rate, time to first token and the cut's rules of inline completions",
        description="Local figures of inline completions by language, from completion.stats_file "
        "(kept on this machine only). Running daemons add theirs every 30 s of activity and when "
        "they stop.")
    add_config_flags(p)
    p.add_argument("--file", metavar="PATH", help="read this stats file instead of completion.stats_file")
    p.add_argument("--json", action="store_true", help="print the figures as JSON (daemon/status's "
                   "`completions` shape)")
    p.set_defaults(func=lambda args: cmd_stats(args, load))


def cmd_stats(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    from ..stats import StatsFileError, read_file, summarize

    settings = load(args).settings.completion
    path = Path(args.file or settings.stats_file).expanduser()
    try:
        data = read_file(path)
    except (StatsFileError, OSError) as exc:
        sys.stderr.write(f"ember stats: {exc}\n")
        return 1
    languages = data["languages"] if data is not None else {}
    figures = summarize(languages, enabled=settings.stats, since=data["since"] if data else None,
                        file=str(path))
    if args.json:
        sys.stdout.write(json.dumps(figures, indent=2) + "\n")
        return 0
    sys.stdout.write(render(figures, exists=data is not None))
    return 0


def render(figures: dict[str, Any], exists: bool = True) -> str:
    lines: list[str] = []
    if not figures["enabled"]:
        lines.append("completion.stats is false: daemons count nothing now.")
    if not exists:
        lines.append(f"No completion figures yet ({figures['file']} does not exist).")
        return "\n".join(lines) + "\n"
    since = figures["since"]
    when = (datetime.datetime.fromtimestamp(since, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
            if since else "the start")
    lines.append(f"Inline completions since {when} ({figures['file']})")
    lines.append("")
    header = ("language", "completions", "empty", "shown", "accepted", "partial", "dismissed",
              "rate", "first token p50/p95", "total p50/p95", "typed-through")
    rows = [_row(lang, f) for lang, f in figures["languages"].items()]
    if len(rows) != 1:
        rows.append(_row("all", figures["total"]))
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    for r in (header, *rows):
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    lines.append("rate: (accepted + partial) / shown; latencies in ms")
    ruled = [(lang, f["rules"]) for lang, f in figures["languages"].items() if f["rules"]]
    if ruled:
        lines.append("")
        lines.append("The cut's rules (completions each one changed):")
        for lang, rules in ruled:
            lines.append(f"  {lang}: " + ", ".join(f"{rule} {n}" for rule, n in rules.items()))
    return "\n".join(lines) + "\n"


def _row(lang: str, f: dict[str, Any]) -> tuple[str, ...]:
    rate = f["acceptance_rate"]
    return (lang, str(f["completions"]), str(f["empty"]), str(f["shown"]), str(f["accepted"]),
            str(f["partial"]), str(f["dismissed"]), "-" if rate is None else f"{rate:.0%}",
            _latency(f["first_token_ms"]), _latency(f["total_ms"]), str(f["typed_through"]))


def _latency(lat: dict[str, Any]) -> str:
    if not lat["samples"]:
        return "-"
    return f"{lat['p50']:g} / {lat['p95']:g}"
