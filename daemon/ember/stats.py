"""Local acceptance figures of inline completions: kept in memory and in one JSON file, never sent.

The lead's `complete` reports each inline completion (`completed`); clients report what the user did
with it (`completion/feedback`: shown, accepted, partial, dismissed). Per language we count:

- completions, empty ones, typed-through ones (`usage.typed_through`), and the cut's rules fired;
- shown, accepted, partial, dismissed and accepted characters. Each completion counts once whatever
  a client repeats: one `shown` (an outcome implies it was shown), and one outcome, the best one seen
  (accepted > partial > dismissed: accepting the rest after a word moves it from partial to
  accepted). Partial acceptances add their characters each time. Feedback for an id we do not know
  (too old, or another daemon's) counts under the language "unknown";
- first-token and total latency as histograms of buckets 10% wide (bucket 0: under 1 ms; bucket
  i >= 1: [1.1^(i-1), 1.1^i) ms), so memory stays bounded and several daemons' figures add up;
  percentiles are read back at the bucket's geometric middle (within 5%).

The acceptance rate is (accepted + partial) / shown.

Memory is bounded: at most MAX_PENDING completions wait for feedback (oldest dropped), at most
MAX_LANGUAGES languages (the rest count under "other") and MAX_RULES rule names per language.

Persistence: what changed since the last write is added to `completion.stats_file` under an fcntl
lock (`<file>.lock`) and written atomically (a temporary file renamed over it), at most FLUSH_S after
the first change and when the daemon stops; several daemons may share the file. A file that does not
parse is kept beside it as `<file>.corrupt` and counting starts afresh. With `completion.stats` false
nothing is counted or written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import CompletionSettings
from .wire import CompletionFeedbackParams

log = logging.getLogger(__name__)

FORMAT = 1
FLUSH_S = 30.0
MAX_PENDING = 4096
MAX_LANGUAGES = 64
MAX_RULES = 64
MAX_NAME = 64  # characters of a language or rule name
UNKNOWN, OTHER = "unknown", "other"
_BASE = 1.1
_MAX_BUCKET = 250  # 1.1^249 ms is years: anything above is clamped

COUNTS = ("completions", "empty", "typed_through", "shown", "accepted", "partial", "dismissed",
          "accepted_chars")
HISTOGRAMS = ("first_token_ms", "total_ms")
_OUTCOME_RANK = {"dismissed": 1, "partial": 2, "accepted": 3}


def bucket(ms: float) -> int:
    if not ms >= 1.0:  # also NaN
        return 0
    return min(_MAX_BUCKET, 1 + int(math.floor(math.log(ms) / math.log(_BASE))))


def bucket_value(index: int) -> float:
    """The bucket's geometric middle in ms."""
    return 0.5 if index <= 0 else _BASE ** (index - 0.5)


def percentile(histogram: Mapping[str, int], q: float) -> float | None:
    total = sum(histogram.values())
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for key in sorted(histogram, key=int):
        seen += histogram[key]
        if seen >= rank:
            return round(bucket_value(int(key)), 1)
    return None  # unreachable with positive counts


def empty_counts() -> dict[str, Any]:
    counts: dict[str, Any] = dict.fromkeys(COUNTS, 0)
    for name in HISTOGRAMS:
        counts[name] = {}
    counts["rules"] = {}
    return counts


def _name(value: Any, default: str = UNKNOWN) -> str:
    if not isinstance(value, str) or not value.strip():
        return default
    return value.strip()[:MAX_NAME]


def merge_into(dst: dict[str, dict[str, Any]], src: Mapping[str, Any]) -> None:
    """Add per-language counts `src` (trusted or read from disk: bad values are skipped) into `dst`."""
    for raw_lang, counts in src.items():
        if not isinstance(counts, Mapping):
            continue
        lang = _name(raw_lang)
        if lang not in dst and len(dst) >= MAX_LANGUAGES:
            lang = OTHER
        into = dst.setdefault(lang, empty_counts())
        for name in COUNTS:
            value = counts.get(name, 0)
            if isinstance(value, int) and not isinstance(value, bool):
                into[name] += value
        for name in (*HISTOGRAMS, "rules"):
            table = counts.get(name)
            if not isinstance(table, Mapping):
                continue
            target = into[name]
            for key, value in table.items():
                if not isinstance(value, int) or isinstance(value, bool):
                    continue
                if name == "rules":
                    key = _name(key, OTHER)
                    if key not in target and len(target) >= MAX_RULES:
                        key = OTHER
                else:
                    try:
                        key = str(min(_MAX_BUCKET, max(0, int(key))))
                    except ValueError:
                        continue
                target[key] = target.get(key, 0) + value


def _is_empty(languages: Mapping[str, Mapping[str, Any]]) -> bool:
    return all(not any(c[n] for n in COUNTS) and not any(c[n] for n in (*HISTOGRAMS, "rules"))
               for c in languages.values())


def summarize(languages: Mapping[str, Mapping[str, Any]], *, enabled: bool, since: float | None,
              file: str | None) -> dict[str, Any]:
    """The CompletionFigures of results.py from per-language counts."""
    total: dict[str, dict[str, Any]] = {"all": empty_counts()}
    for counts in languages.values():
        merge_into(total, {"all": counts})
    return {
        "enabled": enabled,
        "since": since,
        "file": file,
        "total": _language_figures(total["all"]),
        "languages": {lang: _language_figures(c) for lang, c in sorted(languages.items())},
    }


def _language_figures(c: Mapping[str, Any]) -> dict[str, Any]:
    shown = c["shown"]
    return {
        **{name: c[name] for name in COUNTS},
        "acceptance_rate": round((c["accepted"] + c["partial"]) / shown, 4) if shown > 0 else None,
        **{name: {"samples": sum(c[name].values()), "p50": percentile(c[name], 0.5),
                  "p95": percentile(c[name], 0.95)} for name in HISTOGRAMS},
        "rules": dict(sorted(c["rules"].items(), key=lambda kv: (-kv[1], kv[0]))),
    }


class StatsFileError(Exception):
    pass


def read_file(path: Path) -> dict[str, Any] | None:
    """The stats file's content, None when there is none yet. StatsFileError when it does not parse."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StatsFileError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("languages"), dict):
        raise StatsFileError(f"{path} is not an ember stats file (no \"languages\" object)")
    languages: dict[str, dict[str, Any]] = {}
    merge_into(languages, data["languages"])
    since = data.get("since")
    return {"format": FORMAT, "since": float(since) if isinstance(since, (int, float)) else None,
            "updated": data.get("updated"), "languages": languages}


def add_to_file(path: Path, languages: Mapping[str, Mapping[str, Any]], since: float) -> None:
    """Add these counts to the file, under its lock, replacing it atomically."""
    from .models.cache import entry_lock

    with entry_lock(path):
        try:
            current = read_file(path)
        except StatsFileError as exc:
            corrupt = path.with_name(path.name + ".corrupt")
            log.warning("%s; keeping it as %s and counting afresh", exc, corrupt)
            os.replace(path, corrupt)
            current = None
        merged: dict[str, dict[str, Any]] = {}
        if current is not None:
            merge_into(merged, current["languages"])
        merge_into(merged, languages)
        first = current["since"] if current is not None and current["since"] is not None else since
        data = {"format": FORMAT, "since": first, "updated": time.time(), "languages": merged}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1, sort_keys=True)
                out.write("\n")
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise


@dataclass
class _Pending:
    """A completion waiting for feedback."""

    language: str
    chars: int | None
    shown: bool = False
    outcome: str | None = None
    chars_counted: int = 0


class CompletionStats:
    def __init__(self, settings: CompletionSettings):
        self.settings = settings
        self.path = Path(settings.stats_file)
        self.since = time.time()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one write at a time: the timer's and stop's
        self._session: dict[str, dict[str, Any]] = {}  # since this daemon started: daemon/status
        self._unflushed: dict[str, dict[str, Any]] = {}  # not yet in the file
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._timer: threading.Timer | None = None
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self.settings.stats

    # -- recording (event loop or worker thread) -------------------------------------------------

    def completed(self, client: Hashable, completion_id: str, language: str | None,
                  result: Mapping[str, Any]) -> None:
        """An inline completion was returned (its `complete` result). Feedback finds it by
        `completion_id` alone, so ids must be unique within the daemon, across clients."""
        if not self.enabled:
            return
        lang = _name(language)
        text = result.get("text")
        cut = result.get("cut")
        usage = result.get("usage")
        timings = result.get("timings")
        counts = empty_counts()
        counts["completions"] = 1
        counts["empty"] = int(not (isinstance(text, str) and text.strip()))
        if isinstance(usage, Mapping) and usage.get("typed_through"):
            counts["typed_through"] = 1
        first = result.get("first_token_ms")
        if isinstance(first, (int, float)):
            counts["first_token_ms"][str(bucket(first))] = 1
        total = timings.get("total_ms") if isinstance(timings, Mapping) else None
        if isinstance(total, (int, float)):
            counts["total_ms"][str(bucket(total))] = 1
        rules = cut.get("rules") if isinstance(cut, Mapping) else None
        for rule in rules if isinstance(rules, list) else []:
            counts["rules"][_name(rule, OTHER)] = 1  # completions each rule changed: once each
        with self._lock:
            self._pending[completion_id] = _Pending(lang, len(text) if isinstance(text, str) else None)
            self._pending.move_to_end(completion_id)
            while len(self._pending) > MAX_PENDING:
                self._pending.popitem(last=False)
            self._record(lang, counts)

    def feedback(self, client: Hashable, params: CompletionFeedbackParams) -> None:
        """What the user did with a completion (a `completion/feedback` notification)."""
        if not self.enabled:
            return
        with self._lock:
            entry = self._pending.get(params.completion_id)
            if entry is None:
                entry = self._pending[params.completion_id] = _Pending(UNKNOWN, None)
                while len(self._pending) > MAX_PENDING:
                    self._pending.popitem(last=False)
            counts = empty_counts()
            if not entry.shown:  # an outcome implies the completion was shown
                entry.shown = True
                counts["shown"] = 1
            event = params.event
            if event != "shown":
                rank = _OUTCOME_RANK[event]
                current = _OUTCOME_RANK[entry.outcome] if entry.outcome else 0
                if rank > current:
                    if entry.outcome is not None:
                        counts[entry.outcome] -= 1
                    counts[event] += 1
                    entry.outcome = event
                chars = params.accepted_chars
                if event == "accepted":
                    whole = chars if chars is not None else entry.chars
                    if whole is not None:
                        counts["accepted_chars"] = whole - entry.chars_counted
                        entry.chars_counted = whole
                elif event == "partial" and chars is not None and current < _OUTCOME_RANK["accepted"]:
                    counts["accepted_chars"] = chars
                    entry.chars_counted += chars
            self._record(entry.language, counts)

    def _record(self, lang: str, counts: dict[str, Any]) -> None:
        """Add to the session's and the unflushed figures (with the lock held)."""
        merge_into(self._session, {lang: counts})
        merge_into(self._unflushed, {lang: counts})
        if self._timer is None and not self._closed:
            self._timer = threading.Timer(FLUSH_S, self._flush_from_timer)
            self._timer.daemon = True
            self._timer.start()

    # -- reading -------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """This daemon's figures since it started (`daemon/status`); `ember stats` reads the file."""
        with self._lock:
            languages = {lang: _copy(c) for lang, c in self._session.items()}
        return summarize(languages, enabled=self.enabled, since=self.since,
                         file=str(self.path) if self.enabled else None)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    # -- persistence ---------------------------------------------------------------------------

    def _flush_from_timer(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    def flush(self) -> bool:
        """Add the unflushed figures to the file. False when a write failed (they are kept)."""
        with self._flush_lock:
            with self._lock:
                delta, self._unflushed = self._unflushed, {}
            if not delta or _is_empty(delta):
                return True
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                add_to_file(self.path, delta, self.since)
            except OSError as exc:
                log.warning("Could not write completion figures to %s: %s", self.path, exc)
                with self._lock:
                    merge_into(self._unflushed, delta)
                return False
            return True

    def close(self) -> None:
        """Stop the timer and write what is left (the daemon is stopping)."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()


def _copy(counts: Mapping[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in counts.items()}
