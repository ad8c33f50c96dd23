// Add images: many files or whole folders, uploaded to POST /ingest in batches within the server's limits,
// with a progress bar and a per-file added / already stored / error list.

import { api } from "./api.js";
import { droppedFiles, looksLikeImage, planBatches } from "./batches.js";
import { el, errorText, formatBytes, formatCount, setStatus, showLibraryCount } from "./ui.js";

const drop = document.getElementById("drop");
const filesInput = document.getElementById("files");
const folderInput = document.getElementById("folder");
const statusBox = document.getElementById("status");
const progressBox = document.getElementById("progress-box");
const progress = document.getElementById("progress");
const progressText = document.getElementById("progress-text");
const summary = document.getElementById("summary");
const table = document.getElementById("file-list");
const rows = table.querySelector("tbody");

const DEFAULT_LIMITS = { max_files_per_request: 64, max_upload_bytes: 25 * 1024 * 1024 };
let busy = false;

async function limits() {
  const stats = await showLibraryCount();
  return stats && stats.limits ? stats.limits : DEFAULT_LIMITS;
}

function addRow(label) {
  const status = el("td", { class: "pending" }, "waiting");
  const details = el("td", { class: "details" });
  const row = el("tr", {}, el("td", { class: "file" }, label), status, details);
  rows.append(row);
  return { row, status, details };
}

function mark(entry, kind, text, details) {
  entry.status.className = kind;
  entry.status.textContent = text;
  entry.details.replaceChildren(...(details || []));
}

function markResult(entry, result) {
  const link = el("a", { href: `/library/${result.id}` }, `#${result.id}`);
  const top = result.predictions && result.predictions[0] ? ` · ${result.predictions[0].label.split(",")[0]}` : "";
  mark(entry, result.status, result.status === "added" ? "added" : "already stored", [link, top]);
}

function ingestBody(files) {
  const body = new FormData();
  for (const item of files) body.append("files", item.file, item.file.name);
  return body;
}

async function upload(items) {
  if (busy) return;
  const candidates = items.filter((item) => looksLikeImage(item.file));
  const skipped = items.length - candidates.length;
  if (!candidates.length) {
    setStatus(statusBox, items.length ? "None of these files is an image (by name or type)." : "No files chosen.", "error");
    return;
  }
  busy = true;
  rows.replaceChildren();
  table.hidden = false;
  summary.textContent = "";
  const entries = new Map(candidates.map((item) => [item, addRow(item.path)]));
  const counts = { added: 0, exists: 0, error: 0 };
  let done = 0;
  const total = candidates.length;
  progressBox.hidden = false;
  progress.max = total;
  const step = (n) => {
    done += n;
    progress.value = done;
    progressText.textContent = `${formatCount(done)} of ${formatCount(total)} files`;
  };
  step(0);
  setStatus(statusBox, "Uploading…");

  try {
    const limit = await limits();
    const { batches, tooLarge } = planBatches(candidates, limit.max_files_per_request, limit.max_upload_bytes);
    for (const item of tooLarge) {
      mark(entries.get(item), "error", "error", [`${formatBytes(item.file.size)} is over the server's limit of ${formatBytes(limit.max_upload_bytes)}`]);
      counts.error += 1;
      step(1);
    }
    for (const batch of batches) {
      for (const item of batch) mark(entries.get(item), "pending", "uploading…");
      try {
        const answer = await api("/ingest", { method: "POST", body: ingestBody(batch) });
        answer.results.forEach((result, n) => {
          markResult(entries.get(batch[n]), result);
          counts[result.status] += 1;
        });
        step(batch.length);
      } catch (batchError) {
        // POST /ingest stores all of a request or nothing: send the files one by one, so each gets its own answer.
        if (batch.length === 1 || batchError.status === 0 || batchError.status === 401) {
          for (const item of batch) mark(entries.get(item), "error", "error", [errorText(batchError)]);
          counts.error += batch.length;
          step(batch.length);
          if (batchError.status === 0 || batchError.status === 401) throw batchError;
          continue;
        }
        for (const item of batch) {
          try {
            const answer = await api("/ingest", { method: "POST", body: ingestBody([item]) });
            markResult(entries.get(item), answer.results[0]);
            counts[answer.results[0].status] += 1;
          } catch (err) {
            mark(entries.get(item), "error", "error", [errorText(err)]);
            counts.error += 1;
            if (err.status === 0 || err.status === 401) throw err;
          } finally {
            step(1);
          }
        }
      }
    }
    setStatus(statusBox, counts.error ? "Done, with errors: see the list below." : "Done.", counts.error ? "error" : "ok");
  } catch (err) {
    for (const entry of entries.values()) {
      if (entry.status.className === "pending") mark(entry, "error", "not sent", ["stopped after an earlier error"]);
    }
    setStatus(statusBox, `Stopped: ${errorText(err)}`, "error");
  } finally {
    busy = false;
    progress.value = progress.max;
    const parts = [
      `${formatCount(counts.added)} added`,
      `${formatCount(counts.exists)} already stored`,
      `${formatCount(counts.error)} failed`,
    ];
    if (skipped) parts.push(`${formatCount(skipped)} skipped (not images)`);
    summary.textContent = parts.join(" · ");
    showLibraryCount();
  }
}

const fromInput = (input) =>
  Array.from(input.files || []).map((file) => ({ file, path: file.webkitRelativePath || file.name }));

filesInput.addEventListener("change", () => {
  upload(fromInput(filesInput));
  filesInput.value = "";
});
folderInput.addEventListener("change", () => {
  upload(fromInput(folderInput));
  folderInput.value = "";
});
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const items = await droppedFiles(event.dataTransfer);
  upload(items.map((item) => (item instanceof File ? { file: item, path: item.name } : item)));
});
drop.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    filesInput.click();
  }
});

showLibraryCount();
