// One stored image: names and paths, facts, predictions, its nearest neighbours (each opens in the viewer, as
// in the other grids), and moving it to the trash (with Undo right after). An image in the trash says so, and
// offers restore and delete for good.

import { api, contentUrl } from "./api.js";
import {
  confirmAction,
  el,
  formatBytes,
  imageCard,
  scoreText,
  searchHref,
  setStatus,
  showError,
  showLibraryCount,
  showUndo,
} from "./ui.js";
import { attachViewer } from "./viewer.js";

const box = document.getElementById("detail");
const title = document.getElementById("detail-title");
const statusBox = document.getElementById("status");
const neighboursSection = document.getElementById("neighbours-section");
const neighbours = document.getElementById("neighbours");
const imageId = Number(box.dataset.imageId);

function facts(image) {
  const rows = [
    ["Names", image.names.join(", ")],
    ["Size", `${image.width} × ${image.height} px · ${formatBytes(image.byte_size)}`],
    ["Format", image.format],
    ["Added", new Date(image.created_at).toLocaleString()],
    ["Id", String(image.id)],
    ["SHA-256", el("code", {}, image.sha256)],
    ["Model", image.model],
  ];
  if (image.paths && image.paths.length) rows.splice(1, 0, ["Paths", image.paths.join("\n")]);
  if (image.replaced && image.replaced.length) {
    // Files of copies moved to the trash when their duplicate group was resolved in favour of this image.
    const files = image.replaced.map((copy) => (copy.path ? `${copy.name} (${copy.path})` : copy.name));
    rows.splice(1, 0, ["Kept for", files.join("\n")]);
  }
  return el("dl", { class: "facts" }, rows.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

function predictionBars(predictions) {
  return el(
    "ol",
    { class: "predictions" },
    predictions.map((p) =>
      el(
        "li",
        {},
        el("span", { class: "bar", style: `width: ${Math.max(1, Math.round(p.score * 100))}%` }),
        el("span", { class: "label" }, p.label),
        el("span", { class: "pct" }, `${(p.score * 100).toFixed(1)}%`),
      ),
    ),
  );
}

async function moveToTrash(image) {
  setStatus(statusBox, "Moving to the trash…");
  try {
    await api(`/images/${image.id}`, { method: "DELETE" });
  } catch (err) {
    showError(statusBox, err);
    return;
  }
  showLibraryCount();
  await load({ keepStatus: true });
  showUndo(
    statusBox,
    `Moved ${image.filename} to the trash.`,
    async () => {
      await api(`/trash/${image.id}/restore`, { method: "POST" });
      await load({ keepStatus: true });
      showLibraryCount();
    },
    `Restored ${image.filename}.`,
  );
}

async function restore(image) {
  setStatus(statusBox, "Restoring…");
  try {
    await api(`/trash/${image.id}/restore`, { method: "POST" });
  } catch (err) {
    showError(statusBox, err);
    return;
  }
  await load({ keepStatus: true });
  setStatus(statusBox, `Restored ${image.filename}.`, "ok");
  showLibraryCount();
}

async function deleteForGood(image) {
  const ok = await confirmAction(`Delete ${image.filename} for good? Its kept copy is removed too; this cannot be undone.`);
  if (!ok) return;
  setStatus(statusBox, "Deleting…");
  try {
    await api(`/trash/${image.id}`, { method: "DELETE" });
  } catch (err) {
    showError(statusBox, err);
    return;
  }
  box.replaceChildren(
    el("p", { class: "message ok" }, `Deleted ${image.filename} for good. `, el("a", { href: "/library/trash" }, "Back to the trash")),
  );
  neighboursSection.hidden = true;
  setStatus(statusBox, "");
}

function actions(image) {
  if (image.trashed_at) {
    return el(
      "div",
      { class: "actions" },
      el("button", { type: "button", onclick: () => restore(image) }, "Restore"),
      el("a", { class: "button secondary", href: contentUrl(image.id), download: image.filename }, "Download"),
      el("button", { class: "danger", type: "button", onclick: () => deleteForGood(image) }, "Delete for good…"),
    );
  }
  return el(
    "div",
    { class: "actions" },
    el("a", { class: "button", href: searchHref(image.id) }, "Search similar"),
    el("a", { class: "button secondary", href: contentUrl(image.id), download: image.filename }, "Download"),
    el("button", { class: "danger", type: "button", onclick: () => moveToTrash(image) }, "Move to the trash"),
  );
}

async function load({ keepStatus = false } = {}) {
  if (!keepStatus) setStatus(statusBox, "Loading…");
  let image;
  try {
    image = await api(`/images/${imageId}`);
  } catch (err) {
    showError(statusBox, err);
    return;
  }
  title.textContent = image.filename;
  document.title = `${image.filename} · imgsim`;
  const trashed = image.trashed_at
    ? el(
        "p",
        { class: "message trashed" },
        `In the trash since ${new Date(image.trashed_at).toLocaleString()}: not searched, listed or grouped. `,
        el("a", { href: "/library/trash" }, "Open the trash"),
      )
    : null;
  box.replaceChildren(
    el("a", { class: "original", href: contentUrl(image.id), title: "Open the original" },
      el("img", { src: contentUrl(image.id), alt: image.filename })),
    el(
      "div",
      { class: "info" },
      trashed,
      facts(image),
      el("h2", {}, "Predictions"),
      predictionBars(image.predictions),
      actions(image),
    ),
  );
  // Cleared now, not after the neighbours arrive: by then the status line may say what a button just did.
  if (!keepStatus) setStatus(statusBox, "");
  if (image.trashed_at) {
    neighboursSection.hidden = true;
    return;
  }
  try {
    const answer = await api("/search", { params: { ref: image.id, k: 12 } });
    neighboursSection.hidden = false;
    neighbours.replaceChildren(
      ...(answer.results.length
        ? answer.results.map((hit) =>
            imageCard({
              ...hit,
              href: searchHref(hit.id),
              detailHref: `/library/${hit.id}`,
              extra: el("span", { class: "score" }, scoreText(answer.metric, hit.score)),
            }),
          )
        : [el("p", { class: "empty" }, "No other images in the library yet.")]),
    );
  } catch (err) {
    showError(statusBox, err);
  }
}

// A neighbour opens in the viewer; its "Find similar" searches by it, as the picture's link does.
attachViewer(neighbours, { statusBox, findSimilar: (id) => location.assign(searchHref(id)) });
load();
showLibraryCount();
