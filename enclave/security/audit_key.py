"""The audit key: the HMAC key that chains the audit log, kept outside the data directory.

Each audit record's ``hash`` is an HMAC-SHA256 under this key, so whoever can write the data
directory but cannot read the key cannot append, edit or rewrite records that still verify
(as with CloudTrail's log-file validation, integrity rests on a secret the writer of the
storage does not hold; with no signing service to turn to, the secret is a local HMAC key,
and verifying needs it too).

Where the key comes from, first match wins:

1. ``$ENCLAVE_AUDIT_KEY``: the key itself, as hex (at least 32 bytes: 64 hex characters), for
   containers and secret managers;
2. ``security.audit_key_file`` (``ENCLAVE_SECURITY__AUDIT_KEY_FILE``);
3. ``$XDG_CONFIG_HOME/enclave/audit.key``, i.e. ``~/.config/enclave/audit.key``.

A key file holds 32 random bytes as hex. The server creates the file (mode 0600, in a 0700
directory) the first time it writes a log that has no keyed records yet; ``enclave audit
verify`` never creates one. A key file readable by others, or one inside the data directory,
is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from enclave.errors import EnclaveError
from enclave.security._files import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, fsync_dir

KEY_ENV = "ENCLAVE_AUDIT_KEY"
KEY_BYTES = 32
_ID_LABEL = b"enclave audit key id"

log = logging.getLogger(__name__)


class AuditKeyError(EnclaveError):
    """The audit key is missing, unreadable, badly formed or kept where it protects nothing."""

    status_code = 503
    error_type = "server_error"
    code = "audit_key_unavailable"
    exit_code = 2


@dataclass(frozen=True)
class AuditKey:
    """An HMAC-SHA256 key and where it came from (a path, or ``$ENCLAVE_AUDIT_KEY``)."""

    secret: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        """A public identifier of the key (16 hex characters); reveals nothing of the key."""
        return hmac.new(self.secret, _ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def mac(self, data: bytes) -> str:
        return hmac.new(self.secret, data, hashlib.sha256).hexdigest()


def default_key_file() -> Path:
    """``$XDG_CONFIG_HOME/enclave/audit.key``, or ``~/.config/enclave/audit.key``."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "enclave" / "audit.key"


def key_location(key_file: Path | str | None) -> Path:
    """The key file that ``key_file`` (the setting; ``None`` = the default) designates."""
    return Path(key_file).expanduser() if key_file else default_key_file()


def describe_key_source(key_file: Path | str | None) -> str:
    """Where the key would be read from, for messages."""
    if os.environ.get(KEY_ENV):
        return f"${KEY_ENV}"
    return str(key_location(key_file))


def _parse(text: str, source: str) -> AuditKey:
    value = text.strip()
    try:
        secret = bytes.fromhex(value)
    except ValueError:
        secret = b""
    if len(secret) < KEY_BYTES:
        raise AuditKeyError(
            f"the audit key in {source} is not valid: expected at least {2 * KEY_BYTES} hex "
            f"characters ({KEY_BYTES} random bytes), e.g. the output of "
            "`python3 -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    return AuditKey(secret, source)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def load_audit_key(
    key_file: Path | str | None = None,
    *,
    data_dir: Path | str | None = None,
    create: bool = False,
) -> AuditKey | None:
    """The audit key, or ``None`` if there is none and ``create`` is false.

    With ``create``, a missing key file is created (32 random bytes, hex, mode 0600).
    Raises :class:`AuditKeyError` for a malformed key, a key file that others can read or
    write, or one inside ``data_dir`` (where a writer of the data directory could read it).
    """
    env = os.environ.get(KEY_ENV)
    if env:
        return _parse(env, f"${KEY_ENV}")
    path = key_location(key_file)
    if data_dir is not None and _inside(path, Path(data_dir)):
        raise AuditKeyError(
            f"the audit key file {path} is inside the data directory {data_dir}: whoever can "
            "write the data directory could read it and forge audit records. Keep it "
            "elsewhere (security.audit_key_file), or give the key in $ENCLAVE_AUDIT_KEY"
        )
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        if not create:
            return None
    return _create_key_file(path)


def _read_key_file(path: Path) -> AuditKey:
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise AuditKeyError(f"the audit key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise AuditKeyError(
                f"the audit key file {path} is accessible to other users (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); anyone who can read it can forge audit "
                f"records. Restrict it: chmod 600 {path}"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    return _parse(data.decode("ascii", errors="replace"), str(path))


def _create_key_file(path: Path) -> AuditKey:
    """Write a new random key to ``path`` atomically; if another process won the race, read
    its key instead."""
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(folder, PRIVATE_DIR_MODE)
    text = secrets.token_hex(KEY_BYTES) + "\n"
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
            os.write(fd, text.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and fails if the key appeared meanwhile
        except FileExistsError:
            return _read_key_file(path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    fsync_dir(folder)
    key = _parse(text, str(path))
    log.warning(
        "created the audit key %s (id %s): back it up and keep it off the data directory; "
        "`enclave audit verify` needs it",
        path,
        key.key_id,
    )
    return key
