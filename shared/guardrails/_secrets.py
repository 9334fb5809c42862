"""Secrets a customer pastes: passwords, one-time codes, PINs, API keys and tokens.

Only the value is replaced ("my password is [secret]"), so the model still understands that
the customer shared a password — and can tell them never to do that again.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Literal

from shared.guardrails._text import compile_alternation, fold

SecretKind = Literal["secret", "api_key"]

_VERB = r"(?:is|was|is now|now is|will be|would be|=|es|era|est|etait|était|ist|lautet|war)"
_CONNECTOR = rf"(?:\s+{_VERB}(?:\s*[:=])?|\s*[:=])\s*"
# Typographic quotes are deliberate: customers paste passwords from word processors.
_VALUE = r"(?:[\"'“«‘](?P<quoted>[^\"'”»’\n]{1,64})[\"'”»’]|(?P<value>[^\s\"'“”«»]{2,64}))"  # noqa: RUF001

# Word-like secrets: the value can be anything, so a connector ("is", ":") is required, else
# "reset my password please" would lose the word "please".
_PASSWORD_WORDS = (
    r"password|passwd|passphrase|pass word|pwd|pw|contrase[ñn]a|clave(?: de acceso)?"
    r"|mot de passe|mdp|passwort|kennwort"
    r"|api[ _-]?key|secret(?: key)?|client secret|access token|auth token|token"
    r"|clave api|cl[ée] (?:api|secr[èe]te)|api-schl[üu]ssel|geheimer schl[üu]ssel"
)
_PASSWORD = compile_alternation((rf"\b(?:{_PASSWORD_WORDS})\b{_CONNECTOR}{_VALUE}",), re.IGNORECASE)

# Numeric secrets: short digit strings after a code/PIN word; no connector needed ("pin 1234").
_CODE_WORDS = (
    r"pin(?: code| number)?|otp|one[- ]time (?:pass)?code|one[- ]time password"
    r"|(?:verification|security|confirmation|auth|authentication|authorization|2fa|mfa|login"
    r"|sms|access) code|passcode|code|cvv2?|cvc2?|csc|tan"
    r"|c[óo]digo(?: de (?:verificaci[óo]n|seguridad|confirmaci[óo]n|acceso))?|c[óo]digo pin|nip"
    r"|code (?:de v[ée]rification|de s[ée]curit[ée]|de confirmation|pin|secret|à usage unique)"
    r"|best[äa]tigungscode|bestaetigungscode|sicherheitscode|einmalcode|einmalpasswort"
    r"|pr[üu]fcode|verifizierungscode"
)
_CODE = compile_alternation(
    (rf"\b(?:{_CODE_WORDS})\b(?:\s+{_VERB})?\s*[:=#]?\s*(?P<value>\d(?:[ -]?\d){{2,9}})(?![\w.,]?\d|\w)",),
    re.IGNORECASE,
)
# "promo code 123456", "error code 404", "zip code 94107" are not secrets.
_NOT_A_SECRET_CODE = re.compile(
    r"\b(?:promo|promotional|discount|coupon|voucher|gift|referral|zip|postal|post|area|country"
    r"|error|status|http|tracking|product|item|sku|reference|bank|sort|swift|bic|tax|vat|dial"
    r"|region|color|colour|style|dress|qr|bar|source)\s*$",
    re.IGNORECASE,
)
# Words that follow "my password is" in ordinary complaints rather than a password.
_NOT_A_PASSWORD = frozenset(
    """
    not wrong incorrect invalid expired expiring too being correct still no the a an my your it that
    this also same different now reset changed locked blocked working required needed missing empty
    weak strong long short forgotten lost stolen compromised ok okay fine good bad right set sent in
    on for to of and or but because so if when what which where how why always never already just
    only definitely probably correcto correcta incorrecta incorrecto mala malo no la el mi tu muy
    demasiado caducada bloqueada pas ne faux fausse trop le la mon ton incorrecte expire bloque
    nicht falsch zu kein keine mein das der die ungultig abgelaufen gesperrt richtig out safe mine yours
    """.split()  # noqa: SIM905 - a word list reads better as prose
)
_PREFIXED_KEYS = re.compile(
    r"-----BEGIN[A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]*PRIVATE KEY-----|\Z)"
    r"|\bsk-(?:proj-|live-|test-|ant-)?[A-Za-z0-9_\-]{16,}"
    r"|\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"
    r"|\bwhsec_[A-Za-z0-9]{16,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_\w{30,}"
    r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b|\bAIza[0-9A-Za-z_\-]{35}"
    r"|\bglpat-[A-Za-z0-9_\-]{20,}"
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r"|(?<=[Bb]earer )[A-Za-z0-9._~+/\-]{16,}=*"
)
# Substrings one of which every prefixed key contains: a plain `in` test per marker is far
# cheaper than running the alternation over a message that has none.
_KEY_MARKERS = (
    "-----BEGIN",
    "sk-",
    "sk_",
    "rk_",
    "whsec_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "AKIA",
    "AIza",
    "glpat-",
    "eyJ",
    "earer ",
)
_LONG_TOKEN = re.compile(r"(?<![\w\-@.])[A-Za-z0-9_\-]{32,}(?![\w\-@])")
_ALNUM_RUN = re.compile(r"[A-Za-z0-9]{20,}")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_MIN_ENTROPY_BITS = 3.5


def _entropy(token: str) -> float:
    counts = Counter(token)
    return -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())


def _looks_random(token: str) -> bool:
    """Mixed case, digits, a long unbroken run and high entropy: a key, not a product name."""
    return (
        any(c.isupper() for c in token)
        and any(c.islower() for c in token)
        and any(c.isdigit() for c in token)
        and _ALNUM_RUN.search(token) is not None
        and not _UUID.match(token)
        and _entropy(token) >= _MIN_ENTROPY_BITS
    )


def _password_value(match: re.Match[str]) -> tuple[int, int] | None:
    group = "quoted" if match.group("quoted") is not None else "value"
    start, end = match.span(group)
    value = match.group(group)
    if group == "value":
        # A trailing full stop or comma ends the sentence, not the password; "!" and "?" are
        # kept because passwords end with them far more often than sentences do here.
        stripped = value.rstrip(".,;)")
        end -= len(value) - len(stripped)
        value = stripped
        word = fold(value)  # accent-free, so the stop list needs one spelling per word
        if not value or word in _NOT_A_PASSWORD:
            return None
        if value.isalpha() and value.islower() and word.endswith(("ing", "ed")):
            return None
    return start, end


def find_secrets(text: str) -> Iterator[tuple[SecretKind, int, int]]:
    """Yield (kind, start, end) for each secret value in ``text``."""
    if any(marker in text for marker in _KEY_MARKERS):
        for match in _PREFIXED_KEYS.finditer(text):
            yield "api_key", match.start(), match.end()
    for match in _LONG_TOKEN.finditer(text):
        if _looks_random(match.group()):
            yield "api_key", match.start(), match.end()
    for match in _PASSWORD.finditer(text):
        span = _password_value(match)
        if span is not None:
            yield "secret", span[0], span[1]
    for match in _CODE.finditer(text):
        if not _NOT_A_SECRET_CODE.search(text[max(0, match.start() - 24) : match.start()]):
            yield "secret", match.start("value"), match.end("value")
