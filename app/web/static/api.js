// The one way the page talks to the JSON API. It sends the API key when one is kept in this browser,
// and turns every failure (an error answer, a network failure) into an ApiError with a readable message.

const KEY_STORAGE = "imgsim-api-key";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.name = "ApiError";
    this.status = status; // 0 when the server could not be reached
  }
}

export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

// Images are loaded by <img src>, which cannot send headers: the key goes in the query string instead.
export function mediaUrl(path) {
  const key = apiKey();
  if (!key) return path;
  return `${path}${path.includes("?") ? "&" : "?"}api_key=${encodeURIComponent(key)}`;
}

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
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  let text;
  try {
    response = await fetch(path + queryString(params), { method, headers, body, signal });
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
    let message = `${response.status} ${response.statusText}`.trim();
    if (data && data.detail !== undefined) message = describeDetail(data.detail);
    else if (data && typeof data.message === "string") message = data.message;
    throw new ApiError(message, response.status);
  }
  return data;
}

// Shown on a 401: the key is kept in localStorage and the page reloads with it.
export function askForKey() {
  const form = document.getElementById("api-key-prompt");
  if (!form || !form.hidden) return;
  form.hidden = false;
  form.elements.key.focus();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      localStorage.setItem(KEY_STORAGE, form.elements.key.value.trim());
    } catch {
      // storage refused (private mode): nothing more this page can do
    }
    location.reload();
  });
}
