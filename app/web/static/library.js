// Library: every stored image, a page at a time, filtered by label and by part of a name.
// The query string (?offset=&limit=&label=&name=) holds the page, so links and reloads keep it.

import { api } from "./api.js";
import { suggestLabels } from "./labels.js";
import { el, formatCount, imageCard, searchHref, setStatus, showError, showLibraryCount } from "./ui.js";
import { attachViewer } from "./viewer.js";

const DEFAULT_PAGE_SIZE = 48;

const form = document.getElementById("filter-form");
suggestLabels(form.elements.label);
const statusBox = document.getElementById("status");
const summary = document.getElementById("summary");
const results = document.getElementById("results");
const pager = document.getElementById("pager");

const params = new URLSearchParams(location.search);
const label = (params.get("label") || "").trim();
const name = (params.get("name") || "").trim();
const offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
const requested = Number.parseInt(params.get("limit") || "", 10);
const PAGE_SIZE = Number.isFinite(requested) ? Math.min(200, Math.max(1, requested)) : DEFAULT_PAGE_SIZE;
form.elements.label.value = label;
form.elements.name.value = name;

function pageHref(newOffset) {
  const query = new URLSearchParams();
  if (label) query.set("label", label);
  if (name) query.set("name", name);
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
    const answer = await api("/images", { params: { offset, limit: PAGE_SIZE, label, name } });
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
        ...answer.items.map((item) =>
          imageCard({ ...item, href: searchHref(item.id), detailHref: `/library/${item.id}` }),
        ),
      );
    }
    renderPager(answer.total);
  } catch (err) {
    summary.textContent = "";
    showError(statusBox, err);
  }
}

// A picture opens in the viewer; its "Find similar" goes to the search, as the picture's link does. Moving it
// to the trash there (or restoring it) refills the page, so the summary's count and the page stay true.
attachViewer(results, {
  statusBox,
  findSimilar: (id) => location.assign(searchHref(id)),
  changed: () => load({ quiet: true }),
});
load();
showLibraryCount();
