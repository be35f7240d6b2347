"""Make the README screenshot: serve the sample documents in examples/docs with the real
bundled models, ask a question in the web page, open a citation, save a PNG.

    .venv/bin/python -m tests.ui.screenshot docs/screenshot.png [--dark]

Questions are tried in turn, each in a new chat, until an answer cites a source (the bundled
135M-parameter model does not always cite).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from enclave.offline import enforce_offline

ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = [
    "What is Enclave? Answer in one sentence with a citation like [1].",
    "Which environment variable sets the data directory? Cite [1].",
    "Does Enclave make network calls at run time? Cite the source like [1].",
    "What model embeds the passages? Cite the source like [1].",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--dark", action="store_true", help="dark colour scheme")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()

    enforce_offline()
    from playwright.sync_api import expect, sync_playwright

    from enclave.settings import EmbedderSettings
    from models.loading import load_embedder
    from tests.ui.live import CHROMIUM_ARGS, chromium_path, start_server

    with tempfile.TemporaryDirectory(prefix="enclave-") as tmp:
        docs = Path(tmp) / "docs"
        shutil.copytree(ROOT / "examples" / "docs", docs)
        embedder = load_embedder(EmbedderSettings())
        live = start_server(Path(tmp) / "data", [docs], embedder, max_tokens=120, top_k=3)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
                page = browser.new_page(
                    viewport={"width": args.width, "height": args.height},
                    color_scheme="dark" if args.dark else "light",
                )
                page.goto(live.url + "/")
                expect(page.locator("#ready-status")).to_have_attribute("data-state", "ready")
                for question in QUESTIONS:
                    page.locator("#new-chat").click()
                    page.fill("#question", question)
                    page.press("#question", "Enter")
                    expect(page.locator(".msg-assistant")).to_have_count(1)
                    expect(page.locator("#messages")).to_have_attribute(
                        "aria-busy", "false", timeout=180_000
                    )
                    if page.locator("button.cite").count():
                        break
                else:
                    sys.stderr.write("no answer cited a source; screenshot not taken\n")
                    return 1
                page.locator("button.cite").first.click()
                expect(page.locator("#source-panel")).to_be_visible()
                page.mouse.move(0, args.height - 1)  # no hover effect in the picture
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out), animations="disabled")
                browser.close()
        finally:
            live.stop()
    sys.stdout.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
