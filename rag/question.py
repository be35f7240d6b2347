"""What a question asks: its distinctive terms, the kind of answer it wants, its content words.

* :func:`distinctive_terms`: terms a passage must contain to be about the question
  (identifiers, ``--options``, numbers of 3+ digits, ALL-CAPS words, capitalised names inside
  the sentence, rare words used as names). Retrieval runs a full-text search on them alone
  (an error code or parameter name is drowned among a whole question's words), and the answer
  stage abstains when one of them is in no candidate passage (:func:`absent_terms`): a
  question about something the documents never mention has no answer there, however similar
  its other words are. Unit scores do not separate such questions (measured), so there is
  no score threshold.
* :func:`answer_type`: "name" (which function / parameter / option ...: the noun right after
  the question word, not the subject after its verb, "what does a view need"), "place" (where
  something is kept: a file or path), "quantity" (how much / how many / a limit / a
  default), "howto" (answered by a command or option) or "other"; :func:`type_match` says
  whether a unit holds that kind of thing, and more when it also states what the question
  qualifies it by: a default, a bound (the largest, at most), a count of the very thing
  asked about ("how many arguments": "five arguments").
* :func:`content_stems`: the words lexical matching compares.

Every rule here is about the form of a question, never about the wording of a particular
evaluation set.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.support import STOP, Token, is_identifier, is_rare_word, stem, tokenize
from rag.units import Unit

#: question words that say nothing about the answer's content
_QUESTION_STOP_WORDS = """
what which how many much does do is are who whom whose where when why can could i my
    me we us use using used set sets setting value values happen happens get tell there
    any"""
QUESTION_STOP = STOP | frozenset(_QUESTION_STOP_WORDS.split())
#: nouns that mark the rare word before them as a name ("the flexreadr package")
_NAME_NOUNS_WORDS = """
package packages extension extensions function functions option options parameter
    parameters setting settings command commands tool tools library libraries module modules
    plugin plugins cluster index indexes type types variable variables flag flags
    operator driver backend server service format"""
NAME_NOUNS = frozenset(_NAME_NOUNS_WORDS.split())
_QUANTITY = re.compile(
    r"\b(how (much|many|long|large|big|often|far|old)|what (size|age|port|limit|number|"
    r"length|timeout|percentage|fraction)|default|maximum|minimum|max(imum)?|limit|at most|"
    r"at least|how .* (can|may) be|up to|at what|which port|capacity|largest|smallest|"
    r"longest|shortest|biggest)\b",
    re.I,
)
#: "which <noun>" / "what <noun>" / "what is the <noun>", the noun within a few words of the
#: question word and before its verb ("what does a view need" asks no name)
_NAME = re.compile(
    r"\b(which|what)(?:'s\s+the|\s+(?:is|are|was|were)\s+the|\s+of(?:\s+the)?)?\s+"
    r"(?:(?!(?:does|do|did|is|are|was|were|can|could|should|would|will|has|have|had|must|"
    r"may|might|shall)\b)[\w.()'@>:-]+\s+){0,2}?"
    r"(function|parameter|setting|option|command|role|lock|view|"
    r"catalog|extension|file|variable|argument|flag|error|condition|code|type|algorithm|"
    r"index|method|mode|level|name|tool|program|utility|clause|keyword|operator|column|"
    r"knob|switch|state)s?\b",
    re.I,
)
#: a procedural question: in a technical manual the answer is a command, option or function
_HOWTO = re.compile(
    r"\bhow (do|can|should|would) (i|we|you|one)\b|\bhow to\b|\bis there (a|an) way\b", re.I
)
#: a question about where something is kept: in a technical manual the answer is a file,
#: directory or path
_WHERE = re.compile(r"^\W*where\b|\bwhere (does|do|is|are|can|should|will|would)\b", re.I)
#: the question asks for a default ("by default", "unless configured otherwise")
_DEFAULT_Q = re.compile(
    r"\b(default|defaults|unless (it is |it's |you )?(configured|changed|set|told|specified)|"
    r"if (i|you) (don't|do not) (set|change)|initially|standard setting|left unset)\b",
    re.I,
)
#: what a question asks to count: "how many <noun>", "number of <noun>"
_COUNTED = re.compile(r"\b(?:how many|number of)\s+([a-z]{3,})(?:\s+([a-z]{3,}))?", re.I)
#: the question asks for a bound (the most or least something can be)
_LIMIT_Q = re.compile(
    r"\b(maximum|minimum|max|largest|biggest|smallest|highest|lowest|longest|shortest|"
    r"furthest|farthest|limit|limits|cap|at most|at least|upper bound|lower bound)\b",
    re.I,
)
#: a unit states a bound
_LIMIT_U = re.compile(
    r"\b(maximum|minimum|max|at most|at least|up to|no more than|no fewer than|"
    r"no less than|exceed|exceeds|limit|limits|limited to|largest|smallest|upper bound|"
    r"lower bound)\b",
    re.I,
)
_DEFAULT_U = re.compile(r"(?<![-\w])(default|defaults|by default|is typically|initially)\b", re.I)
#: numbers that are references, not facts ("see Section 26.3.4", "Table 9.90")
_REF_NUM = re.compile(r"\b(Section|Table|Chapter|Figure|Example|Appendix|page|Step)\s+[\d.]+", re.I)
#: a file name: a dotted name with a letter after its last dot ("postgresql.auto.conf")
_FILE_NAME = re.compile(r"\.[a-z][a-z0-9]*$", re.I)
#: a path ("/var/lib/app", "~/.config/app"; not "and/or")
_PATH = re.compile(r"(?<![\w/.])~?/\.?\w[\w.-]*")
_PROPER = re.compile(r"(?<![.!?:]\s)(?<!^)\b([A-Z][a-z]+[A-Za-z]*)\b")
_WORDS = re.compile(r"(?<![\w.-])(?:--?)?\w[\w.$-]*")


def distinctive_terms(question: str, *, rare_words: bool = True) -> list[str]:
    """Identifiers (snake_case, dotted, ``--options``, CamelCase, ALL-CAPS, words with
    digits), numbers of 3+ digits, capitalised words inside a sentence (product names), and
    rare words (outside the embedder's common English vocabulary). With ``rare_words=False``
    a rare word counts only when used as a name (followed by "package", "extension",
    "function"...): users write words like "partway" that no manual need contain."""
    out: list[str] = []
    words = _WORDS.findall(question)
    for i, raw in enumerate(words):
        t = raw.rstrip(".-")
        if not t:
            continue
        nxt = words[i + 1].lower().rstrip(".?,") if i + 1 < len(words) else ""
        number = t.isdigit() and len(t) >= 3
        ident = is_identifier(t) and (not t.startswith("-") or t.startswith("--"))
        rare = (
            is_rare_word(t) and t.lower() not in QUESTION_STOP and (rare_words or nxt in NAME_NOUNS)
        )
        if number or ident or rare:
            out.append(t)
    for m in _PROPER.finditer(question):
        before = question[: m.start(1)].rstrip()
        if before and before[-1] not in '.!?:"“(':
            out.append(m.group(1))
    seen: dict[str, None] = {}
    for t in out:
        if len(t) >= 2 and t.lower() not in QUESTION_STOP:
            seen.setdefault(t, None)
    return list(seen)


def contains_term(text: str, term: str) -> bool:
    """Whether ``text`` holds ``term`` as a whole word (case-insensitive)."""
    pattern = re.escape(term.lower())
    if term[:1].isalnum():
        pattern = r"(?<!\w)" + pattern
    if term[-1:].isalnum():
        pattern += r"(?!\w)"
    return re.search(pattern, text.lower()) is not None


def absent_terms(question: str, passages: Sequence[str]) -> list[str]:
    """The distinctive terms of ``question`` (rare words only when used as names) that occur in
    none of ``passages``. A rare word counts as present in any inflection ("bloated")."""
    lowered = [p.lower() for p in passages]
    out: list[str] = []
    for term in distinctive_terms(question, rare_words=False):
        if term.isalpha() and term.islower():
            prefix = re.compile(r"(?<!\w)" + re.escape(stem(term)))
            if not any(prefix.search(p) for p in lowered):
                out.append(term)
        elif not any(contains_term(p, term) for p in lowered):
            out.append(term)
    return out


def content_stems(text: str) -> list[str]:
    """Content-word keys of ``text`` for lexical matching: stemmed words, identifiers, numbers,
    and the parts of an identifier ("shared_buffers" also gives "shared" and "buffer"), so a
    question in plain words meets a unit that names the parameter."""
    out: list[str] = []
    for t in tokenize(text):
        if t.kind not in ("word", "ident", "number") or t.text in QUESTION_STOP or len(t.text) < 2:
            continue
        out.append(t.key)
        if t.kind == "ident":
            parts = [p for p in re.split(r"[_.\-/:()]+|(?<=[a-z])(?=[A-Z])", t.text) if len(p) > 2]
            if len(parts) > 1:
                out.extend(stem(p.lower()) for p in parts if p.lower() not in QUESTION_STOP)
    return out


def answer_type(question: str) -> str:
    """ "name", "place", "quantity", "howto" or "other" (module docstring)."""
    if _NAME.search(question):
        return "name"
    if _WHERE.search(question):
        return "place"
    if _QUANTITY.search(question) or _DEFAULT_Q.search(question):
        return "quantity"
    if _HOWTO.search(question):
        return "howto"
    return "other"


def asks_default(question: str) -> bool:
    return bool(_DEFAULT_Q.search(question))


def counted_nouns(question: str) -> frozenset[str]:
    """The stems of what a question asks to count: the (up to two) words after "how many" or
    "number of" ("how many parallel jobs", "the number of columns")."""
    return frozenset(
        stem(word.lower())
        for m in _COUNTED.finditer(question)
        for word in m.groups()
        if word and word.lower() not in QUESTION_STOP
    )


def _counts(toks: Sequence[Token], counted: frozenset[str]) -> bool:
    """Whether a number in ``toks`` counts one of ``counted`` ("five arguments", "1,600 int
    columns": the noun within two words after it)."""
    return any(
        t.kind == "number"
        and not t.key.split("|")[1]
        and any(u.key in counted for u in toks[i + 1 : i + 3])
        for i, t in enumerate(toks)
    )


def asks_limit(question: str) -> bool:
    return bool(_LIMIT_Q.search(question))


def _asked(question: str) -> frozenset[str]:
    """The question's identifiers and word stems: an identifier of a unit that is one of them
    (or a question word written in capitals, "REFRESH") names nothing new."""
    return frozenset(t.key for t in tokenize(question) if t.kind in ("ident", "word"))


def _is_asked(token: Token, asked: frozenset[str]) -> bool:
    return token.key in asked or stem(token.key) in asked


def type_match(kind: str, unit: Unit, question: str = "") -> float:
    """How well a unit holds what the question asks for: 1.0 for a number (not a section
    reference) to a quantity question (1.5 when the number counts what the question counts),
    an identifier the question does not already name to a name question (0.5 when only its
    term names one; half of that for a how-to question), a file name or path to a place
    question (0.5 for another new identifier); plus 0.5 when the question asks for a default
    and the unit states one, and 0.5 when it asks for a bound (largest, minimum, a limit) and
    the unit states one (maximum, at most, cannot exceed). An identifier that is a word of the
    question written otherwise ("REFRESH" for "refresh") is not new."""
    score = 0.0
    toks = tokenize(_REF_NUM.sub(" ", unit.text))
    if kind == "quantity":
        score = 1.0 if any(t.kind == "number" for t in toks) else 0.0
        counted = counted_nouns(question)
        if score and counted and _counts(toks, counted):
            score += 0.5
    elif kind == "place":
        asked = _asked(question)
        new_names = [t for t in toks if t.kind == "ident" and not _is_asked(t, asked)]
        names_file = any(_FILE_NAME.search(t.text) for t in new_names) or any(
            m.group() not in question for m in _PATH.finditer(unit.text)
        )
        score = 1.0 if names_file else 0.5 if new_names else 0.0
    elif kind in ("name", "howto"):
        asked = _asked(question)
        novel = any(t.kind == "ident" and not _is_asked(t, asked) for t in toks)
        in_context = any(
            t.kind == "ident" and not _is_asked(t, asked) for t in tokenize(unit.context)
        )
        score = 1.0 if novel else 0.5 if in_context else 0.0
        if kind == "howto":
            score *= 0.5
    if question and asks_default(question) and _DEFAULT_U.search(unit.text):
        score += 0.5
    if question and asks_limit(question) and _LIMIT_U.search(unit.text):
        score += 0.5
    return score
