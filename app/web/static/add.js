// Add images: many files or whole folders, uploaded to POST /ingest in batches within the server's limits,
// with a progress bar and a per-file added / already stored / error list. An upload can be cancelled (what
// was stored stays stored and is listed), leaving the page mid-upload asks first, and "Retry failed" sends
// again the files that failed or were not sent.

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
const cancelButton = document.getElementById("cancel-upload");
const retryButton = document.getElementById("retry-failed");
const summary = document.getElementById("summary");
const table = document.getElementById("file-list");
const rows = table.querySelector("tbody");

const DEFAULT_LIMITS = { max_files_per_request: 64, max_upload_bytes: 25 * 1024 * 1024 };
// Outcomes a retry may change: an error (but not a file over the size limit) or a file never sent.
const RETRYABLE = new Set(["error", "not sent", "cancelled"]);

let uploading = null; // the AbortController of the upload in progress, null when none is
let entries = []; // the rows of the last upload, one per file: a retry updates them in place
let skipped = 0; // files of the last selection that are not images

async function limits() {
  const stats = await showLibraryCount();
  return stats && stats.limits ? stats.limits : DEFAULT_LIMITS;
}

function addRow(item) {
  const status = el("td", { class: "pending" }, "waiting");
  const details = el("td", { class: "details" });
  rows.append(el("tr", {}, el("td", { class: "file" }, item.path), status, details));
  return { item, file: item.file, status, details, outcome: "waiting", retryable: true };
}

// `outcome`: added, exists, error, not sent, cancelled (or waiting, uploading while it runs).
function mark(entry, outcome, text, details, retryable = true) {
  entry.outcome = outcome;
  entry.retryable = retryable;
  entry.status.className = { added: "added", exists: "exists", waiting: "pending", uploading: "pending" }[outcome] || "error";
  entry.status.textContent = text;
  entry.details.replaceChildren(...(details || []));
}

function markResult(entry, result) {
  const link = el("a", { href: `/library/${result.id}` }, `#${result.id}`);
  const top = result.predictions && result.predictions[0] ? ` · ${result.predictions[0].label.split(",")[0]}` : "";
  mark(entry, result.status, result.status === "added" ? "added" : "already stored", [link, top]);
}

function ingestBody(batch) {
  const body = new FormData();
  for (const entry of batch) body.append("files", entry.file, entry.file.name);
  return body;
}

const failed = () => entries.filter((entry) => entry.retryable && RETRYABLE.has(entry.outcome));

function showSummary() {
  const count = (outcome) => entries.filter((entry) => entry.outcome === outcome).length;
  const parts = [`${formatCount(count("added"))} added`, `${formatCount(count("exists"))} already stored`, `${formatCount(count("error"))} failed`];
  if (count("cancelled")) parts.push(`${formatCount(count("cancelled"))} cancelled`);
  if (count("not sent")) parts.push(`${formatCount(count("not sent"))} not sent`);
  if (skipped) parts.push(`${formatCount(skipped)} skipped (not images)`);
  summary.textContent = parts.join(" · ");
  const again = failed().length;
  retryButton.hidden = again === 0;
  retryButton.textContent = `Retry failed (${formatCount(again)})`;
}

// A network failure or a refused key stops the whole upload; any other error is the file's own.
const stopsAll = (err) => err.name === "AbortError" || err.status === 0 || err.status === 401;

async function post(batch, signal) {
  const answer = await api("/ingest", { method: "POST", body: ingestBody(batch), signal });
  answer.results.forEach((result, n) => markResult(batch[n], result));
}

// Sends `list` (entries of the table) and marks each with its outcome.
async function send(list) {
  const controller = new AbortController();
  uploading = controller;
  cancelButton.hidden = false;
  cancelButton.disabled = false;
  retryButton.hidden = true;
  for (const entry of list) mark(entry, "waiting", "waiting");
  let done = 0;
  progressBox.hidden = false;
  progress.max = list.length;
  const step = (n) => {
    done += n;
    progress.value = done;
    progressText.textContent = `${formatCount(done)} of ${formatCount(list.length)} files`;
  };
  step(0);
  setStatus(statusBox, "Uploading…");

  try {
    const limit = await limits();
    const { batches, tooLarge } = planBatches(list, limit.max_files_per_request, limit.max_upload_bytes);
    for (const entry of tooLarge) {
      const why = `${formatBytes(entry.item.file.size)} is over the server's limit of ${formatBytes(limit.max_upload_bytes)}`;
      mark(entry, "error", "error", [why], false);
      step(1);
    }
    for (const batch of batches) {
      if (controller.signal.aborted) break;
      for (const entry of batch) mark(entry, "uploading", "uploading…");
      try {
        await post(batch, controller.signal);
        step(batch.length);
      } catch (batchError) {
        if (batch.length === 1 || stopsAll(batchError)) {
          if (batchError.name !== "AbortError") for (const entry of batch) mark(entry, "error", "error", [errorText(batchError)]);
          step(batch.length);
          if (stopsAll(batchError)) throw batchError;
          continue;
        }
        // POST /ingest stores all of a request or nothing: send the files one by one, so each gets its own answer.
        for (const entry of batch) mark(entry, "waiting", "waiting");
        for (const entry of batch) {
          mark(entry, "uploading", "uploading…");
          try {
            await post([entry], controller.signal);
          } catch (err) {
            if (err.name !== "AbortError") mark(entry, "error", "error", [errorText(err)]);
            if (stopsAll(err)) throw err;
          } finally {
            step(1);
          }
        }
      }
    }
    if (controller.signal.aborted) throw new DOMException("cancelled", "AbortError");
    const errors = list.some((entry) => entry.outcome === "error");
    setStatus(statusBox, errors ? "Done, with errors: see the list below." : "Done.", errors ? "error" : "ok");
  } catch (err) {
    const cancelled = err.name === "AbortError";
    for (const entry of list) {
      if (entry.outcome === "uploading" && cancelled) {
        // Its request was cut short: the server may have stored it all the same. A retry says which.
        mark(entry, "cancelled", "cancelled", ["cancelled while being sent: it may be stored (a retry reports it as already stored)"]);
      } else if (entry.outcome === "waiting" || entry.outcome === "uploading") {
        mark(entry, cancelled ? "cancelled" : "not sent", cancelled ? "cancelled" : "not sent", [cancelled ? "not sent" : "stopped after an earlier error"]);
      }
    }
    if (cancelled) setStatus(statusBox, "Cancelled: the files stored before then stay stored (see the list below).", "info");
    else setStatus(statusBox, `Stopped: ${errorText(err)}`, "error");
  } finally {
    uploading = null;
    cancelButton.hidden = true;
    progress.value = progress.max;
    showSummary();
    showLibraryCount();
  }
}

async function upload(items) {
  if (uploading) {
    setStatus(statusBox, "An upload is in progress: wait for it to finish, or cancel it first.", "error");
    return;
  }
  const candidates = items.filter((item) => looksLikeImage(item.file));
  if (!candidates.length) {
    setStatus(statusBox, items.length ? "None of these files is an image (by name or type)." : "No files chosen.", "error");
    return;
  }
  skipped = items.length - candidates.length;
  rows.replaceChildren();
  table.hidden = false;
  summary.textContent = "";
  entries = candidates.map(addRow);
  await send(entries);
}

cancelButton.addEventListener("click", () => {
  if (!uploading) return;
  cancelButton.disabled = true;
  uploading.abort();
});
retryButton.addEventListener("click", () => {
  const again = failed();
  if (!uploading && again.length) send(again);
});
// Leaving the page mid-upload would drop the files not sent yet: the browser asks first.
window.addEventListener("beforeunload", (event) => {
  if (!uploading) return;
  event.preventDefault();
  event.returnValue = "";
});

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
