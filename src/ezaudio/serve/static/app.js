// EzAudio web app: plain JavaScript, no build step. Talks to the same server's /v1 API.
// Requests use ?stream=true so progress (queue position, sampling steps) arrives as
// server-sent events; the input rules live on the server, whose messages are shown as is.
"use strict";

const EXAMPLES = [
  "a dog barks in the distance while rain falls",
  "a steam train passes by and blows its whistle",
  "birds chirp in a forest at dawn",
  "a crowd applauds and cheers",
  "thunder rumbles during heavy rain",
  "a cat meows twice",
];

const $ = (id) => document.getElementById(id);
const KEY_STORE = "ezaudio-api-key";
let model = null;

// ------------------------------------------------------------------ requests
function authHeaders() {
  const key = localStorage.getItem(KEY_STORE);
  return key ? { Authorization: "Bearer " + key } : {};
}

class RequestError extends Error {
  constructor(status, message, fields) {
    super(message);
    this.status = status;
    this.fields = fields || [];
  }
}

// An error response -> RequestError with a message for people and the fields at fault.
async function errorFrom(response) {
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  const status = response.status;
  if (status === 422 && body && Array.isArray(body.detail)) {
    const fields = body.detail.map((item) => item.loc && item.loc[item.loc.length - 1]);
    const lines = body.detail.map((item) => {
      const field = item.loc ? item.loc[item.loc.length - 1] : "";
      return String(item.msg).includes(field) ? item.msg : `${field}: ${item.msg}`;
    });
    return new RequestError(status, lines.join("\n"), fields);
  }
  const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${status}`;
  if (status === 401) {
    $("key-box").hidden = false;
    return new RequestError(status, "This server needs an API key: enter it above.");
  }
  if (status === 429) {
    const wait = response.headers.get("Retry-After") || "a few";
    return new RequestError(status, `The server is busy (its queue is full). Try again in ${wait} s.`);
  }
  return new RequestError(status, detail);
}

// Read server-sent events from a fetch response; resolves with the "done" event's data.
async function readEvents(response, onProgress) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (!data) continue; // keep-alive comment
      const payload = JSON.parse(data);
      if (event === "progress") onProgress(payload);
      else if (event === "done") return payload;
      else if (event === "error") {
        throw new RequestError(payload.status, payload.detail, payload.field ? [payload.field] : []);
      }
    }
  }
  throw new RequestError(0, "The connection closed before the audio arrived.");
}

async function streamRequest(path, init, onProgress, signal) {
  const response = await fetch(path + "?stream=true", {
    ...init, signal, headers: { ...(init.headers || {}), ...authHeaders() },
  });
  if (!response.ok) throw await errorFrom(response);
  return readEvents(response, onProgress);
}

// ----------------------------------------------------------------- panels
// One panel's status line, progress bar, error box and result URLs.
function panel(prefix) {
  const urls = [];
  return {
    form: $(prefix + "-form"),
    button: $(prefix + "-submit"),
    label: $(prefix + "-submit").textContent,
    controller: null,
    progress(update) {
      const bar = $(prefix + "-progress");
      const status = $(prefix + "-status");
      bar.hidden = false;
      if (update.state === "queued") {
        bar.removeAttribute("value");
        status.textContent = `Waiting in the queue (position ${update.position})…`;
      } else if (update.state === "running") {
        bar.max = update.steps;
        bar.value = update.step;
        status.textContent = `Sampling: step ${update.step} of ${update.steps}`;
      } else if (update.state === "encoding") {
        bar.max = 1;
        bar.value = 1;
        status.textContent = "Encoding the audio…";
      } else {
        bar.removeAttribute("value");
        status.textContent = update.text || "";
      }
    },
    start() {
      this.clearError();
      this.controller = new AbortController();
      this.button.textContent = "Cancel";
      this.progress({ text: "Sending…" });
      return this.controller.signal;
    },
    finish(text) {
      this.controller = null;
      this.button.textContent = this.label;
      $(prefix + "-progress").hidden = true;
      $(prefix + "-status").textContent = text || "";
    },
    clearError() {
      $(prefix + "-error").hidden = true;
      for (const element of this.form.querySelectorAll("[aria-invalid]")) {
        element.removeAttribute("aria-invalid");
      }
    },
    showError(error) {
      const box = $(prefix + "-error");
      if (error.name === "AbortError") {
        this.finish("Cancelled.");
        return;
      }
      box.textContent = error instanceof RequestError ? error.message : `Request failed: ${error.message}`;
      box.hidden = false;
      for (const field of error.fields || []) {
        const element = this.form.elements[field];
        if (element) element.setAttribute("aria-invalid", "true");
      }
      const first = (error.fields || []).map((f) => this.form.elements[f]).find(Boolean);
      if (first) first.focus();
      this.finish("");
    },
    objectURL(blob) {
      const url = URL.createObjectURL(blob);
      urls.push(url);
      return url;
    },
    releaseURLs() {
      while (urls.length) URL.revokeObjectURL(urls.pop());
    },
  };
}

function audioBlob(done) {
  const bytes = Uint8Array.from(atob(done.audio), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: done.media_type });
}

// A form's filled-in fields, numbers as numbers (text that is no number goes as typed,
// so the server's message names it).
function fields(form, names) {
  const values = {};
  for (const name of names) {
    const element = form.elements[name];
    if (!element || element.disabled) continue;
    const text = String(element.value).trim();
    if (text === "") continue;
    const number = Number(text);
    values[name] = element.type === "number" && Number.isFinite(number) ? number : text;
  }
  return values;
}

function describe(done) {
  const t = done.timings;
  return `seed ${done.seed} · ${done.seconds.toFixed(2)} s · ` +
    `queued ${t.queue.toFixed(2)} s, sampled ${t.run.toFixed(2)} s` +
    (done.batch_size > 1 ? ` (batch of ${done.batch_size})` : "");
}

// ----------------------------------------------------------------- generate
const generatePanel = panel("gen");

async function generate(event) {
  event.preventDefault();
  const p = generatePanel;
  if (p.controller) { p.controller.abort(); return; }
  const signal = p.start();
  const body = fields(p.form, ["prompt", "negative_prompt", "seconds", "steps",
    "guidance_scale", "guidance_rescale", "seed"]);
  body.prompt = p.form.elements.prompt.value;
  body.format = p.form.elements.format.value;
  try {
    const done = await streamRequest("v1/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    }, (update) => p.progress(update), signal);
    p.releaseURLs();
    const url = p.objectURL(audioBlob(done));
    $("gen-audio").src = url;
    $("gen-download").href = url;
    $("gen-download").download = `ezaudio-${done.seed}.${done.format}`;
    $("gen-spectrogram").src = done.spectrogram;
    $("gen-meta").textContent = describe(done);
    $("gen-seed").value = done.seed;
    $("gen-result").hidden = false;
    p.finish("Done.");
  } catch (error) {
    p.showError(error);
  }
}

// --------------------------------------------------------------------- edit
const editPanel = panel("edit");

async function edit(event) {
  event.preventDefault();
  const p = editPanel;
  if (p.controller) { p.controller.abort(); return; }
  const file = $("edit-file").files[0];
  if (!file) {
    p.showError(new RequestError(0, "Choose an audio file to edit.", ["audio"]));
    return;
  }
  const signal = p.start();
  const data = new FormData();
  const values = fields(p.form, ["prompt", "negative_prompt", "mask_start", "mask_length",
    "boundary", "steps", "guidance_scale", "guidance_rescale", "seed"]);
  values.prompt = p.form.elements.prompt.value;
  values.format = p.form.elements.format.value;
  for (const [name, value] of Object.entries(values)) data.append(name, String(value));
  data.append("audio", file, file.name);
  try {
    const done = await streamRequest("v1/edit", { method: "POST", body: data },
      (update) => p.progress(update), signal);
    p.releaseURLs();
    const url = p.objectURL(audioBlob(done));
    $("edit-original-audio").src = p.objectURL(file);
    $("edit-original-spectrogram").src = done.original_spectrogram;
    $("edit-audio").src = url;
    $("edit-spectrogram").src = done.spectrogram;
    $("edit-download").href = url;
    $("edit-download").download = `ezaudio-edit-${done.seed}.${done.format}`;
    $("edit-meta").textContent = describe(done);
    $("edit-seed").value = done.seed;
    $("edit-result").hidden = false;
    p.finish("Done.");
  } catch (error) {
    p.showError(error);
  }
}

function showFileInfo() {
  const file = $("edit-file").files[0];
  const info = $("edit-file-info");
  if (!file) { info.textContent = ""; return; }
  info.textContent = `${file.name} · ${(file.size / 1024).toFixed(0)} KiB`;
  const probe = new Audio();
  const url = URL.createObjectURL(file);
  probe.addEventListener("loadedmetadata", () => {
    if (Number.isFinite(probe.duration)) info.textContent += ` · ${probe.duration.toFixed(2)} s`;
    URL.revokeObjectURL(url);
  });
  probe.addEventListener("error", () => URL.revokeObjectURL(url));
  probe.src = url;
}

// -------------------------------------------------------------------- setup
function setDefaults(info) {
  const d = info.defaults;
  const l = info.limits;
  const set = (id, value, min, max) => {
    const element = $(id);
    if (element.value === "") element.value = value;
    if (min !== undefined) element.min = min;
    if (max !== undefined) element.max = max;
  };
  set("gen-seconds", d.seconds, 0, l.max_seconds);
  set("gen-steps", d.steps, 1, l.max_steps);
  set("gen-guidance", d.guidance_scale, 0, l.max_guidance_scale);
  set("gen-rescale", d.guidance_rescale, 0, 1);
  set("edit-steps", d.steps, 1, l.max_steps);
  set("edit-guidance", d.edit_guidance_scale, 0, l.max_guidance_scale);
  set("edit-rescale", d.edit_guidance_rescale, 0, 1);
  set("edit-boundary", d.boundary, 0);
}

async function loadModel() {
  try {
    const response = await fetch("v1/model", { headers: authHeaders() });
    if (!response.ok) throw await errorFrom(response);
    model = await response.json();
    $("model-info").textContent = `Model ${model.name} · ${model.sample_rate} Hz · ` +
      `${model.device} ${model.dtype} · up to ${model.limits.max_seconds} s per clip`;
    setDefaults(model);
  } catch (error) {
    $("model-info").textContent = error.message;
  }
}

function selectTab(name) {
  for (const tab of ["generate", "edit"]) {
    const selected = tab === name;
    $("tab-" + tab).setAttribute("aria-selected", String(selected));
    $("panel-" + tab).hidden = !selected;
  }
}

function randomToggle(prefix) {
  const box = $(prefix + "-random");
  const seed = $(prefix + "-seed");
  const apply = () => { seed.disabled = box.checked; };
  box.addEventListener("change", apply);
  apply();
}

function setup() {
  for (const text of EXAMPLES) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    button.addEventListener("click", () => { $("gen-prompt").value = text; });
    $("gen-examples").appendChild(button);
  }
  $("tab-generate").addEventListener("click", () => selectTab("generate"));
  $("tab-edit").addEventListener("click", () => selectTab("edit"));
  $("gen-form").addEventListener("submit", generate);
  $("edit-form").addEventListener("submit", edit);
  $("edit-file").addEventListener("change", showFileInfo);
  randomToggle("gen");
  randomToggle("edit");
  $("save-key").addEventListener("click", () => {
    const key = $("api-key").value.trim();
    if (key) localStorage.setItem(KEY_STORE, key); else localStorage.removeItem(KEY_STORE);
    $("key-box").hidden = true;
    loadModel();
  });
  loadModel();
}

document.addEventListener("DOMContentLoaded", setup);
