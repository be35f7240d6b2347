"""The audit log: one HMAC-chained JSON line per request, at ``<data_dir>/audit/audit.jsonl``.

Every record carries ``seq`` (1, 2, ...), ``prev_hash`` (the previous record's ``hash``; 64
zeros for the first), ``audit_key_id`` (which audit key chained it) and ``hash =
HMAC-SHA256(audit key, prev_hash + canonical JSON of the record without "hash")``, canonical
meaning sorted keys, no spaces, UTF-8. The key lives outside the data directory
(:mod:`enclave.security.audit_key`), so someone who can write the data directory but not read
the key cannot edit, drop, insert, reorder or append a record, nor rewrite the whole chain,
without ``enclave audit verify`` failing.

Dropping the *last* records leaves a shorter chain that is still valid, so each append also
rewrites ``audit.anchor.json`` (in place, one small fixed-size write) with the record count,
the head hash and a MAC over both; ``verify`` checks the log against it (a log one record
ahead of its anchor is accepted: a crash between the two writes). Someone who kept a copy of
an earlier anchor can still cut the log back to that point and put the copy back, or delete
both files: copy the head hash that ``verify`` prints to another machine from time to time
to catch that too (``verify --expect-head``).

Logs written before audit keys existed hold plain ``sha256`` records without
``audit_key_id``. When a keyed Enclave opens such a log it verifies the whole plain chain
(refusing to start if it is damaged), MACs the anchor over it, and appends keyed records
from there on: the first keyed record's ``prev_hash`` commits to the plain part, so from then
on that part is protected too. An unkeyed record after a keyed one is a forgery.

Appends are serialised by a thread lock and an advisory file lock (several processes may
share one log), written with a single ``write`` on an ``O_APPEND`` descriptor and fsync'd.

One module over 500 lines, on purpose: the record format, the HMAC chain, rotation and
verification must agree byte for byte; kept together, a change to one is seen with the others.
"""

from __future__ import annotations

import hashlib
import hmac
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
from enclave.security.audit_key import (
    AuditKey,
    AuditKeyError,
    describe_key_source,
    load_audit_key,
)
from enclave.security.keys import Principal

AUDIT_DIR = "audit"
LOG_FILE = "audit.jsonl"
ANCHOR_FILE = "audit.anchor.json"
LOCK_FILE = "audit.lock"
GENESIS = "0" * 64
ANCHOR_SIZE = 256  # bytes; the anchor is rewritten in place at this fixed size
KEY_FIELD = "audit_key_id"

QuestionMode = Literal["full", "hash", "omit"]


class AuditLogError(EnclaveError):
    """The audit log cannot be appended to safely (damaged tail, unreadable file, a record or
    anchor that fails its MAC). ``enclave serve`` stops with exit 2 on it."""

    status_code = 503
    error_type = "server_error"
    code = "audit_unavailable"
    exit_code = 2


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(record: Mapping[str, Any], key: AuditKey | None = None) -> str:
    """``HMAC-SHA256(key, prev_hash + canonical JSON of the record without "hash")``; without
    a key, the plain ``sha256`` of the same bytes (records written before audit keys)."""
    body = {k: v for k, v in record.items() if k != "hash"}
    prev = str(record.get("prev_hash", ""))
    data = (prev + canonical_json(body)).encode("utf-8")
    return key.mac(data) if key is not None else hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Anchor:
    """The record count and head hash after the last append, MAC'd with the audit key."""

    count: int
    head: str
    time: str = ""
    mac: str | None = None

    def payload(self) -> bytes:
        body = {"count": self.count, "head": self.head, "time": self.time}
        return b"anchor:" + canonical_json(body).encode("utf-8")

    def mac_ok(self, key: AuditKey) -> bool:
        return self.mac is not None and hmac.compare_digest(self.mac, key.mac(self.payload()))


def _missing_key_message(path: Path, key_file: Path | str | None) -> str:
    return (
        f"the audit log {path} is keyed (HMAC-SHA256) and its audit key was not found "
        f"(looked in {describe_key_source(key_file)}). Verification and appends need the key "
        "that wrote the log: restore the key file, point security.audit_key_file "
        "(ENCLAVE_SECURITY__AUDIT_KEY_FILE) at it, or give it in $ENCLAVE_AUDIT_KEY"
    )


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
    """Appends HMAC-chained records. One instance per process; safe across threads.

    ``key`` is the audit key; by default it is loaded from ``$ENCLAVE_AUDIT_KEY`` or
    ``key_file`` (``security.audit_key_file``; ``None`` = ``~/.config/enclave/audit.key``),
    and created there if the log has no keyed records yet. Raises :class:`AuditLogError`
    (or :class:`~enclave.security.audit_key.AuditKeyError`) when the log cannot be extended
    safely: a damaged tail, records removed, a last record or an anchor whose MAC fails, a
    keyed log whose key is missing or another one, an unkeyed log that fails verification.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        questions: QuestionMode = "hash",
        clock: Callable[[], str] = _utc_now,
        key: AuditKey | None = None,
        key_file: Path | str | None = None,
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
            last = self._load_head()
            keyed = last is not None and KEY_FIELD in last
            if key is None:
                key = load_audit_key(key_file, data_dir=data_dir, create=not keyed)
                if key is None:
                    raise AuditKeyError(_missing_key_message(self.path, key_file))
            self.key: AuditKey = key
            anchor = _read_anchor(self.anchor_path)
            if isinstance(anchor, str):
                raise AuditLogError(anchor + "; run `enclave audit verify`")
            if anchor is not None and not (anchor.count <= self._seq <= anchor.count + 1):
                what = "removed" if self._seq < anchor.count else "added by someone else"
                raise AuditLogError(
                    f"{self.path} holds {self._seq} records but {anchor.count} were written "
                    f"(records were {what}); run `enclave audit verify`, then move both files "
                    f"of {self.dir} aside to start a new chain"
                )
            if last is not None and keyed:
                self._check_keyed_tail(last, anchor)
            elif last is not None:
                self._key_unkeyed_log(last)

    def _check_keyed_tail(self, last: Mapping[str, Any], anchor: Anchor | None) -> None:
        if last.get(KEY_FIELD) != self.key.key_id:
            raise AuditKeyError(
                f"the audit log {self.path} was chained with audit key {last.get(KEY_FIELD)}, "
                f"but the key from {self.key.source} is {self.key.key_id}: use the key that "
                f"wrote the log, or move both files of {self.dir} aside to start a new chain"
            )
        if not hmac.compare_digest(record_hash(last, self.key), str(last.get("hash"))):
            raise AuditLogError(
                f"the last record of {self.path} fails its MAC (it was forged or edited); "
                "run `enclave audit verify`"
            )
        if anchor is not None and not anchor.mac_ok(self.key):
            raise AuditLogError(
                f"the anchor {self.anchor_path} fails its MAC (it was replaced or edited); "
                "run `enclave audit verify`"
            )

    def _key_unkeyed_log(self, last: Mapping[str, Any]) -> None:
        """An unkeyed log (written before audit keys): verify its plain chain, then MAC the
        anchor over it, so the keyed records that follow vouch for it."""
        result = _verify(self.dir, lambda: self.key, allow_unkeyed=True, require_anchor=False)
        if not result.ok:
            where = f" at line {result.bad_line}" if result.bad_line else ""
            raise AuditLogError(
                f"the audit log {self.path}, written before audit keys, fails verification"
                f"{where}: {result.reason}. Run `enclave audit verify --allow-unkeyed`, then "
                f"move both files of {self.dir} aside to start a new chain"
            )
        self._write_anchor(str(last.get("time", "")))

    def _load_head(self) -> dict[str, Any] | None:
        line, size = _last_line(self.path)
        self._size = size
        if line is None:
            self._head, self._seq = GENESIS, 0
            return None
        try:
            rec = json.loads(line)
            self._head, self._seq = str(rec["hash"]), int(rec["seq"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditLogError(
                f"the last line of {self.path} is not an audit record ({exc}); run "
                "`enclave audit verify` and move the file aside to start a new chain"
            ) from exc
        return dict(rec)

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
            KEY_FIELD: self.key.key_id,
        }
        if extra:
            body["extra"] = dict(extra)
        with self._lock, file_lock(self.lock_path):
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size != self._size:  # another process appended: pick up its head
                last = self._load_head()
                if last is not None and last.get(KEY_FIELD) != self.key.key_id:
                    raise AuditLogError(
                        f"another writer appended to {self.path} without this audit key "
                        f"({self.key.key_id}); run `enclave audit verify`"
                    )
            body["seq"] = self._seq + 1
            body["prev_hash"] = self._head
            body["hash"] = record_hash(body, self.key)
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
        mac = self.key.mac(Anchor(self._seq, self._head, when).payload())
        text = canonical_json({"count": self._seq, "head": self._head, "time": when, "mac": mac})
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
    keyed: int = 0  # records chained with the audit key
    key_id: str = ""  # the audit key's id, when one was needed
    unverifiable: bool = False  # failed because nothing keyed vouches for the records

    @property
    def unkeyed(self) -> int:
        """Records written before audit keys (plain sha256 chain)."""
        return self.records - self.keyed

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "keyed": self.keyed,
            "unkeyed": self.unkeyed,
            "audit_key_id": self.key_id or None,
            "head": self.head,
            "bad_line": self.bad_line,
            "reason": self.reason,
        }


def verify_log(
    data_dir: Path | str,
    *,
    expect_head: str | None = None,
    key: AuditKey | None = None,
    key_file: Path | str | None = None,
    allow_unkeyed: bool = False,
) -> VerifyResult:
    """Check the whole chain of ``<data_dir>/audit`` and its anchor; report the first bad line.

    Keyed records and a keyed anchor are checked with ``key`` (default: loaded from
    ``$ENCLAVE_AUDIT_KEY`` or ``key_file``, never created). Raises
    :class:`~enclave.security.audit_key.AuditKeyError` when the log needs a key and there is
    none. A log whose records are all unkeyed (written before audit keys) and that no keyed
    anchor vouches for fails as *unverifiable*, unless ``allow_unkeyed``: then its plain
    chain is checked as before.
    """
    adir = Path(data_dir) / AUDIT_DIR
    loaded: list[AuditKey] = [key] if key is not None else []

    def get_key() -> AuditKey:
        if not loaded:
            found = load_audit_key(key_file, data_dir=data_dir, create=False)
            if found is None:
                raise AuditKeyError(_missing_key_message(adir / LOG_FILE, key_file))
            loaded.append(found)
        return loaded[0]

    result = _verify(adir, get_key, allow_unkeyed=allow_unkeyed)
    if result.ok and expect_head is not None and expect_head != result.head:
        result.ok = False
        result.reason = "the head hash differs from the expected one"
    return result


def _verify(
    adir: Path,
    get_key: Callable[[], AuditKey],
    *,
    allow_unkeyed: bool,
    require_anchor: bool = True,
) -> VerifyResult:
    path = adir / LOG_FILE
    anchor_path = adir / ANCHOR_FILE
    prev = GENESIS
    before_prev = GENESIS  # the hash of the record before the last one
    n = keyed = 0
    key: AuditKey | None = None

    def fail(line: int | None, reason: str, **kw: Any) -> VerifyResult:
        return VerifyResult(False, n, prev, line, reason, keyed, key.key_id if key else "", **kw)

    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        fh = None
    if fh is not None:
        with fh:
            for lineno, raw in enumerate(fh, start=1):
                rec, bad = _parse_line(raw, lineno, prev)
                if rec is not None and KEY_FIELD in rec:
                    key = key or get_key()
                    bad = bad or _check_keyed(rec, key, first=keyed == 0)
                elif rec is not None:
                    if keyed:
                        bad = "an unkeyed record after keyed ones (records are forged)"
                    else:
                        bad = bad or _check_plain(rec)
                if bad or rec is None:
                    return fail(lineno, bad)
                before_prev, prev = prev, str(rec["hash"])
                n = lineno
                keyed += KEY_FIELD in rec
    anchor = _read_anchor(anchor_path)
    if anchor is None:
        if n and require_anchor:
            return fail(None, f"anchor file {anchor_path} is missing")
    elif isinstance(anchor, str):
        return fail(None, anchor)
    else:
        if anchor.mac is not None:
            key = key or get_key()
            if not anchor.mac_ok(key):
                return fail(None, f"anchor file {anchor_path} fails its MAC (replaced or edited)")
        elif keyed:
            return fail(None, f"anchor file {anchor_path} has no MAC although the log is keyed")
        if n < anchor.count:
            return fail(
                n + 1,
                f"the log ends after record {n} but {anchor.count} were written: "
                "records were dropped from the end",
            )
        if n > anchor.count + 1:
            return fail(
                anchor.count + 2, f"records after {anchor.count + 1} were not written by Enclave"
            )
        if anchor.head != (prev if n == anchor.count else before_prev):
            return fail(anchor.count or None, f"record {anchor.count} does not match the anchor")
        if anchor.mac is not None and n - keyed > anchor.count:
            return fail(n, "an unkeyed record after the log was keyed (the record is forged)")
    vouched = keyed > 0 or (isinstance(anchor, Anchor) and anchor.mac is not None)
    if n and not vouched and not allow_unkeyed:
        return fail(
            None,
            f"the log's {n} records are unkeyed (written before audit keys) and nothing keyed "
            "vouches for them, so anyone who could write the data directory could have "
            "written them. `enclave serve` keys the log when it next starts; "
            "`enclave audit verify --allow-unkeyed` checks their plain chain alone",
            unverifiable=True,
        )
    return VerifyResult(True, n, prev, None, "", keyed, key.key_id if key else "")


def _parse_line(raw: bytes, lineno: int, prev: str) -> tuple[dict[str, Any] | None, str]:
    if not raw.endswith(b"\n"):
        return None, "truncated line (no newline at the end)"
    try:
        rec = json.loads(raw)
    except ValueError:
        return None, "not valid JSON (garbled line)"
    if not isinstance(rec, dict) or not isinstance(rec.get("hash"), str):
        return None, "not an audit record"
    if rec.get("seq") != lineno:
        return rec, f"sequence number {rec.get('seq')!r} where {lineno} was expected"
    if rec.get("prev_hash") != prev:
        return rec, "prev_hash does not match the previous record (dropped, inserted or reordered)"
    return rec, ""


def _check_plain(rec: Mapping[str, Any]) -> str:
    if record_hash(rec) != rec["hash"]:
        return "hash mismatch (the record was edited)"
    return ""


def _check_keyed(rec: Mapping[str, Any], key: AuditKey, *, first: bool) -> str:
    if rec.get(KEY_FIELD) != key.key_id:
        if first:
            return (
                f"the log was chained with audit key {rec.get(KEY_FIELD)}, not with the key "
                f"from {key.source} ({key.key_id}): verify with the key that wrote it; if that "
                "is this key, the records were forged"
            )
        return f"the record names audit key {rec.get(KEY_FIELD)}, not {key.key_id} (forged)"
    if not hmac.compare_digest(record_hash(rec, key), rec["hash"]):
        return "hash mismatch: the record was edited or forged (its MAC fails)"
    return ""


def _read_anchor(path: Path) -> Anchor | str | None:
    try:
        data = json.loads(path.read_text("utf-8"))
        mac = data.get("mac")
        return Anchor(
            int(data["count"]),
            str(data["head"]),
            str(data.get("time", "")),
            str(mac) if mac is not None else None,
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
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
