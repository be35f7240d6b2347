"""Clean parsed text: control characters out, whitespace normalised, paragraph breaks kept.

The cleaned elements, joined with a blank line, form the document's *full text*; every chunk's
character span points into it. A document with no text left, or whose text is mostly
replacement characters and other garbage, is refused with a reason.
"""

from __future__ import annotations

import re
import unicodedata
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
_SPACES = re.compile(r"[^\S\n]+")  # any whitespace but newline
_SPACE_AROUND_NL = re.compile(r" *\n *")
_MANY_NL = re.compile(r"\n{3,}")

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


def clean_text(text: str) -> str:
    """Normalise one piece of text: NFC, no control characters, single spaces, at most one
    blank line between paragraphs, no leading or trailing whitespace."""
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text)
    text = _DROP.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _SPACE_AROUND_NL.sub("\n", text)
    text = _MANY_NL.sub("\n\n", text)
    return text.strip()


def clean_inline(text: str) -> str:
    """A heading or title on one line."""
    return " ".join(clean_text(text).split())


_GARBAGE = re.compile("[\ufffd\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ue000-\uf8ff\ud800-\udfff]")
_NOT_WORD = re.compile(r"[\W_]+")
_WHITESPACE = re.compile(r"\s+")


def _garbage_reason(texts: list[str]) -> str | None:
    """Why the text is unreadable, or None. Regex counts: fast on large documents."""
    total = garbage = words = 0
    for text in texts:
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
