from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared.nlu.embeddings import SentenceEncoder, default_encoder
from shared.nlu.evaluate import main as eval_main
from shared.nlu.evaluate import sample_per_label
from shared.nlu.intents import FALLBACK_TEMPERATURE, Example, IntentClassifier, load_or_train

EXAMPLES: list[Example] = [
    ("I lost my card", "card_lost"),
    ("my card was stolen yesterday", "card_lost"),
    ("I can't find my debit card anywhere", "card_lost"),
    ("someone took my wallet with my card in it", "card_lost"),
    ("please block my missing card", "card_lost"),
    ("I want my money back for this order", "refund_request"),
    ("can I get a refund please", "refund_request"),
    ("return the payment, the item never arrived", "refund_request"),
    ("reimburse me for the broken product", "refund_request"),
    ("I'd like a refund of the charge", "refund_request"),
    ("I moved, how do I update my address", "change_address"),
    ("change the postal address on my account", "change_address"),
    ("my home address is different now", "change_address"),
    ("where do I edit where I live", "change_address"),
    ("new street address for my profile", "change_address"),
    ("stop my subscription", "cancel_subscription"),
    ("I want to cancel my monthly plan", "cancel_subscription"),
    ("end my membership now", "cancel_subscription"),
    ("how do I unsubscribe from the premium plan", "cancel_subscription"),
    ("please terminate my subscription at the end of the month", "cancel_subscription"),
]


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return default_encoder()


@pytest.fixture(scope="module")
def classifier(encoder: SentenceEncoder) -> IntentClassifier:
    return IntentClassifier.train(EXAMPLES, encoder)


def test_embeddings_are_unit_vectors_and_paraphrases_are_closer(encoder: SentenceEncoder) -> None:
    lost, stolen, refund = (encoder.embed(t) for t in ("I lost my card", "my card got stolen", "refund my order"))
    assert lost.shape == (384,)
    assert np.linalg.norm(lost) == pytest.approx(1.0, abs=1e-5)
    assert float(lost @ stolen) > float(lost @ refund)


def test_batched_embeddings_equal_one_at_a_time_despite_padding(encoder: SentenceEncoder) -> None:
    # Texts of very different lengths share a padded batch; masked pooling must ignore the padding.
    texts = ["hi", "I was charged twice for the same order last week and want the second charge reversed", "refund"]
    batched = SentenceEncoder(remember=0).embed_batch(texts)
    single = np.stack([SentenceEncoder(remember=0).embed(t) for t in texts])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_a_text_embedded_lately_is_not_embedded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = SentenceEncoder(remember=2)
    first = encoder.embed("I was charged twice")
    runs: list[int] = []
    real_run = encoder._run
    monkeypatch.setattr(
        encoder, "_run", lambda session, encodings: runs.append(len(encodings)) or real_run(session, encodings)
    )

    again = encoder.embed_batch(["I was charged twice", "and I can't log in"])

    assert runs == [1]  # only the new text went through the model
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_allclose(again[1], SentenceEncoder(remember=0).embed("and I can't log in"), atol=1e-6)
    encoder.embed("a third text")  # the encoder keeps two: the oldest is forgotten
    encoder.embed("I was charged twice")
    assert runs == [1, 1, 1]
    encoder.embed("x" * 5000)  # a whole article is not kept
    encoder.embed("x" * 5000)
    assert runs == [1, 1, 1, 1, 1]


@pytest.mark.parametrize(
    ("message", "intent"),
    [
        ("my bank card has gone missing", "card_lost"),
        ("I need my money returned for the purchase", "refund_request"),
        ("I relocated and need to change where you send letters", "change_address"),
        ("cancel my subscription immediately", "cancel_subscription"),
    ],
)
def test_unseen_paraphrase_gets_its_intent(classifier: IntentClassifier, message: str, intent: str) -> None:
    assert classifier.predict(message).label == intent


def test_confidences_are_ranked_probabilities(classifier: IntentClassifier) -> None:
    prediction = classifier.predict("I lost my card on the bus", k=4)
    confidences = [score.confidence for score in prediction.top]
    assert prediction.top[0].label == prediction.label == "card_lost"
    assert confidences == sorted(confidences, reverse=True)
    assert sum(confidences) == pytest.approx(1.0, abs=1e-6)
    assert prediction.confidence > 0.5
    assert len(classifier.top_k("I lost my card", k=2)) == 2


def test_saved_classifier_predicts_exactly_like_the_original(
    classifier: IntentClassifier, encoder: SentenceEncoder, tmp_path: Path
) -> None:
    path = tmp_path / "intents.npz"
    classifier.save(path)
    restored = IntentClassifier.load(path, encoder)
    for message in ("refund me", "new address", "card stolen", "cancel plan"):
        assert restored.predict(message, k=4) == classifier.predict(message, k=4)


def test_cache_is_reused_for_the_same_examples_and_missed_when_they_change(
    encoder: SentenceEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_or_train(EXAMPLES, tmp_path, encoder)
    trained_again: list[int] = []
    real_train = IntentClassifier.train

    def counting_train(*args: Any, **kwargs: Any) -> IntentClassifier:
        trained_again.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(IntentClassifier, "train", counting_train)
    reused = load_or_train(EXAMPLES, tmp_path, encoder)
    assert trained_again == []
    assert reused.predict("refund me") == first.predict("refund me")
    load_or_train([*EXAMPLES, ("terminate my plan", "cancel_subscription")], tmp_path, encoder)
    assert trained_again == [1]
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_corrupt_cache_file_is_retrained_not_fatal(encoder: SentenceEncoder, tmp_path: Path) -> None:
    load_or_train(EXAMPLES, tmp_path, encoder)
    [cached] = list(tmp_path.glob("*.npz"))
    cached.write_bytes(b"not a classifier")
    assert load_or_train(EXAMPLES, tmp_path, encoder).predict("stop my subscription").label == "cancel_subscription"


def test_unwritable_cache_still_gives_a_trained_classifier(encoder: SentenceEncoder, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    classifier = load_or_train(EXAMPLES, blocker / "cache", encoder)
    assert classifier.predict("I want a refund").label == "refund_request"


def test_two_intents_are_enough_to_train(encoder: SentenceEncoder) -> None:
    two = [e for e in EXAMPLES if e[1] in {"card_lost", "refund_request"}]
    prediction = IntentClassifier.train(two, encoder).predict("give me a refund", k=5)
    assert prediction.label == "refund_request"
    assert len(prediction.top) == 2


def test_one_intent_cannot_train(encoder: SentenceEncoder) -> None:
    with pytest.raises(ValueError, match="two intents"):
        IntentClassifier.train([("I lost my card", "card_lost")], encoder)


def test_an_intent_with_one_example_falls_back_to_the_default_temperature(encoder: SentenceEncoder) -> None:
    examples = [*EXAMPLES, ("what is your phone number", "contact")]
    assert IntentClassifier.train(examples, encoder).temperature == FALLBACK_TEMPERATURE


def test_few_shot_sample_is_reproducible_and_balanced() -> None:
    many = [(f"text {i}", f"label{i % 3}") for i in range(60)]
    first, again, other = (sample_per_label(many, 4, seed) for seed in (0, 0, 1))
    assert first == again != other
    assert sorted(label for _, label in first) == ["label0"] * 4 + ["label1"] * 4 + ["label2"] * 4


def test_eval_command_prints_both_settings_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train_csv, test_csv = tmp_path / "train.csv", tmp_path / "test.csv"
    train_csv.write_text("text,category\n" + "\n".join(f'"{t}",{label}' for t, label in EXAMPLES) + "\n")
    test_csv.write_text("text,category\nmy card is gone,card_lost\nrefund please,refund_request\n")
    assert eval_main(["--train", str(train_csv), "--test", str(test_csv), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"full", "ten_shot"}
    for setting in report.values():
        assert setting["n_test"] == 2 and setting["n_labels"] == 4
        assert 0.0 <= setting["accuracy"] <= 1.0 and setting["ms_per_query"] > 0
    assert report["full"]["shots"] is None and report["ten_shot"]["shots"] == 10


def test_eval_command_rejects_a_csv_without_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("message\nhello\n")
    assert eval_main(["--train", str(bad), "--test", str(bad), "--json"]) == 2
    assert "need columns" in capsys.readouterr().err
