// raygan report: draws the page from the JSON in #data, as SVG, with no library and no network.
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const SVG = "http://www.w3.org/2000/svg";
const W = 540, H = 380, M = { l: 64, r: 16, t: 12, b: 46 };
const PALETTE = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]; // viridis stops
const LINES = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

function el(tag, attrs = {}, parent = null, ns = null) {
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, tag, value, attrs = {}) {
  const node = el(tag, attrs, parent);
  node.textContent = value;
  return node;
}

function fmt(v) {
  if (v === null || v === undefined) return "-";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
  return String(v);
}

// Round tick values spanning [lo, hi], as [value, label] with as many decimals as the step.
function ticks(lo, hi, n = 5) {
  const step0 = (hi - lo) / n || 1;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const out = [];
  for (let i = Math.ceil(lo / step); i * step <= hi + 1e-9 * step; i++) {
    out.push([i * step, (i * step).toFixed(decimals)]);
  }
  return out;
}

function padded(values) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (lo === hi) { lo -= 0.5 * (Math.abs(lo) || 1); hi += 0.5 * (Math.abs(hi) || 1); }
  const pad = 0.06 * (hi - lo);
  return [lo - pad, hi + pad];
}

// An SVG with axes for x in xs and y in ys; returns the svg and the two scales.
function axes(parent, title, xs, ys, xLabel, yLabel) {
  const fig = el("figure", {}, parent);
  text(fig, "figcaption", title);
  const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` }, fig, SVG);
  const [x0, x1] = padded(xs), [y0, y1] = padded(ys);
  const sx = (v) => M.l + ((v - x0) / (x1 - x0)) * (W - M.l - M.r);
  const sy = (v) => H - M.b - ((v - y0) / (y1 - y0)) * (H - M.t - M.b);
  const g = el("g", { class: "axis" }, svg, SVG);
  for (const [v, label] of ticks(x0, x1)) {
    el("line", { class: "grid", x1: sx(v), x2: sx(v), y1: M.t, y2: H - M.b }, g, SVG);
    const t = el("text", { x: sx(v), y: H - M.b + 15, "text-anchor": "middle" }, g, SVG);
    t.textContent = label;
  }
  for (const [v, label] of ticks(y0, y1)) {
    el("line", { class: "grid", x1: M.l, x2: W - M.r, y1: sy(v), y2: sy(v) }, g, SVG);
    const t = el("text", { x: M.l - 6, y: sy(v) + 4, "text-anchor": "end" }, g, SVG);
    t.textContent = label;
  }
  el("path", { d: `M${M.l},${M.t}V${H - M.b}H${W - M.r}`, fill: "none" }, g, SVG);
  el("text", { x: (M.l + W - M.r) / 2, y: H - 8, "text-anchor": "middle" }, g, SVG).textContent = xLabel;
  el("text", { x: 14, y: (M.t + H - M.b) / 2, "text-anchor": "middle",
    transform: `rotate(-90 14 ${(M.t + H - M.b) / 2})` }, g, SVG).textContent = yLabel;
  return { svg, sx, sy };
}

function colour(value, lo, hi) {
  const t = hi > lo ? (value - lo) / (hi - lo) : 0;
  return PALETTE[Math.min(PALETTE.length - 1, Math.round(t * (PALETTE.length - 1)))];
}

function scatter(parent, panel) {
  const pts = panel.points;
  if (!pts.length) { text(parent, "p", `${panel.title}: no scored trial`); return 0; }
  const { svg, sx, sy } = axes(parent, panel.title, pts.map((p) => p.x), pts.map((p) => p.y),
    panel.x, panel.y);
  const cs = pts.map((p) => p.c ?? 0), lo = Math.min(...cs), hi = Math.max(...cs);
  const ordered = [...pts].sort((a, b) => a.front - b.front); // the front on top
  for (const p of ordered) {
    const dot = el("circle", { cx: sx(p.x), cy: sy(p.y), r: p.front ? 6.5 : 5,
      fill: colour(p.c ?? 0, lo, hi), class: p.front ? "point front" : "point",
      "data-id": p.id }, svg, SVG);
    dot.addEventListener("mousemove", (e) => showTip(e, p));
    dot.addEventListener("mouseleave", hideTip);
    dot.addEventListener("click", () => { location.hash = "trial=" + encodeURIComponent(p.id); });
  }
  const legend = el("div", { class: "legend" }, parent.lastChild);
  legend.innerHTML = `<span>colour: ${panel.colour} ${fmt(lo)} (dark) .. ${fmt(hi)} (light)</span>`
    + "<span><i style=\"border:2px solid crimson\"></i>IS/FID front</span>";
  return pts.length;
}

function lines(parent, panel) {
  const all = panel.series.flatMap((s) => s.points).filter((p) => p[1] !== null);
  if (!all.length) return 0;
  const { svg, sx, sy } = axes(parent, panel.title, all.map((p) => p[0]), all.map((p) => p[1]),
    panel.x, panel.y);
  const legend = el("div", { class: "legend" }, parent.lastChild);
  panel.series.forEach((s, i) => {
    const pts = s.points.filter((p) => p[1] !== null);
    const c = LINES[i % LINES.length];
    el("path", { class: "series", stroke: c,
      d: pts.map((p, j) => `${j ? "L" : "M"}${sx(p[0])},${sy(p[1])}`).join("") }, svg, SVG);
    for (const p of pts) el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: c }, svg, SVG);
    legend.innerHTML += `<span><i style="background:${c}"></i>${s.name}</span>`;
  });
  return pointCount(panel);
}

function pointCount(panel) { return panel.series.reduce((n, s) => n + s.points.length, 0); }

function infoTable(parent, info) {
  const table = el("table", {}, parent);
  for (const [k, v] of Object.entries(info)) {
    const tr = el("tr", {}, table);
    text(tr, "th", k);
    const td = el("td", { class: typeof v === "number" ? "num" : "" }, tr);
    text(td, typeof v === "string" && v.includes(":") ? "code" : "span", fmt(v));
  }
  return table;
}

const tip = document.getElementById("tooltip");
function showTip(e, p) {
  tip.replaceChildren();
  infoTable(tip, p.info);
  tip.hidden = false;
  tip.style.left = Math.min(e.clientX + 14, innerWidth - 470) + "px";
  tip.style.top = e.clientY + 14 + "px";
}
function hideTip() { tip.hidden = true; }

const BY_ID = new Map(DATA.fronts.flatMap((f) => f.points).map((p) => [String(p.id), p]));
function showDetail() {
  const m = /^#trial=(.+)$/.exec(location.hash);
  const detail = document.getElementById("detail");
  document.querySelectorAll(".point.pinned").forEach((d) => d.classList.remove("pinned"));
  const p = m && BY_ID.get(decodeURIComponent(m[1]));
  if (!p) { detail.hidden = true; return; }
  detail.replaceChildren();
  const left = el("div", {}, detail);
  text(left, "h3", `trial ${p.id}` + (p.front ? " (on the IS/FID front)" : ""));
  infoTable(left, p.info);
  const right = el("div", {}, detail);
  const src = DATA.samples[p.id];
  if (src) { text(right, "div", "samples (EMA generator, fixed noise)"); el("img", { src, alt: "samples" }, right); }
  else text(right, "p", p.front ? "no sample grid: its checkpoint is gone"
    : "sample grids are kept in the page for front points only");
  detail.hidden = false;
  document.querySelectorAll(`.point[data-id="${CSS.escape(p.id)}"]`).forEach((d) => d.classList.add("pinned"));
}

function keyValues(parent, obj) {
  const table = el("table", {}, parent);
  for (const [k, v] of Object.entries(obj)) {
    const tr = el("tr", {}, table);
    text(tr, "th", k);
    text(tr, "td", typeof v === "object" && v !== null ? JSON.stringify(v) : fmt(v));
  }
}

function cost(parent, c) {
  if (!c) { text(parent, "p", "no cost columns in this table"); return; }
  const h = (s) => (s / 3600).toPrecision(4);
  const setup = Math.max(0, c.total - c.training - c.scoring);
  keyValues(parent, { "device-hours": `${h(c.total)} on ${c.devices}`,
    "shared rounds": `${h(c.rounds)} device-hours`, trials: `${h(c.total - c.rounds)} device-hours`,
    "trained": `${(c.flops / 1e12).toPrecision(4)} TFLOP`,
    "rate while training": `${c.training > 0 ? (c.flops / c.training / 1e12).toPrecision(4) : 0} TFLOP/s per ${c.unit}` });
  const bar = el("div", { class: "bar" }, parent);
  const parts = [["training", c.training, "#1f77b4"], ["scoring", c.scoring, "#2ca02c"],
    ["set-up and orchestration", setup, "#999"]];
  for (const [name, s, col] of parts) {
    const share = (100 * s) / c.total;
    const d = el("div", { style: `width:${share}%;background:${col}`, title: name }, bar);
    d.textContent = `${name} ${share.toFixed(0)}%`;
  }
}

function main() {
  const meta = document.getElementById("meta");
  keyValues(meta, DATA.meta);
  let drawn = 0;
  for (const f of DATA.fronts) drawn += scatter(document.getElementById("fronts"), f);
  let curves = 0;
  for (const c of DATA.curves) curves += lines(document.getElementById("curves"), c);
  if (!DATA.curves.length) document.getElementById("curves-title").hidden = true;
  cost(document.getElementById("cost"), DATA.cost);
  const settings = document.getElementById("settings");
  if (Object.keys(DATA.settings).length) keyValues(settings, DATA.settings);
  else text(settings, "p", "no saved settings (not a search folder)");
  addEventListener("hashchange", showDetail);
  showDetail();
  document.body.dataset.rendered = String(drawn);
  document.body.dataset.curvePoints = String(curves);
}

main();
