// One stored image: names and paths, facts, predictions, its nearest neighbours, and deletion.

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
} from "./ui.js";

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

async function remove(image) {
  const ok = await confirmAction(`Delete ${image.filename} from the library? Its kept copy and vector are removed too.`);
  if (!ok) return;
  setStatus(statusBox, "Deleting…");
  try {
    await api(`/images/${image.id}`, { method: "DELETE" });
    box.replaceChildren(
      el("p", { class: "message ok" }, `Deleted ${image.filename}. `, el("a", { href: "/library" }, "Back to the library")),
    );
    neighboursSection.hidden = true;
    setStatus(statusBox, "");
    showLibraryCount();
  } catch (err) {
    showError(statusBox, err);
  }
}

async function load() {
  setStatus(statusBox, "Loading…");
  let image;
  try {
    image = await api(`/images/${imageId}`);
  } catch (err) {
    showError(statusBox, err);
    return;
  }
  title.textContent = image.filename;
  document.title = `${image.filename} · imgsim`;
  box.replaceChildren(
    el("a", { class: "original", href: contentUrl(image.id), title: "Open the original" },
      el("img", { src: contentUrl(image.id), alt: image.filename })),
    el(
      "div",
      { class: "info" },
      facts(image),
      el("h2", {}, "Predictions"),
      predictionBars(image.predictions),
      el(
        "div",
        { class: "actions" },
        el("a", { class: "button", href: searchHref(image.id) }, "Search similar"),
        el("a", { class: "button secondary", href: contentUrl(image.id), download: image.filename }, "Download"),
        el("button", { class: "danger", type: "button", onclick: () => remove(image) }, "Delete…"),
      ),
    ),
  );
  try {
    const answer = await api("/search", { params: { ref: image.id, k: 12 } });
    setStatus(statusBox, "");
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

load();
showLibraryCount();
