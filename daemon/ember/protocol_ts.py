"""Render the VS Code extension's protocol types (src/wire.ts) from wire.py and results.py.

    python -m ember.protocol_ts editor-clients/vscode/src/wire.ts

A test fails while the file is stale, and the extension's type check then fails wherever its code
no longer agrees with the daemon: one source of truth, checked on both sides.
"""

from __future__ import annotations

import inspect
import json
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, NotRequired, Required, Union, get_args, get_origin

from pydantic import BaseModel
from typing_extensions import is_typeddict

from . import results
from .wire import METHODS, NOTIFICATION_PARAMS, NOTIFICATIONS_OUT, GenerationOptions, Params

HEADER = """\
// Generated from daemon/ember/wire.py and results.py by `python -m ember.protocol_ts`: do not edit.
// Keys are snake_case, as on the wire. Params that have a default are optional here.
"""


class TypeRenderer:
    def __init__(self) -> None:
        self.pending: list[Any] = []  # named types met while rendering, emitted once each
        self.seen: set[str] = set()

    def named(self, tp: Any) -> str:
        if tp.__name__ not in self.seen:
            self.seen.add(tp.__name__)
            self.pending.append(tp)
        return str(tp.__name__)

    def ts(self, tp: Any) -> str:
        origin, args = get_origin(tp), get_args(tp)
        if origin in (Annotated, NotRequired, Required):
            return self.ts(args[0])
        if tp is None or tp is type(None):
            return "null"
        if origin in (Union, types.UnionType):
            return " | ".join(dict.fromkeys(self.ts(a) for a in args))
        if origin is Literal:
            return " | ".join(json.dumps(a).replace('"', "'") for a in args)
        if origin is list:
            item = self.ts(args[0])
            return f"({item})[]" if "|" in item else f"{item}[]"
        if origin is tuple:
            return "[" + ", ".join(self.ts(a) for a in args) + "]"
        if origin is dict:
            return "Record<string, unknown>"
        if tp is Any:
            return "unknown"
        if tp in (int, float):
            return "number"
        if tp is str:
            return "string"
        if tp is bool:
            return "boolean"
        if is_typeddict(tp) or (inspect.isclass(tp) and issubclass(tp, BaseModel)):
            return self.named(tp)
        raise TypeError(f"no TypeScript for {tp!r}")

    def interface(self, tp: Any) -> list[str]:
        lines = _doc(inspect.getdoc(tp) if tp.__doc__ else None, "")
        base = _params_base(tp)
        inherited = set(base.model_fields) if base is not None else set()
        extends = f" extends {self.named(base)}" if base is not None else ""
        lines.append(f"export interface {tp.__name__}{extends} {{")
        for name, hint, optional, doc in fields(tp):
            if name in inherited:
                continue
            lines += _doc(doc, "  ")
            lines.append(f"  {name}{'?' if optional else ''}: {self.ts(hint)};")
        return lines + ["}"]


def _params_base(tp: Any) -> Any:
    """The params model `tp` extends (GenerationOptions), or None for one made of its own fields."""
    if is_typeddict(tp):
        return None
    base = tp.__mro__[1]
    return base if base is not Params and issubclass(base, Params) else None


def fields(tp: Any) -> list[tuple[str, Any, bool, str | None]]:
    """(name, type, optional, description) of a params model or a result TypedDict."""
    if is_typeddict(tp):
        hints = typing.get_type_hints(tp, include_extras=True)
        return [(name, hint, name in tp.__optional_keys__, _annotated_doc(hint)) for name, hint in hints.items()]
    return [(name, f.annotation, not f.is_required(), f.description) for name, f in tp.model_fields.items()]


def _annotated_doc(hint: Any) -> str | None:
    """The description string in `Annotated[T, "text"]`, under NotRequired if need be."""
    while get_origin(hint) in (NotRequired, Required):
        hint = get_args(hint)[0]
    if get_origin(hint) is Annotated:
        return next((m for m in get_args(hint)[1:] if isinstance(m, str)), None)
    return None


def _doc(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    text = " ".join(text.split())
    return [f"{indent}/** {text} */"]


def render_typescript() -> str:
    r = TypeRenderer()
    table = ["", "/** Every method: its params (null: none) and its result. */", "export interface Methods {"]
    for m in METHODS.values():
        params = r.named(m.params) if m.params is not None else "null"
        table.append(f"  '{m.name}': {{ params: {params}; result: {r.ts(m.result)} }};")
    table += ["}", "", "/** Every notification the daemon sends, and its params. */",
              "export interface Notifications {"]
    table += [f"  '{name}': {r.ts(shape)};" for name, shape in NOTIFICATIONS_OUT.items()]
    table += ["}", "", "/** Every notification a client sends that carries data, and its params. */",
              "export interface ClientNotifications {"]
    table += [f"  '{name}': {r.named(spec)};" for name, spec in NOTIFICATION_PARAMS.items()]
    table.append("}")
    r.named(GenerationOptions)  # what the generative tasks' params share
    body: list[str] = []
    while r.pending:
        body += [""] + r.interface(r.pending.pop(0))
    aliases = [""] + [f"export type {alias} = {r.ts(getattr(results, alias))};"
                      for alias in ("FinishReason", "ProgressPhase", "ClassifyMethod")]
    return HEADER + "\n".join(aliases + body + table) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1] if len(sys.argv) > 1 else "editor-clients/vscode/src/wire.ts").write_text(render_typescript())
