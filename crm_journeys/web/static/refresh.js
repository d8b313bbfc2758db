// Reloads a page that shows work in progress (the sandbox CRM, a running backtest) every
// ``data-refresh-seconds`` (default 1), unless the reader is typing in a field. Replaces
// <meta http-equiv="refresh">, which screen readers announce and axe flags as critical.
const holder = document.querySelector("[data-refresh-seconds]");
const seconds = Number(holder?.dataset.refreshSeconds || 1);
setInterval(() => {
  const busy = document.activeElement && document.activeElement.matches("input, textarea, select");
  if (!busy && !document.hidden) window.location.reload();
}, seconds * 1000);
