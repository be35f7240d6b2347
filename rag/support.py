"""Support that does not lie: is a sentence backed by a passage?

A claim is *supported* by a passage only when one unit of the passage (a sentence, a table
row or a code line, alone or with its definition term / table header: ``rag/units.py``)
holds

1. every piece of the claim's *specific content*: numbers with their unit (number words
   normalised: "five minutes" == "5min"), identifiers (snake_case, CamelCase, dotted.names,
   ``--options``, ``-x`` flags, words with digits, ALL-CAPS words, ``f()`` calls), quoted
   names, and rare words (outside the bundled embedder's 30k-word English vocabulary:
   "ctid", "cmin", "initdb"); each at least as often as the claim states it ("$1, $2" is not
   "$2, $2"), and each *anchored*: the nearest content word before and after it in the claim
   both occur within :data:`ANCHOR_WINDOW` words of one of its places in the unit, so a
   number or identifier moved onto another subject of the same unit is caught ("port 5433
   is the default" against "port 5432 is the default ...; the new one uses port 5433");
2. the same negation cues (not/no/never/none/cannot/without/neither/nor/n't, as a
   multiset) as the claim, counted in the span of the unit that the claim's content words
   cover plus :data:`NEG_LEFT` tokens each side, and back to the start of the clause the
   span starts in (a clause ends at , ; : or a sentence end);
3. nearly all of the claim's content words (recall >= :data:`RECALL_MIN`; at 0.6 a
   neighbouring sentence sharing the topic words "supported" a claim with a dropped "not"),
   and none of the missing ones taken from another unit of the passage: a claim that mixes
   two units ("xmax: the identity of the *inserting* transaction", where the unit of xmax
   says *deleting* and the one of xmin says inserting) is not supported by either.

Anything else is unsupported. The rule is deliberately conservative (a paraphrase far from
the source's wording fails it) because a false "supported" is worse than a missing one.
Measured on planted contradictions over real manual pages (identifiers swapped, numbers
changed, negations added or removed, sentences moved under another term: 603 over 300 pages
of the PostgreSQL manual): none supported; all 359 true sentences copied from the pages
supported. Pure functions, no model: cheap enough
to run on every answer.

Quotes (``term: “quote” [n]`` lines of an extractive answer) are checked differently: a quote
is supported when it is the cited passage's own words (:func:`quote_in_passage`).

One module just over 500 lines, on purpose: the support rule (tokens, numbers written in
words and units, identifiers, negation cues, the verdict) is one specification, read and
tested as a whole.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rag.citations import markers, strip_markers
from rag.units import clean_chunk_text, split_units

#: share of the claim's content words the supporting unit must hold
RECALL_MIN = 0.8
#: a specific's neighbour word must occur within this many words of it in the unit
ANCHOR_WINDOW = 6
#: how far (in tokens) the claim is searched for a specific's neighbour word on each side
ANCHOR_REACH = 3
#: tokens around the matched words that still belong to their clause ("is not used")
NEG_LEFT = 3

_STOP_WORDS = """
a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself just
    me more most my of off on once only or other our ours out over own same she should so some
    such than that the their theirs them then there these they this those through to too under
    until up very was we were what when where which while who whom why will with would you your
    also may might must shall one upon per via e.g i.e etc default"""
STOP = frozenset(_STOP_WORDS.split())
NEGATIONS = {
    "not": "not",
    "no": "no",
    "never": "never",
    "none": "none",
    "cannot": "not",
    "can't": "not",
    "without": "without",
    "neither": "neither",
    "nor": "nor",
    "nothing": "nothing",
    "nobody": "nobody",
}
NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "dozen": 12, "twice": 2,
}  # fmt: skip
#: unit spellings -> canonical unit
UNITS = {
    "b": "B", "byte": "B", "bytes": "B",
    "kb": "kB", "kilobyte": "kB", "kilobytes": "kB",
    "mb": "MB", "megabyte": "MB", "megabytes": "MB",
    "gb": "GB", "gigabyte": "GB", "gigabytes": "GB",
    "tb": "TB", "terabyte": "TB", "terabytes": "TB",
    "us": "us", "microsecond": "us", "microseconds": "us",
    "ms": "ms", "millisecond": "ms", "milliseconds": "ms",
    "s": "s", "sec": "s", "second": "s", "seconds": "s",
    "min": "min", "minute": "min", "minutes": "min",
    "h": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d",
    "%": "%", "percent": "%",
    "million": "e6", "billion": "e9", "thousand": "e3",
}  # fmt: skip

# a token: --options, -x flags, numbers (maybe glued to a unit), words with inner . :: ->,
# f() calls, a percent sign
_TOKEN = re.compile(
    r"""--?[A-Za-z][\w-]*(?:=\S+)?
    | \d+(?:[.,]\d+)*(?:[A-Za-z%]+)?
    | [A-Za-z_\\][\w$]*(?:(?:\.|::|->)[A-Za-z_]\w*)*(?:\(\))?(?:'t)?
    | %
    """,
    re.VERBOSE,
)
_QUOTED = re.compile(r"[\"“”«]([^\"“”«»]{2,60})[\"“”»]|‘([^‘’]{2,60})’|`([^`]{2,60})`")
_CAMEL = re.compile(r"[a-z][A-Z]|[A-Z]{2,}[a-z]")
_NUMBER = re.compile(r"(\d+(?:[.,]\d+)*)([A-Za-z%]*)")
_CLAUSE_END = re.compile(r"[,;:!?]|\.(?=\s|$)")


@dataclass(frozen=True)
class Token:
    """One word of a text, lower-cased, with what the rule needs to know about it."""

    #: the lower-cased surface form
    text: str
    #: "word", "number", "ident" (identifier or rare word) or "neg" (a negation cue)
    kind: str
    #: the comparable form: a canonical number "128|MB", an identifier, a word's stem
    key: str
    position: int
    #: the clause of its text the token is in (clauses end at , ; : . ! ?)
    clause: int = 0


def stem(word: str) -> str:
    """A light suffix stripper (-ing, -ed, -ly, -es, -s) so "runs"/"run" and "used"/"use"
    compare equal."""
    for suffix in ("ing", "edly", "ed", "ly", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@functools.lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """The whole words of the bundled embedder's WordPiece vocabulary (30k, English): a word
    outside it ("ctid", "cmin", "naptime", "initdb") is a specific term. Empty (no rare-word
    rule) when the bundled embedder is not installed."""
    try:
        from models.bundled import bundled_embedder_path

        words = (bundled_embedder_path() / "vocab.txt").read_text("utf-8").split("\n")
    except Exception:
        return frozenset()
    return frozenset(w for w in words if w.isalpha() and w.islower())


def is_rare_word(word: str) -> bool:
    """A plain word of 3+ letters outside the common vocabulary (a product, column or tool
    name)."""
    vocab = common_words()
    if not vocab or len(word) < 3 or not word.isalpha():
        return False
    w = word.lower()
    return w not in vocab and stem(w) not in vocab and w.rstrip("s") not in vocab


def is_identifier(raw: str) -> bool:
    """snake_case, CamelCase, dotted.name, ``--option``, ``-x``, ``f()``, a word with digits, or
    an ALL-CAPS word."""
    if raw.startswith("-") and len(raw) > 1 and not raw[1].isdigit():
        return True
    core = raw.rstrip("()")
    if raw.endswith("()") or "_" in core or "::" in core or "->" in core:
        return True
    if "." in core.strip(".") and re.search(r"[A-Za-z]\.[A-Za-z]", core):
        return not re.fullmatch(r"(e\.g|i\.e|etc|vs|cf)\.?", core.lower())
    if any(c.isdigit() for c in core) and any(c.isalpha() for c in core):
        return True
    if _CAMEL.search(core):
        return True
    letters = [c for c in core if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def tokenize(text: str) -> list[Token]:
    """The text's tokens, numbers canonicalised (value and unit, number words as digits)."""
    return list(_tokenize(text))


@functools.lru_cache(maxsize=65536)
def _tokenize(text: str) -> tuple[Token, ...]:
    text = text.replace("\u00a0", " ")
    matches = list(_TOKEN.finditer(text))
    raw = [m.group() for m in matches]
    # the clause each token is in: clauses end at , ; : and sentence ends
    clauses, clause, last = [], 0, 0
    for found in matches:
        clause += len(_CLAUSE_END.findall(text, last, found.start()))
        last = found.end()
        clauses.append(clause)
    out: list[Token] = []
    i = 0
    while i < len(raw):
        tok = raw[i]
        at = clauses[i]
        low = tok.lower()
        m = _NUMBER.fullmatch(tok)
        value: str | None = None
        unit = ""
        if m:
            value = m.group(1).replace(",", "")
            unit = UNITS.get(m.group(2).lower(), m.group(2).lower()) if m.group(2) else ""
        elif low in NUMBER_WORDS and low != "one":  # "one" is mostly a pronoun
            value = str(NUMBER_WORDS[low])
        if value is not None:
            if not unit and i + 1 < len(raw) and raw[i + 1].lower() in UNITS:
                unit = UNITS[raw[i + 1].lower()]
                i += 1
            value = value.rstrip("0").rstrip(".") if "." in value else value
            out.append(Token(low, "number", f"{value}|{unit}", len(out), at))
        elif low in NEGATIONS or low.endswith("n't"):
            out.append(Token(low, "neg", NEGATIONS.get(low, "not"), len(out), at))
        elif is_identifier(tok):
            out.append(Token(low, "ident", low.rstrip("()"), len(out), at))
        elif is_rare_word(tok) and low not in STOP:
            out.append(Token(low, "ident", stem(low), len(out), at))
        else:
            out.append(Token(low, "word", stem(low), len(out), at))
        i += 1
    return tuple(out)


def quoted_names(text: str) -> set[str]:
    """Names the text puts in quotes or backticks, lower-cased, white space collapsed."""
    return {" ".join(g.lower().split()) for m in _QUOTED.finditer(text) for g in m.groups() if g}


@dataclass
class Specifics:
    """What a claim commits to beyond its ordinary words."""

    numbers: list[Token] = field(default_factory=list)
    identifiers: list[Token] = field(default_factory=list)
    quoted: set[str] = field(default_factory=set)
    negations: Counter[str] = field(default_factory=Counter)
    content: set[str] = field(default_factory=set)

    @property
    def anchored(self) -> list[Token]:
        return self.numbers + self.identifiers


def specifics(text: str, tokens: Sequence[Token] | None = None) -> Specifics:
    toks = tokenize(text) if tokens is None else tokens
    spec = Specifics(quoted=quoted_names(text))
    for t in toks:
        if t.kind == "number":
            spec.numbers.append(t)
        elif t.kind == "ident":
            spec.identifiers.append(t)
        elif t.kind == "neg":
            spec.negations[t.key] += 1
        if t.kind != "neg" and t.text not in STOP and len(t.text) > 1:
            spec.content.add(t.key)
    return spec


def _number_matches(claim: str, unit_tok: str) -> bool:
    """ "128|MB" matches "128|MB"; a claim's bare value matches the value with any unit."""
    cv, cu = claim.split("|")
    uv, uu = unit_tok.split("|")
    return cv == uv and (cu == uu or not cu)


#: words that do not bind a specific ("default" does: "the default is 5432")
ANCHOR_STOP = STOP - {"default"}


def _neighbours(tokens: Sequence[Token], index: int) -> list[str]:
    """The nearest content word on each side of ``tokens[index]`` (at most ``ANCHOR_REACH``
    tokens away): the words a specific is bound to ("OID 2", "default ... 128MB")."""
    out: list[str] = []
    for step in (-1, 1):
        j = index + step
        while 0 <= j < len(tokens) and abs(j - index) <= ANCHOR_REACH:
            t = tokens[j]
            if t.kind in ("word", "ident", "number") and t.text not in ANCHOR_STOP:
                out.append(t.key)
                break
            j += step
    return out


@dataclass
class Verdict:
    """Whether a claim is supported, by which unit (or the closest one that failed), why."""

    supported: bool
    unit: str = ""
    #: "ok", "content", "negation", "count:<key>", "quoted:<name>", "missing:<specific>",
    #: "unanchored:<specific>", "empty", "no unit", "not verbatim"
    reason: str = ""
    recall: float = 0.0


def _span_negations(spec: Specifics, utoks: Sequence[Token]) -> Counter[str]:
    """The unit's negation cues inside the span its matched content covers: a negation
    elsewhere in a long unit ("..., but might be less if your kernel will not support it")
    does not bear on a claim that does not reach it."""
    pos = [u.position for u in utoks if u.kind != "neg" and u.key in spec.content]
    if not pos:
        return Counter(u.key for u in utoks if u.kind == "neg")
    lo, hi = max(0, min(pos) - NEG_LEFT), max(pos) + 1 + NEG_LEFT
    # a negation that opens the clause the claim's words start in bears on them too ("No
    # attempt was made to contact the server" does not say "the server could be contacted")
    opening = utoks[min(pos)].clause
    lo = min([lo, *(u.position for u in utoks if u.clause == opening)])
    return Counter(u.key for u in utoks[lo:hi] if u.kind == "neg")


def _places(tok: Token, utoks: Sequence[Token]) -> list[int]:
    if tok.kind == "number":
        return [u.position for u in utoks if u.kind == "number" and _number_matches(tok.key, u.key)]
    return [u.position for u in utoks if u.kind == "ident" and u.key == tok.key]


def _check_unit(
    claim_toks: Sequence[Token], spec: Specifics, unit: str, others: set[str]
) -> Verdict:
    """The rule for one unit; ``others``: the content words of the passage's other units."""
    utoks = tokenize(unit)
    uspec = specifics(unit, utoks)
    recall = len(spec.content & uspec.content) / len(spec.content) if spec.content else 1.0
    if recall < RECALL_MIN:
        return Verdict(False, unit, "content", recall)
    mixed = sorted((spec.content - uspec.content) & others)
    if mixed:
        return Verdict(False, unit, f"mixed:{mixed[0]}", recall)
    if spec.negations != _span_negations(spec, utoks):
        return Verdict(False, unit, "negation", recall)
    for key, n in Counter(t.key for t in spec.anchored).items():
        have = sum(
            1
            for u in utoks
            if (u.kind == "number" and "|" in key and _number_matches(key, u.key))
            or (u.kind == "ident" and u.key == key)
        )
        if have < n:
            return Verdict(False, unit, f"count:{key}", recall)
    low_unit = " ".join(unit.lower().split())
    for q in spec.quoted:
        if q not in low_unit:
            return Verdict(False, unit, f"quoted:{q}", recall)
    for tok in spec.anchored:
        places = _places(tok, utoks)
        if not places:
            return Verdict(False, unit, f"missing:{tok.text}", recall)
        near = _neighbours(claim_toks, tok.position)
        if not near:
            continue
        anchored = False
        for p in places:
            window = {
                u.key
                for u in utoks[max(0, p - ANCHOR_WINDOW) : p + ANCHOR_WINDOW + 1]
                if u.position != p
            }
            if all(n in window for n in near):
                anchored = True
                break
        if not anchored:
            return Verdict(False, unit, f"unanchored:{tok.text}", recall)
    return Verdict(True, unit, "ok", recall)


def supports(claim: str, units: Iterable[str]) -> Verdict:
    """Whether any of ``units`` supports ``claim`` (module docstring); the verdict names the
    supporting unit, or the closest failure."""
    claim_toks = tokenize(claim)
    spec = specifics(claim, claim_toks)
    if not spec.content and not spec.anchored:
        return Verdict(False, "", "empty")
    texts = list(units)
    contents = [specifics(u).content for u in texts]
    best = Verdict(False, "", "no unit")
    for i, unit in enumerate(texts):
        others: set[str] = set()
        for j, words in enumerate(contents):
            if j != i and not _same_unit(texts[i], texts[j]):
                others |= words
        verdict = _check_unit(claim_toks, spec, unit, others)
        if verdict.supported:
            return verdict
        if verdict.recall >= best.recall:
            best = verdict
    return best


def _same_unit(a: str, b: str) -> bool:
    """Whether two checked texts are one unit with and without its context line."""
    return a.endswith(": " + b) or b.endswith(": " + a) or a == b


def passage_units(passage: str, *, lead_context: str = "") -> list[str]:
    """The units a passage is checked in: each sentence (table row, code line), alone and with
    its context line. No unit joins two sentences: a pair would let the negation of one
    sentence cover a claim about the other."""
    out: list[str] = []
    for u in split_units(passage, lead_context=lead_context):
        out.append(u.text)
        if u.context:
            out.append(f"{u.context}: {u.text}")
    return out


def supported_by(claim: str, passage: str, *, lead_context: str = "") -> Verdict:
    """:func:`supports` over the :func:`passage_units` of one passage."""
    return supports(claim, passage_units(passage, lead_context=lead_context))


def squash(text: str) -> str:
    """White space collapsed to single spaces."""
    return " ".join(text.split())


def quote_in_passage(quote: str, passage: str) -> bool:
    """Whether ``quote`` is the passage's own words: a run of its consecutive units (sentences,
    rows, lines; PDF wrapped lines joined, running headers dropped) or a verbatim piece of its
    text, white space aside."""
    q = squash(quote)
    if not q:
        return False
    cleaned = clean_chunk_text(passage)
    if q in squash(cleaned):
        return True
    return q in " ".join(squash(u.text) for u in split_units(cleaned))


# ------------------------------------------------------------------------ answers as claims
_MARKERS_AT_END = re.compile(r"((?:\s*\[\d{1,6}(?:\s*,\s*\d{1,6})*\])+)\s*$")
_QUOTE_LINE = re.compile(r"^(?:(?P<context>[^“]{1,200}?):\s+)?“(?P<quote>.+)”$")
# a sentence ends at . ! ? (with closing quotes/brackets and citation markers after it)
_SENTENCE_END = re.compile(r"(?<=[.!?])((?:[\"')\]]*)(?:\s*\[[\d,; ]{1,40}\])*)\s+")


@dataclass
class Claim:
    """One statement of an answer: a quote line (``term: “quote” [n]``) or a sentence."""

    #: the statement without its markers (a quote line: the quote alone)
    text: str
    #: the source numbers the statement cites
    markers: list[int]
    #: a quote line: ``context`` is the term or header shown before the quote
    quoted: bool = False
    context: str = ""


def split_prose(text: str) -> list[str]:
    """Sentences of one line of prose, each keeping the citation markers that follow it."""
    out: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        piece = text[start : m.end(1)].strip()
        if piece:
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def answer_claims(answer: str) -> list[Claim]:
    """The statements of an answer, each with the markers it carries. A line
    ``term: “quote” [n]`` (an extractive answer) is one quote claim; other lines are split
    into sentences."""
    out: list[Claim] = []
    for line in answer.splitlines():
        line = line.strip()
        if not line:
            continue
        end = _MARKERS_AT_END.search(line)
        quote = _QUOTE_LINE.match(line[: end.start()].strip()) if end else None
        if quote is not None and end is not None:
            context = (quote.group("context") or "").strip()
            out.append(Claim(quote.group("quote").strip(), markers(end.group(1)), True, context))
            continue
        for sentence in split_prose(line):
            text = strip_markers(sentence)
            if text:
                out.append(Claim(text, markers(sentence)))
    return out


def check_claim(claim: Claim, passage: str, *, lead_context: str = "") -> Verdict:
    """A claim against one passage: a quote must be the passage's own words; a sentence must
    be supported by one of its units (module docstring)."""
    if claim.quoted:
        ok = quote_in_passage(claim.text, passage)
        return Verdict(ok, claim.text if ok else "", "ok" if ok else "not verbatim", float(ok))
    return supported_by(claim.text, passage, lead_context=lead_context)
