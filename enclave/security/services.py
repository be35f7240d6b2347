"""What the server holds for security, built once from the settings; no web framework here.

``SecurityServices.from_settings(settings)`` gives the key store, the authenticator, the ACL
policy, the audit log and the limiter. The FastAPI dependency in ``server/auth.py`` only
passes the ``Authorization`` header to :meth:`Authenticator.authenticate`.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from enclave.errors import AuthError, ConfigError
from enclave.security.audit import AuditLog
from enclave.security.keys import LOCAL_PRINCIPAL, KeyStore, Principal, bearer_token
from enclave.security.policy import AclPolicy
from enclave.security.rate_limits import Limiter

if TYPE_CHECKING:
    from enclave.settings import SecuritySettings, Settings

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; False for 0.0.0.0, :: and the rest."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_no_auth_allowed(host: str, auth: bool) -> None:
    """Refuse to serve without authentication on anything but a loopback address."""
    if not auth and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve without authentication on {host}: --no-auth (security.auth = "
            "false) is only allowed on a loopback address such as 127.0.0.1. Create keys with "
            "`enclave keys create NAME --groups ...` instead."
        )


class Authenticator:
    """Turns an ``Authorization`` header into a Principal, or raises AuthError (401)."""

    def __init__(self, keys: KeyStore, *, enabled: bool = True) -> None:
        self.keys = keys
        self.enabled = enabled

    def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return LOCAL_PRINCIPAL
        token = bearer_token(authorization)
        if token is None:
            hint = ""
            if not self.keys.has_active_keys():
                hint = " No API keys exist yet: create one with `enclave keys create NAME --admin`."
            raise AuthError("missing API key: send it as 'Authorization: Bearer <key>'." + hint)
        principal = self.keys.authenticate(token)
        if principal is None:
            raise AuthError("invalid or revoked API key")
        return principal


@dataclass
class SecurityServices:
    """Everything security-related one server process needs."""

    settings: SecuritySettings
    keys: KeyStore
    auth: Authenticator
    policy: AclPolicy
    audit: AuditLog | None
    limiter: Limiter

    @classmethod
    def from_settings(cls, settings: Settings) -> SecurityServices:
        """Build from the settings; raises ConfigError (bad policy, --no-auth off loopback),
        AuditLogError (damaged audit chain) or AuditKeyError (the audit key of a keyed log is
        missing or another one) so the server refuses to start (exit 2)."""
        sec = settings.security
        check_no_auth_allowed(settings.server.host, sec.auth)
        keys = KeyStore(settings.data_dir)
        keys.records()  # a damaged keys file fails now, not on the first request
        if sec.auth and not keys.has_active_keys():
            log.warning("no API keys exist: every request will get 401 until one is created")
        audit = None
        if sec.audit:
            audit = AuditLog(
                settings.data_dir, questions=sec.audit_questions, key_file=sec.audit_key_file
            )
        return cls(
            settings=sec,
            keys=keys,
            auth=Authenticator(keys, enabled=sec.auth),
            policy=AclPolicy.load(sec.policy_file),
            audit=audit,
            limiter=Limiter(
                settings.data_dir,
                default_daily_tokens=sec.default_daily_tokens,
                default_rpm=sec.default_rpm,
                save_interval_s=1.0,  # close() writes the rest
            ),
        )

    def close(self) -> None:
        self.limiter.flush()
