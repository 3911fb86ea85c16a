// The demo page: upload (or pick a sample) -> /api/predict -> overlay, legend, areas, timings;
// click the prediction -> /api/attention -> per-head maps (and class attention / masks for a mask transformer).
// Plain JavaScript, no library, nothing fetched from anywhere but this server.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { info: null, blob: null, name: null, id: null, click: null, last: null, attention: null,
                uploadToOverlayMs: null };
window.demo = state;  // read by the browser test
const MAX_SHOWN = [420, 520];  // width, height the image and the prediction are drawn at most
const MAX_ROWS = 20;  // classes listed in the legend and the area table

function setState(s, text, isError) {
  document.body.dataset.state = s;
  $("message").textContent = text || "";
  $("message").className = isError ? "error" : "";
}

async function askJSON(url, options) {
  let res;
  try {
    res = await fetch(url, options);
  } catch (e) {
    throw new Error("the demo server did not answer (is tools/demo.py still running?)");
  }
  let out;
  try {
    out = await res.json();
  } catch (e) {
    throw new Error(`the server answered ${res.status} without a readable message`);
  }
  if (!res.ok || out.error) throw new Error(out.error || `the server answered ${res.status}`);
  return out;
}

function el(tag, props, children) {
  const e = document.createElement(tag);
  Object.assign(e, props || {});
  for (const c of children || []) e.append(c);
  return e;
}

function loaded(img, src) {
  return new Promise((resolve, reject) => {
    img.onload = () => resolve();
    img.onerror = () => reject(new Error("the browser could not show the returned picture"));
    img.src = src;
  });
}

async function init() {
  try {
    state.info = await askJSON("/api/info");
  } catch (e) {
    setState("error", e.message, true);
    return;
  }
  const info = state.info;
  $("model").textContent = `${info.model} · config ${info.config} · weights ${info.weights}`;
  const slide = $("slide");
  slide.checked = info.slide.available && info.slide.default;
  slide.disabled = !info.slide.available;
  slide.parentElement.title = info.slide.available
    ? `windows of ${info.slide.crop_size.join("x")} px, stride ${info.slide.stride.join("x")} (the config's test_config)`
    : "the config's test_config gives no crop_size / stride for sliding windows";
  if (!info.slide.available) slide.parentElement.dataset.disabled = "";
  $("flip").checked = info.flip.default;
  const bf16 = $("bf16");
  bf16.checked = info.bf16.available && info.bf16.default;
  bf16.disabled = !info.bf16.available;
  if (!info.bf16.available) {
    bf16.parentElement.title = info.bf16.why;
    bf16.parentElement.dataset.disabled = "";
  }
  for (let k = 0; k < info.depth; k++) $("layer").append(el("option", { value: k, textContent: k }));
  $("layer").value = info.depth - 1;
  for (const s of info.samples) {
    $("sample").append(el("option", { value: s.name, textContent: `${s.name} (${s.size[1]}x${s.size[0]})` }));
  }
  const lim = info.limits;
  $("limits").textContent = `images up to ${lim.max_side} px on the longest side and ${(lim.max_bytes / 2 ** 20).toFixed(0)} MiB`;
  setState("ready", "Upload an image or pick a sample.");
}

function clearAttention() {
  $("attn-title").textContent = "Attention: click a pixel of the prediction";
  $("attn-heads").replaceChildren();
  $("attn-classes").replaceChildren();
  state.attention = null;
}

function clearResults() {  // under an error nothing of an earlier image stays: the results hide until the next one
  delete document.body.dataset.shown;
  for (const id of ["image", "overlay"]) $(id).removeAttribute("src");
  $("marker").style.display = "none";
  $("legend").replaceChildren();
  $("areas").tBodies[0].replaceChildren();
  $("mask-link").removeAttribute("href");
  $("mask-link").style.display = "none";
  $("timings").textContent = "";
  clearAttention();
  Object.assign(state, { id: null, last: null, click: null });
}

function fail(message) {
  clearResults();
  setState("error", message, true);
}

async function run(blob, name) {
  const t0 = performance.now();
  const lim = state.info.limits;
  if (blob.size > lim.max_bytes) {
    fail(`${name} is ${(blob.size / 2 ** 20).toFixed(1)} MiB; the limit is ${(lim.max_bytes / 2 ** 20).toFixed(0)} MiB: upload a smaller file.`);
    return;
  }
  state.blob = blob;
  state.name = name;
  setState("running", `segmenting ${name} ...`);
  const on = (id) => ($(id).checked ? 1 : 0);
  const q = `slide=${on("slide")}&flip=${on("flip")}&bf16=${on("bf16")}&name=${encodeURIComponent(name)}`;
  let out;
  try {
    out = await askJSON(`/api/predict?${q}`, { method: "POST", body: blob });
    const [h, w] = out.size, scale = Math.min(MAX_SHOWN[0] / w, MAX_SHOWN[1] / h);  // small images shown larger
    for (const id of ["image", "overlay"]) $(id).style.width = `${Math.round(w * scale)}px`;
    await Promise.all([loaded($("image"), out.image), loaded($("overlay"), out.overlay)]);
  } catch (e) {
    fail(e.message);
    return;
  }
  document.body.dataset.shown = "";
  state.uploadToOverlayMs = performance.now() - t0;
  state.id = out.id;
  state.last = out;
  state.click = null;
  state.attention = null;
  $("marker").style.display = "none";
  $("mask-link").href = out.mask;
  $("mask-link").style.display = "block";
  // the classes present, largest first; past MAX_ROWS (a 150-class model) the rest are summed in one line
  const shown = out.areas.slice(0, MAX_ROWS), rest = out.areas.slice(MAX_ROWS);
  const swatch = (a) => el("span", { className: "swatch", style: `background:${a.color}` });
  const legend = $("legend");
  legend.replaceChildren(...shown.map((a) => el("span", { className: "chip" }, [swatch(a), a.name])));
  const rows = shown.map((a) => el("tr", {}, [el("td", {}, [swatch(a)]), el("td", { textContent: a.name }),
    el("td", { className: "num", textContent: a.pixels }), el("td", { className: "num", textContent: a.percent.toFixed(2) })]));
  if (rest.length) {
    const sum = (k) => rest.reduce((t, a) => t + a[k], 0);
    legend.append(el("span", { className: "chip", textContent: `and ${rest.length} more classes` }));
    rows.push(el("tr", { className: "rest" }, [el("td"), el("td", { textContent: `${rest.length} more classes` }),
      el("td", { className: "num", textContent: sum("pixels") }),
      el("td", { className: "num", textContent: sum("percent").toFixed(2) })]));
  }
  $("areas").tBodies[0].replaceChildren(...rows);
  showTimings();
  clearAttention();
  const [h, w] = out.size;
  setState("done", `${name}: ${w}x${h} px, slice ${out.slide ? "on" : "off"}, flip ${out.flip ? "on" : "off"}, ${out.precision}`);
}

function showTimings() {
  const t = state.last.timings_ms;
  const parts = Object.entries(t).map(([k, v]) => `${k} ${v.toFixed(0)} ms`);
  parts.push(`upload to overlay (this browser) ${state.uploadToOverlayMs.toFixed(0)} ms`);
  if (state.attention) parts.push(`attention ${state.attention.timings_ms.attention.toFixed(0)} ms`);
  $("timings").textContent = "last run: " + parts.join(" · ");
}

function num(v) {  // two significant digits in at most 6 characters: 0.23, 0.012, 2.2e-4 (over a whole image: 1e-5)
  return v !== 0 && Math.abs(v) < 0.01 ? v.toExponential(1) : v.toPrecision(2);
}

function range(lo, hi) {  // a map's min-max
  return `${num(lo)}–${num(hi)}`;
}

function figure(src, caption, cls, marker) {
  const img = el("img", { src: src, alt: caption });
  return el("figure", { className: cls }, [marker ? el("div", { className: "frame" }, [img, marker]) : img,
    el("figcaption", { textContent: caption })]);
}

function queryMarker(out) {  // the query patch on the window, placed in % so it follows the shown size
  const [, , bh, bw] = out.box, p = out.patch, [r, c] = out.query;
  const pct = (v, total) => `${(100 * v / total).toFixed(3)}%`;
  const m = el("div", { className: "query" });
  Object.assign(m.style, { left: pct(c * p + p / 2, bw), top: pct(r * p + p / 2, bh),
    width: pct(Math.min(p, bw - c * p), bw), height: pct(Math.min(p, bh - r * p), bh) });
  return m;
}

async function attend() {
  if (!state.click || !state.id) return;
  const { y, x } = state.click;
  setState("attending", `attention of the patch under pixel (y ${y}, x ${x}) ...`);
  let out;
  try {
    out = await askJSON("/api/attention", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: state.id, y: y, x: x, layer: Number($("layer").value) }) });
  } catch (e) {
    clearAttention();
    setState("error", e.message, true);
    return;
  }
  state.attention = out;
  const [y0, x0, bh, bw] = out.box;
  const [H, W] = state.last.size;
  const where = (bh === H && bw === W) ? "the whole image" : `the ${bw}x${bh} window at (y ${y0}, x ${x0})`;
  $("attn-title").textContent = `Attention of encoder layer ${out.layer}, patch (row ${out.query[0]}, col ${out.query[1]}) ` +
    `under pixel (y ${y}, x ${x}), over ${where}; each map scaled from its min to its max`;
  $("attn-heads").replaceChildren(figure(out.window, "query patch (red)", "window", queryMarker(out)),
    ...out.heads.map((hd) => figure(hd.png, `head ${hd.head} · ${range(hd.min, hd.max)}`, "head")));
  const classes = $("attn-classes");
  classes.replaceChildren();
  if (out.classes.length) {
    classes.append(el("div", { className: "rowtitle", textContent: "class embeddings' attention over the patches (last decoder layer, mean over heads)" }),
      el("div", { className: "row" }, out.classes.map((c) => figure(c.attn, `${c.name} · ${range(c.attn_min, c.attn_max)}`, "class-attn"))),
      el("div", { className: "rowtitle", textContent: "class masks (softmax probability, 0-1)" }),
      el("div", { className: "row" }, out.classes.map((c) => figure(c.mask, c.name, "class-mask"))));
  }
  showTimings();
  setState("done", `attention of patch (row ${out.query[0]}, col ${out.query[1]}), layer ${out.layer}`);
}

function onClick(ev) {
  const img = ev.currentTarget;
  if (!state.id || !img.naturalWidth) return;
  const r = img.getBoundingClientRect();
  const x = Math.min(img.naturalWidth - 1, Math.max(0, Math.floor((ev.clientX - r.left) * img.naturalWidth / r.width)));
  const y = Math.min(img.naturalHeight - 1, Math.max(0, Math.floor((ev.clientY - r.top) * img.naturalHeight / r.height)));
  state.click = { y: y, x: x };
  const p = state.info.patch, s = r.width / img.naturalWidth;  // the patch, drawn at the shown scale
  const m = $("marker");
  Object.assign(m.style, { display: "block", left: `${Math.floor(x / p) * p * s - 2}px`,
    top: `${Math.floor(y / p) * p * s - 2}px`, width: `${p * s}px`, height: `${p * s}px` });
  attend();
}

$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  if (f) run(f, f.name);
});
$("sample").addEventListener("change", async () => {
  const name = $("sample").value;
  if (!name) return;
  try {
    const res = await fetch(`/samples/${name}.png`);
    run(await res.blob(), name);
  } catch (e) {
    fail("the demo server did not answer (is tools/demo.py still running?)");
  }
});
for (const id of ["slide", "flip", "bf16"]) $(id).addEventListener("change", () => { if (state.blob) run(state.blob, state.name); });
$("layer").addEventListener("change", attend);
$("overlay").addEventListener("click", onClick);
$("image").addEventListener("click", onClick);
init();
