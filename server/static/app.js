// The chat page: ask, stream the answer over SSE, turn [n] markers into citation chips that open
// the cited passage, and keep the conversation in sessionStorage so a reload keeps it.

import {
  apiHeaders,
  baseName,
  describeError,
  el,
  errorFromResponse,
  initChrome,
  ApiError,
} from "./common.js";

const HISTORY_STORAGE = "enclave.chat.v1";
// Markers the model writes, as the server recognises them: [1], [1, 3], [1; 3], [Source 2].
const MARKER = /\[\s*(?:sources?\s*)?(\d{1,6}(?:\s*[,;]\s*(?:sources?\s*)?\d{1,6})*)\s*\]/gi;

const dom = {
  form: document.getElementById("composer"),
  question: document.getElementById("question"),
  send: document.getElementById("send"),
  stop: document.getElementById("stop"),
  messages: document.getElementById("messages"),
  empty: document.getElementById("empty-state"),
  newChat: document.getElementById("new-chat"),
  panel: document.getElementById("source-panel"),
  panelClose: document.getElementById("source-close"),
  panelKicker: document.getElementById("source-kicker"),
  panelTitle: document.getElementById("source-title"),
  panelPath: document.getElementById("source-path"),
  panelMeta: document.getElementById("source-meta"),
  panelText: document.getElementById("source-text"),
};

/**
 * The conversation: [{role: "user"|"assistant", content, citations?, error?, stopped?}].
 * Only role and content go back to the server; the rest is for display.
 */
let turns = loadTurns();
let inFlight = null; // AbortController of the running request
let panelOpener = null; // the chip that opened the source panel, to give focus back

// ---------------------------------------------------------------- storage

function loadTurns() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(HISTORY_STORAGE) || "[]");
    return Array.isArray(saved) ? saved.filter(isTurn) : [];
  } catch {
    return [];
  }
}

function isTurn(t) {
  return t && (t.role === "user" || t.role === "assistant") && typeof t.content === "string";
}

function saveTurns() {
  try {
    sessionStorage.setItem(HISTORY_STORAGE, JSON.stringify(turns));
  } catch {
    /* storage full or disabled: the conversation still lives on the page */
  }
}

// ---------------------------------------------------------------- rendering

/** Append `text` to `parent`, with citation markers turned into chips. */
function renderAnswerText(parent, text, citations, pending) {
  const byIndex = new Map((citations || []).map((c) => [Number(c.index), c]));
  let last = 0;
  for (const match of text.matchAll(MARKER)) {
    parent.append(document.createTextNode(text.slice(last, match.index)));
    const numbers = (match[1].match(/\d+/g) || []).map(Number);
    for (const n of numbers) parent.append(citationChip(n, byIndex.get(n), pending));
    last = match.index + match[0].length;
  }
  parent.append(document.createTextNode(text.slice(last)));
}

/**
 * A chip for source n. While the answer streams the citations are not known yet, so the chip
 * is inert; afterwards a marker with no matching citation (the server dropped it because the
 * source does not support it) stays as muted text.
 */
function citationChip(n, citation, pending) {
  if (citation) {
    const label = describeSource(citation);
    return el(
      "button",
      {
        type: "button",
        class: "cite",
        "aria-label": `Source ${n}: ${label}`,
        title: label,
        dataset: { index: String(n) },
        onclick: (event) => openSource(citation, event.currentTarget),
      },
      String(n),
    );
  }
  return el(
    "span",
    { class: pending ? "cite cite-pending" : "cite cite-missing", "aria-hidden": "true" },
    String(n),
  );
}

/**
 * An extractive answer: each quote as the document's own words, under the term it belongs to
 * (a setting, an option, a table header), with the chip of the source it comes from and that
 * source's name, so where each fact comes from shows at a glance.
 */
function renderQuotes(parent, quotes, citations) {
  const byIndex = new Map((citations || []).map((c) => [Number(c.index), c]));
  const list = el("ul", { class: "quotes", "aria-label": "Quoted from the documents" });
  for (const q of quotes) {
    const n = Number(q.index);
    const citation = byIndex.get(n);
    list.append(
      el(
        "li",
        { class: "quote" },
        q.context ? el("span", { class: "quote-context" }, q.context) : null,
        el("blockquote", { class: "quote-text" }, q.text),
        el(
          "span",
          { class: "quote-source" },
          citationChip(n, citation, false),
          citation ? el("span", { class: "quote-file" }, describeSource(citation)) : null,
        ),
      ),
    );
  }
  parent.append(list);
}

/** "Title (file.md)", or just the file name when the title adds nothing. */
function describeSource(citation) {
  const file = baseName(citation.source);
  const title = citation.title || "";
  return title && title !== file ? `${title} (${file})` : file || title;
}

const SOURCE_LISTS = {
  cited: { class: "sources", label: "Sources" },
  attributed: { class: "sources sources-attributed", label: "Sources matched to the answer" },
  uncited: { class: "sources sources-uncited", label: "Retrieved sources, not cited" },
};

/** A list of sources under an answer: cited, matched by Enclave, or only retrieved. */
function renderSources(citations, kind = "cited") {
  if (!citations || !citations.length) return null;
  const list = el("ul", {
    class: SOURCE_LISTS[kind].class,
    "aria-label": SOURCE_LISTS[kind].label,
  });
  for (const c of citations) {
    const name = c.title || baseName(c.source);
    const where = [];
    if (c.page !== null && c.page !== undefined) where.push(`p. ${c.page}`);
    if (Array.isArray(c.heading_path) && c.heading_path.length) {
      const section = c.heading_path[c.heading_path.length - 1];
      if (section && section !== name) where.push(section);
    }
    list.append(
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            class: "source-chip",
            onclick: (event) => openSource(c, event.currentTarget),
          },
          el("span", { class: "source-chip-n" }, String(c.index)),
          el("span", { class: "source-chip-name" }, name),
          where.length ? el("span", { class: "source-chip-where" }, where.join(" · ")) : null,
        ),
      ),
    );
  }
  return list;
}

function renderTurn(turn, pending = false) {
  if (turn.role === "user") {
    return el(
      "li",
      { class: "msg msg-user" },
      el("p", { class: "visually-hidden" }, "You asked:"),
      el("div", { class: "bubble" }, turn.content),
    );
  }
  const body = el("div", { class: "answer" });
  const quoted = !pending && Array.isArray(turn.quotes) && turn.quotes.length > 0;
  if (quoted) renderQuotes(body, turn.quotes, turn.citations);
  else renderAnswerText(body, turn.content, turn.citations, pending);
  if (pending && !turn.content) body.append(el("span", { class: "typing" }, "Thinking"));
  const item = el(
    "li",
    { class: "msg msg-assistant" },
    el("p", { class: "visually-hidden" }, "Enclave answered:"),
    body,
  );
  if (!pending) {
    const cited = renderSources(turn.citations);
    if (cited) item.append(cited);
    else if (turn.sources && turn.sources.length) {
      // Nothing cited: show the sources Enclave matched to the answer's sentences, then
      // the rest of what the answer was based on.
      const matched = turn.sources.filter((s) => s.attributed);
      const rest = turn.sources.filter((s) => !s.attributed);
      if (matched.length) {
        item.append(
          el("p", { class: "sources-label" }, "Supported by (matched by Enclave, not cited)"),
        );
        item.append(renderSources(matched, "attributed"));
      }
      if (rest.length) {
        item.append(el("p", { class: "sources-label" }, "Retrieved sources (not cited)"));
        item.append(renderSources(rest, "uncited"));
      }
    }
  }
  if (turn.stopped) item.append(el("p", { class: "note" }, "Stopped before the end."));
  if (turn.note) item.append(el("p", { class: "note" }, turn.note));
  if (turn.error) item.append(el("p", { class: "error", role: "alert" }, turn.error));
  return item;
}

function renderAll() {
  dom.messages.replaceChildren(...turns.map((t) => renderTurn(t)));
  dom.empty.hidden = turns.length > 0;
}

function scrollToEnd(force = false) {
  // Follow the stream only when the reader is already near the bottom.
  const nearBottom =
    window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 160;
  if (force || nearBottom) window.scrollTo({ top: document.documentElement.scrollHeight });
}

// ---------------------------------------------------------------- the source panel

function openSource(citation, opener) {
  if (panelOpener) panelOpener.classList.remove("is-open");
  panelOpener = opener || null;
  if (panelOpener) panelOpener.classList.add("is-open");
  const name = citation.title || baseName(citation.source);
  dom.panelKicker.textContent = `Source ${citation.index}`;
  dom.panelTitle.textContent = name;
  dom.panelPath.textContent = citation.source || "";
  const meta = [];
  meta.push(["File", baseName(citation.source) || "unknown"]);
  if (citation.page !== null && citation.page !== undefined) meta.push(["Page", citation.page]);
  if (Array.isArray(citation.heading_path) && citation.heading_path.length) {
    meta.push(["Section", citation.heading_path.join(" › ")]);
  }
  if (typeof citation.similarity === "number") {
    meta.push(["Similarity", citation.similarity.toFixed(2)]);
  }
  if (typeof citation.score === "number") meta.push(["Rank score", citation.score.toFixed(3)]);
  dom.panelMeta.replaceChildren(
    ...meta.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]),
  );
  dom.panelText.textContent = citation.snippet || citation.text || "(no passage text)";
  dom.panel.hidden = false;
  document.body.classList.add("panel-open");
  dom.panel.focus();
}

function closeSource() {
  if (dom.panel.hidden) return;
  dom.panel.hidden = true;
  document.body.classList.remove("panel-open");
  if (panelOpener) {
    panelOpener.classList.remove("is-open");
    if (panelOpener.isConnected) panelOpener.focus();
  }
  panelOpener = null;
}

// ---------------------------------------------------------------- streaming

/**
 * Read an SSE body and call onEvent(obj) for every `data:` JSON payload until `[DONE]`.
 * Events are separated by a blank line; one event may carry several `data:` lines.
 */
async function readEventStream(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let boundary;
    while ((boundary = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const raw = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary).replace(/^\r?\n\r?\n/, "");
      const data = raw
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue; // comments (": keep-alive") and other fields
      if (data === "[DONE]") return;
      let payload;
      try {
        payload = JSON.parse(data);
      } catch {
        continue; // not JSON: ignore rather than break the answer
      }
      onEvent(payload);
    }
  }
}

function historyForServer() {
  // Failed or empty turns are display-only; the server sees the real exchange.
  return turns
    .filter((t) => t.content && !t.error)
    .map((t) => ({ role: t.role, content: t.content }));
}

async function ask(question) {
  const userTurn = { role: "user", content: question };
  turns.push(userTurn);
  const messages = historyForServer();
  const answer = { role: "assistant", content: "", citations: [] };
  turns.push(answer);
  saveTurns();

  dom.empty.hidden = true;
  dom.messages.append(renderTurn(userTurn));
  let node = renderTurn(answer, true);
  dom.messages.append(node);
  dom.messages.setAttribute("aria-busy", "true");
  setBusy(true);
  scrollToEnd(true);

  // Repaint at most once per frame however fast tokens arrive.
  let scheduled = false;
  const repaint = (pending) => {
    const fresh = renderTurn(answer, pending);
    node.replaceWith(fresh);
    node = fresh;
    scrollToEnd();
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      if (inFlight) repaint(true);
    });
  };

  const controller = new AbortController();
  inFlight = controller;
  try {
    const response = await fetch("v1/chat/completions", {
      method: "POST",
      headers: apiHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ messages, stream: true }),
      signal: controller.signal,
    });
    if (!response.ok) throw await errorFromResponse(response);
    if (!response.body) throw new ApiError("The server sent no answer body.");
    await readEventStream(response.body, (event) => {
      if (event.error) {
        const e = event.error;
        throw new ApiError(typeof e === "string" ? e : e.message || "The answer failed.");
      }
      const choice = Array.isArray(event.choices) ? event.choices[0] : null;
      const delta = choice && choice.delta && choice.delta.content;
      if (typeof delta === "string" && delta) {
        answer.content += delta;
        schedule();
      }
      // The final chunk: verified citations, every retrieved source, and the answer text
      // with markers that point to no source removed (it replaces the streamed text).
      if (Array.isArray(event.citations)) answer.citations = event.citations;
      if (Array.isArray(event.sources)) answer.sources = event.sources;
      if (event.enclave && typeof event.enclave.content === "string") {
        answer.content = event.enclave.content;
      }
      // An extractive answer (or a generated one that fell back to it): its quotes, shown
      // as the documents' own words with their sources.
      if (event.enclave && Array.isArray(event.enclave.quotes)) {
        answer.quotes = event.enclave.quotes;
      }
      const finish = choice && choice.finish_reason;
      if (finish === "cancelled") answer.stopped = true;
      else if (finish === "length") answer.note = "The answer reached the length limit.";
      else if (finish === "timeout") answer.note = "Cut short: the server's time limit ran out.";
    });
    if (!answer.content && !answer.error) answer.content = "(The model returned no text.)";
  } catch (err) {
    if (err && err.name === "AbortError") answer.stopped = true;
    else answer.error = describeError(err);
  } finally {
    controller.abort(); // closes the connection if we stopped reading early (error, stop)
    inFlight = null;
    saveTurns();
    repaint(false);
    dom.messages.setAttribute("aria-busy", "false");
    setBusy(false);
  }
}

function setBusy(busy) {
  dom.send.hidden = busy;
  dom.stop.hidden = !busy;
  dom.question.setAttribute("aria-busy", String(busy));
  if (!busy) dom.question.focus();
}

// ---------------------------------------------------------------- events

function autosize() {
  dom.question.style.height = "auto";
  dom.question.style.height = `${Math.min(dom.question.scrollHeight, 200)}px`;
}

dom.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = dom.question.value.trim();
  if (!question || inFlight) return;
  dom.question.value = "";
  autosize();
  ask(question);
});

dom.question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    dom.form.requestSubmit();
  }
});
dom.question.addEventListener("input", autosize);

dom.stop.addEventListener("click", () => inFlight && inFlight.abort());

dom.newChat.addEventListener("click", () => {
  if (inFlight) inFlight.abort();
  turns = [];
  saveTurns();
  closeSource();
  renderAll();
  dom.question.value = "";
  autosize();
  dom.question.focus();
});

for (const button of document.querySelectorAll(".suggestion")) {
  button.addEventListener("click", () => {
    if (inFlight) return;
    ask(button.textContent.trim());
  });
}

dom.panelClose.addEventListener("click", closeSource);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") closeSource();
});

initChrome();
renderAll();
if (turns.length) window.scrollTo({ top: document.documentElement.scrollHeight });
