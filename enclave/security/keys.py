"""API keys and the principals they authenticate.

A key is ``enc_`` followed by 32 random bytes in URL-safe base64 (256 bits). It is printed once
by ``enclave keys create`` and only its SHA-256 is stored, in ``<data_dir>/keys.json`` (mode
0600). A plain hash is enough here: the key is random and high-entropy, so the hash cannot be
reversed or guessed; a slow password hash would only slow every request down.

Writers (the CLI) take an advisory lock, read, modify and atomically replace the file; the
server's :class:`KeyStore` re-reads it whenever it changed, so a revocation takes effect on the
very next request without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from enclave.errors import ConfigError, NotFoundError, UsageError
from enclave.security._files import atomic_write_text, file_lock
from store.records import valid_group

KEYS_FILE = "keys.json"
KEY_PREFIX = "enc_"
FILE_FORMAT = 1

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_KEY_RE = re.compile(r"^enc_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the owner of one API key (or the local admin when auth is off)."""

    name: str
    key_id: str
    groups: tuple[str, ...] = ()
    admin: bool = False
    #: daily token budget (prompt + completion); None = the server default, 0 = unlimited
    daily_tokens: int | None = None
    #: requests per minute; None = the server default, 0 = unlimited
    rpm: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key_id": self.key_id,
            "groups": list(self.groups),
            "admin": self.admin,
            "daily_tokens": self.daily_tokens,
            "rpm": self.rpm,
        }


#: The caller when authentication is disabled (``--no-auth``, loopback only): an admin.
LOCAL_PRINCIPAL = Principal(name="local", key_id="local", groups=(), admin=True)


@dataclass
class KeyRecord:
    """One stored key (never the key itself: its SHA-256)."""

    key_id: str
    name: str
    prefix: str
    key_sha256: str
    groups: list[str] = field(default_factory=list)
    admin: bool = False
    daily_tokens: int | None = None
    rpm: int | None = None
    created: str = ""
    revoked: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def principal(self) -> Principal:
        return Principal(
            name=self.name,
            key_id=self.key_id,
            groups=tuple(self.groups),
            admin=self.admin,
            daily_tokens=self.daily_tokens,
            rpm=self.rpm,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "prefix": self.prefix,
            "key_sha256": self.key_sha256,
            "groups": list(self.groups),
            "admin": self.admin,
            "daily_tokens": self.daily_tokens,
            "rpm": self.rpm,
            "created": self.created,
            "revoked": self.revoked,
        }

    def public_dict(self) -> dict[str, Any]:
        """What ``enclave keys list`` shows: everything but the hash."""
        out = self.to_dict()
        del out["key_sha256"]
        out["active"] = self.active
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeyRecord:
        return cls(
            key_id=str(d["key_id"]),
            name=str(d["name"]),
            prefix=str(d.get("prefix", "")),
            key_sha256=str(d["key_sha256"]),
            groups=[str(g) for g in d.get("groups", [])],
            admin=bool(d.get("admin", False)),
            daily_tokens=_opt_int(d.get("daily_tokens")),
            rpm=_opt_int(d.get("rpm")),
            created=str(d.get("created", "")),
            revoked=str(d["revoked"]) if d.get("revoked") else None,
        )


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    """A fresh API key: ``enc_`` + 32 random bytes, URL-safe base64 without padding."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def validate_groups(groups: list[str] | tuple[str, ...]) -> list[str]:
    """Strip, de-duplicate and check group names; raise UsageError naming the first bad one."""
    out: list[str] = []
    for raw in groups:
        g = raw.strip()
        if not g:
            continue
        if not valid_group(g):
            raise UsageError(
                f"invalid group name {g!r}: use 1-64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )
        if g not in out:
            out.append(g)
    return out


def parse_groups(text: str | None) -> list[str]:
    """``"hr, finance"`` -> ``["hr", "finance"]`` (validated)."""
    if not text:
        return []
    return validate_groups(text.split(","))


def _validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UsageError(
            f"invalid key name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def _validate_limit(what: str, value: int | None) -> int | None:
    if value is not None and value < 0:
        raise UsageError(f"{what} must be >= 0 (0 = unlimited), got {value}")
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class KeyStore:
    """The API keys of one data directory. Thread-safe; re-reads the file when it changes."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / KEYS_FILE
        self.lock_path = self.data_dir / (KEYS_FILE + ".lock")
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._records: list[KeyRecord] = []

    # ------------------------------------------------------------------ reading
    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _read_file(self) -> list[KeyRecord]:
        try:
            raw = self.path.read_text("utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(raw)
            return [KeyRecord.from_dict(d) for d in data.get("keys", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{self.path} is not a valid Enclave keys file: {exc}") from exc

    def records(self) -> list[KeyRecord]:
        """Every key, active and revoked, as last written (re-read if the file changed)."""
        with self._lock:
            stamp = self._file_stamp()
            if stamp != self._stamp or stamp is None:
                self._records = self._read_file()
                self._stamp = stamp
            return list(self._records)

    def has_active_keys(self) -> bool:
        return any(r.active for r in self.records())

    def authenticate(self, key: str | None) -> Principal | None:
        """The principal of an active key, or None. Compares every stored hash in constant time."""
        if not key or not _KEY_RE.match(key):
            return None
        digest = hash_key(key)
        found: KeyRecord | None = None
        for rec in self.records():
            # no early exit: the time taken does not depend on which record matches
            if hmac.compare_digest(rec.key_sha256, digest) and rec.active:
                found = rec
        return found.principal() if found is not None else None

    def find(self, name_or_id: str) -> KeyRecord:
        """The key (active or not) with this id, or the active key with this name."""
        return self.find_in(self.records(), name_or_id)

    # ------------------------------------------------------------------ writing
    def _write(self, records: list[KeyRecord]) -> None:
        payload = {"format": FILE_FORMAT, "keys": [r.to_dict() for r in records]}
        atomic_write_text(self.path, json.dumps(payload, indent=2) + "\n")

    def create(
        self,
        name: str,
        *,
        groups: list[str] | tuple[str, ...] = (),
        admin: bool = False,
        daily_tokens: int | None = None,
        rpm: int | None = None,
    ) -> tuple[KeyRecord, str]:
        """Create a key; returns its record and the key itself (shown once, never stored)."""
        name = _validate_name(name)
        clean = validate_groups(groups)
        _validate_limit("--daily-tokens", daily_tokens)
        _validate_limit("--rpm", rpm)
        key = generate_key()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.lock_path):
            records = self._read_file()
            if any(r.name == name and r.active for r in records):
                raise UsageError(
                    f"an active key named {name!r} exists; revoke it first or pick another name"
                )
            rec = KeyRecord(
                key_id=secrets.token_hex(6),
                name=name,
                prefix=key[:10],
                key_sha256=hash_key(key),
                groups=clean,
                admin=admin,
                daily_tokens=daily_tokens,
                rpm=rpm,
                created=_now(),
            )
            records.append(rec)
            self._write(records)
        return rec, key

    def _update(self, name_or_id: str, change: Any) -> KeyRecord:
        with file_lock(self.lock_path):
            records = self._read_file()
            target = self.find_in(records, name_or_id)
            change(target)
            self._write(records)
            return target

    @staticmethod
    def find_in(records: list[KeyRecord], name_or_id: str) -> KeyRecord:
        """The key (active or not) with this id, or the active key with this name."""
        for rec in records:
            if rec.key_id == name_or_id:
                return rec
        for rec in records:
            if rec.name == name_or_id and rec.active:
                return rec
        if any(r.name == name_or_id for r in records):
            raise NotFoundError(f"key {name_or_id!r} is already revoked")
        raise NotFoundError(f"no key named {name_or_id!r} (see `enclave keys list`)")

    def revoke(self, name_or_id: str) -> KeyRecord:
        """Revoke a key (kept in the file, marked revoked). Revoking twice is an error."""

        def change(rec: KeyRecord) -> None:
            if not rec.active:
                raise UsageError(f"key {rec.name!r} ({rec.key_id}) is already revoked")
            rec.revoked = _now()

        return self._update(name_or_id, change)

    def set_groups(self, name_or_id: str, groups: list[str] | tuple[str, ...]) -> KeyRecord:
        clean = validate_groups(groups)

        def change(rec: KeyRecord) -> None:
            if not rec.active:
                raise UsageError(f"key {rec.name!r} ({rec.key_id}) is revoked")
            rec.groups = clean

        return self._update(name_or_id, change)

    def set_limits(
        self, name_or_id: str, *, daily_tokens: int | None = None, rpm: int | None = None
    ) -> KeyRecord:
        """Change a key's limits; a None argument leaves that limit as it is."""
        _validate_limit("--daily-tokens", daily_tokens)
        _validate_limit("--rpm", rpm)

        def change(rec: KeyRecord) -> None:
            if daily_tokens is not None:
                rec.daily_tokens = daily_tokens
            if rpm is not None:
                rec.rpm = rpm

        return self._update(name_or_id, change)


def bearer_token(authorization: str | None) -> str | None:
    """The key in an ``Authorization: Bearer <key>`` header value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None
