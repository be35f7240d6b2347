"""report.json, report.md and report.html (self-contained: plots are inline SVG drawn here)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from eval.gate import Delta

# ---------------------------------------------------------------------------------- SVG
_W, _H = 520, 280
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 52, 16, 28, 44


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return "–"
    if isinstance(x, int) or (float(x).is_integer() and abs(x) >= 100):
        return str(int(x))
    return f"{x:.{digits}g}" if abs(x) >= 1000 else f"{x:.{digits}f}".rstrip("0").rstrip(".")


def svg_line_chart(
    series: Sequence[tuple[str, Sequence[float], str]],
    *,
    title: str,
    x_label: str,
    y_label: str,
) -> str:
    """Lines over x = 1..n on a 0..1 y axis; ``series`` holds (name, values, colour)."""
    n = max((len(v) for _, v, _ in series), default=0)
    pw, ph = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}">',
        f'<text x="{_W / 2}" y="18" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]

    def xy(i: int, v: float) -> tuple[float, float]:
        x = _PAD_L + (pw * (i / (n - 1)) if n > 1 else pw / 2)
        y = _PAD_T + ph * (1.0 - max(0.0, min(1.0, v)))
        return x, y

    for t in range(6):
        v = t / 5
        _, y = xy(0, v)
        parts.append(
            f'<line x1="{_PAD_L}" y1="{y:.1f}" x2="{_W - _PAD_R}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{v:.1f}</text>"
        )
    for i in range(n):
        x, _ = xy(i, 0.0)
        parts.append(
            f'<text x="{x:.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle" '
            f'font-size="11">{i + 1}</text>'
        )
    parts.append(
        f'<text x="{_W / 2}" y="{_H - 8}" text-anchor="middle" font-size="12">'
        f"{escape(x_label)}</text>"
        f'<text x="14" y="{_H / 2}" text-anchor="middle" font-size="12" '
        f'transform="rotate(-90 14 {_H / 2})">{escape(y_label)}</text>'
    )
    for idx, (name, values, colour) in enumerate(series):
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in enumerate(values)))
        dash = ' stroke-dasharray="5,4"' if idx > 0 else ""
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{pts}"/>'
        )
        for i, v in enumerate(values):
            x, y = xy(i, v)
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)} @{i + 1}: {v:.4f}</title></circle>"
            )
        ly = _PAD_T + ph - 10 - 16 * idx
        parts.append(
            f'<rect x="{_W - _PAD_R - 150}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{_W - _PAD_R - 135}" y="{ly}" font-size="11">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def svg_histogram(
    series: Sequence[tuple[str, Sequence[float], str]], *, title: str, x_label: str, bins: int = 12
) -> str:
    """Overlaid histograms sharing one set of bins (e.g. first-token and total latency)."""
    values = [v for _, vs, _ in series for v in vs]
    pw, ph = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(title)}">',
        f'<text x="{_W / 2}" y="18" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]
    if not values:
        parts.append(
            f'<text x="{_W / 2}" y="{_H / 2}" text-anchor="middle" font-size="12">no data</text>'
            "</svg>"
        )
        return "".join(parts)
    lo, hi = 0.0, max(values)
    hi = hi if hi > lo else lo + 1.0
    width = (hi - lo) / bins
    counts = []
    for _, vs, _ in series:
        c = [0] * bins
        for v in vs:
            c[min(bins - 1, int((v - lo) / width))] += 1
        counts.append(c)
    top = max(max(c) for c in counts) or 1
    bar_w = pw / bins
    for t in range(5):
        y = _PAD_T + ph * (1 - t / 4)
        parts.append(
            f'<line x1="{_PAD_L}" y1="{y:.1f}" x2="{_W - _PAD_R}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{round(top * t / 4)}</text>"
        )
    for s_idx, ((name, _, colour), c) in enumerate(zip(series, counts, strict=True)):
        for b, count in enumerate(c):
            if not count:
                continue
            h = ph * count / top
            x = _PAD_L + b * bar_w + 1
            parts.append(
                f'<rect x="{x:.1f}" y="{_PAD_T + ph - h:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{h:.1f}" fill="{colour}" fill-opacity="0.55">'
                f"<title>{escape(name)}: {count} in [{lo + b * width:.2f}, "
                f"{lo + (b + 1) * width:.2f}) s</title></rect>"
            )
        ly = _PAD_T + 12 + 16 * s_idx
        parts.append(
            f'<rect x="{_W - _PAD_R - 150}" y="{ly - 9}" width="10" height="10" '
            f'fill="{colour}" fill-opacity="0.55"/>'
            f'<text x="{_W - _PAD_R - 135}" y="{ly}" font-size="11">{escape(name)}</text>'
        )
    for t in range(5):
        v = lo + (hi - lo) * t / 4
        x = _PAD_L + pw * t / 4
        parts.append(
            f'<text x="{x:.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle" '
            f'font-size="11">{v:.2f}</text>'
        )
    parts.append(
        f'<text x="{_W / 2}" y="{_H - 8}" text-anchor="middle" font-size="12">'
        f"{escape(x_label)}</text></svg>"
    )
    return "".join(parts)


# ------------------------------------------------------------------------------ tables
def metric_rows(report: dict[str, Any]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for section, values in (report.get("metrics") or {}).items():
        if isinstance(values, dict):
            for name, value in values.items():
                rows.append((f"{section}.{name}", value))
    return rows


def _deltas(report: dict[str, Any]) -> list[Delta]:
    base = report.get("baseline") or {}
    return [
        Delta(d["metric"], d.get("baseline"), d.get("current")) for d in base.get("deltas") or []
    ]


def _signed(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:+.4f}"


def render_markdown(report: dict[str, Any]) -> str:
    ds = report.get("dataset") or {}
    speed = (report.get("metrics") or {}).get("speed") or {}
    lines = [
        "# Enclave evaluation report",
        "",
        f"- created: {report.get('created')}",
        f"- dataset: `{ds.get('path')}` ({ds.get('corpus')} corpus, {ds.get('documents')} "
        f"documents, {ds.get('queries')} queries), sha256 `{str(ds.get('hash'))[:16]}`",
        f"- mode: {report.get('mode')}" + (f" ({report.get('url')})" if report.get("url") else ""),
        f"- release scored: {report.get('release') or '-'}",
        f"- seed: {report.get('seed')}, depth (top-k documents): {report.get('top_k')}",
        f"- answers made by: {report.get('answer_mode') or '-'}",
        f"- embedder: {((report.get('models') or {}).get('embedder') or {}).get('name')}",
        f"- generator: {((report.get('models') or {}).get('generator') or {}).get('name')}",
        f"- enclave {report.get('enclave_version')}",
    ]
    if speed:
        lines.append(
            f"- retrieval of {report.get('retrieval', {}).get('queries_run')} queries: "
            f"{_fmt(speed.get('retrieval_seconds'))} s ({_fmt(speed.get('queries_per_s'))} "
            "queries/s)"
        )
    lines += ["", "## Metrics", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in metric_rows(report)]
    deltas = _deltas(report)
    if deltas:
        lines += [
            "",
            f"## Against the baseline (`{report.get('baseline', {}).get('path')}`)",
            "",
            "| metric | baseline | now | delta |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| {d.metric} | {_fmt(d.baseline)} | {_fmt(d.current)} | {_signed(d.delta)} |"
            for d in deltas
        ]
    gate = report.get("gate")
    if gate:
        verdict = "passed" if gate.get("passed") else "FAILED"
        lines += ["", f"## Gate: {verdict}", ""]
        lines += [
            f"- {'ok  ' if c['ok'] else 'FAIL'} {c['message']}" for c in gate.get("checks") or []
        ]
    misses = report.get("worst_misses") or []
    if misses:
        lines += [
            "",
            "## Worst retrieval misses",
            "",
            "| query | expected | got (top 5) |",
            "| --- | --- | --- |",
        ]
        for m in misses:
            q = str(m["query"]).replace("|", "\\|")
            lines.append(f"| {q} | {', '.join(m['expected'])} | {', '.join(m['got'][:5]) or '–'} |")
    warnings = report.get("warnings") or []
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    return "\n".join(lines) + "\n"


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;
padding:3px 8px;text-align:left;vertical-align:top}th{background:#f4f4f4}
.num{text-align:right;font-variant-numeric:tabular-nums}.bad{color:#b00020}.good{color:#1b7f3b}
.plots{display:flex;flex-wrap:wrap;gap:1rem}code{background:#f4f4f4;padding:0 3px}
"""


def render_html(report: dict[str, Any]) -> str:
    ds = report.get("dataset") or {}
    speed = (report.get("metrics") or {}).get("speed") or {}
    models = report.get("models") or {}
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Enclave evaluation report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Enclave evaluation report</h1><ul>",
        f"<li>created {escape(str(report.get('created')))}; enclave "
        f"{escape(str(report.get('enclave_version')))}; mode {escape(str(report.get('mode')))}"
        + (f" ({escape(str(report.get('url')))})" if report.get("url") else "")
        + "</li>",
        f"<li>release scored: {escape(str(report.get('release') or '-'))}</li>",
        f"<li>dataset <code>{escape(str(ds.get('path')))}</code>: {ds.get('documents')} "
        f"documents ({escape(str(ds.get('corpus')))}), {ds.get('queries')} queries; sha256 "
        f"<code>{escape(str(ds.get('hash'))[:16])}</code></li>",
        f"<li>embedder {escape(str((models.get('embedder') or {}).get('name')))}; generator "
        f"{escape(str((models.get('generator') or {}).get('name')))}; seed {report.get('seed')}"
        "</li>",
    ]
    if speed:
        out.append(
            f"<li>retrieval: {_fmt(speed.get('retrieval_seconds'))} s, "
            f"{_fmt(speed.get('queries_per_s'))} queries/s</li>"
        )
    out.append("</ul><h2>Metrics</h2><table><tr><th>metric</th><th>value</th>")
    deltas = {d.metric: d for d in _deltas(report)}
    if deltas:
        out.append("<th>baseline</th><th>delta</th>")
    out.append("</tr>")
    for name, value in metric_rows(report):
        out.append(f"<tr><td>{escape(name)}</td><td class='num'>{_fmt(value)}</td>")
        if deltas:
            d = deltas.get(name)
            cls = "" if d is None or d.better is None else ("good" if d.better else "bad")
            out.append(
                f"<td class='num'>{_fmt(d.baseline if d else None)}</td>"
                f"<td class='num {cls}'>{_signed(d.delta if d else None)}</td>"
            )
        out.append("</tr>")
    out.append("</table>")

    gate = report.get("gate")
    if gate:
        verdict = "passed" if gate.get("passed") else "failed"
        out.append(f"<h2>Gate: <span class='{'good' if gate.get('passed') else 'bad'}'>")
        out.append(f"{verdict}</span></h2><ul>")
        for c in gate.get("checks") or []:
            cls = "good" if c["ok"] else "bad"
            out.append(f"<li class='{cls}'>{'ok' if c['ok'] else 'FAIL'}: ")
            out.append(f"{escape(c['message'])}</li>")
        out.append("</ul>")

    out.append("<h2>Plots</h2><div class='plots'>")
    curve = (report.get("curves") or {}).get("recall_at_k") or []
    series: list[tuple[str, Sequence[float], str]] = [("this run", curve, "#1f5fbf")]
    base_curve = (report.get("baseline") or {}).get("recall_at_k")
    if base_curve:
        series.append(("baseline", base_curve, "#999999"))
    if curve:
        out.append(svg_line_chart(series, title="recall@k", x_label="k", y_label="recall"))
    answers = report.get("answers") or []
    first = [float(a["first_token_s"]) for a in answers if a.get("first_token_s") is not None]
    total = [float(a["total_s"]) for a in answers if a.get("total_s") is not None]
    if answers:
        out.append(
            svg_histogram(
                [("first token", first, "#e07b00"), ("total", total, "#1f5fbf")],
                title=f"answer latency ({len(total)} answers)",
                x_label="seconds",
            )
        )
    out.append("</div>")

    misses = report.get("worst_misses") or []
    if misses:
        out.append(
            "<h2>Worst retrieval misses</h2><table><tr><th>query</th><th>expected</th>"
            "<th>got (top 5)</th><th>first relevant rank</th></tr>"
        )
        for m in misses:
            out.append(
                f"<tr><td>{escape(str(m['query']))}</td>"
                f"<td>{escape(', '.join(m['expected']))}</td>"
                f"<td>{escape(', '.join(m['got'][:5]) or '–')}</td>"
                f"<td class='num'>{m.get('rank') or 'not in top ' + str(report.get('top_k'))}"
                "</td></tr>"
            )
        out.append("</table>")
    if answers:
        out.append(
            "<h2>Answers</h2><table><tr><th>question</th><th>answer</th><th>references</th>"
            "<th>F1</th><th>faithful</th><th>total s</th></tr>"
        )
        for a in answers:
            out.append(
                f"<tr><td>{escape(str(a['question']))}</td>"
                f"<td>{escape(str(a['answer'] or a.get('error') or ''))}</td>"
                f"<td>{escape(' | '.join(a['references']))}</td>"
                f"<td class='num'>{_fmt(a['token_f1'], 3)}</td>"
                f"<td class='num'>{_fmt(a['faithfulness'], 3)}</td>"
                f"<td class='num'>{_fmt(a['total_s'], 3)}</td></tr>"
            )
        out.append("</table>")
    warnings = report.get("warnings") or []
    if warnings:
        out.append("<h2>Warnings</h2><ul>")
        out += [f"<li>{escape(w)}</li>" for w in warnings]
        out.append("</ul>")
    out.append("<h2>Reproducibility</h2><pre>")
    repro = {
        k: report.get(k)
        for k in ("dataset", "models", "index", "settings", "seed", "timings", "command")
    }
    out.append(escape(json.dumps(repro, indent=2, default=str)))
    out.append("</pre></body></html>")
    return "".join(out)


def write_reports(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "report.json",
        "md": out_dir / "report.md",
        "html": out_dir / "report.html",
    }
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n", "utf-8")
    paths["md"].write_text(render_markdown(report), "utf-8")
    paths["html"].write_text(render_html(report), "utf-8")
    return paths
