"""Typed dependencies: routes ask for what they need by annotation.

Authentication dependencies (``PrincipalDep``, ``AdminDep``, ``SecurityDep``) live in
``server/auth.py``; these give the app's state and its services. A service is only there once
the models are loaded: until then asking for one answers 503 (``/readyz`` says why).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.errors import NotReadyError
from server.services.chat import ChatService
from server.services.documents import DocumentService
from server.services.embeddings import EmbeddingService
from server.services.lineage import LineageService
from server.services.search import SearchService
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


def get_chat(services: ServicesDep) -> ChatService:
    return services.chat


def get_search(services: ServicesDep) -> SearchService:
    return services.search


def get_documents(services: ServicesDep) -> DocumentService:
    return services.documents


def get_embeddings(services: ServicesDep) -> EmbeddingService:
    return services.embeddings


def get_lineage(services: ServicesDep) -> LineageService:
    return services.lineage


ChatDep = Annotated[ChatService, Depends(get_chat)]
SearchDep = Annotated[SearchService, Depends(get_search)]
DocumentsDep = Annotated[DocumentService, Depends(get_documents)]
EmbeddingsDep = Annotated[EmbeddingService, Depends(get_embeddings)]
LineageDep = Annotated[LineageService, Depends(get_lineage)]
