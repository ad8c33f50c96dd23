// Library: every stored image, a page at a time, filtered by label and by part of a name, in the order chosen.
// The query string (?offset=&limit=&label=&name=&sort=) holds the page, so links and reloads keep it.
// "Select" turns the cards into checkboxes (shift-click selects a range) and moves the selection to the trash
// after one confirmation, with Undo.

import { api } from "./api.js";
import { suggestLabels } from "./labels.js";
import {
  confirmAction,
  el,
  errorText,
  formatCount,
  imageCard,
  searchHref,
  setStatus,
  showError,
  showLibraryCount,
  showUndo,
} from "./ui.js";
import { attachViewer } from "./viewer.js";

const DEFAULT_PAGE_SIZE = 48;
const DEFAULT_SORT = "added";

const form = document.getElementById("filter-form");
suggestLabels(form.elements.label);
const statusBox = document.getElementById("status");
const summary = document.getElementById("summary");
const results = document.getElementById("results");
const pager = document.getElementById("pager");

const params = new URLSearchParams(location.search);
const label = (params.get("label") || "").trim();
const name = (params.get("name") || "").trim();
const sort = (params.get("sort") || "").trim() || DEFAULT_SORT;
const offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
const requested = Number.parseInt(params.get("limit") || "", 10);
const PAGE_SIZE = Number.isFinite(requested) ? Math.min(200, Math.max(1, requested)) : DEFAULT_PAGE_SIZE;
form.elements.label.value = label;
form.elements.name.value = name;
form.elements.sort.value = sort; // an order the list lacks shows none; the API's answer says why
// Filtering or sorting again keeps a page size of one's own (?limit=).
if (PAGE_SIZE !== DEFAULT_PAGE_SIZE) form.append(el("input", { type: "hidden", name: "limit", value: String(PAGE_SIZE) }));
// A new order shows the first page in it at once.
form.elements.sort.addEventListener("change", () => form.requestSubmit());

const plural = (n) => `${formatCount(n)} image${n === 1 ? "" : "s"}`;

function pageHref(newOffset) {
  const query = new URLSearchParams();
  if (label) query.set("label", label);
  if (name) query.set("name", name);
  if (sort !== DEFAULT_SORT) query.set("sort", sort);
  if (newOffset) query.set("offset", String(newOffset));
  if (PAGE_SIZE !== DEFAULT_PAGE_SIZE) query.set("limit", String(PAGE_SIZE));
  const text = query.toString();
  return text ? `/library?${text}` : "/library";
}

function renderPager(total) {
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const page = Math.floor(offset / PAGE_SIZE) + 1;
  const link = (text, target, rel, enabled) =>
    enabled ? el("a", { class: "button secondary", href: pageHref(target), rel }, text) : el("span", { class: "button disabled" }, text);
  pager.replaceChildren(
    link("« First", 0, "first", page > 1),
    link("‹ Previous", Math.max(0, offset - PAGE_SIZE), "prev", page > 1),
    el("span", { class: "page-of" }, `Page ${formatCount(page)} of ${formatCount(pages)}`),
    link("Next ›", offset + PAGE_SIZE, "next", offset + PAGE_SIZE < total),
    link("Last »", (pages - 1) * PAGE_SIZE, "last", page < pages),
  );
}

// `quiet`: the status line is left as it is (it says what was just done, with its Undo).
async function load({ quiet = false } = {}) {
  if (!quiet) setStatus(statusBox, "Loading…");
  try {
    const answer = await api("/images", { params: { offset, limit: PAGE_SIZE, label, name, sort } });
    if (!quiet) setStatus(statusBox, "");
    const filtered = label || name;
    const shown = answer.items.length
      ? `${formatCount(offset + 1)}–${formatCount(offset + answer.items.length)} of `
      : "";
    summary.textContent = `${shown}${formatCount(answer.total)} ${filtered ? "matching " : ""}image${answer.total === 1 ? "" : "s"}`;
    if (!answer.items.length) {
      const text = answer.total
        ? "No images on this page."
        : filtered
          ? "No stored image matches these filters."
          : "The library is empty. Add images to start.";
      results.replaceChildren(el("p", { class: "empty" }, text));
    } else {
      results.replaceChildren(
        ...answer.items.map((item) => {
          const card = imageCard({ ...item, href: searchHref(item.id), detailHref: `/library/${item.id}` });
          // Shown only while selecting (the stylesheet hides it otherwise, out of the tab order too).
          card.prepend(el("input", { type: "checkbox", class: "pick", "aria-label": `Select ${item.filename}` }));
          return card;
        }),
      );
    }
    renderPager(answer.total);
  } catch (err) {
    summary.textContent = "";
    showError(statusBox, err);
  }
  selection.refresh();
}

// --- selecting cards, and moving them to the trash together ---------------------------------------------

const selection = (() => {
  const toggle = document.getElementById("select-mode");
  const bar = document.getElementById("selection-bar");
  const count = document.getElementById("selection-count");
  const clear = document.getElementById("selection-clear");
  const trash = document.getElementById("selection-trash");
  let anchor = null; // the card a shift-click's range starts from

  const cards = () => Array.from(results.querySelectorAll(".card[data-id]"));
  const picked = () => cards().filter((card) => card.querySelector(".pick").checked);
  const on = () => toggle.getAttribute("aria-pressed") === "true";

  function refresh() {
    const selecting = on();
    results.classList.toggle("selecting", selecting);
    bar.hidden = !selecting;
    for (const card of cards()) {
      const box = card.querySelector(".pick");
      if (!selecting) box.checked = false;
      card.classList.toggle("picked", box.checked);
    }
    const n = picked().length;
    count.textContent = `${formatCount(n)} selected`;
    trash.disabled = n === 0;
    clear.disabled = n === 0;
  }

  // Checks `card` (or unchecks it); with shift, every card from the last one clicked to this one.
  function pick(card, shift, checked) {
    const all = cards();
    const at = all.indexOf(card);
    const from = shift && anchor && all.includes(anchor) ? all.indexOf(anchor) : at;
    for (const other of all.slice(Math.min(from, at), Math.max(from, at) + 1)) {
      other.querySelector(".pick").checked = checked;
    }
    anchor = card;
    refresh();
  }

  function setMode(selecting) {
    toggle.setAttribute("aria-pressed", String(selecting));
    anchor = null;
    refresh();
  }

  async function moveToTrash() {
    const chosen = picked().map((card) => ({ id: Number(card.dataset.id), name: card.querySelector(".name").textContent }));
    if (!chosen.length) return;
    const ok = await confirmAction(
      `Move ${plural(chosen.length)} to the trash? They can be restored from the trash.`,
      "Move to the trash",
      chosen.map((image) => image.name),
    );
    if (!ok) return;
    trash.disabled = true;
    setStatus(statusBox, `Moving ${plural(chosen.length)} to the trash…`);
    const moved = [];
    const failed = [];
    // One at a time: each is a write, and the server takes writes one after another anyway.
    for (const image of chosen) {
      try {
        await api(`/images/${image.id}`, { method: "DELETE" });
        moved.push(image);
      } catch (err) {
        failed.push(`${image.name}: ${errorText(err)}`);
      }
    }
    await load({ quiet: true });
    showLibraryCount();
    if (failed.length) {
      const done = moved.length ? `Moved ${plural(moved.length)} to the trash; ` : "";
      setStatus(statusBox, `${done}${failed.length} could not be moved: ${failed.join("; ")}`, "error");
      return;
    }
    showUndo(
      statusBox,
      `Moved ${plural(moved.length)} to the trash.`,
      async () => {
        for (const image of moved) await api(`/trash/${image.id}/restore`, { method: "POST" });
        await load({ quiet: true });
        showLibraryCount();
      },
      `Restored ${plural(moved.length)}.`,
    );
  }

  toggle.hidden = false;
  toggle.addEventListener("click", () => setMode(!on()));
  clear.addEventListener("click", () => {
    for (const card of cards()) card.querySelector(".pick").checked = false;
    anchor = null;
    refresh();
  });
  trash.addEventListener("click", moveToTrash);

  // While selecting, a click on a picture (or its checkbox) picks it instead of opening the viewer: this runs
  // first (capture), before the viewer's own listener on the grid.
  results.addEventListener(
    "click",
    (event) => {
      if (!on() || event.button !== 0) return;
      const card = event.target.closest(".card[data-id]");
      if (!card) return;
      const box = card.querySelector(".pick");
      if (event.target === box) {
        event.stopPropagation(); // the box has already changed: its state is the one to spread
        pick(card, event.shiftKey, box.checked);
      } else if (event.target.closest("a.thumb")) {
        event.preventDefault();
        event.stopPropagation();
        pick(card, event.shiftKey, !box.checked);
      }
    },
    { capture: true },
  );
  return { refresh };
})();

// A picture opens in the viewer; its "Find similar" goes to the search, as the picture's link does. Moving it
// to the trash there (or restoring it) refills the page, so the summary's count and the page stay true.
attachViewer(results, {
  statusBox,
  findSimilar: (id) => location.assign(searchHref(id)),
  changed: () => load({ quiet: true }),
});
load();
showLibraryCount();
