/*
 * The person page's panels (mfa/panels.py). A panel is an element with data-panel-url and
 * data-panel-state: "loading" is fetched at once, "waiting" (for Graph's budget, or for a sync)
 * and "partial" (shown, one part still waiting) after data-retry-after seconds, and replaced by
 * the answer; "filled" and "error" end the loop. "idle" waits for the agent: a link marked
 * data-panel-load inside a panel (also in a filled one: "Show the default method") loads its
 * href into the panel in place, and the panel goes on from the answer.
 * Without this script each panel offers a link instead. A file, not inline: the CSP forbids
 * inline script.
 */
(function () {
  "use strict";

  var MAX_FAILURES = 4;

  function fail(panel, failures) {
    if (failures >= MAX_FAILURES) {
      var note = panel.querySelector("[data-panel-loading]") || panel.appendChild(document.createElement("p"));
      note.className = "notice notice--error";
      note.textContent = "This panel could not be loaded. ";
      var link = document.createElement("a");
      link.href = window.location.pathname;
      link.textContent = "Reload the page";
      note.appendChild(link);
      return;
    }
    // 2, 4, 8 s: the portal or the network had a moment; the budget's own waits come as panels.
    window.setTimeout(function () { load(panel, failures + 1); }, 1000 * Math.pow(2, failures + 1));
  }

  function load(panel, failures) {
    var src = panel.getAttribute("data-panel-url");
    window.fetch(src, { headers: { "HX-Request": "true" }, credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        // A lapsed session is redirected to sign in: that page is not a panel.
        if (!response.ok || response.redirected) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html.trim();
        var fresh = holder.querySelector("[data-panel]");
        if (!fresh || !panel.parentNode) {
          throw new Error("not a panel");
        }
        panel.parentNode.replaceChild(fresh, panel);
        schedule(fresh);
      })
      .catch(function () { fail(panel, failures); });
  }

  function schedule(panel) {
    var state = panel.getAttribute("data-panel-state");
    if (!panel.getAttribute("data-panel-url") ||
        (state !== "loading" && state !== "waiting" && state !== "partial")) {
      return;
    }
    var seconds = state === "loading" ? 0 : parseFloat(panel.getAttribute("data-retry-after") || "1");
    if (!(seconds > 0)) {
      load(panel, 0);
      return;
    }
    window.setTimeout(function () { load(panel, 0); }, seconds * 1000);
  }

  // Asked for by the agent: one click, one fetch (a second click while it loads does nothing).
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-panel-load]") : null;
    var panel = link ? link.closest("[data-panel]") : null;
    if (!panel) {
      return;
    }
    event.preventDefault();
    if (panel.getAttribute("data-panel-state") === "loading") {
      return;
    }
    panel.setAttribute("data-panel-url", link.getAttribute("href"));
    panel.setAttribute("data-panel-state", "loading");
    link.replaceWith(document.createTextNode("Loading from Graph…"));
    load(panel, 0);
  });

  Array.prototype.forEach.call(document.querySelectorAll("[data-panel-url]"), schedule);
})();
