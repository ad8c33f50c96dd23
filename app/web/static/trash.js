// The trash: images moved out of the library, most recently trashed first, a page at a time. Each can be
// restored (back in the library under its id) or deleted for good; the whole trash can be emptied. Both
// deletions ask first, since they cannot be undone.
// Reads GET /trash?offset=&limit=; the query string (?offset=) holds the page.

import { api, thumbnailUrl } from "./api.js";
import {
  breakableName,
  confirmAction,
  el,
  errorText,
  formatCount,
  setStatus,
  showError,
  showLibraryCount,
  showUndo,
  timeAgo,
} from "./ui.js";

const PAGE_SIZE = 48;

const statusBox = document.getElementById("status");
const summary = document.getElementById("summary");
const results = document.getElementById("results");
const pager = document.getElementById("pager");
const emptyButton = document.getElementById("empty-trash");
const retention = document.getElementById("retention");

const params = new URLSearchParams(location.search);
const offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
let total = 0;

const plural = (n, word) => `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;

function pageHref(newOffset) {
  return newOffset ? `/library/trash?offset=${newOffset}` : "/library/trash";
}

function card(image) {
  const names = image.names.length ? image.names.join(", ") : image.filename;
  const restoreButton = el("button", { type: "button", class: "secondary" }, "Restore");
  const purgeButton = el("button", { type: "button", class: "danger" }, "Delete for good…");
  const figure = el(
    "figure",
    { class: "card trash-card", dataset: { id: image.id } },
    el(
      "a",
      { class: "thumb", href: `/library/${image.id}`, title: `Open ${image.filename}` },
      el("img", { src: thumbnailUrl(image.id), alt: image.filename, loading: "lazy", decoding: "async" }),
    ),
    el(
      "figcaption",
      {},
      el("a", { class: "name", href: `/library/${image.id}`, title: names }, breakableName(names)),
      el(
        "span",
        { class: "muted when", title: new Date(image.trashed_at).toLocaleString() },
        `trashed ${timeAgo(image.trashed_at)}`,
      ),
      el("span", { class: "card-actions" }, restoreButton, purgeButton),
    ),
  );
  restoreButton.addEventListener("click", async () => {
    restoreButton.disabled = purgeButton.disabled = true;
    try {
      await api(`/trash/${image.id}/restore`, { method: "POST" });
    } catch (err) {
      showError(statusBox, err);
      restoreButton.disabled = purgeButton.disabled = false;
      return;
    }
    figure.remove();
    setCount(total - 1);
    showUndo(
      statusBox,
      `Restored ${image.filename} to the library.`,
      async () => {
        await api(`/images/${image.id}`, { method: "DELETE" });
        load({ keepStatus: true });
        showLibraryCount();
      },
      `Moved ${image.filename} back to the trash.`,
    );
    showLibraryCount();
  });
  purgeButton.addEventListener("click", async () => {
    const ok = await confirmAction(
      `Delete ${image.filename} for good? Its kept copy is removed too; this cannot be undone.`,
      "Delete for good",
    );
    if (!ok) return;
    restoreButton.disabled = purgeButton.disabled = true;
    try {
      await api(`/trash/${image.id}`, { method: "DELETE" });
    } catch (err) {
      showError(statusBox, err);
      restoreButton.disabled = purgeButton.disabled = false;
      return;
    }
    figure.remove();
    setCount(total - 1);
    setStatus(statusBox, `Deleted ${image.filename} for good.`, "ok");
  });
  return figure;
}

function setCount(count) {
  total = Math.max(0, count);
  summary.textContent = total ? `${plural(total, "image")} in the trash` : "";
  emptyButton.hidden = total === 0;
  if (!total && !results.querySelector(".card")) {
    results.replaceChildren(el("p", { class: "empty" }, "The trash is empty."));
  }
}

emptyButton.addEventListener("click", async () => {
  const ok = await confirmAction(
    `Empty the trash? ${plural(total, "image")} will be deleted for good, with their kept copies; this cannot be undone.`,
    "Empty the trash",
  );
  if (!ok) return;
  emptyButton.disabled = true;
  setStatus(statusBox, "Emptying the trash…");
  try {
    const answer = await api("/trash", { method: "DELETE" });
    setStatus(statusBox, `Deleted ${plural(answer.purged, "image")} for good.`, "ok");
    results.replaceChildren();
    setCount(0);
    pager.replaceChildren();
  } catch (err) {
    setStatus(statusBox, errorText(err), "error");
  } finally {
    emptyButton.disabled = false;
  }
});

async function load({ keepStatus = false } = {}) {
  if (!keepStatus) setStatus(statusBox, "Loading…");
  try {
    const answer = await api("/trash", { params: { offset, limit: PAGE_SIZE } });
    if (!keepStatus) setStatus(statusBox, "");
    results.replaceChildren(...answer.items.map(card));
    if (!answer.items.length && answer.total) results.replaceChildren(el("p", { class: "empty" }, "No images on this page."));
    setCount(answer.total);
    const prev = offset > 0;
    const next = offset + PAGE_SIZE < answer.total;
    pager.replaceChildren(
      prev ? el("a", { class: "button secondary", href: pageHref(Math.max(0, offset - PAGE_SIZE)), rel: "prev" }, "‹ Previous") : "",
      next ? el("a", { class: "button secondary", href: pageHref(offset + PAGE_SIZE), rel: "next" }, "Next ›") : "",
    );
  } catch (err) {
    showError(statusBox, err);
  }
}

async function showRetention() {
  const stats = await showLibraryCount();
  if (!stats || stats.trash_retention_days === undefined) return;
  retention.textContent = stats.trash_retention_days
    ? `Images here are deleted for good ${plural(stats.trash_retention_days, "day")} after they were moved to the trash.`
    : "Images stay here until you restore them, delete them for good or empty the trash.";
}

load();
showRetention();
