// Search: by an uploaded image (drop, paste, pick) or by a stored one (?ref=). The query string holds a
// search by a stored image, so it can be bookmarked, shared and restored by reloading; a result opens in the
// viewer (viewer.js).

import { api, thumbnailUrl } from "./api.js";
import { suggestLabels } from "./labels.js";
import { el, imageCard, scoreText, searchHref, setStatus, showError, showLibraryCount } from "./ui.js";
import { attachViewer } from "./viewer.js";

const form = document.getElementById("search-form");
suggestLabels(form.elements.label);
const drop = document.getElementById("drop");
const fileInput = document.getElementById("file");
const statusBox = document.getElementById("status");
const queryBox = document.getElementById("query");
const results = document.getElementById("results");

let lastUpload = null; // the uploaded query, kept so that changing k, metric or label searches again
let lastPreview = null; // the object URL showing the uploaded query
let pending = null; // the search in flight, aborted when a newer one starts

function options() {
  const data = new FormData(form);
  return {
    k: String(data.get("k") || "10"),
    metric: String(data.get("metric") || "cosine"),
    label: String(data.get("label") || "").trim(),
  };
}

function fillForm(params) {
  form.elements.ref.value = params.get("ref") || "";
  form.elements.k.value = params.get("k") || "10";
  form.elements.metric.value = params.get("metric") || "cosine";
  form.elements.label.value = params.get("label") || "";
}

function urlFor(ref, opts) {
  const query = new URLSearchParams();
  if (ref) query.set("ref", ref);
  query.set("k", opts.k);
  query.set("metric", opts.metric);
  query.set("label", opts.label);
  return `/?${query}`;
}

// A new history entry per search, but not twice for the same one. An upload search's entry says so in its
// state (the address cannot hold the image), so that a reload of it can ask for the image again.
function remember(url, state = null) {
  if (url !== location.pathname + location.search) history.pushState(state, "", url);
  else history.replaceState(state, "", url);
}

async function run(request, describeQuery) {
  if (pending) pending.abort();
  const controller = new AbortController();
  pending = controller;
  setStatus(statusBox, "Searching…");
  try {
    const answer = await request(controller.signal);
    setStatus(statusBox, "");
    render(answer, describeQuery);
  } catch (err) {
    if (err.name === "AbortError") return;
    results.replaceChildren();
    showError(statusBox, err);
  } finally {
    if (pending === controller) pending = null;
  }
}

function searchByRef(ref, push) {
  const opts = options();
  lastUpload = null;
  if (push) remember(urlFor(ref, opts));
  return run(
    (signal) => api("/search", { params: { ref, ...opts }, signal }),
    (answer) => [
      el("img", { class: "query-thumb", src: thumbnailUrl(answer.query.id), alt: answer.query.filename }),
      el("span", {}, "Images most similar to "),
      el("a", { href: `/library/${answer.query.id}` }, answer.query.filename),
    ],
  );
}

function searchByUpload(file) {
  const opts = options();
  lastUpload = file;
  form.elements.ref.value = "";
  remember(urlFor("", opts), { upload: file.name || "pasted-image.png" });
  if (lastPreview) URL.revokeObjectURL(lastPreview);
  const preview = URL.createObjectURL(file);
  lastPreview = preview;
  return run(
    (signal) => {
      const body = new FormData();
      body.append("file", file, file.name || "pasted-image.png");
      return api("/search", { method: "POST", params: opts, body, signal });
    },
    (answer) => [
      el("img", { class: "query-thumb", src: preview, alt: answer.query.filename }),
      el("span", {}, "Images most similar to the uploaded "),
      el("strong", {}, answer.query.filename),
    ],
  );
}

function render(answer, describeQuery) {
  const opts = options();
  // The words in one box beside the thumbnail, so that a long name wraps as text, not as a column of its own.
  const [thumb, ...words] = describeQuery(answer);
  queryBox.replaceChildren(thumb, el("span", { class: "query-text" }, words, el("span", { class: "muted" }, ` · ${answer.metric}`)));
  if (!answer.results.length) {
    results.replaceChildren(
      el("p", { class: "empty" }, opts.label ? `No stored image is labelled “${opts.label}”.` : "The library has no other images yet."),
    );
    return;
  }
  results.replaceChildren(
    ...answer.results.map((hit, rank) =>
      imageCard({
        ...hit,
        href: searchHref(hit.id, opts),
        detailHref: `/library/${hit.id}`,
        badge: `${rank + 1}`,
        extra: el(
          "span",
          { class: "score" },
          scoreText(answer.metric, hit.score),
          // Stored copies of the query (the calibrated near-duplicate level) come first, marked.
          hit.duplicate ? el("span", { class: "copy", title: "a near-duplicate of the query" }, " · copy") : null,
        ),
      }),
    ),
  );
}

function restoreFromUrl() {
  const params = new URLSearchParams(location.search);
  fillForm(params);
  const ref = params.get("ref");
  const uploaded = history.state && history.state.upload;
  if (ref) {
    searchByRef(ref, false);
  } else if (!lastUpload) {
    queryBox.replaceChildren();
    results.replaceChildren();
    // A reload (or a later visit) of an upload search: the page never keeps the image, so it asks again.
    if (uploaded) setStatus(statusBox, `The uploaded “${uploaded}” is not kept by the page: drop, paste or pick it again to search.`, "info");
    else setStatus(statusBox, "");
  }
}

// Enter in the k or label field fires both "change" and "submit": the search waits for the end of the
// event, so that one submit sends one request (and an uploaded query is uploaded once).
let queued = 0;
function searchSoon(explicit) {
  clearTimeout(queued);
  queued = setTimeout(() => {
    const ref = form.elements.ref.value.trim();
    if (ref) searchByRef(ref, true);
    else if (lastUpload) searchByUpload(lastUpload);
    else if (explicit) setStatus(statusBox, "Choose an image to search with: drop, paste or pick one, or name a stored image.", "error");
  }, 0);
}
form.addEventListener("submit", (event) => {
  event.preventDefault();
  searchSoon(true);
});

// Changing k, metric or label redoes the current search.
for (const name of ["k", "metric", "label"]) {
  form.elements[name].addEventListener("change", () => searchSoon(false));
}

// A click on a result opens it in the viewer; its "Find similar" searches by it without reloading the page
// (the picture's link searches by it without the script too).
attachViewer(results, {
  statusBox,
  findSimilar(id) {
    form.elements.ref.value = String(id);
    searchByRef(String(id), true);
    window.scrollTo({ top: 0, behavior: "smooth" });
  },
});

function firstImage(files) {
  return Array.from(files || []).find((f) => f.type.startsWith("image/") || /\.(jpe?g|png|webp|gif|bmp|tiff?|heic|heif|hif|avif|dng|cr2|cr3|nef|arw)$/i.test(f.name));
}

function notAnImage(files) {
  const name = files && files[0] ? `“${files[0].name}” is` : "That is";
  setStatus(statusBox, `${name} not an image file: choose a JPEG, PNG, WebP, GIF, TIFF, HEIC or camera raw image.`, "error");
}

fileInput.addEventListener("change", () => {
  const file = firstImage(fileInput.files);
  if (file) searchByUpload(file);
  else if (fileInput.files && fileInput.files.length) notAnImage(fileInput.files);
  fileInput.value = "";
});

drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = firstImage(event.dataTransfer.files);
  if (file) searchByUpload(file);
  else notAnImage(event.dataTransfer.files);
});
drop.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    fileInput.click();
  }
});

document.addEventListener("paste", (event) => {
  if (event.target.closest && event.target.closest("input")) return;
  const file = firstImage(event.clipboardData && event.clipboardData.files);
  if (file) {
    event.preventDefault();
    searchByUpload(file);
  }
});

window.addEventListener("popstate", restoreFromUrl);
restoreFromUrl();
showLibraryCount().then((stats) => {
  if (stats && stats.count === 0 && !form.elements.ref.value) {
    setStatus(statusBox, "The library is empty: add images first (Add images, above).", "ok");
  }
});
