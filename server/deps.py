"""Typed dependencies: routes ask for what they need by annotation.

Authentication: ``PrincipalDep`` resolves the caller from ``Authorization: Bearer <key>``
(401 without a valid key; the local admin when ``security.auth`` is off) and ``AdminDep``
also requires an admin key (403). Routers carry ``require_principal`` in their
``dependencies`` too, so no route under them can be left unprotected by mistake.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from enclave.security.guard import SecurityServices
from enclave.security.http import AdminDep, PrincipalDep, get_security, require_principal
from enclave.security.keys import Principal
from enclave.settings import Settings
from server.errors import NotReadyError
from server.metrics import Metrics
from server.rag import RagService
from server.services.chat import ChatService
from server.services.documents import DocumentService
from server.services.embeddings import EmbeddingService
from server.state import AppState, Services


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.enclave
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_services(state: StateDep) -> Services:
    if state.services is None:
        why = state.error or "the models are still loading"
        raise NotReadyError(f"not ready: {why}")
    return state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


def get_rag(services: ServicesDep) -> RagService:
    return services.rag


def get_chat(services: ServicesDep) -> ChatService:
    return services.chat


def get_documents(services: ServicesDep) -> DocumentService:
    return services.documents


def get_embeddings(services: ServicesDep) -> EmbeddingService:
    return services.embeddings


SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
RagDep = Annotated[RagService, Depends(get_rag)]
ChatDep = Annotated[ChatService, Depends(get_chat)]
DocumentsDep = Annotated[DocumentService, Depends(get_documents)]
EmbeddingsDep = Annotated[EmbeddingService, Depends(get_embeddings)]
SecurityDep = Annotated[SecurityServices, Depends(get_security)]

__all__ = [
    "AdminDep",
    "Principal",
    "PrincipalDep",
    "SecurityDep",
    "require_principal",
]
