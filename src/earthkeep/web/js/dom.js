// Small DOM helpers: element builder, tables, number and time formats.

/** ``h("td", {class: "num"}, "3")``: an element with attributes (on* are listeners) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c);
  return el;
}

/** A table from ``columns`` = [{label, value(row) -> Node|string, num?}] and rows. */
export function table(columns, rows, { empty = "nothing yet", id } = {}) {
  if (!rows.length) return h("p", { class: "muted", id }, empty);
  const head = h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.label)));
  const body = rows.map((r) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : null },
    c.value(r) ?? ""))));
  return h("table", { id }, h("thead", {}, head), h("tbody", {}, body));
}

export function stat(label, value, attrs = {}) {
  return h("div", { class: "stat", ...attrs }, h("b", {}, String(value)), h("span", { class: "muted" }, label));
}

export function status(text) { return h("span", { class: `status-${text}` }, text); }

export function num(n, digits = 0) {
  if (n === null || n === undefined || Number.isNaN(n)) return "";
  return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** ISO time as ``2024-01-02 03:04Z`` (UTC, minutes). */
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : `${d.toISOString().slice(0, 16).replace("T", " ")}Z`;
}

/** Replace the children of ``el`` (keeps ``el`` itself, so maps and charts beside it survive). */
export function fill(el, ...children) { el.replaceChildren(...children.flat().filter((c) => c != null)); }

export function card(title, ...children) { return h("section", { class: "card" }, h("h3", {}, title), ...children); }
