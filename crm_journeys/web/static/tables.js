// A table wider than a phone scrolls sideways inside itself (app.css); a scrolling region
// must be reachable by keyboard and named, so each such table gets tabindex and a label.
function markScrolling() {
  for (const table of document.querySelectorAll("main table")) {
    const scrolls = table.scrollWidth > table.clientWidth + 1;
    if (scrolls && !table.hasAttribute("tabindex")) {
      table.setAttribute("tabindex", "0");
      table.setAttribute("role", "region");
      const heading = table.previousElementSibling?.matches("h1, h2, h3") ? table.previousElementSibling.textContent : "";
      table.setAttribute("aria-label", `${heading || document.title} (table, scrolls sideways)`);
    }
  }
}
markScrolling();
window.addEventListener("resize", markScrolling);
