// Small DOM helpers shared by the views: element building (text only, never HTML strings),
// messages, image cards, the confirmation dialog.

import { api, ApiError, thumbnailUrl } from "./api.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    // Through the CSSOM: the page's Content-Security-Policy refuses style attributes written as text.
    else if (name === "style") node.style.cssText = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// A status line: "busy" (with a spinner), "error", "ok", or cleared with an empty text.
export function setStatus(box, text, kind = "busy") {
  box.replaceChildren();
  box.className = "status";
  if (!text) return;
  box.classList.add(kind);
  if (kind === "error") box.setAttribute("role", "alert");
  else box.setAttribute("role", "status");
  if (kind === "busy") box.append(el("span", { class: "spinner", "aria-hidden": "true" }));
  box.append(text);
}

export function errorText(err) {
  if (err instanceof ApiError) return err.status ? `${err.message} (HTTP ${err.status})` : err.message;
  return `Something went wrong: ${err && err.message ? err.message : err}`;
}

export function showError(box, err) {
  setStatus(box, errorText(err), "error");
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export const formatCount = (n) => n.toLocaleString("en-US");

// "tabby, tabby cat" -> "tabby": the first synonym reads best in a small card.
export const shortLabel = (label) => label.split(",")[0].trim();

export function predictionText(predictions, n = 2) {
  return (predictions || [])
    .slice(0, n)
    .map((p) => `${shortLabel(p.label)} ${Math.round(p.score * 100)}%`)
    .join(" · ");
}

export function scoreText(metric, score) {
  return metric === "euclidean" ? `distance ${score.toFixed(4)}` : `similarity ${score.toFixed(4)}`;
}

// A thumbnail card. `href` is where the picture leads (a search by this image); `detailHref` the name's link.
export function imageCard({ id, filename, predictions, href, detailHref, badge, extra }) {
  return el(
    "figure",
    { class: "card", dataset: { id } },
    el(
      "a",
      { class: "thumb", href, title: `Find images similar to ${filename}` },
      el("img", { src: thumbnailUrl(id), alt: filename, loading: "lazy", decoding: "async" }),
    ),
    el(
      "figcaption",
      {},
      badge ? el("span", { class: "badge" }, badge) : null,
      el("a", { class: "name", href: detailHref, title: filename }, filename),
      el("span", { class: "preds" }, predictionText(predictions)),
      extra || null,
    ),
  );
}

export function searchHref(id, params = {}) {
  const query = new URLSearchParams({ ref: String(id) });
  for (const name of ["k", "metric", "label"]) if (params[name]) query.set(name, params[name]);
  return `/?${query}`;
}

// Resolves true when the person confirms. Uses the page's <dialog>; falls back to window.confirm.
// `items`, when given, are listed under the text (every file an action touches, say).
export function confirmAction(text, okLabel = "Delete", items = []) {
  const dialog = document.getElementById("confirm-dialog");
  if (!dialog || typeof dialog.showModal !== "function") {
    return Promise.resolve(window.confirm([text, ...items].join("\n")));
  }
  dialog.querySelector(".confirm-text").textContent = text;
  dialog.querySelector(".confirm-ok").textContent = okLabel;
  const list = dialog.querySelector(".confirm-list");
  list.replaceChildren(...items.map((item) => el("li", {}, item)));
  list.hidden = items.length === 0;
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

// The header's "N images": best effort, the page works without it.
export async function showLibraryCount() {
  const box = document.getElementById("library-count");
  if (!box) return null;
  try {
    const stats = await api("/stats");
    box.textContent = `${formatCount(stats.count)} image${stats.count === 1 ? "" : "s"} · ${stats.model}`;
    return stats;
  } catch {
    return null;
  }
}

// An "ok" line that says what was done, with an Undo button right after it. `undo` runs the reverse
// (restoring from the trash, say); its own outcome replaces the line. The box keeps its own classes.
export function showUndo(box, text, undo, undoneText = "Undone.") {
  box.replaceChildren();
  box.classList.remove("busy", "error");
  box.classList.add("ok");
  box.setAttribute("role", "status");
  const button = el("button", { type: "button", class: "undo" }, "Undo");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await undo();
      box.replaceChildren(undoneText);
    } catch (err) {
      box.classList.replace("ok", "error");
      box.replaceChildren(errorText(err));
    }
  });
  box.append(`${text} `, button);
  return button;
}

// A file name that may break after "_", "-", "." and spaces (long camera names wrap there, not mid-word);
// the <wbr> breaks are not characters, so a copied name is unchanged.
export function breakableName(name) {
  const parts = String(name).split(/(?<=[_\-.\s])/);
  return parts.flatMap((part, n) => (n ? [el("wbr"), part] : [part]));
}

// "3 days ago" style, for when something happened; falls back to the date past a few weeks.
export function timeAgo(iso, now = Date.now()) {
  const seconds = Math.max(0, (now - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} minute${minutes === 1 ? "" : "s"} ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} hour${hours === 1 ? "" : "s"} ago`;
  const days = Math.round(hours / 24);
  if (days < 30) return `${days} day${days === 1 ? "" : "s"} ago`;
  return new Date(iso).toLocaleDateString();
}
