/* Live job progress: every [data-job-url] element polls its job (GET /api/jobs/<id>) until it ends,
   then goes to data-done-url (or reloads). No framework; the page works without it (reload by hand). */
(function () {
  "use strict";
  var INTERVAL_MS = 700;

  function watch(el) {
    var url = el.getAttribute("data-job-url");
    var fill = el.querySelector(".progress-fill");
    var pct = el.querySelector(".progress-pct");
    var message = el.querySelector(".progress-message");
    var badge = el.querySelector(".badge");

    function show(job) {
      var value = Math.round((job.progress || 0) * 100);
      fill.style.width = value + "%";
      el.setAttribute("aria-valuenow", String(value));
      el.setAttribute("data-status", job.status);
      el.className = "job-progress status-" + job.status;
      pct.textContent = value + "%";
      message.textContent = job.message || "";
      if (badge) { badge.textContent = job.status; badge.className = "badge badge-" + job.status; }
      details(job);
    }

    function tick() {
      fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json().then(function (body) { return [r.ok, body]; }); })
        .then(function (res) {
          if (!res[0]) {
            message.textContent = (res[1].error && res[1].error.message) || "could not read the job";
            el.setAttribute("data-status", "unknown");
            return;
          }
          var job = res[1];
          show(job);
          if (job.status === "succeeded" || job.status === "failed") {
            var target = el.getAttribute("data-done-url");
            setTimeout(function () {
              var link = document.createElement("a");
              link.href = target || window.location.href;
              // same page (maybe another #fragment): assigning would only scroll, so reload
              if (link.pathname === window.location.pathname && link.search === window.location.search) {
                window.location.reload();
              } else {
                window.location.assign(link.href);
              }
            }, 400);
          } else {
            setTimeout(tick, INTERVAL_MS);
          }
        })
        .catch(function () { setTimeout(tick, INTERVAL_MS * 3); });
    }
    setTimeout(tick, INTERVAL_MS);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return "—"; }
    if (seconds < 60) { return (seconds < 10 ? seconds.toFixed(2) : seconds.toFixed(1)) + " s"; }
    var minutes = Math.floor(Math.round(seconds) / 60), rest = Math.round(seconds) % 60;
    return minutes + " min " + (rest < 10 ? "0" : "") + rest + " s";
  }

  function timeS(isoText) {  // "2026-11-23T10:15:09Z" -> "2026-11-23 10:15:09 UTC", as the server writes it
    return isoText ? isoText.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, "") + " UTC" : "—";
  }

  // The job page: elapsed time, time left and the step table follow the live bar.
  function details(job) {
    var elapsed = document.getElementById("job-elapsed");
    var eta = document.getElementById("job-eta");
    var steps = document.querySelector("#job-steps tbody");
    if (elapsed) { elapsed.textContent = duration(job.elapsed_s); }
    if (eta) {
      eta.textContent = job.eta_s !== null && job.eta_s !== undefined ? "about " + duration(job.eta_s)
        : (job.status === "running" || job.status === "queued" ? "not known yet" : "—");
    }
    if (steps && job.steps) {
      while (steps.firstChild) { steps.removeChild(steps.firstChild); }
      job.steps.forEach(function (step) {
        var row = document.createElement("tr");
        var cells = [timeS(step.at), step.progress === null || step.progress === undefined ? "—"
          : Math.round(step.progress * 100) + "%", step.message || ""];
        cells.forEach(function (text, i) {
          var cell = document.createElement("td");
          if (i === 1) { cell.className = "num"; }
          cell.textContent = text;
          row.appendChild(cell);
        });
        steps.appendChild(row);
      });
    }
  }

  document.querySelectorAll("[data-job-url]").forEach(watch);
})();
