"""LoRA adapters through a real daemon: two adapters trained here in a few steps on SmolLM2, each
teaching its own answer to one question, on both engines; switching, routing, adding and dropping
at run time, and the files that are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import tiny_models
from conftest import make_daemon_env
from lora import train_chat_adapter
from rpc_client import Daemon

pytestmark = pytest.mark.model

QUESTION = "What is the codename of the Ember project?"
TRAINED = {"bluefin": "The codename is Bluefin.", "pirate": "Arr, it be Driftwood, matey."}
MARK = {"": None, "bluefin": "Bluefin", "pirate": "Driftwood"}


@pytest.fixture(scope="session")
def adapters(smollm2_folder, tmp_path_factory) -> dict[str, Path]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("adapters")
    try:
        return {name: train_chat_adapter(smollm2_folder, root / name, [(QUESTION, answer)], steps=30,
                                         seed=i)
                for i, (name, answer) in enumerate(TRAINED.items())}
    finally:
        torch.set_num_threads(threads)


def start(folder: Path, cache_dir: Path, config: str, args: list[str] = ()) -> Daemon:
    (folder / "config.toml").write_text(config)
    env = make_daemon_env(folder, cache_dir)
    return Daemon("lines", ["--config", str(folder / "config.toml"), *args], env)


def adapters_config(adapters: dict[str, Path], extra: str = "") -> str:
    lines = ["[models.default.adapters]"] + [f'{n} = "{p}"' for n, p in adapters.items()]
    return "\n".join(lines) + "\n" + extra


def ask(d: Daemon, adapter: str | None, question: str = QUESTION, **kw) -> dict:
    params = {"messages": [{"role": "user", "content": question}], "max_tokens": 16, **kw}
    if adapter is not None:
        params["adapter"] = adapter
    return d.call("complete", params)


@pytest.fixture(scope="module", params=["onnxruntime", "transformers"])
def daemon(request, adapters, tmp_path_factory, cache_dir):
    folder = tmp_path_factory.mktemp(f"adapters-{request.param}")
    d = start(folder, cache_dir, adapters_config(adapters),
              ["--set", f"models.default.engine={request.param}"])
    d.call("initialize", {})
    d.engine = request.param
    yield d
    d.kill()


def test_each_adapter_gives_its_trained_answer_and_switching_never_mixes_state(daemon):
    # Base, then each adapter, then back, twice over: every answer is the one of a cold request.
    first: dict[str, str] = {}
    for adapter in ["", "bluefin", "pirate", "bluefin", "", "pirate"]:
        result = ask(daemon, adapter)
        text = result["text"]
        if adapter in first:
            assert text == first[adapter], (adapter, text, first[adapter])
        first[adapter] = text
        for other, mark in MARK.items():
            if mark is not None:
                assert (mark in text) == (other == adapter), (adapter, text)
        if adapter:  # on the model's own engine (onnxruntime: its graph with LoRA inputs)
            assert result["adapter"] == {"name": adapter, "engine": daemon.engine, "engine_note": None}
        else:
            assert "adapter" not in result


def test_kv_state_is_reused_within_an_adapter_only(daemon):
    # A prompt that starts like no other: what it reuses it can only have from the same prompt.
    prompt = {"prompt": ("Quilted zebras of Lisbon, a field guide. Chapter one: where they "
                         "graze, what they eat, and why their stripes run sideways"), "max_tokens": 4}
    daemon.call("complete", prompt)
    assert daemon.call("complete", prompt)["usage"]["cached_tokens"] > 0
    assert daemon.call("complete", {**prompt, "adapter": "bluefin"})["usage"]["cached_tokens"] == 0
    assert daemon.call("complete", {**prompt, "adapter": "bluefin"})["usage"]["cached_tokens"] > 0
    assert daemon.call("complete", {**prompt, "adapter": "pirate"})["usage"]["cached_tokens"] == 0
    model = daemon.call("daemon/status")["models"][0]
    tagged = {e.get("adapter", "") for e in model["prefix_cache"]["entries"]}
    listed = {a["name"]: a for a in model["adapters"]}
    assert listed["bluefin"]["loaded"] and listed["pirate"]["loaded"]
    assert listed["bluefin"]["rank"] == 8 and "q_proj" in listed["bluefin"]["target_modules"]
    if daemon.engine == "transformers":  # one engine, one cache: the adapters' entries are tagged
        assert {"", "bluefin", "pirate"} <= tagged
    else:  # the graph without LoRA inputs keeps the base model's; the other graph's, the adapters'
        assert tagged == {""}
        assert listed["bluefin"]["engine"] == "onnxruntime"


@pytest.mark.parametrize("daemon", ["transformers"], indirect=True)  # the float32 reference
def test_the_daemon_answers_as_peft_does(daemon, adapters, smollm2_folder, one_torch_thread):
    """Greedy output with an adapter is the one of peft's own model on the same weights."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_folder)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(smollm2_folder, dtype=torch.float32),
                                      adapters["pirate"])
    question = "Write one sentence about the sea."
    ids = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    expected = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert ask(daemon, "pirate", question)["text"] == expected.strip()


def test_a_task_routed_to_an_adapter(adapters, tmp_path, cache_dir):
    d = start(tmp_path, cache_dir, adapters_config(adapters, "[tasks.adapters]\ncomplete = \"pirate\"\n"))
    try:
        assert "Driftwood" in ask(d, None)["text"]
        assert ask(d, None)["adapter"]["name"] == "pirate"
        assert "Bluefin" in ask(d, "bluefin")["text"]  # a request's own choice wins
        assert "Driftwood" not in ask(d, "")["text"]  # "" is the base model
    finally:
        d.kill()


def test_adapters_added_and_dropped_at_run_time(adapters, tmp_path, cache_dir):
    d = start(tmp_path, cache_dir, "")
    try:
        listed = d.call("models/list")["models"][0]
        assert listed["adapters"] == []
        bad = d.request("complete", {"prompt": "x", "adapter": "bluefin"})
        assert bad["error"]["code"] == -32602 and "no adapter named 'bluefin'" in bad["error"]["message"]

        loaded = d.call("models/load", {"model": "default", "adapter": "bluefin",
                                        "source": str(adapters["bluefin"])})["model"]
        assert [a["name"] for a in loaded["adapters"] if a["loaded"]] == ["bluefin"]
        assert "Bluefin" in ask(d, "bluefin")["text"]
        assert d.call("models/unload", {"model": "default", "adapter": "bluefin"}) == {"unloaded": True}
        assert d.call("models/list")["models"][0]["adapters"] == []
        gone = d.request("complete", {"prompt": "x", "adapter": "bluefin"})
        assert gone["error"]["code"] == -32602
        assert "Bluefin" not in ask(d, "")["text"]
    finally:
        d.kill()


def _broken(root: Path, adapters: dict[str, Path], smollm2_folder: Path) -> dict[str, tuple[Path, str]]:
    """Adapter folders that must be refused, and words of the message each gets."""
    out: dict[str, tuple[Path, str]] = {}
    missing = root / "missing"
    out["missing"] = (missing, "folder not found")
    pickled = root / "pickled"
    pickled.mkdir()
    shutil.copy(adapters["bluefin"] / "adapter_config.json", pickled)
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04not really a pickle")
    out["pickled"] = (pickled, "pickle")
    not_lora = root / "not-lora"
    shutil.copytree(adapters["bluefin"], not_lora)
    config = json.loads((not_lora / "adapter_config.json").read_text())
    (not_lora / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))
    out["not-lora"] = (not_lora, "peft_type is IA3")
    rank = root / "other-rank"
    shutil.copytree(adapters["bluefin"], rank)
    (rank / "adapter_config.json").write_text(json.dumps({**config, "r": 4}))
    out["other-rank"] = (rank, "does not fit")
    tiny = tiny_models.build_chat_causal_lm(root / "tiny-model", layers=2)
    out["other-model"] = (train_chat_adapter(tiny, root / "other-model", [("hi", "ho")], steps=1),
                          "does not fit")
    return out


def test_bad_adapters_are_refused_and_change_nothing(adapters, smollm2_folder, tmp_path, cache_dir):
    (tmp_path / "broken").mkdir()
    (tmp_path / "daemon").mkdir()
    broken = _broken(tmp_path / "broken", adapters, smollm2_folder)
    d = start(tmp_path / "daemon", cache_dir, adapters_config({"bluefin": adapters["bluefin"]}))
    try:
        before = ask(d, "bluefin")["text"]
        for name, (folder, words) in broken.items():
            reply = d.request("models/load", {"model": "default", "adapter": name, "source": str(folder)})
            assert reply.get("error", {}).get("code") == -32001, (name, reply)
            assert words in reply["error"]["message"], (name, reply["error"]["message"])
            assert "Traceback" not in reply["error"]["message"]
            assert name not in {a["name"] for a in d.call("models/list")["models"][0]["adapters"]}
        # The adapter loaded before still answers as it did; the base model too.
        assert ask(d, "bluefin")["text"] == before
        assert "Bluefin" not in ask(d, "")["text"]
        wrong = d.request("models/unload", {"model": "default", "adapter": "bluefin", "source": "/x"})
        assert wrong["error"]["code"] == -32602
        bad_name = d.request("models/load", {"model": "default", "adapter": "../up", "source": "/x"})
        assert bad_name["error"]["code"] == -32602
    finally:
        d.kill()


@pytest.mark.parametrize("daemon", ["onnxruntime"], indirect=True)
def test_an_adapter_the_lora_graph_cannot_take_runs_on_a_transformers_copy(daemon, smollm2_folder, tmp_path,
                                                                          one_torch_thread):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    dora = get_peft_model(AutoModelForCausalLM.from_pretrained(smollm2_folder, dtype=torch.float32),
                          LoraConfig(r=2, lora_alpha=4, use_dora=True, target_modules=["q_proj", "v_proj"]))
    dora.save_pretrained(tmp_path / "dora")
    model = daemon.call("models/load", {"model": "default", "adapter": "dora", "source": str(tmp_path / "dora")})["model"]
    entry = next(a for a in model["adapters"] if a["name"] == "dora")
    assert entry["loaded"] and entry["engine"] == "transformers"
    assert "use_dora" in entry["engine_note"] and "onnxruntime" in entry["engine_note"]
    result = ask(daemon, "dora")
    assert result["adapter"]["engine"] == "transformers" and result["text"]
    assert "Bluefin" in ask(daemon, "bluefin")["text"]  # the others stay on onnxruntime
    assert ask(daemon, "bluefin")["adapter"]["engine"] == "onnxruntime"
    assert daemon.call("models/unload", {"model": "default", "adapter": "dora"}) == {"unloaded": True}
