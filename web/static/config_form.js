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

/* Upload a CSV and the feature picker (configs/form.html). The upload posts to /api/data/upload and fills
   Training CSV; whenever Training CSV is set, GET /api/data/columns lists the file's columns with their
   detected types: checkboxes write the Features field, the select writes the Target field. Without
   JavaScript the upload form posts to /data/upload and both fields are typed by hand. */
(function () {
  var csv = document.getElementById("training_csv"), features = document.getElementById("features"),
    target = document.getElementById("target"), picker = document.getElementById("feature-picker");
  if (!csv || !features || !target || !picker) return;
  var list = document.getElementById("picker-columns"), targetPick = document.getElementById("target_pick"),
    rowsNote = document.getElementById("picker-rows"), pickerError = document.getElementById("picker-error"),
    uploadForm = document.getElementById("upload-form"), fileInput = document.getElementById("upload_file"),
    status = document.getElementById("upload-status");
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var shown = null, seq = 0, timer = null;

  function typed() {
    return features.value.split(/[,\n\r]+/).map(function (s) { return s.trim(); }).filter(Boolean);
  }
  function boxes() { return Array.prototype.slice.call(list.querySelectorAll("input.feature-pick")); }
  function message(body, response) {
    return body && body.error && body.error.message ? body.error.message : response.status + " " + response.statusText;
  }
  function call(url, options) {
    options.credentials = "same-origin";
    options.headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        return { response: response, body: body };
      });
    });
  }

  function writeFeatures() {
    var all = boxes(), known = {};
    all.forEach(function (b) { known[b.value] = true; });
    var kept = typed().filter(function (f) { return !known[f]; });  // names that are not columns: the server names them
    var picked = all.filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
    features.value = kept.concat(picked).join("\n");
  }
  function syncTarget() {  // the target column cannot also be a feature
    var name = target.value.trim(), changed = false;
    boxes().forEach(function (b) {
      var isTarget = b.value === name;
      if (isTarget && b.checked) { b.checked = false; changed = true; }
      b.disabled = isTarget;
      b.closest("label").classList.toggle("is-target", isTarget);
    });
    targetPick.value = Array.prototype.some.call(targetPick.options, function (o) { return o.value === name; }) ? name : "";
    if (changed) writeFeatures();
  }

  function show(info) {
    shown = info.path;
    var chosen = typed();
    list.textContent = "";
    targetPick.length = 1;
    info.columns.forEach(function (c) {
      var label = document.createElement("label"), box = document.createElement("input"),
        name = document.createElement("span"), kind = document.createElement("span");
      label.className = "picker-column";
      box.type = "checkbox"; box.className = "feature-pick"; box.value = c.name;
      box.checked = chosen.indexOf(c.name) >= 0;
      box.addEventListener("change", writeFeatures);
      name.className = "picker-name"; name.textContent = c.name;
      kind.className = "tag picker-type"; kind.dataset.type = c.type || ""; kind.textContent = c.type || "no rows";
      label.append(box, " ", name, " ", kind);
      list.appendChild(label);
      targetPick.add(new Option(c.name + (c.type ? " (" + c.type + ")" : ""), c.name));
    });
    rowsNote.textContent = "(" + info.columns.length + " columns, " + (info.rows_exact ? "" : "about ") +
      info.rows.toLocaleString() + " rows)";
    pickerError.hidden = true;
    picker.hidden = false;
    syncTarget();
  }
  function fail(text) {
    picker.hidden = true;
    pickerError.textContent = text;
    pickerError.hidden = false;
  }

  function load() {
    var path = csv.value.trim();
    if (path === shown) return;
    var mine = ++seq;
    if (!path) { shown = null; picker.hidden = true; pickerError.hidden = true; return; }
    call(picker.dataset.columnsUrl + "?path=" + encodeURIComponent(path), {}).then(function (r) {
      if (mine !== seq) return;  // a newer path was typed meanwhile
      if (r.response.ok) show(r.body); else { shown = null; fail("No column list: " + message(r.body, r.response)); }
    }).catch(function () { if (mine === seq) fail("No column list: the server did not answer."); });
  }

  csv.addEventListener("change", load);
  csv.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(load, 500); });
  target.addEventListener("input", syncTarget);
  targetPick.addEventListener("change", function () {
    if (targetPick.value) target.value = targetPick.value;
    syncTarget();
  });
  if (csv.value.trim()) load();

  if (!uploadForm || !fileInput || !status) return;
  uploadForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var file = fileInput.files[0];
    status.classList.remove("is-error");
    if (!file) { status.textContent = "Choose a file first."; status.classList.add("is-error"); return; }
    var data = new FormData();
    data.append("file", file);
    status.textContent = "Uploading " + file.name + "…";
    call(uploadForm.dataset.apiUrl, { method: "POST", body: data, headers: { "X-CSRFToken": csrf } }).then(function (r) {
      if (!r.response.ok) {
        status.textContent = "Not uploaded: " + message(r.body, r.response);
        status.classList.add("is-error");
        return;
      }
      ++seq;  // a column list still on its way is for the old path
      csv.value = r.body.path;
      status.textContent = "Uploaded " + r.body.path + ": Training CSV is filled in; pick the features below.";
      show(r.body);
    }).catch(function () {
      status.textContent = "Not uploaded: the server did not answer.";
      status.classList.add("is-error");
    });
  });
})();
