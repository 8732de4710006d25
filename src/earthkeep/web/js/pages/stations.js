// Stations: the station map and a time-series chart of raw or bucketed values (/weather/timeseries).
import { getJSON } from "../api.js";
import { card, fill, h, num, table } from "../dom.js";
import { lineChart } from "../chart.js";
import { makeMap, marker } from "../map.js";

const MEASURES = ["temperature", "humidity", "pressure", "wind_speed", "wind_direction", "precipitation"];
const INTERVALS = ["raw", "30s", "5m", "1h", "1d"];

function isoHour(d) { return `${d.toISOString().slice(0, 13)}:00`; }

/** [times, series] for the chart from a timeseries (buckets) or raw (observations) answer. */
export function seriesOf(answer, measure) {
  if (answer.observations) {
    const rows = answer.observations.filter((o) => o[measure] !== null && o[measure] !== undefined);
    return [rows.map((o) => o.timestamp), [{ label: measure, values: rows.map((o) => o[measure]) }]];
  }
  const rows = answer.buckets.filter((b) => b[measure]);
  return [rows.map((b) => b.start), ["avg", "min", "max"].map((k) => ({ label: `${measure} ${k}`,
    values: rows.map((b) => b[measure][k]) }))];
}

export async function mount(root) {
  const { stations } = await getJSON("/stations");
  const select = h("select", { name: "station" }, stations.map((s) => h("option", { value: s.id }, `${s.id} ${s.name || ""}`)));
  const now = new Date();
  const start = h("input", { type: "datetime-local", name: "start", value: isoHour(new Date(now - 24 * 3600e3)) });
  const end = h("input", { type: "datetime-local", name: "end", value: isoHour(new Date(now.getTime() + 3600e3)) });
  const interval = h("select", { name: "interval" }, INTERVALS.map((i) => h("option", { value: i }, i)));
  interval.value = "1h";
  const measure = h("select", { name: "measure" }, MEASURES.map((m) => h("option", { value: m }, m)));
  const mapEl = h("div", { class: "map", id: "stations-map" });
  const chartEl = h("div", { class: "chart", id: "station-chart" });
  const note = h("p", { class: "muted", id: "chart-note" });
  const list = h("div");
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); refresh(); } },
    h("label", {}, "station", select), h("label", {}, "from (UTC)", start), h("label", {}, "until (UTC)", end),
    h("label", {}, "interval", interval), h("label", {}, "measure", measure), h("button", { type: "submit" }, "show"));
  root.append(h("h2", {}, "Stations"), form, h("div", { class: "grid" }, mapEl, card("Time series", chartEl, note)),
    card(`${stations.length} stations`, list));
  const map = makeMap(mapEl);
  for (const s of stations) {
    marker(map, s.latitude, s.longitude, `${s.id} ${s.name || ""}`, () => { select.value = s.id; refresh(); });
  }
  fill(list, table([
    { label: "id", value: (s) => s.id }, { label: "name", value: (s) => s.name },
    { label: "lat", num: true, value: (s) => num(s.latitude, 4) }, { label: "lon", num: true, value: (s) => num(s.longitude, 4) },
    { label: "elevation m", num: true, value: (s) => num(s.elevation, 1) },
  ], stations, { id: "stations", empty: "no station has reported yet" }));
  for (const el of [select, interval, measure]) el.addEventListener("change", () => refresh());

  async function refresh() {
    if (!select.value) return;
    const period = { start: `${start.value}:00Z`, end: `${end.value}:00Z` };
    const station = encodeURIComponent(select.value);
    const answer = interval.value === "raw"
      ? await getJSON(`/weather/${station}`, { ...period, limit: 5000 })
      : await getJSON(`/weather/timeseries/${station}`, { ...period, interval: interval.value });
    const [times, series] = seriesOf(answer, measure.value);
    lineChart(chartEl, times, series, {
      title: `${select.value} ${measure.value} (${interval.value})`, range: [period.start, period.end] });
    fill(note, `${times.length} ${interval.value === "raw" ? "observations" : "buckets"}`
      + (answer.source ? ` from the ${answer.source}` : ""));
  }
  await refresh();
  return { refresh, unmount: () => map.remove() };
}
