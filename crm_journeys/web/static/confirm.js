// Asks before a destructive form is sent: every submit button marked ``data-confirm`` (or
// styled ``danger``) needs a yes first. Plain window.confirm: native, keyboard- and
// screen-reader-friendly, and nothing to style at 390 px.
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  if (!button || !(button.dataset.confirm || button.classList.contains("danger"))) return;
  const message = button.dataset.confirm || `${button.textContent.trim()}? This cannot be undone.`;
  if (!window.confirm(message)) event.preventDefault();
}, true);
