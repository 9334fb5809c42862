"""Phone-number spotting: shape first, then the words around the number.

A bare run of digits is far more often an order id, an amount or a date in a support ticket
than a phone number, so only unmistakable shapes (+CC, 00CC, US (555) 123-4567, a national
number with a trunk 0 and separators) are taken without context; every other digit run needs
a phone word nearby ("call me on", "Mobile:", "teléfono", "Handy") and no id word closer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from shared.guardrails._text import compile_alternation

# A run of digits with the separators phone numbers use; newlines are deliberately excluded so
# two numbers on consecutive lines stay two candidates.
_CANDIDATE = re.compile(
    r"(?<![\w+#/@.\-$€£])"
    r"(?:\+|\(\+?)?\d[\d ().\-]{5,24}\d"
    r"(?:\s?(?:x|ext\.?|extension)\s?\d{1,5})?"
    r"(?![\w@%$€£]|[.,]\d)",
    re.IGNORECASE,
)
_EXTENSION = re.compile(r"\s?(?:x|ext\.?|extension)\s?\d{1,5}$", re.IGNORECASE)
_NANP = re.compile(r"^(?:\+?1[ .\-]?)?(?:\(\d{3}\)\s?|\d{3}[ .\-])\d{3}[ .\-]\d{4}$")
_ISO_DATE = re.compile(r"^(\d{4})[-./](\d{1,2})[-./](\d{1,2})\b")
_LOCAL_DATE = re.compile(r"^(\d{1,2})[-./](\d{1,2})[-./](?:\d{4}|\d{2})\b")
_SEPARATOR = re.compile(r"[ ().\-]")

_CUE_WORDS = (
    r"phone|telephone|tel|mobile|cell|cellphone|fax|desk|landline|hotline|whatsapp|sms"
    r"|call|calling|dial|ring|text|reach|contact|answering|messages|registered"
    r"|my number|phone number|contact number|mobile number|cell number"
    r"|tel[eé]fono|m[oó]vil|celular|ll[aá]m[ae]me|llamar|n[uú]mero de tel[eé]fono"
    r"|t[eé]l[eé]phone|portable|appelez|appeler|joindre|num[eé]ro de t[eé]l[eé]phone"
    r"|telefon|handy|rufnummer|telefonnummer|handynummer|anrufen|erreichbar|mobil"
)
_BLOCKER_WORDS = (
    r"order|orders|invoice|inv|receipt|ticket|case|tracking|shipment|parcel|package|ref"
    r"|reference|confirmation|booking|reservation|account|acct|iban|sort code|routing|swift"
    r"|member|membership|customer id|amount|total|price|paid|charged|refund|sku|serial|model"
    r"|pedido|factura|cuenta|commande|facture|compte|bestellung|rechnung|sendung|konto"
    r"|kundennummer|auftrag"
)
# One pass over the words before the number; the last phone word or id word wins.
_CONTEXT = compile_alternation(
    (rf"\b(?P<cue>{_CUE_WORDS})\b", rf"\b(?P<blocker>{_BLOCKER_WORDS})\b", r"(?P<currency>[$€£])"),
    re.IGNORECASE,
)
_RIGHT_CUE = re.compile(
    r"^\s*[-–(]?\s*(?:office|fax|mobile|cell|home|work|phone|tel|landline|m[oó]vil|portable|handy)\b",  # noqa: RUF001
    re.IGNORECASE,
)
_LEFT_WINDOW = 40


def _starts_with_date(core: str) -> bool:
    iso = _ISO_DATE.match(core)
    if iso:
        return 1 <= int(iso.group(2)) <= 12 and 1 <= int(iso.group(3)) <= 31
    local = _LOCAL_DATE.match(core)
    if local:
        first, second = int(local.group(1)), int(local.group(2))
        # 05/17/24 or 17.05.2024: both parts are day-or-month, one of them a month.
        return 1 <= first <= 31 and 1 <= second <= 31 and min(first, second) <= 12
    return False


def _nearest_context(window: str) -> str | None:
    """'cue' or 'blocker' for the context word closest to the number, None if there is none."""
    nearest = None
    for match in _CONTEXT.finditer(window):
        nearest = "cue" if match.group("cue") else "blocker"
    return nearest


def _is_phone(text: str, start: int, end: int) -> bool:
    candidate = text[start:end]
    core = _EXTENSION.sub("", candidate)
    digits = sum(ch.isdigit() for ch in core)
    if not 7 <= digits <= 15 or _starts_with_date(core):
        return False
    if core.startswith(("+", "(+")):
        return digits >= 8
    nearest = _nearest_context(text[max(0, start - _LEFT_WINDOW) : start])
    if _RIGHT_CUE.match(text[end : end + 16]):
        nearest = "cue"
    if nearest == "blocker":
        return False
    has_separator = bool(_SEPARATOR.search(core.strip("()")))
    international_00 = core.startswith("00") and core[2:3] not in ("", "0")
    national_trunk_0 = core.lstrip("(").startswith("0") and not core.startswith("00")
    if international_00 and digits >= 10 and has_separator:
        return True
    if _NANP.match(core):
        return True
    if national_trunk_0 and has_separator and 9 <= digits <= 12:
        return True
    return nearest == "cue"


def find_phones(text: str) -> Iterator[tuple[int, int]]:
    """Yield (start, end) of each phone number in ``text``."""
    for match in _CANDIDATE.finditer(text):
        start, end = match.span()
        # The run may have swallowed a closing parenthesis or separator that belongs to prose.
        while end > start and not text[end - 1].isdigit():
            end -= 1
        if _is_phone(text, start, end):
            yield start, end
