/* Create Ensemble form: once a base model is ticked, models of other compatibility groups are greyed
   out with the reason they differ (the reasons come from the server, in #group-reasons). */
(function () {
  "use strict";
  var form = document.getElementById("ensemble-form");
  var source = document.getElementById("group-reasons");
  if (!form || !source) { return; }
  var reasons = JSON.parse(source.textContent || "{}");
  var boxes = Array.prototype.slice.call(form.querySelectorAll("input[name=base_models]"));

  function update() {
    var first = boxes.filter(function (b) { return b.checked; })[0];
    boxes.forEach(function (box) {
      var item = box.closest(".candidate");
      var reason = item.querySelector(".reason");
      var fixed = reason.getAttribute("data-default");
      var why = "";
      if (first && box.getAttribute("data-group") !== first.getAttribute("data-group")) {
        why = (reasons[first.getAttribute("data-group")] || {})[box.getAttribute("data-group")] || "not compatible";
        why += " from " + first.value;
      }
      box.disabled = Boolean(why) || (Boolean(fixed) && !first);
      if (why) { box.checked = false; }
      item.classList.toggle("disabled", box.disabled);
      reason.textContent = why || (box.disabled ? fixed : "");
    });
  }
  boxes.forEach(function (box) { box.addEventListener("change", update); });
  update();
})();
