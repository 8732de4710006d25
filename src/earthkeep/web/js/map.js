// Leaflet maps on a blank background: no external base layer, so the page never leaves this server.
import { apiKey } from "./api.js";

const L = window.L;

/** A map in ``el`` with a 30-degree graticule for orientation. */
export function makeMap(el, { center = [20, 0], zoom = 1 } = {}) {
  const map = L.map(el, { worldCopyJump: true, minZoom: 1, attributionControl: true }).setView(center, zoom);
  map.attributionControl.setPrefix("Leaflet");
  const lines = [];
  for (let lon = -180; lon <= 180; lon += 30) lines.push([[-85, lon], [85, lon]]);
  for (let lat = -60; lat <= 60; lat += 30) lines.push([[lat, -180], [lat, 180]]);
  L.polyline(lines, { color: "#b9c6cb", weight: 1, interactive: false }).addTo(map);
  return map;
}

/** ``[w, s, e, n]`` -> Leaflet bounds. */
export function boundsOf(bbox) { return L.latLngBounds([bbox[1], bbox[0]], [bbox[3], bbox[2]]); }

/** Outline of each ``{bbox, label}`` as a rectangle with a popup; returns the layer group. */
export function footprints(map, rows, { color = "#2b6f77" } = {}) {
  const group = L.featureGroup();
  for (const r of rows) {
    if (!r.bbox) continue;
    L.rectangle(boundsOf(r.bbox), { color, weight: 1, fillOpacity: 0.08 }).bindPopup(r.label).addTo(group);
  }
  return group.addTo(map);
}

/** Tiles that carry the session's key: fetched with the Authorization header, shown from a blob. */
const KeyedTiles = L.TileLayer.extend({
  createTile(coords, done) {
    const img = document.createElement("img");
    img.alt = "";
    const url = this.getTileUrl(coords);
    img.dataset.src = url;
    fetch(url, { headers: { Authorization: `Bearer ${apiKey()}` } })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`${url}: HTTP ${r.status}`))))
      .then((blob) => {
        img.onload = () => { URL.revokeObjectURL(img.src); done(null, img); };
        img.src = URL.createObjectURL(blob);
      })
      .catch((err) => done(err, img));
    return img;
  },
});

/** The XYZ layer described by a TileJSON document, limited to its zooms and bounds (no 404s outside). */
export function tileLayer(tilejson) {
  const [w, s, e, n] = tilejson.bounds;
  const options = {
    minZoom: tilejson.minzoom, maxZoom: 18, maxNativeZoom: tilejson.maxzoom, opacity: 0.9,
    bounds: L.latLngBounds([s, w], [n, e]), attribution: tilejson.attribution || "",
  };
  const template = new URL(tilejson.tiles[0]).pathname.replace(/%7B/g, "{").replace(/%7D/g, "}");
  return apiKey() ? new KeyedTiles(template, options) : L.tileLayer(template, options);
}

export function marker(map, lat, lon, label, onClick) {
  const m = L.circleMarker([lat, lon], { radius: 6, color: "#2b6f77", fillOpacity: 0.7 }).bindTooltip(label);
  if (onClick) m.on("click", onClick);
  return m.addTo(map);
}
