"""Entities in a customer message: ids, amounts, emails and dates; regex only.

Dates are resolved to calendar days in the customer's timezone against a given
``now``, so "yesterday" means the same day to the customer and to the tools.
A mention that names a period ("last week", "this month") becomes the range of
its calendar days, Monday to Sunday for a week; the caller clips it to today if
only the past makes sense.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field


class Money(BaseModel):
    amount: Decimal
    currency: str = Field(description="ISO 4217 code")
    text: str


class DateMention(BaseModel):
    text: str
    start: date
    end: date = Field(description="same as start unless the mention names a period")
    relative: bool


class Entities(BaseModel):
    payment_ids: list[str] = Field(default_factory=list)
    invoice_ids: list[str] = Field(default_factory=list)
    order_ids: list[str] = Field(default_factory=list)
    amounts: list[Money] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    dates: list[DateMention] = Field(default_factory=list)


_I = re.IGNORECASE
_PAYMENT = re.compile(r"\bpay_[A-Za-z0-9]{3,}\b")
_INVOICE = re.compile(r"\binv_[A-Za-z0-9]{3,}\b")
_ORDER = re.compile(
    r"\b(ord_[A-Za-z0-9]{3,})\b"
    r"|(?<![\w&#])#(\d{3,})\b"
    r"|\border\s+(?:number\s+|no\.?\s*|id\s+)?#?(\d{4,})\b",
    _I,
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")

# Thousands groups of three, then at most two decimals, with either separator:
# "1,234.56", "1.234,56", "12,50", "49".
_NUMBER = r"\d+(?:[.,]\d{3})*(?:[.,]\d{1,2})?"
_SYMBOLS = {"$": "USD", "us$": "USD", "c$": "CAD", "a$": "AUD", "€": "EUR", "£": "GBP", "¥": "JPY"}
_WORDS = {
    "usd": "USD", "dollar": "USD", "dollars": "USD", "bucks": "USD",
    "eur": "EUR", "euro": "EUR", "euros": "EUR",
    "gbp": "GBP", "pound": "GBP", "pounds": "GBP",
    "chf": "CHF", "cad": "CAD", "aud": "AUD", "jpy": "JPY",
}  # fmt: skip
_SYMBOL = r"(?P<symbol>us\$|c\$|a\$|[$€£¥])"
_CODE = r"(?P<code>" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")"
_AMOUNTS = [
    re.compile(rf"(?<![\w.,]){_SYMBOL}\s?(?P<number>{_NUMBER})(?![\d])", _I),
    re.compile(rf"\b(?:usd|eur|gbp|chf|cad|aud|jpy)\s?(?P<number>{_NUMBER})(?![\d])", _I),
    re.compile(rf"(?<![\w.,])(?P<number>{_NUMBER})\s?(?:{_SYMBOL}|{_CODE}\b)", _I),
]

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_MONTH = (
    r"(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?"
    r"|aug(?:ust)?|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+(?P<year>\d{4}))?"
_ISO_DATE = re.compile(r"\b(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})\b")
_DAY_MONTH = re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}{_YEAR}\b", _I)
_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+{_DAY}{_YEAR}\b", _I)

_COUNTS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
           "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}  # fmt: skip
_NUMERAL = r"\d{1,3}|" + "|".join(_COUNTS)
_UNITS = r"day|week|month|year"
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_RELATIVE = re.compile(
    r"\b(?:(?P<day_before>(?:the\s+)?day\s+before\s+yesterday)|(?P<named>today|tonight|yesterday|tomorrow)"
    rf"|(?P<count>{_NUMERAL})\s+(?P<unit>{_UNITS})s?\s+ago"
    rf"|in\s+(?P<ahead>{_NUMERAL})\s+(?P<ahead_unit>{_UNITS})s?"
    rf"|(?:last|past|previous)\s+(?P<span>\d{{1,3}})\s+(?P<span_unit>days|weeks)"
    r"|(?P<which>last|past|previous|this|next)\s+(?P<period>week|month|year)"
    rf"|(?P<weekday_kind>last|on|next)\s+(?P<weekday>{'|'.join(_WEEKDAYS)}))\b",
    _I,
)


class _Spans:
    """Character ranges already claimed, so one piece of text is one entity."""

    def __init__(self) -> None:
        self._taken: list[tuple[int, int]] = []

    def claim(self, match: re.Match[str]) -> bool:
        start, end = match.span()
        if any(start < e and s < end for s, e in self._taken):
            return False
        self._taken.append((start, end))
        return True


def _parse_number(text: str) -> Decimal | None:
    last_dot, last_comma = text.rfind("."), text.rfind(",")
    decimal_at = max(last_dot, last_comma)
    # A separator followed by exactly three digits groups thousands ("1,234").
    if decimal_at != -1 and len(text) - decimal_at - 1 == 3:
        decimal_at = -1
    whole = text if decimal_at == -1 else text[:decimal_at]
    fraction = "" if decimal_at == -1 else text[decimal_at + 1 :]
    digits = re.sub(r"[.,]", "", whole) + ("." + fraction if fraction else "")
    try:
        return Decimal(digits)
    except InvalidOperation:
        return None


def _amounts(text: str, spans: _Spans) -> Iterator[tuple[int, Money]]:
    for pattern in _AMOUNTS:
        for match in pattern.finditer(text):
            groups = match.groupdict()
            marker = (groups.get("symbol") or groups.get("code") or match.group(0)[:3]).lower()
            currency = _SYMBOLS.get(marker) or _WORDS.get(marker)
            amount = _parse_number(groups["number"])
            if currency and amount is not None and spans.claim(match):
                yield match.start(), Money(amount=amount, currency=currency, text=match.group(0))


def _month_number(name: str) -> int:
    return _MONTHS.index(name[:3].lower()) + 1


def _safe_date(year: int, month: int, day: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _nearest_year(month: int, day: int, today: date) -> date | None:
    """A day-and-month without a year means the occurrence closest to today."""
    candidates = [d for y in (today.year - 1, today.year, today.year + 1) if (d := _safe_date(y, month, day))]
    return min(candidates, key=lambda d: abs((d - today).days), default=None)


def _shift_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    for last_day in range(day.day, 27, -1):  # clamp 31 March minus a month to 28/29 February
        if shifted := _safe_date(year, month + 1, last_day):
            return shifted
    return date(year, month + 1, min(day.day, 28))


def _shift(today: date, count: int, unit: str) -> date:
    unit = unit.lower()
    if unit == "day":
        return today + timedelta(days=count)
    if unit == "week":
        return today + timedelta(weeks=count)
    return _shift_months(today, count * (12 if unit == "year" else 1))


def _period(which: str, period: str, today: date) -> tuple[date, date]:
    """The whole calendar week, month or year, this one or the one before or after."""
    step = {"this": 0, "next": 1}.get(which, -1)
    if period == "week":
        first = today - timedelta(days=today.weekday()) + timedelta(weeks=step)
        return first, first + timedelta(days=6)
    if period == "month":
        first = _shift_months(today.replace(day=1), step)
        return first, _shift_months(first, 1) - timedelta(days=1)
    year = today.year + step
    return date(year, 1, 1), date(year, 12, 31)


def _count(word: str) -> int:
    return _COUNTS.get(word) or int(word)


def _relative(match: re.Match[str], today: date) -> tuple[date, date]:
    g = {k: (v.lower() if v else v) for k, v in match.groupdict().items()}
    if g["day_before"]:
        day = today - timedelta(days=2)
    elif g["named"]:
        day = today + timedelta(days={"yesterday": -1, "tomorrow": 1}.get(g["named"], 0))
    elif g["count"]:
        day = _shift(today, -_count(g["count"]), g["unit"])
    elif g["ahead"]:
        day = _shift(today, _count(g["ahead"]), g["ahead_unit"])
    elif g["span"]:
        days = int(g["span"]) * (7 if g["span_unit"] == "weeks" else 1)
        return today - timedelta(days=days - 1), today  # "last 7 days" counts today
    elif g["period"]:
        return _period(g["which"], g["period"], today)
    else:
        # "last friday" is before today, "next friday" after it; "on friday" may be today.
        weekday = _WEEKDAYS.index(g["weekday"])
        if g["weekday_kind"] == "next":
            day = today + timedelta(days=(weekday - today.weekday()) % 7 or 7)
        else:
            back = (today.weekday() - weekday) % 7
            day = today - timedelta(days=back or (7 if g["weekday_kind"] == "last" else 0))
    return day, day


def _dates(text: str, today: date, spans: _Spans) -> Iterator[tuple[int, DateMention]]:
    absolute: list[tuple[re.Pattern[str], Callable[[re.Match[str]], date | None]]] = [
        (_ISO_DATE, lambda m: _safe_date(int(m["year"]), int(m["month"]), int(m["day"]))),
        (_DAY_MONTH, lambda m: _calendar_day(m, today)),
        (_MONTH_DAY, lambda m: _calendar_day(m, today)),
    ]
    for pattern, resolve in absolute:
        for match in pattern.finditer(text):
            day = resolve(match)
            if day is not None and spans.claim(match):
                yield match.start(), DateMention(text=match.group(0), start=day, end=day, relative=False)
    for match in _RELATIVE.finditer(text):
        if spans.claim(match):
            start, end = _relative(match, today)
            yield match.start(), DateMention(text=match.group(0), start=start, end=end, relative=True)


def _calendar_day(match: re.Match[str], today: date) -> date | None:
    month, day = _month_number(match["month"]), int(match["day"])
    if match["year"]:
        return _safe_date(int(match["year"]), month, day)
    return _nearest_year(month, day, today)


def _local_today(now: datetime, timezone: str | tzinfo) -> date:
    zone = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    # A naive ``now`` is taken to be wall-clock time in the customer's zone already.
    return now.astimezone(zone).date() if now.tzinfo else now.date()


def extract_entities(text: str, *, now: datetime, timezone: str | tzinfo = "UTC") -> Entities:
    """Every id, amount, email and date mentioned in ``text``, in reading order."""
    spans = _Spans()
    entities = Entities()
    emails = [m for m in _EMAIL.finditer(text) if spans.claim(m)]
    entities.emails = [m.group(0) for m in emails]
    entities.payment_ids = [m.group(0) for m in _PAYMENT.finditer(text) if spans.claim(m)]
    entities.invoice_ids = [m.group(0) for m in _INVOICE.finditer(text) if spans.claim(m)]
    entities.order_ids = [next(g for g in m.groups() if g) for m in _ORDER.finditer(text) if spans.claim(m)]
    # Dates before amounts, so the digits of "2026-11-03" are never read as money.
    entities.dates = [d for _, d in sorted(_dates(text, _local_today(now, timezone), spans), key=_first)]
    entities.amounts = [a for _, a in sorted(_amounts(text, spans), key=_first)]
    return entities


def _first(item: tuple[int, object]) -> int:
    return item[0]
