"""Answers composed from the sentences of a section that answer, as one paragraph of plain text."""

from __future__ import annotations

from pathlib import Path

import yaml

from agents.knowledge.answers import compose, flatten, plain, sentences, units
from agents.knowledge.chunking import chunk_article, read_article

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "shared" / "sandbox" / "kb"
QUESTIONS = ROOT / "evals" / "data" / "kb_questions.yaml"

EXPORT = """Open the project, choose **Settings → Export**, and pick **CSV**. The file contains one
row per task with its title, assignee, status, due date and custom fields. Exports of up
to 50,000 tasks are generated immediately; larger exports are emailed to the project
owner within 15 minutes."""


def test_hard_wrapped_lines_are_joined_into_sentences_of_plain_text() -> None:
    found = units(EXPORT)
    assert [u.text for u in found] == [
        "Open the project, choose Settings → Export, and pick CSV.",
        "The file contains one row per task with its title, assignee, status, due date and custom fields.",
        "Exports of up to 50,000 tasks are generated immediately; larger exports are emailed to the project "
        "owner within 15 minutes.",
    ]
    assert "\n" not in flatten(EXPORT) and "**" not in flatten(EXPORT)


def test_the_best_sentences_are_kept_in_the_order_of_the_article() -> None:
    # The last sentence matches best, the first nearly as well, the middle one not at all.
    answer = compose(EXPORT, [0.50, 0.10, 0.55])
    assert answer == (
        "Open the project, choose Settings → Export, and pick CSV. Exports of up to 50,000 tasks are generated "
        "immediately; larger exports are emailed to the project owner within 15 minutes."
    )


def test_a_sentence_far_below_the_best_is_left_out() -> None:
    assert compose(EXPORT, [0.20, 0.15, 0.60]).startswith("Exports of up to 50,000 tasks")


def test_at_most_three_units_answer() -> None:
    text = " ".join(f"Sentence number {n} is here." for n in range(1, 7))
    assert compose(text, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]).count("Sentence number") == 3


def test_a_list_item_is_kept_whole_with_the_sentence_that_introduces_it() -> None:
    text = """We accept these cards:

- Visa, the most common one, and
  Visa Electron
- Mastercard
- American Express, for business plan customers only

Cards are charged on the 1st."""
    found = units(text)
    assert [u.kind for u in found] == ["sentence", "item", "item", "item", "sentence"]
    assert found[1].text == "Visa, the most common one, and Visa Electron"
    answer = compose(text, [0.1, 0.2, 0.1, 0.7, 0.1])
    assert answer == "We accept these cards: American Express, for business plan customers only."


def test_items_of_one_list_are_joined_into_one_sentence() -> None:
    text = "Open one of:\n\n- the web app\n- the iOS app\n- the Android app"
    assert compose(text, [0.1, 0.5, 0.5, 0.5]) == "Open one of: the web app; the iOS app; the Android app."


def test_a_table_row_reads_with_its_column_names() -> None:
    text = "| plan | price | members |\n| --- | --- | --- |\n| free | 0 USD | up to 3 |\n| pro | 49.00 USD | up to 25 |"
    assert [u.text for u in units(text)] == [
        "free: price 0 USD, members up to 3.",
        "pro: price 49.00 USD, members up to 25.",
    ]
    assert compose(text, [0.1, 0.6]) == "pro: price 49.00 USD, members up to 25."


def test_a_sentence_that_points_back_brings_the_one_before_it() -> None:
    text = "Deleted projects stay in the trash for 30 days. After that they are permanently deleted."
    assert compose(text, [0.1, 0.6]) == text


def test_an_abbreviation_does_not_end_a_sentence() -> None:
    assert sentences("Use an app, e.g. Authy or 1Password. Then scan the code.") == [
        "Use an app, e.g. Authy or 1Password.",
        "Then scan the code.",
    ]


def test_links_code_and_emphasis_read_as_plain_text() -> None:
    assert plain("See [our status page](https://status.example.com) or <https://help.example.com>.") == (
        "See our status page (https://status.example.com) or https://help.example.com."
    )
    assert plain("Run `sb export` *now*, not __later__; keep snake_case_names.") == (
        "Run sb export now, not later; keep snake_case_names."
    )
    assert plain("![diagram](x.png) A <b>bold</b> move.") == "diagram A bold move."


def test_headings_and_code_fences_inside_a_section_are_not_sentences() -> None:
    text = "#### On Android\nOpen the app.\n\n```\nsb login\n  --sso\n```\n"
    assert [(u.text, u.kind) for u in units(text)] == [("Open the app.", "sentence"), ("sb login --sso", "code")]


def test_without_scores_the_answer_is_the_opening_of_the_section() -> None:
    assert compose(EXPORT) == flatten(EXPORT)
    assert compose("") == ""


def test_every_expected_phrase_in_the_question_set_is_in_the_section_it_names() -> None:
    """The question set's labels match the corpus: kb eval's answer check can pass."""
    sections = {
        (article.id, section.heading): flatten(section.text)
        for article in (read_article(p) for p in sorted(CORPUS.glob("*.md")))
        for section in chunk_article(article)
    }
    data = yaml.safe_load(QUESTIONS.read_text())
    assert len(data["questions"]) >= 90 and len(data["out_of_scope"]) + len(data["unanswerable"]) >= 30
    for question in data["questions"]:
        text = sections[(question["article"], question["section"])]
        expected = question.get("expect") or []
        expected = [expected] if isinstance(expected, str) else expected
        assert not expected or any(e.casefold() in text.casefold() for e in expected), question
