// The viewer: a picture of a grid (search results, the library) opened full size in a <dialog>, with its name
// and facts from GET /images/{id}, "Find similar", "Download" and "Move to the trash" (Undo on the page's own
// status line). Left and right arrows step through the grid in page order, Esc closes. The address's hash holds
// the open image (#image=ID), so a reload or a shared link opens it again; closing removes it. The hash is
// replaced, never pushed: the page's own history entries (a search each) stay as they were.

import { api, contentUrl } from "./api.js";
import { el, formatBytes, setStatus, shortLabel, showError, showLibraryCount, showUndo } from "./ui.js";

const HASH = /^#image=(\d+)$/;

function hashId() {
  const match = HASH.exec(location.hash);
  return match ? Number(match[1]) : null;
}

function setHash(id) {
  const base = location.pathname + location.search;
  const url = id === null ? base : `${base}#image=${id}`;
  if (url !== base + location.hash) history.replaceState(history.state, "", url);
}

function buildDialog() {
  const dialog = el(
    "dialog",
    { id: "viewer", class: "viewer", "aria-labelledby": "viewer-name" },
    el(
      "div",
      { class: "viewer-stage" },
      el("img", { class: "viewer-image", alt: "" }),
      el("button", { type: "button", class: "secondary viewer-prev", "aria-label": "Previous image" }, "‹"),
      el("button", { type: "button", class: "secondary viewer-next", "aria-label": "Next image" }, "›"),
    ),
    el(
      "div",
      { class: "viewer-info" },
      el(
        "div",
        { class: "viewer-head" },
        el("h2", { id: "viewer-name", class: "viewer-name" }),
        el("button", { type: "button", class: "secondary viewer-close", "aria-label": "Close" }, "×"),
      ),
      el("p", { class: "viewer-position muted" }),
      el("dl", { class: "facts viewer-facts" }),
      el("ol", { class: "viewer-preds" }),
      el("div", { class: "status viewer-status", role: "status", "aria-live": "polite" }),
      el(
        "div",
        { class: "actions" },
        el("button", { type: "button", class: "viewer-similar" }, "Find similar"),
        el("a", { class: "button secondary viewer-download" }, "Download"),
        el("button", { type: "button", class: "danger viewer-trash" }, "Move to the trash"),
      ),
    ),
  );
  document.body.append(dialog);
  return dialog;
}

// Opens a grid's pictures in the viewer. `findSimilar(id)` runs a search by a stored image (what clicking a
// picture did before); `statusBox` is where "Moved … to the trash" and its Undo go; `changed()`, when given,
// runs after an image was moved to the trash or restored (a page with a count refreshes it).
export function attachViewer(grid, { findSimilar, statusBox, changed = () => {} }) {
  const dialog = buildDialog();
  // Looked up once: setStatus rewrites the status line's classes.
  const parts = {};
  for (const name of ["image", "prev", "next", "name", "close", "position", "facts", "preds", "status", "similar", "download", "trash"]) {
    parts[name] = dialog.querySelector(`.viewer-${name}`);
  }
  const part = (name) => parts[name];
  const image = part("image");
  let current = null; // the id shown
  let loading = 0; // bumped per image, so that a slow answer for an earlier one is dropped

  const cards = () => Array.from(grid.querySelectorAll(".card[data-id]"));
  const cardFor = (id) => cards().find((card) => Number(card.dataset.id) === id) || null;

  function step(delta) {
    const all = cards();
    const at = all.findIndex((card) => Number(card.dataset.id) === current);
    if (at < 0) return;
    const next = all[at + delta];
    if (next) show(Number(next.dataset.id));
  }

  function position() {
    const all = cards();
    const at = all.findIndex((card) => Number(card.dataset.id) === current);
    part("prev").disabled = at <= 0;
    part("next").disabled = at < 0 || at >= all.length - 1;
    part("position").textContent = at >= 0 && all.length > 1 ? `${at + 1} of ${all.length}` : "";
  }

  async function show(id) {
    current = id;
    const ticket = ++loading;
    const card = cardFor(id);
    const name = card ? card.querySelector(".name").textContent : `Image ${id}`;
    image.src = contentUrl(id);
    image.alt = name;
    part("name").textContent = name;
    part("facts").replaceChildren();
    part("preds").replaceChildren();
    part("download").href = contentUrl(id);
    part("download").setAttribute("download", name);
    part("trash").disabled = false;
    setStatus(part("status"), "Loading…");
    position();
    setHash(id);
    if (!dialog.open) dialog.showModal();
    let info;
    try {
      info = await api(`/images/${id}`);
    } catch (err) {
      if (ticket === loading) showError(part("status"), err);
      return;
    }
    if (ticket !== loading) return;
    setStatus(part("status"), "");
    image.alt = info.filename;
    part("name").replaceChildren(el("a", { href: `/library/${id}`, title: "Open its page" }, info.filename));
    part("download").setAttribute("download", info.filename);
    part("facts").replaceChildren(
      el("dt", {}, "Size"),
      el("dd", {}, formatBytes(info.byte_size)),
      el("dt", {}, "Dimensions"),
      el("dd", {}, `${info.width} × ${info.height} px`),
      el("dt", {}, "Format"),
      el("dd", {}, info.format),
    );
    part("preds").replaceChildren(
      ...info.predictions
        .slice(0, 3)
        .map((p) => el("li", {}, el("span", {}, shortLabel(p.label)), el("span", { class: "pct" }, `${Math.round(p.score * 100)}%`))),
    );
    if (info.trashed_at) {
      part("trash").disabled = true;
      setStatus(part("status"), "In the trash.", "error");
    }
  }

  async function moveToTrash() {
    const id = current;
    const name = image.alt;
    part("trash").disabled = true;
    setStatus(part("status"), "Moving to the trash…");
    try {
      await api(`/images/${id}`, { method: "DELETE" });
    } catch (err) {
      part("trash").disabled = false;
      showError(part("status"), err);
      return;
    }
    const card = cardFor(id);
    const parent = card && card.parentNode;
    const after = card && card.nextSibling;
    close();
    if (card) card.remove();
    showLibraryCount();
    changed();
    if (!statusBox) return;
    showUndo(
      statusBox,
      `Moved ${name} to the trash.`,
      async () => {
        await api(`/trash/${id}/restore`, { method: "POST" });
        if (card && parent) parent.insertBefore(card, after && after.parentNode === parent ? after : null);
        showLibraryCount();
        changed();
      },
      `Restored ${name}.`,
    );
  }

  part("prev").addEventListener("click", () => step(-1));
  part("next").addEventListener("click", () => step(1));
  part("close").addEventListener("click", () => close());
  part("trash").addEventListener("click", moveToTrash);
  part("similar").addEventListener("click", () => {
    const id = current;
    close();
    findSimilar(id);
  });
  // On the document, not the dialog: a ‹ or › button with focus is disabled at either end, and focus leaves it.
  document.addEventListener("keydown", (event) => {
    if (!dialog.open || event.altKey || event.ctrlKey || event.metaKey) return;
    if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      event.preventDefault();
      step(event.key === "ArrowRight" ? 1 : -1);
    }
  });
  // A click on the backdrop (outside the dialog's box) closes it too.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) close();
  });
  // The address changes as the viewer closes (the "close" event comes a task later).
  function close() {
    loading += 1;
    current = null;
    image.removeAttribute("src");
    setHash(null);
    if (dialog.open) dialog.close();
  }
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    close();
  });
  dialog.addEventListener("close", () => {
    if (current !== null) close();
  });

  // A click on a picture opens it here; a click with a modifier (a new tab, say) still follows the link.
  grid.addEventListener("click", (event) => {
    const link = event.target.closest("a.thumb");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    const card = link.closest(".card[data-id]");
    if (!card) return;
    event.preventDefault();
    show(Number(card.dataset.id));
  });

  function followHash() {
    const id = hashId();
    if (id !== null && id !== current) show(id);
    else if (id === null && dialog.open) close();
  }
  window.addEventListener("hashchange", followHash);
  window.addEventListener("popstate", followHash);
  followHash();
  // The grid fills after the viewer opened from the address: its place and arrows follow then.
  new MutationObserver(() => {
    if (dialog.open) position();
  }).observe(grid, { childList: true });
}
