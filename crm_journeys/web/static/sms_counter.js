/* The SMS step's live character and segment count, and its preview.
 *
 * Mirrors crm_journeys/sms/segments.py (GSM 03.38 basic and extension tables; GSM-7 is
 * 160 septets in one segment, 153 per part once split; UCS-2 is 70 UTF-16 units, 67 per
 * part; an escape pair or a surrogate pair is never split). The page shows the server's
 * count first, so without this script the figure is still right as of the last save.
 * Merge fields ({{ contact.first_name }}) are previewed with sample values and counted as
 * such: the text sent to a contact may be longer or shorter.
 */
(function () {
  "use strict";
  var BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var EXTENSION = "\f^{}\\[~]|€";
  var SAMPLE = { first_name: "Ada", last_name: "Lovelace", email: "ada@example.com", company: "Analytical Engines" };
  var MAX_SEGMENTS = 10;

  function split(units, single, perPart) {
    var total = units.reduce(function (a, b) { return a + b; }, 0);
    if (total === 0) { return 0; }
    if (total <= single) { return 1; }
    var parts = 1, used = 0;
    units.forEach(function (size) {
      if (used + size > perPart) { parts += 1; used = 0; }
      used += size;
    });
    return parts;
  }

  function count(text) {
    var chars = Array.from(text);
    var gsm = chars.every(function (c) { return BASIC.indexOf(c) >= 0 || EXTENSION.indexOf(c) >= 0; });
    if (gsm) {
      var septets = chars.map(function (c) { return EXTENSION.indexOf(c) >= 0 ? 2 : 1; });
      return { encoding: "GSM-7", characters: chars.length, segments: split(septets, 160, 153) };
    }
    var units = chars.map(function (c) { return c.length; });  // UTF-16 code units
    return { encoding: "UCS-2", characters: chars.length, segments: split(units, 70, 67) };
  }

  function preview(template) {
    return template.replace(/\{\{\s*contact\.(?:fields\.)?([A-Za-z0-9_]+)\s*\}\}/g, function (_, name) {
      return SAMPLE[name] !== undefined ? SAMPLE[name] : "[" + name + "]";
    });
  }

  function bind(area) {
    var box = document.getElementById(area.getAttribute("data-sms-counter"));
    var bubble = document.getElementById(area.getAttribute("data-sms-preview"));
    function update() {
      var text = preview(area.value);
      var n = count(text);
      box.querySelector('[data-part="characters"]').textContent = String(n.characters);
      box.querySelector('[data-part="encoding"]').textContent = n.encoding;
      box.querySelector('[data-part="segments"]').textContent = String(n.segments);
      var note = n.segments > MAX_SEGMENTS ? "more than " + MAX_SEGMENTS + " segments: the send will fail"
        : n.encoding === "UCS-2" ? "a character outside GSM-7 makes every segment shorter" : "";
      box.querySelector('[data-part="note"]').textContent = note;
      box.classList.toggle("over", n.segments > MAX_SEGMENTS);
      bubble.textContent = text;
    }
    area.addEventListener("input", update);
    update();
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("textarea[data-sms-counter]"), bind);
  });
}());
