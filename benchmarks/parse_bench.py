"""Parse speed and quality: Enclave's fast paths against unstructured, per format.

    .venv/bin/python benchmarks/parse_bench.py FOLDER [FOLDER ...] [--html 100] [--pdf 2]

For every format found in the folders, a deterministic sample of files is parsed in-process
twice: with Enclave's parser (``ingest.parse.parse_file``) and with unstructured's ``partition``
(strategy "fast", as Enclave calls it for office formats). Reported per format: median time per
file (per page for PDF), the speed-up, and how close the texts are: word recall (share of
unstructured's words, with multiplicity, that the fast path also produced), word precision (the
converse), and headings found by each. unstructured's one-off start-up (imports, spaCy model) is
measured separately and left out of the per-file figures. Formats without a fast path are timed
with unstructured only.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from enclave.offline import enforce_offline
from enclave.settings import IngestSettings
from ingest.parse import FORMATS, parse_file
from ingest.types import ParsedDocument, ParseError

FAST_PATHS = {"html", "pdf", "eml", "markdown", "text", "csv", "tsv", "docx", "pptx", "xlsx", "odt"}
WARM_UP_MODULE = {"pdf": "unstructured.partition.pdf"}


def allow_unstructured_pdf() -> None:
    """Let unstructured's PDF module import without OpenCV and onnxruntime.

    ``unstructured/partition/pdf.py`` imports both at load time for its hi_res/OCR path; the
    "fast" strategy measured here never calls them. Enclave itself reads PDFs with pypdfium2
    and installs neither, so the benchmark stands in inert modules, only in this process.
    """
    import importlib.util
    from unittest import mock

    for name in ("cv2", "onnxruntime"):
        if importlib.util.find_spec(name) is None:
            for sub in (name, f"{name}.capi", f"{name}.quantization"):
                sys.modules[sub] = mock.MagicMock(name=sub)


_WORD = re.compile(r"\w+")


def words(text: str) -> Counter[str]:
    return Counter(w.lower() for w in _WORD.findall(text))


def overlap(fast: str, ref: str) -> tuple[float, float]:
    """(recall of ref's words in fast, precision of fast's words against ref)."""
    a, b = words(fast), words(ref)
    common = sum((a & b).values())
    recall = common / max(1, sum(b.values()))
    precision = common / max(1, sum(a.values()))
    return recall, precision


def sample(files: list[Path], n: int) -> list[Path]:
    if n <= 0 or not files:
        return []
    if len(files) <= n:
        return files
    step = len(files) / n
    return [files[int(i * step)] for i in range(n)]


def pdf_pages(path: Path) -> int:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        return len(pdf)
    finally:
        pdf.close()


def run_unstructured(path: Path) -> tuple[str, int, float]:
    from ingest.parsers.office import convert, partition_elements

    t = time.perf_counter()
    raw = partition_elements(str(path))
    elements, _ = convert(raw)
    dt = time.perf_counter() - t
    text = "\n".join(e.text for e in elements)
    return text, sum(e.kind == "title" for e in elements), dt


def run_fast(path: Path, settings: IngestSettings) -> tuple[ParsedDocument, float]:
    t = time.perf_counter()
    doc = parse_file(str(path), settings)
    return doc, time.perf_counter() - t


def bench_format(fmt: str, files: list[Path], settings: IngestSettings) -> dict[str, Any]:
    fast_ms: list[float] = []
    uns_ms: list[float] = []
    recalls: list[float] = []
    precisions: list[float] = []
    fast_titles = uns_titles = pages_total = errors = 0
    for path in files:
        pages = pdf_pages(path) if fmt == "pdf" else 1
        unit = max(1, pages)
        pages_total += pages
        fast_text = ""
        if fmt in FAST_PATHS:
            try:
                doc, dt = run_fast(path, settings)
            except ParseError:
                errors += 1
                continue
            fast_ms.append(dt * 1000 / unit)
            fast_text = "\n".join(e.text for e in doc.elements)
            fast_titles += sum(e.kind == "title" for e in doc.elements)
        try:
            ref_text, n_titles, dt = run_unstructured(path)
        except Exception:
            errors += 1
            continue
        uns_ms.append(dt * 1000 / unit)
        uns_titles += n_titles
        if fmt in FAST_PATHS:
            r, p = overlap(fast_text, ref_text)
            recalls.append(r)
            precisions.append(p)
    med = statistics.median
    row: dict[str, Any] = {
        "format": fmt,
        "files": len(files),
        "pages": pages_total if fmt == "pdf" else None,
        "unit": "page" if fmt == "pdf" else "file",
        "unstructured_ms": round(med(uns_ms), 2) if uns_ms else None,
        "unstructured_titles": uns_titles,
        "errors": errors,
    }
    if fmt in FAST_PATHS and fast_ms:
        row.update(
            fast_ms=round(med(fast_ms), 2),
            speedup=round(med(uns_ms) / max(1e-9, med(fast_ms)), 1) if uns_ms else None,
            word_recall=round(statistics.mean(recalls), 3) if recalls else None,
            word_precision=round(statistics.mean(precisions), 3) if precisions else None,
            fast_titles=fast_titles,
        )
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--html", type=int, default=100, help="HTML files to sample")
    ap.add_argument("--pdf", type=int, default=2, help="PDF files to sample (smallest first)")
    ap.add_argument("--other", type=int, default=20, help="files to sample for other formats")
    ap.add_argument("--formats", help="comma-separated format names to run (default: all)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args(argv)

    enforce_offline()
    allow_unstructured_pdf()
    settings = IngestSettings()
    by_fmt: dict[str, list[Path]] = {}
    for folder in args.folders:
        for path in sorted(folder.rglob("*")):
            fmt = FORMATS.get(path.suffix.lower())
            wanted = not args.formats or fmt in args.formats.split(",")
            if fmt and wanted and path.is_file():
                by_fmt.setdefault(fmt, []).append(path)

    # unstructured's start-up, once: imports and the local spaCy model
    from ingest.parsers.office import prepare

    t = time.perf_counter()
    prepare()
    from unstructured.nlp.tokenize import _get_nlp
    from unstructured.partition.auto import partition  # noqa: F401

    _get_nlp()
    startup = time.perf_counter() - t
    print(f"unstructured start-up (imports + spaCy model): {startup:.1f} s")

    rows = []
    for fmt, files in sorted(by_fmt.items()):
        if fmt == "pdf":
            chosen = sorted(files, key=lambda p: p.stat().st_size)[: args.pdf]
        elif fmt == "html":
            chosen = sample(files, args.html)
        else:
            chosen = sample(files, args.other)
        # warm-up: the first call of each partitioner imports its module
        if fmt in WARM_UP_MODULE:
            importlib.import_module(WARM_UP_MODULE[fmt])
        elif chosen:
            run_unstructured(chosen[0])
        rows.append(bench_format(fmt, chosen, settings))
        print(json.dumps(rows[-1]), flush=True)

    print()
    print(
        "| format | files (pages) | Enclave ms/unit | unstructured ms/unit | speed-up "
        "| word recall | word precision | titles (Enclave / unstructured) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        count = f"{r['files']}" + (f" ({r['pages']})" if r["pages"] else "")
        fast = f"{r['fast_ms']} / {r['unit']}" if "fast_ms" in r else "– (unstructured)"
        uns = f"{r['unstructured_ms']} / {r['unit']}"
        sp = f"{r['speedup']}x" if r.get("speedup") else "–"
        rec = r.get("word_recall", "–")
        prec = r.get("word_precision", "–")
        titles = f"{r.get('fast_titles', '–')} / {r['unstructured_titles']}"
        print(f"| {r['format']} | {count} | {fast} | {uns} | {sp} | {rec} | {prec} | {titles} |")
    if args.json:
        args.json.write_text(json.dumps({"startup_s": startup, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
