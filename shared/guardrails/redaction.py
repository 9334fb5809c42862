"""PII redaction before any model, log line or tool output sees a customer's text.

Nothing returned here carries an original value: a `Redaction` holds the redacted text and,
for each redacted piece, only its kind, its offsets in the original text and the placeholder
used (a card placeholder keeps the last four digits, which policy allows).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar, cast

from shared.guardrails._phones import find_phones
from shared.guardrails._secrets import find_secrets

PiiKind = Literal["api_key", "iban", "card", "ssn", "email", "secret", "phone"]

# When two findings overlap the more specific one wins: a Luhn-valid card is not also a phone
# number, an IBAN's digits are not a card.
_PRIORITY: dict[PiiKind, int] = {
    "api_key": 0,
    "iban": 1,
    "card": 2,
    "ssn": 3,
    "email": 4,
    "secret": 5,
    "phone": 6,
}
_PLACEHOLDER: dict[PiiKind, str] = {
    "api_key": "[secret]",
    "iban": "[iban]",
    "ssn": "[ssn]",
    "email": "[email]",
    "secret": "[secret]",
    "phone": "[phone]",
}


@dataclass(frozen=True, slots=True)
class RedactedSpan:
    """One redacted piece: what it was and where, never the value itself."""

    kind: PiiKind
    start: int  # offsets in the original text
    end: int
    placeholder: str


@dataclass(frozen=True, slots=True)
class Redaction:
    text: str
    spans: tuple[RedactedSpan, ...] = ()

    @property
    def redacted(self) -> bool:
        return bool(self.spans)

    @property
    def kinds(self) -> frozenset[PiiKind]:
        return frozenset(span.kind for span in self.spans)


_CARD = re.compile(r"(?<![\w+\-.,/])\d(?:[ -]?\d){12,18}(?![\w\-]|[.,]\d)")
# Four groups of four with dots or line breaks between them ("4242.4242.4242.4242", a
# number pasted over lines): too regular to be a version or a date, and Luhn checks it too.
_CARD_GROUPED = re.compile(r"(?<![\w.])\d{4}(?:(?:\.|\r?\n)\d{4}){3}(?![\w]|\.\d)")
# An id word right before the number means an order or ticket id, even glued to the word
# before it ("theorder 4242…"): masking an order id as a card breaks the conversation.
_CARD_ID_CONTEXT = re.compile(
    r"(?:order|purchase|invoice|tracking|ticket|ref|reference|booking|reservation|confirmation"
    r"|shipment|parcel|package|case|claim|pedido|compra|factura|commande|achat|facture|bestellung"
    r"|kauf|rechnung|sendung|auftrag)\b\s*(?:number|no\.?|nr\.?|id|#|n[º°o]\.?)?\s*[:#]?\s*$",
    re.IGNORECASE,
)
# US social security numbers: the dashed form is distinctive enough alone; nine bare or spaced
# digits only count after an SSN word.
_SSN_DASHED = re.compile(r"(?<![\w\-])(\d{3})-(\d{2})-(\d{4})(?![\w\-])")
_SSN_WORDED = re.compile(
    r"\b(?:ssn|social security(?: number| no\.?)?|itin)\b\W{0,12}(?:is\W{1,3})?((\d{3})[ ]?(\d{2})[ ]?(\d{4}))\b",
    re.IGNORECASE,
)
_EMAIL = re.compile(
    r"(?<![\w.+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]*@"
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}\b"
)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]){11,30}(?![A-Za-z0-9])")
# Official IBAN lengths by country (SWIFT IBAN registry); an unknown country is not an IBAN.
_IBAN_LENGTHS = {
    item[:2]: int(item[2:])
    for item in """
    AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 DO28 EE20
    EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 JO30
    KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MR27 MT31 MU30 NL18 NO15 PK24
    PL28 PS29 PT25 QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29
    VA22 VG24 XK20 BI27 DJ27 FK18 HN28 MN20 NI28 OM23 RU33 SD18 YE30
    """.split()  # noqa: SIM905 - the registry table, kept compact
}


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(compact: str) -> bool:
    compact = compact.upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _find_cards(text: str) -> Iterator[tuple[int, int, str]]:
    for match in _CARD_GROUPED.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if luhn_valid(digits):
            yield match.start(), match.end(), digits[-4:]
    for match in _CARD.finditer(text):
        if _CARD_ID_CONTEXT.search(text[max(0, match.start() - 30) : match.start()]):
            continue
        # A card may run straight into another number ("4242… 12/27"); drop trailing groups
        # until the digits check out.
        candidate = match.group()
        while candidate:
            digits = re.sub(r"\D", "", candidate)
            if len(digits) < 13:
                break
            if luhn_valid(digits):
                yield match.start(), match.start() + len(candidate), digits[-4:]
                break
            cut = max(candidate.rfind(" "), candidate.rfind("-"))
            candidate = candidate[:cut] if cut > 0 else ""


def _ssn_plausible(area: str, group: str, serial: str) -> bool:
    return area not in ("000", "666") and group != "00" and serial != "0000"


def _find_ssns(text: str) -> Iterator[tuple[int, int]]:
    for match in _SSN_DASHED.finditer(text):
        if _ssn_plausible(*match.groups()):
            yield match.span()
    for match in _SSN_WORDED.finditer(text):
        if _ssn_plausible(match.group(2), match.group(3), match.group(4)):
            yield match.span(1)


def _find_ibans(text: str) -> Iterator[tuple[int, int]]:
    for match in _IBAN.finditer(text):
        # The pattern may have eaten words after the IBAN ("… 3000 please"); try shorter
        # prefixes that end on a character boundary until the checksum holds.
        candidate = match.group()
        for end in range(len(candidate), 14, -1):
            if end < len(candidate) and candidate[end] not in " -":
                continue
            if iban_valid(re.sub(r"[ \-]", "", candidate[:end])):
                yield match.start(), match.start() + end
                break


def _findings(text: str, customer_email: str | None) -> list[RedactedSpan]:
    found: list[RedactedSpan] = []
    for kind, start, end in find_secrets(text):
        found.append(RedactedSpan(kind, start, end, _PLACEHOLDER[kind]))
    for start, end in _find_ibans(text):
        found.append(RedactedSpan("iban", start, end, _PLACEHOLDER["iban"]))
    for start, end, last_four in _find_cards(text):
        found.append(RedactedSpan("card", start, end, f"[card ending {last_four}]"))
    for start, end in _find_ssns(text):
        found.append(RedactedSpan("ssn", start, end, _PLACEHOLDER["ssn"]))
    own_email = customer_email.strip().casefold() if customer_email else None
    for match in _EMAIL.finditer(text):
        if match.group().casefold() != own_email:
            found.append(RedactedSpan("email", match.start(), match.end(), _PLACEHOLDER["email"]))
    for start, end in find_phones(text):
        found.append(RedactedSpan("phone", start, end, _PLACEHOLDER["phone"]))
    return found


def _without_overlaps(found: list[RedactedSpan]) -> list[RedactedSpan]:
    kept: list[RedactedSpan] = []
    for span in sorted(found, key=lambda s: (_PRIORITY[s.kind], s.start, -s.end)):
        if all(span.end <= other.start or span.start >= other.end for other in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


# What is never stored: a full card number (PCI DSS), an IBAN, an SSN, a password or key.
# Emails and phone numbers stay in the stored text, for the human who picks the ticket up.
STORED_KINDS: frozenset[PiiKind] = frozenset({"card", "iban", "ssn", "secret", "api_key"})


def redact(text: str, *, customer_email: str | None = None, kinds: frozenset[PiiKind] | None = None) -> Redaction:
    """Replace cards, IBANs, SSNs, other people's emails, phones and secrets with placeholders.

    The customer's own email (compared case-insensitively) is kept: agents need it to find
    the account, and it is already on the ticket. ``kinds`` limits what is replaced.
    """
    if not text:
        return Redaction(text)
    findings = _findings(text, customer_email)
    if kinds is not None:
        findings = [span for span in findings if span.kind in kinds]
    spans = _without_overlaps(findings)
    if not spans:
        return Redaction(text)
    pieces: list[str] = []
    cursor = 0
    for span in spans:
        pieces.append(text[cursor : span.start])
        pieces.append(span.placeholder)
        cursor = span.end
    pieces.append(text[cursor:])
    return Redaction("".join(pieces), tuple(spans))


# Values under these keys are secret whatever they look like (normalised: lower case, no - or _).
_SECRET_KEYS = frozenset(
    """
    password passwd passphrase secret clientsecret token accesstoken refreshtoken idtoken apikey
    xapikey authorization proxyauthorization cookie setcookie privatekey pin otp cvv cvc cardnumber
    pan
    """.split()  # noqa: SIM905 - a word list reads better as prose
)
_MAX_DEPTH = 32
T = TypeVar("T")


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.replace("-", "").replace("_", "").lower() in _SECRET_KEYS


def _redact_value(
    value: object, customer_email: str | None, depth: int, kinds: frozenset[PiiKind] | None = None
) -> object:
    if isinstance(value, str):
        return redact(value, customer_email=customer_email, kinds=kinds).text
    if depth >= _MAX_DEPTH:
        # Deeper than any log record or tool output we produce: refuse rather than recurse.
        return "[redacted: too deep]"
    if isinstance(value, Mapping):
        return {
            key: (
                "[secret]"
                if _is_secret_key(key) and isinstance(value_, (str, int, bytes))
                else _redact_value(value_, customer_email, depth + 1, kinds)
            )
            for key, value_ in value.items()
        }
    if isinstance(value, list | tuple):
        items = [_redact_value(item, customer_email, depth + 1, kinds) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, bytes | bytearray):
        return "[bytes]"
    return value


def redact_mapping(obj: T, *, customer_email: str | None = None) -> T:
    """Redact every string inside nested dicts, lists and tuples (log records, tool outputs).

    Returns a new structure of the same shape; values under secret-looking keys ("password",
    "api_key", "Authorization", …) are replaced outright. Other objects are returned as they
    are: dump pydantic models first (`model_dump()`).
    """
    return cast(T, _redact_value(obj, customer_email, 0))


def for_storage(text: str) -> str:
    """The text as it may be stored: cards, IBANs, SSNs and secrets replaced (STORED_KINDS)."""
    return redact(text, kinds=STORED_KINDS).text


def mapping_for_storage(obj: T) -> T:
    """``for_storage`` for every string of a nested structure (tool calls, agent results), with
    the values under secret-looking keys replaced outright, as ``redact_mapping`` does."""
    return cast(T, _redact_value(obj, None, 0, STORED_KINDS))
