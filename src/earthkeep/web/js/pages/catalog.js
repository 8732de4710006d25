// Catalog: items of a collection searched by time and bbox, footprints on the map, asset download links.
import { apiKey, download, getJSON } from "../api.js";
import { bytes, card, fill, h, table, when } from "../dom.js";
import { footprints, makeMap } from "../map.js";

function assetLink(item, asset, showError) {
  const href = `/items/${encodeURIComponent(item.collection)}/${encodeURIComponent(item.item_id)}/assets/`
    + encodeURIComponent(asset.name);
  return h("a", { href, class: "asset", title: `${asset.store_key} (${bytes(asset.size)})`,
    onclick: (e) => {
      if (!apiKey()) return; // a plain link works when reads are open
      e.preventDefault();
      download(href, asset.store_key.split("/").pop()).catch(showError);
    } }, asset.name);
}

function itemsTable(items, showError) {
  return table([
    { label: "item", value: (i) => i.item_id },
    { label: "start", value: (i) => when(i.start_datetime) },
    { label: "end", value: (i) => when(i.end_datetime) },
    { label: "bbox", value: (i) => (i.bbox ? i.bbox.map((v) => v.toFixed(2)).join(", ") : "none") },
    { label: "assets", value: (i) => i.assets.flatMap((a, n) => (n ? [" ", assetLink(i, a, showError)]
      : [assetLink(i, a, showError)])) },
  ], items, { id: "items", empty: "no item matches" });
}

/** ``datetime-local`` value (taken as UTC) -> ISO with a zone, or undefined. */
function utc(value) {
  if (!value) return undefined;
  return value.length === 16 ? `${value}:00Z` : `${value}Z`;
}

export async function mount(root, { params, showError }) {
  const stac = await getJSON("/stac/collections");
  const select = h("select", { name: "collection" },
    stac.collections.map((c) => h("option", { value: c.id }, `${c.id} (${c["earthkeep:item_count"] ?? 0})`)));
  if (params.get("collection")) select.value = params.get("collection");
  const start = h("input", { type: "datetime-local", name: "start" });
  const end = h("input", { type: "datetime-local", name: "end" });
  const bbox = h("input", { name: "bbox", placeholder: "w,s,e,n", size: 24 });
  const mapEl = h("div", { class: "map", id: "catalog-map" });
  const list = h("div");
  const summary = h("p", { class: "muted", id: "catalog-summary" });
  const fromMap = h("button", { type: "button", onclick: () => {
    const b = map.getBounds();
    bbox.value = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].map((v) => v.toFixed(3)).join(",");
    refresh();
  } }, "bbox = map view");
  const form = h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); refresh(); } },
    h("label", {}, "collection", select), h("label", {}, "valid from (UTC)", start),
    h("label", {}, "valid until (UTC)", end), h("label", {}, "bbox", bbox), fromMap,
    h("button", { type: "submit" }, "search"));
  root.append(h("h2", {}, "Catalog"), form, summary,
    mapEl, h("div", { class: "card scroll" }, h("h3", {}, "Items (first 100)"), list));
  const map = makeMap(mapEl);
  let layer = null;
  let fitted = "";

  async function refresh() {
    if (!select.value) { fill(summary, "the catalog is empty"); return; }
    const query = { collection: select.value, start: utc(start.value), end: utc(end.value), bbox: bbox.value, limit: 100 };
    const page = await getJSON("/items", query);
    const total = stac.collections.find((c) => c.id === select.value)?.["earthkeep:item_count"];
    fill(summary, `${page.items.length}${page.next ? "+" : ""} shown of ${total ?? "?"} in ${select.value}`);
    fill(list, itemsTable(page.items, showError));
    if (layer) layer.remove();
    const boxes = page.items.filter((i) => i.bbox).map((i) => ({ bbox: i.bbox, label: i.item_id }));
    layer = footprints(map, boxes);
    const key = JSON.stringify(query);
    if (boxes.length && fitted !== key) { map.fitBounds(layer.getBounds(), { maxZoom: 8, animate: false }); fitted = key; }
  }
  select.addEventListener("change", () => refresh());
  await refresh();
  return { refresh, unmount: () => map.remove() };
}
