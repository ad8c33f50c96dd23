// Labels: the ImageNet classes among the stored images' top predictions (GET /labels/library), the most
// frequent first, each with how many images have it and a link to the library filtered by it.

import { api } from "./api.js";
import { el, formatCount, setStatus, showError, showLibraryCount } from "./ui.js";

const statusBox = document.getElementById("status");
const summary = document.getElementById("summary");
const list = document.getElementById("labels");

const plural = (n, word) => `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;

// The class's whole name ("tabby, tabby cat") names that class alone in the library's label filter.
const libraryHref = (label) => `/library?${new URLSearchParams({ label })}`;

async function load() {
  setStatus(statusBox, "Loading…");
  let answer;
  try {
    answer = await api("/labels/library");
  } catch (err) {
    showError(statusBox, err);
    return;
  }
  setStatus(statusBox, "");
  summary.textContent = answer.labels.length ? plural(answer.labels.length, "label") : "";
  if (!answer.labels.length) {
    list.replaceChildren(el("li", { class: "empty" }, "No labels yet: the library is empty."));
    return;
  }
  list.replaceChildren(
    ...answer.labels.map((item) =>
      el(
        "li",
        { dataset: { classIndex: item.class_index } },
        el(
          "a",
          { href: libraryHref(item.label), title: `Show the ${plural(item.images, "image")} labelled ${item.label}` },
          el("span", { class: "label-name" }, item.label),
          el("span", { class: "label-count" }, formatCount(item.images)),
        ),
      ),
    ),
  );
}

load();
showLibraryCount();
