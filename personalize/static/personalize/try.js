// Try a photo: the model's sliders for it (/try/predict), a smaller unedited copy made by the server once
// (/try/render with no sliders; it reads TIFF, orientation and colour profiles the browser might not), then
// every strength change renders that small copy with the sliders scaled (/try/render), the last request
// winning. Downloads render the full photo at the chosen strength, and its XMP sidecar.
"use strict";

(() => {
  const { post, errorsOf, download } = window.Personalize;
  const $ = (id) => document.getElementById(id);
  const PREVIEW_SIDE = 1024;
  const state = { file: null, small: null, adjustments: null, pending: null, timer: null };
  const status = $("try-status");
  const strength = $("strength");

  function form(fields) {
    const body = new FormData();
    for (const [key, value] of Object.entries(fields)) {
      if (value instanceof Blob) body.append(key, value, value.name || "photo.jpg");
      else body.append(key, String(value));
    }
    return body;
  }

  function show(image, blob) {
    const old = image.src;
    image.src = URL.createObjectURL(blob);
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  }

  async function start(file) {
    if (!file) return;
    state.file = file;
    state.small = null;
    $("try-result").hidden = true;
    status.textContent = `Reading your style for ${file.name}…`;
    try {
      const predicted = await post($("try-file").dataset.predictUrl, form({ image: file }));
      if (predicted.status !== 200) throw new Error((await errorsOf(predicted)).join("; "));
      state.adjustments = predicted.response.adjustments;
      const model = predicted.response.model;
      $("try-model").textContent = model.kind === "personal" ? `model v${model.version}` : "base model (train yours to personalize)";
      status.textContent = "Preparing the preview…";
      const original = await post(
        $("try-file").dataset.renderUrl,
        form({ image: file, adjustments: "{}", max_size: PREVIEW_SIDE }),
        { responseType: "blob" }
      );
      if (original.status !== 200) throw new Error((await errorsOf(original)).join("; "));
      state.small = original.response;
      show($("try-original"), state.small);
      $("try-result").hidden = false;
      await preview();
    } catch (error) {
      status.textContent = `That photo could not be used: ${error.message}`;
    }
  }

  // Render the small copy at the slider's strength; a newer change aborts an older request.
  async function preview() {
    if (!state.small) return;
    if (state.pending) state.pending.abort();
    const controller = new AbortController();
    state.pending = controller;
    const asked = performance.now();
    const value = Number(strength.value);
    status.textContent = `Rendering at strength ${value.toFixed(2)}…`;
    try {
      const xhr = await post(
        $("try-file").dataset.renderUrl,
        form({ image: state.small, adjustments: JSON.stringify(state.adjustments), strength: value }),
        { responseType: "blob", signal: controller.signal }
      );
      if (xhr.status !== 200) throw new Error((await errorsOf(xhr)).join("; "));
      const edited = $("try-edited");
      await new Promise((resolve) => { edited.onload = resolve; edited.onerror = resolve; show(edited, xhr.response); });
      const sliders = JSON.parse(xhr.getResponseHeader("X-Adjustments") || "{}");
      document.querySelectorAll("[data-slider]").forEach((cell) => {
        const v = sliders[cell.dataset.slider];
        cell.textContent = v === undefined ? "–" : (v > 0 ? `+${v}` : String(v));
      });
      edited.dataset.strength = value.toFixed(2);
      edited.dataset.renderMs = String(Math.round(performance.now() - asked));
      status.textContent = `Shown at strength ${value.toFixed(2)}.`;
    } catch (error) {
      if (error.name !== "AbortError") status.textContent = `The preview failed: ${error.message}`;
    }
  }

  strength.addEventListener("input", () => {
    $("strength-value").textContent = Number(strength.value).toFixed(2);
    clearTimeout(state.timer);
    state.timer = setTimeout(preview, 80); // coalesce a drag's many events; still well within a second
  });

  const stem = () => state.file.name.replace(/\.[^.]+$/, "");

  $("download-jpeg").addEventListener("click", async () => {
    status.textContent = "Rendering the full-size photo…";
    const xhr = await post(
      $("try-file").dataset.renderUrl,
      form({ image: state.file, adjustments: JSON.stringify(state.adjustments), strength: strength.value }),
      { responseType: "blob" }
    ).catch((error) => ({ status: 0, error }));
    if (xhr.status !== 200) {
      status.textContent = `The download failed: ${xhr.error ? xhr.error.message : (await errorsOf(xhr)).join("; ")}`;
      return;
    }
    download(xhr.response, `${stem()}-edited.jpg`);
    status.textContent = "Downloaded the edited JPEG.";
  });

  $("download-xmp").addEventListener("click", async () => {
    const xhr = await post($("try-file").dataset.xmpUrl, form({ image: state.file, strength: strength.value }), {
      responseType: "blob",
    }).catch((error) => ({ status: 0, error }));
    if (xhr.status !== 200) {
      status.textContent = `The download failed: ${xhr.error ? xhr.error.message : (await errorsOf(xhr)).join("; ")}`;
      return;
    }
    download(xhr.response, `${stem()}.xmp`);
    status.textContent = "Downloaded the XMP sidecar: put it next to the photo for Lightroom or Camera Raw.";
  });

  $("try-file").addEventListener("change", (event) => start(event.target.files[0]));
  const zone = $("try-drop");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    start(event.dataTransfer.files[0]);
  });
})();
