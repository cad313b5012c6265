"""What keeping the model resident buys: a warm `ember serve` against loading the model per request.

The daemon runs the transformers engine here, as the in-process baselines do; bench/generation.py and
bench/editor.py measure the engines themselves.

    python bench/daemon.py [--threads T] [--repeat N] [--quick] [--max-tokens 48] [--decode-tokens 64]

One run, one machine, three comparisons (the rounds of (a) and (b) alternate their two sides):

(a) summarize latency. Daemon: one long-lived `ember serve`, model loaded by a warm-up request, then
    N `summarize` requests; client wall time from sending the request to reading the reply. One-shot:
    a fresh `python` subprocess per request doing what a naive script does (import transformers,
    `from_pretrained` from the same converted safetensors folder, the same chat-template prompt as
    ember's summarize, `generate` the same max_tokens greedily, print); wall time from spawn to exit.
(b) decode tokens/s. Daemon: `complete` with a fixed plain prompt, greedy, `--decode-tokens` tokens;
    rate = completion_tokens / run time, both from the daemon's `timings.run_ms` (its clock around
    `model.generate`) and from the client's wall time. In-process: `model.generate` in this process on
    the same folder, dtype and quantization as the daemon reports in `daemon/status`, same thread count;
    rate = generated tokens / time around `generate`. Both rates include the (short) prefill.
(c) start-up: spawn of `ember serve` to the answer of its first request, for `initialize`,
    `tokenize` and `complete` (max_tokens 1), each in its own fresh process, conversion cached.

Runs offline in a private config dir with the model cache the tests use (EMBER_TEST_CACHE, default
.ember-cache/test; convert it once with the test suite or any `ember serve` request). Prints Markdown.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from isolation import daemon_environment

ROOT = Path(__file__).resolve().parent.parent
EMBER = str(Path(sys.executable).parent / "ember")
TIMEOUT = 600.0

TEXT = (
    "The city council voted on Tuesday to extend the bike lane network by 40 km over the next three "
    "years. The work is funded by a new parking levy and starts in the spring, beginning with the "
    "routes to the two largest schools. Shop owners on Main Street objected that the levy will keep "
    "customers away, but the council pointed to a study from a neighbouring town where sales rose "
    "after a similar change. A public meeting on the exact routes is planned for March."
)
DECODE_PROMPT = "The history of the printing press begins"

# The naive user script of (a): everything it needs arrives as JSON on stdin; it prints the summary
# and, on stderr, where its time went.
ONE_SHOT = r"""
import json, sys, time
t0 = time.perf_counter()
job = json.loads(sys.stdin.read())
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(job["threads"])
t1 = time.perf_counter()
tok = AutoTokenizer.from_pretrained(job["folder"])
model = AutoModelForCausalLM.from_pretrained(job["folder"], dtype=getattr(torch, job["dtype"]))
model.eval()
t2 = time.perf_counter()
ids = tok.apply_chat_template(job["messages"], add_generation_prompt=True, return_tensors="pt",
                              return_dict=True)["input_ids"]
with torch.inference_mode():
    out = model.generate(ids, max_new_tokens=job["max_tokens"], do_sample=False,
                         pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
text = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
t3 = time.perf_counter()
print(text)
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "generate_s": t3 - t2}), file=sys.stderr)
"""


# -- a small client of `ember serve` (line framing) ---------------------------------------------


class Daemon:
    def __init__(self, args: list[str], env: dict[str, str]):
        self.spawned = time.perf_counter()
        self.proc = subprocess.Popen([EMBER, "serve", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.replies: queue.Queue[Any] = queue.Queue()
        self.stderr: list[str] = []
        self._ids = itertools.count(1)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            if "id" in msg and "method" not in msg:  # a reply, not a notification
                self.replies.put((time.perf_counter(), msg))
        self.replies.put((time.perf_counter(), None))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # always drain: a full pipe would block the daemon
            self.stderr.append(line.decode(errors="replace"))

    def send(self, method: str, params: Any = None) -> int:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()
        return msg_id

    def wait(self, msg_id: int) -> tuple[float, Any]:
        """(arrival time, result) of the reply to `msg_id`; replies arrive one request at a time here."""
        arrived, msg = self.replies.get(timeout=TIMEOUT)
        if msg is None:
            sys.exit("ember serve closed stdout; its stderr:\n" + "".join(self.stderr[-30:]))
        if msg.get("id") != msg_id or "result" not in msg:
            sys.exit(f"unexpected reply to request {msg_id}: {msg}")
        return arrived, msg["result"]

    def call(self, method: str, params: Any = None) -> tuple[float, Any]:
        """(seconds from sending to the reply, result)."""
        sent = time.perf_counter()
        arrived, result = self.wait(self.send(method, params))
        return arrived - sent, result

    def close(self) -> None:
        try:
            self.send("shutdown")
            self.replies.get(timeout=30)
            assert self.proc.stdin is not None
            self.proc.stdin.write(b'{"jsonrpc":"2.0","method":"exit"}\n')
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, queue.Empty, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=10)


# -- helpers ---------------------------------------------------------------------------------



def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def load_avg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def summary_messages(form: str) -> list[dict[str, str]]:
    from ember.tasks.summarize import FORMS, SYSTEM

    # The same messages as ember.tasks.summarize._prompt_ids builds for an instruct model.
    instruction = f"Summarize the following text {FORMS[form]}.\n\n{TEXT}"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": instruction}]


def one_shot(job: dict[str, Any], env: dict[str, str]) -> tuple[float, str, dict[str, float]]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", ONE_SHOT], input=json.dumps(job).encode(),
                          capture_output=True, env=env, timeout=TIMEOUT)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"one-shot script failed ({done.returncode}):\n{done.stderr.decode()[-3000:]}")
    parts = json.loads(done.stderr.decode().strip().splitlines()[-1])
    return elapsed, done.stdout.decode().strip(), parts


class InProcess:
    """transformers generate in this process, on the model the daemon loaded."""

    def __init__(self, model_info: dict[str, Any], threads: int):
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        transformers.utils.logging.disable_progress_bar()
        self.torch = torch
        folder = model_info["path"]
        self.tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, model_info["dtype"]))
        model.eval()
        if model_info["quantization"] == "int8-dynamic":
            from ember.models.quantization import QuantPlan, finish

            model = finish(model, QuantPlan("int8-dynamic", "int8-dynamic", None))
        elif model_info["quantization"] != "none":
            sys.exit(f"in-process baseline: quantization {model_info['quantization']!r} is not "
                     "reproduced here; rerun with --quantization none")
        self.model = model
        self.ids = torch.tensor([self.tok(DECODE_PROMPT, add_special_tokens=True)["input_ids"]])
        gen = model.generation_config
        self.eos = gen.eos_token_id
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else (
            self.eos[0] if isinstance(self.eos, list) else self.eos)

    def generate(self, max_tokens: int) -> tuple[float, int, str]:
        torch = self.torch
        with torch.inference_mode():
            started = time.perf_counter()
            out = self.model.generate(self.ids, attention_mask=torch.ones_like(self.ids),
                                      max_new_tokens=max_tokens, do_sample=False, temperature=None,
                                      top_p=None, top_k=None, pad_token_id=self.pad,
                                      eos_token_id=self.eos)
            elapsed = time.perf_counter() - started
        new = out[0, self.ids.shape[1]:]
        return elapsed, int(new.shape[0]), str(self.tok.decode(new, skip_special_tokens=True))


# -- the three measurements ------------------------------------------------------------------


def warm_rounds(args: argparse.Namespace, env: dict[str, str], serve_args: list[str]) -> dict[str, Any]:
    log(f"starting ember serve {' '.join(serve_args)}")
    daemon = Daemon(serve_args, env)
    try:
        summarize = {"text": TEXT, "form": "paragraph", "max_tokens": args.max_tokens}
        complete = {"prompt": DECODE_PROMPT, "max_tokens": args.decode_tokens}
        warm_s, warm = daemon.call("summarize", summarize)  # loads the model
        daemon.call("complete", complete)
        _, status = daemon.call("daemon/status")
        info = status["models"][0]
        log(f"daemon warm (first summarize {warm_s:.1f}s); model {info['dtype']} "
            f"quantization={info['quantization']} threads={status['workers'][0]['threads']}")

        job = {"folder": info["path"], "dtype": info["dtype"], "threads": args.threads,
               "max_tokens": args.max_tokens, "messages": summary_messages("paragraph")}
        if info["quantization"] != "none":
            log(f"note: the one-shot script loads {info['dtype']} without {info['quantization']}")
        local = InProcess(info, args.threads)
        local.generate(args.decode_tokens)  # warm-up: first-call allocations, lazy inits

        r: dict[str, Any] = {"status": status, "model": info, "d_sum": [], "d_sum_run": [],
                             "o_sum": [], "o_parts": [], "d_dec_wall": [], "d_dec_run": [],
                             "d_dec_tokens": [], "p_dec": [], "p_dec_tokens": []}
        for i in range(args.repeat):
            log(f"round {i + 1}/{args.repeat}")
            # Alternate which side goes first, so a drifting load does not favour one of them.
            for side in (("daemon", "one-shot") if i % 2 == 0 else ("one-shot", "daemon")):
                if side == "daemon":
                    wall, res = daemon.call("summarize", summarize)
                    r["d_sum"].append(wall)
                    r["d_sum_run"].append(res["timings"]["run_ms"] / 1000)
                    r["d_sum_text"] = res["text"]
                    r["d_sum_tokens"] = res["usage"]["completion_tokens"]
                else:
                    wall, text, parts = one_shot(job, env)
                    r["o_sum"].append(wall)
                    r["o_parts"].append(parts)
                    r["o_sum_text"] = text
            # A-B-B-A: a load that drifts linearly within the round weighs on both sides alike.
            for side in ("daemon", "in-process", "in-process", "daemon"):
                if side == "daemon":
                    wall, res = daemon.call("complete", complete)
                    r["d_dec_wall"].append(wall)
                    r["d_dec_run"].append(res["timings"]["run_ms"] / 1000)
                    r["d_dec_tokens"].append(res["usage"]["completion_tokens"])
                    r["d_dec_text"] = res["text"]
                    r["prompt_tokens"] = res["usage"]["prompt_tokens"]
                else:
                    elapsed, n, text = local.generate(args.decode_tokens)
                    r["p_dec"].append(elapsed)
                    r["p_dec_tokens"].append(n)
                    r["p_dec_text"] = text
        r["first_summarize_s"] = warm_s
        r["warm_summary_matches"] = r["d_sum_text"].strip() == r["o_sum_text"].strip()
        r["decode_text_matches"] = r["d_dec_text"] == r["p_dec_text"]
        return r
    finally:
        daemon.close()


def spawn_rounds(args: argparse.Namespace, env: dict[str, str], serve_args: list[str]) -> dict[str, list[float]]:
    requests = {
        "initialize": ("initialize", {"process_id": None, "client_info": {"name": "bench"}}),
        "tokenize": ("tokenize", {"text": "Hello world"}),
        "complete": ("complete", {"prompt": DECODE_PROMPT, "max_tokens": 1}),
    }
    out: dict[str, list[float]] = {k: [] for k in requests}
    for i in range(args.spawns):
        log(f"spawn round {i + 1}/{args.spawns}")
        order = list(requests) if i % 2 == 0 else list(reversed(requests))
        for name in order:
            method, params = requests[name]
            daemon = Daemon(serve_args, env)  # the clock starts just before the spawn
            try:
                arrived, _ = daemon.wait(daemon.send(method, params))
                out[name].append(arrived - daemon.spawned)
            finally:
                daemon.close()
    return out


# -- report ----------------------------------------------------------------------------------


def report(args: argparse.Namespace, r: dict[str, Any], spawn: dict[str, list[float]],
           loads: tuple[str, str], started: datetime, took: float) -> str:
    import torch
    import transformers

    info, status = r["model"], r["status"]
    lines = [
        f"### ember daemon benchmark, threads={args.threads}",
        "",
        f"{started:%Y-%m-%d %H:%M} UTC; {platform.node()}, {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}, ember {status['version']}. "
        f"Model {info['name']} ({Path(info['path']).name}), {info['device']}, {info['dtype']}, "
        f"quantization {info['quantization']}; daemon worker threads {status['workers'][0]['threads']}, "
        f"baseline torch threads {args.threads}. Load average (1/5/15 min) before: {loads[0]}, "
        f"after: {loads[1]}. Took {took:.0f} s.",
        "",
        "Figures: median (min-max) of the runs. Ratios: of the medians, and in brackets the median of "
        "the ratios within each round (the two sides of a round run back to back, so this one is less "
        "exposed to load that changes between rounds).",
        "",
        "| measure | n | daemon | baseline | ratio |",
        "|---|---|---|---|---|",
    ]
    d, o = med(r["d_sum"]), med(r["o_sum"])
    per_round_a = med([b / a for a, b in zip(r["d_sum"], r["o_sum"], strict=True)])
    lines.append(f"| (a) `summarize` latency, s ({args.max_tokens} tokens; daemon warm, baseline a one-shot "
                 f"script) | {len(r['d_sum'])} | {spread(r['d_sum'])} | {spread(r['o_sum'])} | "
                 f"one-shot / daemon = {o / d:.1f}x (per round: {per_round_a:.1f}x) |")

    def rates(tokens: list[int], secs: list[float]) -> list[float]:
        return [n / s for n, s in zip(tokens, secs, strict=True)]

    d_run = rates(r["d_dec_tokens"], r["d_dec_run"])
    d_wall = rates(r["d_dec_tokens"], r["d_dec_wall"])
    p = rates(r["p_dec_tokens"], r["p_dec"])
    n = len(p)

    def per_round(d_rates: list[float]) -> float:
        """Median over rounds of (daemon tokens/s) / (in-process tokens/s), two runs a side a round."""
        return med([(d_rates[k] + d_rates[k + 1]) / (p[k] + p[k + 1]) for k in range(0, n, 2)])

    lines.append(f"| (b) decode tokens/s, daemon `timings.run_ms` vs in-process `generate` | {n} | "
                 f"{spread(d_run, '{:.1f}')} | {spread(p, '{:.1f}')} | "
                 f"daemon / in-process = {med(d_run) / med(p):.3f} (per round: {per_round(d_run):.3f}) |")
    lines.append(f"| (b) decode tokens/s, daemon client wall time vs in-process `generate` | {n} | "
                 f"{spread(d_wall, '{:.1f}')} | {spread(p, '{:.1f}')} | "
                 f"daemon / in-process = {med(d_wall) / med(p):.3f} (per round: {per_round(d_wall):.3f}) |")
    lines += [
        "",
        "| start-up: spawn of `ember serve` to the first answer, s | n | median (min-max) |",
        "|---|---|---|",
    ]
    for name, label in (("initialize", "`initialize`"), ("tokenize", "`tokenize` (loads the tokenizer)"),
                        ("complete", "`complete`, max_tokens 1 (loads the model, cached conversion)")):
        lines.append(f"| {label} | {len(spawn[name])} | {spread(spawn[name])} |")

    parts = r["o_parts"]
    lines += [
        "",
        "Details:",
        "",
        f"- (a) one-shot script, median: import torch+transformers {med([x['import_s'] for x in parts]):.2f} s, "
        f"load tokenizer+model {med([x['load_s'] for x in parts]):.2f} s, generate+decode "
        f"{med([x['generate_s'] for x in parts]):.2f} s (the rest of its wall time is the interpreter "
        f"start and exit). Daemon summarize `timings.run_ms` median {med(r['d_sum_run']):.2f} s of "
        f"{med(r['d_sum']):.2f} s on the client's clock; {r['d_sum_tokens']} tokens generated. "
        f"First (cold-model) daemon summarize: {r['first_summarize_s']:.2f} s. "
        f"Same summary text on both sides: {'yes' if r['warm_summary_matches'] else 'NO'}.",
        f"- (b) prompt {DECODE_PROMPT!r}, max_tokens {args.decode_tokens}; tokens generated: daemon "
        f"{sorted(set(r['d_dec_tokens']))}, in-process {sorted(set(r['p_dec_tokens']))}; same text: "
        f"{'yes' if r['decode_text_matches'] else 'NO'}. Both rates include the prefill of the "
        f"{r['prompt_tokens']}-token prompt. Client wall time minus the daemon's `run_ms` (stdio, JSON, "
        f"tokenizing the prompt, queueing), median: "
        f"{med([(w - x) * 1000 for w, x in zip(r['d_dec_wall'], r['d_dec_run'], strict=True)]):.1f} ms "
        f"per `complete`, "
        f"{med([(w - x) * 1000 for w, x in zip(r['d_sum'], r['d_sum_run'], strict=True)]):.1f} ms "
        f"per `summarize`.",
        "- Every run, in order: (a) daemon " + ", ".join(f"{x:.2f}" for x in r["d_sum"])
        + "; one-shot " + ", ".join(f"{x:.2f}" for x in r["o_sum"])
        + ". (b) daemon run_ms tok/s " + ", ".join(f"{x:.1f}" for x in d_run)
        + "; in-process " + ", ".join(f"{x:.1f}" for x in p) + ".",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None,
                    help="daemon --threads and torch.set_num_threads for the baselines "
                         "(default: ember's transformers default, half the cores)")
    ap.add_argument("--repeat", type=int, default=None, help="rounds of (a) and (b); a round runs one summarize "
                    "and two decodes per side (default 5, quick 2)")
    ap.add_argument("--spawns", type=int, default=None, help="fresh daemons per start-up figure "
                    "(default 3, quick 1)")
    ap.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    ap.add_argument("--max-tokens", type=int, default=48, help="summarize max_tokens (default 48)")
    ap.add_argument("--decode-tokens", type=int, default=64, help="complete max_tokens for (b)")
    ap.add_argument("--quantization", default=None,
                    help="pass --quantization to the daemon (default: its own setting, auto)")
    ap.add_argument("--cache-dir", default=os.environ.get("EMBER_TEST_CACHE")
                    or str(ROOT / ".ember-cache" / "test"), help="ember cache with the conversion")
    args = ap.parse_args()
    if args.threads is None:
        from ember.config import torch_threads

        args.threads = torch_threads(None)
    args.repeat = args.repeat or (2 if args.quick else 5)
    args.spawns = args.spawns or (1 if args.quick else 3)

    started, t0, load_before = datetime.now(UTC), time.perf_counter(), load_avg()
    # Like for like: the baselines run transformers in process, so the daemon runs it too
    # (bench/generation.py and bench/editor.py compare the engines).
    serve_args = ["--threads", str(args.threads), "--set", "models.default.engine=transformers"]
    if args.quantization:
        serve_args += ["--quantization", args.quantization]
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as tmp:
        env = daemon_environment(Path(tmp), EMBER_DAEMON__CACHE_DIR=args.cache_dir,
                                 EMBER_DAEMON__LOG_LEVEL="warning", TRANSFORMERS_VERBOSITY="error")
        warm = warm_rounds(args, env, serve_args)
        spawn = spawn_rounds(args, env, serve_args)
    took = time.perf_counter() - t0
    print(report(args, warm, spawn, (load_before, load_avg()), started, took))


if __name__ == "__main__":
    main()
