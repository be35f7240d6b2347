"""Plain records that cross the store boundary (no LanceDB types leak out)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# Status values of a document row.
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_EMPTY = "empty"
#: parsed, but its parse quality is below ``quality.min_score`` (ingest/quality.py): a row
#: with the reason and the signals, and no chunks, until released (``enclave quarantine``)
STATUS_QUARANTINED = "quarantined"

#: the index's binding to its embedder, beside the tables in the LanceDB folder
META_FILE = "enclave-index.json"


def read_index_meta(lance_dir: Any) -> dict[str, Any]:
    """The index's ``enclave-index.json`` (embedder name, dimension), ``{}`` when absent; read
    without opening LanceDB. ``lance_dir``: a folder, or a store.location.IndexLocation."""
    if hasattr(lance_dir, "files"):
        raw = lance_dir.files().read(META_FILE)
        return {} if raw is None else dict(json.loads(raw))
    try:
        data: dict[str, Any] = json.loads((Path(lance_dir) / META_FILE).read_text("utf-8"))
    except FileNotFoundError:
        return {}
    return data


#: an undecodable byte of a path, as the key writes it (``\\xff``)
_ESCAPED_BYTE = re.compile(r"\\\\|\\x([0-9a-f]{2})")


def real_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """Absolute, symlink-free path as the operating system spells it: a ``str`` in which bytes
    that are not UTF-8 are kept as surrogate escapes (``os.fsdecode``). Use it to open or stat
    a file; store :func:`path_key` of it."""
    raw = os.fsdecode(os.fspath(path))
    return os.path.realpath(os.path.abspath(raw))


def path_key(path: str) -> str:
    """The text a path is stored, listed and matched by: valid UTF-8 in every case.

    A path whose bytes are UTF-8 is its own key. In a path holding bytes that are not UTF-8
    (surrogate escapes of ``os.fsdecode``), each such byte is written ``\\xNN`` (lower-case
    hex) and each backslash ``\\\\``, so ``b"bad\\xff\\xfe.txt"`` is ``bad\\xff\\xfe.txt``.
    :func:`fs_path` turns such a key back into the exact bytes; the document id (the hash of
    the bytes, :func:`doc_id_for_path`) tells the two apart in the one case a key could be read
    both ways (a UTF-8 name that itself contains ``\\xNN``). Idempotent: a key is its own key.
    """
    if not _has_surrogates(path):
        return path
    out: list[str] = []
    for ch in path:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:  # not from a file system; never stored as is
            out.append(f"\\u{code:04x}")
        elif ch == "\\":
            out.append("\\\\")
        else:
            out.append(ch)
    return "".join(out)


def fs_path(key: str) -> str:
    """The operating-system path of an escaped key (see :func:`path_key`): ``\\xNN`` back to
    the byte, ``\\\\`` back to one backslash. Only meaningful for keys that were escaped;
    :func:`fs_path_for` decides that with the document id."""

    def back(m: re.Match[str]) -> str:
        return "\\" if m.group(1) is None else chr(0xDC00 + int(m.group(1), 16))

    return _ESCAPED_BYTE.sub(back, key)


def fs_path_for(key: str, doc_id: str) -> str:
    """The operating-system path of the stored document ``(key, doc_id)``: the key itself, or
    its unescaped form when that is the one whose id matches."""
    if "\\" in key:
        unescaped = fs_path(key)
        if unescaped != key and _doc_id_of(unescaped) == doc_id:
            return unescaped
    return key


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def normalise_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """The key a document is known by: :func:`path_key` of its absolute, symlink-free,
    '/'-separated path (valid UTF-8 even when the name is not)."""
    return path_key(Path(real_path(path)).as_posix())


def doc_id_for_path(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> str:
    """Stable document id: the first 24 hex digits of the sha256 of the real path's bytes.

    ``path`` is a path as the operating system gives it (not an escaped key: use
    :func:`fs_path` first). For UTF-8 paths the bytes are the key's UTF-8 encoding, so ids
    never changed for them; a name that is not UTF-8 gets an id from its exact bytes.
    """
    return _doc_id_of(Path(real_path(path)).as_posix())


def _doc_id_of(os_path: str) -> str:
    return hashlib.sha256(os.fsencode(os_path)).hexdigest()[:24]


def safe_text(text: str) -> str:
    """``text`` made storable (valid UTF-8): lone surrogates written as ``\\udcff``."""
    if not _has_surrogates(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def valid_group(name: str) -> bool:
    """Group names are short identifiers; anything else could smuggle a filter expression."""
    return bool(_GROUP_RE.match(name))


@dataclass
class DocumentRecord:
    doc_id: str
    path: str
    title: str = ""
    sha256: str = ""
    size: int = 0
    mtime: float = 0.0
    parser: str = ""
    status: str = STATUS_OK
    error: str = ""
    chunk_count: int = 0
    ingested_at: str = ""
    embedder: str = ""
    groups: list[str] = field(default_factory=list)
    #: the parse-quality verdict (ingest/quality.py): ``score``, ``signals``, ``failed``, and
    #: ``admitted`` (``sha256``, ``at``, ``by``) when a release let the document in despite it;
    #: stored as JSON in the ``quality`` column (absent from indexes written before it: {})
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def quality_score(self) -> float | None:
        score = self.quality.get("score")
        return float(score) if isinstance(score, int | float) else None

    def admitted_sha256(self) -> str:
        """The file sha256 a quarantine release admitted, or ""."""
        admitted = self.quality.get("admitted")
        return str(admitted.get("sha256") or "") if isinstance(admitted, dict) else ""

    def to_row(self) -> dict[str, Any]:
        return {
            "doc_id": self.doc_id,
            "path": self.path,
            "title": self.title,
            "sha256": self.sha256,
            "size": int(self.size),
            "mtime": float(self.mtime),
            "parser": self.parser,
            "status": self.status,
            "error": self.error,
            "chunk_count": int(self.chunk_count),
            "ingested_at": self.ingested_at,
            "embedder": self.embedder,
            "groups": list(self.groups),
            "quality": json.dumps(self.quality, sort_keys=True) if self.quality else None,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DocumentRecord:
        return cls(
            doc_id=row["doc_id"],
            path=row["path"],
            title=row.get("title") or "",
            sha256=row.get("sha256") or "",
            size=int(row.get("size") or 0),
            mtime=float(row.get("mtime") or 0.0),
            parser=row.get("parser") or "",
            status=row.get("status") or STATUS_OK,
            error=row.get("error") or "",
            chunk_count=int(row.get("chunk_count") or 0),
            ingested_at=row.get("ingested_at") or "",
            embedder=row.get("embedder") or "",
            groups=list(row.get("groups") or []),
            quality=_quality_of(row.get("quality")),
        )


def _quality_of(raw: Any) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class ChunkRecord:
    chunk_id: str
    doc_id: str
    ordinal: int
    text: str
    vector: npt.NDArray[np.float32]
    source: str
    title: str = ""
    page: int | None = None
    heading_path: list[str] = field(default_factory=list)
    char_start: int = 0
    char_end: int = 0
    tokens: int = 0
    groups: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "ordinal": int(self.ordinal),
            "text": self.text,
            "vector": self.vector,
            "source": self.source,
            "title": self.title,
            "page": self.page,
            "heading_path": list(self.heading_path),
            "char_start": int(self.char_start),
            "char_end": int(self.char_end),
            "tokens": int(self.tokens),
            "groups": list(self.groups),
            "flags": list(self.flags),
        }


@dataclass
class SearchFilters:
    """Per-request restrictions, applied before ranking (a prefilter)."""

    path_prefix: str | None = None
    doc_ids: list[str] | None = None
    #: the caller's groups; None means unrestricted (admin or auth disabled)
    groups: list[str] | None = None


@dataclass
class Candidate:
    """One chunk as one retriever found it, before fusion: the chunk's columns, its vector and
    the retriever's own score (cosine ``similarity`` to the query for vector search, the
    full-text engine's ``text_score`` for full-text search)."""

    chunk_id: str
    doc_id: str
    text: str = ""
    source: str = ""
    title: str = ""
    page: int | None = None
    heading_path: list[str] = field(default_factory=list)
    ordinal: int = 0
    char_start: int = 0
    char_end: int = 0
    tokens: int = 0
    flags: list[str] = field(default_factory=list)
    vector: npt.NDArray[np.float32] | None = None
    #: cosine similarity to the query vector (vector search only)
    similarity: float | None = None
    #: the full-text engine's relevance score (full-text search only)
    text_score: float | None = None

    @classmethod
    def from_row(
        cls,
        row: dict[str, Any],
        *,
        similarity: float | None = None,
        text_score: float | None = None,
    ) -> Candidate:
        vector = row.get("vector")
        return cls(
            chunk_id=row["chunk_id"],
            doc_id=row["doc_id"],
            text=row.get("text") or "",
            source=row.get("source") or "",
            title=row.get("title") or "",
            page=row.get("page"),
            heading_path=list(row.get("heading_path") or []),
            ordinal=int(row.get("ordinal") or 0),
            char_start=int(row.get("char_start") or 0),
            char_end=int(row.get("char_end") or 0),
            tokens=int(row.get("tokens") or 0),
            flags=list(row.get("flags") or []),
            vector=None if vector is None else np.asarray(vector, dtype=np.float32),
            similarity=similarity,
            text_score=text_score,
        )


@dataclass
class SearchHit:
    chunk_id: str
    doc_id: str
    source: str
    title: str
    page: int | None
    heading_path: list[str]
    text: str
    score: float
    ordinal: int = 0
    char_start: int = 0
    char_end: int = 0
    tokens: int = 0
    flags: list[str] = field(default_factory=list)
    vector_rank: int | None = None
    text_rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "source": self.source,
            "title": self.title,
            "page": self.page,
            "heading_path": self.heading_path,
            "score": self.score,
            "text": self.text,
            "flags": self.flags,
        }
