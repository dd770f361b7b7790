// Quarry console: plain JavaScript, no build step, no network access beyond this server.
"use strict";

const main = document.getElementById("main");
const statusEl = document.getElementById("status");

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(path, opts = {}) {
  const r = await fetch(path, opts);
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new ApiError(r.status, typeof body === "object" ? body : { detail: body });
  return body;
}

// Features differ between servers (events, keys, stats, shards): the OpenAPI description
// says which routes exist, so the console never probes for one that is not there.
let routes = null;
async function has(template) {
  if (routes === null) {
    const spec = await api("/openapi.json");
    routes = new Set(Object.keys(spec.paths).map((p) => p.replace(/\{(\w+)(:\w+)?\}/g, "{$1}")));
  }
  return routes.has(template);
}

// An optional endpoint: null when this server does not have the route.
async function optional(template, path, opts) {
  return (await has(template)) ? api(path, opts) : null;
}

const fmtBytes = (n) => {
  if (n === undefined || n === null) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};
const fmtTime = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "");
const short = (v) => (v ? String(v).slice(0, 12) : "");
const dsLink = (name) => h("a", { href: `#/d/${encodeURIComponent(name)}` }, name);

function table(headers, rows, numeric = []) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x, i) => h("th", { class: numeric.includes(i) ? "num" : "" }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: numeric.includes(i) ? "num" : "" }, c))))));
}

function showError(where, e) {
  where.append(h("p", { class: "error" }, `Error: ${e.message}`));
}

// ---- pages -------------------------------------------------------------------------------

async function datasetsPage() {
  main.replaceChildren(h("h1", {}, "Datasets"));
  const list = await api("/datasets");
  if (!list.length) {
    main.append(h("p", { class: "muted" }, "No datasets yet. Add one with `quarry put NAME FILE`."));
    return;
  }
  main.append(table(
    ["name", "kind", "size", "rows / lines", "versions", "aliases", "HEAD", "created"],
    list.map((d) => [dsLink(d.name), d.kind, fmtBytes(d.size), (d.lines ?? d.rows ?? "").toLocaleString(),
      d.versions, Object.keys(d.aliases || {}).map((a) => h("span", { class: "pill" }, a)),
      h("code", {}, short(d.version)), fmtTime(d.created)]),
    [2, 3, 4]));
}

async function datasetPage(name) {
  main.replaceChildren(h("h1", {}, name));
  const d = await api(`/datasets/${name}`);
  main.append(h("p", {}, h("span", { class: "pill" }, d.kind), ` ${fmtBytes(d.size)} · `,
    `${(d.lines ?? d.rows ?? 0).toLocaleString()} ${d.kind === "lines" ? "lines" : "rows"} · HEAD `,
    h("code", {}, short(d.version))));

  const history = await optional("/datasets/{name}/versions", `/datasets/${name}/versions?limit=50`);
  if (history) {
    const rows = (history.versions || history).map((v) => [h("code", {}, short(v.version)),
      h("code", {}, short(v.parent)), fmtTime(v.created || v.time), fmtBytes(v.size), v.message || ""]);
    main.append(h("h2", {}, "History"), table(["version", "parent", "time", "size", "message"], rows, [3]));
  }
  if (d.schema) {
    main.append(h("h2", {}, "Schema"),
      table(["column", "type"], d.schema.map((c) => [h("code", {}, c.name), c.type])));
  }
  const keys = await optional("/datasets/{name}/keys", `/datasets/${name}/keys`);
  if (keys) {
    const all = [].concat(keys.declared || [], keys.built || [], keys.suggested || []);
    if (all.length) {
      main.append(h("h2", {}, "Keys"), table(["fields", "state", "uses", "size"],
        all.map((k) => [(k.fields || []).join(", "), k.state || k.status || "", k.uses ?? "", fmtBytes(k.size)])));
    }
  }
  if (d.kind === "lines") linesForm(name, d);
  else if (d.kind === "records") recordsForm(name, d);
}

function linesForm(name, d) {
  const out = h("pre", { class: "lines", id: "results" });
  const start = h("input", { type: "number", min: "1", value: "1", name: "start" });
  const count = h("input", { type: "number", min: "1", max: "1000", value: "20", name: "count" });
  const form = h("form", { class: "query", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      out.textContent = await api(`/datasets/${name}/lines?start=${start.value}&count=${count.value}`);
    } catch (e) { out.textContent = `Error: ${e.message}`; }
  } }, h("label", {}, "first line", start), h("label", {}, "count", count), h("button", { type: "submit" }, "Read"));
  main.append(h("h2", {}, "Read lines"), form, out);
}

const toEpoch = (v) => (v ? Date.parse(v + "Z") / 1000 : null);

function recordsForm(name, d) {
  const zone = d.time_range || null;  // microseconds since the epoch
  const startIn = h("input", { type: "datetime-local", name: "start", step: "1" });
  const endIn = h("input", { type: "datetime-local", name: "end", step: "1" });
  if (zone && zone.length === 2) {
    startIn.value = new Date(Math.floor(zone[0] / 1e6) * 1000).toISOString().slice(0, 19);
    endIn.value = new Date(Math.ceil(zone[1] / 1e6) * 1000).toISOString().slice(0, 19);
  }
  const ipsIn = h("input", { type: "text", name: "ips", placeholder: "1.2.3.4, 5.6.7.8 (empty: all)" });
  const limitIn = h("input", { type: "number", name: "limit", value: "100", min: "1", max: "10000" });
  const results = h("div", { id: "results" });
  const chart = h("div", { id: "chart" });
  const form = h("form", { class: "query", onsubmit: async (ev) => {
    ev.preventDefault();
    results.replaceChildren(h("p", { class: "muted" }, "Running…"));
    const start = toEpoch(startIn.value), end = toEpoch(endIn.value);
    const ips = ipsIn.value.split(",").map((s) => s.trim()).filter(Boolean);
    try {
      await runRecordsQuery(name, { start, end, ips, limit: Number(limitIn.value) }, results, chart);
    } catch (e) { results.replaceChildren(); showError(results, e); }
  } }, h("label", {}, "from (UTC)", startIn), h("label", {}, "to (UTC)", endIn),
     h("label", {}, "IPs", ipsIn), h("label", {}, "limit", limitIn), h("button", { type: "submit" }, "Query"));
  main.append(h("h2", {}, "Query"), form, h("h2", {}, "Records per hour"), chart, h("h2", {}, "Results"), results);
}

async function runRecordsQuery(name, q, results, chart) {
  const params = new URLSearchParams();
  if (q.start !== null) params.set("start", q.start);
  if (q.end !== null) params.set("end", q.end);
  params.set("limit", q.limit);
  let rows, header;
  if (q.ips.length) {
    params.set("ips", q.ips.join(","));
    const body = await api(`/datasets/${name}/find?${params}`);
    const recs = body.records;
    header = ["time (UTC)", "ip"];
    rows = recs.map((r) => [fmtTime(r.ts), h("code", {}, r.ip)]);
  } else {
    const body = await api(`/datasets/${name}/find/ips?${params}`);
    header = ["ip", "records"];
    rows = body.ips.map(([ip, count]) => [h("code", {}, ip), count.toLocaleString()]);
  }
  results.replaceChildren(table(header, rows, [1]), h("p", { class: "muted" }, `${rows.length} shown`));
  await drawHourly(name, q, chart);
}

async function hourlyCounts(name, q) {
  // Server-side: the stats endpoint counts per hour chunk by chunk, whatever the window size.
  const filters = [];
  if (q.start !== null || q.end !== null) {
    filters.push({ field: "ts", op: "range", value: [q.start, q.end] });
  }
  if (q.ips.length) filters.push({ field: "ip", op: "in", value: q.ips });
  const res = await optional("/datasets/{name}/stats", `/datasets/${name}/stats`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ aggregates: [{ op: "histogram", field: "ts", bucket: 3600 }], filters }),
  });
  if (!res) return null;
  const key = Object.keys(res.results).find((k) => k.startsWith("histogram("));
  return key ? res.results[key] : null;
}

async function drawHourly(name, q, chart) {
  let buckets;
  try { buckets = await hourlyCounts(name, q); }
  catch (e) { chart.replaceChildren(); showError(chart, e); return; }
  if (!buckets || !buckets.length) {
    chart.replaceChildren(h("p", { class: "muted" }, "No hourly statistics for this selection."));
    return;
  }
  chart.replaceChildren(barChart(buckets));
}

function barChart(buckets) {
  const ns = "http://www.w3.org/2000/svg";
  const W = 1000, H = 220, pad = 28;
  const max = Math.max(...buckets.map((b) => b[1]), 1);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "records per hour");
  const bw = (W - pad) / buckets.length;
  buckets.forEach(([t, c], i) => {
    const r = document.createElementNS(ns, "rect");
    const bh = ((H - pad) * c) / max;
    r.setAttribute("class", "bar");
    r.setAttribute("x", pad + i * bw + 0.5);
    r.setAttribute("y", H - pad - bh);
    r.setAttribute("width", Math.max(bw - 1, 1));
    r.setAttribute("height", bh);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${fmtTime(t)}: ${c}`;
    r.append(title);
    svg.append(r);
  });
  const label = (x, y, text, anchor = "start") => {
    const el = document.createElementNS(ns, "text");
    el.setAttribute("x", x); el.setAttribute("y", y); el.setAttribute("class", "axis");
    el.setAttribute("text-anchor", anchor); el.textContent = text; svg.append(el);
  };
  label(2, 12, String(max));
  label(pad, H - 8, fmtTime(buckets[0][0]));
  label(W, H - 8, fmtTime(buckets[buckets.length - 1][0]), "end");
  return svg;
}

let events = null;
function eventsPage() {
  main.replaceChildren(h("h1", {}, "Live events"));
  const list = h("tbody", { id: "event-list" });
  main.append(h("p", { class: "muted" }, "New versions, alias moves and pipeline results as they happen."),
    h("table", {}, h("thead", {}, h("tr", {}, ["time", "dataset", "event", "version"].map((x) => h("th", {}, x)))), list));
  if (typeof EventSource === "undefined") return;
  has("/events").then((ok) => {
    if (!ok) { statusEl.textContent = "this server has no event stream"; return; }
    events = new EventSource("/events");
    events.onmessage = (m) => {
      let e;
      try { e = JSON.parse(m.data); } catch { return; }
      list.prepend(h("tr", {}, h("td", {}, fmtTime(e.time)), h("td", {}, dsLink(e.dataset || "")),
        h("td", {}, e.event || ""), h("td", {}, h("code", {}, short(e.version)))));
    };
    events.onerror = () => { statusEl.textContent = "event stream interrupted"; };
  });
}

async function shardsPage() {
  main.replaceChildren(h("h1", {}, "Shards"));
  const body = await optional("/shards", "/shards");
  if (!body) {
    main.append(h("p", { class: "muted" }, "This server runs without shards (in-process engine)."));
    return;
  }
  const shards = body.shards || body;
  main.append(table(["shard", "dataset", "state", "chunks", "memory", "load", "replicas"],
    shards.map((s) => [s.id ?? s.shard, s.dataset ?? "", s.state ?? "", s.chunks ?? "",
      fmtBytes(s.memory ?? s.memory_bytes), s.load ?? s.queries ?? "", s.replicas ?? ""]), [3, 4, 5]));
}

// ---- router ------------------------------------------------------------------------------

async function route() {
  if (events) { events.close(); events = null; }
  statusEl.textContent = "";
  const hash = location.hash || "#/";
  try {
    if (hash.startsWith("#/d/")) await datasetPage(decodeURIComponent(hash.slice(4)));
    else if (hash === "#/events") eventsPage();
    else if (hash === "#/shards") await shardsPage();
    else await datasetsPage();
    document.body.dataset.ready = hash;
  } catch (e) {
    main.replaceChildren(h("h1", {}, "Something went wrong"));
    showError(main, e);
    document.body.dataset.ready = hash;
  }
}

window.addEventListener("hashchange", route);
route();
