"""Parser worker processes: each parses one file at a time under a wall-clock timeout and an
address-space cap, so a parser that hangs, crashes or eats memory costs one file, never the
batch. Workers are fresh interpreters (no fork of a process holding threads or models), fed
lazily, replaced when they hang, die or overrun.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from types import TracebackType
from typing import Any

from enclave.settings import IngestSettings
from ingest.parse import DEFAULT_PARSE_TARGET, precheck, short_error
from ingest.types import ParsedDocument, ParseError, Source

log = logging.getLogger(__name__)

STARTUP_ALLOWANCE_S = 60.0  # a fresh worker's interpreter start-up, on top of the parse timeout


def _resolve(target: str) -> Callable[[str, IngestSettings], ParsedDocument]:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    fn: Callable[[str, IngestSettings], ParsedDocument] = getattr(module, attr)
    return fn


def _exit_with_parent() -> None:
    """Exit this worker when the process that started it goes away (checked every second)."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _limit_memory(memory_mb: int) -> None:
    import resource

    limit = memory_mb * 1024 * 1024
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def worker_main(read_fd: int, write_fd: int) -> None:
    """Entry point of one parser process (started by :class:`ParserPool`).

    Protocol over two pipes, pickled: the parent sends ``(settings, target)`` once, then one
    path at a time; the worker answers ``("ready", None, False)`` once started, then each path
    with ``("ok", ParsedDocument, fatal)`` or ``("error", message, fatal)``. ``None`` or
    end-of-file ends the worker. ``fatal`` (after a MemoryError) means the worker exits right
    after answering, so the parent must not reuse it.
    """
    from enclave.offline import enforce_offline

    enforce_offline()
    _exit_with_parent()
    inbox = Connection(read_fd, writable=False)
    outbox = Connection(write_fd, readable=False)
    try:
        settings, target = inbox.recv()
    except EOFError:
        return
    _limit_memory(settings.parse_memory_mb)
    fn = _resolve(target)
    outbox.send(("ready", None, False))
    while True:
        try:
            path = inbox.recv()
        except (EOFError, OSError):
            return
        if path is None:
            return
        status, payload, fatal = _run_one(fn, path, settings)
        try:
            outbox.send((status, payload, fatal))
        except MemoryError:
            fatal = True
            outbox.send(("error", _memory_message(settings.parse_memory_mb), fatal))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            message = f"parser returned an unusable result: {short_error(exc)}"
            outbox.send(("error", message, fatal))
        if fatal:
            return


def _run_one(
    fn: Callable[[str, IngestSettings], ParsedDocument], path: str, settings: IngestSettings
) -> tuple[str, Any, bool]:
    """``(status, payload, fatal)``: fatal means this worker must not be reused."""
    try:
        return "ok", fn(path, settings), False
    except ParseError as exc:
        return "error", str(exc), False
    except MemoryError:
        return "error", _memory_message(settings.parse_memory_mb), True
    except RecursionError:
        return "error", "document is nested too deeply to parse", True
    except Exception as exc:
        return "error", f"parser failed: {short_error(exc)}", False


def _memory_message(memory_mb: int) -> str:
    return f"parser exceeded the {memory_mb} MB memory limit"


def _timeout_message(seconds: float) -> str:
    shown = f"{seconds:g}"
    return f"parser timed out after {shown} s"


_WORKER_ENV = {
    # one thread per parser process: the pool is the parallelism
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
    "PYTHONUNBUFFERED": "1",
}


class _Worker:
    """One parser process and its two pipes."""

    def __init__(self, settings: IngestSettings, target: str) -> None:
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        env = dict(os.environ)
        env.update(_WORKER_ENV)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        code = f"from ingest.parser_pool import worker_main; worker_main({task_r}, {result_w})"
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=(task_r, result_w),
                env=env,
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            os.close(task_r)
            os.close(result_w)
        self.tasks = Connection(task_w, readable=False)
        self.results = Connection(result_r, writable=False)
        self.tasks.send((settings, target))
        self.source: Source | None = None
        self.deadline = 0.0
        self.timeout_s = 0.0
        self.ready = False

    def submit(self, source: Source, timeout_s: float) -> None:
        self.tasks.send(source.fs_path)
        self.source = source
        self.timeout_s = timeout_s
        # start-up does not count against the parse timeout, within reason
        allowance = 0.0 if self.ready else STARTUP_ALLOWANCE_S
        self.deadline = time.monotonic() + timeout_s + allowance

    def mark_ready(self) -> None:
        self.ready = True
        if self.source is not None:
            self.deadline = time.monotonic() + self.timeout_s

    def crash_reason(self) -> str:
        code = self.proc.poll()
        if code is None:
            try:
                code = self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                self.kill()
                code = self.proc.returncode
        if code is not None and code < 0:
            return f"parser crashed (signal {-code})"
        return f"parser crashed (exit code {code})"

    def signal_kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, OSError):
            self.proc.kill()

    def kill(self) -> None:
        self.signal_kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5.0)
        self._close_pipes()

    def request_stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.tasks.send(None)

    def stop(self, grace_s: float = 1.0) -> None:
        self.request_stop()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for conn in (self.tasks, self.results):
            with contextlib.suppress(OSError):
                conn.close()


@dataclass
class _Outcome:
    source: Source
    result: ParsedDocument | ParseError


class ParserPool:
    """Worker processes that parse files under a time and a memory limit.

    ``workers`` defaults to ``settings.workers`` or the number of cores. Each worker is a fresh
    interpreter (never a fork of the caller, which may hold torch and threads) that imports only
    what the files it meets need. ``parse_target`` (``"module:function"``, default
    :func:`parse_file`) is the function the workers call; tests point it at functions that hang,
    crash or allocate, to exercise the limits.

    Use as a context manager, or call :meth:`close`. One pool serves one thread at a time.
    """

    def __init__(
        self,
        settings: IngestSettings,
        workers: int | None = None,
        *,
        parse_target: str = DEFAULT_PARSE_TARGET,
    ) -> None:
        self.settings = settings
        count = workers or settings.workers or os.cpu_count() or 1
        self.max_workers = max(1, count)
        self.parse_target = parse_target
        self._idle: list[_Worker] = []
        self._busy: list[_Worker] = []
        self._closed = False

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> ParserPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- work ------------------------------------------------------------------------------
    def imap(
        self, sources: Iterable[Source]
    ) -> Generator[tuple[Source, ParsedDocument | ParseError], None, None]:
        """Parse ``sources``; yield ``(source, document or ParseError)`` as each finishes.

        Sources are pulled lazily, never more than one per worker at a time. Files refused by
        cheap checks (unsupported type, missing, too large) are answered without a worker.
        """
        if self._closed:
            raise RuntimeError("ParserPool is closed")
        it = iter(sources)
        exhausted = False
        try:
            while True:
                # fill the free workers
                while not exhausted and len(self._busy) < self.max_workers:
                    try:
                        source = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    refusal = self._precheck(source)
                    if refusal is not None:
                        yield source, refusal
                        continue
                    self._start(source)
                if not self._busy:
                    if exhausted:
                        return
                    continue
                for outcome in self._collect():
                    yield outcome.source, outcome.result
        finally:
            # a consumer that stops early leaves no worker busy with a stale file
            for worker in list(self._busy):
                worker.kill()
            self._busy.clear()

    def _precheck(self, source: Source) -> ParseError | None:
        try:
            precheck(source.fs_path, self.settings)
        except ParseError as exc:
            return exc
        return None

    def _start(self, source: Source) -> None:
        worker = self._idle.pop() if self._idle else None
        if worker is not None and worker.proc.poll() is not None:
            worker.kill()
            worker = None
        if worker is None:
            worker = _Worker(self.settings, self.parse_target)
        try:
            worker.submit(source, self.settings.parse_timeout_s)
        except OSError:  # died while idle: replace once
            worker.kill()
            worker = _Worker(self.settings, self.parse_target)
            worker.submit(source, self.settings.parse_timeout_s)
        self._busy.append(worker)

    def _collect(self) -> list[_Outcome]:
        """Wait until at least one busy worker answers, dies or runs out of time."""
        now = time.monotonic()
        wait_s = max(0.0, min(w.deadline for w in self._busy) - now)
        by_conn = {w.results: w for w in self._busy}
        ready = wait(list(by_conn), timeout=wait_s)
        outcomes: list[_Outcome] = []
        for conn in ready:
            worker = by_conn[conn]  # type: ignore[index]
            source = worker.source
            assert source is not None
            try:
                status, payload, exiting = worker.results.recv()
                if status == "ready":
                    worker.mark_ready()
                    continue
            except (EOFError, OSError):
                reason = worker.crash_reason()
                worker.kill()
                self._busy.remove(worker)
                outcomes.append(_Outcome(source, ParseError(reason)))
                continue
            except Exception as exc:  # an answer that does not unpickle
                worker.kill()
                self._busy.remove(worker)
                outcomes.append(_Outcome(source, ParseError(f"parser failed: {short_error(exc)}")))
                continue
            self._busy.remove(worker)
            worker.source = None
            if not exiting and worker.proc.poll() is None:
                self._idle.append(worker)
            else:
                worker.kill()
            result: ParsedDocument | ParseError
            result = payload if status == "ok" else ParseError(str(payload))
            outcomes.append(_Outcome(source, result))
        now = time.monotonic()
        for worker in list(self._busy):
            if worker.deadline <= now and worker.results not in ready:
                source = worker.source
                assert source is not None
                worker.kill()
                self._busy.remove(worker)
                message = _timeout_message(self.settings.parse_timeout_s)
                outcomes.append(_Outcome(source, ParseError(message)))
        return outcomes

    def close(self) -> None:
        """Stop every worker; never blocks for more than a few seconds."""
        if self._closed:
            return
        self._closed = True
        for worker in self._busy:
            worker.signal_kill()
        for worker in self._idle:
            worker.request_stop()
        deadline = time.monotonic() + 2.0
        for worker in self._idle:
            worker.stop(grace_s=max(0.0, deadline - time.monotonic()))
        for worker in self._busy:
            worker.kill()
        self._busy.clear()
        self._idle.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
