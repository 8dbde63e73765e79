/* The config form: show only the model types of the chosen task (the server validates anyway). */
(function () {
  var task = document.getElementById("task"), model = document.getElementById("model_type");
  if (!task || !model) return;
  function sync() {
    var groups = model.querySelectorAll("optgroup");
    groups.forEach(function (g) {
      var on = g.dataset.task === task.value;
      g.hidden = !on;
      g.querySelectorAll("option").forEach(function (o) { o.disabled = !on; });
    });
    var chosen = model.options[model.selectedIndex];
    if (!chosen || chosen.disabled) {
      var same = model.querySelector('optgroup[data-task="' + task.value + '"] option[value="' + (chosen ? chosen.value : "") + '"]');
      var first = same || model.querySelector('optgroup[data-task="' + task.value + '"] option');
      if (first) first.selected = true;
    }
  }
  task.addEventListener("change", sync);
  sync();
})();
