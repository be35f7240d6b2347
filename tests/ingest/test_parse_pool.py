"""ParserPool: results for every source, limits enforced, the pool survives misbehaving parsers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enclave.settings import IngestSettings
from ingest.parser_pool import ParserPool
from ingest.types import ParsedDocument, ParseError, Source
from tests.fixtures.make_docs import make, sections

HOOKS = "tests.ingest.parse_hooks:misbehave"


def _source(path: Path) -> Source:
    return Source(path=str(path), doc_id=path.name, size=path.stat().st_size, mtime=0.0)


def _html(directory: Path, name: str) -> Path:
    p = directory / name
    p.write_text(f"<html><body><h1>{name}</h1><p>body of {name}</p></body></html>", "utf-8")
    return p


def test_pool_parses_and_refuses(tmp_path: Path) -> None:
    files = [_html(tmp_path, f"page{i}.html") for i in range(6)]
    pdf = make("pdf", tmp_path)
    odd = tmp_path / "data.xyz"
    odd.write_text("x", encoding="utf-8")
    sources = [_source(p) for p in [*files, pdf, odd]]
    with ParserPool(IngestSettings(), workers=2) as pool:
        results = dict((s.doc_id, r) for s, r in pool.imap(sources))
    assert set(results) == {s.doc_id for s in sources}
    for p in files:
        doc = results[p.name]
        assert isinstance(doc, ParsedDocument) and doc.parser == "lxml-html"
        assert doc.elements[-1].text == f"body of {p.name}"
    pdf_doc = results[pdf.name]
    assert isinstance(pdf_doc, ParsedDocument)
    assert [e.page for e in pdf_doc.elements if e.kind == "title"] == [1, 2, 3]
    assert str(results["data.xyz"]) == "unsupported file type .xyz"


def test_pool_survives_hang_hog_and_crash(tmp_path: Path) -> None:
    names = ["hang.html", "ok1.html", "hog.html", "ok2.html", "crash.html", "segv.html", "ok3.html"]
    sources = [_source(_html(tmp_path, n)) for n in names]
    settings = IngestSettings(parse_timeout_s=3, parse_memory_mb=1024)
    started = time.monotonic()
    with ParserPool(settings, workers=2, parse_target=HOOKS) as pool:
        results = {s.doc_id: r for s, r in pool.imap(sources)}
    elapsed = time.monotonic() - started
    assert str(results["hang.html"]) == "parser timed out after 3 s"
    assert str(results["hog.html"]) == "parser exceeded the 1024 MB memory limit"
    assert str(results["crash.html"]) == "parser crashed (signal 9)"
    assert str(results["segv.html"]) == "parser crashed (signal 11)"
    for ok in ("ok1.html", "ok2.html", "ok3.html"):
        assert isinstance(results[ok], ParsedDocument), results[ok]
    assert elapsed < 30


def test_pool_consumes_lazily_and_bounds_in_flight(tmp_path: Path) -> None:
    files = [_html(tmp_path, f"p{i}.html") for i in range(10)]
    pulled: list[str] = []

    def gen() -> Iterator[Source]:
        for p in files:
            pulled.append(p.name)
            yield _source(p)

    with ParserPool(IngestSettings(), workers=2) as pool:
        it = pool.imap(gen())
        first = next(it)
        assert isinstance(first[1], ParsedDocument)
        # one result delivered: at most one file per worker, plus the one being refilled
        assert len(pulled) <= 3
        rest = list(it)
    assert len(rest) == 9 and len(pulled) == 10


def test_pool_close_is_quick_with_a_hung_worker(tmp_path: Path) -> None:
    sources = [_source(_html(tmp_path, n)) for n in ("hang1.html", "ok.html", "hang2.html")]
    pool = ParserPool(IngestSettings(parse_timeout_s=60), workers=2, parse_target=HOOKS)
    it = pool.imap(sources)
    source, result = next(it)  # the only file that can finish
    assert source.doc_id == "ok.html" and isinstance(result, ParsedDocument)
    procs = [w.proc for w in pool._busy]
    assert procs  # hang1 is still being "parsed"
    started = time.monotonic()
    it.close()  # the consumer stops early
    pool.close()
    assert time.monotonic() - started < 10
    assert all(p.poll() is not None for p in procs)
    with pytest.raises(RuntimeError, match="closed"):
        next(pool.imap(sources))


def test_pool_reuses_workers_after_errors(tmp_path: Path) -> None:
    settings = IngestSettings(parse_timeout_s=2)
    with ParserPool(settings, workers=1, parse_target=HOOKS) as pool:
        first = list(pool.imap([_source(_html(tmp_path, "crash.html"))]))
        second = list(pool.imap([_source(_html(tmp_path, "fine.html"))]))
    assert isinstance(first[0][1], ParseError)
    assert isinstance(second[0][1], ParsedDocument)


def test_worker_runs_unstructured_offline_under_the_memory_cap(tmp_path: Path) -> None:
    """In a real worker with the default 2048 MB cap: unstructured and its spaCy model load,
    parse EPUB and RST, and open no connection (the hook refuses and reports any)."""
    files = [make("epub", tmp_path), make("rst", tmp_path), make("docx", tmp_path)]
    target = "tests.ingest.parse_hooks:guarded_parse"
    with ParserPool(IngestSettings(), workers=1, parse_target=target) as pool:
        results = {s.doc_id: r for s, r in pool.imap([_source(p) for p in files])}
    for p in files:
        doc = results[p.name]
        assert isinstance(doc, ParsedDocument), doc
        fmt = p.suffix[1:]
        text = "\n".join(e.text for e in doc.elements)
        assert all(s.marker in text for s in sections(fmt))
    epub = results["sample.epub"]
    assert isinstance(epub, ParsedDocument) and epub.parser == "unstructured:epub"


def test_workers_stay_light(tmp_path: Path) -> None:
    """A worker parsing HTML and PDF imports neither torch nor unstructured."""
    files = [_html(tmp_path, "a.html"), make("pdf", tmp_path)]
    target = "tests.ingest.parse_hooks:report_modules"
    with ParserPool(IngestSettings(), workers=1, parse_target=target) as pool:
        results = [r for _, r in pool.imap([_source(p) for p in files])]
    assert [r.title for r in results if isinstance(r, ParsedDocument)] == ["none", "none"]


def test_workers_exit_when_the_parent_dies(tmp_path: Path) -> None:
    """A parent killed mid-batch leaves no parser process behind, even one that hangs."""
    import os
    import subprocess
    import sys

    hang = _html(tmp_path, "hang.html")
    script = (
        "import os, sys, time\n"
        "from enclave.settings import IngestSettings\n"
        "from ingest.parser_pool import ParserPool\n"
        "from ingest.types import Source\n"
        f"pool = ParserPool(IngestSettings(), workers=1, parse_target={HOOKS!r})\n"
        "pool._start(Source(path=" + repr(str(hang)) + ", doc_id='h', size=1, mtime=0.0))\n"
        "print(pool._busy[0].proc.pid, flush=True)\n"
        "time.sleep(1.5)\n"
        "os._exit(0)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":  # exited, waiting to be reaped
            return
        time.sleep(0.2)
    os.kill(pid, 9)
    raise AssertionError("the orphaned worker kept running")
