"""summarize: the sentence rules (pure), the cleaned streaming answer, and the one-sentence form on
the real SmolLM2 (marked `model`) and on a tiny random-weight chat model (always run)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import tiny_models as tm
from ember.config import ModelSettings
from ember.models.loaded import LoadedModel
from ember.tasks import summarize
from ember.tasks.base import RunContext
from ember.tasks.sentences import UNDECIDED, answer_start, sentence_end, split_sentences
from ember.wire import SummarizeParams

DATA = Path(__file__).parent / "data" / "summaries.jsonl"


# -- sentence ends ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, first", [
    ("The council voted. It opens in 2027.", "The council voted."),
    ("Dr. Alvarez spoke first. Then the vote.", "Dr. Alvarez spoke first."),
    ("It costs 3.5 million dollars. Work starts soon.", "It costs 3.5 million dollars."),
    ("Cities, e.g. Paris, grew. More later.", "Cities, e.g. Paris, grew."),
    ("About approx. ten people came. Then", "About approx. ten people came."),
    ("J. R. R. Tolkien wrote it. Yes.", "J. R. R. Tolkien wrote it."),
    ("U.S. officials came at 5 p.m. today. Then", "U.S. officials came at 5 p.m. today."),
    ("Wow! Great.", "Wow!"),
    ('He said "no." Then left.', 'He said "no."'),
    ("See No. 5 on the list. Then", "See No. 5 on the list."),
    ("Visit example.com today. Then", "Visit example.com today."),
    ("A first line\nA second line", "A first line"),
    ("No end at all", "No end at all"),
])
def test_first_sentence_of_a_finished_text(text, first):
    assert split_sentences(text)[0] == first


@pytest.mark.parametrize("text, expected", [
    ("It costs 3.", UNDECIDED),  # 3.5?
    ("It opens in 2027.", UNDECIDED),
    ("It was approved by Dr.", UNDECIDED),
    ("It was approved by voters.", len("It was approved by voters.")),  # an ordinary word: done
    ("Really?", len("Really?")),
    ("It was approved", None),
    ("Approved. ", UNDECIDED),  # the next word's case decides
])
def test_a_text_still_being_generated(text, expected):
    assert sentence_end(text, 0, complete=False) == expected


def test_split_sentences_counts_bullets_and_lines():
    assert split_sentences("- one point\n- two. Three.\n\nFour") == ["- one point", "- two.", "Three.",
                                                                       "Four"]


@pytest.mark.parametrize("text, answer", [
    ("Here is a one-sentence summary:\n\nThe council voted.", "The council voted."),
    ("Sure! Here's a summary of the text: The council voted.", "The council voted."),
    ("Summary: The council voted.", "The council voted."),
    ('The summary is: "The council voted."', 'The council voted."'),
    ("**Summary**\nThe council voted.", "The council voted."),
    ("Here are the key points:\n- a\n- b", "- a\n- b"),
    ("This is a plan to build a library.", "This is a plan to build a library."),
    ("  The council voted.", "The council voted."),
    ("Hi all,\n\nThe office is closed on Friday.", "The office is closed on Friday."),
])
def test_lead_ins_are_dropped(text, answer):
    assert text[answer_start(text):] == answer


def test_a_lead_in_is_undecided_until_it_ends():
    assert answer_start("Here is a", complete=False) is None
    assert answer_start("Here is a one-sentence summary of the text.", complete=False) is None
    assert answer_start("The city council of Springfield voted on", complete=False) == 0
    assert answer_start("Team sync. Present: Ana, Bilal and Chen", complete=False) == 0
    assert answer_start("The main points of the text are:", complete=False) is None


# -- the streamed answer ------------------------------------------------------------------------


def stream(pieces: list[str], form: str) -> tuple[str, list[str]]:
    from ember.tasks.summarize import Answer

    deltas: list[str] = []
    answer = Answer(deltas.append, form)
    for piece in pieces:
        answer.feed(piece)
    return answer.close(), deltas


def test_answer_stream_drops_the_lead_in_and_stops_after_one_sentence():
    pieces = ["Here", " is", " a", " summary", ":", "\n\n", "The", " bond", " of", " 3", ".", "5",
              " million", " was", " approved", " by", " Dr", ".", " Alvarez", ".", " It", " opens", "."]
    text, deltas = stream(pieces, "sentence")
    assert text == "The bond of 3.5 million was approved by Dr. Alvarez."
    assert "".join(deltas) == text
    assert len(deltas) > 3  # streamed, not sent at the end in one piece


def test_answer_stream_skips_a_copied_heading_in_the_sentence_form():
    text, deltas = stream(["Team", " sync", ",", " Thursday", ".", " The", " beta", " moves", " to",
                           " May", " 19", ".", " More", "."], "sentence")
    assert text == "The beta moves to May 19."
    assert "".join(deltas) == text
    assert stream(["Short", " one", "."], "sentence")[0] == "Short one."  # nothing else came


def test_answer_stream_keeps_every_sentence_of_a_paragraph():
    text, deltas = stream(["Sure! ", "One. ", "Two.", "\n"], "paragraph")
    assert text == "One. Two."
    assert "".join(deltas) == text


def test_bullets_from_a_list_and_from_prose():
    listed = ["Key points:\n", "* Costs ", "40 million.\n", "2. Opens in ", "2027.\n",
              "- Costs 40 million.\n", "- Three floors."]
    text, deltas = stream(listed, "bullets")
    assert text == "- Costs 40 million.\n- Opens in 2027.\n- Three floors."  # repeat dropped
    assert "".join(deltas) == text
    text, deltas = stream(["The council voted. ", "It costs 3.5 million. ", "It opens in 2027."],
                          "bullets")
    assert text == "- The council voted.\n- It costs 3.5 million.\n- It opens in 2027."
    assert "".join(deltas) == text
    many = stream([f"Point {i}.\n" for i in range(8)], "bullets")[0]
    assert many.count("\n- ") == 4  # at most five


# -- real and tiny models -----------------------------------------------------------------------



pytestmark = pytest.mark.usefixtures("one_torch_thread")


def loaded(name: str, folder: Path) -> LoadedModel:
    """The model as the daemon loads it, on the reference engine (the rules here are the same on
    every engine; tests/test_tasks_e2e.py runs summarize on both)."""
    from ember.models import loader

    settings = ModelSettings(source=str(folder), engine="transformers")
    return loader.load(name, settings, folder, loader.LoadContext(Path(os.environ["EMBER_TEST_CACHE"]), 1))


def summarize_streaming(lm: LoadedModel, **params) -> dict:
    deltas: list[str] = []
    out = summarize.run(SummarizeParams(stream=True, **params), lm, RunContext(on_delta=deltas.append))
    assert "".join(deltas) == out["text"]
    return out


@pytest.fixture(scope="module")
def smollm2(smollm2_folder) -> LoadedModel:
    return loaded("smollm2", smollm2_folder)


TEXTS = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


@pytest.mark.model
@pytest.mark.parametrize("item", TEXTS[::3], ids=lambda item: item["id"])
def test_sentence_form_is_exactly_one_sentence(smollm2, item):
    out = summarize_streaming(smollm2, text=item["text"], form="sentence")
    assert len(split_sentences(out["text"])) == 1, out["text"]
    assert "\n" not in out["text"]
    assert out["text"][-1] in ".!?", out["text"]
    assert out["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] < summarize.MAX_TOKENS["medium"]


@pytest.mark.model
def test_sentence_form_drops_a_lead_in(smollm2, monkeypatch):
    # The model is made to start with a lead-in line; the answer is the sentence after it.
    monkeypatch.setitem(summarize.PREFILL, "sentence", "Here is a one-sentence summary of the text:\n")
    out = summarize_streaming(smollm2, text=TEXTS[0]["text"], form="sentence")
    assert not out["text"].lower().startswith("here")
    assert len(split_sentences(out["text"])) == 1, out["text"]
    assert "library" in out["text"].lower()


@pytest.mark.model
@pytest.mark.parametrize("start", ["Mayor Dr.", "The project costs 40."])
def test_sentence_form_goes_on_after_an_abbreviation_or_a_decimal_point(smollm2, monkeypatch, start):
    monkeypatch.setitem(summarize.PREFILL, "sentence", start)
    text = ("Mayor Dr. Jane Alvarez said the new library costs 40.5 million dollars. It opens in "
            "two years. It has three floors.")
    out = summarize_streaming(smollm2, text=text, form="sentence")
    assert out["text"].startswith(start)
    assert len(out["text"]) > len(start) + 3, out["text"]  # it did not stop at the period
    assert len(split_sentences(out["text"])) == 1, out["text"]


def test_tiny_model_sentence_form_is_at_most_one_sentence(tmp_path):
    # Random weights produce random tokens, periods and line breaks included: the cut still holds.
    lm = loaded("tiny-chat", tm.build_chat_causal_lm(tmp_path / "chat"))
    for seed in range(3):
        out = summarize_streaming(lm, text="The cat sat on the mat. It was warm.", form="sentence",
                                  temperature=1.0, seed=seed, max_tokens=40)
        assert len(split_sentences(out["text"])) <= 1, out["text"]
        assert out["usage"]["completion_tokens"] <= 40
