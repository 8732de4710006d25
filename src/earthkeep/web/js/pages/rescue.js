// Rescue: progress (datasets, assets, copies, verification, disagreements), nodes and their leases, priorities.
import { getJSON } from "../api.js";
import { bytes, card, fill, h, num, stat, status, table, when } from "../dom.js";

function bar(label, part, whole, id) {
  const pct = whole ? Math.round((100 * part) / whole) : 0;
  return h("div", { class: "progress", id }, h("div", {}, `${label}: ${num(part)} of ${num(whole)} (${pct}%)`),
    h("div", { class: "bar" }, h("span", { style: `width:${pct}%` })));
}

function nodesTable(nodes) {
  return table([
    { label: "node", value: (n) => n.name }, { label: "last seen", value: (n) => when(n.last_seen_at) },
    { label: "leases", num: true, value: (n) => String(n.in_flight) },
    { label: "leased bytes", num: true, value: (n) => bytes(n.in_flight_bytes) },
    { label: "done", num: true, value: (n) => String(n.done) }, { label: "failed", num: true, value: (n) => String(n.failed) },
    { label: "expired", num: true, value: (n) => String(n.expired) },
    { label: "copies", num: true, value: (n) => String(n.copies) }, { label: "held", num: true, value: (n) => bytes(n.bytes_held) },
    { label: "free", num: true, value: (n) => bytes(n.free_bytes) },
  ], nodes, { id: "nodes", empty: "no node has registered" });
}

function rankingTable(rows) {
  return table([
    { label: "#", num: true, value: (r) => String(r.rank) }, { label: "dataset", value: (r) => r.title || r.dataset },
    { label: "organization", value: (r) => r.organization }, { label: "kind", value: (r) => r.kind },
    { label: "state", value: (r) => status(r.state) }, { label: "copies", num: true, value: (r) => String(r.replicas) },
    { label: "verified", num: true, value: (r) => String(r.verified_copies) },
    { label: "score", num: true, value: (r) => num(r.score, 1) },
  ], rows, { id: "ranking", empty: "nothing ranked yet" });
}

export async function mount(root) {
  const figures = h("div");
  const progress = h("div");
  const nodes = h("div");
  const ranking = h("div");
  root.append(h("h2", {}, "Rescue"), figures, card("Progress", progress), card("Nodes and their leases", nodes),
    card("Highest priorities (what is allocated next)", ranking));
  async function refresh() {
    const [s, r] = await Promise.all([getJSON("/status"), getJSON("/rescue/ranking", { limit: 20 })]);
    fill(figures, h("div", { class: "tiles", id: "rescue-figures" },
      stat("datasets", s.datasets.total, { dataset: { figure: "datasets" } }),
      stat("gone upstream", s.datasets.gone), stat("assets", s.assets.total, { dataset: { figure: "assets" } }),
      stat("copies", s.copies.total, { dataset: { figure: "copies" } }),
      stat("verified", s.copies.verified, { dataset: { figure: "verified" } }),
      stat("disagreeing", s.copies.disagreeing), stat("leases in flight", s.in_flight.leases),
      stat("kept", bytes(s.copies.bytes))));
    const rescued = s.assets.total - (s.assets.by_state?.new || 0) - (s.assets.by_state?.failing || 0);
    fill(progress, bar("assets fully replicated", s.assets.fully_replicated, s.assets.total, "replicated"),
      bar(`copies verified (replication ${s.replication})`, s.copies.verified, s.copies.total, "verified"),
      bar("assets reachable upstream (ok)", Math.max(rescued, 0), s.assets.total, "reachable"),
      h("p", { class: "muted" }, "assets by state: ",
        Object.entries(s.assets.by_state || {}).map(([k, v]) => `${k} ${v}`).join(", ")));
    fill(nodes, nodesTable(s.nodes || []));
    fill(ranking, rankingTable(r.ranking || []));
  }
  await refresh();
  return { refresh };
}
