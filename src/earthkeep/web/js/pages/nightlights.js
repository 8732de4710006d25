// Nightlights: areas on the map with a month's XYZ tiles, the metrics time series as a chart, CSV download.
import { apiKey, download, getJSON } from "../api.js";
import { card, fill, h, num, table } from "../dom.js";
import { lineChart } from "../chart.js";
import { makeMap, tileLayer } from "../map.js";

const L = window.L;
const METRICS = ["sum_radiance", "mean_radiance", "median_radiance", "lit_fraction", "lit_area_km2"];

export async function mount(root, { params, showError }) {
  const areas = await getJSON("/areas");
  const features = areas.features || [];
  const areaSel = h("select", { name: "area" }, features.map((f) => h("option", { value: f.id },
    `${f.id} ${f.properties?.name || ""}`)));
  if (params.get("area")) areaSel.value = params.get("area");
  const monthSel = h("select", { name: "month" });
  const metricSel = h("select", { name: "metric" }, METRICS.map((m) => h("option", { value: m }, m)));
  const csv = h("a", { id: "csv", href: "#", onclick: (e) => {
    if (!apiKey()) return;
    e.preventDefault();
    download(csv.href, `area-${areaSel.value}-timeseries.csv`).catch(showError);
  } }, "CSV");
  const mapEl = h("div", { class: "map", id: "nl-map" });
  const chartEl = h("div", { class: "chart", id: "nl-chart" });
  const rows = h("div");
  root.append(h("h2", {}, "Nightlights"),
    h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, h("label", {}, "area", areaSel),
      h("label", {}, "month", monthSel), h("label", {}, "metric", metricSel), csv,
      h("span", { class: "muted" }, `${features.length} areas`)),
    h("div", { class: "grid" }, mapEl, card("Monthly metrics", chartEl)), card("Results", rows));
  const map = makeMap(mapEl);
  const outlines = L.geoJSON(areas, { style: { color: "#f57c00", weight: 1.5, fillOpacity: 0.05 },
    onEachFeature: (f, layer) => layer.bindTooltip(`${f.id} ${f.properties?.name || ""}`)
      .on("click", () => { areaSel.value = f.id; chooseArea(); }) }).addTo(map);
  if (features.length) map.fitBounds(outlines.getBounds(), { maxZoom: 9, animate: false });
  let tiles = null;
  let series = [];

  async function showTiles() {
    if (tiles) { tiles.remove(); tiles = null; }
    if (!monthSel.value) return;
    const tj = await getJSON(`/tiles/${areaSel.value}/${monthSel.value}/tilejson.json`);
    tiles = tileLayer(tj).addTo(map);
    const [w, s, e, n] = tj.bounds;
    const center = L.latLngBounds([s, w], [n, e]).getCenter();
    map.setView(center, Math.min(Math.max(map.getBoundsZoom(L.latLngBounds([s, w], [n, e])), tj.minzoom), tj.maxzoom), { animate: false });
  }

  function draw() {
    const metric = metricSel.value;
    lineChart(chartEl, series.map((r) => `${r.month}-01T00:00:00Z`),
      [{ label: metric, values: series.map((r) => r[metric]) }], { title: `area ${areaSel.value}: ${metric}` });
  }

  async function load() {
    const answer = await getJSON(`/areas/${areaSel.value}/timeseries`);
    series = answer.timeseries || [];
    csv.href = `/areas/${areaSel.value}/timeseries?format=csv`;
    fill(rows, table([
      { label: "month", value: (r) => r.month }, { label: "source", value: (r) => r.source },
      ...METRICS.map((m) => ({ label: m, num: true, value: (r) => num(r[m], 3) })),
      { label: "valid fraction", num: true, value: (r) => num(r.valid_fraction, 3) },
      { label: "change vs first %", num: true, value: (r) => num(r.change_vs_first_pct, 2) },
    ], series, { id: "nl-results", empty: "no month processed for this area yet" }));
    draw();
  }

  async function chooseArea() {
    if (!areaSel.value) return;
    await load();
    const months = series.map((r) => r.month);
    const keep = params.get("month");
    fill(monthSel, months.map((m) => h("option", { value: m }, m)));
    if (keep && months.includes(keep)) monthSel.value = keep;
    else if (months.length) monthSel.value = months[months.length - 1];
    await showTiles();
  }
  areaSel.addEventListener("change", () => chooseArea().catch(showError));
  monthSel.addEventListener("change", () => showTiles().catch(showError));
  metricSel.addEventListener("change", draw);
  await chooseArea();
  return { refresh: load, unmount: () => map.remove() };
}
