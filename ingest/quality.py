"""Parse quality: a score in [0, 1] for every parsed document, from cheap signals.

A parser can "succeed" and still hand back text no one should be answered from: a scanned
PDF without a text layer (nothing, or a page number per page), a file decoded with the wrong
encoding (``rÃ©sumÃ©``), a PDF whose only text is its running header, a font without a
Unicode map (symbol soup). Such a document is **quarantined**: it gets a document row with
status ``quarantined``, the reason, the score and the signals, and no chunks, so nothing
that reads chunks (search, chat, lineage, evaluation) can ever serve it. ``enclave quarantine
release`` lets it in despite its score (recorded with the file's sha256 in the row's
``quality``, so later runs keep admitting that same file), ``retry`` parses it again.

The signals (at most :data:`SAMPLE_CHARS` characters are read, in evenly spread windows, so
the check costs a few milliseconds whatever the document):

=====================  ======================================================================
``text_page_share``    pages with text / pages (PDF and images: pages without a text layer
                       that OCR did not read count against it)
``chars_per_page``     non-space characters per page with text (PDF and images)
``chars_per_kb``       non-space characters per KB of file (PDFs over 100 KB)
``printable_share``    characters that are printable (no controls, private use, U+FFFD)
``word_share``         words (tokens holding a letter) that look like dictionary words:
                       letters only, a vowel in a Latin word of 4+ letters, sane case
``mojibake_share``     words holding UTF-8 read as cp1252/Latin-1 (``Ã©``, ``â€™``) or U+FFFD
``repeated_line_share`` lines (4+ characters, outside tables and code) repeating another line
=====================  ======================================================================

Each signal scores 1.0 when it is comfortably good, 0.5 exactly at its threshold
(``[quality]`` settings) and less beyond; the document's score is its worst signal's. A
document scoring below ``quality.min_score`` is quarantined with every failing signal named in
its reason. A document with no text at all and nothing left unread is not scored: the
cleaner records it as ``empty`` as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from enclave.settings import QualitySettings
from ingest.parsers.ocr import INSTALL_HINT
from ingest.types import ParsedDocument

#: characters of a document the signals read at most
SAMPLE_CHARS = 1 << 20
_WINDOW = 1 << 15
#: at most this many words and lines are judged
MAX_TOKENS = 200_000
#: PDFs smaller than this are not judged by characters per KB
RATIO_MIN_BYTES = 100 * 1024
#: the repeated-line signal needs at least this many lines
MIN_LINES = 10
#: parsers whose documents have real pages with or without a text layer
PAGED_PARSERS = frozenset({"pdfium", "tesseract"})

_NOT_PRINTABLE = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ue000-\uf8ff\ufffd\ud800-\udfff]")
_SPACE = re.compile(r"\s+")
_TOKEN = re.compile(r"\S+")
_EDGE_PUNCT = "\"'`.,;:!?()[]{}<>«»“”‘’„‚*_~|/\\-–—…"
_HAS_LETTER = re.compile(r"[^\W\d_]")
_LETTERS = re.compile(r"^[^\W\d_]+(?:['’\-][^\W\d_]+)*$")
_VOWEL = re.compile(r"[aeiouyAEIOUY]")
# a UTF-8 lead byte read as cp1252/Latin-1 followed by a continuation byte read the same way
_MOJIBAKE = re.compile(
    "[\u00c2-\u00f4][\u00a0-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6"
    "\u02dc\u2013\u2014\u2018-\u201a\u201c-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a"
    "\u20ac\u2122]|\ufffd"
)


@dataclass
class Quality:
    """A document's parse-quality verdict."""

    score: float
    signals: dict[str, float | int] = field(default_factory=dict)
    #: the signals below ``min_score``, worst first
    failed: list[str] = field(default_factory=list)
    #: why the document is quarantined ("" when it is not)
    reason: str = ""

    @property
    def quarantined(self) -> bool:
        return bool(self.reason)

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "signals": dict(self.signals), "failed": list(self.failed)}


def _sample(doc: ParsedDocument) -> list[tuple[str, str]]:
    """``(kind, text)`` of every element, or of evenly spread windows of them when the
    document holds more than :data:`SAMPLE_CHARS` characters."""
    total = sum(len(e.text) for e in doc.elements)
    if total <= SAMPLE_CHARS:
        return [(e.kind, e.text) for e in doc.elements]
    step = total // (SAMPLE_CHARS // _WINDOW)
    out: list[tuple[str, str]] = []
    pos = next_at = 0
    for el in doc.elements:
        while next_at < pos + len(el.text):
            start = next_at - pos
            out.append((el.kind, el.text[start : start + _WINDOW]))
            next_at += step
        pos += len(el.text)
    return out


def _at_least(value: float, threshold: float) -> float:
    """0.5 at the threshold, 1.0 at twice it, 0 at zero."""
    if threshold <= 0:
        return 1.0
    return max(0.0, min(1.0, value / (2 * threshold)))


def _at_most(value: float, threshold: float) -> float:
    """1.0 at zero, 0.5 at the threshold, 0 at twice it."""
    if threshold <= 0:
        return 1.0 if value <= 0 else 0.0
    return max(0.0, min(1.0, 1 - value / (2 * threshold)))


def wordlike(token: str) -> bool:
    """Whether a token (edge punctuation stripped) looks like a dictionary word."""
    if len(token) > 30 or not _LETTERS.match(token):
        return False
    if token.isascii():
        if len(token) >= 4 and not _VOWEL.search(token):
            return False
        rest = token[1:]
        if not (token.islower() or token.isupper() or rest.islower() or not rest):
            return False  # mIxEd case: code identifiers, symbol soup
    return True


def signals_of(doc: ParsedDocument, size: int) -> dict[str, float | int]:
    """The raw signals of a parsed document of ``size`` bytes."""
    chars = sum(len(e.text) for e in doc.elements)
    out: dict[str, float | int] = {}
    nonspace = printable_bad = 0
    words = good_words = mojibake = 0
    lines: list[str] = []
    sampled_chars = 0
    for kind, text in _sample(doc):
        sampled_chars += len(text)
        nonspace += len(text) - sum(len(m) for m in _SPACE.findall(text))
        printable_bad += len(_NOT_PRINTABLE.findall(text))
        if words < MAX_TOKENS:
            for m in _TOKEN.finditer(text):
                tok = m.group().strip(_EDGE_PUNCT)
                if not tok or not _HAS_LETTER.search(tok):
                    continue
                words += 1
                if _MOJIBAKE.search(tok):
                    mojibake += 1
                elif wordlike(tok):
                    good_words += 1
                if words >= MAX_TOKENS:
                    break
        if len(lines) < MAX_TOKENS and kind not in ("table", "code"):
            for line in text.split("\n"):
                line = " ".join(line.split()).lower()
                if len(line) >= 4:
                    lines.append(line)
    # non-space characters of the whole document, estimated from the sample
    total_nonspace = round(nonspace * chars / sampled_chars) if sampled_chars else 0
    out["chars"] = total_nonspace
    if doc.pages is not None and doc.parser in PAGED_PARSERS:
        unread = doc.blank_pages + doc.needs_ocr
        text_pages = max(0, doc.pages - unread)
        out["pages"] = doc.pages
        out["pages_without_text"] = unread
        out["needs_ocr"] = doc.needs_ocr
        out["ocr_pages"] = doc.ocr_pages
        out["text_page_share"] = round(text_pages / doc.pages, 4) if doc.pages else 0.0
        out["chars_per_page"] = round(total_nonspace / text_pages, 1) if text_pages else 0.0
        if doc.parser == "pdfium" and size >= RATIO_MIN_BYTES:
            out["chars_per_kb"] = round(total_nonspace / (size / 1024), 2)
    if nonspace:
        out["printable_share"] = round(1 - printable_bad / nonspace, 4)
    if words:
        out["words"] = words
        out["word_share"] = round(good_words / words, 4)
        out["mojibake_share"] = round(mojibake / words, 4)
    if len(lines) >= MIN_LINES:
        out["lines"] = len(lines)
        out["repeated_line_share"] = round(1 - len(set(lines)) / len(lines), 4)
    return out


def assess(doc: ParsedDocument, size: int, settings: QualitySettings) -> Quality | None:
    """The verdict on a parsed document; None when there is nothing to judge (no text and
    nothing left unread: the cleaner records it as empty)."""
    if not doc.elements and not doc.needs_ocr:
        return None
    sig = signals_of(doc, size)
    scores: dict[str, float] = {}
    if "text_page_share" in sig:
        scores["text_page_share"] = _at_least(
            float(sig["text_page_share"]), settings.min_text_page_share
        )
        if sig["chars_per_page"] or sig["pages_without_text"] < sig["pages"]:
            scores["chars_per_page"] = _at_least(
                float(sig["chars_per_page"]), settings.min_chars_per_page
            )
    if "chars_per_kb" in sig:
        scores["chars_per_kb"] = _at_least(float(sig["chars_per_kb"]), settings.min_chars_per_kb)
    if "printable_share" in sig:
        # measured on the share of non-printable characters, so 0.5 falls at the threshold
        bad = 1 - float(sig["printable_share"])
        scores["printable_share"] = _at_most(bad, 1 - settings.min_printable_share)
    if "word_share" in sig:
        scores["word_share"] = _at_least(float(sig["word_share"]), settings.min_word_share)
        scores["mojibake_share"] = _at_most(
            float(sig["mojibake_share"]), settings.max_mojibake_share
        )
    if "repeated_line_share" in sig:
        scores["repeated_line_share"] = _at_most(
            float(sig["repeated_line_share"]), settings.max_repeated_line_share
        )
    score = round(min(scores.values()), 3) if scores else 1.0
    failed = sorted(
        (k for k, v in scores.items() if v < settings.min_score), key=lambda k: scores[k]
    )
    q = Quality(score=score, signals=sig, failed=failed)
    if failed:
        q.reason = _reason(q, doc, settings)
    return q


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _reason(q: Quality, doc: ParsedDocument, settings: QualitySettings) -> str:
    s = q.signals
    parts: list[str] = []
    for name in q.failed:
        if name == "text_page_share":
            unread, pages = int(s["pages_without_text"]), int(s["pages"])
            if doc.needs_ocr:
                parts.append(f"needs OCR: {_ocr_why(doc, unread, pages)}")
            else:
                parts.append(f"{unread} of {pages} pages have no text (OCR found none)")
        elif name == "chars_per_page":
            parts.append(
                f"only {s['chars_per_page']} characters per page "
                f"(quality.min_chars_per_page = {settings.min_chars_per_page:g})"
            )
        elif name == "chars_per_kb":
            parts.append(
                f"only {s['chars_per_kb']} characters of text per KB of file: mostly images? "
                f"(quality.min_chars_per_kb = {settings.min_chars_per_kb:g})"
            )
        elif name == "printable_share":
            parts.append(
                f"{_pct(1 - float(s['printable_share']))} of the characters are not printable"
            )
        elif name == "word_share":
            parts.append(
                f"only {_pct(float(s['word_share']))} of the words look like words (garbled "
                "text or a font without a Unicode map?)"
            )
        elif name == "mojibake_share":
            parts.append(
                f"{_pct(float(s['mojibake_share']))} of the words are mis-decoded (mojibake "
                "such as 'Ã©': wrong encoding)"
            )
        elif name == "repeated_line_share":
            parts.append(
                f"{_pct(float(s['repeated_line_share']))} of the lines repeat other lines "
                "(only running headers or boilerplate?)"
            )
    return "; ".join(parts) + f" (quality score {q.score:.2f} < {settings.min_score:g})"


def _ocr_why(doc: ParsedDocument, unread: int, pages: int) -> str:
    if doc.ocr_pages and doc.needs_ocr:
        return (
            f"{doc.needs_ocr} scanned pages past ingest.ocr_max_pages ({doc.ocr_pages} read); "
            f"{unread} of {pages} pages without text"
        )
    from ingest.parsers.ocr import tesseract_path

    why = "tesseract is not installed" if tesseract_path() is None else "OCR is off (ingest.ocr)"
    hint = f"; {INSTALL_HINT}" if "installed" in why else ""
    return f"{unread} of {pages} pages have no text layer and {why}{hint}"
