"""Parse-quality scores over real corpora: the score distribution and the quarantined count.

    .venv/bin/python benchmarks/quality_bench.py /work/shared/corpora/postgres-manual-html \\
        /work/shared/corpora/postgres-manual-office /work/shared/corpora/r-manuals-pdf \\
        /work/shared/corpora/mail-ham [--json]

Every supported file of each folder (one corpus per folder) is parsed in-process with
Enclave's parsers (``ingest.parse.parse_file``, the default settings, OCR as installed) and
scored by ``ingest.quality.assess`` exactly as an ingest run scores it. Printed per corpus:
files, parse failures, the score's minimum, 1st and 5th percentiles and median, how many
documents the default threshold quarantines (each with its reason), and each signal's
worst value with the file holding it. Every document of these corpora is a good one, so
every quarantined document is a false quarantine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from enclave.offline import enforce_offline
from enclave.settings import IngestSettings, QualitySettings
from ingest.parse import SUPPORTED_EXTENSIONS, parse_file
from ingest.quality import assess
from ingest.types import ParseError

#: signals where low is bad (the rest: high is bad)
LOW_IS_BAD = {"text_page_share", "chars_per_page", "chars_per_kb", "printable_share", "word_share"}
WORST_OF = [
    "text_page_share",
    "chars_per_page",
    "chars_per_kb",
    "printable_share",
    "word_share",
    "mojibake_share",
    "repeated_line_share",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))]


def bench_corpus(folder: Path, ingest: IngestSettings, quality: QualitySettings) -> dict[str, Any]:
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
    )
    scores: list[float] = []
    quarantined: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    worst: dict[str, tuple[float, str]] = {}
    unscored = 0
    assess_s = 0.0
    t0 = time.perf_counter()
    for path in files:
        try:
            doc = parse_file(str(path), ingest)
        except ParseError as exc:
            failures.append({"path": str(path), "error": str(exc)})
            continue
        t = time.perf_counter()
        q = assess(doc, os.path.getsize(path), quality)
        assess_s += time.perf_counter() - t
        if q is None:
            unscored += 1
            continue
        scores.append(q.score)
        if q.quarantined:
            quarantined.append({"path": str(path), "score": q.score, "reason": q.reason})
        for name in WORST_OF:
            if name not in q.signals:
                continue
            value = float(q.signals[name])
            key = value if name in LOW_IS_BAD else -value
            if name not in worst or key < worst[name][0]:
                worst[name] = (key, path.name)
    out: dict[str, Any] = {
        "corpus": folder.name,
        "files": len(files),
        "parse_failures": failures,
        "unscored": unscored,
        "scored": len(scores),
        "quarantined": quarantined,
        "seconds": round(time.perf_counter() - t0, 1),
        "assess_ms_per_doc": round(1000 * assess_s / max(1, len(scores)), 2),
        "worst": {
            k: {"value": v[0] if k in LOW_IS_BAD else -v[0], "file": v[1]} for k, v in worst.items()
        },
    }
    if scores:
        out["score"] = {
            "min": min(scores),
            "p01": percentile(scores, 0.01),
            "p05": percentile(scores, 0.05),
            "median": statistics.median(scores),
            "below_0.8": sum(1 for s in scores if s < 0.8),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--json", action="store_true", help="one JSON object per corpus")
    args = ap.parse_args()
    enforce_offline()
    ingest, quality = IngestSettings(), QualitySettings()
    for folder in args.folders:
        r = bench_corpus(folder, ingest, quality)
        if args.json:
            print(json.dumps(r))
            continue
        s = r.get("score") or {}
        print(
            f"{r['corpus']}: {r['files']} files, {r['scored']} scored, "
            f"{len(r['parse_failures'])} parse failures, {r['unscored']} without text; "
            f"score min {s.get('min')} p1 {s.get('p01')} p5 {s.get('p05')} "
            f"median {s.get('median')}, {s.get('below_0.8')} below 0.8; "
            f"QUARANTINED {len(r['quarantined'])}; {r['seconds']} s "
            f"(scoring {r['assess_ms_per_doc']} ms/doc)"
        )
        for name, w in r["worst"].items():
            print(f"    worst {name}: {w['value']} ({w['file']})")
        for q in r["quarantined"]:
            print(f"    quarantined {q['score']}: {q['path']}: {q['reason']}")
        for f in r["parse_failures"]:
            print(f"    parse failure: {f['path']}: {f['error']}")


if __name__ == "__main__":
    main()
