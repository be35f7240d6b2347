"""Answer units: a retrieved chunk's text split into sentences, table rows and code lines.

How ingestion writes chunk text (``ingest/parsers``, ``ingest/clean.py``): elements
(paragraphs, list items, headings, ``<pre>`` blocks, tables, PDF paragraphs) are joined by a
blank line; a table is one element whose rows are lines with cells joined by `` | ``; a
definition-list term (``<dt>``, e.g. ``shared_buffers (integer)`` or ``-j njobs``) is an
element of its own, followed by its description's paragraphs. A unit therefore keeps a
*context*: the definition term it belongs to, or the table's caption and header line, because
the sentence that states a fact often does not name its subject ("The default is typically
128 megabytes (128MB)").

:func:`split_units` is pure and deterministic; the answer stage (``rag/extract.py``) ranks the
units and the support rule (``rag/support.py``) checks claims against them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: abbreviations (and single initials) after which a period does not end a sentence
_ABBREV = re.compile(
    r"(?:\b(?:e\.g|i\.e|etc|vs|cf|approx|Sect|Ch|Fig|No|Vol|resp|incl|esp|ca|Inc|Ltd|Dr|Mr|Ms|St)"
    r"|\b[A-Z])\.$"
)
_SENT_END = re.compile(r"(?<=[.!?])[\"”’')\]]*\s+(?=[A-Z0-9(\"“‘`'\\-])")
_SECTION_TITLE = re.compile(
    r"^(?:[A-Z]\.|\d+\.)(?:\d+\.)*\d*\.?\s+\S|^(?:Chapter|Appendix|Part)\s", re.I
)
_CODE_HINT = re.compile(r"[;{}=<>$]|^\s|^(?:SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP)\b.*[;(]")
#: a PDF running header or footer that the page text keeps ("Chapter 2: Setup 17", "17")
_RUNNING_HEADER = re.compile(
    r"^(?:Chapter|Appendix|Section)\s+[\w.]+:\s.{3,80}\s\d{1,4}$|^\d{1,4}$"
)
#: a table-of-contents line of a PDF ("B.3.1 Setting paper size . . . . . 57")
_TOC = re.compile(r"(?:\s?\.){4,}\s*\d*\s*$|\.{6,}")
#: a definition term is at most this many words and does not end like a sentence
TERM_MAX_WORDS = 10
#: a PDF line at least this long that does not end a sentence was wrapped: join the next one
WRAP_MIN_CHARS = 50

#: unit kinds that answer a question (the others are headings, bare terms, contents lines and
#: a chunk's cut-off first words)
ANSWER_KINDS = frozenset({"sentence", "row", "code"})


@dataclass
class Unit:
    """One piece of a chunk that can be quoted on its own."""

    text: str
    #: the definition term or table caption/header the unit belongs to ("" when none)
    context: str
    #: "sentence", "row", "code", "term", "title", "toc" (a PDF contents line), "fragment"
    #: (the cut-off start of a chunk that begins mid-sentence)
    kind: str
    #: the element (blank-line block) and the line of the chunk the unit comes from
    block: int
    line: int
    #: the unit's position among the chunk's units
    order: int = 0

    def full(self) -> str:
        """The unit with its context, as quoted in an answer and checked by the support rule."""
        if self.context and self.kind in ANSWER_KINDS:
            return f"{self.context}: {self.text}"
        return self.text


def clean_chunk_text(text: str) -> str:
    """PDF extraction artefacts undone: pdfium marks a hyphenated line break with U+0002
    ("ar\\x02guments"), sometimes U+FFFE; the word is joined again."""
    joined = re.sub(r"(?<=\w)[\x02\ufffe]\n?(?=\w)", "", text)
    return joined.replace("\x02", "").replace("\ufffe", "")


def unwrap_lines(lines: list[str]) -> list[str]:
    """The lines of a block with PDF running headers dropped and wrapped prose joined (a long
    line that does not end with . ! ? : ; continues on the next). HTML paragraphs are single
    lines already and pass unchanged."""
    out: list[str] = []
    joining = False
    for line in lines:
        if _RUNNING_HEADER.match(line):
            continue
        if joining and out:
            out[-1] = f"{out[-1]} {line}"
        else:
            out.append(line)
        joining = (
            len(line) >= WRAP_MIN_CHARS
            and not line.rstrip().endswith((".", "!", "?", ":", ";"))
            and " | " not in line
        )
    return out


def split_sentences(line: str) -> list[str]:
    """The sentences of one prose line; abbreviations, initials and dotted numbers (3.6.0) do
    not end a sentence."""
    out: list[str] = []
    start = 0
    for m in _SENT_END.finditer(line):
        piece = line[start : m.start()].rstrip()
        if _ABBREV.search(piece[-8:] if len(piece) > 8 else piece):
            continue
        segment = line[start : m.end()].strip()
        if segment:
            out.append(segment)
        start = m.end()
    tail = line[start:].strip()
    if tail:
        out.append(tail)
    return out


def is_term_line(line: str) -> bool:
    """A definition-list term (``name (type)``, ``-x arg``, ``--long=arg``, ``name``): short,
    no sentence-final punctuation, not a numbered section title."""
    s = line.strip()
    if not s or len(s.split()) > TERM_MAX_WORDS or " | " in s:
        return False
    if s.endswith((".", ":", "?", "!", ",", ";")) and not s.endswith("..."):
        return False
    return not _SECTION_TITLE.match(s)


def is_title(line: str) -> bool:
    """A numbered section title ("19.4.1. Memory", "Appendix B Tools")."""
    return bool(_SECTION_TITLE.match(line.strip())) and len(line.split()) <= 14


def looks_like_code(block: str) -> bool:
    """A block of at least two lines, most with code punctuation, none ending like prose."""
    lines = [ln for ln in block.split("\n") if ln.strip()]
    if len(lines) < 2:
        return False
    hinted = sum(1 for ln in lines if _CODE_HINT.search(ln))
    unpunctuated = sum(1 for ln in lines if not ln.rstrip().endswith((".", ":", "?")))
    return hinted >= len(lines) / 2 and unpunctuated == len(lines)


def _table_units(lines: list[str], context: str, block: int, line_no: int) -> list[Unit]:
    """A table's rows: the caption (a first line without cells) and the header row (a row
    without digits among the first two lines; data rows mostly hold digits) become the
    context of the data rows. A chunk may start mid-table: then the rows have no header."""
    units: list[Unit] = []
    header = ""
    for i, line in enumerate(lines):
        if i == 0 and " | " not in line:  # the caption
            header = line
            units.append(Unit(line, context, "title", block, line_no))
        elif (i == 0 or (i == 1 and " | " not in lines[0])) and not any(c.isdigit() for c in line):
            header = f"{header} — {line}" if header else line
            units.append(Unit(line, context, "row", block, line_no))
        else:
            units.append(Unit(line, header, "row", block, line_no))
        line_no += 1
    return units


def split_units(text: str, *, lead_context: str = "") -> list[Unit]:
    """The units of one chunk's text, in order. ``lead_context`` is the definition term in
    force where the chunk starts (known from the chunk before it), or ""."""
    units: list[Unit] = []
    context = lead_context
    blocks = [b for b in re.split(r"\n\s*\n", clean_chunk_text(text)) if b.strip()]
    line_no = 0
    prev_term = False
    for bi, block in enumerate(blocks):
        lines = [ln.strip() for ln in block.split("\n") if ln.strip()]
        if sum(" | " in ln for ln in lines) >= max(1, len(lines) / 2):
            units.extend(_table_units(lines, context, bi, line_no))
            line_no += len(lines)
            prev_term = False
            continue
        if len(lines) <= 2 and all(is_title(ln) for ln in lines):
            context = ""
            for line in lines:
                units.append(Unit(line, "", "title", bi, line_no))
                line_no += 1
            prev_term = False
            continue
        if bi + 1 < len(blocks) and len(lines) <= 3 and all(is_term_line(ln) for ln in lines):
            # a <dt>: its description follows; consecutive terms (-j / --jobs) accumulate
            term = " / ".join(lines)
            context = f"{context} / {term}" if prev_term and context else term
            for line in lines:
                units.append(Unit(line, "", "term", bi, line_no))
                line_no += 1
            prev_term = True
            continue
        prev_term = False
        if looks_like_code(block):
            for line in lines:
                units.append(Unit(line, context, "code", bi, line_no))
                line_no += 1
            continue
        for line in unwrap_lines(lines):
            for sentence in split_sentences(line):
                kind = "toc" if _TOC.search(sentence) else "sentence"
                units.append(Unit(sentence, context, kind, bi, line_no))
            line_no += 1
    # a chunk after the first starts where its overlap was snapped to a word: its first
    # "sentence" is usually the tail of one the previous chunk holds whole
    if units and units[0].kind == "sentence" and units[0].text[:1].islower():
        units[0].kind = "fragment"
    for i, unit in enumerate(units):
        unit.order = i
    return units


def trailing_context(text: str) -> str:
    """The definition term in force at the end of a chunk's text (what the next chunk of the
    same document starts under), or ""."""
    units = split_units(text)
    if not units:
        return ""
    last = units[-1]
    return last.text if last.kind == "term" else last.context
