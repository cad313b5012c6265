"""Converted models in Ember's cache: which engine a model gets and why, damaged or partial entries
converted again, and conversions that a crash or a full disk interrupted, for every kind of
conversion (GGUF to safetensors, and to onnxruntime)."""

from __future__ import annotations

import os
import resource
import shutil
from pathlib import Path

import psutil
import pytest

import tiny_models
from ember.config import ModelSettings
from ember.models import loader, onnx_convert
from ember.models.cache import WORK_PREFIX, remove_stale_work
from waiting import wait_for


def work_folders(root: Path) -> list[Path]:
    return sorted(root.rglob(WORK_PREFIX + "*"))


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory) -> Path:
    return tiny_models.build_chat_causal_lm(tmp_path_factory.mktemp("tiny") / "chat")


# -- the cache entry -----------------------------------------------------------------------------


def test_damaged_or_partial_entries_are_converted_again(tiny_chat, tmp_path):
    first = onnx_convert.ensure(tiny_chat, "float32", tmp_path)
    assert onnx_convert.ensure(tiny_chat, "float32", tmp_path) == first  # a cache hit
    marker = first.folder / onnx_convert.MARKER
    hit_time = marker.stat().st_mtime_ns

    data = first.folder / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:100])  # truncated, as by a crash of some other tool
    assert onnx_convert.read_entry(first.folder) is None
    again = onnx_convert.ensure(tiny_chat, "float32", tmp_path)
    assert again.folder == first.folder and marker.stat().st_mtime_ns != hit_time

    marker.unlink()  # a folder without its marker never counts as converted
    assert onnx_convert.read_entry(first.folder) is None
    onnx_convert.ensure(tiny_chat, "float32", tmp_path)
    assert onnx_convert.read_entry(first.folder) is not None
    assert work_folders(tmp_path) == []


def test_modules_in_the_current_folder_do_not_shadow_the_exporters(tiny_chat, tmp_path, monkeypatch):
    # The exporter imports top-level modules named quantization and builder_config; a project of
    # the user's with a file of that name, where Ember was started, broke every conversion.
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "quantization.py").write_text("raise ImportError('the user project, not the exporter')\n")
    monkeypatch.chdir(workdir)
    entry = onnx_convert.ensure(tiny_chat, "float32", tmp_path / "cache")
    assert onnx_convert.read_entry(entry.folder) is not None


def test_an_entry_that_will_not_load_is_converted_once_more(tiny_chat, tmp_path):
    settings = ModelSettings(source=str(tiny_chat), engine="onnxruntime", quantization="none")
    entry = onnx_convert.ensure(tiny_chat, "float32", tmp_path)
    model = entry.folder / "model.onnx"
    model.write_bytes(b"\0" * model.stat().st_size)  # right size, garbage inside
    lm = loader.load("tiny", settings, tiny_chat, loader.LoadContext(tmp_path, 1))
    assert lm.engine.name == "onnxruntime" and lm.engine_note is None
    assert onnx_convert.read_entry(entry.folder) is not None


def test_stale_work_folders_are_removed_but_live_ones_kept(tmp_path):
    dead = psutil.Popen(["true"])
    dead.wait()
    abandoned = tmp_path / "onnx" / f"{WORK_PREFIX}{dead.pid}-abc"
    live = tmp_path / "gguf" / f"{WORK_PREFIX}{os.getppid()}-def"  # a live process owns it
    for folder in (abandoned, live):
        folder.mkdir(parents=True)
        (folder / "part").write_text("x")
    assert remove_stale_work(tmp_path) == [abandoned]
    assert live.exists() and not abandoned.exists()


# -- which engine, and why --------------------------------------------------------------------------


@pytest.mark.model
def test_the_default_model_runs_on_onnxruntime_with_the_ggufs_blocks(ember):
    d = ember("lines")
    model = d.call("models/load", {"model": "default"})["model"]
    assert model["engine"] == "onnxruntime" and model["engine_note"] is None
    assert model["quantization"].startswith("int4 (the GGUF's own blocks")
    status = d.call("daemon/status")["models"][0]
    assert status["prefix_cache"]["budget_bytes"] == 384 << 20


def test_transformers_can_be_chosen(ember, tiny_chat):
    d = ember("lines", ["--model", str(tiny_chat), "--set", "models.default.engine=transformers"])
    model = d.call("models/load", {"model": "default"})["model"]
    assert (model["engine"], model["engine_note"], model["quantization"]) == ("transformers", None, "none")
    assert d.call("complete", {"prompt": "hello", "max_tokens": 2})["usage"]["completion_tokens"] > 0


def test_an_engine_that_cannot_take_the_model_falls_back_and_says_why(ember, tiny_chat):
    d = ember("lines", ["--model", str(tiny_chat), "--set", "models.default.engine=onnxruntime",
                        "--quantization", "int8-dynamic"])
    model = d.call("models/load", {"model": "default"})["model"]
    assert model["engine"] == "transformers"
    assert "int8-dynamic is a transformers method" in model["engine_note"]


# -- conversions interrupted ----------------------------------------------------------------------


def converter_of(daemon) -> psutil.Process | None:
    try:
        children = psutil.Process(daemon.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    return next((c for c in children if "ember.models.onnx_convert" in " ".join(c.cmdline())), None)


def test_a_conversion_killed_with_the_daemon_is_cleaned_up_and_done_again(ember, tiny_chat, tmp_path):
    env = {"EMBER_DAEMON__CACHE_DIR": str(tmp_path / "cache")}
    args = ["--model", str(tiny_chat), "--quantization", "none"]
    d = ember("lines", args, env)
    d.start_request("complete", {"prompt": "hello", "max_tokens": 2})
    child = wait_for(lambda: converter_of(d), "the converter", timeout=120)
    abandoned = wait_for(lambda: work_folders(tmp_path / "cache"), "the work folder", timeout=120)
    d.proc.kill()
    d.proc.wait()
    child.wait(timeout=30)  # the converter dies with its daemon
    assert all(p.exists() for p in abandoned)

    again = ember("lines", args, env)
    result = again.call("complete", {"prompt": "hello", "max_tokens": 2})
    assert result["usage"]["completion_tokens"] > 0
    assert again.call("daemon/status")["models"][0]["engine"] == "onnxruntime"
    assert work_folders(tmp_path / "cache") == []


def limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.model
def test_a_full_disk_during_gguf_conversion_is_a_clear_error_with_no_partial_cache(ember, tmp_path):
    cache = tmp_path / "cache"
    d = ember("lines", [], {"EMBER_DAEMON__CACHE_DIR": str(cache)}, preexec_fn=limit_file_size(64 << 20))
    reply = d.request("complete", {"prompt": "hello", "max_tokens": 2})
    assert reply["error"]["code"] == -32001
    assert "could not convert GGUF file" in reply["error"]["message"]
    assert "File too large" in reply["error"]["message"]
    assert "Traceback" not in reply["error"]["message"]
    assert work_folders(cache) == []
    assert not any(p.is_dir() for p in (cache / "gguf").glob("SmolLM2*"))
    assert d.call("daemon/status")["models"] == []  # and the daemon carries on


@pytest.mark.model
def test_a_full_disk_during_onnx_conversion_falls_back_to_transformers(ember, tmp_path, smollm2_folder):
    cache = tmp_path / "cache"
    (cache / "gguf").mkdir(parents=True)
    # The safetensors conversion is already there (the test cache's); the ONNX one must be written.
    (cache / "gguf" / smollm2_folder.name).symlink_to(smollm2_folder)
    d = ember("lines", [], {"EMBER_DAEMON__CACHE_DIR": str(cache)}, preexec_fn=limit_file_size(48 << 20))
    result = d.call("complete", {"prompt": "The capital of France is", "max_tokens": 3})
    assert result["usage"]["completion_tokens"] > 0
    model = d.call("daemon/status")["models"][0]
    assert model["engine"] == "transformers"
    assert "could not convert" in model["engine_note"] and "File too large" in model["engine_note"]
    assert work_folders(cache) == []
    assert not any(p.is_dir() for p in (cache / "onnx").glob("*"))
    shutil.rmtree(cache / "gguf")
