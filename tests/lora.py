"""Tiny LoRA adapters for the adapter tests: peft on SmolLM2, trained in a few steps to give one
chat answer, so a test can tell greedy output with the adapter from output without it."""

from __future__ import annotations

from pathlib import Path


def train_chat_adapter(model_folder: Path, out: Path, pairs: list[tuple[str, str]], steps: int = 40,
                       rank: int = 8, lr: float = 2e-3, seed: int = 0) -> Path:
    """Train a LoRA adapter (q/k/v/o projections) so that each user question gets its answer under
    the model's chat template; save it as peft does (adapter_config.json + safetensors)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForCausalLM.from_pretrained(model_folder, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    batches = []
    for question, answer in pairs:
        prompt = tok.apply_chat_template([{"role": "user", "content": question}],
                                         add_generation_prompt=True, tokenize=False)
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tok(answer + tok.eos_token, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + answer_ids])
        labels = torch.tensor([[-100] * len(prompt_ids) + answer_ids])  # loss on the answer only
        batches.append((ids, labels))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for step in range(steps):
        ids, labels = batches[step % len(batches)]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out, safe_serialization=True)
    return out
