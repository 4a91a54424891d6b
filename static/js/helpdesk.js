/*
 * Helpdesk pages: keyboard work on search results, error fragments shown by htmx, the copy
 * button of a Temporary Access Pass, and one-click submit buttons. Loaded as a file: the
 * Content-Security-Policy forbids inline script.
 */
(function () {
  "use strict";

  function resultLinks() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-result-list] [data-result]"));
  }

  // Arrow keys move from the search box into the results and between them; Escape returns.
  document.addEventListener("keydown", function (event) {
    var input = document.getElementById("q");
    if (!input) {
      return;
    }
    var links = resultLinks();
    var index = links.indexOf(document.activeElement);
    if (event.key === "ArrowDown") {
      if (document.activeElement === input && links.length) {
        links[0].focus();
        event.preventDefault();
      } else if (index >= 0 && index < links.length - 1) {
        links[index + 1].focus();
        event.preventDefault();
      }
    } else if (event.key === "ArrowUp" && index >= 0) {
      (index === 0 ? input : links[index - 1]).focus();
      event.preventDefault();
    } else if (event.key === "Escape" && index >= 0) {
      input.focus();
      event.preventDefault();
    }
  });

  // The search answers 400 (too long), 503 (throttled) and 502 (Graph failed) with a fragment
  // that explains the problem: show it instead of dropping it as htmx does for errors.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var detail = event.detail;
    if (detail.target && detail.target.id === "results" && detail.xhr.status >= 400) {
      detail.shouldSwap = true;
      detail.isError = false;
    }
  });

  // Copy a Temporary Access Pass with the Clipboard API; say what happened next to the button.
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy-target]") : null;
    if (!button) {
      return;
    }
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    var status = button.parentNode.querySelector("[data-copy-status]");
    if (!source) {
      return;
    }
    // A pass shown in groups carries its plain value: the gaps between groups are not copied.
    var text = button.getAttribute("data-copy-value") || source.textContent.trim();
    var say = function (message) {
      if (status) {
        status.textContent = message;
      }
    };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(
        function () { say("Copied."); },
        function () { say("Copy failed: select the pass and copy it by hand."); }
      );
    } else {
      say("This browser cannot copy here: select the pass and copy it by hand.");
    }
  });

  // A submit button that has been pressed stays pressed: a second click sends nothing new
  // (the server would answer with the same request anyway, thanks to the idempotency token).
  document.addEventListener("submit", function (event) {
    var button = event.target.querySelector("[data-submit-once]");
    if (button) {
      window.setTimeout(function () { button.disabled = true; }, 0);
    }
  });
})();
