// varfam explorer page: latent map, decoded image, sliders, interpolation, samples (prior or a
// fitted sampler).
// Plain JavaScript against the JSON API of varfam.explore.server; no external assets.
"use strict";

const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
  "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
];
const MAP_SIZE = 520;
const MARGIN = { left: 44, right: 12, top: 12, bottom: 36 };
const DISPLAY = 224;  // CSS pixels of the decoded image's longer side

// Everything the page knows; also a hook for tests and the browser console.
const state = {
  info: null, map: null, z: null, point: null, label: null,
  version: 0, inFlight: false, pending: null, lastMs: null,
  pick: 0, interpolations: 0, stripImages: [], error: null,
};
window.varfamExplorer = state;

const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  const payload = await response.json();
  if (!response.ok) throw new Error(payload.error || `${response.status} ${response.statusText}`);
  return payload;
}

function setStatus(text, isError = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", isError);
  state.error = isError ? text : null;
}

// ------------------------------------------------------------------ images
function drawImage(canvas, image, display = DISPLAY) {
  const bytes = Uint8ClampedArray.from(atob(image.rgba), (c) => c.charCodeAt(0));
  canvas.width = image.width;
  canvas.height = image.height;
  canvas.getContext("2d").putImageData(new ImageData(bytes, image.width, image.height), 0, 0);
  if (display) {
    const scale = display / Math.max(image.width, image.height);
    canvas.style.width = `${Math.round(image.width * scale)}px`;
    canvas.style.height = `${Math.round(image.height * scale)}px`;
  }
}

// ------------------------------------------------------------------ the map
const view = { x0: 0, x1: 1, y0: 0, y1: 1, base: null };

function toScreen(u, v) {
  const w = MAP_SIZE - MARGIN.left - MARGIN.right, h = MAP_SIZE - MARGIN.top - MARGIN.bottom;
  return [MARGIN.left + (u - view.x0) / (view.x1 - view.x0) * w,
          MARGIN.top + (view.y1 - v) / (view.y1 - view.y0) * h];
}

function toMap(px, py) {
  const w = MAP_SIZE - MARGIN.left - MARGIN.right, h = MAP_SIZE - MARGIN.top - MARGIN.bottom;
  return [view.x0 + (px - MARGIN.left) / w * (view.x1 - view.x0),
          view.y1 - (py - MARGIN.top) / h * (view.y1 - view.y0)];
}

function colorOf(label) {
  if (label === null || label === undefined) return PALETTE[0];
  const classes = state.map.classes;
  const k = classes.findIndex((c) => c.value === label);
  return PALETTE[(k < 0 ? 0 : k) % PALETTE.length];
}

function niceTicks(lo, hi, count = 5) {
  const raw = (hi - lo) / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) ticks.push(t);
  return { ticks, digits: Math.max(0, -Math.floor(Math.log10(step))) };
}

function setupMap() {
  const canvas = $("map");
  const dpr = window.devicePixelRatio || 1;
  canvas.width = MAP_SIZE * dpr;
  canvas.height = MAP_SIZE * dpr;
  canvas.style.width = `${MAP_SIZE}px`;
  canvas.style.height = `${MAP_SIZE}px`;
  const coords = state.map.coords;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [u, v] of coords) {
    x0 = Math.min(x0, u); x1 = Math.max(x1, u); y0 = Math.min(y0, v); y1 = Math.max(y1, v);
  }
  if (!(x1 > x0)) { x0 -= 1; x1 += 1; }
  if (!(y1 > y0)) { y0 -= 1; y1 += 1; }
  const px = 0.08 * (x1 - x0), py = 0.08 * (y1 - y0);
  Object.assign(view, { x0: x0 - px, x1: x1 + px, y0: y0 - py, y1: y1 + py });

  // the points are drawn once, off screen; each update only adds the markers on top
  const base = document.createElement("canvas");
  base.width = canvas.width;
  base.height = canvas.height;
  const ctx = base.getContext("2d");
  ctx.scale(dpr, dpr);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, MAP_SIZE, MAP_SIZE);
  ctx.strokeStyle = "#eef0f3";
  ctx.fillStyle = "#667085";
  ctx.font = "11px sans-serif";
  const [left, bottom] = [MARGIN.left, MAP_SIZE - MARGIN.bottom];
  const xt = niceTicks(view.x0, view.x1), yt = niceTicks(view.y0, view.y1);
  ctx.textAlign = "center";
  for (const t of xt.ticks) {
    const [sx] = toScreen(t, 0);
    ctx.beginPath(); ctx.moveTo(sx, MARGIN.top); ctx.lineTo(sx, bottom); ctx.stroke();
    ctx.fillText(t.toFixed(xt.digits), sx, bottom + 13);
  }
  ctx.textAlign = "right";
  for (const t of yt.ticks) {
    const [, sy] = toScreen(0, t);
    ctx.beginPath(); ctx.moveTo(left, sy); ctx.lineTo(MAP_SIZE - MARGIN.right, sy); ctx.stroke();
    ctx.fillText(t.toFixed(yt.digits), left - 4, sy + 4);
  }
  ctx.textAlign = "center";
  ctx.fillText(state.map.axis_names[0], (left + MAP_SIZE - MARGIN.right) / 2, MAP_SIZE - 6);
  ctx.save();
  ctx.translate(11, (MARGIN.top + bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText(state.map.axis_names[1], 0, 0);
  ctx.restore();
  ctx.strokeStyle = "#98a2b3";
  ctx.strokeRect(left, MARGIN.top, MAP_SIZE - MARGIN.left - MARGIN.right, bottom - MARGIN.top);
  const labels = state.map.labels;
  const radius = coords.length > 3000 ? 1.6 : 2.6;
  ctx.globalAlpha = 0.75;
  coords.forEach(([u, v], i) => {
    const [sx, sy] = toScreen(u, v);
    ctx.fillStyle = colorOf(labels ? labels[i] : null);
    ctx.beginPath();
    ctx.arc(sx, sy, radius, 0, 2 * Math.PI);
    ctx.fill();
  });
  view.base = base;

  const legend = $("legend");
  legend.replaceChildren();
  for (const c of state.map.classes) {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colorOf(c.value);
    item.append(swatch, document.createTextNode(c.name));
    legend.append(item);
  }
  if (!state.map.classes.length) legend.textContent = "no labels: one colour for every test example";
}

function marker(ctx, u, v, color, text) {
  const [sx, sy] = toScreen(u, v);
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#fff";
  ctx.beginPath(); ctx.arc(sx, sy, 7, 0, 2 * Math.PI); ctx.stroke();
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.beginPath(); ctx.arc(sx, sy, 7, 0, 2 * Math.PI); ctx.stroke();
  if (text) {
    ctx.fillStyle = color;
    ctx.font = "bold 12px sans-serif";
    ctx.fillText(text, sx + 9, sy - 7);
  }
}

function drawMap() {
  const canvas = $("map");
  const ctx = canvas.getContext("2d");
  const dpr = canvas.width / MAP_SIZE;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.drawImage(view.base, 0, 0);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const coords = state.map.coords;
  const a = +$("interp-a").value, b = +$("interp-b").value;
  if (coords[a] && coords[b]) {
    const [ax, ay] = toScreen(...coords[a]), [bx, by] = toScreen(...coords[b]);
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = "#475467";
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(bx, by); ctx.stroke();
    ctx.setLineDash([]);
    marker(ctx, ...coords[a], "#475467", "A");
    marker(ctx, ...coords[b], "#475467", "B");
  }
  if (state.point) {
    let [sx, sy] = toScreen(...state.point);
    const cx = Math.min(Math.max(sx, MARGIN.left), MAP_SIZE - MARGIN.right);
    const cy = Math.min(Math.max(sy, MARGIN.top), MAP_SIZE - MARGIN.bottom);
    const outside = cx !== sx || cy !== sy;  // off the map: pinned to its edge, dashed
    [sx, sy] = [cx, cy];
    ctx.strokeStyle = "#000";
    ctx.lineWidth = 1;
    ctx.setLineDash(outside ? [3, 3] : []);
    ctx.beginPath();
    ctx.moveTo(sx - 12, sy); ctx.lineTo(sx + 12, sy);
    ctx.moveTo(sx, sy - 12); ctx.lineTo(sx, sy + 12);
    ctx.stroke();
    marker(ctx, ...toMap(sx, sy), "#d92d20", outside ? "off the map" : "");
    ctx.setLineDash([]);
  }
}

function eventPoint(event) {
  const rect = $("map").getBoundingClientRect();
  const px = (event.clientX - rect.left) * MAP_SIZE / rect.width;
  const py = (event.clientY - rect.top) * MAP_SIZE / rect.height;
  return toMap(px, py);
}

function nearestExample(point) {
  let best = 0, bestD = Infinity;
  state.map.coords.forEach(([u, v], i) => {
    const d = (u - point[0]) ** 2 + (v - point[1]) ** 2;
    if (d < bestD) { bestD = d; best = i; }
  });
  return best;
}

// ------------------------------------------------------------------ decoding
// One request at a time; while one is out, only the newest wish is kept.
function requestCode(path, body) {
  // a run conditioned on labels decodes with the class chosen in the picker
  if (body && state.label !== null && body.label === undefined) body = { ...body, label: state.label };
  if (state.inFlight) { state.pending = [path, body]; return; }
  state.inFlight = true;
  const t0 = performance.now();
  api(path, body).then((answer) => {
    state.lastMs = performance.now() - t0;
    showCode(answer);
    setStatus(`decoded in ${state.lastMs.toFixed(0)} ms`);
  }).catch((e) => setStatus(e.message, true)).finally(() => {
    state.inFlight = false;
    if (state.pending) {
      const [p, b] = state.pending;
      state.pending = null;
      requestCode(p, b);
    }
  });
}

function showCode(answer) {
  state.z = answer.z;
  state.point = answer.point;
  if (state.info.condition && answer.label !== null && answer.label !== undefined) {
    state.label = answer.label;  // an example is decoded with its own class: the picker follows
    $("class-picker").value = String(answer.label);
  }
  drawImage($("decoded"), answer.image);
  const figure = $("input-figure");
  if (answer.input) {
    drawImage($("input"), answer.input);
    $("input-caption").textContent = `test example ${answer.index}` +
      (answer.label === null ? "" : ` (label ${labelName(answer.label)})`);
    figure.hidden = false;
  } else {
    figure.hidden = true;
  }
  const cls = state.info.condition ? `, class ${state.info.condition.classes[answer.label]}` : "";
  const source = answer.sampler === "prior" || answer.sampler === undefined ? "prior"
    : `${answer.sampler} sampler`;
  $("decoded-caption").textContent = (answer.seed === undefined ? "decoded mean"
    : `${source} draw (seed ${answer.seed})`) + cls;
  for (const row of state.info.dims) {
    const slider = $(`z${row.index}`);
    slider.value = answer.z[row.index];
    $(`z${row.index}-value`).value = answer.z[row.index].toFixed(2);
  }
  $("code-text").textContent = `z = [${answer.z.map((v) => v.toFixed(3)).join(", ")}]`;
  drawMap();
  state.version += 1;
}

function labelName(value) {
  const c = state.map.classes.find((k) => k.value === value);
  return c ? c.name : String(value);
}

function buildSliders() {
  const box = $("sliders");
  box.replaceChildren();
  for (const row of state.info.dims) {
    const label = document.createElement("label");
    label.htmlFor = `z${row.index}`;
    const score = row.kl !== null ? `KL ${row.kl.toFixed(2)}` : `var ${row.variance.toFixed(2)}`;
    label.innerHTML = `z<sub>${row.index + 1}</sub> <small>${score}</small>`;
    const slider = document.createElement("input");
    Object.assign(slider, {
      type: "range", id: `z${row.index}`, min: row.low, max: row.high,
      step: (row.high - row.low) / 400, value: 0,
    });
    slider.dataset.dim = row.index;
    slider.addEventListener("input", () => {
      const z = (state.z || state.info.start).slice();
      z[row.index] = parseFloat(slider.value);
      $(`z${row.index}-value`).value = z[row.index].toFixed(2);
      requestCode("/api/decode", { z });
    });
    const out = document.createElement("output");
    out.id = `z${row.index}-value`;
    box.append(label, slider, out);
  }
  const note = state.info.order_by === "kl" ? "ordered by mean KL per dimension (nats)"
    : "ordered by variance of the latent means";
  $("order-note").textContent = note;
}

// A run conditioned on labels: every decode uses the class chosen here.
function buildPicker() {
  const condition = state.info.condition;
  $("class-box").hidden = !condition;
  if (!condition) return;
  const picker = $("class-picker");
  picker.replaceChildren(...condition.classes.map((name, k) => new Option(name, String(k))));
  picker.value = String(condition.label);
  state.label = condition.label;
}

// What a draw takes z from: the prior, or a sampler fitted after training.
function buildSamplerPicker() {
  const picker = $("sampler-picker");
  const names = state.info.samplers || ["prior"];
  picker.replaceChildren(...names.map((name) => new Option(name, name)));
  picker.value = names[0];
}

// ------------------------------------------------------------------ interpolation
async function interpolate() {
  const body = { a: +$("interp-a").value, b: +$("interp-b").value, steps: +$("interp-steps").value };
  drawMap();
  try {
    const answer = await api("/api/interpolate", body);
    const strip = $("strip");
    strip.replaceChildren();
    const add = (image, caption, cls) => {
      const figure = document.createElement("figure");
      figure.className = cls;
      const canvas = document.createElement("canvas");
      canvas.className = `pixels ${cls}`;
      drawImage(canvas, image, 64);
      const text = document.createElement("figcaption");
      text.textContent = caption;
      figure.append(canvas, text);
      strip.append(figure);
    };
    add(answer.inputs[0], `A #${answer.a}`, "end");
    answer.images.forEach((image, k) => add(image, `${k}`, "step"));
    add(answer.inputs[1], `B #${answer.b}`, "end");
    state.stripImages = answer.images;
    state.interpolations += 1;
    setStatus(`interpolated ${answer.steps} steps from #${answer.a} to #${answer.b}`);
  } catch (e) {
    setStatus(e.message, true);
  }
}

// ------------------------------------------------------------------ wiring
function wire() {
  const canvas = $("map");
  let dragging = false;
  canvas.addEventListener("pointerdown", (event) => {
    const point = eventPoint(event);
    if (event.shiftKey) {  // pick test examples A and B in turn
      const i = nearestExample(point);
      $(state.pick === 0 ? "interp-a" : "interp-b").value = i;
      state.pick = 1 - state.pick;
      drawMap();
      if (state.pick === 0) interpolate();
      return;
    }
    dragging = true;
    canvas.setPointerCapture(event.pointerId);
    requestCode("/api/decode", { point });
  });
  canvas.addEventListener("pointermove", (event) => {
    if (dragging) requestCode("/api/decode", { point: eventPoint(event) });
  });
  const stop = () => { dragging = false; };
  canvas.addEventListener("pointerup", stop);
  canvas.addEventListener("pointercancel", stop);
  $("sample").addEventListener("click",
    () => requestCode("/api/sample", { sampler: $("sampler-picker").value }));
  $("goto").addEventListener("click", () => {
    requestCode(`/api/example?index=${encodeURIComponent($("example-index").value)}`);
  });
  $("interpolate").addEventListener("click", interpolate);
  $("class-picker").addEventListener("change", () => {
    state.label = +$("class-picker").value;
    requestCode("/api/decode", { z: state.z || state.info.start });
  });
  for (const id of ["interp-a", "interp-b"]) $(id).addEventListener("change", drawMap);
}

async function main() {
  try {
    [state.info, state.map] = await Promise.all([api("/api/info"), api("/api/map")]);
  } catch (e) {
    setStatus(`cannot load the run: ${e.message}`, true);
    return;
  }
  const info = state.info;
  document.title = `varfam explorer: ${info.run}`;
  $("run-info").textContent = `${info.run} — family ${info.family}, prior ${info.prior}, ` +
    `likelihood ${info.likelihood}; ${info.latent_dim} latent dimension` +
    `${info.latent_dim === 1 ? "" : "s"}, data ${info.data_shape.join("×")}, ` +
    `${info.n_test} test examples`;
  const last = info.n_test - 1;
  for (const id of ["example-index", "interp-a", "interp-b"]) $(id).max = last;
  $("interp-b").value = Math.min(1, last);
  setupMap();
  buildSliders();
  buildPicker();
  buildSamplerPicker();
  wire();
  requestCode("/api/decode", { z: info.start });
  state.ready = true;
}

main();
