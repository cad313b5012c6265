"""Workspace context before an inline completion's prefix, in the model's own repository format.

Models trained on whole repositories read other files through their file-separator tokens
(Qwen2.5-Coder's `<|repo_name|>`/`<|file_sep|>`, StarCoder2's `<repo_name>`/`<file_sep>`). Other
models get each file behind a comment line naming it, as a file would quote another. The chunks
come oldest first, so a new chunk changes only the end of the context and the current file stays
last, nearest the cursor.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..workspace import Chunk, fit

# (repository token, file-separator token) per family; the first whose tokens the vocabulary has wins.
REPO_FORMATS = [
    ("qwen", "<|repo_name|>", "<|file_sep|>"),
    ("starcoder", "<repo_name>", "<file_sep>"),
]
LINE_COMMENT = {
    "#": ("python", "ruby", "sh", "bash", "zsh", "shellscript", "perl", "r", "yaml", "toml", "make",
          "makefile", "dockerfile", "elixir", "julia", "nim", "cmake", "powershell"),
    "--": ("lua", "sql", "haskell", "ada", "elm"),
    ";": ("lisp", "clojure", "scheme", "racket", "asm"),
    "%": ("erlang", "tex", "latex", "matlab", "octave"),
}
REPO_NAME = "workspace"
_CACHE_SIZE = 32


@dataclass(frozen=True)
class RepoFormat:
    style: str  # qwen | starcoder | comment
    repo_token: str = ""
    file_token: str = ""


def repo_format(vocab: dict[str, int] | None) -> RepoFormat:
    for style, repo, sep in REPO_FORMATS:
        if vocab is not None and repo in vocab and sep in vocab:
            return RepoFormat(style, repo, sep)
    return RepoFormat("comment")


def comment_for(language: str | None) -> str:
    lang = (language or "").lower()
    return next((mark for mark, langs in LINE_COMMENT.items() if lang in langs), "//")


def render(fmt: RepoFormat, chunks: Sequence[Any], current_path: str | None, language: str | None) -> str:
    """The text that goes before the current file's prefix ("" without chunks)."""
    if not chunks:
        return ""
    here = current_path or "current file"
    if fmt.style == "qwen":
        files = "".join(f"{fmt.file_token}{c.path or 'snippet'}\n{c.text}\n" for c in chunks)
        return f"{fmt.repo_token}{REPO_NAME}\n{files}{fmt.file_token}{here}\n"
    if fmt.style == "starcoder":
        files = "".join(f"{fmt.file_token}{c.path or 'snippet'}\n{c.text}\n" for c in chunks)
        return f"{fmt.repo_token}{REPO_NAME}{files}{fmt.file_token}{here}\n"
    mark = comment_for(language)
    files = "".join(f"{mark} {c.path or 'snippet'}\n{c.text.rstrip()}\n\n" for c in chunks)
    return f"{files}{mark} {here}\n"


class ContextFitter:
    """One tokenizer's context: its repository format, and the newest chunks that fit a token
    budget; remembers each chunk's token count, since the same ring is sent with every keystroke."""

    def __init__(self, count_tokens: Callable[[str], int], fmt: RepoFormat):
        self.count_tokens = count_tokens
        self.fmt = fmt
        self._counts: OrderedDict[tuple[str | None, str], int] = OrderedDict()

    def fit(self, chunks: Sequence[Chunk], budget: int) -> list[Chunk]:
        return fit(chunks, self.cost, budget)

    def cost(self, chunk: Chunk) -> int:
        return self._count(chunk) + 8  # and its separator or header line

    def _count(self, chunk: Chunk) -> int:
        key = (chunk.path, chunk.text)
        if key in self._counts:
            self._counts.move_to_end(key)
            return self._counts[key]
        n = self.count_tokens(chunk.text)
        self._counts[key] = n
        if len(self._counts) > _CACHE_SIZE * 8:
            self._counts.popitem(last=False)
        return n
