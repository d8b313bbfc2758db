// Behaviour of the server-rendered pages, kept out of the HTML so the Content-Security-Policy
// can refuse every inline script and event-handler attribute (see web/headers.py).
document.addEventListener("click", function (event) {
  var target = event.target;
  if (target instanceof HTMLInputElement && target.hasAttribute("data-select-on-click")) {
    target.select();  // a URL to copy: one click selects all of it
  }
});
