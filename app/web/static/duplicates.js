// Duplicates: groups of (near-)identical images side by side; choose the one to keep, delete the others.
// Reads GET /duplicates?level=&threshold=&min_size=2&offset=&limit=.

import { api, thumbnailUrl } from "./api.js";
import { confirmAction, el, errorText, formatBytes, formatCount, setStatus, showError, showLibraryCount } from "./ui.js";

const GROUPS_PER_PAGE = 20;

const form = document.getElementById("dup-form");
const statusBox = document.getElementById("status");
const summary = document.getElementById("summary");
const groupsBox = document.getElementById("groups");
const pager = document.getElementById("pager");

const params = new URLSearchParams(location.search);
const level = params.get("level") || "near";
const threshold = params.get("threshold") || "";
const offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
form.elements.level.value = level;
form.elements.threshold.value = threshold;

function pageHref(newOffset) {
  const query = new URLSearchParams({ level });
  if (threshold) query.set("threshold", threshold);
  if (newOffset) query.set("offset", String(newOffset));
  return `/library/duplicates?${query}`;
}

function member(image, groupId, kept) {
  const similarity = typeof image.similarity === "number" ? `similarity ${image.similarity.toFixed(4)}` : "";
  return el(
    "label",
    { class: `member${kept ? " kept" : ""}`, dataset: { id: image.id } },
    el("img", { src: thumbnailUrl(image.id), alt: image.filename, loading: "lazy" }),
    el(
      "span",
      { class: "choice" },
      el("input", { type: "radio", name: `keep-${groupId}`, value: image.id, checked: kept }),
      el("span", { class: "keep-label" }, kept ? "keep" : "delete"),
    ),
    el("a", { class: "name", href: `/library/${image.id}`, title: image.filename }, image.filename),
    el("span", { class: "muted" }, `${image.width} × ${image.height} · ${formatBytes(image.byte_size)}`),
    similarity ? el("span", { class: "score" }, similarity) : null,
  );
}

function renderGroup(group, n) {
  const groupId = `${offset + n}`;
  const members = group.images.map((image) => member(image, groupId, image.id === group.keep));
  const row = el("div", { class: "members" }, members);
  const status = el("span", { class: "group-status" });
  const button = el("button", { class: "danger", type: "button" }, `Delete the other ${group.images.length - 1}`);
  const section = el(
    "section",
    { class: "group" },
    el("header", {}, el("h2", {}, `Group ${offset + n + 1} · ${group.images.length} images`), button, status),
    row,
  );
  // The radio buttons choose the image to keep; the labels say which will go.
  row.addEventListener("change", () => {
    for (const box of row.querySelectorAll(".member")) {
      const kept = box.querySelector("input").checked;
      box.classList.toggle("kept", kept);
      box.querySelector(".keep-label").textContent = kept ? "keep" : "delete";
    }
  });
  button.addEventListener("click", async () => {
    const keep = Number(row.querySelector("input:checked").value);
    const doomed = group.images.filter((image) => image.id !== keep);
    const kept = group.images.find((image) => image.id === keep);
    const ok = await confirmAction(
      `Keep ${kept.filename} and delete ${doomed.length} other image${doomed.length === 1 ? "" : "s"} (${doomed.map((i) => i.filename).join(", ")})?`,
    );
    if (!ok) return;
    button.disabled = true;
    const failures = [];
    for (const image of doomed) {
      try {
        await api(`/images/${image.id}`, { method: "DELETE" });
        row.querySelector(`.member[data-id="${image.id}"]`).remove();
      } catch (err) {
        if (err.status === 404) row.querySelector(`.member[data-id="${image.id}"]`).remove();
        else failures.push(`${image.filename}: ${errorText(err)}`);
      }
    }
    if (failures.length) {
      status.className = "group-status error";
      status.textContent = failures.join("; ");
      button.disabled = false;
    } else {
      status.className = "group-status ok";
      status.textContent = `Deleted ${doomed.length}; kept ${kept.filename}.`;
      section.classList.add("resolved");
      button.remove();
    }
    showLibraryCount();
  });
  return section;
}

async function load() {
  setStatus(statusBox, "Looking for duplicates…");
  try {
    const answer = await api("/duplicates", {
      params: { level, threshold, min_size: 2, offset, limit: GROUPS_PER_PAGE },
    });
    setStatus(statusBox, "");
    summary.textContent = `${formatCount(answer.total)} group${answer.total === 1 ? "" : "s"} at ${level} level (threshold ${answer.threshold})`;
    groupsBox.replaceChildren(
      ...(answer.groups.length
        ? answer.groups.map(renderGroup)
        : [el("p", { class: "empty" }, answer.total ? "No groups on this page." : "No duplicates found.")]),
    );
    const prev = offset > 0;
    const next = offset + GROUPS_PER_PAGE < answer.total;
    pager.replaceChildren(
      prev ? el("a", { class: "button secondary", href: pageHref(Math.max(0, offset - GROUPS_PER_PAGE)), rel: "prev" }, "‹ Previous") : "",
      next ? el("a", { class: "button secondary", href: pageHref(offset + GROUPS_PER_PAGE), rel: "next" }, "Next ›") : "",
    );
  } catch (err) {
    if (err.status === 404 && /not found/i.test(err.message)) {
      setStatus(statusBox, "This server has no duplicates API (GET /duplicates answered 404): update imgsim to review duplicates.", "error");
    } else {
      showError(statusBox, err);
    }
  }
}

load();
showLibraryCount();
