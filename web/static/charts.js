// Charts drawn as SVG (and bar lists as plain HTML): no library, nothing fetched.

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "style") node.style.cssText = v; // CSSOM, not an inline style attribute: the CSP allows it
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

function title(text) {
  return svg("title", {}, text);
}

// Round numbers for an axis up to `max`: about `count` steps of 1, 2 or 5 × 10^n.
export function niceTicks(max, count = 4) {
  if (max <= 0) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)); // counts: whole steps
  const top = Math.ceil(max / step) * step;
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Math.round(v * 1e6) / 1e6);
  return ticks;
}

export function compact(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d ${String(Math.floor((s % 86400) / 3600)).padStart(2, "0")}h`;
}

const pad = (n) => String(n).padStart(2, "0");

export function timeLabel(ms, stepMs) {
  const d = new Date(ms);
  const day = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  if (stepMs >= 86400e3) return day;
  const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  return d.getUTCHours() === 0 && d.getUTCMinutes() === 0 ? day : hm;
}

// Stacked bars of counts per time bucket. series: [{key, label, color}]; points: [{start (ms), counts: {key: n}}]
// (a bucket absent from points is drawn as zero). Returns the SVG.
export function stackedBars(container, { from, to, stepMs, points, series }) {
  const width = Math.max(320, container.clientWidth || 600);
  const height = Math.max(120, container.clientHeight || 170);
  const m = { left: 40, right: 6, top: 6, bottom: 18 };
  const first = Math.floor(from / stepMs) * stepMs;
  const n = Math.max(1, Math.ceil((to - first) / stepMs));
  const byStart = new Map(points.map((p) => [p.start, p.counts]));
  const totals = [];
  for (let i = 0; i < n; i++) {
    const counts = byStart.get(first + i * stepMs) || {};
    totals.push(series.reduce((sum, s) => sum + (counts[s.key] || 0), 0));
  }
  const ticks = niceTicks(Math.max(...totals, 1));
  const top = ticks[ticks.length - 1];
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const bw = plotW / n;
  const y = (v) => m.top + plotH - (v / top) * plotH;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "stacked", role: "img" });
  for (const t of ticks) {
    root.append(svg("line", { x1: m.left, x2: width - m.right, y1: y(t), y2: y(t), class: "grid" }));
    root.append(svg("text", { x: m.left - 5, y: y(t) + 3, class: "axis", "text-anchor": "end" }, compact(t)));
  }
  const labelEvery = Math.max(1, Math.ceil(n / Math.floor(plotW / 56)));
  for (let i = 0; i < n; i++) {
    const start = first + i * stepMs;
    const counts = byStart.get(start) || {};
    const x = m.left + i * bw;
    const g = svg("g", { class: "bucket" });
    let acc = 0;
    const parts = [];
    for (const s of series) {
      const v = counts[s.key] || 0;
      if (!v) continue;
      parts.push(`${s.label} ${v}`);
      g.append(svg("rect", {
        x: x + Math.min(1, bw * 0.1), y: y(acc + v), width: Math.max(1, bw - Math.min(2, bw * 0.2)),
        height: Math.max(0.5, y(acc) - y(acc + v)), style: `fill:${s.color}`,
      }));
      acc += v;
    }
    const when = new Date(start).toISOString().slice(0, 16).replace("T", " ");
    g.append(svg("rect", { x, y: m.top, width: bw, height: plotH, class: "hover" },
      title(`${when} UTC — ${acc} events${parts.length ? `: ${parts.join(", ")}` : ""}`)));
    root.append(g);
    if (i % labelEvery === 0) {
      root.append(svg("text", { x: x + bw / 2, y: height - 4, class: "axis", "text-anchor": "middle" },
        timeLabel(start, stepMs)));
    }
  }
  root.append(svg("line", { x1: m.left, x2: width - m.right, y1: y(0), y2: y(0), class: "baseline" }));
  container.replaceChildren(root, legend(series, points));
  return root;
}

function legend(series, points) {
  const sums = Object.fromEntries(series.map((s) => [s.key, 0]));
  for (const p of points) for (const s of series) sums[s.key] += p.counts[s.key] || 0;
  return h("div", { class: "legend" }, ...series.filter((s) => sums[s.key] || s.always).map((s) =>
    h("span", {}, h("i", { style: `background:${s.color}` }), `${s.label} `, h("b", {}, compact(sums[s.key])))));
}

// A ranked list as horizontal bars. rows: [{label, detail, value, text, href, title, markers: [{at, title}]}]
export function barList(container, rows, { color = "var(--accent)", empty = "nothing in range" } = {}) {
  if (!rows.length) {
    container.replaceChildren(h("p", { class: "empty" }, empty));
    return;
  }
  const max = Math.max(...rows.map((r) => Math.max(r.value, ...(r.markers || []).map((mk) => mk.at))), 1);
  container.replaceChildren(...rows.map((r) => {
    const track = h("span", { class: "track" },
      h("span", { class: "fill", style: `width:${(100 * r.value) / max}%;background:${r.color || color}` }));
    for (const mk of r.markers || []) {
      track.append(h("span", { class: "marker", style: `left:${(100 * mk.at) / max}%`, title: mk.title }));
    }
    const label = h(r.href ? "a" : "span", { class: "label", href: r.href, title: r.title },
      h("span", { class: "name" }, r.label), r.detail ? h("span", { class: "detail" }, r.detail) : null);
    return h("div", { class: "row" }, label, track, h("span", { class: "value" }, r.text ?? compact(r.value)));
  }));
}

// One alert's history on a time axis: its episodes as bars from firing to resolved (still firing: to `to`),
// and each stored event as a tick coloured by status.
export function timeline(container, { from, to, episodes, events }) {
  const width = Math.max(480, container.clientWidth || 900);
  const height = 124;
  const m = { left: 70, right: 12, top: 22, bottom: 4 };
  const span = Math.max(1, to - from);
  const x = (t) => m.left + ((t - from) / span) * (width - m.left - m.right);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "timeline", role: "img" });
  const stepMs = span > 3 * 86400e3 ? 86400e3 : span > 6 * 3600e3 ? 3600e3 * 6 : span > 3600e3 ? 3600e3 : 600e3;
  for (let t = Math.ceil(from / stepMs) * stepMs; t <= to; t += stepMs) {
    root.append(svg("line", { x1: x(t), x2: x(t), y1: m.top - 4, y2: height - m.bottom, class: "grid" }));
    root.append(svg("text", { x: x(t), y: 12, class: "axis", "text-anchor": "middle" }, timeLabel(t, stepMs)));
  }
  root.append(svg("text", { x: 4, y: m.top + 22, class: "axis" }, "episodes"));
  root.append(svg("text", { x: 4, y: m.top + 74, class: "axis" }, "events"));
  for (const ep of episodes) {
    const start = Date.parse(ep.startsAt);
    const end = ep.resolvedAt ? Date.parse(ep.resolvedAt) : to;
    const cls = `episode ${ep.status}${ep.flapping ? " flapping" : ""}`;
    const text = `${ep.startsAt} → ${ep.resolvedAt || "still firing"}` +
      ` (${ep.durationSeconds !== null ? duration(ep.durationSeconds) : "open"}; ${ep.events} events` +
      `${ep.flapping ? ", flapping" : ""})`;
    root.append(svg("rect", {
      x: x(start), y: m.top + 8, width: Math.max(3, x(end) - x(start)), height: 22, rx: 2, class: cls,
      "data-starts-at": ep.startsAt,
    }, title(text)));
  }
  for (const ev of events) {
    const t = Date.parse(ev.receivedAt);
    root.append(svg("rect", { x: x(t) - 1.5, y: m.top + 58, width: 3, height: 24, class: `tick ${ev.status}` },
      title(`${ev.receivedAt} ${ev.status} (startsAt ${ev.startsAt}, ${ev.duplicates} resends)`)));
  }
  container.replaceChildren(root);
  return root;
}
