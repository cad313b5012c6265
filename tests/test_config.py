"""Settings: layering, provenance, and errors that name the key and where it was set."""

from __future__ import annotations

import json
import subprocess

import pytest

from ember.config import ConfigError, describe_effective, load_config, parse_scalar
from rpc_client import EMBER


def test_defaults_without_a_file(tmp_path):
    loaded = load_config(environ={"XDG_CONFIG_HOME": str(tmp_path)})
    s = loaded.settings
    assert s.models["default"].source == "smollm2"
    assert s.tasks.summarize == "default" and s.tasks.entities is None
    assert s.daemon.threads is None  # each engine's own default
    assert loaded.path is None


def test_thread_defaults_are_per_engine_and_a_setting_wins(monkeypatch):
    from ember.config import onnxruntime_threads, torch_threads

    for cores, onnx, torch in [(1, 1, 1), (2, 2, 1), (4, 2, 2), (8, 4, 4), (64, 8, 8)]:
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        assert (onnxruntime_threads(None), torch_threads(None)) == (onnx, torch), cores
        assert (onnxruntime_threads(3), torch_threads(3)) == (3, 3)


def test_layers_file_then_env_then_cli(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[daemon]\nthreads = 3\nmax_queue = 5\n[models.default]\nquantization = "none"\n')
    loaded = load_config(cfg, cli={"daemon.max_queue": 9},
                         environ={"EMBER_DAEMON__THREADS": "4", "EMBER_MODELS__DEFAULT__DEVICE": "cpu"})
    s = loaded.settings
    assert (s.daemon.threads, s.daemon.max_queue, s.models["default"].quantization) == (4, 9, "none")
    assert loaded.sources["daemon.threads"] == "env EMBER_DAEMON__THREADS"
    assert loaded.sources["daemon.max_queue"] == "cli daemon.max_queue"
    assert loaded.sources["models.default.quantization"] == f"file {cfg}"
    listing = describe_effective(loaded)
    assert "threads = 4  # env EMBER_DAEMON__THREADS" in listing
    assert "keep_alive_s = 1800.0  # default" in listing


@pytest.mark.parametrize("text, needle", [
    ("[daemon]\nthreds = 2\n", "daemon.threds: unknown setting (from file"),
    ("[daemon]\nthreads = \"two\"\n", "daemon.threads: Input should be a valid integer"),
    ("[models.default]\nquantization = \"fp4\"\n", "models.default.quantization"),
    ("[tasks]\nsummarize = \"ghost\"\n", "tasks.summarize: no model named 'ghost'"),
    ("[daemon\n", "not valid TOML"),
])
def test_invalid_settings_name_the_key(tmp_path, text, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(cfg, environ={})
    assert needle in str(err.value)


def test_invalid_env_value_names_the_variable(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(environ={"XDG_CONFIG_HOME": str(tmp_path), "EMBER_DAEMON__MAX_QUEUE": "0"})
    assert "daemon.max_queue" in str(err.value) and "env EMBER_DAEMON__MAX_QUEUE" in str(err.value)


def test_scalars_from_strings():
    assert parse_scalar("3") == 3 and parse_scalar("true") is True
    assert parse_scalar('["a","b"]') == ["a", "b"] and parse_scalar("cpu") == "cpu"


def test_bad_setting_stops_serve_with_a_message(daemon_env):
    done = subprocess.run([EMBER, "serve", "--set", "daemon.bogus=1"], input=b"", capture_output=True,
                          env=daemon_env, timeout=60)
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"daemon.bogus: unknown setting (from cli daemon.bogus)" in done.stderr


def test_ember_config_prints_values_and_origins(daemon_env):
    done = subprocess.run([EMBER, "config", "--threads", "2"], capture_output=True, env=daemon_env, timeout=60)
    assert done.returncode == 0
    out = done.stdout.decode()
    assert "threads = 2  # cli daemon.threads" in out
    assert "cache_dir = " in out and "# env EMBER_DAEMON__CACHE_DIR" in out


# -- remote models -----------------------------------------------------------------------------

REMOTE = '[models.default]\n[models.big]\nengine = "remote"\nbase_url = "http://gpu-box:8080/v1"\n'


def _load(tmp_path, text, environ=None):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    return load_config(cfg, environ=environ or {})


@pytest.mark.parametrize("line", [
    'token = "abc"',
    'api_key = "abc"',
    'headers = { Authorization = "Bearer abc" }',
    'served_model = "hf_abcdefghijklmnopqrstuvwxyz0123"',
])
def test_a_token_in_the_config_is_refused(tmp_path, line):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, REMOTE + line + "\n")
    assert "never reads a token from its configuration" in str(err.value)
    assert "token_env" in str(err.value) and "abc" not in str(err.value)


@pytest.mark.parametrize("url", ["http://user:pass@gpu-box/v1", "http://gpu-box/v1?api_key=x"])
def test_credentials_in_the_base_url_are_refused(tmp_path, url):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f'[models.default]\n[models.big]\nengine = "remote"\nbase_url = "{url}"\n')
    assert "models.big.base_url: credentials in the URL are refused" in str(err.value)


@pytest.mark.parametrize("text, needle", [
    (REMOTE + 'quantization = "int4"\n', "models.big.quantization: does not apply to a remote model"),
    (REMOTE + 'kind = "seq2seq"\n', "models.big.kind: a remote model is a causal-lm"),
    ('[models.default]\n[models.big]\nengine = "remote"\n', 'models.big.base_url: required for engine = "remote"'),
    ('[models.default]\nbase_url = "http://x"\n', 'models.default.base_url: applies only to engine = "remote"'),
    (REMOTE.replace("http://gpu-box:8080/v1", "ftp://gpu-box"), "models.big.base_url: expected http(s)://"),
    (REMOTE + 'token_env = "MY TOKEN"\n', "models.big.token_env"),
])
def test_remote_settings_are_checked(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert needle in str(err.value)


def test_ember_config_shows_where_the_token_comes_from_masked(tmp_path):
    secret = "hf_abcdefghijklmnopqrstuvwxyz0123"
    loaded = _load(tmp_path, REMOTE + 'token_env = "TEAM_TOKEN"\n', environ={"TEAM_TOKEN": secret})
    listing = describe_effective(loaded)
    assert "# auth: token from $TEAM_TOKEN: hf_****0123" in listing
    assert secret not in listing
    assert f'token_env = "TEAM_TOKEN"  # file {tmp_path / "c.toml"}' in listing
    assert 'base_url = "http://gpu-box:8080/v1"' in listing
    assert "quantization" not in listing.split("[models.big]")[1].split("[models.default]")[0]


def test_ember_config_says_when_no_token_is_set(tmp_path):
    listing = describe_effective(_load(tmp_path, REMOTE))
    assert "# auth: no token ($HF_TOKEN is not set)" in listing
    assert "base_url" not in listing.split("[models.default]")[1]  # remote-only keys: remote models


# -- adding a model keeps the built-in default (issue 22) -------------------------------------

ONE_EXTRA = ('[models.server]\nengine = "remote"\nbase_url = "http://gpu-box:8080/v1"\n'
             '[tasks]\ntranslate = "server"\n')


def test_adding_a_model_keeps_the_built_in_default(tmp_path):
    s = _load(tmp_path, ONE_EXTRA).settings
    assert list(s.models) == ["default", "server"]
    assert s.models["default"] == load_config(environ={"XDG_CONFIG_HOME": str(tmp_path)}).settings.models["default"]
    assert s.tasks.translate == "server" and s.tasks.complete == "default"
    # The same through the environment alone.
    env = {"XDG_CONFIG_HOME": str(tmp_path), "EMBER_MODELS__SERVER__ENGINE": "remote",
           "EMBER_MODELS__SERVER__BASE_URL": "http://gpu-box/v1", "EMBER_TASKS__SUMMARIZE": "server"}
    assert sorted(load_config(environ=env).settings.models) == ["default", "server"]


def test_a_redefined_default_is_the_users(tmp_path):
    s = _load(tmp_path, '[models.default]\nsource = "org/other"\nquantization = "none"\n'
                        '[models.extra]\nsource = "org/extra"\n').settings
    assert (s.models["default"].source, s.models["default"].quantization) == ("org/other", "none")
    assert sorted(s.models) == ["default", "extra"]


def test_serve_starts_with_one_extra_model_and_uses_the_default(tmp_path, daemon_env):
    cfg = tmp_path / "one-extra.toml"
    cfg.write_text(ONE_EXTRA)
    request = b'{"jsonrpc":"2.0","id":1,"method":"tokenize","params":{"text":"hello world"}}\n'
    done = subprocess.run([EMBER, "serve", "--config", str(cfg)], input=request, capture_output=True,
                          env=daemon_env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    reply = json.loads(done.stdout)
    assert reply["result"]["count"] == 2 and reply["result"]["model"] == "default"


@pytest.mark.parametrize(("source", "label"), [
    ("smollm2", "SmolLM2-135M-Instruct"),
    ("/models/SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct"),
    ("/models/llama-2-7b.Q4_K_M.gguf", "llama-2-7b"),
    ("Qwen/Qwen2.5-Coder-1.5B", "Qwen2.5-Coder-1.5B"),
    ("./models/phi-2/", "phi-2"),
])
def test_a_model_is_labelled_with_its_own_name_not_its_config_name(source, label):
    from ember.config import ModelSettings
    from ember.models.sources import label as model_label

    assert model_label(ModelSettings(source=source)) == label


def test_adapters_are_named_per_model_and_routed_per_task(tmp_path):
    s = _load(tmp_path, '[models.default.adapters]\nstyle = "./style"\n'
                        'docs = { source = "someone/docs-lora", revision = "v1" }\n'
                        '[tasks.adapters]\ncomplete = "style"\n').settings
    adapters = s.models["default"].adapters
    assert adapters["style"].source == "./style" and adapters["docs"].revision == "v1"
    assert s.tasks.adapters == {"complete": "style"}
    assert "adapters" not in s.tasks.models()  # the routing table is not a task


@pytest.mark.parametrize("text, needle", [
    ('[models.default.adapters]\na = "/x"\n[tasks.adapters]\nclassify = "a"\n', "apply to the generative tasks"),
    ('[models.default.adapters]\na = "/x"\n[tasks.adapters]\nnot_a_task = "a"\n', "tasks.adapters.not_a_task"),
    ('[models.default.adapters]\na = "/x"\n[tasks.adapters]\ncomplete = "b"\n', "no adapter named 'b'"),
    ('[models.default.adapters]\n"../up" = "/x"\n', "should match pattern"),
    ('[models.ner]\nkind = "token-classification"\nsource = "/x"\n[models.ner.adapters]\na = "/x"\n',
     "apply to causal LMs"),
    (REMOTE + '[models.big.adapters]\na = "/x"\n', "does not apply to a remote model"),
])
def test_bad_adapter_settings_name_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert needle in str(err.value)
