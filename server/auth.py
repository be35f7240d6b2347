"""Authentication for routes: the caller's :class:`Principal` as a typed dependency.

``PrincipalDep`` resolves the caller from ``Authorization: Bearer <key>`` (401 without a valid
key; the local admin when ``security.auth`` is off) and records it on the request's audit
record; ``AdminDep`` also requires an admin key (403). Routers carry ``require_principal`` in
their ``dependencies`` too, so no route under them can be left unprotected by mistake.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request

from enclave.security.access import require_admin
from enclave.security.keys import Principal
from enclave.security.services import SecurityServices
from server.middleware import audit_info

APP_STATE_ATTR = "enclave_security"


def attach_security(app: FastAPI, security: SecurityServices) -> None:
    """Keep ``security`` on the app, where :func:`get_security` finds it."""
    setattr(app.state, APP_STATE_ATTR, security)


def get_security(request: Request) -> SecurityServices:
    security: SecurityServices = getattr(request.app.state, APP_STATE_ATTR)
    return security


def require_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller's Principal, or AuthError (401, OpenAI-style body)."""
    security = get_security(request)
    principal = security.auth.authenticate(request.headers.get("authorization"))
    audit_info(request.scope).principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(require_principal)]


def require_admin_principal(principal: PrincipalDep) -> Principal:
    """FastAPI dependency for admin-only routes (403 for other keys)."""
    require_admin(principal, "this endpoint")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin_principal)]
SecurityDep = Annotated[SecurityServices, Depends(get_security)]
