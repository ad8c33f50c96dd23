// Duplicates: groups of (near-)identical images side by side. Keep one and move the others to the trash
// (undoable), or keep them all ("not duplicates": never grouped together again). Exact groups can all be
// resolved at once, after one confirmation listing every file that goes to the trash.
// Reads GET /duplicates?level= or ?threshold= (one or the other) &min_size=2&offset=&limit=.

import { api, thumbnailUrl } from "./api.js";
import {
  breakableName,
  confirmAction,
  el,
  errorText,
  formatBytes,
  formatCount,
  setStatus,
  showError,
  showLibraryCount,
  showUndo,
} from "./ui.js";

const GROUPS_PER_PAGE = 20;
const DECISIONS_SHOWN = 10;
const LEVELS = ["exact", "near", "similar"];

const form = document.getElementById("dup-form");
const statusBox = document.getElementById("status");
const summary = document.getElementById("summary");
const groupsBox = document.getElementById("groups");
const pager = document.getElementById("pager");
const resolveExactButton = document.getElementById("resolve-exact");
const decisionsSection = document.getElementById("decisions-section");
const decisionsList = document.getElementById("decisions");

const params = new URLSearchParams(location.search);
// A threshold given wins over the level; only one of them is sent to the API.
const threshold = (params.get("threshold") || "").trim();
const level = threshold ? null : params.get("level") || "near";
const offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
// Exact and near groups are copies: the image to keep is suggested. Similar photos (or a threshold of one's
// own) may be different photos: nothing is chosen until the person chooses.
const suggestKeep = level === "exact" || level === "near";
form.elements.level.value = level || params.get("level") || "near";
form.elements.threshold.value = threshold;

function searchParams() {
  return threshold ? { threshold } : { level };
}

function pageHref(newOffset) {
  const query = new URLSearchParams(searchParams());
  if (newOffset) query.set("offset", String(newOffset));
  return `/library/duplicates?${query}`;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const chosen = String(form.elements.threshold.value || "").trim();
  const query = new URLSearchParams(chosen ? { threshold: chosen } : { level: form.elements.level.value });
  location.assign(`/library/duplicates?${query}`);
});
// Choosing a level means that level: a threshold typed before would otherwise win.
form.elements.level.addEventListener("change", () => {
  form.elements.threshold.value = "";
});

const plural = (n, word) => `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;

// What the verification said of a member and the kept image, in a few words.
function evidenceText(evidence) {
  if (!evidence) return "";
  if (!evidence.copy) return "not proven a copy";
  if (evidence.kind === "identical bytes" || evidence.kind === "identical pixels") return evidence.kind;
  const parts = [evidence.mirrored ? "mirrored copy" : "copy"];
  if (typeof evidence.flow_px === "number") parts.push(`aligned to ${evidence.flow_px.toFixed(2)} px`);
  return parts.join(", ");
}

function member(image, groupId, kept, suggest) {
  const similarity = typeof image.similarity === "number" ? `similarity ${image.similarity.toFixed(4)}` : "";
  const proof = evidenceText(image.evidence);
  const names = image.names && image.names.length > 1 ? image.names.join(", ") : image.filename;
  return el(
    "label",
    { class: `member${kept ? " kept" : ""}`, dataset: { id: image.id } },
    el("img", { src: thumbnailUrl(image.id), alt: image.filename, loading: "lazy" }),
    el(
      "span",
      { class: "choice" },
      el("input", { type: "radio", name: `keep-${groupId}`, value: image.id, checked: kept }),
      el("span", { class: "keep-label" }, kept ? "keep" : suggest ? "to the trash" : "keep this one?"),
    ),
    el("a", { class: "name", href: `/library/${image.id}`, title: names }, breakableName(names)),
    el("span", { class: "muted" }, `${image.width} × ${image.height} · ${formatBytes(image.byte_size)}`),
    similarity ? el("span", { class: "score" }, similarity) : null,
    proof ? el("span", { class: "evidence muted" }, proof) : null,
  );
}

function renderGroup(group, n) {
  const groupId = `${offset + n}`;
  // The image to keep is suggested only for a group of proven copies (older servers say nothing: the level).
  const suggest = suggestKeep && group.copies !== false;
  const heading = `Group ${offset + n + 1} · ${suggest ? "" : "similar photos · "}${plural(group.images.length, "image")}`;
  if (group.images.length < 2) {
    // One stored image under several names: the same bytes, kept once; nothing to move or decide.
    const [image] = group.images;
    return el(
      "section",
      { class: "group" },
      el("header", {}, el("h2", {}, `Group ${offset + n + 1} · the same file under ${image.names.length} names`)),
      el("p", { class: "hint" }, "These names all have the same bytes, which are stored once: nothing to move."),
      el("div", { class: "members" }, member(image, groupId, true, true)),
    );
  }
  const members = group.images.map((image) => member(image, groupId, suggest && image.id === group.keep, suggest));
  const row = el("div", { class: "members" }, members);
  const status = el("div", { class: "group-status", role: "status" });
  const trashButton = el("button", { class: "danger", type: "button" }, `Move the other ${group.images.length - 1} to the trash`);
  const keepAllButton = el("button", { class: "secondary", type: "button", title: "These are not duplicates: never group them together again" }, "Keep all");
  const section = el(
    "section",
    { class: `group${suggest ? "" : " similar"}`, dataset: { keep: group.keep } },
    el("header", {}, el("h2", {}, heading), el("div", { class: "group-actions" }, trashButton, keepAllButton)),
    group.reason ? el("p", { class: "reason muted" }, group.reason) : null,
    suggest ? null : el("p", { class: "hint" }, "Similar photos, perhaps not copies: choose the one to keep, or keep all."),
    row,
    status,
  );
  const chosen = () => {
    const input = row.querySelector("input:checked");
    return input ? Number(input.value) : null;
  };
  const refresh = () => {
    const keep = chosen();
    trashButton.disabled = keep === null;
    for (const box of row.querySelectorAll(".member")) {
      const kept = box.querySelector("input").checked;
      box.classList.toggle("kept", kept);
      box.classList.toggle("doomed", keep !== null && !kept);
      box.querySelector(".keep-label").textContent = kept ? "keep" : keep === null ? "keep this one?" : "to the trash";
    }
  };
  row.addEventListener("change", refresh);
  refresh();

  // What is left of a resolved group is kept: say so, and take the choice away.
  const done = () => {
    section.classList.add("resolved");
    trashButton.hidden = keepAllButton.hidden = true;
    for (const box of row.querySelectorAll(".member")) {
      box.classList.add("kept");
      box.classList.remove("doomed");
      box.querySelector("input").disabled = true;
      box.querySelector(".keep-label").textContent = "kept";
    }
  };
  const again = () => {
    section.replaceWith(renderGroup(group, n));
    showLibraryCount();
  };

  trashButton.addEventListener("click", async () => {
    const keep = chosen();
    if (keep === null) return;
    const kept = group.images.find((image) => image.id === keep);
    const moved = group.images.filter((image) => image.id !== keep);
    trashButton.disabled = keepAllButton.disabled = true;
    try {
      await api("/duplicates/resolve", {
        method: "POST",
        json: { keep, remove: moved.map((image) => image.id) },
      });
    } catch (err) {
      status.className = "group-status error";
      status.textContent = errorText(err);
      trashButton.disabled = keepAllButton.disabled = false;
      return;
    }
    for (const image of moved) row.querySelector(`.member[data-id="${image.id}"]`).remove();
    done();
    status.className = "group-status";
    showUndo(
      status,
      `Moved ${plural(moved.length, "image")} to the trash (${moved.map((i) => i.filename).join(", ")}); kept ${kept.filename}.`,
      async () => {
        for (const image of moved) await api(`/trash/${image.id}/restore`, { method: "POST" });
        again();
      },
    );
    showLibraryCount();
  });

  keepAllButton.addEventListener("click", async () => {
    trashButton.disabled = keepAllButton.disabled = true;
    let decision;
    try {
      decision = await api("/duplicates/dismiss", {
        method: "POST",
        json: { ids: group.images.map((image) => image.id) },
      });
    } catch (err) {
      status.className = "group-status error";
      status.textContent = errorText(err);
      trashButton.disabled = keepAllButton.disabled = false;
      return;
    }
    done();
    status.className = "group-status";
    showUndo(status, `Kept all ${group.images.length}: marked as not duplicates of each other.`, async () => {
      await api(`/duplicates/dismissed/${decision.id}`, { method: "DELETE" });
      again();
      loadDecisions();
    });
    loadDecisions();
  });
  return section;
}

async function allGroups(query) {
  const groups = [];
  for (let start = 0; ; start += 1000) {
    const answer = await api("/duplicates", { params: { ...query, min_size: 2, offset: start, limit: 1000 } });
    groups.push(...answer.groups);
    if (start + 1000 >= answer.total) return groups;
  }
}

resolveExactButton.addEventListener("click", async () => {
  setStatus(statusBox, "Looking for exact groups…");
  let plan;
  try {
    plan = (await allGroups({ level: "exact" }))
      .filter((group) => group.images.length > 1)
      .map((group) => {
        const kept = group.images.find((image) => image.id === group.keep);
        return { kept, moved: group.images.filter((image) => image.id !== group.keep) };
      });
  } catch (err) {
    showError(statusBox, err);
    return;
  }
  setStatus(statusBox, "");
  if (!plan.length) {
    setStatus(statusBox, "No exact groups to resolve.", "ok");
    return;
  }
  const files = plan.flatMap(({ kept, moved }) => moved.map((image) => `${image.filename} (a copy of ${kept.filename})`));
  const ok = await confirmAction(
    `Resolve ${plural(plan.length, "exact group")}: keep the largest image of each and move ${plural(files.length, "file")} to the trash?`,
    "Move to the trash",
    files,
  );
  if (!ok) return;
  resolveExactButton.disabled = true;
  setStatus(statusBox, "Moving to the trash…");
  const moved = [];
  try {
    for (const { kept, moved: copies } of plan) {
      const answer = await api("/duplicates/resolve", {
        method: "POST",
        json: { keep: kept.id, remove: copies.map((image) => image.id) },
      });
      moved.push(...answer.trashed);
    }
  } catch (err) {
    setStatus(statusBox, `Stopped after moving ${plural(moved.length, "file")} to the trash: ${errorText(err)}`, "error");
    resolveExactButton.disabled = false;
    load();
    return;
  }
  resolveExactButton.disabled = false;
  showUndo(statusBox, `Moved ${plural(moved.length, "file")} from ${plural(plan.length, "exact group")} to the trash.`, async () => {
    for (const image of moved) await api(`/trash/${image.id}/restore`, { method: "POST" });
    load({ keepStatus: true });
  }, `Restored ${plural(moved.length, "file")}.`);
  load({ keepStatus: true });
});

async function loadDecisions() {
  try {
    const answer = await api("/duplicates/dismissed", { params: { limit: DECISIONS_SHOWN } });
    decisionsSection.hidden = answer.total === 0;
    decisionsList.replaceChildren(
      ...answer.items.map((decision) => {
        const status = el("span", { class: "decision-status" });
        const undo = el("button", { type: "button", class: "undo" }, "Undo");
        const names = decision.images.map((image) => image.filename);
        const missing = decision.sha256s.length - decision.images.length;
        if (missing > 0) names.push(`${missing} deleted for good`);
        undo.addEventListener("click", async () => {
          undo.disabled = true;
          try {
            await api(`/duplicates/dismissed/${decision.id}`, { method: "DELETE" });
            await loadDecisions();
            load({ keepStatus: true });
          } catch (err) {
            status.textContent = errorText(err);
            undo.disabled = false;
          }
        });
        return el(
          "li",
          { dataset: { id: decision.id } },
          el("span", { class: "thumbs" }, decision.images.slice(0, 4).map((image) => el("img", { src: thumbnailUrl(image.id), alt: "", loading: "lazy" }))),
          el("span", { class: "decision-names" }, breakableName(names.join(", "))),
          el("span", { class: "muted" }, new Date(decision.created_at).toLocaleString()),
          undo,
          status,
        );
      }),
    );
    if (answer.total > answer.items.length) {
      decisionsList.append(el("li", { class: "muted" }, `and ${plural(answer.total - answer.items.length, "older decision")}`));
    }
  } catch {
    decisionsSection.hidden = true; // a server without decisions: the rest of the page still works
  }
}

async function load({ keepStatus = false } = {}) {
  if (!keepStatus) setStatus(statusBox, "Looking for duplicates…");
  try {
    const answer = await api("/duplicates", {
      params: { ...searchParams(), min_size: 2, offset, limit: GROUPS_PER_PAGE },
    });
    if (!keepStatus) setStatus(statusBox, "");
    const used = threshold
      ? `at your threshold ${answer.threshold} (the level is not used)`
      : `at the ${level} level (threshold ${answer.threshold})`;
    summary.textContent = `${plural(answer.total, "group")} ${used}`;
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

if (level !== null && !LEVELS.includes(level)) form.elements.level.value = "near";
load();
loadDecisions();
showLibraryCount();
