"""Planted contradictions against the support rule (rag/support.py): false-support rate.

From real chunks of an index it plants, per chunk: an identifier swapped for another
identifier of the same document, a sentence claimed of another term of the document, a number
changed (x2 or +1, same unit), a negation inserted or removed; and keeps true sentences copied
verbatim (with and without their definition term). Each case is checked against its own chunk
(the adversarial case: everything else the claim says is there). The rule must support none
of the planted cases (false support 0) and should support the copied ones.

    .venv/bin/python benchmarks/support_bench.py LANCE_DIR [--chunks 300] [--json]

LANCE_DIR: an index's ``lancedb`` folder (e.g. ``<data-dir>/lancedb``, or an evaluation index
``<data-dir>/eval/<key>/lancedb``).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rag.support import is_identifier, passage_units, supported_by
from rag.units import split_units

_IDENT = re.compile(r"--?[A-Za-z][\w-]*|[A-Za-z_][\w.]*[A-Za-z0-9_](?:\(\))?")
_NUM = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?)(\s?(?:kB|MB|GB|TB|ms|min|s|h|d|%|bytes|megabytes|kilobytes|minutes|seconds|million)\b)?"
)
_AUX = re.compile(r"\b(is|are|can|will|does|do|should|must|was|were|has|have)\b")


def load_chunks(data_dir: Any, n: int, seed: int = 7) -> list[dict[str, Any]]:
    from store.db import Store

    store = Store(data_dir)
    rows = (
        store.chunks_table().to_arrow().select(["doc_id", "chunk_id", "text", "source"]).to_pylist()
    )
    rng = random.Random(seed)
    rng.shuffle(rows)
    by_doc: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_doc[r["doc_id"]].append(r)
    picked = [r for r in rows if len(r["text"]) > 300][:n]
    for r in picked:
        r["page_text"] = " ".join(x["text"] for x in by_doc[r["doc_id"]])
    return picked


def plant(chunks: list[dict[str, Any]], seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    cases: list[dict[str, Any]] = []
    for ch in chunks:
        units = [
            u
            for u in split_units(ch["text"])
            if u.kind == "sentence" and 6 <= len(u.text.split()) <= 45
        ]
        if not units:
            continue
        existing = {" ".join(x.split()) for x in passage_units(ch["text"])}
        page_idents = sorted(
            {t for t in _IDENT.findall(ch["page_text"]) if is_identifier(t) and len(t) > 3}
        )
        rng.shuffle(units)
        u = units[0]
        cases.append({"kind": "true", "claim": u.text, "passage": ch["text"], "expect": True})
        if u.context:
            cases.append(
                {"kind": "true+term", "claim": u.full(), "passage": ch["text"], "expect": True}
            )
        made = set()
        for u in units:
            s = u.text
            # identifier swap
            ids = [t for t in _IDENT.findall(s) if is_identifier(t) and len(t) > 3]
            if ids and "swap" not in made:
                x = rng.choice(ids)
                others = [y for y in page_idents if y != x and y.lower() not in s.lower()]
                if others:
                    y = rng.choice(others)
                    new = re.sub(r"(?<![\w-])" + re.escape(x) + r"(?![\w])", y, s, count=1)
                    if new != s and " ".join(new.split()) not in existing:
                        cases.append(
                            {
                                "kind": "swap",
                                "claim": new,
                                "passage": ch["text"],
                                "expect": False,
                                "was": x,
                                "now": y,
                            }
                        )
                        made.add("swap")
                        continue
            # also a term-level swap: the sentence claimed of another term of the page
            if u.context and "termswap" not in made:
                terms = [
                    t
                    for t in page_idents
                    if t.lower() not in u.context.lower() and t.lower() not in s.lower()
                ]
                if terms:
                    y = rng.choice(terms)
                    cases.append(
                        {
                            "kind": "termswap",
                            "claim": f"{y}: {s}",
                            "passage": ch["text"],
                            "expect": False,
                            "now": y,
                        }
                    )
                    made.add("termswap")
                    continue
            m = _NUM.search(s)
            if m and "number" not in made:
                v = m.group(1)
                if float(v) == 0 or "." in v:  # 0.00 -> 0 would be no contradiction
                    continue
                nv = str(int(float(v)) * 2) if rng.random() < 0.5 else str(int(float(v)) + 1)
                new = s[: m.start(1)] + nv + s[m.end(1) :]
                if " ".join(new.split()) not in existing:
                    cases.append(
                        {
                            "kind": "number",
                            "claim": new,
                            "passage": ch["text"],
                            "expect": False,
                            "was": v,
                            "now": nv,
                        }
                    )
                    made.add("number")
                    continue
            if "neg" not in made:
                if re.search(r"\bnot\b", s):
                    new = re.sub(r"\bnot\s+", "", s, count=1)
                    kindname = "neg-remove"
                elif re.search(r"\bno\b", s):
                    new = re.sub(r"\bno\b", "a", s, count=1)
                    kindname = "neg-remove"
                elif _AUX.search(s) and not re.search(r"\b(never|cannot|n't|without|none)\b", s):
                    new = _AUX.sub(lambda mm: mm.group(1) + " not", s, count=1)
                    kindname = "neg-insert"
                else:
                    continue
                if " ".join(new.split()) not in existing:
                    cases.append(
                        {"kind": kindname, "claim": new, "passage": ch["text"], "expect": False}
                    )
                    made.add("neg")
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lance_dir", type=Path)
    parser.add_argument("--chunks", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chunks = load_chunks(args.lance_dir, args.chunks)
    cases = plant(chunks)
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for c in cases:
        verdict = supported_by(c["claim"], c["passage"])
        c["supported"] = verdict.supported
        kinds[c["kind"]][0] += 1
        kinds[c["kind"]][1] += int(verdict.supported)
    false = [c for c in cases if not c["expect"]]
    true = [c for c in cases if c["expect"]]
    result = {
        "chunks": len(chunks),
        "planted": len(false),
        "false_supported": sum(c["supported"] for c in false),
        "copied": len(true),
        "true_supported": sum(c["supported"] for c in true),
        "by_kind": {k: {"cases": n, "supported": s} for k, (n, s) in sorted(kinds.items())},
        "false_examples": [c["claim"] for c in false if c["supported"]][:10],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{len(cases)} cases from {len(chunks)} chunks")
    for k, (n, s) in sorted(kinds.items()):
        print(f"  {k:11s} n={n:4d}  supported: {s}")
    print(
        f"false support {result['false_supported']}/{result['planted']}, "
        f"true support {result['true_supported']}/{result['copied']}"
    )
    for claim in result["false_examples"]:
        print("  FALSE:", claim)


if __name__ == "__main__":
    main()
