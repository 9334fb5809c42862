from __future__ import annotations

from orchestrator.delivery import backoff_s, sign, verify_signature
from shared.settings import Settings


def test_signature_verifies_over_the_exact_body() -> None:
    body = b'{"reply":"hi"}'
    sig = sign("s3cret", "1700000000", body)
    assert verify_signature("s3cret", "1700000000", sig, body, now=1700000010)
    assert not verify_signature("s3cret", "1700000000", sig, body + b" ", now=1700000010)
    assert not verify_signature("other", "1700000000", sig, body, now=1700000010)


def test_stale_timestamp_is_rejected() -> None:
    body = b"{}"
    sig = sign("s", "1700000000", body)
    assert not verify_signature("s", "1700000000", sig, body, now=1700000000 + 301)


def test_backoff_grows_and_is_capped() -> None:
    s = Settings(delivery_backoff_s=1.0, delivery_backoff_max_s=10)
    assert [backoff_s(n, s) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]


def test_a_timestamp_that_is_not_a_finite_number_or_too_far_ahead_is_rejected() -> None:
    body = b"{}"
    for timestamp in ("nan", "NaN", "inf", "-inf", str(1700000000 + 301)):
        sig = sign("s", timestamp, body)
        assert not verify_signature("s", timestamp, sig, body, now=1700000000), timestamp
