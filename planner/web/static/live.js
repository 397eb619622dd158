// planner dashboard: live updates of running runs, without reloading the page.
// Listens to the server-sent events of /api/events (event "progress": the document of
// planner.service.dashboard.live, {"now", "runs": [{"pipeline", "state", "run_id",
// "progress"}]}; event "problem": the history cannot be read); when the
// stream cannot be opened it polls /api/pipelines every 5 s instead. Progress bars, ETA
// and counts change in place; when a run starts or ends, the page's <main> is fetched
// again and swapped in (no full reload).
(function () {
  "use strict";
  var body = document.body;
  if (!body || !body.dataset.live) return;
  var root = body.dataset.root || "";
  var status = document.getElementById("live-status");
  var POLL_MS = 5000;
  var REDRAW_MS = 5000; // a running run's page redraws its chart this often
  var lastRefresh = 0;
  var refreshing = false;
  var pollTimer = null;

  function say(text, cls) {
    if (!status) return;
    status.textContent = text;
    status.className = "live-status " + cls;
  }

  // The same text as planner.units.format_duration.
  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
    var sign = seconds < 0 ? "-" : "";
    var s = Math.abs(seconds);
    if (s < 1) return sign + Math.round(s * 1000) + "ms";
    if (s < 60) return sign + s.toFixed(1) + "s";
    if (s < 3600) return sign + Math.floor(s / 60) + "m " + Math.floor(s % 60) + "s";
    if (s < 86400 * 3) return sign + (s / 3600).toFixed(1) + "h";
    return sign + (s / 86400).toFixed(1) + "d";
  }

  function clock(iso) {
    return new Date(iso).toISOString().slice(11, 19) + " UTC";
  }

  function setText(box, selector, text) {
    var el = box.querySelector(selector);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function paint(box, p) {
    var bar = box.querySelector("progress");
    if (bar) {
      if (p.percent === null || p.percent === undefined) bar.removeAttribute("value");
      else bar.value = p.percent;
      bar.textContent = p.percent === null ? "" : p.percent.toFixed(0) + "%";
    }
    setText(box, ".percent", p.percent === null || p.percent === undefined ? "—" : p.percent.toFixed(0) + "%");
    var t = p.tasks || {};
    setText(box, ".tasks", t.done + " of " + t.total + " tasks done, " + t.running + " running");
    setText(box, ".elapsed", duration(p.elapsed_s));
    var eta = box.querySelector(".eta");
    if (eta) eta.textContent = p.eta ? clock(p.eta) : "unknown";
    setText(box, ".remaining", p.remaining_s === null || p.remaining_s === undefined ? "" : "(in " + duration(p.remaining_s) + ")");
    var late = p.late ? p.late.length : 0;
    setText(box, ".late-count", late ? "· " + late + " late" : "");
    var wrap = box.querySelector(".progress");
    if (wrap) wrap.classList.toggle("late", late > 0);
  }

  // Fetch this page again and swap its <main> in, keeping open <details> open.
  function refresh() {
    var now = Date.now();
    if (refreshing || now - lastRefresh < 3000) return;
    refreshing = true;
    lastRefresh = now;
    var main = document.getElementById("main");
    var open = Array.prototype.map.call(main.querySelectorAll("details[id]"), function (d) {
      return d.id + ":" + d.open;
    });
    fetch(location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        if (!fresh) return;
        main.innerHTML = fresh.innerHTML;
        open.forEach(function (pair) {
          var parts = pair.split(":");
          var d = document.getElementById(parts[0]);
          if (d) d.open = parts[1] === "true";
        });
        document.dispatchEvent(new CustomEvent("planner:refreshed"));
      })
      .catch(function () {})
      .then(function () { refreshing = false; });
  }

  function update(runs) {
    var byPipeline = {};
    var byRun = {};
    (runs || []).forEach(function (r) {
      byPipeline[r.pipeline] = r;
      if (r.run_id) byRun[r.run_id] = r;
    });
    var stale = false;
    document.querySelectorAll("[data-live-pipeline]").forEach(function (box) {
      var r = byPipeline[box.dataset.livePipeline];
      var now = (r && r.run_id ? r.run_id : "") + "|" + (r ? r.state : "");
      var shown = (box.dataset.liveRun || "") + "|" + (box.dataset.liveState || "");
      if (now !== shown) stale = true; // a run started or ended: redraw the page
      else if (r && r.progress) paint(box, r.progress);
    });
    document.querySelectorAll("[data-live-run]:not([data-live-pipeline])").forEach(function (box) {
      var r = byRun[box.dataset.liveRun];
      if (!r || !r.progress) stale = true; // the run has ended: redraw the page
      else paint(box, r.progress);
    });
    if (body.dataset.page === "overview") {
      Object.keys(byPipeline).forEach(function (name) {
        if (!document.querySelector('[data-live-pipeline="' + CSS.escape(name) + '"]')) stale = true;
      });
    }
    if (stale) refresh();
  }

  function poll() {
    fetch(root + "/api/pipelines", { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (doc) {
        say("polling", "polling");
        update((doc.pipelines || []).filter(function (p) {
          return p.state === "running" || p.state === "starting";
        }));
      })
      .catch(function () { say("offline", "off"); });
  }

  function startPolling() {
    if (pollTimer !== null) return;
    poll();
    pollTimer = setInterval(poll, POLL_MS);
  }

  function listen() {
    if (!window.EventSource) { startPolling(); return; }
    var source;
    try {
      source = new EventSource(root + "/api/events");
    } catch (e) {
      startPolling();
      return;
    }
    source.addEventListener("open", function () { say("live", "on"); });
    source.addEventListener("progress", function (event) {
      say("live", "on");
      var doc;
      try { doc = JSON.parse(event.data); } catch (e) { return; }
      update(doc.runs);
    });
    source.addEventListener("problem", function () { say("history unreadable", "off"); });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        startPolling();
      } else {
        say("reconnecting", "polling");
      }
    });
  }

  // A running run's page: redraw its chart now and then (the bars grow).
  setInterval(function () {
    if (document.querySelector("[data-live-run]:not([data-live-pipeline])")) refresh();
  }, REDRAW_MS);

  window.plannerLive = { duration: duration, update: update, refresh: refresh };
  listen();
})();
