/* Click (or Enter on) a truncated value with data-copy (e.g. a SHA-256) to copy the whole value. */
(function () {
  "use strict";
  function copy(el) {
    var value = el.getAttribute("data-copy");
    if (!value || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(value).then(function () {
      el.classList.add("copied");
      setTimeout(function () { el.classList.remove("copied"); }, 1500);
    }, function () { /* no clipboard permission: the title still shows the value */ });
  }
  document.addEventListener("click", function (e) {
    var el = e.target.closest && e.target.closest("[data-copy]");
    if (el) { copy(el); }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && e.target.hasAttribute && e.target.hasAttribute("data-copy")) { copy(e.target); }
  });
})();
