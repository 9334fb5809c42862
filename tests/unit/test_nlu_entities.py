from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from shared.nlu.entities import DateMention, extract_entities

# Tuesday 24 November 2026, 23:30 UTC: already Wednesday 25 November in Tokyo.
NOW = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)


def days(mentions: list[DateMention]) -> list[tuple[date, date]]:
    return [(m.start, m.end) for m in mentions]


def test_payment_invoice_and_order_ids_are_found_by_kind() -> None:
    found = extract_entities(
        "Refund pay_1AbC23 on invoice inv_9x8y7z for ord_abc123, order #12345 and order number 987654",
        now=NOW,
    )
    assert found.payment_ids == ["pay_1AbC23"]
    assert found.invoice_ids == ["inv_9x8y7z"]
    assert found.order_ids == ["ord_abc123", "12345", "987654"]


def test_words_that_merely_contain_an_id_prefix_are_not_ids() -> None:
    found = extract_entities("I want to repay_it and my invoice is late, order soon", now=NOW)
    assert found.payment_ids == [] and found.invoice_ids == [] and found.order_ids == []


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("I was charged $49 twice", Decimal("49"), "USD"),
        ("it cost 49.00 USD", Decimal("49.00"), "USD"),
        ("a fee of €12,50 appeared", Decimal("12.50"), "EUR"),
        ("they took 1.234,56 € from me", Decimal("1234.56"), "EUR"),
        ("a payment of $1,234.56", Decimal("1234.56"), "USD"),
        ("£5 for nothing", Decimal("5"), "GBP"),
        ("about 20 euros", Decimal("20"), "EUR"),
        ("EUR 30 was debited", Decimal("30"), "EUR"),
    ],
)
def test_amount_with_currency_is_parsed_to_decimal_and_iso_code(text: str, amount: Decimal, currency: str) -> None:
    [money] = extract_entities(text, now=NOW).amounts
    assert (money.amount, money.currency) == (amount, currency)


def test_numbers_without_currency_are_not_amounts() -> None:
    found = extract_entities("order #12345 arrived 3 days ago on 2026-11-03, 2 items", now=NOW)
    assert found.amounts == []


def test_email_addresses_are_found_whole() -> None:
    found = extract_entities("write to jo.doe+billing@mail.example.co.uk or ops@acme.io.", now=NOW)
    assert found.emails == ["jo.doe+billing@mail.example.co.uk", "ops@acme.io"]


def test_absolute_dates_with_and_without_year() -> None:
    found = extract_entities("charged on 2026-11-03, again on 3 Nov and on Dec 20th, 2025", now=NOW)
    assert days(found.dates) == [
        (date(2026, 11, 3), date(2026, 11, 3)),
        (date(2026, 11, 3), date(2026, 11, 3)),
        (date(2025, 12, 20), date(2025, 12, 20)),
    ]
    assert not any(m.relative for m in found.dates)


def test_a_date_without_year_is_the_occurrence_nearest_to_now() -> None:
    january = datetime(2027, 1, 5, 12, tzinfo=UTC)
    [mention] = extract_entities("the charge on 20 December", now=january).dates
    assert mention.start == date(2026, 12, 20)


def test_impossible_dates_are_ignored() -> None:
    assert extract_entities("on 2026-02-30 or 31 April", now=NOW).dates == []


def test_relative_dates_resolve_in_the_customers_timezone() -> None:
    # In Tokyo it is already Wednesday the 25th, so "yesterday" is the 24th.
    [tokyo] = extract_entities("it failed yesterday", now=NOW, timezone="Asia/Tokyo").dates
    [utc] = extract_entities("it failed yesterday", now=NOW, timezone="UTC").dates
    assert tokyo.start == date(2026, 11, 24)
    assert utc.start == date(2026, 11, 23)
    assert tokyo.relative


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("3 days ago", date(2026, 11, 22), date(2026, 11, 22)),
        ("a week ago", date(2026, 11, 18), date(2026, 11, 18)),
        ("two months ago", date(2026, 9, 25), date(2026, 9, 25)),
        ("the day before yesterday", date(2026, 11, 23), date(2026, 11, 23)),
        ("last week", date(2026, 11, 16), date(2026, 11, 22)),
        ("last month", date(2026, 10, 1), date(2026, 10, 31)),
        ("this month", date(2026, 11, 1), date(2026, 11, 30)),
        ("next week", date(2026, 11, 30), date(2026, 12, 6)),
        ("last year", date(2025, 1, 1), date(2025, 12, 31)),
        ("next friday", date(2026, 11, 27), date(2026, 11, 27)),
        ("next wednesday", date(2026, 12, 2), date(2026, 12, 2)),
        ("in the past 7 days", date(2026, 11, 19), date(2026, 11, 25)),
        ("last friday", date(2026, 11, 20), date(2026, 11, 20)),
        ("last wednesday", date(2026, 11, 18), date(2026, 11, 18)),
        ("on wednesday", date(2026, 11, 25), date(2026, 11, 25)),
        ("in 2 weeks", date(2026, 12, 9), date(2026, 12, 9)),
    ],
)
def test_relative_date_phrases_resolve_to_days(text: str, start: date, end: date) -> None:
    [mention] = extract_entities(f"It was {text}.", now=NOW, timezone="Asia/Tokyo").dates
    assert (mention.start, mention.end) == (start, end)


def test_a_month_back_from_the_31st_lands_on_the_last_day_of_the_shorter_month() -> None:
    [mention] = extract_entities("a month ago", now=datetime(2026, 3, 31, 12, tzinfo=UTC)).dates
    assert mention.start == date(2026, 2, 28)


def test_last_month_in_january_is_december_of_the_year_before() -> None:
    [mention] = extract_entities("last month", now=datetime(2027, 1, 15, 12, tzinfo=UTC)).dates
    assert (mention.start, mention.end) == (date(2026, 12, 1), date(2026, 12, 31))


def test_naive_now_is_read_as_local_wall_clock_time() -> None:
    [mention] = extract_entities("today", now=datetime(2026, 11, 24, 23, 30), timezone="Asia/Tokyo").dates
    assert mention.start == date(2026, 11, 24)


def test_message_without_entities_yields_empty_lists() -> None:
    found = extract_entities("Hi, my card does not work", now=NOW)
    assert found.model_dump() == {
        "payment_ids": [],
        "invoice_ids": [],
        "order_ids": [],
        "amounts": [],
        "emails": [],
        "dates": [],
    }
