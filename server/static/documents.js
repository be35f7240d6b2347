// The documents page: GET /v1/documents as a filterable table with status, chunk counts and,
// for files that failed or were quarantined for their parse quality, the reason (and the
// quality score), and the live release they belong to. Read-only: removing
// a document is `enclave ingest --prune`, `enclave purge` or DELETE /v1/documents/{id}.

import { apiJson, baseName, describeError, el, initChrome } from "./common.js";

const dom = {
  rows: document.getElementById("doc-rows"),
  table: document.getElementById("doc-table"),
  stats: document.getElementById("stats"),
  message: document.getElementById("doc-message"),
  filter: document.getElementById("filter"),
  status: document.getElementById("status-filter"),
  refresh: document.getElementById("refresh"),
};

const STATUS_LABEL = {
  ok: "Indexed",
  failed: "Failed",
  empty: "Empty",
  quarantined: "Quarantined",
};

let documents = [];
/** The release the listed documents belong to (the live one when the list was read). */
let release = null;

/** Accept the list however the server wraps it: [...], {data: [...]} or {documents: [...]}. */
function listFrom(body) {
  if (Array.isArray(body)) return body;
  if (body && Array.isArray(body.data)) return body.data;
  if (body && Array.isArray(body.documents)) return body.documents;
  return [];
}

/** Every document, page by page (the API returns at most 1000 per request). */
async function fetchAll() {
  const all = [];
  const limit = 1000;
  for (let offset = 0; ; offset += limit) {
    const body = await apiJson(`v1/documents?limit=${limit}&offset=${offset}`);
    if (offset === 0) release = body && body.release ? String(body.release) : null;
    const page = listFrom(body);
    all.push(...page);
    if (!body || !body.has_more || page.length === 0) return all;
  }
}

function formatDate(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function formatSize(bytes) {
  if (typeof bytes !== "number" || !Number.isFinite(bytes) || bytes <= 0) return "";
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function renderStats() {
  const count = (s) => documents.filter((d) => (d.status || "ok") === s).length;
  const chunks = documents.reduce((sum, d) => sum + (Number(d.chunk_count) || 0), 0);
  const items = [
    ["Documents", documents.length, ""],
    ["Indexed", count("ok"), "ok"],
    ["Failed", count("failed"), count("failed") ? "failed" : ""],
    ["Quarantined", count("quarantined"), count("quarantined") ? "quarantined" : ""],
    ["Chunks", chunks, ""],
    ["Live release", release || "none", "release"],
  ];
  dom.stats.replaceChildren(
    ...items.map(([label, value, tone]) =>
      el(
        "div",
        { class: tone ? `stat stat-${tone}` : "stat" },
        el("dt", {}, label),
        el("dd", tone === "release" ? { id: "live-release" } : {}, value.toLocaleString()),
      ),
    ),
  );
}

/** The parse-quality score, with the way out for a quarantined document. */
function qualityLine(doc) {
  const score = doc.quality && typeof doc.quality.score === "number" ? doc.quality.score : null;
  if (doc.status !== "quarantined" && (score === null || score >= 0.8)) return null;
  const parts = [];
  if (score !== null) parts.push(`Quality score ${score.toFixed(2)}`);
  if (doc.status === "quarantined") {
    parts.push("kept out of answers; an administrator can run `enclave quarantine release` or `retry`");
  } else if (doc.quality && doc.quality.admitted) {
    parts.push("admitted despite its score");
  }
  return el("span", { class: "doc-quality" }, parts.join(" · "));
}

function renderRow(doc) {
  const status = doc.status || "ok";
  const id = doc.id || doc.doc_id || "";
  const name = baseName(doc.path) || id;
  const title = doc.title && doc.title !== name ? doc.title : "";
  const details = [doc.parser, formatSize(doc.size)].filter(Boolean).join(" · ");
  const docCell = el(
    "td",
    { class: "doc-cell" },
    el("span", { class: "doc-name" }, name),
    title ? el("span", { class: "doc-title" }, title) : null,
    el("span", { class: "doc-path", title: doc.path || "" }, doc.path || ""),
    details ? el("span", { class: "doc-details" }, details) : null,
    doc.error
      ? el("span", { class: "doc-error" }, el("strong", {}, "Reason: "), String(doc.error))
      : null,
    qualityLine(doc),
  );
  return el(
    "tr",
    { class: `doc-row status-${status}`, dataset: { docId: id } },
    docCell,
    el(
      "td",
      { "data-label": "Status" },
      el("span", { class: `badge badge-${status}` }, STATUS_LABEL[status] || status),
    ),
    el("td", { class: "num", "data-label": "Chunks" }, String(doc.chunk_count ?? 0)),
    el("td", { "data-label": "Ingested" }, formatDate(doc.ingested_at)),
  );
}

function renderRows() {
  const needle = dom.filter.value.trim().toLowerCase();
  const wanted = dom.status.value;
  const shown = documents.filter((d) => {
    if (wanted && (d.status || "ok") !== wanted) return false;
    if (!needle) return true;
    return [d.path, d.title, d.error].some((v) => v && String(v).toLowerCase().includes(needle));
  });
  dom.rows.replaceChildren(...shown.map(renderRow));
  dom.table.hidden = shown.length === 0;
  if (!documents.length) {
    dom.message.textContent =
      "No documents yet. Index a folder with: enclave ingest PATH (then refresh this page).";
  } else if (!shown.length) {
    dom.message.textContent = "No document matches the filter.";
  } else {
    dom.message.textContent =
      shown.length === documents.length
        ? `${documents.length} document${documents.length === 1 ? "" : "s"}.`
        : `${shown.length} of ${documents.length} documents shown.`;
  }
}

async function load() {
  dom.message.classList.remove("error");
  dom.message.textContent = "Loading…";
  dom.refresh.disabled = true;
  try {
    documents = await fetchAll();
    // Failures first (they need attention), then by file name.
    documents.sort((a, b) => {
      const fa = a.status === "failed" ? 0 : 1;
      const fb = b.status === "failed" ? 0 : 1;
      return fa - fb || baseName(a.path).localeCompare(baseName(b.path));
    });
    renderStats();
    renderRows();
  } catch (err) {
    dom.table.hidden = true;
    dom.message.classList.add("error");
    dom.message.textContent = describeError(err);
  } finally {
    dom.refresh.disabled = false;
  }
}

dom.filter.addEventListener("input", renderRows);
dom.status.addEventListener("change", renderRows);
dom.refresh.addEventListener("click", load);

initChrome();
load();
