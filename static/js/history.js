/* History's request view: a request row's "N events" button shows or hides the row of its
   events below it (templates/audit/_history_requests.html). No inline script (CSP). */
(function () {
  "use strict";

  function toggle(button) {
    var target = document.getElementById(button.getAttribute("aria-controls"));
    if (!target) {
      return;
    }
    var open = button.getAttribute("aria-expanded") === "true";
    button.setAttribute("aria-expanded", open ? "false" : "true");
    target.hidden = open;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-toggle-events]");
    if (button) {
      toggle(button);
    }
  });
})();
