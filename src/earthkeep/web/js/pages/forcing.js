// Forcing: the latest GFS cycle, the coverage timeline of the kept files with the gaps, the gap list, and a
// quick-look map of 10 m wind speed for a chosen valid time (GET /forcing/wind.png, Web Mercator).
import { apiKey, getJSON, withQuery } from "../api.js";
import { bytes, card, fill, h, num, stat, table, when } from "../dom.js";
import { makeMap } from "../map.js";

const MERCATOR_LAT = 85.0511287798066;

/** The wind PNG of ``validTime`` as an image URL (a blob when the session has a key: an <img> cannot send it). */
async function windImage(validTime) {
  const url = withQuery("/forcing/wind.png", { valid_time: validTime, width: 720 });
  if (!apiKey()) return { url, shown: validTime };
  const r = await fetch(url, { headers: { Authorization: `Bearer ${apiKey()}` } });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return { url: URL.createObjectURL(await r.blob()), shown: r.headers.get("X-Valid-Time") || validTime };
}

/** The newest forecast cycle among ``datasets``: {date, cycle, files, bytes, from, to}. */
export function latestCycle(datasets) {
  const cycles = {};
  for (const d of datasets.filter((x) => x.forecast_date)) {
    const c = (cycles[d.forecast_date] ??= { date: d.forecast_date, cycle: d.forecast_cycle, files: 0, bytes: 0,
      from: d.valid_time_start, to: d.valid_time_end });
    c.files += 1;
    c.bytes += d.file_size_bytes || 0;
    if (d.valid_time_start < c.from) c.from = d.valid_time_start;
    if (d.valid_time_end > c.to) c.to = d.valid_time_end;
  }
  return Object.values(cycles).sort((a, b) => (a.date < b.date ? 1 : -1))[0] || null;
}

function timeline(datasets, gaps) {
  const times = [...datasets.map((d) => Date.parse(d.valid_time_start)), ...gaps.map((g) => Date.parse(g.valid_time))]
    .filter((t) => !Number.isNaN(t));
  if (!times.length) return h("p", { class: "muted" }, "nothing kept yet");
  const t0 = Math.min(...times);
  const span = Math.max(...times) - t0 || 1;
  const at = (t) => `${(((Date.parse(t) - t0) / span) * 99).toFixed(2)}%`;
  const marks = [
    ...datasets.map((d) => h("span", { class: "have", style: `left:${at(d.valid_time_start)}`, title: when(d.valid_time_start) })),
    ...gaps.map((g) => h("span", { class: "gap", style: `left:${at(g.valid_time)}`, title: `${when(g.valid_time)}: ${g.reason}` })),
  ];
  return h("div", {}, h("div", { class: "timeline", id: "coverage" }, marks),
    h("p", { class: "muted" }, `${when(new Date(t0).toISOString())} to ${when(new Date(t0 + span).toISOString())}: `,
      h("span", { class: "status-completed" }, `${datasets.length} valid times kept`), ", ",
      h("span", { class: "status-failed" }, `${gaps.length} gaps`)));
}

export async function mount(root) {
  const head = h("div");
  const line = h("div");
  const gapList = h("div");
  const timeSel = h("select", { name: "valid-time", id: "wind-time" });
  const mapEl = h("div", { class: "map", id: "wind-map" });
  const windNote = h("p", { class: "muted", id: "wind-note" }, "");
  root.append(h("h2", {}, "Forcing"), head, card("Coverage of the kept GFS wind (valid times)", line),
    card("10 m wind speed (0-25 m/s)", h("div", {}, h("label", {}, "valid time ", timeSel), windNote, mapEl)),
    card("Gaps (files missing from the window)", gapList));
  const map = makeMap(mapEl);
  let overlay = null;
  async function showWind() {
    if (!timeSel.value) return;
    const { url, shown } = await windImage(timeSel.value);
    if (overlay) overlay.remove();
    overlay = window.L.imageOverlay(url, [[-MERCATOR_LAT, -180], [MERCATOR_LAT, 180]],
      { opacity: 0.85, className: "wind-overlay", alt: `10 m wind at ${shown}` }).addTo(map);
    fill(windNote, `showing ${when(shown)} (the nearest kept valid time)`);
  }
  timeSel.addEventListener("change", () => { showWind().catch((e) => fill(windNote, String(e))); });
  async function refresh() {
    const [datasets, gaps] = await Promise.all([
      getJSON("/forcing/datasets", { data_type: "wind", limit: 5000 }), getJSON("/forcing/gaps")]);
    const latest = latestCycle(datasets.filter((d) => d.is_forecast !== false)) || latestCycle(datasets);
    fill(head, h("div", { class: "tiles", id: "forcing-latest" },
      stat("latest cycle", latest ? `${latest.date.slice(0, 10)} ${latest.cycle}Z` : "none"),
      stat("files in it", latest ? latest.files : 0, { dataset: { figure: "cycle-files" } }),
      stat("its size", latest ? bytes(latest.bytes) : ""),
      stat("up to", latest ? when(latest.to) : ""),
      stat("wind files kept", num(datasets.length), { dataset: { figure: "files" } }),
      stat("gaps", gaps.length, { dataset: { figure: "gaps" } })));
    fill(line, timeline(datasets, gaps));
    const times = [...new Set(datasets.map((d) => d.valid_time_start))].sort();
    if (times.length && timeSel.options.length !== times.length) {
      const keep = timeSel.value;
      fill(timeSel, times.map((t) => h("option", { value: t }, when(t))));
      timeSel.value = keep && times.includes(keep) ? keep : times[times.length - 1];
      await showWind().catch((e) => fill(windNote, String(e)));
    }
    fill(gapList, table([
      { label: "file", value: (g) => g.file_id }, { label: "valid time", value: (g) => when(g.valid_time) },
      { label: "reason", value: (g) => g.reason }, { label: "attempts", num: true, value: (g) => String(g.attempts) },
    ], gaps, { id: "gaps", empty: "no gaps: the window is complete" }));
  }
  await refresh();
  return { refresh, unmount: () => map.remove() };
}
