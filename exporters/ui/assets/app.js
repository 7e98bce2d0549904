// The live page: fetches /ui/data.json after every harvest and draws one card per series.
// Every name, label and number goes into the page as text (textContent), never as HTML.
"use strict";

const list = document.getElementById("list");
const filter = document.getElementById("filter");
const count = document.getElementById("count");
const statusLine = document.getElementById("status");
const note = document.getElementById("note");
const links = document.getElementById("links");

// Cards by series key (name and labels), kept between refreshes so the page does not flicker.
const cards = new Map();
let data = null;
let linksShown = false;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function keyOf(s) {
  return s.name + "\u0000" + JSON.stringify(s.labels);
}

// A number with three significant digits and a unit prefix fit for the unit.
function format(v, unit) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (unit === "By" || unit === "By/s") {
    const steps = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, x = v;
    while (Math.abs(x) >= 1024 && i < steps.length - 1) { x /= 1024; i++; }
    return x.toPrecision(3) + " " + steps[i] + (unit === "By/s" ? "/s" : "");
  }
  if (unit === "s" && a > 0 && a < 1) {
    return a >= 1e-3 ? (v * 1e3).toPrecision(3) + " ms" : (v * 1e6).toPrecision(3) + " µs";
  }
  let s;
  if (a !== 0 && (a >= 1e9 || a < 1e-3)) s = v.toExponential(2);
  else if (a >= 100 || Number.isInteger(v)) s = String(Math.round(v));
  else s = v.toPrecision(3);
  return unit && unit !== "1" ? s + " " + unit : s;
}

function makeCard(s) {
  const card = el("section", "series");
  card.appendChild(el("div", "name", s.name));
  const labels = s.labels.map(([k, v]) => k + "=" + JSON.stringify(v)).join(" ");
  card.appendChild(el("div", "labels", labels));
  const value = el("div", "value");
  card.appendChild(value);
  const canvas = el("canvas");
  card.appendChild(canvas);
  return { card, value, canvas, name: s.name.toLowerCase(), kind: s.kind };
}

function showValue(c, s) {
  const last = s.points.length ? s.points[s.points.length - 1] : null;
  c.value.replaceChildren();
  if (s.kind === "timing") {
    c.value.appendChild(el("span", "p50", "p50 " + format(last && last[1], s.unit)));
    c.value.appendChild(document.createTextNode("  "));
    c.value.appendChild(el("span", "p99", "p99 " + format(last && last[2], s.unit)));
  } else if (s.kind === "counter") {
    const unit = s.unit && s.unit !== "1" ? s.unit + "/s" : "/s";
    c.value.textContent = format(last && last[1], unit === "/s" ? "" : unit) + (unit === "/s" ? " /s" : "");
  } else {
    c.value.textContent = format(last && last[1], s.unit);
  }
}

// Draws the series' lines (one; two for a timing) over the last `points` harvests.
function draw(c, s) {
  const canvas = c.canvas;
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, w, h);
  const span = Math.max(data.interval, 1e-3) * Math.max(data.points - 1, 1);
  const t1 = data.time, t0 = t1 - span;
  const columns = s.kind === "timing" ? [1, 2] : [1];
  let lo = Infinity, hi = -Infinity;
  for (const p of s.points) for (const i of columns) {
    if (p[i] !== null) { lo = Math.min(lo, p[i]); hi = Math.max(hi, p[i]); }
  }
  g.strokeStyle = "#e6e9ed";
  g.lineWidth = 1;
  g.beginPath(); g.moveTo(0, h - 0.5); g.lineTo(w, h - 0.5); g.stroke();
  if (lo === Infinity) return;
  if (lo > 0) lo = 0;
  if (hi === lo) hi = lo + 1;
  const x = (t) => ((t - t0) / span) * (w - 2) + 1;
  const y = (v) => h - 2 - ((v - lo) / (hi - lo)) * (h - 4);
  const colours = ["#1f6fd1", "#d1561f"];
  columns.forEach((i, n) => {
    g.strokeStyle = colours[n];
    g.lineWidth = 1.5 * ratio;
    g.beginPath();
    let pen = false;
    for (const p of s.points) {
      if (p[i] === null) { pen = false; continue; }
      if (pen) g.lineTo(x(p[0]), y(p[i])); else g.moveTo(x(p[0]), y(p[i]));
      pen = true;
    }
    g.stroke();
  });
}

function applyFilter() {
  const q = filter.value.trim().toLowerCase();
  let shown = 0;
  for (const c of cards.values()) {
    c.card.hidden = q !== "" && !c.name.includes(q);
    if (!c.card.hidden) shown++;
  }
  count.textContent = shown === cards.size ? cards.size + " series" : shown + " of " + cards.size + " series";
}

function render() {
  if (!linksShown) {
    for (const [label, path] of data.links) {
      if (typeof path !== "string" || !path.startsWith("/")) continue;
      const a = el("a", null, label);
      a.href = path;
      links.appendChild(a);
    }
    linksShown = true;
  }
  const seen = new Set();
  let previous = null;
  for (const s of data.series) {
    const key = keyOf(s);
    seen.add(key);
    let c = cards.get(key);
    if (!c) {
      c = makeCard(s);
      cards.set(key, c);
    }
    // Keep the harvest's order.
    const next = previous ? previous.card.nextSibling : list.firstChild;
    if (next !== c.card) list.insertBefore(c.card, next);
    previous = c;
  }
  for (const [key, c] of cards) {
    if (!seen.has(key)) { c.card.remove(); cards.delete(key); }
  }
  applyFilter();
  for (const s of data.series) {
    const c = cards.get(keyOf(s));
    showValue(c, s);
    if (!c.card.hidden) draw(c, s);
  }
  note.hidden = data.left_out === 0;
  note.textContent = data.left_out + " series of the latest harvest are not shown: the page keeps at most " + data.max_series + ".";
  const when = new Date(data.time * 1000).toLocaleTimeString();
  statusLine.className = "";
  statusLine.textContent = "harvest " + data.sequence + " at " + when;
}

async function refresh() {
  let wait = 1000;
  try {
    const r = await fetch("/ui/data.json", { cache: "no-store" });
    if (!r.ok) throw new Error("data.json answered " + r.status);
    const next = await r.json();
    if (!data || next.sequence !== data.sequence) {
      data = next;
      render();
    }
    // Poll twice per harvest (at most every 5 s, at least every 250 ms).
    wait = Math.min(5000, Math.max(250, (data.interval * 1000) / 2));
  } catch (e) {
    statusLine.className = "error";
    statusLine.textContent = "cannot reach the sampler: " + e.message;
    wait = 2000;
  }
  setTimeout(refresh, wait);
}

filter.addEventListener("input", () => {
  applyFilter();
  if (data) for (const s of data.series) {
    const c = cards.get(keyOf(s));
    if (c && !c.card.hidden) draw(c, s);
  }
});
refresh();
