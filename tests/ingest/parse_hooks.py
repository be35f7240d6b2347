"""Parse functions for ParserPool tests, run inside the worker processes.

``ParserPool(settings, parse_target="tests.ingest.parse_hooks:misbehave")`` makes the workers
call :func:`misbehave`, which acts on the file's name: ``hang*`` sleeps, ``hog*`` allocates far
beyond the memory cap, ``crash*`` kills its own process, ``segv*`` dereferences NULL; any other
file is parsed normally. :func:`guarded_parse` parses with every outbound connection refused and
reports any attempt as a ParseError.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from enclave.settings import IngestSettings
from ingest.parse import parse_file
from ingest.types import ParsedDocument, ParseError


def misbehave(path: str, settings: IngestSettings) -> ParsedDocument:
    name = Path(path).name
    if name.startswith("hang"):
        time.sleep(600)
    if name.startswith("hog"):
        # twice the cap in one request, as a runaway parser building one huge buffer would
        blob = bytearray(settings.parse_memory_mb * 2 * 1024 * 1024)
        del blob
    if name.startswith("crash"):
        os.kill(os.getpid(), signal.SIGKILL)
    if name.startswith("segv"):
        import ctypes

        ctypes.string_at(0)
    return parse_file(path, settings)


ATTEMPTS: list[str] = []


def _is_loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else str(address)
    return str(host) in ("127.0.0.1", "::1", "localhost") or isinstance(address, str | bytes)


def install_socket_guard() -> list[str]:
    """Refuse (and record) every non-loopback connection or DNS lookup in this process."""
    if getattr(socket, "_enclave_guarded", False):
        return ATTEMPTS
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if not _is_loopback(address):
            ATTEMPTS.append(f"connect {address}")
            raise OSError("network access blocked by the test guard")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _is_loopback(address):
            ATTEMPTS.append(f"connect_ex {address}")
            raise OSError("network access blocked by the test guard")
        return real_connect_ex(self, address)

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            ATTEMPTS.append(f"getaddrinfo {host}")
            raise OSError("DNS blocked by the test guard")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo
    socket._enclave_guarded = True  # type: ignore[attr-defined]
    return ATTEMPTS


def guarded_parse(path: str, settings: IngestSettings) -> ParsedDocument:
    attempts = install_socket_guard()
    before = len(attempts)
    doc = parse_file(path, settings)
    if len(attempts) > before:
        raise ParseError("NETWORK ATTEMPT: " + "; ".join(attempts[before:]))
    return doc


def report_modules(path: str, settings: IngestSettings) -> ParsedDocument:
    """Parse, then report which heavy modules the worker process has imported."""
    import sys

    doc = parse_file(path, settings)
    heavy = sorted(
        m for m in ("torch", "unstructured", "spacy", "sentence_transformers") if m in sys.modules
    )
    doc.title = ",".join(heavy) or "none"
    return doc
