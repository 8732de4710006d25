// Jobs: filter by kind and state, the error text in full, retry and cancel (admin key).
import { apiKey, getJSON, postJSON } from "../api.js";
import { card, fill, h, status, table, when } from "../dom.js";
import { STATES } from "./overview.js";

function actions(job, onDone, report) {
  const act = async (verb) => {
    try {
      const after = await postJSON(`/jobs/${job.id}/${verb}`);
      report(null, `job ${job.id} (${job.kind}): ${verb} done, now ${after.status}`);
      await onDone();
    } catch (err) { report(err); }
  };
  return h("span", {},
    ["pending", "running"].includes(job.status)
      ? h("button", { type: "button", class: "cancel", dataset: { job: job.id }, onclick: () => act("cancel") },
        "cancel") : null,
    ["failed", "cancelled"].includes(job.status)
      ? h("button", { type: "button", class: "retry", dataset: { job: job.id }, onclick: () => act("retry") },
        "retry") : null);
}

function jobsTable(jobs, onDone, report) {
  return table([
    { label: "id", num: true, value: (j) => String(j.id) },
    { label: "kind", value: (j) => j.kind },
    { label: "status", value: (j) => h("span", { class: `status-${j.status}`, dataset: { status: j.id } }, j.status) },
    { label: "attempts", num: true, value: (j) => `${j.attempts}/${j.max_attempts}` },
    { label: "created", value: (j) => when(j.created_at) },
    { label: "finished", value: (j) => when(j.finished_at) },
    { label: "error", value: (j) => (j.error ? h("pre", { class: "err" }, j.error) : "") },
    { label: "", value: (j) => actions(j, onDone, report) },
  ], jobs, { id: "jobs", empty: "no job matches" });
}

export async function mount(root, { params, showError }) {
  const kind = h("select", { name: "kind" }, h("option", { value: "" }, "any kind"));
  const state = h("select", { name: "status" }, h("option", { value: "" }, "any state"),
    STATES.map((s) => h("option", { value: s }, s)));
  state.value = params.get("status") || "";
  const out = h("div");
  const result = h("p", { id: "action-result", role: "status" });
  const report = (err, ok) => fill(result, err ? h("span", { class: "status-failed" }, `refused: ${err.message}`)
    : h("span", { class: "status-ok" }, ok || ""));
  const note = h("p", { class: "muted" }, apiKey() ? "Retry and cancel use the key set above."
    : "Retry and cancel need an admin key: type it in the field above.");
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); refresh(); } },
    h("label", {}, "kind", kind), h("label", {}, "state", state), h("button", { type: "submit" }, "filter"));
  kind.addEventListener("change", () => refresh());
  state.addEventListener("change", () => refresh());
  root.append(h("h2", {}, "Jobs"), note, form, result, card("Jobs (newest first, up to 200)", out));

  async function refresh() {
    const page = await getJSON("/jobs", { kind: kind.value, status: state.value, limit: 200 });
    const known = new Set([...kind.options].map((o) => o.value));
    for (const j of page.jobs) {
      if (!known.has(j.kind)) { kind.append(h("option", { value: j.kind }, j.kind)); known.add(j.kind); }
    }
    fill(out, jobsTable(page.jobs, refresh, (err, ok) => { report(err, ok); if (err) showError(err); }));
  }
  const wanted = params.get("kind");
  if (wanted) kind.append(h("option", { value: wanted }, wanted)), (kind.value = wanted);
  await refresh();
  return { refresh };
}
