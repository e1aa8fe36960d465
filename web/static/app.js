// The dashboard: overview (report charts + live events), one alert's timeline, and what was firing at a moment.
// Every number comes from the API as it is (/report, /history, /alerts/{fp}/history, /events): nothing recounted.

import { ApiError, LiveStream, askToken, getJSON, token } from "./api.js";
import { barList, compact, duration, h, stackedBars, timeline } from "./charts.js";
import { loadFiringAt } from "./timetravel.js";

const MAX_ROWS = 200;
const RANGES = { "1h": 3600e3, "6h": 6 * 3600e3, "24h": 86400e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const STATUS = [
  { key: "firing", label: "firing", color: "var(--firing)" },
  { key: "resolved", label: "resolved", color: "var(--resolved)" },
];
// The labels that tell instances of one alertname apart, most telling first.
const KEY_LABELS = ["namespace", "instance", "pod", "service", "job", "cluster"];
const labelRank = (name) => KEY_LABELS.indexOf(name) + 1 || 99;
const SEVERITY_COLORS = { critical: "var(--critical)", warning: "var(--warning)", info: "var(--info)" };

const state = { filter: "", range: "24h", stream: null, view: null, generation: 0, reportTimer: null };
window.__dashboard = { ready: false, loadMs: null, views: 0 };

const $ = (id) => document.getElementById(id);

// ---- routing: #/ (overview), #/alert/<fingerprint>, #/at/<RFC 3339>; filter and range in the query -----------------

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, q = ""] = raw.split("?");
  const params = new URLSearchParams(q);
  return { path: decodeURIComponent(path), filter: params.get("filter") || "", range: params.get("range") || "" };
}

function hashFor(path) {
  const q = new URLSearchParams();
  if (state.filter) q.set("filter", state.filter);
  if (state.range !== "24h") q.set("range", state.range);
  const s = q.toString();
  return `#${path}${s ? `?${s}` : ""}`;
}

function route() {
  const { path, filter, range } = parseHash();
  state.filter = filter;
  state.range = RANGES[range] ? range : "24h";
  $("filter").value = state.filter;
  $("range").value = state.range;
  const generation = ++state.generation;
  stopStream();
  clearTimeout(state.reportTimer);
  state.reportTimer = null;
  showError(null);
  const alert = path.match(/^\/alert\/([0-9a-f]{16})$/);
  const at = path.match(/^\/at\/(.+)$/);
  const view = alert ? showTimeline(alert[1], generation) : at ? showFiringAt(at[1], generation) : showOverview(generation);
  view.catch((err) => current(generation) && showError(err)).finally(() => {
    if (!current(generation)) return;
    document.body.dataset.view = alert ? "timeline" : at ? "at" : "overview";
    document.body.dataset.ready = "true";
    window.__dashboard.views += 1;
    document.body.dataset.views = String(window.__dashboard.views); // tests wait for a view by its number
    if (!window.__dashboard.ready) {
      performance.mark("dashboard-ready");
      window.__dashboard.ready = true;
      window.__dashboard.loadMs = Math.round(performance.getEntriesByName("dashboard-ready")[0].startTime);
    }
  });
}

const current = (generation) => generation === state.generation;

function mount(templateId) {
  document.body.dataset.ready = "false";
  const view = $("view");
  view.replaceChildren($(templateId).content.cloneNode(true));
  return view;
}

function showError(err) {
  const box = $("error");
  $("filter").classList.toggle("invalid", Boolean(err && err.status === 400 && /filter/.test(err.message)));
  box.hidden = !err;
  box.textContent = err ? (err instanceof ApiError ? err.message : `error: ${err.message || err}`) : "";
}

// ---- formatting -----------------------------------------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, "0");

function when(iso, { seconds = true, date = true } = {}) {
  if (!iso) return "–";
  const d = new Date(iso);
  const day = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  const time = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}${seconds ? `:${pad(d.getUTCSeconds())}` : ""}`;
  return date ? `${day} ${time}` : time;
}

function chips(labels, skip = ["alertname", "severity"]) {
  return h("span", { class: "chips" }, ...Object.entries(labels || {})
    .filter(([k]) => !skip.includes(k))
    .sort(([a], [b]) => labelRank(a) - labelRank(b) || (a < b ? -1 : 1))
    .map(([k, v]) => h("span", { class: "chip" }, h("span", { class: "k" }, k), "=", v)));
}

const badge = (kind, value) => h("span", { class: `badge ${kind}-${value || "none"}` }, value || "–");

function keyLabels(labels) {
  const names = Object.keys(labels || {}).filter((k) => !["alertname", "severity"].includes(k));
  names.sort((a, b) => labelRank(a) - labelRank(b));
  return names.slice(0, 2).map((k) => `${k}=${labels[k]}`).join(" ");
}

function classification(c) {
  if (!c) return h("span", { class: "muted unclassified" }, "not classified yet");
  const conf = typeof c.confidence === "number" ? ` · ${Math.round(c.confidence * 100)}%` : "";
  const recs = (c.recommendations || []).join("\n");
  return h("span", { class: "classification", title: [c.reasoning, recs].filter(Boolean).join("\n\n") },
    badge("sev", c.severity), ` ${c.category || ""}${conf} · ${c.source || "?"}${c.model ? ` (${c.model})` : ""}`,
    recs ? h("span", { class: "recs" }, ` → ${c.recommendations.join("; ")}`) : null);
}

// ---- overview -------------------------------------------------------------------------------------------------------

async function showOverview(generation) {
  mount("overview");
  const since = `-${state.range}`;
  const filter = state.filter || undefined;
  const rows = new Map(); // event id → event, for the live table
  const report = loadReport(generation, since, filter);
  report.catch(() => {}); // awaited below; if /history fails first, its error is the one shown
  // /history and the stream start together; a page of /history read before the stream was open is read again
  // once it is, so an event stored in between is in one or both (deduplicated by id), never in neither.
  let open = false;
  const readHistory = () => getJSON("/history", { filter, since, limit: MAX_ROWS }).then((page) => {
    if (current(generation)) addEvents(rows, page.items, false);
  });
  const opened = new Promise((resolve) => {
    state.stream = new LiveStream(filter, {
      onOpen: () => { open = true; resolve(); },
      onEvent: (event) => {
        if (!current(generation)) return;
        addEvents(rows, [event], true);
        scheduleReport(generation, since, filter);
      },
      onStatus: (s, detail) => {
        if (!current(generation)) return;
        setLive(s, detail);
        if (s === "error") resolve();
      },
    }).start();
    setTimeout(resolve, 3000); // no stream (Kafka down): the page still shows history, marked not live
  });
  const first = readHistory().then(() => open);
  const [readWhileOpen] = await Promise.all([first, opened]);
  if (!current(generation)) return;
  await Promise.all([report, readWhileOpen ? null : readHistory()]);
}

async function loadReport(generation, since, filter) {
  const bucket = state.range === "30d" ? "1d" : "1h";
  const r = await getJSON("/report", { filter, since, bucket, top: 10 });
  if (!current(generation)) return;
  renderStats(r);
  renderSeries(r);
  const href = (fp) => hashFor(`/alert/${fp}`);
  barList($("noisy"), r.top_alerts.map((a) => ({
    label: a.alertname, detail: keyLabels(a.labels), value: a.notifications, href: href(a.fingerprint),
    title: `${a.events} events + ${a.duplicates} resends; last ${a.lastReceivedAt}`,
    text: `${compact(a.events)} + ${compact(a.duplicates)}`,
  })), { color: "var(--accent)" });
  barList($("flapping"), r.flapping_alerts.map((a) => ({
    label: a.alertname, detail: keyLabels(a.labels), value: a.flapping_events, href: href(a.fingerprint),
    title: `${a.flapping_events} flapping of ${a.transitions} events; flapping since ${a.firstFlappingAt}`,
    text: `${compact(a.flapping_events)} / ${compact(a.transitions)}`,
  })), { color: "var(--warning)", empty: "no flapping alert in range" });
  barList($("mttr"), r.mttr_seconds.by_alertname.map((a) => ({
    label: a.alertname || "(no alertname)", value: a.mttr_seconds,
    text: `${duration(a.mttr_seconds)} (${a.episodes})`,
    title: `mean ${duration(a.mttr_seconds)}, p50 ${duration(a.p50_seconds)}, p90 ${duration(a.p90_seconds)} ` +
      `over ${a.episodes} resolved episodes`,
    href: `#/?${new URLSearchParams({ filter: `alertname=${JSON.stringify(a.alertname)}`, range: state.range })}`,
    markers: [{ at: a.p50_seconds, title: "p50" }, { at: a.p90_seconds, title: "p90" }],
  })), { color: "var(--info)", empty: "no resolved episode in range" });
}

function scheduleReport(generation, since, filter) {
  if (state.reportTimer) return;
  state.reportTimer = setTimeout(() => {
    state.reportTimer = null;
    if (current(generation)) loadReport(generation, since, filter).catch((err) => current(generation) && showError(err));
  }, 5000);
}

function renderStats(r) {
  const m = r.mttr_seconds;
  const tiles = [
    ["total_events", "events", compact(r.total_events), `${r.total_events} stored events`],
    ["unique_alerts", "alerts", compact(r.unique_alerts), `${r.unique_alerts} distinct fingerprints`],
    ["duplicates_suppressed", "resends suppressed", compact(r.duplicates_suppressed), `${r.duplicates_suppressed}`],
    ["flapping_events", "flapping events", compact(r.flapping_events), `${r.flapping_events}`],
    ["episodes", "resolved episodes", compact(m.episodes), `${m.episodes}`],
    ["mttr", "MTTR mean", duration(m.overall), `${m.overall ?? "–"} s`],
    ["mttr_p50", "MTTR p50", duration(m.p50), `${m.p50 ?? "–"} s`],
    ["mttr_p90", "MTTR p90", duration(m.p90), `${m.p90 ?? "–"} s`],
  ];
  $("stats").replaceChildren(...tiles.map(([key, label, value, exact]) =>
    h("div", { class: "stat", title: exact, dataset: { stat: key, exact: String(exact).split(" ")[0] } },
      h("span", { class: "value" }, value), h("span", { class: "label" }, label))));
}

function renderSeries(r) {
  const from = Date.parse(r.since);
  const to = Date.parse(r.until);
  const stepMs = r.bucket_seconds * 1000;
  const status = r.buckets.map((b) => ({ start: Date.parse(b.start), counts: b.by_status }));
  const severity = r.buckets.map((b) => ({ start: Date.parse(b.start), counts: b.by_severity }));
  const seen = new Set(r.buckets.flatMap((b) => Object.keys(b.by_severity)));
  const order = ["critical", "warning", "info", ...[...seen].filter((s) => !SEVERITY_COLORS[s]).sort()];
  const sevSeries = order.filter((s) => seen.has(s) || SEVERITY_COLORS[s]).map((s) => ({
    key: s, label: s || "(none)", color: SEVERITY_COLORS[s] || "var(--other)",
  }));
  const draw = () => {
    stackedBars($("chart-status"), { from, to, stepMs, points: status, series: STATUS });
    stackedBars($("chart-severity"), { from, to, stepMs, points: severity, series: sevSeries });
  };
  draw();
  state.redraw = draw;
}

function addEvents(rows, events, live) {
  for (const e of events) {
    if (!rows.has(e.id)) rows.set(e.id, { ...e, live });
  }
  const sorted = [...rows.values()].sort((a, b) =>
    a.receivedAt === b.receivedAt ? (BigInt(b.id) > BigInt(a.id) ? 1 : -1) : a.receivedAt < b.receivedAt ? 1 : -1);
  for (const e of sorted.slice(MAX_ROWS)) rows.delete(e.id);
  const body = $("events").tBodies[0];
  body.replaceChildren(...sorted.slice(0, MAX_ROWS).map(eventRow));
  const lives = sorted.filter((e) => e.live).length;
  $("events-count").textContent = `${Math.min(sorted.length, MAX_ROWS)} newest${lives ? ` · ${lives} live` : ""}`;
  if (!sorted.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "no event in range")));
  }
}

function eventRow(e) {
  const open = () => { location.hash = hashFor(`/alert/${e.fingerprint}`); };
  return h("tr", { class: `event${e.live ? " live" : ""}`, dataset: { id: e.id, fingerprint: e.fingerprint },
    onclick: open, tabindex: 0, onkeydown: (ev) => ev.key === "Enter" && open() },
    h("td", { class: "time", title: e.receivedAt }, when(e.receivedAt)),
    h("td", {}, badge("st", e.status)),
    h("td", {}, badge("sev", e.severity)),
    h("td", { class: "alert" }, h("b", {}, e.labels.alertname || "(no alertname)"),
      e.flapping ? h("span", { class: "badge flap" }, "flapping") : null, " ", chips(e.labels)),
    h("td", { class: "num", title: `${e.duplicates} resends` }, e.duplicates ? compact(e.duplicates) : ""));
}

function setLive(s, detail) {
  const pill = $("live");
  const label = { connecting: "connecting…", live: "● live", retrying: "reconnecting", error: "stream refused",
    gap: "● live (gap)", idle: "idle" }[s] || s;
  if (s === "gap") detail = `events ${detail.from}..${detail.to - 1} of partition ${detail.partition} expired`;
  pill.dataset.state = s;
  pill.textContent = label;
  pill.title = detail ? `/events: ${detail}` : "Live stream from /events";
}

function stopStream() {
  if (state.stream) state.stream.stop();
  state.stream = null;
  setLive("idle");
}

// ---- one alert's timeline -------------------------------------------------------------------------------------------

async function showTimeline(fp, generation) {
  mount("timeline");
  let t;
  try {
    t = await getJSON(`/alerts/${fp}/history`);
  } catch (err) {
    if (err.status === 404) {
      $("tl-title").textContent = "no history";
      $("tl-fp").textContent = fp;
      return;
    }
    throw err;
  }
  if (!current(generation)) return;
  $("tl-title").textContent = t.labels.alertname || "(no alertname)";
  $("tl-fp").textContent = fp;
  $("tl-labels").replaceChildren(chips(t.labels, ["alertname"]));
  const firing = t.episodes.filter((e) => e.status === "firing").length;
  const resolved = t.episodes.filter((e) => e.durationSeconds !== null);
  const total = resolved.reduce((s, e) => s + e.durationSeconds, 0);
  const resends = t.items.reduce((s, e) => s + e.duplicates, 0);
  $("tl-summary").replaceChildren(...[
    ["episodes", t.episodes.length], ["firing now", firing ? "yes" : "no"], ["events", t.items.length],
    ["resends", resends], ["flapping episodes", t.episodes.filter((e) => e.flapping).length],
    ["time to resolve, mean", resolved.length ? duration(total / resolved.length) : "–"],
  ].map(([label, value]) => h("div", { class: "stat" }, h("span", { class: "value" }, String(value)),
    h("span", { class: "label" }, label))));
  const times = [...t.episodes.map((e) => Date.parse(e.startsAt)), ...t.items.map((e) => Date.parse(e.receivedAt))];
  const ends = t.episodes.map((e) => (e.resolvedAt ? Date.parse(e.resolvedAt) : Date.now()));
  const from = Math.min(...times);
  const to = Math.max(...times, ...ends);
  const margin = Math.max(60e3, (to - from) * 0.03);
  const draw = () => timeline($("tl-chart"), { from: from - margin, to: to + margin, episodes: t.episodes, events: t.items });
  draw();
  state.redraw = draw;
  $("tl-events").tBodies[0].replaceChildren(...[...t.items].reverse().map((e) => h("tr", { dataset: { id: e.id } },
    h("td", { class: "time", title: e.receivedAt }, when(e.receivedAt)),
    h("td", {}, badge("st", e.status)),
    h("td", { class: "time", title: e.startsAt }, when(e.startsAt)),
    h("td", { class: "time", title: e.endsAt || "" }, when(e.endsAt)),
    h("td", {}, badge("sev", e.severity)),
    h("td", { class: "num" }, String(e.duplicates)),
    h("td", {}, e.flapping ? h("span", { class: "badge flap" }, "flapping") : ""),
    h("td", { class: "class" }, classification(e.classification)),
    h("td", { class: "summary" }, (e.annotations && (e.annotations.summary || e.annotations.description)) || ""))));
}

// ---- what was firing at a moment -----------------------------------------------------------------------------------

async function showFiringAt(rawAt, generation) {
  mount("at-view");
  const at = new Date(decodeURIComponent(rawAt));
  if (Number.isNaN(at.getTime())) throw new Error(`not a time: ${rawAt}`);
  const iso = at.toISOString();
  $("at").value = iso.slice(0, 19);
  $("at-title").textContent = `Firing at ${iso.replace("T", " ").replace(".000Z", "Z")}`;
  $("at-steps").replaceChildren(...[["−1 h", -3600e3], ["−15 min", -900e3], ["+15 min", 900e3], ["+1 h", 3600e3]]
    .map(([label, ms]) => h("a", { class: "step", href: hashFor(`/at/${new Date(at.getTime() + ms).toISOString()}`) },
      label)));
  const { alerts, source } = await loadFiringAt(iso, state.filter || undefined);
  if (!current(generation)) return;
  const rank = { critical: 0, warning: 1, info: 2 };
  alerts.sort((a, b) => (rank[a.labels.severity] ?? 3) - (rank[b.labels.severity] ?? 3) ||
    (a.startsAt < b.startsAt ? -1 : 1));
  const count = (sev) => alerts.filter((a) => a.labels.severity === sev).length;
  const others = alerts.length - count("critical") - count("warning") - count("info");
  $("at-summary").replaceChildren(...[["firing", alerts.length], ["critical", count("critical")],
    ["warning", count("warning")], ["info", count("info")], ["other severity", others],
    ["longest firing", alerts.length ? duration((at - Date.parse(alerts.reduce((m, a) => (a.startsAt < m ? a.startsAt : m),
      alerts[0].startsAt))) / 1000) : "–"]]
    .map(([label, value]) => h("div", { class: "stat" }, h("span", { class: "value" }, String(value)),
      h("span", { class: "label" }, label))));
  $("at-source").textContent = source;
  const body = $("at-alerts").tBodies[0];
  if (!alerts.length) {
    body.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "nothing was firing then")));
    return;
  }
  body.replaceChildren(...alerts.map((a) => h("tr", { class: "event", dataset: { fingerprint: a.fingerprint },
    onclick: () => { location.hash = hashFor(`/alert/${a.fingerprint}`); } },
    h("td", { class: "alert" }, h("b", {}, a.labels.alertname || "(no alertname)")),
    h("td", {}, badge("sev", a.labels.severity)),
    h("td", { class: "time", title: a.startsAt }, when(a.startsAt)),
    h("td", { class: "num" }, duration((at - Date.parse(a.startsAt)) / 1000)),
    h("td", { class: "labels" }, chips(a.labels)))));
}

// ---- controls -------------------------------------------------------------------------------------------------------

function navigate(path) {
  const next = hashFor(path);
  if (location.hash === next) route();
  else location.hash = next;
}

function currentPath() {
  return parseHash().path;
}

let typing = null;
$("filter").addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    state.filter = $("filter").value.trim();
    navigate(currentPath().startsWith("/at/") ? currentPath() : "/");
  }, 400);
});
$("filter-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  clearTimeout(typing);
  state.filter = $("filter").value.trim();
  navigate(currentPath().startsWith("/at/") ? currentPath() : "/");
});
$("range").addEventListener("change", () => {
  state.range = $("range").value;
  navigate(currentPath().startsWith("/alert/") ? "/" : currentPath());
});
$("at-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const v = $("at").value;
  if (!v) return;
  navigate(`/at/${v.length === 16 ? `${v}:00` : v}Z`);
});
$("token-button").hidden = !token();
$("token-button").addEventListener("click", () => askToken("Replace the token kept in this tab.").then(() => route()));
let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => state.redraw && state.redraw(), 150);
});
window.addEventListener("hashchange", route);
route();
