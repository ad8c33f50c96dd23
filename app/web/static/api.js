// The one way the page talks to the JSON API, and turns every failure (an error answer, a network failure)
// into an ApiError with a readable message. When the server asks for a key, the page sends it once to
// POST /session and gets an HttpOnly session cookie: every request, <img src> included, then carries the
// cookie and never the key (no key in a URL, a log line, the history, or readable by the page's scripts).

// Where earlier versions of the page kept the key: traded for a session once, then removed.
const KEY_STORAGE = "imgsim-api-key";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0 when the server could not be reached
  }
}

// Images are loaded by <img src>: the session cookie goes with them, so their addresses carry no key.
export const mediaUrl = (path) => path;

export const thumbnailUrl = (id) => mediaUrl(`/images/${id}/thumbnail`);
export const contentUrl = (id) => mediaUrl(`/images/${id}/content`);

// FastAPI's `detail` is a string, or a list of field errors for a request that fails validation.
export function describeDetail(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((e) => {
        const where = (e.loc || []).filter((part) => part !== "body" && part !== "query").join(".");
        return where ? `${where}: ${e.msg}` : e.msg;
      })
      .join("; ");
  }
  return JSON.stringify(detail);
}

export function queryString(params) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(name, value);
  }
  const text = query.toString();
  return text ? `?${text}` : "";
}

// `json`: a value sent as the JSON body (instead of `body`, e.g. a FormData).
export async function api(path, { method = "GET", params, body, json, signal } = {}) {
  await legacyKeyTraded;
  const headers = { Accept: "application/json" };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  let text;
  try {
    response = await fetch(path + queryString(params), { method, headers, body, signal, credentials: "same-origin" });
    text = await response.text();
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`Cannot reach the server (${err.message || "network error"}). Is it running?`, 0);
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401) askForKey();
    if (response.status === 403 && data && /write key/.test(String(data.detail))) askForKey("write");
    let message = `${response.status} ${response.statusText}`.trim();
    if (data && data.detail !== undefined) message = describeDetail(data.detail);
    else if (data && typeof data.message === "string") message = data.message;
    throw new ApiError(message, response.status);
  }
  return data;
}

// Trades `key` for a session cookie; resolves to the session ({keys_required, scope}), or throws an ApiError.
export async function startSession(key) {
  const response = await fetch("/session", {
    method: "POST",
    headers: { Accept: "application/json", "X-API-Key": key },
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(data && data.detail ? describeDetail(data.detail) : `${response.status}`, response.status);
  return data;
}

export async function endSession() {
  await fetch("/session", { method: "DELETE", credentials: "same-origin" });
}

async function tradeLegacyKey() {
  let key = "";
  try {
    key = localStorage.getItem(KEY_STORAGE) || "";
    localStorage.removeItem(KEY_STORAGE);
  } catch {
    return;
  }
  if (!key) return;
  try {
    await startSession(key);
    location.reload(); // the images already asked for went without the cookie
  } catch {
    // a key that no longer works: the first request will ask for another
  }
}
const legacyKeyTraded = tradeLegacyKey();

const PROMPTS = {
  read: "This server needs an API key:",
  write: "This key may only read. To change the library, use a write key:",
  change: "Use another API key:",
};

// Shown on a 401 (a key is needed), on a 403 for a read key ("write"), or by "Change key". A key the
// server refuses is said so in the prompt; one it takes starts a session and the page reloads with it.
export function askForKey(kind = "read") {
  const form = document.getElementById("api-key-prompt");
  if (!form) return;
  form.querySelector(".prompt-text").textContent = PROMPTS[kind] || PROMPTS.read;
  form.querySelector(".hint").textContent = "sent once; this browser then keeps a session cookie, not the key";
  if (!form.hidden) return;
  form.hidden = false;
  form.elements.key.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await startSession(form.elements.key.value.trim());
      location.reload();
    } catch (err) {
      form.querySelector(".hint").textContent = err.status === 401 ? "That key is not valid here." : err.message;
      form.elements.key.select();
    }
  });
}

// The header's "change key" and "forget key", shown when the server asks for keys.
async function showKeyControls() {
  const box = document.getElementById("key-controls");
  if (!box) return;
  let session;
  try {
    await legacyKeyTraded;
    const response = await fetch("/session", { headers: { Accept: "application/json" }, credentials: "same-origin" });
    session = await response.json();
  } catch {
    return;
  }
  if (!session || !session.keys_required) return;
  box.hidden = false;
  box.querySelector(".key-scope").textContent = session.scope ? `${session.scope} key` : "no key";
  box.querySelector(".change-key").addEventListener("click", () => askForKey("change"));
  box.querySelector(".forget-key").addEventListener("click", async () => {
    await endSession();
    location.reload();
  });
}
showKeyControls();
