"""`ask`: extractive answers on a tiny QA model whose answers its weights fix (tests/tiny_models.py),
generative answers on the real SmolLM2, the narrowing of long texts, and the errors, in process and
through a real daemon."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tiny_models
from ember.config import ModelSettings
from ember.errors import InvalidParams, RequestCancelled
from ember.models.loaded import LoadedModel
from ember.tasks import ask
from ember.tasks.base import RunContext
from ember.tasks.windows import Chunk, bm25, chunk_text, merge, select_chunks
from ember.wire import AskParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FILLER = "the quick brown fox jumps over the lazy dog. "


def load(name: str, folder: Path, **settings) -> LoadedModel:
    from ember.models import loader

    return loader.load(name, ModelSettings(source=str(folder), **settings), folder,
                       loader.LoadContext(Path(os.environ["EMBER_TEST_CACHE"]), 1))


@pytest.fixture(scope="module")
def qa_folder(tmp_path_factory) -> Path:
    return tiny_models.build_question_answering(tmp_path_factory.mktemp("qa") / "qa")


@pytest.fixture(scope="module")
def qa(qa_folder) -> LoadedModel:
    return load("qa", qa_folder, kind="question-answering")


def asked(lm: LoadedModel, **params) -> dict:
    return ask.run(AskParams(**params), lm, RunContext())


# -- extractive --------------------------------------------------------------------------------


def test_extractive_answers_the_best_span_with_its_offsets(qa):
    context = "The meeting is with Maria Garcia and Alice Johnson on Tuesday."
    out = asked(qa, question="Who is at the meeting?", context=context)
    assert out["method"] == "extractive" and out["supported"] is True
    assert out["answer"] == "Alice Johnson" == context[out["start"]:out["end"]] == out["quote"]
    assert out["start"] == context.index("Alice")
    assert out["windows"] == out["windows_kept"] == 1
    assert 0.9 < out["score"] <= 1.0  # a probability: the model is sure of this span
    without = context.replace("Alice Johnson", "Bob Smith")
    second = asked(qa, question="Who is at the meeting?", context=without)
    assert second["answer"] == "Maria Garcia"
    assert 0.9 < second["score"] <= 1.0  # normalized within the window, where it is now the best


def test_extractive_never_answers_from_the_question(qa):
    # The question holds the model's strongest words; only context tokens may be answered.
    out = asked(qa, question="Is it Alice Johnson?", context="It was Maria Garcia, I think.")
    assert out["answer"] == "Maria Garcia"


def test_extractive_span_ends_after_it_starts_and_is_not_too_long(qa):
    # "johnson" before "alice": no span from alice may end at johnson.
    out = asked(qa, question="who?", context="Johnson said that Alice left.")
    assert out["end"] > out["start"]  # the reversed pair would score about 1 if it were allowed
    assert out["score"] < 0.01
    far = "Alice " + " ".join(["word"] * (ask.MAX_ANSWER_TOKENS + 5)) + " Johnson. Maria Garcia came too."
    out = asked(qa, question="who?", context=far)
    assert out["answer"] != far[:far.index("Johnson") + len("Johnson")]
    assert len(qa.tokenizer(out["answer"], add_special_tokens=False)["input_ids"]) <= ask.MAX_ANSWER_TOKENS


def test_long_context_is_read_in_windows_and_offsets_stay_in_the_original(qa):
    # Code points before the answer (an emoji, accents) must not shift its offsets.
    head = "Café 👋 naïve. " + FILLER * 60
    context = head + "Maria Garcia was early. " + FILLER * 40 + "Then Alice Johnson arrived. " + FILLER * 30
    out = asked(qa, question="Who arrived?", context=context)
    tokens = len(qa.tokenizer(context, add_special_tokens=False)["input_ids"])
    assert tokens > 3 * ask.MAX_SEQ_TOKENS
    assert out["windows"] >= 4
    assert out["answer"] == "Alice Johnson"
    assert context[out["start"]:out["end"]] == "Alice Johnson"
    assert out["start"] == context.index("Alice Johnson")
    # Right at a window's edge the overlap (stride) still holds the whole span.
    for shift in range(0, 40, 7):
        moved = FILLER * 30 + "x " * shift + "Alice Johnson" + " y" * 300
        got = asked(qa, question="Who?", context=moved)
        assert moved[got["start"]:got["end"]] == "Alice Johnson" == got["answer"]


def test_a_question_too_long_is_refused(qa):
    from ember.errors import InputTooLong

    with pytest.raises(InputTooLong, match="question"):
        asked(qa, question="who " * 300, context="Alice Johnson.")


# -- the pieces of the generative method ----------------------------------------------------------


def test_locate_exact_then_normalized_and_never_a_paraphrase():
    context = "First line.\n  The Tower   is 330 metres\n tall.  Last “quoted” line."
    assert ask.locate("The Tower   is 330", context) == (context.index("The Tower"), context.index(" metres"))
    start, end = ask.locate("the tower is 330 metres tall", context)
    assert context[start:end] == "The Tower   is 330 metres\n tall"
    start, end = ask.locate('Last "quoted" line...', context)
    assert context[start:end] == "Last “quoted” line"
    assert ask.locate("The tower is 330 meters tall", context) is None  # metres, not meters
    assert ask.locate("is", context) is None  # too short to support anything
    assert ask.locate("", context) is None


def test_reply_streams_only_the_answer_and_deltas_add_up():
    pieces = ["Ans", "wer: Par", "is is the", " capital", ".\nSup", "porting", " quote: \"Paris is", " the capital.\""]
    sent: list[str] = []
    reply = ask.Reply(sent.append)
    for piece in pieces:
        reply.feed(piece)
        assert "Sup" not in "".join(sent) and "Answer" not in "".join(sent)
    answer = reply.close()
    assert answer == "Paris is the capital."
    assert "".join(sent) == answer
    assert reply.quote() == "Paris is the capital."
    late = ask.Reply(None)
    late.feed('Quote: "It is 330 metres tall."\nAnswer: 330 metres.')
    assert late.close() == "330 metres." and late.quote() == "It is 330 metres tall."


def test_chunks_overlap_cover_the_text_and_ranking_prefers_the_question_words():
    text = " ".join(f"w{i}" for i in range(400)) + " the launch code is zebra " + " ".join(f"v{i}" for i in range(300))

    def count(t: str) -> int:
        return len(t.split())

    chunks = chunk_text(text, count, 50, 10)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:], strict=False))  # neighbours overlap
    assert all(text[c.start - 1].isspace() for c in chunks if c.start)  # on word boundaries
    scores = bm25("what is the launch code?", [text[c.start:c.end] for c in chunks])
    best = max(range(len(chunks)), key=scores.__getitem__)
    assert "launch code" in text[chunks[best].start:chunks[best].end]
    pieces, kept = select_chunks(text, chunks, "what is the launch code?", lambda a, b: count(text[a:b]), 120, 2)
    assert any("launch code is zebra" in text[p.start:p.end] for p in pieces)
    assert sum(count(text[p.start:p.end]) for p in pieces) + 2 * (len(pieces) - 1) <= 120
    assert pieces == sorted(pieces, key=lambda p: p.start) and kept < len(chunks)
    assert merge([Chunk(5, 9), Chunk(0, 5), Chunk(20, 30)]) == [Chunk(0, 9), Chunk(20, 30)]


def test_span_counts_from_one_tokenization_never_undercount(qa):
    from ember.tasks.windows import span_counter

    text = FILLER * 20 + "Café naïve déjà vu, Alice Johnson! " * 5
    count = span_counter(text, qa.tokenizer, 3)
    for start, end in [(0, len(text)), (5, 200), (len(FILLER) * 20 - 3, len(text) - 7), (13, 14)]:
        exact = len(qa.tokenizer(text[start:end], add_special_tokens=False)["input_ids"])
        assert exact <= count(start, end) <= exact + 4, (start, end)
    estimated = span_counter(text, None, 3)
    assert estimated(0, 30) == 10


# -- generative on SmolLM2 --------------------------------------------------------------------------

TOWER = ("The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It is named after the engineer "
         "Gustave Eiffel, whose company designed and built the tower from 1887 to 1889. It was the entrance "
         "arch to the 1889 World's Fair. The tower is 330 metres tall.")


@pytest.fixture(scope="module")
def smollm2(smollm2_folder) -> LoadedModel:
    return load("smollm2", smollm2_folder, engine="transformers")


@pytest.mark.model
def test_generative_streams_the_answer_and_checks_its_quote(smollm2):
    deltas: list[str] = []
    out = ask.run(AskParams(question="Who is the tower named after?", context=TOWER, stream=True), smollm2,
                  RunContext(on_delta=deltas.append))
    assert out["method"] == "generative"
    assert "Eiffel" in out["answer"]
    assert len(deltas) > 1 and "".join(deltas) == out["answer"]
    assert out["windows"] == out["windows_kept"] == 1
    if out["supported"]:
        assert TOWER[out["start"]:out["end"]] == out["quote"] and out["quote"]
    else:
        assert out["start"] is None and out["end"] is None and out["quote"] is None


def test_the_sentence_that_holds_the_answer_supports_it():
    text = ("Gustave Eiffel's company built it. The tower is 330 metres tall.\n\n"
            "  height\n    Its height was measured again in 2022.")
    at = ask.anchored_support("It is 330 metres tall.", "How tall is the tower?", text)
    assert at is not None and text[at[0]:at[1]] == "The tower is 330 metres tall."
    # the question's words break a tie between sentences that hold the answer's words alike
    tie = "Paris has a museum. The tower stands in Paris."
    at = ask.anchored_support("Paris", "Where is the tower?", tie)
    assert at is not None and tie[at[0]:at[1]] == "The tower stands in Paris."
    # words the text does not hold support nothing; neither does an answer of stop words only
    assert ask.anchored_support("It was designed by Napoleon in Rome.", "Who?", text) is None
    assert ask.anchored_support("It is the one.", "Which?", text) is None


@pytest.mark.model
def test_generative_support_holds_the_answer_words(smollm2):
    out = asked(smollm2, question="How tall is the tower?", context=TOWER)
    assert "330" in out["answer"]
    assert out["supported"] is True and out["quote"] == "The tower is 330 metres tall."
    assert TOWER[out["start"]:out["end"]] == out["quote"]


@pytest.mark.model
def test_generative_marks_an_unfound_quote_unsupported(smollm2, monkeypatch):
    # No sentence holds the answer's words, and whatever the model quotes from the shown text, the
    # context it is checked against lacks it.
    monkeypatch.setattr(ask, "anchored_support", lambda answer, question, context: None)
    real = ask.locate
    monkeypatch.setattr(ask, "locate", lambda quote, context: real(quote, context.replace("e", "é")))
    out = asked(smollm2, question="How tall is the tower?", context=TOWER)
    assert out["supported"] is False and out["quote"] is None and out["start"] is None
    monkeypatch.setattr(ask, "locate", real)
    supported = asked(smollm2, question="Who is the tower named after?", context=TOWER)
    # SmolLM2 copies the first sentences of this text when asked to repeat one (seen every run).
    assert supported["supported"] is True
    assert TOWER[supported["start"]:supported["end"]] == supported["quote"]


@pytest.mark.model
def test_generative_narrows_a_long_context_and_keeps_original_offsets(smollm2):
    import dataclasses

    lm = dataclasses.replace(smollm2, context_length=640)  # the same weights, a smaller window
    noise = " ".join(f"Paragraph {i} talks about gardening, soil and the weather in spring." for i in range(120))
    context = noise[:3000] + " " + TOWER + " " + noise[3000:]
    out = asked(lm, question="Who is the Eiffel Tower named after?", context=context, max_tokens=40)
    assert out["windows"] > out["windows_kept"] >= 1
    assert out["usage"]["prompt_tokens"] < 2 * 640
    assert "Eiffel" in out["answer"]
    if out["supported"]:
        assert context[out["start"]:out["end"]] == out["quote"]


@pytest.mark.model
def test_generative_cancels_between_tokens(smollm2):
    ctx = RunContext()
    seen: list[str] = []

    def on_delta(delta: str) -> None:
        seen.append(delta)
        ctx.cancelled.set()

    ctx.on_delta = on_delta
    with pytest.raises(RequestCancelled):
        ask.run(AskParams(question="Who built the tower?", context=TOWER, stream=True), smollm2, ctx)
    assert len(seen) <= 2


# -- methods and errors -----------------------------------------------------------------------------


def test_method_must_suit_the_model(qa):
    with pytest.raises(InvalidParams, match="generative needs a causal LM"):
        asked(qa, question="who?", context="Alice Johnson.", method="generative")


@pytest.mark.parametrize("params, field", [
    ({"question": "", "context": "text"}, "question"),
    ({"question": "   ", "context": "text"}, "question"),
    ({"question": "who?"}, "context"),
    ({"question": "who?", "context": " \n"}, "context"),
    ({"context": "text"}, "question"),
    ({"question": "who?", "context": "text", "method": "guess"}, "method"),
])
def test_bad_params_name_the_field(params, field):
    from ember.rpc.handlers import parse_params

    with pytest.raises(InvalidParams) as err:
        parse_params("ask", params)
    assert err.value.args[0].startswith(f"{field}:")


@pytest.fixture(scope="module")
def daemon(qa_folder, tmp_path_factory, cache_dir):
    from conftest import make_daemon_env
    from rpc_client import Daemon

    home = tmp_path_factory.mktemp("ask-daemon")
    cfg = home / "ember.toml"
    cfg.write_text(f'[models.default]\nsource = "smollm2"\n[models.qa]\nsource = "{qa_folder}"\n'
                   'kind = "question-answering"\n[tasks]\nask = "qa"\n')
    d = Daemon("headers", ["--config", str(cfg)], make_daemon_env(home, cache_dir))
    yield d
    d.kill()


@pytest.mark.model
def test_daemon_routes_ask_and_refuses_what_does_not_fit(daemon):
    context = "Minutes: Maria Garcia and Alice Johnson met on Tuesday."
    out = daemon.call("ask", {"question": "Who met?", "context": context})
    assert out["model"] == "qa" and out["method"] == "extractive"
    assert context[out["start"]:out["end"]] == out["answer"] == "Alice Johnson"
    listed = {m["name"]: m for m in daemon.call("models/list")["models"]}
    assert listed["qa"]["kind"] == "question-answering" and "ask" in listed["qa"]["tasks"]
    for params, code, words in [
        ({"question": "Who met?"}, -32602, "context: required"),
        ({"question": "", "context": context}, -32602, "question:"),
        ({"question": "Who?", "context": context, "method": "generative"}, -32602, "generative needs a causal LM"),
        ({"question": "Who?", "context": context, "model": "default", "method": "extractive"}, -32602,
         "extractive needs a question-answering model"),
    ]:
        reply = daemon.request("ask", params)
        assert reply["error"]["code"] == code and words in reply["error"]["message"], reply
    # Still serving after the errors.
    assert daemon.call("ask", {"question": "Who?", "context": "Maria Garcia."})["answer"] == "Maria Garcia"


@pytest.mark.model
def test_daemon_streams_and_cancels_a_generative_ask(daemon):
    params = {"question": "Who is the tower named after?", "context": TOWER, "model": "default", "stream": True}
    msg_id = daemon.start_request("ask", params)
    reply = daemon.reply(msg_id)["result"]
    assert reply["method"] == "generative" and reply["model"] == "default"
    assert "".join(daemon.stream_deltas(msg_id)) == reply["answer"]
    if reply["supported"]:
        assert TOWER[reply["start"]:reply["end"]] == reply["quote"]
    long_id = daemon.start_request("ask", {**params, "question": "Describe the tower in detail.",
                                           "max_tokens": 400})
    while True:  # wait for its first delta, then cancel it mid-generation
        msg = daemon.next_message()
        if msg.get("method") == "ember/stream" and msg["params"]["id"] == long_id:
            break
        if msg.get("id") == long_id:
            pytest.fail(f"finished before a delta was seen: {msg}")
    daemon.notify("$/cancelRequest", {"id": long_id})
    assert daemon.reply(long_id)["error"]["code"] == -32800
