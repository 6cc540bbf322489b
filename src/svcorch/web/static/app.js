// svcorch web: the page. No framework, no CDN: everything it needs ships in the package.
"use strict";

const COLOURS = {
  ready: "#2e8b57", completed: "#2e8b57", "external-ok": "#2e8b57",
  starting: "#d08a00", waiting: "#d08a00", probing: "#d08a00", stopping: "#d08a00", running: "#d08a00",
  failed: "#c62828", fatal: "#c62828", "external-down": "#c62828",
  backoff: "#b35c00", unready: "#b35c00", degraded: "#b35c00", blocked: "#b35c00", exited: "#b35c00",
  stopped: "#8a8a8f",
};
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const state = { rows: new Map(), graph: null, analysis: null, lastEventId: null, logAbort: null, logLines: [], latencies: [], loadedAt: null };
window.svcorch = state; // for the browser tests and the benchmark: what the page holds

function colour(s) { return COLOURS[s] || COLOURS[String(s).split("(")[0]] || COLOURS.stopped; }

function token() { return sessionStorage.getItem("svcorch-token") || ""; }

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token()) h.Authorization = "Bearer " + token();
  return h;
}

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
}

async function getJSON(path) {
  const response = await fetch(path, { headers: headers(), cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.floor(seconds);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}

// -- the table ---------------------------------------------------------------------------------

const rowElements = new Map(); // service -> its <tr>, so an event touches one row only

function renderTable() {
  const body = $("services").tBodies[0];
  for (const row of state.rows.values()) renderRow(body, row);
  for (const [name, tr] of rowElements) if (!state.rows.has(name)) { tr.remove(); rowElements.delete(name); }
}

function renderRow(body, row) {
  let tr = rowElements.get(row.service);
  if (!tr) {
    tr = el("tr", { "data-service": row.service });
    tr.append(el("td", { class: "name" }, row.service), el("td", { class: "state" }, ""), el("td", { class: "pid wide" }),
      el("td", { class: "uptime" }), el("td", { class: "restarts wide" }), el("td", { class: "host wide" }, "local"),
      el("td", { class: "detail" }), actionCell(row.service));
    tr.children[1].append(el("span", { class: "pill" }));
    body.append(tr);
    rowElements.set(row.service, tr);
  }
  const cells = tr.children;
  const pill = cells[1].firstChild;
  pill.dataset.state = row.state;
  pill.textContent = row.state;
  tr.dataset.state = row.state;
  cells[2].textContent = row.pid || "";
  cells[3].textContent = row.pid ? age(row.uptime) : "";
  cells[4].textContent = row.restarts || 0;
  cells[6].textContent = row.detail || "";
}

function recolourNode(service, s) {
  const g = $("graph").querySelector(`g.node[data-service="${CSS.escape(service)}"]`);
  if (!g) return;
  g.dataset.state = s;
  g.querySelector("rect").setAttribute("fill", colour(s));
}

function actionCell(service) {
  const td = el("td", { class: "actions" });
  const restart = el("button", { type: "button", "data-action": "restart" }, "Restart");
  restart.onclick = () => act(`/api/services/${encodeURIComponent(service)}/restart`, `Restart ${service} and what depends on it?`);
  const stop = el("button", { type: "button", class: "danger", "data-action": "stop" }, "Stop");
  stop.onclick = () => act(`/api/services/${encodeURIComponent(service)}/stop`, `Stop ${service} and what depends on it?`);
  const logs = el("button", { type: "button", "data-action": "logs" }, "Logs");
  logs.onclick = () => { $("log-service").value = service; openLogs(); $("logs-section").scrollIntoView(); };
  td.append(restart, stop, logs);
  return td;
}

async function act(path, question) {
  if (!window.confirm(question)) return;
  if (!token()) { toast("Actions need the token: paste it in the token field (see STATE/web.token)."); $("token").focus(); return; }
  try {
    const response = await fetch(path, { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: "{}" });
    const body = await response.json();
    if (response.status === 401) sessionStorage.removeItem("svcorch-token");
    toast(body.error ? `${response.status}: ${body.error}` : `${body.action}: ${body.ok ? "done" : "not all made it"} in ${body.elapsed}s`);
  } catch (err) {
    toast(String(err));
  }
  refresh();
}

// -- the graph ---------------------------------------------------------------------------------

function layers(graph) {
  const deps = new Map(graph.nodes.map((n) => [n.name, []]));
  for (const e of graph.edges) deps.get(e.to).push(e.from);
  const depth = new Map();
  const walk = (name) => {
    if (!depth.has(name)) depth.set(name, Math.max(-1, ...deps.get(name).map(walk)) + 1);
    return depth.get(name);
  };
  graph.nodes.forEach((n) => walk(n.name));
  return depth;
}

function criticalSet() {
  return new Set(((state.analysis || {}).critical_chain || []).map((l) => l.service));
}

function renderGraph() {
  const graph = state.graph;
  const svg = $("graph");
  if (!graph) return;
  svg.replaceChildren();
  const depth = layers(graph);
  const columns = [];
  for (const n of graph.nodes) (columns[depth.get(n.name)] ||= []).push(n.name);
  const W = 140, H = 30, GX = 60, GY = 14;
  const at = new Map();
  columns.forEach((names, c) => names.forEach((name, r) => at.set(name, { x: 10 + c * (W + GX), y: 10 + r * (H + GY) })));
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  svg.setAttribute("width", 20 + columns.length * (W + GX) - GX);
  svg.setAttribute("height", 20 + tallest * (H + GY) - GY);
  const critical = criticalSet();
  for (const e of graph.edges) {
    const a = at.get(e.from), b = at.get(e.to);
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    const path = el("svg:path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "edge" });
    if (critical.has(e.from) && critical.has(e.to)) path.classList.add("critical");
    path.append(el("svg:title", {}, `${e.to} needs ${e.from} ${e.condition}`));
    svg.append(path);
  }
  for (const n of graph.nodes) {
    const p = at.get(n.name);
    const row = state.rows.get(n.name);
    const s = row ? row.state : "stopped";
    const g = el("svg:g", { class: "node", "data-service": n.name, "data-state": s, transform: `translate(${p.x},${p.y})` });
    if (critical.has(n.name)) g.classList.add("critical");
    g.append(el("svg:rect", { width: W, height: H, rx: 6, fill: colour(s) }));
    g.append(el("svg:text", { x: W / 2, y: H / 2 + 4, "text-anchor": "middle" }, n.name.length > 18 ? n.name.slice(0, 17) + "…" : n.name));
    g.append(el("svg:title", {}, `${n.name}: ${s}${critical.has(n.name) ? " (critical chain)" : ""}`));
    svg.append(g);
  }
}

// -- the timeline ------------------------------------------------------------------------------

function renderTimeline() {
  const svg = $("timeline");
  svg.replaceChildren();
  const timed = [...state.rows.values()].filter((r) => r.started_at && r.ready_at && r.ready_at >= r.started_at);
  const total = (state.analysis || {}).total;
  $("timeline-total").textContent = total ? `(last up: ${total.toFixed(2)}s to the last ready)` : "";
  if (!timed.length) {
    svg.setAttribute("viewBox", "0 0 300 24"); svg.setAttribute("width", "300");
    svg.append(el("svg:text", { x: 4, y: 16 }, "no start → ready times recorded yet"));
    return;
  }
  timed.sort((a, b) => a.started_at - b.started_at);
  const origin = Math.min(...timed.map((r) => r.started_at));
  const end = Math.max(...timed.map((r) => r.ready_at)) - origin || 1;
  const L = 130, W = 420, H = 18, G = 6;
  const scale = W / end;
  // scaled to the panel's width (a phone shows the whole chart, smaller)
  svg.setAttribute("viewBox", `0 0 ${L + W + 70} ${24 + timed.length * (H + G)}`);
  svg.setAttribute("width", "100%");
  svg.removeAttribute("height");
  svg.append(el("svg:line", { x1: L, y1: 0, x2: L, y2: timed.length * (H + G), class: "axis" }));
  const critical = criticalSet();
  timed.forEach((r, i) => {
    const y = i * (H + G);
    const took = r.ready_at - r.started_at;
    svg.append(el("svg:text", { x: 0, y: y + 13 }, r.service));
    const bar = el("svg:rect", { x: L + (r.started_at - origin) * scale, y, width: Math.max(2, took * scale), height: H, rx: 3, fill: colour(r.state), class: "bar", "data-service": r.service });
    if (critical.has(r.service)) bar.classList.add("critical");
    bar.append(el("svg:title", {}, `${r.service}: +${(r.started_at - origin).toFixed(3)}s → ready in ${took.toFixed(3)}s`));
    svg.append(bar);
    svg.append(el("svg:text", { x: L + (r.ready_at - origin) * scale + 4, y: y + 13 }, took.toFixed(2) + "s"));
  });
  svg.append(el("svg:text", { x: L, y: timed.length * (H + G) + 14 }, "0s"));
  svg.append(el("svg:text", { x: L + W - 30, y: timed.length * (H + G) + 14 }, end.toFixed(2) + "s"));
}

// -- server-sent events over fetch (so the token can travel in a header) -----------------------

async function stream(path, onEvent, signal, lastId) {
  const extra = lastId !== null && lastId !== undefined ? { "Last-Event-ID": String(lastId) } : {};
  const response = await fetch(path, { headers: headers(extra), cache: "no-store", signal });
  if (!response.ok) throw new Error((await response.json()).error);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = { event: "message", data: [] };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue;
        const i = line.indexOf(":");
        const name = i < 0 ? line : line.slice(0, i);
        const v = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (name === "data") event.data.push(v); else event[name] = v;
      }
      if (event.data.length) onEvent(event);
    }
  }
}

async function followEvents() {
  for (;;) {
    try {
      setConnection("live");
      await stream("/api/events", onJournalEvent, undefined, state.lastEventId);
    } catch (err) {
      setConnection("offline");
    }
    setConnection("connecting");
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function setConnection(s) { const c = $("connection"); c.dataset.state = s; c.textContent = s; }

function onJournalEvent(event) {
  const record = JSON.parse(event.data.join("\n"));
  if (event.id) state.lastEventId = Number(event.id);

  const row = state.rows.get(record.service);
  if (row) {
    row.state = record.new;
    row.detail = record.detail;
    if (record.pid) row.pid = record.pid;
    renderRow($("services").tBodies[0], row);
    recolourNode(record.service, record.new);
  }
  const li = el("li", { "data-severity": record.severity, "data-seq": record.seq, "data-service": record.service, "data-kind": record.kind });
  li.append(el("time", {}, new Date(record.time * 1000).toLocaleTimeString()), document.createTextNode(`${record.service} ${record.kind}: ${record.old} → ${record.new} ${record.detail || ""}`));
  const list = $("events");
  list.prepend(li);
  while (list.children.length > 200) list.lastChild.remove();
  // transition (daemon clock) -> on the page (same machine): the event's trip, rendering included
  if (state.loadedAt !== null && record.time * 1000 >= state.loadedAt) state.latencies.push(Date.now() / 1000 - record.time);
  scheduleRefresh();
}

// -- logs --------------------------------------------------------------------------------------

function renderLog() {
  const query = $("log-search").value.toLowerCase();
  const pre = $("log");
  const lines = query ? state.logLines.filter((l) => l.toLowerCase().includes(query)) : state.logLines;
  pre.replaceChildren();
  for (const line of lines.slice(-2000)) {
    if (query) {
      const i = line.toLowerCase().indexOf(query);
      pre.append(document.createTextNode(line.slice(0, i)), el("mark", {}, line.slice(i, i + query.length)), document.createTextNode(line.slice(i + query.length) + "\n"));
    } else {
      pre.append(document.createTextNode(line + "\n"));
    }
  }
  $("log-count").textContent = query ? `${lines.length} of ${state.logLines.length} lines` : `${state.logLines.length} lines`;
  pre.scrollTop = pre.scrollHeight;
}

async function openLogs() {
  const service = $("log-service").value;
  if (state.logAbort) state.logAbort.abort();
  state.logLines = [];
  renderLog();
  if (!service) return;
  const base = `/api/services/${encodeURIComponent(service)}/logs?lines=200`;
  if (!$("log-follow").checked) {
    try { state.logLines = (await getJSON(base)).lines; } catch (err) { toast(String(err)); }
    renderLog();
    return;
  }
  const abort = new AbortController();
  state.logAbort = abort;
  let pending = false;
  try {
    await stream(base + "&follow=1", (event) => {
      state.logLines.push(JSON.parse(event.data.join("\n")).line);
      if (state.logLines.length > 5000) state.logLines.splice(0, state.logLines.length - 5000);
      if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; renderLog(); }); }
    }, abort.signal);
  } catch (err) {
    if (err.name !== "AbortError") toast(String(err));
  }
}

// -- loading -----------------------------------------------------------------------------------

async function refresh() {
  try {
    const [rows, analysis] = await Promise.all([getJSON("/api/status"), getJSON("/api/analyze")]);
    state.rows = new Map(rows.map((r) => [r.service, r]));
    state.analysis = analysis;
    renderTable();
    renderGraph();
    renderTimeline();
  } catch (err) {
    toast(String(err));
  }
}

function scheduleRefresh() {
  clearTimeout(scheduleRefresh.timer);
  scheduleRefresh.timer = setTimeout(refresh, 1000); // after a burst: uptimes, restarts, timeline
}

async function loadGraph() {
  try {
    state.graph = await getJSON("/api/graph");
    $("stack-name").textContent = state.graph.name ? `svcorch: ${state.graph.name}` : "svcorch";
    $("log-service").replaceChildren();
    for (const n of state.graph.nodes) $("log-service").append(el("option", { value: n.name }, n.name));
  } catch (err) {
    toast(String(err));
  }
}

async function start() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem("svcorch-token", fragment.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  $("token").value = token();
  $("token-form").onsubmit = (e) => e.preventDefault();
  $("token").onchange = async () => {
    sessionStorage.setItem("svcorch-token", $("token").value.trim());
    if (!state.graph) await loadGraph(); // a bind other than the loopback: reads need it too
    refresh();
  };
  $("up-all").onclick = () => act("/api/up", "Start every service of the stack?");
  $("log-service").onchange = openLogs;
  $("log-follow").onchange = openLogs;
  $("log-search").oninput = renderLog;
  await loadGraph();
  await refresh();
  state.loadedAt = Date.now();
  state.loadMs = performance.now(); // navigation start -> table, graph and timeline drawn
  document.body.dataset.loaded = "true";
  setInterval(() => { for (const r of state.rows.values()) if (r.pid && r.uptime !== null) r.uptime += 1; renderTable(); }, 1000);
  followEvents();
}

document.addEventListener("DOMContentLoaded", start);
