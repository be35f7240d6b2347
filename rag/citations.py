"""Citation markers in generated answers: find them, keep the ones that point to a source the
model was given, remove the rest.

Accepted forms: ``[1]``, ``[1, 2]`` (also ``;``), ``[1][2]`` and ``[Source 1]``. A marker whose
numbers are all invalid disappears together with the space before it; a marker with some
valid numbers keeps only those, written canonically (``[1, 7]`` with two sources -> ``[1]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NUMBER = r"(?:sources?\s*)?\d{1,6}"
_MARKER = re.compile(
    r"(?P<space>[ \t]?)\[\s*(?P<nums>" + _NUMBER + r"(?:\s*[,;]\s*" + _NUMBER + r")*)\s*\]",
    re.IGNORECASE,
)
_NUM = re.compile(r"\d+")


@dataclass
class CitationCheck:
    """The cleaned text and what was kept or removed."""

    text: str
    #: valid source numbers the answer cites, in order of first appearance
    verified: list[int] = field(default_factory=list)
    #: numbers that pointed to no given source (removed from the text), sorted
    removed: list[int] = field(default_factory=list)


def verify_citations(text: str, source_count: int) -> CitationCheck:
    """Check every marker in ``text`` against sources numbered ``1..source_count``."""
    verified: list[int] = []
    removed: set[int] = set()

    def replace(match: re.Match[str]) -> str:
        numbers = [int(n) for n in _NUM.findall(match.group("nums"))]
        keep: list[int] = []
        for n in numbers:
            if 1 <= n <= source_count:
                if n not in keep:
                    keep.append(n)
                if n not in verified:
                    verified.append(n)
            else:
                removed.add(n)
        if not keep:
            return ""
        return match.group("space") + "[" + ", ".join(str(n) for n in keep) + "]"

    cleaned = _MARKER.sub(replace, text)
    return CitationCheck(text=cleaned, verified=verified, removed=sorted(removed))


def strip_citations(text: str) -> str:
    """``text`` without any citation markers (for earlier answers kept as history)."""
    return _MARKER.sub("", text)


def strip_markers(text: str) -> str:
    """``text`` without its markers and without the space they leave before punctuation
    (a sentence as a claim, for support checks)."""
    return re.sub(r"\s+([.,;:!?])", r"\1", _MARKER.sub("", text)).strip()


def markers(text: str) -> list[int]:
    """Every source number cited in ``text``, in order (repeats kept)."""
    return [int(n) for m in _MARKER.finditer(text) for n in _NUM.findall(m.group("nums"))]
