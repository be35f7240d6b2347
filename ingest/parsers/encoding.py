"""Bytes to text for the text-like formats (plain text, Markdown, CSV/TSV, HTML).

A BOM (UTF-8, UTF-16 LE/BE, UTF-32) wins; otherwise strict UTF-8, then cp1252, then Latin-1.
Bytes that look binary (NULs, many control characters, see
:func:`ingest.file_checks.looks_binary`) are refused with a :class:`~ingest.types.ParseError`,
never indexed.
"""

from __future__ import annotations

import codecs

from ingest.file_checks import looks_binary
from ingest.types import ParseError

_BOMS: list[tuple[bytes, str]] = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]


def decode_bytes(data: bytes) -> tuple[str, str]:
    """``(text, encoding)``; raises ParseError for binary content."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise ParseError(f"invalid {encoding} text: {exc.reason}") from exc
    if looks_binary(data[:65536]):
        raise ParseError("binary content, not text (refused)")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"
