"""Cheap checks that refuse a file before any parser reads it.

Size caps, zip-bomb detection for the zip-based office formats (from the central directory, with
nothing decompressed), password-protected office and PDF files, and binary content posing as
text. Every refusal is a :class:`~ingest.types.ParseError` whose message the user sees.
"""

from __future__ import annotations

import os
import zipfile

from ingest.types import ParseError

# Zip-based formats (DOCX, PPTX, XLSX, ODT, EPUB): caps on what the archive claims it holds.
MAX_UNCOMPRESSED_MB = 1024  # total uncompressed size of all members
MAX_MEMBER_RATIO = 200  # uncompressed / compressed, for members over MIN_RATIO_CHECK_BYTES
MIN_RATIO_CHECK_BYTES = 10 * 1024 * 1024
MAX_ZIP_MEMBERS = 20_000

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_MAGIC = b"PK\x03\x04"
PDF_MAGIC = b"%PDF-"


def check_size(path: str, max_file_mb: float) -> int:
    """The file's size in bytes; refuses missing files, non-files and files over the cap."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise ParseError("file not found") from exc
    except PermissionError as exc:
        raise ParseError("permission denied") from exc
    except OSError as exc:
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from exc
    if not os.path.isfile(path):
        raise ParseError("not a regular file")
    limit = max_file_mb * 1024 * 1024
    if st.st_size > limit:
        raise ParseError(
            f"file too large: {st.st_size / (1024 * 1024):.1f} MB exceeds the "
            f"{max_file_mb:g} MB limit (ingest.max_file_mb)"
        )
    return st.st_size


def read_head(path: str, n: int = 8) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def check_office_container(path: str, label: str) -> None:
    """Refuse a zip-based office file that is encrypted, not a zip, or a zip bomb.

    ``label`` is the format's name as users know it ("DOCX", "ODT", ...).
    """
    head = read_head(path)
    if head.startswith(OLE_MAGIC):
        # Encrypted OOXML files are OLE compound files holding an EncryptedPackage stream.
        if _ole_is_encrypted(path):
            raise ParseError(f"{label} file is password-protected (encrypted)")
        raise ParseError(
            f"not a valid {label} file (an older binary Office format?); save it as {label}"
        )
    if not head.startswith(ZIP_MAGIC) or not zipfile.is_zipfile(path):
        raise ParseError(f"not a valid {label} file (corrupt or not a zip archive)")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ParseError(f"not a valid {label} file (corrupt zip archive: {exc})") from exc
    check_zip_infos(infos, label)


def check_zip_infos(infos: list[zipfile.ZipInfo], label: str) -> None:
    """Zip-bomb caps on a central directory (nothing is decompressed)."""
    if len(infos) > MAX_ZIP_MEMBERS:
        raise ParseError(
            f"{label} archive has {len(infos)} members (limit {MAX_ZIP_MEMBERS}); "
            "refused as a possible zip bomb"
        )
    total = 0
    for info in infos:
        total += info.file_size
        if info.file_size > MIN_RATIO_CHECK_BYTES:
            ratio = info.file_size / max(1, info.compress_size)
            if ratio > MAX_MEMBER_RATIO:
                raise ParseError(
                    f"{label} archive member {info.filename!r} expands {ratio:.0f}x "
                    f"(limit {MAX_MEMBER_RATIO}x); refused as a possible zip bomb"
                )
    if total > MAX_UNCOMPRESSED_MB * 1024 * 1024:
        raise ParseError(
            f"{label} archive expands to {total / (1024 * 1024):.0f} MB "
            f"(limit {MAX_UNCOMPRESSED_MB} MB); refused as a possible zip bomb"
        )


def _ole_is_encrypted(path: str) -> bool:
    try:
        import msoffcrypto

        with open(path, "rb") as fh:
            office = msoffcrypto.OfficeFile(fh)
            return bool(office.is_encrypted())
    except Exception:
        return False


def looks_binary(sample: bytes) -> bool:
    """True when a sample of undecoded bytes is not text in any encoding we read.

    NUL bytes (outside UTF-16, which is detected by its BOM before this is called) or a high
    share of C0 control characters other than tab, newline, carriage return and form feed.
    """
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls / len(sample) > 0.05
