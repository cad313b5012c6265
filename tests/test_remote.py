"""Remote engines against a real server: `transformers serve` with SmolLM2, through a fault proxy.

Every test runs a real `ember serve` whose model `big` has engine = "remote". Its base URL is the
proxy in front of the server (tests/fault_proxy.py): in pass mode it forwards and records what
Ember sends; otherwise it injects what a real server cannot be told to do (401, 500, 503, a stall).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import free_port
from fault_proxy import FaultProxy

pytestmark = [pytest.mark.model, pytest.mark.remote]

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
TOKEN = "s3cret-token-value-0123456789"
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]
NEWS = ("The city council voted on Tuesday to extend the bike lane network by 40 km over the next "
        "three years. The work is funded by a new parking levy and starts in the spring.")


@pytest.fixture(scope="module")
def server(transformers_serve):
    return transformers_serve[0]


@pytest.fixture(scope="module")
def shared_proxy(server):
    proxy = FaultProxy(server)
    yield proxy
    proxy.close()


@pytest.fixture
def proxy(shared_proxy):
    shared_proxy.reset()
    yield shared_proxy
    shared_proxy.reset()


def config(tmp_path: Path, base_url: str, local_folder: Path | None = None, **remote) -> Path:
    """A config with the remote model `big` for every generative task (and tokenize)."""
    lines = ["[models.default]"]
    if local_folder is not None:
        lines += [f'source = "{local_folder}"', 'engine = "transformers"']
    lines += ["[models.big]", 'engine = "remote"', f'base_url = "{base_url}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in remote.items()]
    lines += ["[tasks]"] + [f'{t} = "big"' for t in ("complete", "summarize", "translate", "classify",
                                                     "tokenize")]
    path = tmp_path / "remote.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def daemon(ember, tmp_path):
    def start(base_url: str, env: dict[str, str] | None = None, **remote):
        return ember(args=["--config", str(config(tmp_path, base_url, **remote))], env=env)

    return start


def error_of(reply: dict) -> dict:
    assert "error" in reply, reply
    assert "Traceback" not in json.dumps(reply)
    return reply["error"]


def first_delta(d, msg_id) -> None:
    """Read messages until the first ember/stream delta of `msg_id` has arrived."""
    while not d.stream_deltas(msg_id):
        msg = d.next_message()
        assert msg is not None, "".join(d.stderr_lines[-20:])
        if isinstance(msg, dict) and msg.get("id") == msg_id and "method" not in msg:
            pytest.fail(f"request ended before streaming: {msg}")


# -- every task --------------------------------------------------------------------------------


def test_chat_goes_to_the_chat_endpoint_with_the_servers_usage(daemon, proxy, server, smollm2_folder):
    from huggingface_hub import InferenceClient

    d = daemon(proxy.url + "/v1")
    result = d.call("complete", {"messages": CAPITAL, "max_tokens": 12})
    assert "Paris" in result["text"]
    assert result["model"] == "big" and result["finish_reason"] == "stop"
    sent = proxy.requests_to(CHAT)[-1].body
    assert sent["messages"] == CAPITAL and sent["max_tokens"] == 12 and sent["temperature"] == 0
    direct = InferenceClient(base_url=server + "/v1").chat_completion(
        messages=CAPITAL, model=str(smollm2_folder), max_tokens=12, temperature=0)
    assert result["text"] == direct.choices[0].message.content
    assert result["usage"] == {"prompt_tokens": direct.usage.prompt_tokens,
                               "completion_tokens": direct.usage.completion_tokens}


def test_prompt_completion_uses_the_raw_prompt_endpoint(daemon, proxy):
    d = daemon(proxy.url + "/v1")
    result = d.call("complete", {"prompt": "def add(a, b):\n    return", "max_tokens": 6})
    assert result["text"] and result["usage"]["completion_tokens"] <= 6
    sent = proxy.requests_to(COMPLETIONS)[-1].body
    assert sent["prompt"] == "def add(a, b):\n    return" and sent["stream"] is True


def test_stop_sequences_cut_the_text_and_close_the_stream(daemon, proxy):
    d = daemon(proxy.url + "/v1")
    result = d.call("complete", {"prompt": "1, 2, 3, 4,", "max_tokens": 24, "stop": [" 7"]})
    assert result["finish_reason"] == "stop"
    assert " 7" not in result["text"] and result["text"].startswith(" 5")


def test_fim_sends_the_models_fim_layout_as_a_raw_prompt(daemon, proxy, tmp_path):
    from tiny_models import FIM_FORMATS, build_fim_causal_lm

    tokenizer = build_fim_causal_lm(tmp_path / "fim", "starcoder")  # its tokenizer, SmolLM2 serving
    d = daemon(proxy.url + "/v1", tokenizer=str(tokenizer))
    result = d.call("complete", {"prefix": "def add(a, b):\n    ", "suffix": "\n\nprint(add(1, 2))\n",
                                 "max_tokens": 4})
    assert result["fim"] == {"format": "starcoder", "truncated": False}
    sent = proxy.requests_to(COMPLETIONS)[-1].body
    assert sent["prompt"] == FIM_FORMATS["starcoder"].format(prefix="def add(a, b):\n    ",
                                                            suffix="\n\nprint(add(1, 2))\n")
    assert "<|endoftext|>" in sent["stop"]


def test_fim_without_fim_tokens_continues_the_prefix(daemon, proxy):
    d = daemon(proxy.url + "/v1")
    result = d.call("complete", {"prefix": "def add(a, b):\n    ", "suffix": "\n\nprint(add(1, 2))\n",
                                 "max_tokens": 6})
    assert result["fim"]["format"] == "prefix-continuation"
    assert proxy.requests_to(COMPLETIONS)[-1].body["prompt"] == "def add(a, b):\n    "


def test_the_cut_shapes_a_remote_models_streamed_completion(daemon, proxy):
    d = daemon(proxy.url + "/v1")
    inline = {"prefix": "def add(a, b):\n    ", "suffix": "\n\nprint(add(1, 2))\n", "language": "python",
              "max_tokens": 24}
    reply = d.request("complete", {**inline, "stream": True})
    result = reply["result"]
    assert result["cut"]["mode"] == "block" and result["cut"]["parser"] == "tree-sitter"
    assert "".join(d.stream_deltas(reply["id"])) == result["text"]
    raw = d.call("complete", {**inline, "cut": False})
    assert "cut" not in raw
    assert raw["text"].lstrip().startswith(result["text"].split("\n")[0].lstrip())


def test_stream_deltas_add_up_to_the_text(daemon, proxy):
    d = daemon(proxy.url + "/v1")
    reply = d.request("complete", {"messages": CAPITAL, "max_tokens": 12, "stream": True})
    deltas = d.stream_deltas(reply["id"])
    assert len(deltas) > 2 and "".join(deltas) == reply["result"]["text"]


def test_summarize_on_a_remote_model(daemon, proxy):
    d = daemon(proxy.url + "/v1")
    reply = d.request("summarize", {"text": NEWS, "form": "sentence", "max_tokens": 32, "stream": True})
    result = reply["result"]
    assert result["stages"] == 1 and result["text"]
    assert "".join(d.stream_deltas(reply["id"])) == result["text"]


def test_long_text_is_summarized_in_stages_as_locally(daemon, proxy):
    d = daemon(proxy.url + "/v1", context_length=220)
    text = "\n\n".join([NEWS] * 5)
    result = d.call("summarize", {"text": text, "form": "sentence", "max_tokens": 16})
    assert result["stages"] >= 2 and result["text"]
    assert len(proxy.requests_to(CHAT)) >= 3  # the parts, then the summary of their summaries


def test_translate_keeps_code_and_markdown(daemon, proxy):
    d = daemon(proxy.url + "/v1")
    text = "# Hello world\n\nCall `fetch()` now.\n\n```\nx = 1\n```\n"
    result = d.call("translate", {"text": text, "target": "French", "max_tokens": 16})
    assert result["text"].startswith("# ") and "`fetch()`" in result["text"]
    assert "```\nx = 1\n```\n" in result["text"]


def test_classify_falls_back_to_the_generated_answer_and_says_so(daemon, proxy):
    d = daemon(proxy.url + "/v1")
    result = d.call("classify", {"text": "I loved this film, the acting was wonderful.",
                                 "labels": ["positive", "negative"]})
    # transformers serve returns no log-probabilities: both logprob methods were tried first
    assert result["method"] == "generated-answer" and isinstance(result["answer"], str)
    assert abs(sum(s["score"] for s in result["scores"]) - 1) < 1e-9
    assert {s["label"] for s in result["scores"]} == {"positive", "negative"}
    assert proxy.requests_to(COMPLETIONS)[0].body["echo"] is True  # prompt log-probabilities asked
    assert any(r.body.get("top_logprobs") for r in proxy.requests_to(CHAT))


def test_tokenize_uses_the_models_own_tokenizer(daemon, proxy, smollm2_folder):
    from tokenizers import Tokenizer

    d = daemon(proxy.url + "/v1", tokenizer=str(smollm2_folder))
    result = d.call("tokenize", {"text": "Hello world, remote."})
    expected = Tokenizer.from_file(str(smollm2_folder / "tokenizer.json")).encode(
        "Hello world, remote.", add_special_tokens=False)
    assert result["ids"] == expected.ids and result["count"] == len(expected.ids)
    assert proxy.seen == []  # no request to the server at all


def test_tokenize_without_a_tokenizer_or_a_server_route_is_unavailable(daemon, proxy):
    d = daemon(proxy.url + "/v1", tokenizer="server")
    err = error_of(d.request("tokenize", {"text": "Hello"}))
    assert err["code"] == -32005 and "tokenize route" in err["message"]


def test_without_a_local_tokenizer_every_generative_task_still_works(daemon, proxy):
    d = daemon(proxy.url + "/v1", tokenizer="server")
    chat = d.call("complete", {"messages": CAPITAL, "max_tokens": 8})
    assert chat["text"] and chat["usage"]["prompt_tokens"] > 0
    summary = d.call("summarize", {"text": NEWS, "form": "sentence", "max_tokens": 16})
    assert summary["text"]
    labels = d.call("classify", {"text": "Terrible.", "labels": ["positive", "negative"]})
    assert labels["method"] == "generated-answer"


def test_top_k_is_refused_where_the_api_has_none(daemon, proxy):
    d = daemon(proxy.url + "/v1")
    err = error_of(d.request("complete", {"prompt": "x", "top_k": 5}))
    assert err["code"] == -32602 and "top_k" in err["message"]


# -- cancellation ------------------------------------------------------------------------------


def test_cancel_mid_stream_ends_the_servers_generation(daemon, proxy):
    d = daemon(proxy.url + "/v1")
    # Counting on for 4000 tokens would keep this server busy for many minutes.
    msg_id = d.start_request("complete", {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 4000,
                                          "stream": True})
    first_delta(d, msg_id)
    d.notify("$/cancelRequest", {"id": msg_id})
    assert error_of(d.reply(msg_id))["code"] == -32800
    assert proxy.closed_early.wait(120)  # Ember closed the HTTP stream; the proxy closed upstream
    # The server generates one request at a time: this answer comes only because it stopped the
    # cancelled generation instead of finishing its 4000 tokens.
    assert d.call("complete", {"prompt": "Hi", "max_tokens": 2})["text"] is not None


@pytest.mark.parametrize("request_params", [
    {"messages": CAPITAL, "max_tokens": 8},  # through InferenceClient
    {"prompt": "Hello", "max_tokens": 8},  # the raw-prompt endpoint
], ids=["chat", "prompt"])
def test_cancel_before_the_first_token_closes_the_stream_at_once(daemon, proxy, request_params):
    proxy.set(stall_after_headers=True, paths=(CHAT, COMPLETIONS))
    d = daemon(proxy.url + "/v1", read_timeout_s=600.0)
    msg_id = d.start_request("complete", request_params)
    assert proxy.stalled.wait(120)  # the stream is open; the server sends nothing
    d.notify("$/cancelRequest", {"id": msg_id})
    assert error_of(d.reply(msg_id))["code"] == -32800
    # Not read_timeout_s (600 s) later: Ember shut the socket when the request was cancelled.
    assert proxy.closed_early.wait(60)
    status = d.call("daemon/status")
    assert next(m for m in status["models"] if m["name"] == "big")["remote"]["health"] == "ok"


def test_a_superseded_completion_closes_its_stream(daemon, proxy):
    d = daemon(proxy.url + "/v1")
    older = d.start_request("complete", {"prompt": "1, 2, 3,", "max_tokens": 4000, "stream": True,
                                         "supersede": "file:///a.py"})
    first_delta(d, older)
    newer = d.request("complete", {"prompt": "Hi", "max_tokens": 2, "supersede": "file:///a.py"})
    assert "result" in newer
    assert error_of(d.reply(older))["code"] == -32800
    assert proxy.closed_early.wait(120)


# -- failures ----------------------------------------------------------------------------------


def test_a_server_that_is_down_is_a_clear_error(daemon):
    url = f"http://127.0.0.1:{free_port()}/v1"
    d = daemon(url)
    err = error_of(d.request("complete", {"prompt": "x", "max_tokens": 2}))
    assert err["code"] == -32001 and err["data"]["reason"] == "unreachable"
    assert url in err["message"]
    big = next(m for m in d.call("models/list")["models"] if m["name"] == "big")
    assert big["remote"]["health"] == "down" and big["remote"]["last_error"] == err["message"]


def test_a_slow_server_times_out(daemon, proxy):
    proxy.set(stall=True, paths=(CHAT,))
    d = daemon(proxy.url + "/v1", read_timeout_s=1.0)
    err = error_of(d.request("complete", {"messages": CAPITAL, "max_tokens": 2}))
    assert err["code"] == -32001 and err["data"]["reason"] == "timeout"
    assert "read_timeout_s" in err["message"]


def test_the_token_is_sent_as_a_bearer_header(daemon, proxy):
    proxy.set(require_token=TOKEN)
    d = daemon(proxy.url + "/v1", env={"MY_TOKEN": TOKEN}, token_env="MY_TOKEN")
    assert d.call("complete", {"messages": CAPITAL, "max_tokens": 4})["text"]
    assert {r.headers["authorization"] for r in proxy.seen} == {f"Bearer {TOKEN}"}


def test_hf_token_is_the_default_token(daemon, proxy):
    proxy.set(require_token=TOKEN)
    d = daemon(proxy.url + "/v1", env={"HF_TOKEN": TOKEN})
    assert d.call("complete", {"prompt": "a", "max_tokens": 2})["text"] is not None
    assert proxy.requests_to(COMPLETIONS)[-1].headers["authorization"] == f"Bearer {TOKEN}"


def test_an_empty_token_env_sends_no_token(daemon, proxy):
    d = daemon(proxy.url + "/v1", env={"HF_TOKEN": TOKEN}, token_env="")
    assert d.call("complete", {"prompt": "a", "max_tokens": 2})["text"] is not None
    assert proxy.seen and all("authorization" not in r.headers for r in proxy.seen)


def test_a_refused_token_is_a_clear_error(daemon, proxy):
    proxy.set(require_token=TOKEN)
    d = daemon(proxy.url + "/v1", token_env="MY_TOKEN")
    err = error_of(d.request("complete", {"prompt": "x", "max_tokens": 2}))
    assert err["code"] == -32001 and err["data"]["reason"] == "unauthorized"
    assert "$MY_TOKEN is not set" in err["message"]
    assert all("authorization" not in r.headers for r in proxy.seen)  # no stray token either


def test_a_server_error_is_reported_with_the_servers_words(daemon, proxy):
    proxy.set(status=500, body={"error": "CUDA out of memory"}, paths=(CHAT,))
    d = daemon(proxy.url + "/v1")
    err = error_of(d.request("complete", {"messages": CAPITAL, "max_tokens": 2}))
    assert err["code"] == -32001 and err["data"] == {"endpoint": proxy.url + "/v1",
                                                      "reason": "server-error", "status": 500}
    assert "CUDA out of memory" in err["message"]


def test_503_is_retried_before_the_first_token(daemon, proxy):
    proxy.set(status=503, headers={"Retry-After": "0"}, times=2, paths=(CHAT,))
    d = daemon(proxy.url + "/v1")
    assert "Paris" in d.call("complete", {"messages": CAPITAL, "max_tokens": 12})["text"]
    assert len(proxy.requests_to(CHAT)) == 3


def test_429_that_persists_is_busy(daemon, proxy):
    proxy.set(status=429, headers={"Retry-After": "0"}, paths=(COMPLETIONS,))
    d = daemon(proxy.url + "/v1", retries=2)
    err = error_of(d.request("complete", {"prompt": "x", "max_tokens": 2}))
    assert err["code"] == -32003 and err["data"]["reason"] == "rate-limited"
    assert len(proxy.requests_to(COMPLETIONS)) == 3


def test_the_servers_context_limit_is_input_too_long(daemon, proxy):
    proxy.set(status=400, paths=(CHAT,), body={"object": "error", "message": (
        "This model's maximum context length is 2048 tokens. However, you requested 9000 tokens.")})
    d = daemon(proxy.url + "/v1", tokenizer="server")
    err = error_of(d.request("complete", {"messages": CAPITAL, "max_tokens": 2}))
    assert err["code"] == -32002 and "maximum context length is 2048" in err["message"]


def test_a_prompt_longer_than_the_context_is_refused_before_sending(daemon, proxy):
    d = daemon(proxy.url + "/v1", context_length=64)
    err = error_of(d.request("complete", {"prompt": "word " * 200, "max_tokens": 2}))
    assert err["code"] == -32002 and err["data"]["limit"] < 64
    assert proxy.requests_to(COMPLETIONS) == []


def test_a_model_the_server_does_not_serve(daemon, proxy):
    d = daemon(proxy.url + "/v1", served_model="org/not-this-one")
    err = error_of(d.request("complete", {"prompt": "x", "max_tokens": 2}))
    assert err["code"] == -32001 and err["data"]["reason"] == "model-not-served"
    assert "org/not-this-one" in err["message"]


# -- a dead or slow server never blocks local work ---------------------------------------------


def test_tasks_routed_to_a_local_model_work_while_the_server_is_down(ember, tmp_path, smollm2_folder):
    path = config(tmp_path, f"http://127.0.0.1:{free_port()}/v1", local_folder=smollm2_folder)
    path.write_text(path.read_text().replace('tokenize = "big"', 'tokenize = "default"'))
    d = ember(args=["--config", str(path)])
    assert error_of(d.request("complete", {"prompt": "x", "max_tokens": 2}))["code"] == -32001
    assert d.call("tokenize", {"text": "Hello world"})["model"] == "default"


def test_a_hanging_server_blocks_neither_local_models_nor_tokenize(ember, tmp_path, proxy,
                                                                  smollm2_folder):
    proxy.set(stall=True, paths=(CHAT,))
    path = config(tmp_path, proxy.url + "/v1", local_folder=smollm2_folder, read_timeout_s=600.0)
    d = ember(args=["--config", str(path)])
    hanging = d.start_request("complete", {"messages": CAPITAL, "max_tokens": 2})
    assert proxy.stalled.wait(120)  # the remote request now waits on a server that never answers
    local = d.call("complete", {"model": "default", "prompt": "Hello", "max_tokens": 1})
    assert local["model"] == "default"
    assert d.call("tokenize", {"model": "default", "text": "Hello"})["count"] == 1
    status = d.call("daemon/status")
    big = next(m for m in status["models"] if m["name"] == "big")
    assert big["remote"]["in_flight"] == 1
    assert any(label.startswith("complete") for label in status["running"])
    d.notify("$/cancelRequest", {"id": hanging})
    assert error_of(d.reply(hanging))["code"] == -32800


def test_requests_beyond_max_concurrent_wait_their_turn(daemon, proxy):
    proxy.set(stall=True, paths=(CHAT,))
    d = daemon(proxy.url + "/v1", max_concurrent=1, read_timeout_s=600.0)
    first = d.start_request("complete", {"messages": CAPITAL, "max_tokens": 2})
    assert proxy.stalled.wait(120)
    second = d.start_request("complete", {"messages": CAPITAL, "max_tokens": 2})
    status = d.call("daemon/status")
    worker = next(w for w in status["workers"] if w["device"].startswith("remote "))
    assert worker["threads"] == 1 and worker["queue_depth"] == 1
    assert next(m for m in status["models"] if m["name"] == "big")["remote"]["in_flight"] == 1
    assert len(proxy.requests_to(CHAT)) == 1  # the second never reached the server
    for msg_id in (second, first):
        d.notify("$/cancelRequest", {"id": msg_id})
        assert error_of(d.reply(msg_id))["code"] == -32800


# -- visibility --------------------------------------------------------------------------------


def test_status_and_models_list_show_the_endpoint_without_secrets(daemon, proxy):
    d = daemon(proxy.url + "/v1?api-version=2", env={"HF_TOKEN": TOKEN})
    d.call("complete", {"messages": CAPITAL, "max_tokens": 4})
    listed = d.call("models/list")
    status = d.call("daemon/status")
    for entry in (next(m for m in listed["models"] if m["name"] == "big"),
                  next(m for m in status["models"] if m["name"] == "big")):
        remote = entry["remote"]
        assert entry["engine"] == "remote"
        assert remote["url"] == proxy.url + "/v1?api-version=****"
        assert remote["health"] == "ok" and remote["server"] == "openai"
        assert remote["requests"] >= 1 and remote["in_flight"] == 0
        assert remote["latency_ms"]["p50"] > 0 and remote["first_token_ms"]["p50"] > 0
    assert TOKEN not in json.dumps(listed) + json.dumps(status) + "".join(d.stderr_lines)
