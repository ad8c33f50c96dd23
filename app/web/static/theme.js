// Light or dark: the system's choice unless the person chose with the header's toggle, which is remembered on
// this browser. A classic script loaded in <head>, so the chosen theme is set before the page is first drawn.
(() => {
  const KEY = "imgsim-theme";
  const root = document.documentElement;
  const system = window.matchMedia("(prefers-color-scheme: dark)");

  const stored = () => {
    try {
      const value = localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : null;
    } catch {
      return null; // storage refused (a locked-down browser): follow the system
    }
  };
  const current = () => stored() || (system.matches ? "dark" : "light");

  function apply() {
    const chosen = stored();
    if (chosen) root.dataset.theme = chosen;
    else delete root.dataset.theme;
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    const dark = current() === "dark";
    button.setAttribute("aria-pressed", String(dark));
    button.title = dark ? "Switch to the light theme" : "Switch to the dark theme";
  }

  apply();
  system.addEventListener("change", apply);
  // Another tab of the page chose: follow it.
  window.addEventListener("storage", (event) => event.key === KEY && apply());
  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    button.hidden = false;
    button.addEventListener("click", () => {
      try {
        localStorage.setItem(KEY, current() === "dark" ? "light" : "dark");
      } catch {
        root.dataset.theme = current() === "dark" ? "light" : "dark"; // this page only
      }
      apply();
    });
    apply();
  });
})();
