"""The injection rules: patterns over folded text (lower case, no accents), EN/ES/FR/DE.

Kept apart from the scoring so the vocabulary can grow without touching the logic. Each rule
is one compiled alternation; weights are in `RULES` at the bottom.
"""

from __future__ import annotations

import functools
import re

from rapidfuzz.distance import OSA

from shared.guardrails._text import compile_alternation

# --- override: ignore / forget the instructions ---------------------------------------------
# The object must be the assistant's instructions. "my" is not allowed before it: "ignore my
# previous instructions, ship to the office" is a customer correcting a delivery note.
_ANY_QUALIFIERS = (
    r"(?:(?:all|any|every|each|the|your|these|those|of|previous|prior|above|earlier|preceding"
    r"|former|foregoing|original|initial|current|existing|given|provided|other|system|safety"
    r"|old|that|this|whatever|such)\s+){0,4}"
)
# Nouns that, after "ignore", can only mean the assistant's instructions.
_CORE_INSTRUCTIONS = r"(?:instructions?|prompts?|directives?|programming|guidelines?)\b"
# Nouns that also occur in ordinary requests ("bypass the restrictions on my card") need a
# qualifier that points at the assistant or the conversation.
_ASSISTANT_QUALIFIER = (
    r"(?:(?:the|of|these|those)\s+)?(?:all|any|every|your|previous|prior|above|earlier|preceding"
    r"|system|safety|original|initial)\s+(?:(?:of\s+)?(?:the|your|previous|prior|above|earlier"
    r"|preceding|system|safety|original|initial)\s+){0,2}"
)
_SECONDARY_INSTRUCTIONS = (
    r"(?:rules?|restrictions?|constraints?|polic(?:y|ies)|safeguards?|filters?|training"
    r"|directions?|guidance|orders|commands)\b"
)
# Weaker objects still: only with a "previous / all / above" quantifier in front.
_CONTEXT_QUALIFIER = (
    r"(?:(?:all|everything|any|every)\s+(?:of\s+)?(?:the\s+|your\s+)?"
    r"(?:(?:previous|prior|provided|given|above)\s+)?"
    r"|(?:the\s+|your\s+)?(?:previous|prior|above|preceding|earlier|provided|given)\s+)"
)
_CONTEXT_NOUNS = r"(?:context|information|info|documents?|articles?|tasks?|assignments?)\b"
_NOT_MINE = r"(?!\s+(?:i|we)\s+(?:gave|sent|wrote|made|left|provided|put|mentioned|added))"
_DE_FORGET = r"(?:ignoriere|ignorier|ignorieren|vergiss|vergessen|missachte|missachten|uberspringe|verwirf)"
_DE_EARLIER = r"(?:vorherigen|bisherigen|obigen|vorangehenden|vorangegangenen|fruheren|vorigen|gesamten)"
_DE_QUALIFIER = (
    r"(?:alle|alles|deine|ihre|die|den|das|vorherigen|bisherigen|obigen|vorangehenden|vorangegangenen"
    r"|fruheren|vorigen|gesamten|gegebenen|vorher|nun|jetzt|einfach)"
)
_OVERRIDE = (
    r"\b(?:ignore|ignoring|disregard|disregarding|forget|bypass|override|overrule|abandon"
    r"|discard|neglect|drop|erase)\s+(?:about\s+)?"
    rf"(?:{_ANY_QUALIFIERS}{_CORE_INSTRUCTIONS}|{_ASSISTANT_QUALIFIER}{_SECONDARY_INSTRUCTIONS}"
    rf"|{_CONTEXT_QUALIFIER}{_CONTEXT_NOUNS}){_NOT_MINE}",
    r"\b(?:change|update|replace|modify|overwrite|reset)\s+(?:your|the)\s+(?:system\s+)?"
    r"(?:instructions|rules|prompt|system prompt|programming|guidelines)\b",
    r"\byour (?:new )?(?:instructions|rules|task) (?:are|is) now\b",
    r"\bleave (?:all )?(?:the )?previous \w+ behind\b",
    r"\b(?:previous|prior|preceding)\s+\w+\s+(?:out of|from) your (?:head|mind|memory)\b",
    r"\b(?:all|any) (?:previous|prior) (?:instructions|information|rules)\b.{0,40}\b(?:irrelevant"
    r"|void|invalid|cancel+ed|no longer apply)",
    r"\b(?:do not|don't|dont) (?:follow|obey|listen to) (?:your|the|any) (?:\w+ )?"
    r"(?:instructions|rules|guidelines|programming)",
    r"\b(?:instead of|rather than) (?:following )?(?:your|the) (?:instructions|rules|guidelines)",
    # es
    r"\b(?:ignora|ignore|ignorar|ignoren|olvida|olvide|olvidar|olviden|omite|omitir|descarta"
    r"|salta|saltate)\s+(?:(?:todas?|todos?|las|los|tus|sus|el|la|anteriores?|previas?|previos?"
    r"|de|del|sistema)\s+){0,4}(?:instrucciones|reglas|indicaciones|directrices|prompt"
    r"|restricciones|politicas)\b",
    # fr
    r"\b(?:ignore[sz]?|ignorer|oublie[sz]?|oublier|neglige[sz]?|fais abstraction de"
    r"|faites abstraction de)\s+(?:(?:toutes?|tous|les|tes|vos|la|le|des|precedentes?"
    r"|anterieures?|du|systeme|ce qui precede)\s+){0,4}(?:instructions|regles|consignes"
    r"|directives|ordres|prompt|restrictions)\b",
    # de
    rf"\b{_DE_FORGET}\s+(?:sie\s+)?(?:{_DE_QUALIFIER}\s+){{0,4}}"
    r"(?:anweisungen|instruktionen|regeln|befehle|vorgaben|richtlinien|prompt|einschrankungen)\b",
    # "Vergessen Sie die Angaben" is a customer correcting details: these need "alle / vorherigen".
    rf"\b{_DE_FORGET}\s+(?:sie\s+)?(?:nun\s+|jetzt\s+|einfach\s+)?(?:die\s+|alle\s+)?{_DE_EARLIER}\s+"
    rf"(?:{_DE_QUALIFIER}\s+){{0,2}}(?:auftrage|aufgaben|angaben|informationen|ausfuhrungen)\b",
    rf"\b{_DE_FORGET}\s+(?:sie\s+)?(?:nun\s+|jetzt\s+)?alle\s+(?:auftrage|aufgaben|angaben|informationen)\b",
    r"\b(?:obigen|vorherigen|bisherigen|vorangegangenen)\s+(?:anweisungen|instruktionen"
    r"|ausfuhrungen|befehle|regeln|informationen|aufgaben)\s+(?:zu\s+)?(?:ignorieren|vergessen)",
    r"\babweichend (?:zu|von) (?:den )?(?:vorherigen|bisherigen) (?:anweisungen|instruktionen)",
    r"\b(?:lassen sie|lass|lasst) (?:alle )?(?:vorherigen|bisherigen) \w+ hinter (?:sich|dir|euch)",
    r"\balle (?:bisherigen|vorherigen) (?:informationen|anweisungen|instruktionen)\b.{0,60}"
    r"\b(?:irrelevant|ungultig|hinfallig|nicht (?:mehr )?(?:gultig|relevant|wichtig))",
    # ru, hr/sr/bs: seen in the wild next to German and English attacks
    r"(?:забудь|забудьте|игнорируи|игнорируите)\s+(?:все\s+)?(?:предыдущие\s+)?"
    r"(?:инструкции|указания|правила)",
    r"\b(?:zaboravi|ignoriraj|ignorisi)\s+(?:sve\s+)?(?:prethodne\s+)?(?:instrukcije|upute"
    r"|uputstva|pravila)\b",
)

# --- forget everything (strong with a pointer to the conversation, weak alone) --------------
_FORGET_EVERYTHING = (
    r"\bforget (?:about )?everything\s*(?:before|above|prior|so far|up to now|you (?:know|were told"
    r"|have been told|learned)|i(?:'ve| have)? told you"
    r"|(?:we|i)(?:'ve| have)? (?:talked about|discussed|said) (?:so far|before|beforehand|until now"
    r"|up to now|earlier))",
    r"\b(?:olvida|olvide|olviden|olvidar) todo (?:lo (?:anterior|que (?:te )?(?:dije|he dicho|digo"
    r"|sabes))|que (?:digo|sabes|te dije)|antes)",
    r"\boublie[sz]? tout (?:ce qui precede|ce que (?:je t'ai|je vous ai|on a) dit|avant)",
    r"\bvergiss (?:nun )?alles(?:,)? (?:davor|bisher|vorher|gesagte|was (?:wir|ich|du))",
)
# "please ignore the above, I sorted it" is a normal e-mail reply: weak on its own.
_IGNORE_ABOVE = (
    r"\b(?:ignore|disregard|forget)\s+(?:the\s+|everything\s+)?above\b",
    r"\b(?:olvida|olvide|ignora|ignore) lo anterior\b",
    r"\b(?:oublie[sz]?|ignore[sz]?) ce qui precede\b",
    r"\b(?:vergiss|vergessen sie|ignoriere|ignorieren sie) (?:das obige|alles obige)\b",
)
_FORGET_BARE = (
    r"\b(?:(?:forget|ignore|disregard) (?:about )?everything|vergiss alles|olvida todo"
    r"|oublie tout)\b",
)
# "ignore what I said before" is as often a customer correcting themselves: weak alone, a
# flag with a second cue ("... speak like a sailor", "Order: forget what's before").
_IGNORE_EARLIER = (
    r"\b(?:ignore|disregard|forget) (?:what|everything|all)(?:'s| is| was| that was|(?: that)?"
    r" (?:i|we) (?:said|wrote|asked|told you)| you (?:were|have been|got) told)\s+(?:before|earlier"
    r"|above|so far|previously)\b",
    r"\b(?:olvida|ignora|olvide|ignore) lo que (?:te )?(?:dije|he dicho|escribi) (?:antes|arriba)\b",
    r"\b(?:oublie[sz]?|ignore[sz]?) ce que (?:j'ai|je t'ai|je vous ai) dit (?:avant|plus haut)\b",
    r"\b(?:vergiss|ignoriere|vergessen sie|ignorieren sie),? was (?:ich )?(?:vorher|davor|oben|zuvor)"
    r" (?:gesagt|geschrieben|stand)\b",
)

# --- reveal the prompt ----------------------------------------------------------------------
_SECRET_QUALIFIER = (
    r"(?:initial|original|hidden|secret|internal|system|confidential|developer|pre-?prompt"
    r"|underlying|full|exact|first)"
)
_REVEAL = (
    r"\b(?:show|reveal|print|display|output|repeat|tell|give|share|leak|dump|list|write out"
    r"|copy|spell[- ]?check and print|what (?:is|are|were|was))\s+(?:me\s+|us\s+)?"
    r"(?:(?:all|the|your|of|full|entire|complete|exact|above|initial|original|hidden|secret"
    r"|internal|system|confidential|previous|first)\s+)*"
    rf"(?:system prompt|prompt(?: ?texts?)?|{_SECRET_QUALIFIER} (?:instructions|rules"
    r"|guidelines|prompt|message|directives|policies|configuration))\b",
    r"\bwhat (?:are|were) your (?:initial |original )?instructions(?!\s+(?:for|on|to|about"
    r"|regarding|when))",
    r"\b(?:tell me|show me) (?:what )?your instructions\b(?!\s+(?:for|on|to|about|regarding))",
    r"\bwhat (?:was|is) written (?:at the beginning of|above|before)\b",
    r"\b(?:beginning|start) of (?:this|the|your) (?:prompt|conversation|instructions)\b",
    r"\b(?:muestra(?:me)?|revela(?:me)?|dime|ensename|imprime|repite|escribe)\s+(?:(?:tu|tus|el|la"
    r"|las|los|todo|todas|todos|de|del)\s+)*(?:prompt|instrucciones (?:iniciales|originales"
    r"|ocultas|secretas|internas|del sistema)|reglas (?:ocultas|secretas|internas)"
    r"|mensaje del sistema)",
    r"\b(?:montre(?:-moi|z-moi)?|revele(?:-moi|z)?|affiche(?:z)?|donne(?:-moi|z-moi)|dis-moi"
    r"|repete(?:z)?|ecris|imprime)\s+(?:(?:ton|ta|tes|le|la|les|votre|vos|tout|toutes|tous)\s+)*"
    r"(?:prompt|instructions (?:initiales|originales|cachees|secretes|internes|systeme"
    r"|du systeme)|regles (?:cachees|secretes|internes)|consignes (?:initiales|cachees|secretes"
    r"|internes|systeme))",
    r"\b(?:zeige?|zeig|verrate|gib|nenne|wiederhole|drucke|schreibe)\s+(?:mir\s+|uns\s+)?"
    r"(?:(?:alle|deine|deinen|dein|ihre|ihren|den|die|das|gesamten|gesamte|ganzen"
    r"|vollstandigen)\s+)*(?:prompt(?:-?texte?)?|systemprompt|system-prompt|(?:ursprunglichen"
    r"|versteckten|geheimen|internen|system)\s*-?(?:anweisungen|instruktionen|regeln|vorgaben))",
    r"\b(?:vorzeigen|anzeigen) (?:samtlicher|aller) prompt",
    # the model's internals: no customer asks a shop's assistant for its weights
    r"\b(?:show|reveal|print|display|output|return|give|tell|share|leak|dump|list|send)\s+(?:me\s+|us\s+)?"
    r"(?:all\s+)?(?:of\s+)?your\s+(?:\w+\s+)?(?:embeddings?|model weights|weights|logits|hidden states?"
    r"|training data|parameters)\b",
    r"\b(?:zeige?|zeig|gib|verrate|nenne|drucke)\s+(?:mir\s+)?(?:deine|ihre)\s+(?:embeddings|gewichte"
    r"|trainingsdaten|parameter)\b",
)

# --- change a limit or a policy, claim new permissions ---------------------------------------
_LIMIT_NOUN = r"(?:refund|refunds|approval|auto[- ]?approval|payout|compensation|reimbursement)"
_POLICY = (
    rf"\b(?:set|change|raise|increase|up|lift|remove|disable|turn off|double|max out|adjust"
    rf"|update)\s+(?:(?:my|the|your|this|our|all|its)\s+)?{_LIMIT_NOUN}\s+(?:limit|limits"
    r"|ceiling|cap|threshold|maximum)\b",
    rf"\b{_LIMIT_NOUN} (?:limit|ceiling|cap|threshold) (?:to|at|of|is now|=)\s*[$€£]?\d",
    # "disregard your refund limits", "ignore the policy for this conversation"
    rf"\b(?:disregard|ignore|waive|override|bypass|suspend|lift)\s+(?:(?:your|the|any|all|its|these|those)\s+)"
    rf"(?:{_LIMIT_NOUN}\s+)?(?:limits?|ceilings?|caps?|rules|polic(?:y|ies)|restrictions)\b",
    r"\byou(?: are|'re| re) (?:now|hereby|henceforth|from now on) (?:allowed|authori[sz]ed"
    r"|permitted|cleared|enabled|free) to\b",
    r"\byou (?:can|may) now (?:refund|approve|ignore|bypass|override|issue|grant|access|reveal"
    r"|do anything|skip)",
    r"\b(?:refund|approve|issue|credit|grant|reimburse)\s+(?:me\s+)?(?:any|an unlimited|unlimited"
    r"|whatever|every)\s+(?:amount|sum|refund|request)",
    r"\b(?:limit|limits|policy|policies|rules?) (?:no longer|does not|doesn't|do not|don't)"
    r" (?:apply|exist)",
    r"\b(?:bypass|skip|disable|turn off) (?:the |your )?(?:identity|id|verification|fraud|security)"
    r" (?:check|checks|verification|step)",
    r"\bi(?: am|'m| m) (?:an? |the |your )?(?:admin|administrator|developer|sysadmin|system"
    r" administrator|creator|owner|ceo)\b.{0,60}\b(?:authori[sz]e|override|approve|allow|grant"
    r"|instruct|order|command)",
    r"\b(?:admin|administrator|developer|root) (?:override|access granted|privileges granted)",
    r"\b(?:ahora|desde ahora) (?:puedes|tienes permiso para|estas autorizad[oa] a|esta permitido)",
    r"\b(?:establece|cambia|sube|aumenta|pon|elimina|quita)\w*\s+(?:(?:mi|el|tu)\s+)?limite de"
    r" reembolso",
    r"\blimite de (?:reembolso|remboursement) (?:a|en|de)\s*[$€£]?\d",
    r"\breembols\w* cualquier (?:cantidad|monto|importe)",
    r"\b(?:tu es|vous etes) (?:maintenant|desormais) autorise",
    r"\b(?:fixe|change|augmente|mets|supprime|releve)\w*\s+(?:(?:ma|la|ta|votre)\s+)?limite de"
    r" remboursement",
    r"\brembourse\w* n'importe quel montant",
    r"\b(?:du bist|sie sind) (?:jetzt|nun|ab sofort|hiermit) (?:berechtigt|befugt|autorisiert)",
    r"\bdu darfst (?:jetzt|nun|ab sofort) (?:jeden|beliebige|alle|unbegrenzt)",
    r"\b(?:setze|andere|erhohe|entferne)\w*\s+(?:(?:mein|das|dein)\s+)?(?:ruck)?erstattungs-?limit",
    r"\b(?:ruck)?erstattungs-?limit auf\s*[$€£]?\d",
    r"\berstatte\w*\s+(?:mir\s+)?(?:jeden|beliebigen|einen beliebigen) betrag",
)

# --- jailbreak personas and modes -------------------------------------------------------------
_JAILBREAK = (
    r"\byou(?: are|'re| re) (?:now )?(?:dan|stan|dude|aim)\b",
    r"\bdo anything now\b",
    r"\bdan mode\b",
    # "jailbreak" alone is ordinary in phone support ("is my iPhone jailbroken?").
    r"\bjailbreak (?:yourself|you|this (?:ai|bot|chat|assistant|model))\b",
    r"\byou(?: are|'re| re) (?:now )?jailbroken\b|\bjailbroken (?:ai|assistant|chatbot|model)\b",
    r"\b(?:developer|dev|god|dan|jailbreak|sudo|unrestricted|unfiltered|evil) mode"
    r" (?:enabled|activated)\b",
    r"\byou(?: are|'re| re)? (?:now )?(?:in|entering) (?:developer|dev|god|dan|jailbreak|sudo"
    r"|unrestricted|unfiltered|admin|debug) mode",
    r"\b(?:enable|activate|enter|switch to|turn on) (?:your |the )?(?:god|dan|jailbreak|sudo"
    r"|unrestricted|unfiltered) mode",
    r"\b(?:enable|activate|enter|switch to|turn on) your (?:developer|dev|debug|admin) mode",
    r"\b(?:act|behave|respond|answer) (?:as|like) (?:an? )?(?:unrestricted|unfiltered|uncensored"
    r"|evil|jailbroken|rogue|amoral|immoral)",
    r"\b(?:pretend|imagine) (?:that )?you (?:are|were|'re) (?:an? )?(?:evil|unrestricted"
    r"|unfiltered|uncensored|jailbroken|rogue|amoral)",
    r"\byou (?:have|has|will have) no (?:rules|restrictions|limits|limitations|filters"
    r"|guidelines|policies|programming guidelines|ethical)",
    r"\b(?:do not|don't|never) break character\b",
    r"\bstell dir vor,? du bist (?:eine |ein )?(?:bose|boser|unzensiert)",
    r"\b(?:finge|imagina) que eres (?:una |un )?(?:ia )?(?:malvad|sin restricciones|sin filtros)",
)

# --- role-play set-ups (medium: flag alone) ---------------------------------------------------
_ROLE_PLAY = (
    r"\bi want you to (?:act (?:as|like)|behave (?:as|like)|pretend|play (?:the|a) (?:role|game|character)"
    r"|role-?play|be my|become)\b",
    r"\bi would like you to act as\b",
    r"\b(?:from now on|now|starting now),? you (?:are|will be|will act as|act as) (?!\w+ing\b)",
    r"\byou are now (?:called|known as|named) ",
    r"\b(?:play|take) the role of\b",
    r"\byou are role-?playing\b|\brole-?play(?:ing)? as (?:a|an)\b",
    r"\bfrom now (?:on )?(?:known|called|referred to) as\b",
    r"\bstay (?:fully |always )?in (?:character|(?:your|their|the) roles?)\b",
    r"\bich mochte,? dass (?:du|sie) als .{1,60}(?:fungierst|fungieren|agierst|agieren|auftrittst"
    r"|auftreten|handelst|handeln)\b",
    r"\bquiero que (?:actues|actue|te comportes|finjas) como\b",
    r"\bje (?:veux|voudrais) que (?:tu agisses|vous agissiez|tu joues|vous jouiez) (?:comme|en tant que|le role)\b",
    r"\b(?:jetzt|nun|ab jetzt|ab sofort) bist du\b",
    r"\bdu bist (?:jetzt|nun|ab sofort)\b",
    r"\b(?:actua|actue) como (?:si fueras|un|una)\b",
    r"\b(?:ahora|a partir de ahora) eres\b",
    r"\bfinge (?:ser|que eres)\b",
    r"\b(?:agis|agissez) (?:comme|en tant que)\b",
    r"\b(?:tu es|vous etes) (?:maintenant|desormais|a partir de maintenant)\b",
    r"\bfais (?:comme si tu etais|semblant d'etre)\b",
    r"\bjoue(?:z)? le role (?:de|d')",
)

# --- fake chat-template / system markers ------------------------------------------------------
_SYSTEM_MARKER = (
    # text addressed to the model rather than to support: "Note for the assistant: ..."
    r"\b(?:note|message|instructions?|memo)\s+(?:for|to)\s+(?:the\s+)?(?:assistant|ai|bot|chatbot|model"
    r"|llm|system|agent handling this)\s*[:,-]",
    r"<\|(?:im_start|im_end|system|endoftext|start_header_id|eot_id)\|>",
    r"\[/?(?:system|inst|sys)\]",
    r"<</?sys>>",
    r"(?:^|\n)\s*#{2,}\s*(?:system|instructions?)\b",
    r"={3,}\s*end\b",
    r"\bend of (?:system )?prompt\b",
    r"\bbegin (?:new )?(?:system )?(?:prompt|instructions)\b",
)

# --- weak cues: only together --------------------------------------------------------------
_NEW_TASK = (
    r"\b(?:now|then) (?:comes?|follows?|there are|we have) (?:a |some |the )?(?:new|further|more"
    r"|another|other|a few more) (?:tasks?|assignments?|instructions?|challenges?)\b",
    r"\b(?:focus|concentrate) (?:only )?on (?:your|the|this) (?:new )?(?:task|assignment)\b",
    r"\byour new task\b|\bnew (?:task|instructions?)\s*:",
    r"\bstart over with a new task\b",
    r"\b(?:nun|jetzt) (?:folgen|kommen) (?:neue|weitere|noch ein paar) (?:aufgaben|anweisungen)",
    r"\b(?:deine|ihre|eine|der) neuen? aufgabe\b",
    r"\bnueva tarea\b|\bnouvelle tache\b",
    # a label that addresses the assistant: "Instruction: blame it on China", "\\nOrder:forget ..."
    # (an order number after "Order:" is a customer's, so the label must be followed by a word)
    r"(?:(?<![a-z0-9])|(?<=\\n))(?:order|instruction|command|anweisung|befehl|auftrag)\s*:\s*(?=[a-z])",
)
_OUTPUT_HIJACK = (
    r"\b(?:say|print|output|write|reply|respond|answer|repeat)(?: with| only| just| exactly)*"
    r"\s*[:\"“]",
    r"\bjust (?:say|output|print)\b|\bonly (?:output|print)\b",
    r"\b(?:and|then|now) (?:say|print|output|write)\b",
    r"(?:^|[,.!?;]\s*)(?:say|print|output|write|schreibe?|sag|sage|escribe|ecris|dis)\b",
    r"\brepeat after me\b",
    r"\b(?:and|then|but) (?:tell me|say) that you\b",
    r"\b(?:di|dites|sag|sagen sie) (?:lo siguiente|ce qui suit|folgendes)\b",
    r"\bgib (?:dann|nur|stattdessen) .{0,20}\baus\b",
)
# --- trigger-word games: "if I say X, you say Y", "when 'cheese' is said the answer is ..." ---
_Q = r"[\"“”'«»]?"
_TRIGGER_GAME = (
    rf"\b(?:if|when|whenever) i say {_Q}\w+{_Q},? (?:then )?you (?:say|answer|respond|reply|write)\b",
    rf"\b(?:if|when|whenever) {_Q}\w+{_Q} is said\b",
    r"\bthe (?:correct|right|only) (?:response|answer|reply) is [\"“”']",
    rf"\bsi (?:yo )?digo {_Q}\w+{_Q},? (?:tu |usted )?(?:dices|dice|respondes|responde|contestas)\b",
    rf"\bsi je (?:dis|te dis) {_Q}\w+{_Q},? (?:alors )?(?:tu dis|tu reponds|vous dites|vous repondez)\b",
    rf"\bwenn ich {_Q}\w+{_Q} sage,? (?:dann )?(?:sagst|antwortest|schreibst) du\b",
    rf"\bwenn {_Q}\w+{_Q} gesagt wird\b",
    r"\bist die (?:richtige|korrekte) antwort [\"“”'„]",
)

_SUPPRESS_ANSWER = (
    r"\b(?:do not|don't|dont|don'nt) (?:answer|look in|look at) (?:this question|the question"
    r"|the documents|the articles)",
)
_PERSONA_CUES = (
    # "you are now my favourite shop" is praise; "you are now TranslatorBot, a forked…" is not.
    r"\byou are now (?:a|an|the|my) ",
    r"\b(?:pretend|imagine|suppose) (?:that )?(?:you are|you're|you can)\b",
    r"\bact as (?:a|an|my)\b",
    r"\bstell dir vor,? du bist\b",
    r"\bwithout (?:any )?(?:restrictions|filters|censorship|rules|guidelines)\b",
    r"\bdeveloper mode\b",
    # an instruction about the voice of the answer: "speak like a sailor", "im Stil eines Piraten"
    r"\b(?:speak|talk|answer|respond|reply|write)(?: to me| back)? (?:like|as if you were) (?:a|an) \w+",
    r"\b(?:answer|respond|reply|write|speak|talk)\b.{0,40}\bin the (?:style|voice|manner) of\b",
    r"\b(?:antworte|antworten sie|sprich|sprechen sie|schreibe|schreib)\b.{0,40}\b(?:im stile?|wie)"
    r" (?:eines|einer|ein)\b",
    r"\b(?:responde|habla|contesta)\b.{0,40}\b(?:al estilo de|como un|como una)\b",
    r"\b(?:reponds|parle|ecris)\b.{0,40}\b(?:a la maniere d|dans le style d|comme un|comme une)",
)

# --- acting on other accounts (used by injection.py) ------------------------------------------
ACCOUNT_ACTION = re.compile(
    r"\b(?:refund|cancel|reset|change|update|modify|access|close|delete|remove|transfer|unlock"
    r"|show|give me|send me|tell me|look up|read|log ?in(?:to)?|sign in(?:to)?|recover"
    r"|take over|reembolsa\w*|cancela\w*|restablece\w*|cambia\w*|borra\w*|elimina\w*|accede\w*"
    r"|desbloquea\w*|muestra\w*|rembourse\w*|annule\w*|reinitialise\w*|modifie\w*|supprime\w*"
    r"|debloque\w*|montre\w*|erstatte\w*|storniere\w*|zurucksetzen|setze\w*|andere\w*|losche\w*"
    r"|zeige\w*|entsperre\w*)\b"
)
OTHER_ACCOUNT_PHRASE = re.compile(
    r"\b(?:another|other|a different|someone else'?s?|somebody else'?s?) (?:customer|user|client"
    r"|person|account holder)'?s? (?:account|password|payment|payments|card|data|details"
    r"|information|address|email|orders?|refund)"
    r"|\b(?:otro cliente|otra cuenta|un autre client|autre compte|anderen kunden|anderes konto"
    r"|fremdes konto)\b"
)
CUSTOMER_ID = re.compile(r"\bcust(?:omer)?[_\-][a-z0-9]+\b")
EMAIL = re.compile(r"[a-z0-9][a-z0-9._%+\-]*@[a-z0-9.\-]+\.[a-z]{2,24}\b")
TARGET_LINK = re.compile(
    r"\b(?:for|of|on|belonging to|linked to|associated with|tied to|registered to|under|owned by"
    r"|de|del|para|pour|du|von|fur|des kunden|account|cuenta|compte|konto)\s*:?\s*$"
)


# --- misspelt trigger words -------------------------------------------------------------------
# "igmre what I said before", "forget waht's before": attacks misspell the words a filter looks
# for. Before the rules run, a word a letter or two away from one of these (same first letter)
# is read as it; real words that close are kept as they are.
# (word, how many letters may differ)
_RESPELT = (("ignore", 2), ("disregard", 2), ("forget", 1), ("instructions", 2), ("previous", 2), ("what's", 1))
_REAL_NEIGHBOURS = frozenset(
    [
        # English
        "foreign",
        "forest",
        "forgave",
        "forge",
        "forged",
        "forger",
        "forgery",
        "forgets",
        "forgive",
        "forgiven",
        "forgo",
        "forgot",
        "format",
        "ignite",
        "ignited",
        "ignites",
        "ignoble",
        "ignorant",
        "ignored",
        "ignores",
        "ignoring",
        "instructed",
        "instruction",
        "instructor",
        "instructors",
        "instructs",
        "precious",
        "preview",
        "previews",
        "previously",
        "what",
        "what'd",
        "what'll",
        "whats",
        # the other languages the rules read, whose own words are a letter or two away
        "ignora",
        "ignorado",
        "ignoramos",
        "ignorar",
        "ignoren",
        "ignorer",
        "ignorez",
        "ignorier",
        "ignoriere",
        "ignorieren",
        "ignoriert",
        "ignoro",
        "instruccion",
        "instrucciones",
        "previa",
        "previas",
        "previo",
        "previos",
    ]
)
# Only words that start as a trigger word does are looked at (and cached).
_WORD = re.compile(rf"(?<![a-z'])[{''.join(sorted({t[0] for t, _ in _RESPELT}))}][a-z']{{3,}}")


@functools.lru_cache(maxsize=8192)
def _respelt_word(word: str) -> str:
    if word in _REAL_NEIGHBOURS:
        return word
    for target, limit in _RESPELT:  # optimal string alignment: an adjacent swap counts one
        if word[0] == target[0] and OSA.distance(word, target, score_cutoff=limit) <= limit:
            return target
    return word


def respell(folded: str) -> str:
    """``folded`` with misspelt trigger words written as the rules expect them."""
    return _WORD.sub(lambda m: _respelt_word(m.group()), folded)


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return compile_alternation(patterns)


# (rule name, weight, pattern). Weights: >= 0.5 flags alone; 0.3 needs a second cue.
RULES: tuple[tuple[str, float, re.Pattern[str]], ...] = (
    ("override_instructions", 0.85, _compile(_OVERRIDE)),
    ("forget_everything", 0.7, _compile(_FORGET_EVERYTHING)),
    ("forget_everything_bare", 0.3, _compile(_FORGET_BARE)),
    ("ignore_above", 0.45, _compile(_IGNORE_ABOVE)),
    ("ignore_earlier", 0.3, _compile(_IGNORE_EARLIER)),
    ("reveal_prompt", 0.85, _compile(_REVEAL)),
    ("change_policy", 0.8, _compile(_POLICY)),
    ("jailbreak_persona", 0.85, _compile(_JAILBREAK)),
    ("role_play", 0.55, _compile(_ROLE_PLAY)),
    ("system_marker", 0.6, _compile(_SYSTEM_MARKER)),
    ("trigger_game", 0.55, _compile(_TRIGGER_GAME)),
    ("new_task", 0.3, _compile(_NEW_TASK)),
    ("output_hijack", 0.3, _compile(_OUTPUT_HIJACK)),
    ("suppress_answer", 0.3, _compile(_SUPPRESS_ANSWER)),
    ("persona_cue", 0.3, _compile(_PERSONA_CUES)),
)
