"""The web UI end to end: a real server (bundled embedder and GGUF model, real LanceDB, uvicorn
on loopback) driven by Debian's Chromium through Playwright.

Screenshots go to each test's tmp dir and, when $ENCLAVE_SCREENSHOT_DIR is set, there too.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from tests.ui.live import CHROMIUM_ARGS, LiveServer, chromium_path, start_server

pytestmark = pytest.mark.slow

# Read at import: the autouse fixture in tests/conftest.py hides ENCLAVE_* and changes the cwd.
_SHOT_ENV = os.environ.get("ENCLAVE_SCREENSHOT_DIR")
SCREENSHOT_DIR = Path(_SHOT_ENV).resolve() if _SHOT_ENV else None

DOC_NAME = "orchard-handbook.md"
DOC_TEXT = """# Orchard Station Handbook

## Water supply

Orchard Station pumps water from the Larch reservoir every morning at six o'clock. The pumps
run for forty minutes and fill the two copper tanks behind the greenhouse.

## Visitors

Visitors sign the blue ledger at the gate and wear a green badge while on the grounds.
"""
# A file name and text that look like markup: both must show as plain text.
TRICKY_NAME = "<i>tricky<i> notes.txt"
TRICKY_TEXT = "Lighthouse log: <img src=x onerror=alert(1)> stays text, <b>not bold</b>.\n"
BROKEN_NAME = "broken.docx"

# Questions that make the bundled model cite a source; asked in turn, each in a new chat, until
# one does (it is a 135M-parameter model: citing is likely, not certain).
QUESTIONS = [
    "Describe the water supply of Orchard Station, citing sources like [1].",
    "What happens every morning at six o'clock at Orchard Station? Cite [1].",
    "When does Orchard Station pump water? Cite the source like [1].",
    "According to source [1], when are the pumps started at Orchard Station?",
    "Repeat exactly this sentence: Orchard Station pumps water every morning at six [1].",
]

WIDE = {"width": 1280, "height": 800}
NARROW = {"width": 375, "height": 740}
ANSWER_TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, bundled_embedder: Any) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("ui")
    docs = root / "docs"
    docs.mkdir()
    (docs / DOC_NAME).write_text(DOC_TEXT, encoding="utf-8")
    (docs / TRICKY_NAME).write_text(TRICKY_TEXT, encoding="utf-8")
    (docs / BROKEN_NAME).write_bytes(random.Random(3).randbytes(4096))
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("ENCLAVE_"):
                mp.delenv(key)
        server = start_server(root / "data", [docs], bundled_embedder)
    assert server.ingest.ingested == 2, server.ingest.to_dict()
    assert [Path(f["path"]).name for f in server.ingest.failed] == [BROKEN_NAME]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page_errors() -> list[str]:
    return []


def new_page(browser: Browser, errors: list[str], viewport: dict[str, int]) -> Page:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return page


def save_shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), animations="disabled")
    assert path.stat().st_size > 10_000
    if SCREENSHOT_DIR is not None:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOT_DIR / name)
    return path


def no_horizontal_overflow(page: Page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page overflows horizontally: {widths}"


def watch_answer_growth(page: Page) -> None:
    """Record the length of the streaming answer each time the page changes it."""
    page.evaluate(
        """() => {
          window.__lengths = [];
          const log = document.getElementById('messages');
          new MutationObserver(() => {
            const answers = log.querySelectorAll('.msg-assistant .answer');
            const last = answers[answers.length - 1];
            if (last && !last.querySelector('.typing') && log.getAttribute('aria-busy') === 'true')
              window.__lengths.push(last.textContent.length);
          }).observe(log, {childList: true, subtree: true, characterData: true});
        }"""
    )


def ask(page: Page, question: str) -> None:
    """Type a question, send it with Enter, wait until the answer is complete."""
    answers = page.locator(".msg-assistant").count()
    page.fill("#question", question)
    page.press("#question", "Enter")
    expect(page.locator(".msg-assistant")).to_have_count(answers + 1)
    expect(page.locator("#messages")).to_have_attribute(
        "aria-busy", "false", timeout=ANSWER_TIMEOUT_MS
    )


def test_chat_streams_an_answer_with_citations(
    live: LiveServer, browser: Browser, tmp_path: Path, page_errors: list[str]
) -> None:
    live.settings.answer.mode = "generate"  # the model's answer, streamed token by token
    try:
        _streams_an_answer_with_citations(live, browser, tmp_path, page_errors)
    finally:
        live.settings.answer.mode = "auto"


def _streams_an_answer_with_citations(
    live: LiveServer, browser: Browser, tmp_path: Path, page_errors: list[str]
) -> None:
    page = new_page(browser, page_errors, WIDE)
    page.goto(live.url + "/")
    expect(page.get_by_role("heading", name="Ask your documents")).to_be_visible()
    expect(page.locator("#ready-status")).to_have_attribute("data-state", "ready")
    no_horizontal_overflow(page)

    watch_answer_growth(page)
    ask(page, QUESTIONS[0])
    # generated text streams in verified sentences only (the 135M model's are often all
    # dropped, and the answer is then the quotes, sent at the end): what the page showed
    # while streaming only ever grew
    lengths: list[int] = page.evaluate("window.__lengths")
    assert lengths == sorted(lengths), f"the streamed answer shrank (lengths seen: {lengths})"
    assert page.locator(".msg-user .bubble").first.text_content() == QUESTIONS[0]
    first_answer = page.locator(".msg-assistant .answer").first.text_content() or ""
    assert len(first_answer) > 5

    asked = 1
    while page.locator("button.cite").count() == 0 and asked < len(QUESTIONS):
        page.locator("#new-chat").click()
        ask(page, QUESTIONS[asked])
        asked += 1
    chips = page.locator("button.cite")
    answer = page.locator(".msg-assistant .answer").last.text_content()
    assert chips.count() >= 1, f"no answer cited a source (last: {answer!r})"
    expect(page.locator(".msg-assistant .error")).to_have_count(0)

    # The chip opens the cited passage: file name, path, section and text.
    chip = chips.first
    assert DOC_NAME in (chip.get_attribute("aria-label") or "")
    chip.click()
    panel = page.locator("#source-panel")
    expect(panel).to_be_visible()
    expect(page.locator("#source-kicker")).to_have_text(f"Source {chip.text_content()}")
    expect(page.locator("#source-path")).to_contain_text(DOC_NAME)
    expect(page.locator("#source-meta")).to_contain_text(DOC_NAME)
    expect(page.locator("#source-meta")).to_contain_text("Orchard Station Handbook")
    passage = page.locator("#source-text").text_content() or ""
    assert "Orchard Station" in passage or "Visitors" in passage, passage
    # The sources list under the answer names the file too.
    expect(page.locator(".sources .source-chip-name").first).to_be_visible()
    save_shot(page, tmp_path, "chat-desktop.png")

    # Escape closes the panel and gives focus back to the chip.
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    assert page.evaluate("document.activeElement.classList.contains('cite')")

    # A reload keeps the conversation, citations included.
    turns = page.locator(".msg").count()
    page.reload()
    expect(page.locator(".msg")).to_have_count(turns)
    expect(page.locator("button.cite").first).to_be_visible()
    expect(page.locator("#empty-state")).to_be_hidden()

    # At phone width nothing overflows, and the passage opens as a bottom sheet.
    page.set_viewport_size(NARROW)  # type: ignore[arg-type]
    no_horizontal_overflow(page)
    page.locator("button.cite").first.click()
    expect(panel).to_be_visible()
    box = panel.bounding_box()
    assert box is not None and box["width"] <= NARROW["width"]
    no_horizontal_overflow(page)
    save_shot(page, tmp_path, "chat-mobile.png")
    page.locator("#source-close").click()
    expect(panel).to_be_hidden()

    # "New chat" empties the page and the stored conversation.
    page.locator("#new-chat").click()
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("#empty-state")).to_be_visible()
    page.reload()
    expect(page.locator(".msg")).to_have_count(0)
    assert page_errors == []


def test_quoted_answer_shows_each_quote_with_its_source(
    live: LiveServer, browser: Browser, tmp_path: Path, page_errors: list[str]
) -> None:
    """The default mode with the bundled model quotes: the page shows each quote as the
    document's own words, with the chip and the name of the source it comes from."""
    page = new_page(browser, page_errors, WIDE)
    page.goto(live.url + "/")
    expect(page.locator("#ready-status")).to_have_attribute("data-state", "ready")
    ask(page, "When does Orchard Station pump water?")
    quotes = page.locator(".msg-assistant .quote-text")
    expect(quotes.first).to_be_visible()
    doc = " ".join(DOC_TEXT.split())
    texts = [" ".join((t or "").split()) for t in quotes.all_text_contents()]
    assert any("six o'clock" in t for t in texts), texts
    assert all(t in doc for t in texts), texts
    expect(page.locator(".msg-assistant .quote-file").first).to_contain_text(DOC_NAME)
    chip = page.locator(".msg-assistant .quote button.cite").first
    chip.click()
    expect(page.locator("#source-path")).to_contain_text(DOC_NAME)
    page.keyboard.press("Escape")
    no_horizontal_overflow(page)
    save_shot(page, tmp_path, "chat-quotes.png")
    assert page_errors == []


def test_errors_are_readable_and_the_key_is_sent(
    live: LiveServer, browser: Browser, tmp_path: Path, page_errors: list[str]
) -> None:
    page = new_page(browser, page_errors, WIDE)
    page.goto(live.url + "/")

    # A question longer than the model's context (generate mode: the model would be asked):
    # the server's 400 message, not raw JSON.
    live.settings.answer.mode = "generate"
    try:
        ask(page, "zq7 " * 1900)
    finally:
        live.settings.answer.mode = "auto"
    error = page.locator(".msg-assistant .error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    text = error.text_content() or ""
    assert "(400" in text and "{" not in text, text

    # An API key saved in the form goes with every request as a bearer token.
    page.locator("#key-toggle").click()
    page.fill("#api-key", "sk-enclave-test")
    page.locator("#key-panel button[type=submit]").click()
    expect(page.locator("#key-panel")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('enclave.apiKey')") == "sk-enclave-test"

    # A full queue (429 with Retry-After) reads "busy, retry in N s".
    seen: dict[str, str] = {}

    def busy(route: Route) -> None:
        seen.update(route.request.headers)
        route.fulfill(
            status=429,
            headers={"Retry-After": "7", "Content-Type": "application/json"},
            body='{"error": {"message": "the queue is full", "type": "server_error"}}',
        )

    page.route("**/v1/chat/completions", busy)
    ask(page, "When does Orchard Station pump water?")
    assert seen.get("authorization") == "Bearer sk-enclave-test"
    expect(page.locator(".msg-assistant .error").last).to_have_text(
        "The server is busy, retry in 7 s."
    )
    save_shot(page, tmp_path, "chat-errors.png")
    assert page_errors == [] or all("429" in e or "400" in e for e in page_errors), page_errors


def test_uncited_answer_lists_matched_sources_apart(
    live: LiveServer, browser: Browser, tmp_path: Path, page_errors: list[str]
) -> None:
    """An answer without markers: the sources Enclave matched to its sentences come first,
    labelled as matched, then the other sources. The stream is the server's shape, fixed so
    the page (the subject here) gets both kinds every time."""
    import json

    def source(index: int, name: str, attributed: bool) -> dict[str, Any]:
        return {
            "index": index, "doc_id": f"d{index}", "source": f"/docs/{name}", "title": name,
            "page": None, "heading_path": [], "chunk_id": f"d{index}-00000", "score": 0.03,
            "similarity": 0.7, "snippet": "Orchard Station pumps water.", "trimmed": False,
            "verified": False, "attributed": attributed, "flags": [], "withheld": False,
        }  # fmt: skip

    text = "Orchard Station pumps water every morning at six o'clock."
    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"content": text}}]},
        {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "citations": [],
            "sources": [source(1, "visitors.md", False), source(2, DOC_NAME, True)],
            "enclave": {
                "content": text,
                "verified": [],
                "attributed": [{"sentence": text, "index": 2, "overlap": 1.0, "cosine": 0.0}],
            },
        },
    ]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    page = new_page(browser, page_errors, WIDE)
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=200, headers={"Content-Type": "text/event-stream"}, body=body
        ),
    )
    page.goto(live.url + "/")
    ask(page, "When does Orchard Station pump water?")
    item = page.locator(".msg-assistant").last
    expect(item.locator(".sources-label").first).to_have_text(
        "Supported by (matched by Enclave, not cited)"
    )
    expect(item.locator(".sources-attributed .source-chip-name")).to_have_text([DOC_NAME])
    expect(item.locator(".sources-uncited .source-chip-name")).to_have_text(["visitors.md"])
    expect(item.locator("button.cite")).to_have_count(0)
    item.locator(".sources-attributed .source-chip").click()
    expect(page.locator("#source-path")).to_contain_text(DOC_NAME)
    save_shot(page, tmp_path, "chat-attributed.png")
    assert page_errors == []


def test_documents_page_lists_files_and_failures(
    live: LiveServer, browser: Browser, tmp_path: Path, page_errors: list[str]
) -> None:
    page = new_page(browser, page_errors, WIDE)
    page.goto(live.url + "/")
    page.get_by_role("link", name="Documents").click()
    expect(page).to_have_url(live.url + "/documents.html")
    rows = page.locator("tr.doc-row")
    expect(rows).to_have_count(3)
    expect(page.locator("#live-release")).to_have_text("r-000001")  # the release served

    good = page.locator("tr.doc-row", has_text=DOC_NAME)
    expect(good.locator(".badge")).to_have_text("Indexed")
    chunks = int(good.locator("td.num").text_content() or "0")
    assert chunks >= 1

    # The failure is listed first, with its reason as the server recorded it.
    failed = rows.first
    expect(failed.locator(".doc-name")).to_have_text(BROKEN_NAME)
    expect(failed.locator(".badge")).to_have_text("Failed")
    reason = live.ingest.failed[0]["error"]
    expect(failed.locator(".doc-error")).to_contain_text(reason[:60])
    expect(page.locator(".stat-failed dd")).to_have_text("1")

    # Markup in a file name is shown as text, never parsed.
    tricky = page.locator("tr.doc-row", has_text="tricky")
    expect(tricky.locator(".doc-name")).to_have_text(TRICKY_NAME)
    assert page.locator("#doc-rows i, #doc-rows img, #doc-rows b").count() == 0

    # The filter narrows the list.
    page.fill("#filter", "orchard")
    expect(rows).to_have_count(1)
    page.fill("#filter", "")
    page.select_option("#status-filter", "failed")
    expect(rows).to_have_count(1)
    page.select_option("#status-filter", "")
    save_shot(page, tmp_path, "documents.png")

    page.set_viewport_size(NARROW)  # type: ignore[arg-type]
    expect(rows).to_have_count(3)
    no_horizontal_overflow(page)
    save_shot(page, tmp_path, "documents-mobile.png")
    assert page_errors == []
