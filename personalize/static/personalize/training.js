// A training job's page: polls the job's JSON once a second while it is queued or running and redraws the
// progress bar, ETA, step, the validation dE00 curve and the events. No reload needed.
"use strict";

(() => {
  const url = document.getElementById("training-script").dataset.url;
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let failures = 0;

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return `${seconds} s`;
    return `${Math.floor(seconds / 60)} min ${String(seconds % 60).padStart(2, "0")} s`;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The curve in a 600 x 240 box: steps left to right, dE00 bottom (low, good) to top.
  function drawCurve(points) {
    const box = $("curve");
    box.replaceChildren();
    box.dataset.points = String(points.length);
    $("curve-empty").hidden = points.length > 0;
    if (!points.length) return;
    const [left, right, top, bottom] = [48, 590, 12, 216];
    const steps = points.map((p) => p[0]);
    const values = points.map((p) => p[1]);
    const maxStep = Math.max(...steps, 1);
    let low = Math.min(...values);
    let high = Math.max(...values);
    if (high - low < 0.05) { low -= 0.05; high += 0.05; }
    const x = (step) => left + ((right - left) * step) / maxStep;
    const y = (value) => bottom - ((bottom - top) * (value - low)) / (high - low);
    box.appendChild(svg("line", { class: "axis", x1: left, y1: bottom, x2: right, y2: bottom }));
    box.appendChild(svg("line", { class: "axis", x1: left, y1: top, x2: left, y2: bottom }));
    box.appendChild(svg("text", { x: 4, y: top + 10 }, high.toFixed(2)));
    box.appendChild(svg("text", { x: 4, y: bottom }, low.toFixed(2)));
    box.appendChild(svg("text", { x: right - 90, y: 234 }, `step ${maxStep}`));
    const line = points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    box.appendChild(svg("polyline", { class: "line", points: points.length > 1 ? line : `${line} ${line}` }));
    const last = points[points.length - 1];
    box.appendChild(svg("circle", { cx: x(last[0]), cy: y(last[1]), r: 4, fill: "currentColor" }));
  }

  function drawEvents(events) {
    const list = $("events");
    list.replaceChildren(
      ...events.map((event) => {
        const item = document.createElement("li");
        const time = document.createElement("time");
        time.dateTime = event.at;
        time.textContent = new Date(event.at).toLocaleTimeString();
        item.append(time, `${event.kind.replace("_", " ")}${event.message ? `: ${event.message}` : ""}`);
        return item;
      })
    );
  }

  function draw(job) {
    const percent = Math.round(job.progress * 100);
    $("job-bar").style.width = `${percent}%`;
    $("job-progress").setAttribute("aria-valuenow", String(percent));
    $("job-percent").textContent = `${percent} %`;
    $("job-eta").textContent = job.active ? duration(job.eta_seconds) : "–";
    $("job-step").textContent = job.step ? String(job.step) : "–";
    $("job-val").textContent = job.val_delta_e === null ? "–" : job.val_delta_e.toFixed(2);
    const status = $("job-status");
    status.textContent = job.status;
    status.className = `status ${job.status}`;
    drawCurve(job.curve || []);
    drawEvents(job.events || []);
    const outcome = $("job-outcome");
    if (job.status === "succeeded" && job.model_url) {
      outcome.innerHTML = "";
      const link = document.createElement("a");
      link.href = job.model_url;
      link.textContent = "See the model it published";
      outcome.append("Finished. ", link, ".");
    } else if (job.status === "failed") {
      outcome.textContent = `Failed: ${job.error}`;
    } else if (job.status === "cancelled") {
      outcome.textContent = "Cancelled: nothing was published.";
    } else if (job.cancel_requested) {
      outcome.textContent = "Cancelling: the worker stops within seconds.";
    } else if (job.status === "queued") {
      outcome.textContent = "Waiting for a worker…";
    } else {
      outcome.textContent = "";
    }
    const cancel = $("cancel-form");
    if (cancel && !job.active) cancel.hidden = true;
  }

  async function poll() {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      const job = await response.json();
      failures = 0;
      draw(job);
      if (job.active) setTimeout(poll, 1000);
    } catch (error) {
      failures += 1;
      $("job-outcome").textContent = `Lost contact with the server (${error.message}); retrying…`;
      setTimeout(poll, Math.min(10000, 1000 * 2 ** failures));
    }
  }

  const initial = JSON.parse($("job-state").textContent);
  draw(initial);
  if (initial.active) setTimeout(poll, 1000);
})();
