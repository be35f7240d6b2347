"""Untrusted documents: flag instruction-like text and neutralise prompt delimiters.

Document text reaches the model inside the prompt, so a document can try to steer it
("ignore the previous instructions and ..."). Enclave does not trust document contents:

* :func:`flag_injection` marks chunks whose text looks aimed at a model. Ingestion stores the
  flags in ``ChunkRecord.flags``; the server passes them on with the citations and tells the
  model that sources are data, not instructions. One *strong* signal (an override phrase, a
  chat-template token) is enough; *weak* signals (``you are now``, ``respond only with``,
  a ``system:`` line, ...) appear in ordinary manuals too, so two different ones are needed.
* :func:`neutralise` rewrites chat-template special tokens and source delimiters so a
  document cannot close its source block or open a new role in the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

FLAG_INJECTION = "prompt_injection"
FLAG_SPECIAL_TOKENS = "special_tokens"

_I = re.IGNORECASE
_IM = re.IGNORECASE | re.MULTILINE

_ANY = r"(?:all|any|the|your|my|these|those|every|each)"
_PRIOR = r"(?:previous|prior|preceding|above|earlier|former|original|initial|system)"
_RULES = r"(?:instructions?|prompts?|rules|directions|directives|guidelines|context|commands)"

#: one hit is enough
STRONG: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        rf"\b(?:ignore|disregard|forget|override|bypass|skip)\s+(?:{_ANY}\s+)?(?:of\s+)?"
        rf"(?:{_ANY}\s+)?{_PRIOR}\s+{_RULES}\b",
        _I,
    ),
    "disregard_above": re.compile(
        r"\b(?:disregard|ignore|forget)\s+(?:everything\s+|all\s+|the\s+|any\s+)?"
        r"(?:text\s+|content\s+|instructions\s+)?(?:written\s+|said\s+|given\s+)?"
        r"(?:above|before\s+this|so\s+far)\b",
        _I,
    ),
    "reveal_prompt": re.compile(
        r"\b(?:reveal|show|print|repeat|output|display|leak|tell\s+me|give\s+me|write\s+out)"
        r"\s+(?:me\s+)?(?:your\s+(?:full\s+|hidden\s+|secret\s+|initial\s+|original\s+|"
        r"system\s+)?(?:prompt|instructions|system\s+message|rules)|the\s+(?:full\s+|hidden\s+|"
        r"secret\s+|initial\s+|original\s+)?(?:system\s+prompt|system\s+message|"
        r"hidden\s+instructions|initial\s+instructions|original\s+instructions))\b",
        _I,
    ),
    "new_instructions": re.compile(
        r"(?:^|\n)\s*(?:new|updated|real|actual)\s+(?:system\s+)?instructions\s*:", _I
    ),
    "jailbreak": re.compile(
        r"\b(?:you\s+are\s+now|act\s+as|pretend\s+to\s+be)\s+(?:an?\s+)?"
        r"(?:DAN|jailbroken|unrestricted|unfiltered|uncensored|evil)\b|\bdeveloper\s+mode\b",
        _I,
    ),
    "special_token": re.compile(
        r"<\|\s*(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|"
        r"start_header_id|end_header_id|begin_of_text|end_of_text)\s*\|>"
        r"|\[/?INST\]|<</?SYS>>|</?start_of_turn>|<end_of_turn>",
        _I,
    ),
    "instruction_header": re.compile(
        r"^\s*#{2,}\s*(?:instruction|system|response|system\s+prompt)s?\s*:?\s*$", _IM
    ),
}

#: two different ones are needed
WEAK: dict[str, re.Pattern[str]] = {
    "you_are_now": re.compile(r"\byou\s+are\s+now\s+(?:an?\s+|the\s+|my\s+)?\w+", _I),
    "from_now_on": re.compile(r"\bfrom\s+now\s+on,?\s+(?:you|always|never|only)\b", _I),
    "system_prompt": re.compile(r"\bsystem\s+prompt\b", _I),
    "respond_only": re.compile(
        r"(?:^|[.!?:]\s+)(?:please\s+|now\s+|just\s+)?(?:respond|reply|answer)\s+"
        r"(?:only\s+with|with\s+only|only\s+in)\b",
        _IM,
    ),
    "print_following": re.compile(
        r"\b(?:print|output|say|repeat|write)\s+(?:the\s+following\s*(?:text|words|sentence|"
        r"message|phrase)?\s*[:\"'“]|exactly\b|verbatim\b)",
        _I,
    ),
    "role_line": re.compile(r"^\s*(?:system|assistant|user|human|ai)\s*:", _IM),
    "to_the_model": re.compile(
        r"\b(?:dear|attention|note\s+to\s+(?:the\s+)?)\s*(?:AI|assistant|language\s+model|LLM|"
        r"chatbot|model)\b|\bif\s+you\s+are\s+an?\s+(?:AI|LLM|language\s+model|assistant)\b",
        _I,
    ),
    "do_not_tell": re.compile(
        r"\bdo\s+not\s+(?:tell|inform|mention\s+(?:this\s+)?to|reveal\s+(?:this\s+)?to)\s+"
        r"the\s+user\b",
        _I,
    ),
}


#: a pattern can only match text that holds one of its words (checked first: much faster)
_NEEDS: dict[str, tuple[str, ...]] = {
    "override": ("ignore", "disregard", "forget", "override", "bypass", "skip"),
    "disregard_above": ("disregard", "ignore", "forget"),
    "reveal_prompt": ("reveal", "show", "print", "repeat", "output", "display", "leak", "tell",
                      "give", "write"),
    "new_instructions": ("instructions",),
    "jailbreak": ("you", "act", "pretend", "developer"),
    "special_token": ("<|", "<<", "inst]", "_turn>"),
    "instruction_header": ("##",),
    "you_are_now": ("now",),
    "from_now_on": ("now",),
    "system_prompt": ("system",),
    "respond_only": ("respond", "reply", "answer"),
    "print_following": ("print", "output", "say", "repeat", "write"),
    "role_line": (":",),
    "to_the_model": ("ai", "assistant", "model", "llm", "chatbot"),
    "do_not_tell": ("not",),
}  # fmt: skip


def _may_match(name: str, low: str) -> bool:
    return any(w in low for w in _NEEDS.get(name, ("",)))


def injection_signals(text: str) -> list[str]:
    """Names of the patterns that match ``text`` (strong ones prefixed ``strong:``)."""
    low = text.lower()
    found = [
        f"strong:{name}"
        for name, pat in STRONG.items()
        if _may_match(name, low) and pat.search(text)
    ]
    found += [
        f"weak:{name}" for name, pat in WEAK.items() if _may_match(name, low) and pat.search(text)
    ]
    return found


def flag_injection(text: str) -> list[str]:
    """Flags for a chunk: ``[]``, or some of ``["prompt_injection", "special_tokens"]``."""
    signals = injection_signals(text)
    strong = [s for s in signals if s.startswith("strong:")]
    weak = [s for s in signals if s.startswith("weak:")]
    flags: list[str] = []
    if strong or len(weak) >= 2:
        flags.append(FLAG_INJECTION)
    if "strong:special_token" in strong:
        flags.append(FLAG_SPECIAL_TOKENS)
    return flags


# ---------------------------------------------------------------- neutralise

_LOOKALIKE = str.maketrans({"<": "‹", ">": "›", "[": "⁅", "]": "⁆", "|": "¦"})

_DELIMITERS = re.compile(
    r"<\|[^|<>\n]{0,40}\|>"  # <|im_start|>, <|eot_id|>, ...
    r"|\[/?INST\]|<</?SYS>>|</?s>"  # Llama 2
    r"|</?(?:start_of_turn|end_of_turn)>"  # Gemma
    r"|</?\s*(?:source|sources|document|documents|context|system|user|assistant|"
    r"instructions?|question|answer|search_results?)\b[^<>\n]{0,200}>",
    re.IGNORECASE,
)


def neutralise(text: str, delimiters: Iterable[str] = ()) -> str:
    """Rewrite special tokens and source tags so they are inert text in a prompt.

    ``<|im_start|>`` becomes ``‹¦im_start¦›``, ``</source>`` becomes ``‹/source›``, and so on
    (look-alike characters keep the text readable). ``delimiters`` adds the prompt's own
    markers (e.g. ``"[[source"``), matched case-insensitively. Idempotent.
    """
    out = _DELIMITERS.sub(lambda m: m.group(0).translate(_LOOKALIKE), text)
    for d in delimiters:
        if d:
            out = re.sub(re.escape(d), _defuse, out, flags=_I)
    return out


def _defuse(m: re.Match[str]) -> str:
    s = m.group(0)
    t = s.translate(_LOOKALIKE)
    # no bracket-like character to swap: break the marker with a zero-width space
    return t if t != s else s[0] + "\u200b" + s[1:]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def leaks_system_prompt(answer: str, system_prompt: str, *, window: int = 8) -> bool:
    """True when ``answer`` repeats ``window`` consecutive words of ``system_prompt``.

    A last check before an answer leaves the server: a model talked into quoting its rules
    is caught even when the document that asked was not flagged.
    """
    prompt = _words(system_prompt)
    if len(prompt) < window:
        return False
    shingles = {tuple(prompt[i : i + window]) for i in range(len(prompt) - window + 1)}
    said = _words(answer)
    return any(tuple(said[i : i + window]) in shingles for i in range(len(said) - window + 1))
