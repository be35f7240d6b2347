"""The audit log: one hash-chained JSON line per request, at ``<data_dir>/audit/audit.jsonl``.

Every record carries ``seq`` (1, 2, ...), ``prev_hash`` (the previous record's ``hash``; 64
zeros for the first) and ``hash = sha256(prev_hash + canonical JSON of the record without
"hash")``, canonical meaning sorted keys, no spaces, UTF-8. Editing, dropping, inserting or
reordering a record, or garbling a line, breaks the chain at that line.

Dropping the *last* records leaves a shorter chain that is still valid, so each append also
rewrites ``audit.anchor.json`` (in place, one small fixed-size write) with the record count
and the head hash; ``enclave audit verify`` checks the log against it (a log one record
ahead of its anchor is accepted: a crash between the two writes). Someone who can write the
data directory can still rewrite the whole chain *and* the anchor: copy the head hash that
``verify`` prints to another machine from time to time to catch that too
(``verify --expect-head``).

Appends are serialised by a thread lock and an advisory file lock (several processes may
share one log), written with a single ``write`` on an ``O_APPEND`` descriptor and fsync'd.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from enclave.errors import EnclaveError
from enclave.security._files import PRIVATE_FILE_MODE, ensure_private_dir, file_lock, fsync_dir
from enclave.security.keys import Principal

AUDIT_DIR = "audit"
LOG_FILE = "audit.jsonl"
ANCHOR_FILE = "audit.anchor.json"
LOCK_FILE = "audit.lock"
GENESIS = "0" * 64
ANCHOR_SIZE = 256  # bytes; the anchor is rewritten in place at this fixed size

QuestionMode = Literal["full", "hash", "omit"]


class AuditLogError(EnclaveError):
    """The audit log cannot be appended to safely (damaged tail, unreadable file)."""

    status_code = 503
    error_type = "server_error"
    code = "audit_unavailable"
    exit_code = 1


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(record: Mapping[str, Any]) -> str:
    """``sha256(prev_hash + canonical JSON of the record without "hash")``."""
    body = {k: v for k, v in record.items() if k != "hash"}
    prev = str(record.get("prev_hash", ""))
    return hashlib.sha256((prev + canonical_json(body)).encode("utf-8")).hexdigest()


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DocumentLookup(Protocol):
    def get_document(self, doc_id: str) -> Any: ...


def chunk_refs(
    hits: Iterable[Any], documents: DocumentLookup | Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """``[{"chunk_id", "doc_id", "doc_sha256"}]`` for search hits (objects or dicts).

    ``documents`` resolves a doc_id to the document's content sha256: a ``Store`` (anything
    with ``get_document``) or a plain mapping. Each document is looked up once.
    """
    cache: dict[str, str] = {}
    out: list[dict[str, str]] = []
    for hit in hits:
        get = hit.get if isinstance(hit, Mapping) else lambda k, h=hit: getattr(h, k, None)
        chunk_id = str(get("chunk_id") or "")
        doc_id = str(get("doc_id") or "")
        if doc_id not in cache:
            sha = ""
            if isinstance(documents, Mapping):
                sha = str(documents.get(doc_id, ""))
            elif documents is not None:
                doc = documents.get_document(doc_id)
                sha = str(getattr(doc, "sha256", "") or "") if doc is not None else ""
            cache[doc_id] = sha
        out.append({"chunk_id": chunk_id, "doc_id": doc_id, "doc_sha256": cache[doc_id]})
    return out


def _last_line(path: Path) -> tuple[str | None, int]:
    """The last line of ``path`` (without its newline) and the file size.

    Raises AuditLogError if the file does not end with a newline (a torn or garbled tail).
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None, 0
    if size == 0:
        return None, 0
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        if fh.read(1) != b"\n":
            raise AuditLogError(
                f"{path} ends with an incomplete line; run `enclave audit verify` and move the "
                "file aside to start a new chain"
            )
        end = size - 1  # the final newline; the last line is data[start:end]
        pos = end
        buf = b""
        while pos > 0:
            step = min(4096, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf  # == data[pos:end]
            if b"\n" in buf:
                break
        line = buf.rsplit(b"\n", 1)[-1]
    return line.decode("utf-8", errors="replace"), size


class AuditLog:
    """Appends hash-chained records. One instance per process; safe across threads."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        questions: QuestionMode = "hash",
        clock: Callable[[], str] = _utc_now,
    ) -> None:
        self.dir = Path(data_dir) / AUDIT_DIR
        self.path = self.dir / LOG_FILE
        self.anchor_path = self.dir / ANCHOR_FILE
        self.lock_path = self.dir / LOCK_FILE
        if questions not in ("full", "hash", "omit"):
            raise EnclaveError(f"audit_questions must be full, hash or omit, not {questions!r}")
        self.questions: QuestionMode = questions
        self._clock = clock
        self._lock = threading.Lock()
        ensure_private_dir(self.dir)
        with file_lock(self.lock_path):
            self._load_head()
            anchor = _read_anchor(self.anchor_path)
            if isinstance(anchor, str):
                raise AuditLogError(anchor + "; run `enclave audit verify`")
            if anchor is not None and not (anchor[0] <= self._seq <= anchor[0] + 1):
                raise AuditLogError(
                    f"{self.path} holds {self._seq} records but {anchor[0]} were written "
                    "(records were removed); run `enclave audit verify`, then move both files "
                    f"of {self.dir} aside to start a new chain"
                )

    def _load_head(self) -> None:
        line, size = _last_line(self.path)
        self._size = size
        if line is None:
            self._head, self._seq = GENESIS, 0
            return
        try:
            rec = json.loads(line)
            self._head, self._seq = str(rec["hash"]), int(rec["seq"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditLogError(
                f"the last line of {self.path} is not an audit record ({exc}); run "
                "`enclave audit verify` and move the file aside to start a new chain"
            ) from exc

    @property
    def head(self) -> str:
        return self._head

    @property
    def count(self) -> int:
        return self._seq

    def _question_fields(self, question: str | None) -> dict[str, Any]:
        if question is None or self.questions == "omit":
            return {}
        if self.questions == "full":
            return {"question": question}
        return {"question_sha256": hashlib.sha256(question.encode("utf-8")).hexdigest()}

    def append(
        self,
        *,
        endpoint: str,
        principal: Principal | None,
        question: str | None = None,
        retrieved: Sequence[Mapping[str, str]] = (),
        cited: Sequence[Mapping[str, str]] = (),
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        latency_s: float = 0.0,
        outcome: str = "ok",
        status: int = 200,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write one record and return it (with ``seq``, ``prev_hash`` and ``hash``).

        ``outcome`` is ``"ok"`` or the error code (``invalid_api_key``, ``rate_limit_exceeded``,
        ...). ``retrieved``/``cited`` come from :func:`chunk_refs`.
        """
        body: dict[str, Any] = {
            "time": self._clock(),
            "principal": (
                {"name": principal.name, "key_id": principal.key_id} if principal else None
            ),
            "endpoint": endpoint,
            **self._question_fields(question),
            "retrieved": [dict(r) for r in retrieved],
            "cited": [dict(r) for r in cited],
            "tokens": {"prompt": int(prompt_tokens), "completion": int(completion_tokens)},
            "latency_ms": round(latency_s * 1000.0, 1),
            "outcome": outcome,
            "status": int(status),
        }
        if extra:
            body["extra"] = dict(extra)
        with self._lock, file_lock(self.lock_path):
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size != self._size:  # another process appended: pick up its head
                self._load_head()
            body["seq"] = self._seq + 1
            body["prev_hash"] = self._head
            body["hash"] = record_hash(body)
            data = (canonical_json(body) + "\n").encode("utf-8")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE)
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            self._seq = body["seq"]
            self._head = body["hash"]
            self._size = size + len(data)
            self._write_anchor(body["time"])
        return body

    def _write_anchor(self, when: str) -> None:
        """Overwrite the anchor in place: one fixed-size write (within one disk sector) and
        an fdatasync, about a third of the cost of a write-rename-fsync cycle."""
        text = canonical_json({"count": self._seq, "head": self._head, "time": when})
        data = (text.ljust(ANCHOR_SIZE - 1) + "\n").encode("utf-8")
        created = not self.anchor_path.exists()
        fd = os.open(self.anchor_path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        try:
            os.pwrite(fd, data, 0)
            if os.fstat(fd).st_size > len(data):
                os.ftruncate(fd, len(data))
            os.fdatasync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.dir)


@dataclass
class VerifyResult:
    ok: bool
    records: int
    head: str
    bad_line: int | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "head": self.head,
            "bad_line": self.bad_line,
            "reason": self.reason,
        }


def verify_log(data_dir: Path | str, *, expect_head: str | None = None) -> VerifyResult:
    """Check the whole chain of ``<data_dir>/audit`` and its anchor; report the first bad line."""
    adir = Path(data_dir) / AUDIT_DIR
    path = adir / LOG_FILE
    anchor_path = adir / ANCHOR_FILE
    prev = GENESIS
    n = 0
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        fh = None
    if fh is not None:
        with fh:
            for lineno, raw in enumerate(fh, start=1):
                bad = _check_line(raw, lineno, prev)
                if bad:
                    return VerifyResult(False, n, prev, lineno, bad)
                rec = json.loads(raw)
                prev = str(rec["hash"])
                n = lineno
    anchor = _read_anchor(anchor_path)
    if anchor is None:
        if n:
            return VerifyResult(False, n, prev, None, f"anchor file {anchor_path} is missing")
    elif isinstance(anchor, str):
        return VerifyResult(False, n, prev, None, anchor)
    else:
        count, head = anchor
        if n < count:
            return VerifyResult(
                False,
                n,
                prev,
                n + 1,
                f"the log ends after record {n} but {count} were written: "
                "records were dropped from the end",
            )
        if n == count and head != prev:
            return VerifyResult(False, n, prev, n, "the last record does not match the anchor")
        if n > count + 1:
            return VerifyResult(
                False, n, prev, count + 2, f"records after {count + 1} were not written by Enclave"
            )
    if expect_head is not None and expect_head != prev:
        return VerifyResult(False, n, prev, None, "the head hash differs from the expected one")
    return VerifyResult(True, n, prev)


def _check_line(raw: bytes, lineno: int, prev: str) -> str:
    if not raw.endswith(b"\n"):
        return "truncated line (no newline at the end)"
    try:
        rec = json.loads(raw)
    except ValueError:
        return "not valid JSON (garbled line)"
    if not isinstance(rec, dict) or not isinstance(rec.get("hash"), str):
        return "not an audit record"
    if rec.get("seq") != lineno:
        return f"sequence number {rec.get('seq')!r} where {lineno} was expected"
    if rec.get("prev_hash") != prev:
        return "prev_hash does not match the previous record (dropped, inserted or reordered)"
    if record_hash(rec) != rec["hash"]:
        return "hash mismatch (the record was edited)"
    return ""


def _read_anchor(path: Path) -> tuple[int, str] | str | None:
    try:
        data = json.loads(path.read_text("utf-8"))
        return int(data["count"]), str(data["head"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        return f"anchor file {path} is damaged: {exc}"


def read_tail(data_dir: Path | str, n: int = 20) -> list[dict[str, Any]]:
    """The last ``n`` records (skipping lines that do not parse)."""
    path = Path(data_dir) / AUDIT_DIR / LOG_FILE
    if n <= 0 or not path.exists():
        return []
    lines: list[bytes] = []
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        pos = fh.tell()
        buf = b""
        while pos > 0 and buf.count(b"\n") <= n:
            step = min(65536, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
        lines = [ln for ln in buf.split(b"\n") if ln.strip()]
    out: list[dict[str, Any]] = []
    for ln in lines[-n:]:
        try:
            rec = json.loads(ln)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def follow(
    data_dir: Path | str,
    *,
    poll_s: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
    from_end: bool = True,
) -> Iterator[dict[str, Any]]:
    """Yield records as they are appended (like ``tail -f``) until ``stop()`` is true.

    The starting position is taken when ``follow`` is called, not when iteration starts, so
    records appended in between are not missed.
    """
    path = Path(data_dir) / AUDIT_DIR / LOG_FILE
    pos = path.stat().st_size if (from_end and path.exists()) else 0
    return _follow_from(path, pos, poll_s, stop)


def _follow_from(
    path: Path, pos: int, poll_s: float, stop: Callable[[], bool]
) -> Iterator[dict[str, Any]]:
    pending = b""
    while not stop():
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < pos:  # replaced by a new chain
            pos, pending = 0, b""
        if size > pos:
            with open(path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read(size - pos)
            pos = size
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for ln in complete:
                if not ln.strip():
                    continue
                try:
                    rec = json.loads(ln)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    yield rec
            continue
        time.sleep(poll_s)


def format_record(rec: Mapping[str, Any]) -> str:
    """One human-readable line for ``enclave audit tail``."""
    who = rec.get("principal") or {}
    name = who.get("name", "-") if isinstance(who, Mapping) else "-"
    tokens = rec.get("tokens") or {}
    q = rec.get("question")
    parts = [
        str(rec.get("time", "?")),
        f"#{rec.get('seq', '?')}",
        str(name),
        str(rec.get("endpoint", "?")),
        str(rec.get("outcome", "?")),
        f"tokens={tokens.get('prompt', 0)}+{tokens.get('completion', 0)}",
        f"{rec.get('latency_ms', 0)}ms",
        f"retrieved={len(rec.get('retrieved') or [])}",
        f"cited={len(rec.get('cited') or [])}",
    ]
    if q:
        short = str(q).replace("\n", " ")
        parts.append(repr(short[:80] + ("..." if len(short) > 80 else "")))
    return " ".join(parts)
