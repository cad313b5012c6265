"""`ember adapter train`: a LoRA adapter from the user's own examples, on a configured model.

Progress goes to stderr (and, with --json-progress, one JSON object per line on stdout). Ctrl-C or
SIGTERM stops after the current step with a checkpoint; --resume continues from it. Data that cannot
be used is refused with exit status 2 before anything is written (ember/adapters/data.py).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

STOPPED_BY = {signal.SIGINT: 130, signal.SIGTERM: 143}


def register(subparsers: Any, add_config_flags: Callable[[argparse.ArgumentParser], None],
             load: Callable[[argparse.Namespace], Any]) -> None:
    adapter = subparsers.add_parser("adapter", help="LoRA adapters: train one from your own examples")
    commands = adapter.add_subparsers(dest="adapter_command", required=True)
    p = commands.add_parser(
        "train", help="train a LoRA adapter from a JSONL file of examples",
        description="Train a LoRA adapter (peft) with trl's supervised trainer on a configured model. "
                    "DATA.jsonl has one example per line: {\"prompt\": ..., \"completion\": ...} or "
                    "{\"messages\": [{\"role\": ..., \"content\": ...}, ...]}. The loss is on the "
                    "completion (assistant) tokens only. See docs/adapters.md.")
    p.add_argument("data", metavar="DATA.jsonl", help="training examples, one JSON object per line")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the adapter folder to write (new or empty; with --resume, the run to continue)")
    p.add_argument("--base", metavar="NAME",
                   help="the configured model ([models.NAME]) to train on (default: the complete task's "
                        "model). --model SOURCE below changes the default model's source instead")
    lora = p.add_argument_group("LoRA")
    lora.add_argument("--rank", type=int, default=8, help="LoRA rank r (default 8)")
    lora.add_argument("--alpha", type=int, default=16, help="LoRA alpha (default 16)")
    lora.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout (default 0.05)")
    lora.add_argument("--target-modules", default="all-linear", metavar="NAMES",
                      help="comma-separated module names, or all-linear (default: every linear layer "
                           "but the output layer)")
    run = p.add_argument_group("schedule")
    run.add_argument("--epochs", type=float, default=3.0, help="passes over the data (default 3)")
    run.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps (overrides --epochs)")
    run.add_argument("--lr", type=float, default=2e-4, help="learning rate (default 2e-4)")
    run.add_argument("--batch-size", type=int, default=4, help="examples per step (default 4)")
    run.add_argument("--grad-accum", type=int, default=1, metavar="N",
                     help="accumulate N batches per optimizer step (default 1)")
    run.add_argument("--seed", type=int, default=0, help="seed of the LoRA init, shuffling and split (default 0)")
    run.add_argument("--save-every", type=int, metavar="N", help="checkpoint every N steps (default: a tenth of the run)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    held = p.add_argument_group("held-out evaluation")
    which = held.add_mutually_exclusive_group()
    which.add_argument("--eval", metavar="FILE", help="held-out examples (same format as DATA)")
    which.add_argument("--eval-split", type=float, default=0.1, metavar="FRACTION",
                       help="hold out this share of DATA when --eval is not given (default 0.1; 0: none)")
    held.add_argument("--eval-every", type=int, metavar="N", help="evaluate every N steps (default: a fifth of the run)")
    p.add_argument("--json-progress", action="store_true",
                   help="also write progress as one JSON object per line on stdout")
    add_config_flags(p)
    p.set_defaults(func=lambda args: cmd_train(args, load))


def _err(json_out: TextIO | None, message: str) -> int:
    """Refuse: one line on stderr, and an "error" event for a program reading --json-progress."""
    sys.stderr.write(f"ember adapter train: {message}\n")
    if json_out is not None:
        json_out.write(json.dumps({"event": "error", "message": message, "exit": 2}) + "\n")
        json_out.flush()
    return 2


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Reporter:
    """Renders training events for people (stderr) and, optionally, for programs (JSON lines)."""

    def __init__(self, label: str, json_out: TextIO | None):
        self.label = label
        self.json_out = json_out
        self.tty = sys.stderr.isatty()
        self.open_line = False

    def _line(self, text: str, transient: bool = False) -> None:
        if self.tty and transient:
            sys.stderr.write(f"\r\x1b[K{text}")
            self.open_line = True
        else:
            if self.open_line:
                sys.stderr.write("\n")
            sys.stderr.write(text + "\n")
            self.open_line = False
        sys.stderr.flush()

    def __call__(self, event: dict[str, Any]) -> None:
        if self.json_out is not None:
            self.json_out.write(json.dumps(event) + "\n")
            self.json_out.flush()
        kind = event["event"]
        if kind == "start":
            resumed = f", resuming {Path(event['resumed_from']).name}" if event["resumed_from"] else ""
            self._line(f"training a LoRA adapter on {self.label} ({event['device']}, {event['dtype']}): "
                       f"{event['train_rows']} training rows, {event['eval_rows']} held out, "
                       f"{event['total']} steps{resumed}")
        elif kind == "step":
            self._line(f"step {event['step']}/{event['total']}  loss {event['loss']:.4f}  "
                       f"elapsed {_clock(event['elapsed_s'])}  left {_clock(event['left_s'])}", transient=True)
        elif kind == "eval":
            where = {"before": "before training", "after": "after training"}.get(
                event["phase"], f"at step {event['step']}")
            self._line(f"held-out loss {where}: {event['eval_loss']:.4f}")
        elif kind == "done" and self.open_line:
            self._line("")


def cmd_train(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    json_out = None
    if args.json_progress:
        # Progress JSON gets its own copy of stdout; fd 1 then points at stderr, so a library's stray
        # print cannot break the stream.
        json_out = os.fdopen(os.dup(1), "w", buffering=1)
        sys.stdout.flush()
        os.dup2(2, 1)
    from ..adapters.data import DataError, read_jsonl
    from ..adapters.train import TrainError, require_deps

    try:
        require_deps()
    except TrainError as exc:
        return _err(json_out, str(exc))
    bad = _check_numbers(args)
    if bad:
        return _err(json_out, bad)
    try:  # the data's shape first: no model work for a file that cannot be used
        read_jsonl(args.data)
        if args.eval:
            read_jsonl(args.eval)
    except DataError as exc:
        return _err(json_out, str(exc))

    loaded = load(args)
    settings = loaded.settings
    name = args.base or settings.model_for_task("complete") or "default"
    if name not in settings.models:
        return _err(json_out, f"no model named '{name}' in [models] (configured: {', '.join(settings.models)})")
    model = settings.models[name]
    if model.remote:
        return _err(json_out, f"model '{name}' runs on a server (engine = \"remote\"): its weights are not here to "
                    "train on; configure the same model with a local source")
    if model.kind != "causal-lm":
        return _err(json_out, f"model '{name}' is a {model.kind} model; adapters are trained on causal LMs")

    from ..errors import ModelLoadError
    from ..models import sources

    def conversion(phase: str, percent: float | None, *rest: Any, **kw: Any) -> None:
        if phase == "convert" and percent == 0.0:
            sys.stderr.write("ember adapter train: converting the GGUF file once (about 30 s)\n")

    try:
        folder = sources.resolve(model, Path(settings.daemon.cache_dir), conversion)
    except ModelLoadError as exc:
        return _err(json_out, exc.message)
    label = sources.label(model)
    base = {"model": name, "source": model.source, "described": sources.describe_source(model),
            "label": label}

    from ..adapters.train import TrainOptions, prepare, train

    targets: str | list[str] = args.target_modules
    if targets != "all-linear":
        targets = [t.strip() for t in args.target_modules.split(",") if t.strip()]
    options = dict(rank=args.rank, alpha=args.alpha, dropout=args.dropout, target_modules=targets,
                   epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, batch_size=args.batch_size,
                   grad_accum=args.grad_accum, eval_path=Path(args.eval) if args.eval else None,
                   eval_split=args.eval_split, eval_every=args.eval_every, save_every=args.save_every,
                   seed=args.seed, resume=args.resume, device=model.device, dtype=model.dtype,
                   threads=settings.daemon.threads, context_length=model.context_length,
                   trust_remote_code=model.trust_remote_code, allow_pickle=model.allow_pickle)
    try:
        prepared = prepare(folder, args.data, TrainOptions(**options))
    except TrainError as exc:
        return _err(json_out, str(exc))

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now, without the checkpoint
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        received.append(signum)
        stop.set()
        sys.stderr.write("\nember adapter train: stopping after this step (saving a checkpoint); "
                         "press Ctrl-C again to quit at once\n")

    previous = {s: signal.signal(s, on_signal) for s in STOPPED_BY}
    reporter = Reporter(label, json_out)
    try:
        result = train(folder, args.data, args.out, progress=reporter, stop=stop, base=base,
                       prepared=prepared, **options)
    except TrainError as exc:
        return _err(json_out, str(exc))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if result.status == "stopped":
        sys.stderr.write(f"stopped at step {result.steps}/{result.max_steps}; checkpoint "
                         f"{result.checkpoint}. Continue with: ember adapter train {args.data} "
                         f"--out {args.out} --resume (and the same options)\n")
        return STOPPED_BY.get(signal.Signals(received[0]), 130) if received else 130
    losses = ""
    if result.eval_loss_before is not None and result.eval_loss_after is not None:
        losses = f"; held-out loss {result.eval_loss_before:.4f} -> {result.eval_loss_after:.4f}"
    sys.stderr.write(f"adapter written to {result.out_dir} ({result.steps} steps in "
                     f"{_clock(result.seconds)}{losses})\n")
    return 0


def _check_numbers(args: argparse.Namespace) -> str | None:
    checks = [(args.rank >= 1, "--rank must be at least 1"), (args.alpha >= 1, "--alpha must be at least 1"),
              (0 <= args.dropout < 1, "--dropout must be in [0, 1)"), (args.epochs > 0, "--epochs must be positive"),
              (args.max_steps is None or args.max_steps >= 1, "--max-steps must be at least 1"),
              (args.lr > 0, "--lr must be positive"), (args.batch_size >= 1, "--batch-size must be at least 1"),
              (args.grad_accum >= 1, "--grad-accum must be at least 1"),
              (0 <= args.eval_split < 1, "--eval-split must be in [0, 1)"),
              (args.eval_every is None or args.eval_every >= 1, "--eval-every must be at least 1"),
              (args.save_every is None or args.save_every >= 1, "--save-every must be at least 1")]
    return next((message for ok, message in checks if not ok), None)
