// Granules: the latest posttroll messages, the segment gatherer's open slots, files that failed verification,
// tasks and their counts.
import { getJSON } from "../api.js";
import { card, fill, h, stat, status, table, when } from "../dom.js";

function messagesTable(messages) {
  return table([
    { label: "id", num: true, value: (m) => String(m.id) },
    { label: "subject", value: (m) => m.subject }, { label: "type", value: (m) => m.type },
    { label: "platform", value: (m) => m.data?.platform_name },
    { label: "orbit", num: true, value: (m) => String(m.data?.orbit_number ?? "") },
    { label: "start", value: (m) => when(m.data?.start_time) },
    { label: "file(s)", value: (m) => m.data?.uid || (m.data?.dataset || []).map((d) => d.segment).join(" ") },
    { label: "created", value: (m) => when(m.created_at) }, { label: "sent", value: (m) => when(m.sent_at) },
  ], messages, { id: "messages", empty: "no message yet" });
}

function tasksTable(tasks) {
  return table([
    { label: "id", num: true, value: (t) => String(t.id) }, { label: "product", value: (t) => t.product },
    { label: "platform", value: (t) => t.platform_name }, { label: "orbit", num: true, value: (t) => String(t.orbit_number) },
    { label: "direction", value: (t) => t.direction }, { label: "status", value: (t) => status(t.status) },
    { label: "node", value: (t) => t.node }, { label: "updated", value: (t) => when(t.updated_at) },
    { label: "error", value: (t) => (t.error ? h("pre", { class: "err" }, t.error) : "") },
  ], tasks, { id: "tasks", empty: "no task yet" });
}

function slotsTable(g) {
  return h("div", {},
    h("p", { class: "muted" }, g.updated_at ? `saved by the granules role ${when(g.updated_at)}; ${g.dropped} slot(s) `
      + "dropped so far (required segments missing at their timeliness)" : g.note || ""),
    table([
      { label: "product", value: (x) => x.product }, { label: "platform", value: (x) => x.platform_name },
      { label: "orbit", num: true, value: (x) => String(x.orbit_number) },
      { label: "start", value: (x) => when(x.start_time) }, { label: "segments there", value: (x) => x.segments.join(" ") },
      { label: "missing", value: (x) => x.missing.join(" ") },
      { label: "required there", value: (x) => (x.required_there ? "yes" : "no") },
      { label: "age / timeliness (s)", num: true, value: (x) => `${Math.round(x.age_s)} / ${x.timeliness_s}` },
    ], g.slots, { id: "slots", empty: "no open slot" }));
}

export async function mount(root) {
  const counts = h("div");
  const msgs = h("div");
  const fails = h("div");
  const tasks = h("div");
  const slots = h("div");
  root.append(h("h2", {}, "Granules"), counts, card("Latest messages", msgs), card("Segment gatherer: open slots", slots),
    h("div", { class: "grid" }, card("Tasks", tasks), card("Files that failed verification", fails)));
  async function refresh() {
    const [m, f, t, s, g] = await Promise.all([getJSON("/granules/messages", { limit: 50 }),
      getJSON("/granules/failures", { limit: 50 }), getJSON("/tasks", { limit: 100 }), getJSON("/tasks/status"),
      getJSON("/granules/gatherer")]);
    fill(slots, slotsTable(g));
    fill(counts, h("div", { class: "tiles", id: "task-counts" },
      Object.entries(s.tasks || {}).map(([k, v]) => stat(`tasks ${k}`, v, { dataset: { tasks: k } })),
      stat("messages shown", m.length)));
    fill(msgs, messagesTable(m));
    fill(tasks, tasksTable(t));
    fill(fails, table([
      { label: "file", value: (x) => x.name }, { label: "attempts", num: true, value: (x) => String(x.attempts) },
      { label: "error", value: (x) => h("pre", { class: "err" }, x.error || "") },
      { label: "retry after", value: (x) => when(x.retry_after) },
    ], f, { id: "failures", empty: "no failed file" }));
  }
  await refresh();
  return { refresh };
}
