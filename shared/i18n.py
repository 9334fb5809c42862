"""Writing for the customer: their language, and dates and amounts in their locale and time zone.

The language is the customer's locale when we write it (English, Spanish, French, German),
else the message's, when at least two of its words are markers of one language and more
than of any other; English when neither says. Dates and amounts are formatted with Babel's
CLDR data: in the language of the text they appear in, with the customer's conventions
("3 January 2027" and "1 234,50 €" in an English reply to fr-FR, "3 de enero de 2027" in a
Spanish one), dates in the customer's time zone, so "renews on" is the customer's day,
not the server's.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal

LANGUAGES = ("en", "es", "fr", "de")

HOLDING_REPLIES = {
    "en": "Thanks for your message. I've passed it to a member of our support team, "
    "who will pick it up and reply to you here.",
    "es": "Gracias por tu mensaje. Se lo he pasado a una persona de nuestro equipo de soporte, "
    "que lo revisará y te responderá aquí.",
    "fr": "Merci pour votre message. Je l'ai transmis à un membre de notre équipe d'assistance, "
    "qui le prendra en charge et vous répondra ici.",
    "de": "Danke für Ihre Nachricht. Ich habe sie an ein Mitglied unseres Support-Teams weitergegeben, "
    "das sich darum kümmert und Ihnen hier antwortet.",
}
# After the parts of a message that were answered: what happens to the part that was not.
REST_PASSED_ON = {
    "en": "I've passed the rest of your message to a member of our support team, who will reply to you here.",
    "es": "He pasado el resto de tu mensaje a una persona de nuestro equipo de soporte, que te responderá aquí.",
    "fr": "J'ai transmis le reste de votre message à un membre de notre équipe d'assistance, qui vous répondra ici.",
    "de": "Den Rest Ihrer Nachricht habe ich an ein Mitglied unseres Support-Teams weitergegeben, "
    "das Ihnen hier antwortet.",
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words common in one of these languages and rare in the others' support messages.
_MARKERS = {
    "es": _words("hola gracias por favor mi cuenta tengo quiero pago puedo ayuda cobro pedido funciona"),
    "fr": _words("bonjour merci mon compte je ne pas suis veux paiement aide commande votre est"),
    "de": _words("hallo danke mein konto ich nicht bitte habe zahlung hilfe bestellung ist und"),
}


def language_of(locale: str | None, text: str = "") -> str:
    """The language to answer in (one of LANGUAGES)."""
    if locale:
        language = locale.replace("_", "-").split("-")[0].lower()
        if language in LANGUAGES:
            return language
    words = {w.strip(".,;:!?¿¡'\"()").lower() for w in text.split()}
    counts = {lang: len(words & markers) for lang, markers in _MARKERS.items()}
    best = max(counts, key=lambda lang: counts[lang])
    ranked = sorted(counts.values(), reverse=True)
    return best if ranked[0] >= 2 and ranked[0] > ranked[1] else "en"


def babel_locale(locale: str | None, language: str = "en") -> Locale:
    """How to write numbers and dates in text of ``language`` for a customer of ``locale``:
    the language's words with the customer's conventions where CLDR has them ("en" text for
    "fr-FR": en_FR, "3 January 2027", "1 234,50 €"), else the customer's own locale when it is
    of that language, else the language's default."""
    territory = None
    customer: Locale | None = None
    if locale:
        try:
            customer = Locale.parse(locale.replace("-", "_"))
            territory = customer.territory
        except (UnknownLocaleError, ValueError, TypeError):
            customer = None
    candidates: list[Locale | str] = []
    if territory:
        candidates.append(f"{language}_{territory}")
    if customer is not None and customer.language == language:
        candidates.append(customer)
    candidates += [language, "en"]
    for candidate in candidates:
        if isinstance(candidate, Locale):
            return candidate
        try:
            return Locale.parse(candidate)
        except (UnknownLocaleError, ValueError, TypeError):
            continue
    return Locale.parse("en")


def _zone(timezone: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def format_money(value: Any, currency: str | None, locale: Locale) -> str:
    """49.0, "USD" -> "$49.00" (en_US), "49,00 $US" (fr_FR), "49,00 $" (de_DE)."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if currency:
        try:
            return str(format_currency(number, currency.upper(), locale=locale))
        except (ValueError, KeyError):
            pass
    return str(format_decimal(number, format="#,##0.00", locale=locale))


def format_day(value: Any, locale: Locale, timezone: str | None) -> str:
    """An ISO date or timestamp as the customer's calendar day, written for their locale."""
    if isinstance(value, datetime):
        moment: datetime | date = value
    else:
        text = str(value)
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            try:
                moment = date.fromisoformat(text[:10])
            except ValueError:
                return text
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        moment = aware.astimezone(_zone(timezone)).date()
    return str(format_date(moment, format="long", locale=locale))
