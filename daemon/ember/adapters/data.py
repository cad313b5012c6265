"""Training data for `ember adapter train`: JSONL, checked line by line before any model work.

Each line is one example, in one of two shapes (one shape per file):
  {"prompt": "...", "completion": "..."}
  {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
Other keys on a line are ignored. Every problem names its line, so a user can fix the file; a refusal
happens before anything is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
PROMPT_COMPLETION = "prompt-completion"
MESSAGES = "messages"
MAX_LISTED = 10  # line numbers named in one message


class DataError(Exception):
    """Training data that cannot be used as it is; the message says where and why."""


@dataclass
class Example:
    line: int  # 1-based line in the file
    prompt: str | None = None
    completion: str | None = None
    messages: list[dict[str, str]] | None = None

    def turns(self) -> list[dict[str, str]]:
        """The example as a conversation (prompt/completion: one user and one assistant turn)."""
        if self.messages is not None:
            return self.messages
        return [{"role": "user", "content": self.prompt or ""},
                {"role": "assistant", "content": self.completion or ""}]


@dataclass
class Examples:
    path: Path
    format: str  # PROMPT_COMPLETION or MESSAGES
    examples: list[Example] = field(default_factory=list)
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.examples)


def _lines(path: Path) -> tuple[str, str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    digest = hashlib.sha256(raw).hexdigest()
    try:
        return raw.decode("utf-8"), digest
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path} line {line}: not UTF-8 text") from None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _check_messages(messages: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: \"messages\" must be a non-empty list of {{role, content}} objects, "
                        f"got {_kind(messages)}")
    out = []
    for i, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            raise DataError(f"{where}: message {i} must be an object with role and content, got {_kind(message)}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise DataError(f"{where}: message {i} has role {role!r}; roles are {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise DataError(f"{where}: message {i}'s content must be a string, got {_kind(content)}")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's (the assistant's turns are "
                        "what is trained)")
    if out[0]["role"] == "assistant":
        raise DataError(f"{where}: message 1 is the assistant's; a conversation starts with a system or "
                        "user message")
    if not any(m["content"].strip() for m in out if m["role"] == "assistant"):
        raise DataError(f"{where}: every assistant message is empty")
    return out


def _example(obj: Any, where: str, line: int) -> tuple[str, Example]:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object with \"prompt\" and \"completion\", or "
                        f"\"messages\"; got {_kind(obj)}")
    has_pc = "prompt" in obj or "completion" in obj
    if has_pc and "messages" in obj:
        raise DataError(f"{where}: has both prompt/completion and messages; use one shape per line")
    if "messages" in obj:
        return MESSAGES, Example(line, messages=_check_messages(obj["messages"], where))
    if not has_pc:
        keys = ", ".join(sorted(obj)) or "none"
        raise DataError(f"{where}: needs \"prompt\" and \"completion\", or \"messages\" (keys found: {keys})")
    for key in ("prompt", "completion"):
        if key not in obj:
            raise DataError(f"{where}: has no \"{key}\"")
        if not isinstance(obj[key], str):
            raise DataError(f"{where}: \"{key}\" must be a string, got {_kind(obj[key])}")
    if not obj["completion"].strip():
        raise DataError(f"{where}: \"completion\" is empty")
    return PROMPT_COMPLETION, Example(line, prompt=obj["prompt"], completion=obj["completion"])


def read_jsonl(path: str | Path) -> Examples:
    """Read and check a JSONL file. Raises DataError naming the first bad line."""
    path = Path(path)
    text, digest = _lines(path)
    first_of: dict[str, int] = {}
    examples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        kind, example = _example(obj, where, number)
        first_of.setdefault(kind, number)
        if len(first_of) > 1:
            other = next(k for k in first_of if k != kind)
            raise DataError(f"{path} mixes formats: line {first_of[other]} is {other}, line {number} is {kind}; "
                            "use one format per file")
        examples.append(example)
    if not examples:
        raise DataError(f"{path}: no examples (the file is empty)")
    return Examples(path, next(iter(first_of)), examples, digest)


# -- what the trainer sees ---------------------------------------------------------------------


def rows(example: Example, chat: bool) -> list[dict[str, Any]]:
    """The trainer's rows for one example, in trl's prompt-completion shape, so that the loss is on the
    completion (assistant) tokens only. With a chat template, each assistant turn of a conversation is
    one row whose prompt is the conversation before it; without one, the text as it is."""
    if not chat:
        if example.messages is not None:
            raise DataError(f"line {example.line}: this model has no chat template, so \"messages\" "
                            "cannot be rendered; use prompt/completion lines")
        return [{"prompt": example.prompt, "completion": example.completion}]
    turns = example.turns()
    return [{"prompt": turns[:i], "completion": [turn]}
            for i, turn in enumerate(turns) if turn["role"] == "assistant" and i > 0]


def token_count(example: Example, tokenizer: Any, chat: bool) -> int:
    """Tokens of the whole example as the trainer renders it (the longest of its rows)."""
    if chat:
        text = tokenizer.apply_chat_template(example.turns(), tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
    ids = tokenizer((example.prompt or "") + (example.completion or ""))["input_ids"]
    return len(ids) + 1  # the end-of-sequence token the trainer appends


def check_lengths(data: Examples, count: Callable[[Example], int], context: int) -> None:
    """Refuse examples longer than the model's context: truncating them would train on cut text."""
    over = [(e.line, n) for e in data.examples if (n := count(e)) > context]
    if not over:
        return
    listed = ", ".join(f"{line} ({n} tokens)" for line, n in over[:MAX_LISTED])
    more = f" and {len(over) - MAX_LISTED} more" if len(over) > MAX_LISTED else ""
    lines = "line" if len(over) == 1 else "lines"
    raise DataError(f"{data.path}: {len(over)} example(s) longer than the model's context of {context} "
                    f"tokens: {lines} {listed}{more}; shorten or split them")
