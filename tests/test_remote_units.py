"""The remote engine's pure parts, without a server: stop handling on streamed text, label matching,
and reading the log-probabilities that TGI and vLLM return (their documented response shapes;
`transformers serve`, the server these tests can run, returns none), and the error each refusal
becomes."""

from __future__ import annotations

import math

import pytest

from ember.engines.endpoint import Access, Endpoint, HTTPStatusError, _InStreamError, split_base_url
from ember.engines.remote import _sum_after, choice_spans, prefill_spans
from ember.engines.text import StopFilter
from ember.tasks.classify import match_label, probs_from_first_token

ACCESS = Access(token=None, token_env="HF_TOKEN", connect_s=5, read_s=60, retries=3)


def test_streamed_text_holds_back_a_possible_stop_and_cuts_at_it():
    deltas: list[str] = []
    filt = StopFilter(["\n\n", "END"], deltas.append)
    text = ""
    for piece in ["def f():", "\n", "    return 1", "\n", "\nclass"]:
        text += piece
        filt.update(text)
    assert filt.stopped and filt.finish(text) == "def f():\n    return 1"
    assert "".join(deltas) == "def f():\n    return 1"


def test_streamed_text_without_a_stop_is_all_emitted_at_the_end():
    deltas: list[str] = []
    filt = StopFilter(["END"], deltas.append)
    filt.update("the EN")
    assert "".join(deltas) == "the "  # "EN" could still become "END"
    assert filt.finish("the EN") == "the EN" and "".join(deltas) == "the EN"


@pytest.mark.parametrize("answer, expected", [
    ("Positive", "positive"),
    ("positive.", "positive"),
    ("**Negative**", "negative"),
    ("The sentiment is negative.", "negative"),
    ("This film is a must-see.", None),
    ("I cannot tell.", None),
])
def test_a_generated_answer_is_matched_to_a_label(answer, expected):
    assert match_label(answer, ["positive", "negative", "neutral"]) == expected


def test_the_longer_label_wins_when_both_start_the_answer():
    assert match_label("positively yes", ["pos", "positively"]) == "positively"


def test_first_token_probabilities_score_each_label_by_its_first_token():
    top = {"Positive": math.log(0.6), " neg": math.log(0.3), "The": math.log(0.05)}
    probs = probs_from_first_token(top, ["positive", "negative", "mixed"])
    assert probs[0] > probs[1] > probs[2]
    assert abs(sum(probs) - 1) < 1e-9
    assert abs(probs[0] / probs[1] - 2) < 1e-9  # 0.6 / 0.3


def test_vllm_echo_logprobs_give_the_answers_tokens():
    # POST /v1/completions {"prompt": "Label: positive", "echo": true, "logprobs": 1, "max_tokens": 1}
    choice = {"index": 0, "text": "Label: positive\n", "logprobs": {
        "tokens": ["Label", ":", " positive", "\n"],
        "token_logprobs": [None, -0.5, -1.25, -0.1],
        "text_offset": [0, 5, 6, 15],
        "top_logprobs": [None, {":": -0.5}, {" positive": -1.25}, {"\n": -0.1}]}}
    spans = choice_spans(choice, "Label: positive")
    assert _sum_after(spans, len("Label:")) == -1.25  # " positive" only; the generated "\n" is past it


def test_a_server_that_ignores_echo_gives_no_spans():
    assert choice_spans({"index": 0, "text": "x", "logprobs": None}, "Label: positive") is None


def test_tgi_prefill_logprobs_give_the_answers_tokens():
    class Token:
        def __init__(self, text, logprob):
            self.text, self.logprob = text, logprob

    prefill = [Token("Label", None), Token(":", -0.5), Token(" pos", -1.0), Token("itive", -0.25)]
    spans = prefill_spans(prefill, "Label: positive")
    assert _sum_after(spans, len("Label:")) == -1.25


def test_an_unscored_answer_token_makes_the_answer_impossible():
    assert _sum_after([(0, 5, None), (5, 9, None)], 5) == -math.inf


@pytest.mark.parametrize("base, root, query", [
    ("http://h:8080/v1", "http://h:8080", ""),
    ("http://h:8080/v1/", "http://h:8080", ""),
    ("http://h:8080", "http://h:8080", ""),
    ("https://x.endpoints.huggingface.cloud/", "https://x.endpoints.huggingface.cloud", ""),
    ("https://gw.example/llm/v1?api-version=2", "https://gw.example/llm", "api-version=2"),
])
def test_the_base_url_gives_the_servers_root(base, root, query):
    assert split_base_url(base) == (root, query)


def refusal(status, body, token=None):
    endpoint = Endpoint("http://h:8080/v1", 4)
    access = Access(token=token, token_env="TEAM_TOKEN", connect_s=5, read_s=60, retries=3)
    return endpoint.error(HTTPStatusError(status, body, {}), access, "/v1/completions")


@pytest.mark.parametrize("status, body, code, reason", [
    (401, '{"error": "Authorization header is invalid"}', -32001, "unauthorized"),
    (403, "forbidden", -32001, "unauthorized"),
    (429, '{"error": "Model is overloaded"}', -32003, "rate-limited"),
    (503, '{"error": "Service Unavailable"}', -32001, "unavailable"),
    (500, '{"detail": "boom"}', -32001, "server-error"),
    # vLLM
    (400, '{"object": "error", "message": "This model\'s maximum context length is 4096 tokens."}',
     -32002, "too-long"),
    (404, '{"object": "error", "message": "The model `x` does not exist."}', -32001, "model-not-served"),
    # TGI
    (422, '{"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096",'
          ' "error_type": "validation"}', -32002, "too-long"),
    # transformers serve
    (400, '{"detail": "Server is pinned to \'a\'; requested \'b\'."}', -32001, "model-not-served"),
    (404, '{"detail": "Not Found"}', -32001, "no-route"),
    (422, '{"detail": "Unexpected fields in the request: {\'x\'}"}', -32001, "bad-request"),
])
def test_each_refusal_has_its_code_and_reason(status, body, code, reason):
    err = refusal(status, body)
    assert (err.code, err.data["reason"]) == (code, reason)
    assert err.data["endpoint"] == "http://h:8080/v1"


def test_an_unauthorized_answer_says_whether_a_token_was_sent():
    assert "no token was sent ($TEAM_TOKEN is not set)" in refusal(401, "").message
    refused = refusal(401, "", token="abcdefghijklmnop")
    assert "the token from $TEAM_TOKEN was refused" in refused.message
    assert "abcdefghijklmnop" not in refused.message


def test_an_error_event_inside_a_stream_is_a_server_error():
    endpoint = Endpoint("http://h:8080/v1", 4)
    err = endpoint.error(_InStreamError({"message": "CUDA error: device-side assert"}), ACCESS, "chat")
    assert err.code == -32001 and err.data["reason"] == "server-error"
    assert "device-side assert" in err.message
