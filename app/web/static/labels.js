// Autocomplete for a label field: as one types, a <datalist> offers the words GET /labels accepts ("dog",
// "golden retriever"), each with how many ImageNet classes it names.

import { api } from "./api.js";
import { el } from "./ui.js";

const WAIT_MS = 150; // typing pauses this long before asking, so a fast typist sends one request

export function suggestLabels(input) {
  const list = el("datalist", { id: `${input.name}-words` });
  input.after(list);
  input.setAttribute("list", list.id);
  input.setAttribute("autocomplete", "off");
  let timer = 0;
  let asked = "";
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const prefix = input.value.trim();
      if (!prefix || prefix === asked) return;
      asked = prefix;
      try {
        const answer = await api("/labels", { params: { prefix, limit: 20 } });
        if (asked !== prefix) return; // a later keystroke asked again
        list.replaceChildren(
          ...answer.labels.map((w) =>
            el("option", { value: w.word, label: w.classes > 1 ? `${w.word} (${w.classes} classes)` : w.word }),
          ),
        );
      } catch {
        list.replaceChildren(); // suggestions are a help: the filter itself reports errors
      }
    }, WAIT_MS);
  });
}
