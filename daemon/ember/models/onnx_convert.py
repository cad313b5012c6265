"""Convert a causal LM once for the onnxruntime engine, into Ember's cache.

The conversion runs in a child process (`python -m ember.models.onnx_convert`): the exporter loads
the whole model in torch, and none of that should stay in the daemon's memory; the child also dies
with the daemon. Entries are keyed by the source's digest, the precision and the converter's
version, written atomically (models/cache.py) and checked on every load: a marker records each
file's size, so a truncated or partial entry is detected and converted again.

Precisions:
  int4     a GGUF's own Q4_0/Q4_1/Q8_0 blocks, mapped exactly, with the output layer's shortlist
           (models/onnx_exact.py); other sources get the exporter's round-to-nearest 4-bit weights
  int8     the exporter's 8-bit weights
  float32  no quantization
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import gguf
from .cache import atomic_folder, cached_digest, entry_lock

log = logging.getLogger(__name__)

CONVERTER_VERSION = 5  # bump when the output of a conversion changes
MARKER = "ember-onnx.json"
PRECISIONS = ("int4", "int8", "float32")
_BUILDER_PRECISION = {"int4": "int4", "int8": "int8", "float32": "fp32"}
EXIT_NOT_EXACT = 3  # the child could not map the GGUF exactly
EXACT_METHOD = "int4 (the GGUF's own blocks"

Progress = Callable[..., None]


class ConversionError(Exception):
    """The conversion failed; the message says why in a line."""


class NotExact(ConversionError):
    """An exact int4 mapping was required and is not possible for this source."""


@dataclass(frozen=True)
class Converted:
    folder: Path
    precision: str
    method: str  # how the weights were made, for the status and the docs
    kv_bytes_per_token: int


def gguf_source(folder: Path) -> Path | None:
    """The GGUF file a converted folder was made from, if it is still there."""
    source = gguf.source_of(folder)
    if source and Path(source["source"]).is_file():
        return Path(source["source"])
    return None


def exact_int4_possible(folder: Path) -> str | None:
    """None if int4 can use the source's own blocks exactly, else why not."""
    path = gguf_source(folder)
    if path is None:
        return "the source is not a GGUF file"
    from .onnx_exact import ExactMappingError, check_supported

    try:
        check_supported(path)
    except ExactMappingError as exc:
        return str(exc)
    return None


def _source_key(folder: Path, cache_root: Path) -> str:
    marker = gguf.source_of(folder)
    if marker and marker.get("sha256"):
        return "gguf:" + marker["sha256"]
    h = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        h.update(f"{path.name}:{cached_digest(path, cache_root)}\n".encode())
    return h.hexdigest()


def cache_entry(folder: Path, precision: str, cache_root: Path) -> Path:
    try:
        runtime = importlib.metadata.version("onnxruntime-genai")
    except importlib.metadata.PackageNotFoundError:
        runtime = "missing"
    key = hashlib.sha256(
        f"{_source_key(folder, cache_root)}|{precision}|{CONVERTER_VERSION}|{runtime}".encode()).hexdigest()
    return cache_root / "onnx" / f"{folder.name}-{precision}-{key[:16]}"


def read_entry(target: Path) -> Converted | None:
    """The entry if it is complete and intact, else None."""
    try:
        marker = json.loads((target / MARKER).read_text())
        for name, size in marker["files"].items():
            if (target / name).stat().st_size != size:
                return None
        return Converted(target, marker["precision"], marker["method"], int(marker["kv_bytes_per_token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def discard(target: Path) -> None:
    """Drop an entry that would not load, so the next ensure() converts it again."""
    shutil.rmtree(target, ignore_errors=True)


def ensure(folder: Path, precision: str, cache_root: Path, progress: Progress | None = None,
           require_exact: bool = False) -> Converted:
    """The converted model for `folder` (a transformers folder), converting it the first time."""
    if precision not in PRECISIONS:
        raise ConversionError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
    target = cache_entry(folder, precision, cache_root)
    found = read_entry(target)
    if found is not None:
        return found
    with entry_lock(target):
        found = read_entry(target)  # another daemon may have converted it while we waited
        if found is not None:
            return found
        if target.exists():
            log.warning("Converted model %s is incomplete or damaged: converting again", target)
        with atomic_folder(target) as work:
            result = _run_child(folder, precision, work, progress, require_exact)
            files = {p.name: p.stat().st_size for p in work.iterdir()
                     if p.is_file() and not p.name.startswith(".")}
            (work / MARKER).write_text(json.dumps({**result, "precision": precision,
                                                   "source": str(folder), "files": files}, indent=1))
    converted = read_entry(target)
    if converted is None:
        raise ConversionError(f"the converted model in {target} did not verify")
    return converted


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the daemon dies, so no orphan keeps converting (Linux)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _run_child(folder: Path, precision: str, work: Path, progress: Progress | None,
               require_exact: bool) -> dict:
    # -P: the current folder is not on the child's import path, so a quantization.py or the like
    # where the user started Ember cannot shadow the exporter's own modules.
    cmd = [sys.executable, "-P", "-m", "ember.models.onnx_convert", "--source", str(folder),
           "--out", str(work), "--precision", precision]
    if require_exact:
        cmd.append("--require-exact")
    log_path = work / ".convert.log"  # inside the work folder: it goes wherever the folder goes
    result: dict = {}
    with open(log_path, "wb") as child_log:
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=child_log,
                                 preexec_fn=_die_with_parent, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert child.stdout is not None
        for raw in child.stdout:
            kind, _, rest = raw.decode(errors="replace").strip().partition(" ")
            if kind == "progress" and progress:
                percent, _, message = rest.partition(" ")
                progress("convert", float(percent), message=message)
            elif kind == "result":
                result = json.loads(rest)
        code = child.wait()
    try:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-12:]
    finally:
        log_path.unlink(missing_ok=True)
    if code == 0 and result:
        return result
    reason = next((line for line in reversed(tail) if line.strip()), f"exit code {code}")
    log.error("ONNX conversion of %s failed (exit %s):\n  %s", folder, code, "\n  ".join(tail))
    if code == EXIT_NOT_EXACT:
        raise NotExact(reason)
    raise ConversionError(reason if code > 0 else f"the converter was killed by signal {-code}")


# -- the child ------------------------------------------------------------------------------------


def _say(kind: str, text: str) -> None:
    sys.stdout.write(f"{kind} {text}\n")
    sys.stdout.flush()


def _builder_source(folder: Path, scratch: Path) -> Path:
    """The folder as the exporter wants it: config.json must name the architecture."""
    config = json.loads((folder / "config.json").read_text())
    if config.get("architectures"):
        return folder
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    arch = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.get("model_type", ""))
    if not arch:
        raise ConversionError(f"config.json names no architecture and model_type "
                              f"{config.get('model_type')!r} is not a known causal LM")
    source = scratch / "source"
    source.mkdir(parents=True)
    for item in folder.iterdir():
        if item.name != "config.json":
            (source / item.name).symlink_to(item.resolve())
    (source / "config.json").write_text(json.dumps({**config, "architectures": [arch]}))
    return source


def builder_args(source: Path, out: Path, precision: str, hf_cache: Path) -> list[str]:
    """The ONNX exporter's arguments (after its module name) for a CPU model of `source`."""
    return ["-i", str(source), "-o", str(out), "-p", _BUILDER_PRECISION[precision], "-e", "cpu",
            "-c", str(hf_cache), "--extra_options", "accuracy_level=4"]


def _kv_bytes_per_token(model_file: Path, genai: dict) -> int:
    import onnx

    graph = onnx.load(str(model_file), load_external_data=False).graph
    past = next(i for i in graph.input if i.name.startswith("past_key_values"))
    element = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2,
               onnx.TensorProto.BFLOAT16: 2}.get(past.type.tensor_type.elem_type, 4)
    decoder = genai["model"]["decoder"]
    return 2 * int(decoder["num_hidden_layers"]) * int(decoder["num_key_value_heads"]) * \
        int(decoder["head_size"]) * element


def child_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert a transformers folder for onnxruntime-genai.")
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--precision", choices=PRECISIONS, required=True)
    parser.add_argument("--require-exact", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    exact_problem = exact_int4_possible(args.source) if args.precision == "int4" else "not int4"
    if args.require_exact and exact_problem:
        sys.stderr.write(f"no exact int4 mapping: {exact_problem}\n")
        return EXIT_NOT_EXACT
    scratch = args.out / ".scratch"
    model_dir = scratch / "model"
    _say("progress", f"5 exporting to ONNX ({args.precision})")
    import runpy

    sys.argv = ["builder", *builder_args(_builder_source(args.source, scratch), model_dir, args.precision,
                                         scratch / "hf")]
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__")
    method = {"int4": "int4 (round to nearest)", "int8": "int8 (round to nearest)",
              "float32": "float32"}[args.precision]
    if args.precision == "int4" and exact_problem is None:
        _say("progress", "70 copying the GGUF's quantized blocks")
        from .onnx_exact import REMAINDER_DIGITS, ExactMappingError, apply

        source = gguf_source(args.source)
        assert source is not None
        try:
            counts = apply(model_dir, source, args.source)
        except ExactMappingError as exc:
            sys.stderr.write(f"no exact int4 mapping: {exc}\n")
            return EXIT_NOT_EXACT
        method = f"{EXACT_METHOD}: {counts['copied']} 4-bit layers, {counts['eight_bit']} 8-bit"
        if counts["with_remainders"]:
            method += (f"; {counts['with_remainders']} Q4_1 layers with integer zero points and their remainders "
                       f"as {REMAINDER_DIGITS} 4-bit digit{'s' if REMAINDER_DIGITS > 1 else ''}")
        if counts["fused"]:
            method += f"; {counts['fused']} projections fused with another that reads the same input"
        if counts["shortlist"]:
            method += f"; output layer at 4 bits, each position's top {counts['shortlist']} logits from its 8-bit rows"
        method += ")"
    elif args.precision != "float32":
        from .onnx_fuse import fuse_saved_model  # the exact mapping above fuses its own graph

        fuse_saved_model(model_dir)
    genai = json.loads((model_dir / "genai_config.json").read_text())
    kv = _kv_bytes_per_token(model_dir / "model.onnx", genai)
    for item in model_dir.iterdir():
        shutil.move(str(item), args.out / item.name)
    shutil.rmtree(scratch)
    _say("progress", "100 converted")
    _say("result", json.dumps({"method": method, "kv_bytes_per_token": kv}))
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
