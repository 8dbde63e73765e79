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
  // meta-models: only those for the task of the first ticked base model
  var meta = document.getElementById("meta_model");
  function narrowMeta() {
    if (!meta) { return; }
    var first = boxes.filter(function (b) { return b.checked; })[0];
    var task = first ? first.getAttribute("data-task") : null;
    var groups = Array.prototype.slice.call(meta.querySelectorAll("optgroup"));
    groups.forEach(function (g) {
      var on = !task || g.getAttribute("data-task") === task;
      g.hidden = !on;
      Array.prototype.forEach.call(g.querySelectorAll("option"), function (o) { o.disabled = !on; });
    });
    var chosen = meta.options[meta.selectedIndex];
    if (chosen && chosen.disabled) {
      // the task changed: the same meta-model if this task has it, else the task's default (scikit-learn's)
      var on = Array.prototype.filter.call(meta.options, function (o) { return !o.disabled; });
      var same = on.filter(function (o) { return o.value === chosen.value && !chosen.hasAttribute("data-default"); })[0];
      var byDefault = on.filter(function (o) { return o.hasAttribute("data-default"); })[0];
      var firstOn = same || byDefault || on[0];
      if (firstOn) { firstOn.selected = true; }
    }
  }
  boxes.forEach(function (box) { box.addEventListener("change", update); box.addEventListener("change", narrowMeta); });
  narrowMeta();
  update();
})();
