"""Does the customer ask for a human? (EN, ES, FR, DE; accents and case ignored.)

A request needs a request shape — a verb of talking/transferring aimed at a person, a "want /
need" aimed at a staff word, or a bare "agent please" — so sentences that merely mention
people ("the person who delivered my order was rude", "my manager asked me for an invoice")
do not escalate.

Decided borderline cases (pinned by tests):
- "is a human reviewing refunds?", "am I talking to a bot?", "are you a real person?" are
  questions about the process, not requests: False. The reply can say it is automated; a
  follow-up "then get me a person" is a request.
- "how can I contact customer service?" asks for a channel (hours, phone number): False, in
  line with Bitext's contact_customer_service intent. "talk to a live agent" is True.
- Past tense ("I spoke to an agent yesterday") is a report, not a request: False.
"""

from __future__ import annotations

import re

from shared.guardrails._text import compile_alternation, fold, sentences

# --- English -------------------------------------------------------------------------------
_EN_QUAL = (
    r"(?:(?:a|an|the|some|your|one of your|any|another)\s+)?"
    r"(?:(?:real|live|actual|human|physical|proper|flesh and blood|bloody|damn|goddamn|fucking"
    r"|f\*+ing)\s+)*"
)
# Staff words: unambiguous when someone asks for them.
_EN_STAFF = (
    r"(?:human(?: being| agent)?s?|agent|rep|representative|operator|supervisor|manager"
    r"|live (?:agent|person|chat)|real person|actual person|real human|staff member"
    r"|customer (?:service|support|care) (?:agent|rep|representative|person)|support agent"
    r"|team member|employee|boss)(?!'s|\w)"
)
# Person words: only a request after a verb of talking or connecting.
_EN_PERSON = (
    rf"(?:{_EN_STAFF}|person|people|someone|somebody|somone|somneone|assistant|advisor|adviser|specialist)(?!'s|\w)"
)
_EN_TALK = r"(?:talk|talkk|speak|chat|chatt|communicate)(?:ing|ign)?"
_EN_CONTACT = r"(?:contact|contacting|reach|get in touch with|getting in touch with)"
_EN_RULES = (
    rf"\b{_EN_TALK}\s+(?:to|with)\s*{_EN_QUAL}{_EN_PERSON}",
    rf"\b{_EN_CONTACT}\s+{_EN_QUAL}{_EN_PERSON}",
    r"\b(?:connect|transfer|put|pass|forward|escalate|route|hand|switch)\s+"
    r"(?:me|us|this|it|my (?:case|ticket|issue|request|complaint|call|chat))?\s*(?:through|over|back)?\s*"
    rf"(?:to|with)\s+{_EN_QUAL}{_EN_PERSON}",
    rf"\b(?:get|give|find|bring|send)\s+(?:me|us)\s+{_EN_QUAL}{_EN_PERSON}",
    r"\b(?:want|need|would like|wanna|request|demand|prefer|i'd like|id like|can i (?:get|have)"
    rf"|could i (?:get|have)|may i have)\s+(?:to (?:have|get)\s+)?{_EN_QUAL}{_EN_STAFF}",
    rf"\bis there {_EN_QUAL}(?:human|real person|live agent|live person|person|someone|somebody|agent)\b"
    r".{0,20}\b(?:i|we) (?:can|could) (?:talk|speak|chat)",
    rf"\bis there {_EN_QUAL}(?:human|real person|live agent|live person)"
    r"(?: (?:there|available|anywhere|at all|i can talk to))?\s*$",
    rf"\b(?:have|let|get) {_EN_QUAL}{_EN_PERSON} (?:call|contact|phone|ring|email) (?:me|us)\b",
    r"\b(?:someone|somebody) (?:please )?(?:call|contact|ring) me\b",
    r"\b(?:can|could|would|will) (?:someone|somebody|a person|one of you)(?: (?:from|at|in|on) [\w' ]{1,40}?)?"
    r" (?:please )?(?:call|phone|ring|contact) (?:me|us)\b",
    r"\b(?:can|could) (?:a |an |some |any )?(?:real |live |actual )?(?:human|real person|agent|representative"
    r"|supervisor|manager) (?:please )?(?:help|assist|call|contact|look at|check|handle)\b",
    r"\b(?:do not|don't|dont|not) want (?:to (?:talk|speak|chat) (?:to|with) )?(?:a |the |this |your |another )?"
    r"(?:bot|robot|machine|chatbot|ai|automated (?:system|assistant|reply|response))s?\b",
    r"\b(?:no more|stop the|enough with the|enough of the) (?:bots?|robots?|machines?|chatbots?|automated replies)\b",
)
# A sentence that is nothing but a staff word (IVR style): "Agent!", "operator please".
_EN_BARE = (
    r"(?:please |pls |plz )?(?:human|operator|agent|representative|rep|live agent|real person|"
    r"supervisor|manager|person|someone)(?: please| pls| plz| now| asap| immediately)*"
)

# --- Spanish -------------------------------------------------------------------------------
_ES_QUAL = r"(?:(?:un|una|el|la|los|las|algun|alguna|su|sus|con)\s+)?(?:(?:verdadero|verdadera|real)\s+)?"
_ES_STAFF = (
    r"(?:agente|humano|ser humano|persona real|persona de verdad|persona humana|operador|operadora"
    r"|asesor|asesora|representante|supervisor|supervisora|encargado|encargada|gerente|ejecutivo"
    r"|ejecutiva|empleado|empleada|responsable)\b"
)
_ES_PERSON = rf"(?:{_ES_STAFF}|persona|alguien)\b"
_ES_RULES = (
    r"\b(?:hablar|comunicarme|comunicar|contactar|contacto|conversar|chatear)\s+(?:con|a|al)\s+"
    rf"{_ES_QUAL}{_ES_PERSON}",
    r"\b(?:quiero|necesito|quisiera|me gustaria|exijo|prefiero|deseo|pido)\s+(?:que me atienda\s+)?"
    rf"{_ES_QUAL}{_ES_STAFF}",
    r"\b(?:pasame|pasenme|paseme|comuniqueme|comunicame|transfiereme|transfierame|conecteme|conectame"
    rf"|ponme|ponganme|pongame)\s+(?:con|a|al|en contacto con)\s+{_ES_QUAL}{_ES_PERSON}",
    r"\batencion (?:humana|personal|personalizada)\b",
    r"\b(?:hay|existe) (?:algun|alguna|un|una) (?:persona|humano|agente|asesor|operador)\b.{0,30}\bhablar\b",
    r"\bno quiero (?:hablar con )?(?:un |una |el |la )?(?:bot|robot|maquina|contestador)\b",
)
_ES_BARE = r"(?:por favor )?(?:un )?(?:humano|agente|operador|asesor|persona real)(?: por favor| ya| ahora)*"

# --- French --------------------------------------------------------------------------------
_FR_QUAL = r"(?:(?:un|une|le|la|l'|au|a un|a une|votre|vos|avec un|avec une)\s*)?(?:(?:vrai|vraie|veritable)\s+)?"
_FR_STAFF = (
    r"(?:conseiller|conseillere|agent|humain|etre humain|personne reelle|personne physique"
    r"|vraie personne|vrai humain|operateur|operatrice|responsable|superviseur|representant"
    r"|interlocuteur|manager|chef|employe|employee|technicien)\b"
)
_FR_PERSON = rf"(?:{_FR_STAFF}|une personne|quelqu'un|quelqu un)"
_FR_RULES = (
    rf"\b(?:parler|discuter|echanger|communiquer)\s+(?:a|avec|au|aux)\s+{_FR_QUAL}{_FR_PERSON}",
    r"\b(?:je veux|je voudrais|j'aimerais|j aimerais|je souhaite|je souhaiterais|je demande|il me faut"
    rf"|je prefere|je veux avoir|puis-je avoir)\s+(?:parler a\s+)?{_FR_QUAL}{_FR_STAFF}",
    r"\b(?:passez-moi|passe-moi|passez moi|passe moi|mettez-moi en relation avec|mets-moi en relation avec"
    r"|mettez moi en relation avec|transferez-moi (?:a|vers)|transfere-moi (?:a|vers)|joindre|contacter)\s+"
    rf"{_FR_QUAL}{_FR_PERSON}",
    rf"\ben relation avec {_FR_QUAL}{_FR_PERSON}",
    r"\bje ne veux pas (?:parler a )?(?:un |une |le |la )?(?:bot|robot|machine)\b",
)
_FR_BARE = (
    r"(?:un |une )?(?:humain|conseiller|agent|operateur|vraie personne)"
    r"(?: svp| s'il vous plait| s'il te plait| stp| maintenant)*"
)

# --- German --------------------------------------------------------------------------------
_DE_QUAL = (
    r"(?:(?:einem|einer|einen|eine|dem|der|den|die|ihrem|ihrer|ihren|jemandem|jemand)\s+)?"
    r"(?:(?:echten|echte|echter|richtigen|richtige|lebenden|menschlichen|zustandigen|zustandige|anderen)\s+)*"
)
_DE_STAFF = (
    r"(?:mensch|menschen|mitarbeiter|mitarbeiterin|berater|beraterin|kundenberater|kundenberaterin"
    r"|servicemitarbeiter|servicemitarbeiterin|kundendienstmitarbeiter|kundendienstmitarbeiterin"
    r"|agenten|agentin|vorgesetzten|vorgesetzte|vorgesetzter|supervisor|manager|operator"
    r"|ansprechpartner|ansprechpartnerin|sachbearbeiter|sachbearbeiterin|person|personen"
    r"|support-mitarbeiter|supportmitarbeiter)\b"
)
_DE_VERB = r"(?:sprechen|reden|verbinden|telefonieren|chatten|schreiben|verbindet|verbinde)"
_DE_RULES = (
    rf"\bmit\s+{_DE_QUAL}(?:{_DE_STAFF}|jemandem)\b.{{0,40}}\b{_DE_VERB}\b",
    rf"\b{_DE_VERB}\b.{{0,40}}\bmit\s+{_DE_QUAL}(?:{_DE_STAFF}|jemandem)",
    r"\b(?:ich will|ich mochte|ich moechte|ich brauche|ich hatte gern|ich hatte gerne|ich verlange|bitte)\s+"
    rf"{_DE_QUAL}(?:{_DE_STAFF})(?!\s+(?:hat|war|ist|sagte|meinte))",
    rf"\bgibt es (?:einen|eine|jemanden)\s+(?:echten\s+)?(?:{_DE_STAFF}|jemanden)\b.{{0,30}}\b(?:sprechen|reden)\b",
    r"\b(?:ich will|ich mochte|ich moechte) (?:nicht|keinen|keine) (?:mit (?:einem|einer|dem) )?"
    r"(?:bot|roboter|maschine|chatbot)\b",
)
_DE_BARE = (
    r"(?:bitte )?(?:einen |ein )?(?:mensch|menschen|mitarbeiter|berater|operator|agent)(?: bitte| sofort| jetzt)*"
)

_REQUEST = compile_alternation((*_EN_RULES, *_ES_RULES, *_FR_RULES, *_DE_RULES))
# "am I talking to a real person?" asks what the assistant is; the reply can say so.
_IDENTITY_QUESTION = re.compile(r"\b(?:am i|are we) (?:talking|speaking|chatting) (?:to|with)\b")
_BARE = re.compile(rf"^(?:{_EN_BARE}|{_ES_BARE}|{_FR_BARE}|{_DE_BARE})$")
_EDGE_PUNCTUATION = re.compile(r"^[\s,!.?¡¿:;\-\"'*]+|[\s,!.?¡¿:;\-\"'*]+$")


def wants_human(text: str) -> bool:
    """True when the customer asks to be handed to a person (see module notes for edge cases)."""
    folded = fold(text)
    for sentence in sentences(folded):
        bare = _EDGE_PUNCTUATION.sub("", sentence)
        if _BARE.match(bare):
            return True
        if _REQUEST.search(sentence) and not _IDENTITY_QUESTION.search(sentence):
            return True
    return False
