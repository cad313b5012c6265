"""Train a LoRA adapter from a JSONL file with trl's supervised trainer and peft (`ember adapter train`).

The output folder is a plain peft adapter that `PeftModel.from_pretrained(base, folder)` loads:
  OUT/adapter_config.json, OUT/adapter_model.safetensors   the adapter (safetensors only)
  OUT/ember_adapter.json                                  base model, data hash, steps, losses, time
  OUT/checkpoints/checkpoint-N/                           the last checkpoint, for --resume
Training runs in float32 on a CPU (never bitsandbytes there) and in bfloat16 on a GPU that has it.
Loss is on the completion (assistant) tokens only: with a chat template, examples are rendered the way
the daemon renders chat `messages`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .data import DataError, Examples, check_lengths, read_jsonl, rows, token_count

INSTALL_HINT = "pip install 'ember[train]'"
META = "ember_adapter.json"
CHECKPOINTS = "checkpoints"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")

Progress = Callable[[dict[str, Any]], None]


class TrainError(Exception):
    """Training cannot start as asked (bad data, a folder in the way, a missing library); the message
    is for the user and nothing was written."""


class MissingTrainDeps(TrainError):
    pass


@dataclass
class TrainOptions:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    epochs: float = 3.0
    max_steps: int | None = None
    lr: float = 2e-4
    batch_size: int = 4
    grad_accum: int = 1
    eval_path: Path | None = None
    eval_split: float = 0.1
    eval_every: int | None = None  # steps; None: about five times per run
    save_every: int | None = None  # steps; None: about ten times per run (and at the end)
    seed: int = 0
    resume: bool = False
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None
    context_length: int | None = None  # the model's own unless the configuration overrides it
    trust_remote_code: bool = False
    allow_pickle: bool = False


@dataclass
class TrainResult:
    out_dir: Path
    status: str  # "done" or "stopped" (a checkpoint was saved: --resume continues)
    steps: int
    max_steps: int
    seconds: float
    eval_loss_before: float | None
    eval_loss_after: float | None
    train_loss: float | None
    checkpoint: Path | None
    meta: dict[str, Any] = field(default_factory=dict)


def require_deps() -> None:
    """trl, datasets and peft are importable, or a TrainError with the install hint."""
    missing = []
    for module in ("trl", "datasets", "peft"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MissingTrainDeps(f"training needs {' and '.join(missing)}, which are not installed: {INSTALL_HINT}")


# -- preparing (no writes) ---------------------------------------------------------------------


@dataclass
class Prepared:
    folder: Path
    tokenizer: Any
    chat: bool
    context: int
    train: Examples
    eval: list[Any]  # Examples' Example items held out
    eval_source: str  # "file", "split" or "none"
    eval_examples: Examples | None
    train_lines: list[int]


def _context(folder: Path, tokenizer: Any, override: int | None) -> int:
    from ..models.loader import context_length

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    return context_length(config, tokenizer, override)


def _split(n: int, fraction: float, seed: int) -> list[int]:
    """Indices held out for evaluation: a seeded share of the examples, at least one when there are two."""
    if fraction <= 0 or n < 2:
        return []
    import random

    k = min(n - 1, max(1, round(n * fraction)))
    return sorted(random.Random(seed).sample(range(n), k))


def prepare(model_folder: str | Path, data_path: str | Path, opts: TrainOptions) -> Prepared:
    """Read and check everything that can be checked without the weights. Raises TrainError."""
    folder = Path(model_folder)
    try:
        data = read_jsonl(data_path)
        eval_data = read_jsonl(opts.eval_path) if opts.eval_path else None
    except DataError as exc:
        raise TrainError(str(exc)) from None
    if eval_data is not None and eval_data.format != data.format:
        raise TrainError(f"{eval_data.path} is {eval_data.format} but {data.path} is {data.format}; "
                         "use one format for both")
    from ..models.ml import ensure_imported

    ensure_imported()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=opts.trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types here
        raise TrainError(f"could not load the tokenizer from {folder}: {exc}") from None
    chat = bool(getattr(tokenizer, "chat_template", None))
    context = _context(folder, tokenizer, opts.context_length)
    try:
        for checked in (data, eval_data):
            if checked is None:
                continue
            for example in checked.examples:
                try:
                    rows(example, chat)  # a conversation on a model without a chat template
                except DataError as exc:
                    raise DataError(f"{checked.path} {exc}") from None
            check_lengths(checked, lambda e: token_count(e, tokenizer, chat), context)
    except DataError as exc:
        raise TrainError(str(exc)) from None
    if eval_data is not None:
        held, source = list(eval_data.examples), "file"
        train_idx = list(range(len(data)))
    else:
        held_idx = _split(len(data), opts.eval_split, opts.seed)
        held = [data.examples[i] for i in held_idx]
        held_set = set(held_idx)
        train_idx = [i for i in range(len(data)) if i not in held_set]
        source = "split" if held else "none"
    return Prepared(folder, tokenizer, chat, context, data, held, source, eval_data,
                    [data.examples[i].line for i in train_idx])


def check_out_dir(out_dir: Path, resume: bool, data_sha: str) -> Path | None:
    """The checkpoint to resume from (None for a fresh run). Raises TrainError when the folder is in
    the way of a fresh run, or a resume has nothing (or other data) to continue."""
    if not resume:
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise TrainError(f"{out_dir} is not empty: choose a new --out, or pass --resume to continue the "
                             "training run in it")
        return None
    last = last_checkpoint(out_dir)
    if last is None:
        raise TrainError(f"nothing to resume in {out_dir}: it has no {CHECKPOINTS}/checkpoint-N folder")
    meta = read_meta(out_dir)
    if meta and meta.get("data", {}).get("sha256") not in (None, data_sha):
        raise TrainError(f"the training data changed since the run in {out_dir} started (its hash differs); "
                         "resume with the same file, or start a new run with another --out")
    return last


def last_checkpoint(out_dir: Path) -> Path | None:
    found = []
    for child in (out_dir / CHECKPOINTS).glob("checkpoint-*"):
        step = child.name.rpartition("-")[2]
        if child.is_dir() and step.isdigit() and (child / "trainer_state.json").is_file():
            found.append((int(step), child))
    return max(found)[1] if found else None


def read_meta(out_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((out_dir / META).read_text())
    except (OSError, ValueError):
        return {}


# -- training --------------------------------------------------------------------------------------


def _dataset(path: Path, indices: list[int] | None, examples: list[Any], chat: bool) -> Any:
    """The examples as a `datasets` Dataset of trainer rows, loaded from the JSONL by `datasets`."""
    import tempfile

    import datasets

    with tempfile.TemporaryDirectory(prefix="ember-datasets-") as cache:
        try:
            raw = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=cache,
                                        keep_in_memory=True)
        except Exception as exc:  # noqa: BLE001 - pyarrow's type inference over extra keys, mostly
            raise TrainError(f"datasets could not read {path}: {str(exc).splitlines()[0][:300]}") from None
    if indices is not None:
        raw = raw.select(indices)
    if len(raw) != len(examples):  # both skip blank lines; anything else is a reader disagreement
        raise TrainError(f"datasets read {len(raw)} examples from {path}, Ember's check {len(examples)}")

    def expand(batch: dict[str, list[Any]], idx: list[int]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"prompt": [], "completion": []}
        for i in idx:
            for row in rows(examples[i], chat):
                out["prompt"].append(row["prompt"])
                out["completion"].append(row["completion"])
        return out

    # The checked examples are the rows' source (same order as the file): arrow may have widened or
    # renamed fields of the raw objects.
    return raw.map(expand, batched=True, with_indices=True, remove_columns=raw.column_names,
                   keep_in_memory=True)


def _dtype_and_precision(device: str, requested: str) -> tuple[Any, bool, bool]:
    """(weights dtype, bf16, fp16): float32 on a CPU, bfloat16 on a GPU that has it, else float32
    weights with float16 autocast."""
    import torch

    if device in ("cpu", "mps") or requested == "float32":
        return torch.float32, False, False
    if requested == "float16" or (requested == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float32, False, True
    return torch.bfloat16, True, False


def _quiet_libraries() -> None:
    import warnings

    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()  # "Writing model shards" bars on save
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    try:
        import trl  # noqa: F401
        from transformers.utils import logging as hf_logging

        hf_logging.get_logger("trl").setLevel(logging.ERROR)
    except Exception:  # noqa: BLE001 - only quieter output at stake
        pass
    warnings.filterwarnings("ignore", module=r"(trl|peft|transformers|datasets|torch)\b")


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def train(model_folder: str | Path, data_path: str | Path, out_dir: str | Path, *,
          progress: Progress | None = None, stop: threading.Event | None = None,
          base: dict[str, Any] | None = None, prepared: Prepared | None = None,
          **options: Any) -> TrainResult:
    """Train a LoRA adapter on the causal LM in `model_folder` (a transformers folder) and write it to
    `out_dir`. Options are TrainOptions' fields (rank, alpha, max_steps, lr, batch_size, ...).

    `progress` gets one dict per event (start, eval, step, checkpoint, done); setting `stop` ends the
    run after the current step with a checkpoint (status "stopped"). Raises TrainError before writing
    anything when the data or the folder is wrong.
    """
    opts = TrainOptions(**options)
    if opts.eval_path is not None:
        opts.eval_path = Path(opts.eval_path)
    require_deps()
    out_dir = Path(out_dir)
    prep = prepared or prepare(model_folder, data_path, opts)
    resume_from = check_out_dir(out_dir, opts.resume, prep.train.sha256)
    emit = progress or (lambda event: None)
    started = time.monotonic()

    import torch

    from ..config import torch_threads
    from ..models import devices

    _quiet_libraries()
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback, set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    folder = prep.folder
    if not opts.allow_pickle and not any(folder.glob("*.safetensors")):
        raise TrainError(f"no safetensors weights in {folder} (pickled weights need allow_pickle = true)")
    try:
        device = devices.resolve(opts.device)
    except Exception as exc:  # noqa: BLE001 - ModelLoadError: CUDA asked for and absent
        raise TrainError(str(getattr(exc, "message", exc))) from None
    torch.set_num_threads(torch_threads(opts.threads))
    dtype, bf16, fp16 = _dtype_and_precision(device, opts.dtype)

    kept = set(prep.train_lines)
    train_idx = [i for i, e in enumerate(prep.train.examples) if e.line in kept]
    train_examples = [prep.train.examples[i] for i in train_idx]
    train_ds = _dataset(prep.train.path, train_idx, train_examples, prep.chat)
    eval_ds = None
    if prep.eval_source == "file" and prep.eval_examples is not None:
        eval_ds = _dataset(prep.eval_examples.path, None, prep.eval, prep.chat)
    elif prep.eval_source == "split":
        held_idx = [i for i, e in enumerate(prep.train.examples) if e.line not in kept]
        eval_ds = _dataset(prep.train.path, held_idx, prep.eval, prep.chat)

    set_seed(opts.seed)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype,
                                                     trust_remote_code=opts.trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types here
        raise TrainError(f"could not load the model from {folder}: {exc}") from None

    rows_per_step = opts.batch_size * opts.grad_accum
    steps_per_epoch = max(1, math.ceil(len(train_ds) / rows_per_step))
    planned = opts.max_steps or max(1, math.ceil(steps_per_epoch * opts.epochs))
    eval_every = opts.eval_every or max(1, planned // 5)
    save_every = opts.save_every or max(1, planned // 10)

    ckpt_dir = out_dir / CHECKPOINTS
    args = SFTConfig(
        output_dir=str(ckpt_dir),
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.grad_accum,
        learning_rate=opts.lr,
        num_train_epochs=opts.epochs,
        max_steps=opts.max_steps or -1,
        seed=opts.seed,
        data_seed=opts.seed,
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="steps",
        save_steps=save_every,
        save_total_limit=1,
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=eval_every,
        report_to="none",
        disable_tqdm=True,
        gradient_checkpointing=False,  # a small model's activations fit; recomputing them costs a third
        use_cpu=device == "cpu",
        max_length=prep.context,
        completion_only_loss=True,
        packing=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=device.startswith("cuda"),
        bf16=bf16,
        fp16=fp16,
    )
    lora = LoraConfig(r=opts.rank, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                      target_modules=opts.target_modules, bias="none", task_type="CAUSAL_LM")

    phase = {"name": "before"}
    last_eval: dict[str, Any] = {}
    clock = {"start": time.monotonic(), "first_step": 0}

    class Reporter(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            clock["start"] = time.monotonic()
            clock["first_step"] = state.global_step
            phase["name"] = "during"

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if stop is not None and stop.is_set():
                control.should_save = True
                control.should_training_stop = True
            if state.global_step >= state.max_steps:
                control.should_save = True  # the last step always leaves a checkpoint to resume from
            return control

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> Any:
            if not logs or "loss" not in logs:
                return
            done = state.global_step - clock["first_step"]
            elapsed = time.monotonic() - clock["start"]
            left = elapsed / done * (state.max_steps - state.global_step) if done > 0 else None
            emit({"event": "step", "step": state.global_step, "total": state.max_steps,
                  "loss": round(float(logs["loss"]), 4), "learning_rate": logs.get("learning_rate"),
                  "elapsed_s": round(elapsed, 1), "left_s": None if left is None else round(left, 1)})

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> Any:
            if metrics and "eval_loss" in metrics:
                last_eval.update(step=state.global_step, loss=float(metrics["eval_loss"]))
                emit({"event": "eval", "phase": phase["name"], "step": state.global_step,
                      "eval_loss": round(float(metrics["eval_loss"]), 4)})

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            emit({"event": "checkpoint", "step": state.global_step,
                  "path": str(ckpt_dir / f"checkpoint-{state.global_step}")})

    try:
        trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                             processing_class=prep.tokenizer, peft_config=lora, callbacks=[Reporter()])
    except ValueError as exc:  # trl's own checks (e.g. target modules the model lacks)
        raise TrainError(f"the trainer refused this setup: {exc}") from None
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout; Reporter reports

    meta = read_meta(out_dir) if resume_from else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    emit({"event": "start", "total": trainer.args.max_steps if trainer.args.max_steps > 0 else planned,
          "examples": len(prep.train), "train_rows": len(train_ds),
          "eval_rows": 0 if eval_ds is None else len(eval_ds), "device": device,
          "dtype": str(dtype).removeprefix("torch."), "chat_template": prep.chat,
          "resumed_from": None if resume_from is None else str(resume_from)})
    before = meta.get("eval_loss_before")
    if eval_ds is not None and before is None:
        before = float(trainer.evaluate()["eval_loss"])
    meta = {
        "format": 1,
        "status": "training",
        "base": {**(base or {}), "folder": str(folder.resolve()), **_base_shape(model.config)},
        "chat_template": prep.chat,
        "context_length": prep.context,
        "data": {"file": str(prep.train.path.resolve()), "sha256": prep.train.sha256, "format": prep.train.format,
                 "examples": len(prep.train), "train_examples": len(train_examples),
                 "train_rows": len(train_ds), "eval": prep.eval_source,
                 "eval_examples": len(prep.eval),
                 **({"eval_file": str(prep.eval_examples.path.resolve()), "eval_sha256": prep.eval_examples.sha256}
                    if prep.eval_examples is not None else {})},
        "lora": {"r": opts.rank, "alpha": opts.alpha, "dropout": opts.dropout,
                 "target_modules": opts.target_modules},
        "training": {"epochs": opts.epochs, "max_steps": opts.max_steps, "lr": opts.lr,
                     "batch_size": opts.batch_size, "grad_accum": opts.grad_accum, "seed": opts.seed,
                     "device": device, "dtype": str(dtype).removeprefix("torch.")},
        "eval_loss_before": before,
        "seconds": meta.get("seconds", 0.0),
        "started": meta.get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_json(out_dir / META, meta)

    session = time.monotonic()
    output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    state = trainer.state
    stopped = bool(stop is not None and stop.is_set() and state.global_step < state.max_steps)
    phase["name"] = "after"
    after = None
    if eval_ds is not None and not stopped:
        if last_eval.get("step") == state.global_step:  # evaluated at the last step already
            after = last_eval["loss"]
            emit({"event": "eval", "phase": "after", "step": state.global_step, "eval_loss": round(after, 4)})
        else:
            after = float(trainer.evaluate()["eval_loss"])
    seconds = meta["seconds"] + (time.monotonic() - session)
    if not stopped:
        adapter: Any = trainer.model  # a PeftModel: saves the adapter only
        adapter.save_pretrained(out_dir, safe_serialization=True)
        (out_dir / "README.md").unlink(missing_ok=True)  # peft's model card template, not ours
    checkpoint = last_checkpoint(out_dir)
    meta.update({"status": "stopped" if stopped else "done", "steps": state.global_step,
                 "max_steps": state.max_steps, "eval_loss_after": after,
                 "train_loss": round(float(output.training_loss), 4) if output.training_loss else None,
                 "seconds": round(seconds, 1),
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    _write_json(out_dir / META, meta)
    result = TrainResult(out_dir, meta["status"], state.global_step, state.max_steps, round(seconds, 1),
                         before, after, meta["train_loss"], checkpoint, meta)
    emit({"event": "done", **{k: (str(v) if isinstance(v, Path) else v)
                              for k, v in asdict(result).items() if k != "meta"},
          "total_seconds": round(time.monotonic() - started, 1)})
    return result


def _base_shape(config: Any) -> dict[str, Any]:
    """What an adapter must match in its base model: architecture and layer shapes."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return {"architecture": (getattr(config, "architectures", None) or [type(config).__name__])[0],
            "model_type": getattr(config, "model_type", None),
            "hidden_size": getattr(text, "hidden_size", None),
            "num_hidden_layers": getattr(text, "num_hidden_layers", None),
            "vocab_size": getattr(text, "vocab_size", None)}
