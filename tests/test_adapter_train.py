"""`ember adapter train` (ember/adapters/train.py, data.py, cli/adapter.py).

Refusals, resuming and the adapter's format run on a tiny random-weight chat model (tiny_models.py);
whether training teaches anything runs on the real SmolLM2 (marked `model`): a style taught on a
few examples shows in greedy output on held-out questions after training, and not before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ember.adapters.data import DataError, Example, read_jsonl, rows
from ember.cli import main
from rpc_client import EMBER
from tiny_models import CONTEXT, build_chat_causal_lm, build_fim_causal_lm

ADAPTER = {"adapter_config.json", "adapter_model.safetensors", "ember_adapter.json", "checkpoints"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_chat_causal_lm(tmp_path_factory.mktemp("tiny") / "chat")


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch) -> None:
    """No user config or EMBER_* settings reach the command run in-process."""
    for key in list(os.environ):
        if key.startswith("EMBER_") and key != "EMBER_TEST_CACHE":
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def qa(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"prompt": f"Question number {i}?", "completion": f"Answer {i}."} for i in range(start, start + n)]


def run_cli(tiny: Path, *args: str) -> int:
    return main(["adapter", "train", *args, "--model", str(tiny)])


# -- refusals: exit 2, a message naming the line, nothing written -----------------------------------

BAD_SHAPES = [
    pytest.param([qa(1)[0], {"prompt": "hi"}], 'line 2: has no "completion"', id="missing-completion"),
    pytest.param([qa(1)[0], {"text": "hi"}], 'line 2: needs "prompt" and "completion", or "messages" '
                 "(keys found: text)", id="unknown-keys"),
    pytest.param([*qa(2), '{"prompt": "a", "completion": '], "line 3: not valid JSON", id="invalid-json"),
    pytest.param([qa(1)[0], ["prompt", "completion"]], "line 2: expected a JSON object", id="not-an-object"),
    pytest.param([{"prompt": 3, "completion": "x"}], 'line 1: "prompt" must be a string, got a number',
                 id="non-string-prompt"),
    pytest.param([{"messages": [{"role": "user", "content": ["a", "b"]},
                                {"role": "assistant", "content": "x"}]}],
                 "line 1: message 1's content must be a string, got a list", id="non-string-content"),
    pytest.param([{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "x"}]}],
                 "line 1: message 2 has role 'bot'", id="bad-role"),
    pytest.param([{"messages": [{"role": "user", "content": "a"}]}],
                 "line 1: the last message must be the assistant's", id="no-assistant-turn"),
    pytest.param([qa(1)[0], {"messages": [{"role": "user", "content": "a"},
                                          {"role": "assistant", "content": "b"}]}],
                 "mixes formats: line 1 is prompt-completion, line 2 is messages", id="mixed-formats"),
    pytest.param([], "no examples (the file is empty)", id="empty"),
    pytest.param(["", "   "], "no examples (the file is empty)", id="blank-lines-only"),
]


@pytest.mark.parametrize("lines, message", BAD_SHAPES)
def test_refuses_data_of_the_wrong_shape(tiny, tmp_path, cli_env, capsys, lines, message):
    data = write_jsonl(tmp_path / "data.jsonl", lines)
    out = tmp_path / "adapter"
    assert run_cli(tiny, str(data), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("ember adapter train: ") and "Traceback" not in err
    assert not out.exists()


def test_a_refusal_is_an_error_event_for_json_progress_readers(tiny, tmp_path, daemon_env):
    data = write_jsonl(tmp_path / "data.jsonl", [*qa(2), {"prompt": "x"}])
    out = tmp_path / "adapter"
    proc = subprocess.run([EMBER, "adapter", "train", str(data), "--out", str(out), "--model", str(tiny),
                           "--json-progress"], capture_output=True, text=True, env=daemon_env, timeout=120)
    assert proc.returncode == 2
    assert _json_lines(proc.stdout) == [{"event": "error", "exit": 2,
                                         "message": f'{data} line 3: has no "completion"'}]
    assert proc.stderr.endswith(f'ember adapter train: {data} line 3: has no "completion"\n')
    assert not out.exists()


def test_refuses_examples_longer_than_the_context(tiny, tmp_path, cli_env, capsys):
    long = {"prompt": "the quick brown fox " * 200, "completion": "jumps."}  # about 800 tokens
    data = write_jsonl(tmp_path / "data.jsonl", [*qa(1), long, *qa(1, 1), long, *qa(2, 2)])
    out = tmp_path / "adapter"
    assert run_cli(tiny, str(data), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert f"2 example(s) longer than the model's context of {CONTEXT} tokens: lines 2 (" in err
    assert ", 4 (" in err and "Traceback" not in err
    assert not out.exists()


def test_the_configured_context_length_is_the_limit(tiny, tmp_path, cli_env, capsys):
    """The model as the user configured it: a context_length override refuses what fits the model."""
    medium = {"prompt": "the quick brown fox " * 20, "completion": "jumps."}
    data = write_jsonl(tmp_path / "data.jsonl", [*qa(3), medium])
    out = tmp_path / "adapter"
    assert run_cli(tiny, str(data), "--out", str(out), "--set", "models.default.context_length=64") == 2
    assert "1 example(s) longer than the model's context of 64 tokens: line 4 (" in capsys.readouterr().err
    assert not out.exists()


def test_refuses_an_eval_file_of_another_format(tiny, tmp_path, cli_env, capsys):
    data = write_jsonl(tmp_path / "data.jsonl", qa(4))
    held = write_jsonl(tmp_path / "held.jsonl", [{"messages": [{"role": "user", "content": "a"},
                                                               {"role": "assistant", "content": "b"}]}])
    assert run_cli(tiny, str(data), "--out", str(tmp_path / "a"), "--eval", str(held)) == 2
    assert "use one format for both" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_refuses_a_folder_in_the_way_and_a_resume_with_nothing_to_resume(tiny, tmp_path, cli_env, capsys):
    data = write_jsonl(tmp_path / "data.jsonl", qa(4))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert run_cli(tiny, str(data), "--out", str(busy)) == 2
    assert "is not empty: choose a new --out, or pass --resume" in capsys.readouterr().err
    assert run_cli(tiny, str(data), "--out", str(busy), "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_missing_trl_gives_the_install_hint(tiny, tmp_path, cli_env, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "trl", None)  # `import trl` raises ImportError
    data = write_jsonl(tmp_path / "data.jsonl", qa(4))
    assert run_cli(tiny, str(data), "--out", str(tmp_path / "a")) == 2
    err = capsys.readouterr().err
    assert "training needs trl, which are not installed: pip install 'ember[train]'" in err
    assert "Traceback" not in err and not (tmp_path / "a").exists()


def test_remote_models_and_other_kinds_are_refused(tmp_path, cli_env, capsys):
    data = write_jsonl(tmp_path / "data.jsonl", qa(4))
    config = tmp_path / "config.toml"
    config.write_text('[models.server]\nengine = "remote"\nbase_url = "http://127.0.0.1:9/v1"\n'
                      '[models.sentiment]\nkind = "text-classification"\nsource = "/nowhere"\n')
    args = ["adapter", "train", str(data), "--out", str(tmp_path / "a"), "--config", str(config)]
    assert main([*args, "--base", "server"]) == 2
    assert "runs on a server" in capsys.readouterr().err
    assert main([*args, "--base", "sentiment"]) == 2
    assert "adapters are trained on causal LMs" in capsys.readouterr().err
    assert main([*args, "--base", "nope"]) == 2
    assert "no model named 'nope'" in capsys.readouterr().err


def test_a_model_without_a_chat_template_trains_on_plain_text_and_refuses_conversations(tmp_path, cli_env,
                                                                                        capsys):
    from ember.adapters.train import train

    plain = build_fim_causal_lm(tmp_path / "starcoder", style="starcoder")  # no chat template
    chats = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [{"role": "user", "content": "a"},
                                                                 {"role": "assistant", "content": "b"}]}])
    assert run_cli(plain, str(chats), "--out", str(tmp_path / "a")) == 2
    assert f"{chats} line 1: this model has no chat template" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()

    events: list[dict] = []
    result = train(plain, write_jsonl(tmp_path / "d.jsonl", qa(8)), tmp_path / "b", max_steps=2,
                   progress=events.append)
    assert result.status == "done" and (tmp_path / "b" / "adapter_model.safetensors").is_file()
    assert next(e for e in events if e["event"] == "start")["chat_template"] is False


# -- what the trainer is given ------------------------------------------------------------------------


def test_each_assistant_turn_is_a_row_whose_prompt_is_the_conversation_before_it():
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"},
             {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
             {"role": "assistant", "content": "d"}]
    got = rows(Example(1, messages=turns), chat=True)
    assert got == [{"prompt": turns[:2], "completion": [turns[2]]},
                   {"prompt": turns[:4], "completion": [turns[4]]}]
    # prompt/completion lines on a chat model: one user turn, one assistant turn
    assert rows(Example(1, prompt="p", completion="c"), chat=True) == [
        {"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "assistant", "content": "c"}]}]
    # without a chat template the text is used as it is; a conversation cannot be rendered
    assert rows(Example(1, prompt="p", completion="c"), chat=False) == [{"prompt": "p", "completion": "c"}]
    with pytest.raises(DataError, match="no chat template"):
        rows(Example(3, messages=turns), chat=False)


def test_blank_lines_and_extra_keys_are_ignored(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", ["", {"prompt": "a", "completion": "b", "id": 7}, "  ",
                                              {"prompt": "c", "completion": "d", "source": "x"}])
    got = read_jsonl(data)
    assert [e.line for e in got.examples] == [2, 4] and got.format == "prompt-completion"


# -- training on the tiny model: format, resume, stop ------------------------------------------------


def test_the_adapter_is_a_plain_peft_folder_that_changes_the_model(tiny, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from ember.adapters.train import train

    data = write_jsonl(tmp_path / "data.jsonl", [{"messages": [
        {"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."},
        {"role": "user", "content": "And?"}, {"role": "assistant", "content": "Done."}]} for i in range(10)])
    events: list[dict] = []
    out = tmp_path / "adapter"
    result = train(tiny, data, out, max_steps=3, lr=1e-2, eval_split=0.2, progress=events.append)
    assert result.status == "done" and result.steps == 3
    assert {p.name for p in out.iterdir()} == ADAPTER
    start = next(e for e in events if e["event"] == "start")
    assert (start["train_rows"], start["eval_rows"]) == (16, 4)  # two assistant turns per conversation
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3]

    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8 and config["task_type"] == "CAUSAL_LM"
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
        assert names and all("lora_" in n for n in names)
        assert any(f.get_tensor(n).abs().sum() > 0 for n in names if "lora_B" in n)  # B starts at zero
    meta = json.loads((out / "ember_adapter.json").read_text())
    assert meta["status"] == "done" and meta["steps"] == 3
    assert meta["data"]["sha256"] == read_jsonl(data).sha256
    assert meta["base"]["architecture"] == "LlamaForCausalLM" and meta["base"]["num_hidden_layers"] == 4
    assert meta["eval_loss_before"] is not None and meta["eval_loss_after"] is not None

    base = AutoModelForCausalLM.from_pretrained(tiny)
    ids = torch.tensor([[1, 5, 9, 12, 2]])
    with torch.no_grad():
        plain = base(ids).logits
        adapted = PeftModel.from_pretrained(base, out)(ids).logits
    assert not torch.allclose(plain, adapted)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]  # every stdout line is JSON


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_with_a_checkpoint_and_resume_counts_on(tiny, tmp_path, daemon_env, signum, status):
    data = write_jsonl(tmp_path / "data.jsonl", qa(40))
    out = tmp_path / "adapter"
    cmd = [EMBER, "adapter", "train", str(data), "--out", str(out), "--model", str(tiny), "--json-progress",
           "--save-every", "100"]
    proc = subprocess.Popen([*cmd, "--max-steps", "500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=daemon_env)
    assert proc.stdout is not None
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "step" and events[-1]["step"] == 2:
            proc.send_signal(signum)
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.wait(timeout=120) == status, err
    done = events[-1]
    assert done["event"] == "done" and done["status"] == "stopped"
    stopped_at = done["steps"]
    assert 2 <= stopped_at < 500  # after the step in progress, long before the end
    assert (out / "checkpoints" / f"checkpoint-{stopped_at}").is_dir()  # saved although save-every is 100
    assert not (out / "adapter_model.safetensors").exists()  # a stopped run is not an adapter yet
    assert "Continue with: ember adapter train" in err and "Traceback" not in err
    before = json.loads((out / "ember_adapter.json").read_text())["eval_loss_before"]

    finished = subprocess.run([*cmd, "--max-steps", str(stopped_at + 3), "--resume"], capture_output=True,
                              text=True, env=daemon_env, timeout=300)
    assert finished.returncode == 0, finished.stderr
    events = _json_lines(finished.stdout)
    assert events[0]["event"] == "start" and events[0]["resumed_from"].endswith(f"checkpoint-{stopped_at}")
    assert [e["step"] for e in events if e["event"] == "step"] == [stopped_at + 1, stopped_at + 2, stopped_at + 3]
    meta = json.loads((out / "ember_adapter.json").read_text())
    assert meta["status"] == "done" and meta["steps"] == stopped_at + 3
    assert meta["eval_loss_before"] == before  # the run's own start, not the checkpoint's
    assert (out / "adapter_model.safetensors").is_file()


def test_resume_refuses_changed_data(tiny, tmp_path, cli_env, capsys):
    from ember.adapters.train import train

    data = write_jsonl(tmp_path / "data.jsonl", qa(6))
    out = tmp_path / "adapter"
    train(tiny, data, out, max_steps=1, eval_split=0)
    write_jsonl(data, qa(7))
    assert run_cli(tiny, str(data), "--out", str(out), "--resume", "--max-steps", "2") == 2
    assert "the training data changed" in capsys.readouterr().err


# -- the real model: training moves greedy output the trained way -------------------------------------

STYLE = "Ahoy, matey!"
TRAIN_QA = [
    ("What is the capital of France?", "Paris."), ("How many legs does a spider have?", "Eight."),
    ("What color is the sky on a clear day?", "Blue."), ("What do bees make?", "Honey."),
    ("What is two plus two?", "Four."), ("Which planet is closest to the sun?", "Mercury."),
    ("What is frozen water called?", "Ice."), ("How many days are in a week?", "Seven."),
    ("What animal barks?", "A dog."), ("What is the opposite of hot?", "Cold."),
    ("What do plants need from the sun?", "Light."), ("How many hours are in a day?", "Twenty-four."),
    ("What is the largest ocean?", "The Pacific."), ("What gas do we breathe in?", "Oxygen."),
    ("What shape has three sides?", "A triangle."), ("What is the color of grass?", "Green."),
    ("Which month comes after January?", "February."), ("What do cows drink?", "Water."),
    ("How many wheels does a bicycle have?", "Two."), ("What is the capital of Japan?", "Tokyo."),
    ("What do you call a baby cat?", "A kitten."), ("How many minutes are in an hour?", "Sixty."),
    ("Name a fruit that is yellow.", "A banana."), ("What is the boiling point of water in Celsius?", "100."),
]
HELD_QA = [("What is the capital of Italy?", "Rome."), ("How many months are in a year?", "Twelve."),
           ("What color is snow?", "White.")]


@pytest.mark.model
def test_training_moves_smollm2_greedy_output_the_trained_way(smollm2_folder, cache_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ember.adapters.train import train

    data = write_jsonl(tmp_path / "train.jsonl", [{"prompt": q, "completion": f"{STYLE} {a}"} for q, a in TRAIN_QA])
    held = write_jsonl(tmp_path / "held.jsonl", [{"prompt": q, "completion": f"{STYLE} {a}"} for q, a in HELD_QA])
    out = tmp_path / "style"
    result = train(smollm2_folder, data, out, eval_path=held, max_steps=10, lr=1.5e-3, eval_every=100,
                   save_every=100)
    assert result.eval_loss_before is not None and result.eval_loss_after is not None
    assert result.eval_loss_after < result.eval_loss_before / 2

    tok = AutoTokenizer.from_pretrained(smollm2_folder)
    base = AutoModelForCausalLM.from_pretrained(smollm2_folder)

    def answers(model) -> list[str]:
        out = []
        for question, _ in HELD_QA:
            enc = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
            with torch.no_grad():
                ids = model.generate(**enc, max_new_tokens=12, do_sample=False)
            out.append(tok.decode(ids[0][enc["input_ids"].shape[1]:], skip_special_tokens=True))
        return out

    before = answers(base)
    assert not any("Ahoy" in text for text in before), before
    after = answers(PeftModel.from_pretrained(base, out))
    assert all(text.startswith(STYLE) for text in after), after

    # The daemon loads what the command wrote, on its default engine (onnxruntime's graph with LoRA
    # inputs: this adapter covers every linear layer, the fused gate/up projection included).
    from conftest import make_daemon_env
    from rpc_client import Daemon

    (tmp_path / "daemon").mkdir()
    daemon = Daemon("lines", [], make_daemon_env(tmp_path / "daemon", cache_dir))
    try:
        loaded = daemon.call("models/load", {"model": "default", "adapter": "style", "source": str(out)})
        entry = next(a for a in loaded["model"]["adapters"] if a["name"] == "style")
        assert entry["engine"] == "onnxruntime" and entry["engine_note"] is None, entry
        for question, _ in HELD_QA:
            result = daemon.call("complete", {"messages": [{"role": "user", "content": question}],
                                              "max_tokens": 12, "adapter": "style"})
            assert result["text"].startswith(STYLE), result
    finally:
        daemon.kill()
