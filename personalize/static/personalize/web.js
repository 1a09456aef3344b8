// Shared by every page of the editors' web app: CSRF-protected requests with upload progress, the errors the
// server gives in words, confirmations and the pairs' compare toggles. Plain JavaScript, no build step.
"use strict";

window.Personalize = (() => {
  const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

  // POST a body (FormData or a string) with the CSRF header; resolves with the finished XMLHttpRequest
  // (XMLHttpRequest, not fetch, because only it reports upload progress).
  function post(url, body, { onProgress, responseType = "json", signal, json = false } = {}) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      if (json) xhr.setRequestHeader("Content-Type", "application/json");
      xhr.responseType = responseType;
      if (onProgress) {
        xhr.upload.onprogress = (event) => { if (event.lengthComputable) onProgress(event.loaded / event.total); };
        xhr.upload.onload = () => onProgress(1);
      }
      xhr.onload = () => resolve(xhr);
      xhr.onerror = () => reject(new Error("the server could not be reached; check your connection and try again"));
      xhr.onabort = () => reject(new DOMException("superseded", "AbortError"));
      if (signal) signal.addEventListener("abort", () => xhr.abort());
      xhr.send(body);
    });
  }

  // The reasons a refused request gives ({"errors": [...]}), in words, whatever the response type.
  async function errorsOf(xhr) {
    let data = xhr.response;
    try {
      if (data instanceof Blob) data = JSON.parse(await data.text());
      else if (typeof data === "string") data = JSON.parse(data);
    } catch (e) {
      data = null;
    }
    if (data && Array.isArray(data.errors) && data.errors.length) return data.errors;
    if (xhr.status === 403) return ["the request was refused (your session may have ended: reload the page)"];
    if (xhr.status === 413) return ["the upload is larger than the server accepts"];
    return [`the server answered ${xhr.status} ${xhr.statusText || ""}`.trim()];
  }

  function download(blob, filename) {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  }

  function wireConfirmations(root = document) {
    root.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (event) => { if (!window.confirm(form.dataset.confirm)) event.preventDefault(); });
    });
  }

  function wireCompareToggles(root = document) {
    root.querySelectorAll(".card .toggle").forEach((button) => {
      button.addEventListener("click", () => {
        const card = button.closest(".card");
        const on = card.classList.toggle("show-before");
        button.setAttribute("aria-pressed", String(on));
        button.textContent = on ? "Show edit" : "Compare";
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => { wireConfirmations(); wireCompareToggles(); });
  return { post, errorsOf, download, wireConfirmations, wireCompareToggles, csrfToken };
})();
