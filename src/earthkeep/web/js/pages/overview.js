// Overview: health and readiness (catalog, store, broker, cache), the processes and roles running, queue depth
// by kind and state, recent runs, items per collection.
import { getAll, getJSON } from "../api.js";
import { bytes, card, fill, h, num, stat, status, table, when } from "../dom.js";

export const STATES = ["pending", "running", "completed", "failed", "cancelled"];

/** ``{kind: {state: n}}`` from a list of jobs. */
export function countJobs(jobs) {
  const out = {};
  for (const j of jobs) {
    out[j.kind] ??= Object.fromEntries(STATES.map((s) => [s, 0]));
    out[j.kind][j.status] = (out[j.kind][j.status] || 0) + 1;
  }
  return out;
}

function queueTable(counts) {
  const kinds = Object.keys(counts).sort();
  const cols = [{ label: "kind", value: (k) => k },
    ...STATES.map((s) => ({ label: s, num: true,
      value: (k) => h("span", { dataset: { kind: k, state: s } }, String(counts[k][s] || 0)) }))];
  return table(cols, kinds, { id: "queue", empty: "no jobs yet" });
}

function health(live, ready) {
  const checks = Object.entries(ready.checks || {});
  return h("div", { class: "tiles", id: "health" },
    stat("process", live.status, { dataset: { check: "health" } }),
    stat("ready", ready.status, { dataset: { check: "ready" } }),
    checks.map(([name, v]) => stat(name, v === "ok" ? "ok" : "down", { title: v, dataset: { check: name } })),
    stat("version", live.version));
}

async function readyState() {
  const r = await fetch("/ready", { headers: { Accept: "application/json" } });
  return r.json(); // 503 still carries the checks, which is what this page shows
}

function servicesTable(body) {
  return h("div", {},
    h("p", { id: "roles-running" }, "roles running: ",
      body.roles_running.length ? body.roles_running.map((r) => h("span", { class: "badge", dataset: { role: r } }, r))
        : h("span", { class: "status-failed" }, "none")),
    table([
      { label: "host", value: (r) => r.host }, { label: "pid", num: true, value: (r) => String(r.pid) },
      { label: "roles", value: (r) => r.roles.join(", ") }, { label: "version", value: (r) => r.version },
      { label: "started", value: (r) => when(r.started_at) }, { label: "last heartbeat", value: (r) => when(r.seen_at) },
      { label: "state", value: (r) => status(r.alive ? "running" : "stale") },
    ], body.services, { id: "services", empty: "no earthkeep serve process has reported" }));
}

function runsTable(runs) {
  return table([
    { label: "source", value: (r) => r.source },
    { label: "collection", value: (r) => r.collection },
    { label: "status", value: (r) => status(r.status) },
    { label: "started", value: (r) => when(r.started_at) },
    { label: "records", num: true, value: (r) => num(r.records_collected) },
    { label: "failed", num: true, value: (r) => num(r.records_failed) },
    { label: "bytes", num: true, value: (r) => bytes(r.bytes_collected) },
    { label: "error", value: (r) => (r.error_message ? h("pre", { class: "err" }, r.error_message) : "") },
  ], runs, { id: "runs", empty: "no runs yet" });
}

function collectionsTable(collections) {
  return table([
    { label: "collection", value: (c) => h("a", { href: `#/catalog?collection=${encodeURIComponent(c.id)}` }, c.id) },
    { label: "items", num: true,
      value: (c) => h("span", { dataset: { collection: c.id } }, String(c["earthkeep:item_count"] ?? 0)) },
    { label: "from", value: (c) => when(c.extent?.temporal?.interval?.[0]?.[0]) },
    { label: "to", value: (c) => when(c.extent?.temporal?.interval?.[0]?.[1]) },
  ], collections, { id: "collections", empty: "the catalog is empty" });
}

export async function mount(root) {
  const top = h("div");
  const queue = h("div");
  const runs = h("div");
  const colls = h("div");
  const procs = h("div");
  root.append(h("h2", {}, "Overview"), top, card("Processes and roles", procs),
    h("div", { class: "grid" }, card("Queue by kind and state", queue), card("Items per collection", colls)),
    card("Recent runs", runs));
  async function refresh() {
    const [live, ready, jobs, recent, stac, running] = await Promise.all([
      getJSON("/health"), readyState(), getAll("/jobs", "jobs"), getJSON("/runs", { limit: 20 }),
      getJSON("/stac/collections"), getJSON("/status/services")]);
    fill(top, health(live, ready));
    fill(procs, servicesTable(running));
    fill(queue, queueTable(countJobs(jobs)));
    fill(runs, runsTable(recent));
    fill(colls, collectionsTable(stac.collections));
  }
  await refresh();
  return { refresh };
}
