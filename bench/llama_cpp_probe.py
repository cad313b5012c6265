"""llama.cpp on the same GGUF, for bench/generation.py: run in the bench's own environment
(`bash bench/setup_llama_cpp.sh` makes .venv-bench), driven over stdin/stdout with JSON lines.

Requests: {"op": "decode", "prompt": [ids], "tokens": N, "threads": T} -> {"tokens_per_s": x}
          {"op": "perplexity", "ids": [ids]} -> {"ppl": x}
          {"op": "greedy", "prompts": [[ids], ...], "tokens": N, "eos": id} -> {"outputs": [[ids], ...]}
Token ids come from the transformers tokenizer, so every engine sees the same input.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from llama_cpp import Llama

_models: dict[int, Llama] = {}


def model(path: str, threads: int) -> Llama:
    if threads not in _models:
        _models[threads] = Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                                 logits_all=True, verbose=False)
    return _models[threads]


def decode(llm: Llama, prompt: list[int], tokens: int) -> float:
    llm.reset()
    llm.eval(prompt)
    started = time.perf_counter()
    for _ in range(tokens):
        llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
    return tokens / (time.perf_counter() - started)


def perplexity(llm: Llama, ids: list[int]) -> float:
    llm.reset()
    llm.eval(ids)
    logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    top = logits.max(axis=-1, keepdims=True)
    logprobs = logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
    return float(np.exp(-logprobs[np.arange(len(ids) - 1), ids[1:]].mean()))


def greedy(llm: Llama, prompt: list[int], tokens: int, eos: int) -> list[int]:
    llm.reset()
    llm.eval(prompt)
    out: list[int] = []
    for _ in range(tokens):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(token)
        if token == eos:
            break
        llm.eval([token])
    return out


def main() -> None:
    path = sys.argv[1]
    for line in sys.stdin:
        req = json.loads(line)
        llm = model(path, int(req.get("threads", 1)))
        out: dict[str, object]
        if req["op"] == "decode":
            out = {"tokens_per_s": decode(llm, req["prompt"], req["tokens"])}
        elif req["op"] == "perplexity":
            out = {"ppl": perplexity(llm, req["ids"])}
        else:
            out = {"outputs": [greedy(llm, p, req["tokens"], req["eos"]) for p in req["prompts"]]}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
