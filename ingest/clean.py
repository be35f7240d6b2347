"""Clean parsed text: control characters out, whitespace normalised, paragraph breaks kept.

The cleaned elements, joined with a blank line, form the document's *full text*; every chunk's
character span points into it. A document with no text left, or whose text is mostly
replacement characters and other garbage, is refused with a reason.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

from ingest.types import Element, ParsedDocument

#: separator placed between elements in the full text
ELEMENT_SEPARATOR = "\n\n"

# C0/C1 controls except tab and newline, plus invisible format characters that only confuse
# tokenizers (zero-width space/joiners, BOM, soft hyphen, bidi marks), and lone surrogates,
# which no UTF-8 column can store.
_DROP = re.compile(
    "[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ud800-\udfff]"
)
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
# runs of whitespace but newline that are not already a single space (matching only what
# changes keeps a long clean text from being copied piece by piece)
_SPACES = re.compile(r"[^\S\n]{2,}|[^\S\n ]")
_SPACE_AROUND_NL = re.compile(r" +\n *|\n +")
_MANY_NL = re.compile(r"\n{3,}")

#: texts longer than this are cleaned block by block (see :func:`_blocks`), so that cleaning
#: a huge element never holds more than a block's worth of intermediate pieces
CLEAN_BLOCK_CHARS = 1 << 20
# a place to cut a text where no cleaning step reaches across: before a character that is not
# whitespace (so no run of whitespace or line break spans the cut) and never combines with
# what precedes it (so NFC composes each side alone): letters and digits of ASCII, Greek,
# Cyrillic, Hebrew and Arabic, kana, CJK ideographs, Hangul syllables
_SAFE_CUT = re.compile(
    "[0-9A-Za-z\u0391-\u03a9\u03b1-\u03c9\u0410-\u044f\u05d0-\u05ea\u0627-\u064a"
    "\u3041-\u3096\u30a1-\u30fa\u4e00-\u9fff\uac00-\ud7a3]"
)

#: a document whose non-space characters are more than this share garbage is refused
MAX_GARBAGE_SHARE = 0.3
#: ... or whose non-space characters are less than this share letters and digits
MIN_WORD_SHARE = 0.2


class UnreadableDocument(Exception):
    """A document with nothing worth indexing; the message is the reason users see."""


@dataclass
class CleanDocument:
    elements: list[Element]
    text: str  # the elements' text joined by ELEMENT_SEPARATOR
    spans: list[tuple[int, int]] = field(default_factory=list)  # each element's span in text
    title: str = ""

    def drop_element_texts(self) -> None:
        """Let go of each element's copy of its text: the chunker reads only the full text,
        the spans and the elements' kind, page and heading path."""
        for el in self.elements:
            el.text = ""


def clean_text(text: str) -> str:
    """Normalise one piece of text: NFC, no control characters, single spaces, at most one
    blank line between paragraphs, no leading or trailing whitespace.

    A text longer than :data:`CLEAN_BLOCK_CHARS` is cleaned block by block, cut where no
    step reaches across (the result is the same as in one piece)."""
    if len(text) <= CLEAN_BLOCK_CHARS:
        return _clean_block(text).strip()
    return "".join(_clean_block(b) for b in _blocks(text, CLEAN_BLOCK_CHARS)).strip()


def _clean_block(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _DROP.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NL.sub("\n", text)
    return _MANY_NL.sub("\n\n", text)


def _blocks(text: str, size: int) -> Iterator[str]:
    """``text`` in pieces of about ``size`` characters, each cut at a :data:`_SAFE_CUT`
    place (none found within twice ``size``: the rest is one piece)."""
    pos = 0
    while len(text) - pos > size:
        m = _SAFE_CUT.search(text, pos + size, min(len(text), pos + 2 * size))
        if m is None:
            break
        yield text[pos : m.start()]
        pos = m.start()
    yield text[pos:]


def clean_inline(text: str) -> str:
    """A heading or title on one line."""
    return " ".join(clean_text(text).split())


_GARBAGE = re.compile("[\ufffd\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ue000-\uf8ff\ud800-\udfff]")
_NOT_WORD = re.compile(r"[\W_]+")
_WHITESPACE = re.compile(r"\s+")


#: the garbage check reads at most this many characters of a document (evenly spread windows)
GARBAGE_SAMPLE_CHARS = 1 << 21
_SAMPLE_WINDOW = 1 << 17


def _sample(texts: list[str]) -> list[str]:
    """``texts``, or evenly spread windows of them when they are longer than
    :data:`GARBAGE_SAMPLE_CHARS` in all."""
    total = sum(len(t) for t in texts)
    if total <= GARBAGE_SAMPLE_CHARS:
        return texts
    step = total // (GARBAGE_SAMPLE_CHARS // _SAMPLE_WINDOW)
    out: list[str] = []
    pos = next_at = 0
    for text in texts:
        while next_at < pos + len(text):
            start = next_at - pos
            out.append(text[start : start + _SAMPLE_WINDOW])
            next_at += step
        pos += len(text)
    return out


def _garbage_reason(texts: list[str]) -> str | None:
    """Why the text is unreadable, or None. Regex counts over at most
    :data:`GARBAGE_SAMPLE_CHARS` characters: fast and small on large documents."""
    total = garbage = words = 0
    for text in _sample(texts):
        total += len(text) - sum(len(m) for m in _WHITESPACE.findall(text))
        garbage += len(_GARBAGE.findall(text))
        words += len(_NOT_WORD.sub("", text))
    if total == 0:
        return None
    if garbage / total > MAX_GARBAGE_SHARE:
        return (
            f"unreadable text: {100 * garbage // total}% of the characters are replacement "
            "or control characters (wrong encoding or a binary file?)"
        )
    if words / total < MIN_WORD_SHARE:
        return "unreadable text: almost no letters or digits (binary or garbled content?)"
    return None


def clean_document(doc: ParsedDocument) -> CleanDocument:
    """Clean every element, drop the empty ones and build the full text.

    Raises :class:`UnreadableDocument` when nothing readable is left.
    """
    elements: list[Element] = []
    spans: list[tuple[int, int]] = []
    parts: list[str] = []
    pos = 0
    for el in doc.elements:
        text = clean_text(el.text)
        if not text:
            continue
        if parts:
            pos += len(ELEMENT_SEPARATOR)
        heading = [h for h in (clean_inline(x) for x in el.heading_path) if h]
        elements.append(
            Element(text=text, kind=el.kind, page=el.page, heading_path=heading, level=el.level)
        )
        spans.append((pos, pos + len(text)))
        parts.append(text)
        pos += len(text)
    if not elements:
        raise UnreadableDocument("no extractable text")
    reason = _garbage_reason([e.text for e in doc.elements])
    if reason is not None:
        raise UnreadableDocument(reason)
    full = ELEMENT_SEPARATOR.join(parts)
    return CleanDocument(
        elements=elements, text=full, spans=spans, title=clean_inline(doc.title or "")
    )
