// Shared helpers for the Enclave pages: the API key, requests, readable errors, DOM building.
//
// Everything the server returns (answers, file names, passages) is treated as untrusted text:
// it only ever reaches the page through textContent / text nodes, never through innerHTML.

const KEY_STORAGE = "enclave.apiKey";

/** The API key saved in this browser, or "" when none. */
export function getApiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return ""; // storage disabled (private mode, policies): work without a key
  }
}

export function setApiKey(value) {
  try {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage unavailable: the key lives only as long as the field */
  }
}

/** Request headers: JSON plus the bearer token when a key is set. */
export function apiHeaders(extra = {}) {
  const headers = { Accept: "application/json", ...extra };
  const key = getApiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

/** An error whose message is fit to show to the person using the page. */
export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/**
 * Turn a failed response into an ApiError with a readable message. The server's error body is
 * {"error": {"message", "type", "code"}}; 429 means the generation queue is full.
 */
export async function errorFromResponse(response) {
  let message = "";
  let body = null;
  try {
    const text = await response.text();
    try {
      body = JSON.parse(text);
    } catch {
      message = text.trim().slice(0, 300);
    }
  } catch {
    /* body unreadable: fall back to the status line */
  }
  if (body && typeof body === "object") {
    const err = body.error;
    if (err && typeof err === "object" && typeof err.message === "string") message = err.message;
    else if (typeof err === "string") message = err;
    else if (typeof body.detail === "string") message = body.detail;
  }
  if (message) message = message.charAt(0).toUpperCase() + message.slice(1);
  if (response.status === 429) {
    const retry = retryAfterSeconds(response, body);
    const wait = retry !== null ? `retry in ${retry} s` : "retry in a moment";
    return new ApiError(`The server is busy, ${wait}.`, 429);
  }
  if (response.status === 401 || response.status === 403) {
    const hint = getApiKey() ? "Check the API key." : "Set an API key (key button, top right).";
    return new ApiError(`${message || "Not authorised."} ${hint}`, response.status);
  }
  const status = `${response.status} ${response.statusText || ""}`.trim();
  return new ApiError(message ? `${message} (${status})` : `Request failed: ${status}`,
    response.status);
}

function retryAfterSeconds(response, body) {
  const header = response.headers.get("Retry-After");
  if (header && /^\d+$/.test(header.trim())) return Number(header.trim());
  const fromBody = body && body.error && body.error.retry_after;
  if (typeof fromBody === "number" && Number.isFinite(fromBody)) return Math.ceil(fromBody);
  return null;
}

/** A readable message for anything thrown while talking to the server. */
export function describeError(err) {
  if (err instanceof ApiError) return err.message;
  if (err && err.name === "AbortError") return "Stopped.";
  if (err instanceof TypeError) return "Cannot reach the Enclave server. Is it running?";
  return String((err && err.message) || err);
}

/** fetch() with the API key; resolves to the parsed JSON or throws ApiError. */
export async function apiJson(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: apiHeaders(options.headers || {}),
  });
  if (!response.ok) throw await errorFromResponse(response);
  return response.json();
}

/**
 * Build an element: el("a", {href: "x", class: "y"}, "text", child). Children that are
 * strings become text nodes, so server text can never become markup.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Last path component of a file path ("/a/b/report.pdf" -> "report.pdf"). */
export function baseName(path) {
  if (!path) return "";
  const parts = String(path).split(/[\\/]/).filter(Boolean);
  return parts.length ? parts[parts.length - 1] : String(path);
}

/** Wire up the API key form and the readiness dot shared by every page. */
export function initChrome() {
  const toggle = document.getElementById("key-toggle");
  const panel = document.getElementById("key-panel");
  const input = document.getElementById("api-key");
  const clear = document.getElementById("api-key-clear");
  if (toggle && panel && input) {
    const showKeyState = () => toggle.classList.toggle("has-key", Boolean(getApiKey()));
    showKeyState();
    toggle.addEventListener("click", () => {
      const open = panel.hidden;
      panel.hidden = !open;
      toggle.setAttribute("aria-expanded", String(open));
      if (open) {
        input.value = getApiKey();
        input.focus();
      }
    });
    panel.addEventListener("submit", (event) => {
      event.preventDefault();
      setApiKey(input.value.trim());
      showKeyState();
      panel.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
      toggle.focus();
      checkReady();
    });
    clear?.addEventListener("click", () => {
      input.value = "";
      setApiKey("");
      showKeyState();
      input.focus();
    });
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        panel.hidden = true;
        toggle.setAttribute("aria-expanded", "false");
        toggle.focus();
      }
    });
  }
  checkReady();
}

/** Show whether the server is ready (models loaded, index open) as a small coloured dot. */
export async function checkReady() {
  const dot = document.getElementById("ready-status");
  const text = document.getElementById("ready-text");
  if (!dot || !text) return;
  let state = "down";
  let label = "Server unreachable";
  try {
    const response = await fetch("readyz", { headers: apiHeaders() });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      state = "ready";
      const index = body.index || {};
      label = typeof index.documents === "number"
        ? `Server ready · ${index.documents} documents, ${index.chunks} chunks`
        : "Server ready";
    } else if (body.status === "failed") {
      label = `Server failed to start: ${(body.error && body.error.message) || "see its log"}`;
    } else {
      state = "waiting";
      label = "Server starting: loading the models and opening the index";
      setTimeout(checkReady, 3000); // look again until it is ready
    }
  } catch {
    /* keep "down" */
  }
  dot.dataset.state = state;
  dot.title = label;
  text.textContent = label;
}
