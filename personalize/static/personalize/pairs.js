// Pairs page: upload by drag-and-drop or pickers, with a row per pair (or zip) showing its progress and the
// server's verdict. Which files make a pair is asked of the server (/pairs/match: the same matching by name
// as a bulk zip), then each pair is sent on its own to /pairs/upload (the API's single-pair upload), so one
// bad file refuses only its own pair, with the API's reason. A zip is imported by a worker on the server:
// its row follows the import, then lists its pairs.
"use strict";

(() => {
  const { post, errorsOf, wireConfirmations, wireCompareToggles } = window.Personalize;
  const zone = document.getElementById("dropzone");
  const urls = { match: zone.dataset.matchUrl, upload: zone.dataset.uploadUrl, zip: zone.dataset.zipUrl };
  const list = document.getElementById("upload-list");
  const rows = list.querySelector("tbody");
  const summary = document.getElementById("upload-summary");
  const tagsInput = document.getElementById("upload-tags");
  const picked = { before: [], after: [] };
  let busy = false;
  const IMPORT_POLL_MS = 1000;

  function formatSeconds(seconds) {
    const s = Math.round(seconds);
    return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  }

  function addRow(label) {
    list.hidden = false;
    const row = rows.insertRow();
    row.insertCell().textContent = label;
    const bar = document.createElement("progress");
    bar.max = 1;
    bar.value = 0;
    bar.setAttribute("aria-label", `upload of ${label}`);
    row.insertCell().appendChild(bar);
    const result = row.insertCell();
    result.textContent = "waiting";
    return {
      row,
      progress(fraction) {
        bar.value = fraction;
        result.textContent = fraction < 1 ? `sending ${Math.round(fraction * 100)} %` : "checking and storing…";
      },
      importing(state) {
        bar.value = state.progress;
        const left = state.eta_seconds == null ? "" : `, about ${formatSeconds(state.eta_seconds)} left`;
        result.textContent = state.status === "queued"
          ? "waiting for a worker…"
          : `importing: ${state.done} of ${state.total} pairs${left}`;
      },
      finish(kind, text) {
        bar.value = 1;
        row.className = kind;
        result.textContent = text;
        result.className = kind;
      },
    };
  }

  // "aligned: cropped 18 %, rotated 1.2°" for a pair whose after is a crop or a straightened frame of its
  // before, as personalize-client words it (personalize/client/commands/upload.py); null for the whole photo.
  function alignmentText(pair) {
    const alignment = pair.alignment || {};
    if (alignment.identity !== false) return null;
    const parts = [];
    const [width, height] = pair.before_size || [0, 0];
    const crop = alignment.crop || [];
    if (width && height && crop.length === 4) {
      const cropped = 1 - (crop[2] * crop[3]) / (width * height);
      if (cropped >= 0.005) parts.push(`cropped ${Math.round(cropped * 100)} %`);
    }
    const rotation = alignment.rotation_deg || 0;
    if (Math.abs(rotation) >= 0.05) parts.push(`rotated ${rotation.toFixed(1)}°`);
    return `aligned: ${parts.join(", ") || "shifted"}`;
  }

  function rejectedRow(name, reason) {
    addRow(name).finish("rejected", `rejected: ${reason}`);
  }

  // Every file of a drop, folders walked, each with its path inside the drop ("shoot/before/IMG_1.jpg").
  async function dropped(dataTransfer) {
    const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
    if (!entries.length) return [...dataTransfer.files].map((file) => ({ path: file.name, file }));
    const out = [];
    async function walk(entry) {
      if (entry.isFile) {
        const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
        out.push({ path: entry.fullPath.replace(/^\//, ""), file });
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        for (;;) {
          const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
          if (!batch.length) break;
          for (const child of batch) await walk(child);
        }
      }
    }
    for (const entry of entries) await walk(entry);
    return out;
  }

  // A zip is checked and stored by the server, then a worker imports its pairs one at a time: the row
  // follows the import (/pairs/imports/<id>.json) with its progress and time left, then lists every pair.
  async function uploadZip(file, tags, counts) {
    const row = addRow(file.name);
    const body = new FormData();
    body.append("file", file);
    body.append("tags", tags);
    const xhr = await post(urls.zip, body, { onProgress: (f) => row.progress(f) });
    if (xhr.status !== 202) {
      counts.rejected += 1;
      row.finish("rejected", `rejected: ${(await errorsOf(xhr)).join("; ")}`);
      return;
    }
    let state = xhr.response;
    while (state.status === "queued" || state.status === "running") {
      row.importing(state);
      await new Promise((resolve) => setTimeout(resolve, IMPORT_POLL_MS));
      const response = await fetch(state.poll, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`following the import of ${file.name}: the server answered ${response.status}`);
      state = await response.json();
    }
    const duplicates = state.skipped.filter((item) => item.pair);
    const rejected = state.skipped.filter((item) => !item.pair);
    counts.stored += state.stored.length;
    counts.duplicates += duplicates.length;
    counts.rejected += rejected.length;
    const plural = state.stored.length === 1 ? "" : "s";
    if (state.status === "failed") {
      row.finish("rejected", `stopped after ${state.done} of ${state.total} pairs: ${state.error}`);
    } else {
      row.finish("stored", `${state.stored.length} pair${plural} stored, ${state.skipped.length} skipped`);
    }
    state.stored.forEach((pair) => addRow(`${file.name}: ${pair.name}`).finish("stored", "stored"));
    duplicates.forEach((item) => addRow(`${file.name}: ${item.name}`).finish("duplicate", item.reason));
    rejected.forEach((item) => rejectedRow(`${file.name}: ${item.name}`, item.reason));
  }

  async function uploadPair(pair, files, tags, counts) {
    const row = addRow(`${pair.name} (${pair.before} + ${pair.after})`);
    const body = new FormData();
    body.append("before", files.get(pair.before), pair.before.split("/").pop());
    body.append("after", files.get(pair.after), pair.after.split("/").pop());
    body.append("name", pair.name);
    body.append("tags", tags);
    const xhr = await post(urls.upload, body, { onProgress: (f) => row.progress(f) });
    if (xhr.status === 201) {
      counts.stored += 1;
      const aligned = alignmentText(xhr.response.pair);
      row.finish("stored", aligned ? `stored · ${aligned}` : "stored");
    } else if (xhr.status === 200) {
      counts.duplicates += 1;
      row.finish("duplicate", `already uploaded as pair ${xhr.response.pair.id}`);
    } else {
      counts.rejected += 1;
      row.finish("rejected", `rejected: ${(await errorsOf(xhr)).join("; ")}`);
    }
  }

  async function upload(items) {
    if (busy || !items.length) return;
    busy = true;
    rows.replaceChildren();
    const counts = { stored: 0, duplicates: 0, rejected: 0 };
    const tags = tagsInput.value;
    try {
      const zips = items.filter((item) => item.path.toLowerCase().endsWith(".zip"));
      const photos = items.filter((item) => !item.path.toLowerCase().endsWith(".zip"));
      summary.textContent = `Uploading ${items.length} file${items.length === 1 ? "" : "s"}…`;
      if (photos.length) {
        const files = new Map(photos.map((item) => [item.path, item.file]));
        const xhr = await post(urls.match, JSON.stringify({ names: [...files.keys()] }), { json: true });
        if (xhr.status !== 200) {
          summary.textContent = `Nothing was uploaded: ${(await errorsOf(xhr)).join("; ")}`;
          return;
        }
        xhr.response.skipped.forEach((item) => {
          counts.rejected += 1;
          rejectedRow(item.name, item.reason);
        });
        if (!xhr.response.pairs.length && !zips.length) {
          summary.textContent =
            "No pairs found: put the originals in a folder named before/ and your edits in one named after/, with the same file names.";
          return;
        }
        // One pair at a time: each is aligned and checked on arrival, and the rows fill in order.
        for (const pair of xhr.response.pairs) await uploadPair(pair, files, tags, counts);
      }
      for (const zip of zips) await uploadZip(zip.file, tags, counts);
      const parts = [`${counts.stored} pair${counts.stored === 1 ? "" : "s"} stored`];
      if (counts.duplicates) parts.push(`${counts.duplicates} already uploaded`);
      parts.push(`${counts.rejected} rejected`);
      summary.textContent = `Done: ${parts.join(", ")}.`;
      if (counts.stored) await refreshGrid();
    } catch (error) {
      summary.textContent = `The upload stopped: ${error.message}`;
    } finally {
      busy = false;
    }
  }

  // Show the new pairs without leaving the page (the upload report stays).
  async function refreshGrid() {
    const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of ["grid-section", "pair-count"]) {
      const next = fresh.getElementById(id);
      if (next) document.getElementById(id).replaceWith(next);
    }
    const section = document.getElementById("grid-section");
    wireConfirmations(section);
    wireCompareToggles(section);
  }

  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    upload(await dropped(event.dataTransfer));
  });

  document.getElementById("pick-folder").addEventListener("change", (event) => {
    upload([...event.target.files].map((file) => ({ path: file.webkitRelativePath || file.name, file })));
    event.target.value = "";
  });
  document.getElementById("pick-zip").addEventListener("change", (event) => {
    upload([...event.target.files].map((file) => ({ path: file.name, file })));
    event.target.value = "";
  });
  const uploadPicked = document.getElementById("upload-picked");
  for (const side of ["before", "after"]) {
    document.getElementById(`pick-${side}`).addEventListener("change", (event) => {
      picked[side] = [...event.target.files];
      uploadPicked.disabled = !(picked.before.length && picked.after.length);
    });
  }
  uploadPicked.addEventListener("click", () => {
    const items = ["before", "after"].flatMap((side) => picked[side].map((file) => ({ path: `${side}/${file.name}`, file })));
    picked.before = [];
    picked.after = [];
    uploadPicked.disabled = true;
    upload(items);
  });
})();
