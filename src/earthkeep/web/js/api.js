// The JSON API as the pages see it: one fetch helper that sends the session's key, and typed errors.
const KEY = "earthkeep.apiKey";

export class ApiError extends Error {
  constructor(status, detail, path) {
    super(`${path}: HTTP ${status}${detail ? ` ${detail}` : ""}`);
    this.status = status;
    this.detail = detail;
  }
}

/** The key typed into the header, kept in sessionStorage only (gone when the tab closes). */
export function apiKey() { return sessionStorage.getItem(KEY) || ""; }
export function setApiKey(value) {
  if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
}

function headers(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function failure(response, path) {
  let detail = "";
  try {
    const body = await response.json();
    detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body);
  } catch { detail = response.statusText; }
  return new ApiError(response.status, detail, path);
}

/** GET ``path`` (with ``params`` as a query) and return its JSON; throws ApiError on a 4xx/5xx. */
export async function getJSON(path, params = {}, { signal } = {}) {
  const url = withQuery(path, params);
  const response = await fetch(url, { headers: headers({ Accept: "application/json" }), signal });
  if (!response.ok) throw await failure(response, path);
  return response.json();
}

/** POST with an optional JSON body; the key is required by every write endpoint. */
export async function postJSON(path, body) {
  const init = { method: "POST", headers: headers({ Accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) throw await failure(response, path);
  return response.status === 204 ? null : response.json();
}

export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `${path}?${text}` : path;
}

/** Every page of a cursor-paged list (``{<field>: [...], next}``), up to ``max`` rows. */
export async function getAll(path, field, params = {}, max = 10000) {
  const rows = [];
  let cursor;
  do {
    const page = await getJSON(path, { ...params, limit: 1000, cursor });
    rows.push(...page[field]);
    cursor = page.next;
  } while (cursor && rows.length < max);
  return rows;
}

/**
 * Download ``url`` as a file. Without a key a plain link does it; with one the file is fetched with the
 * Authorization header (a link cannot carry it) and handed to the browser as a blob.
 */
export async function download(url, filename) {
  if (!apiKey()) { window.location.assign(url); return; }
  const response = await fetch(url, { headers: headers() });
  if (!response.ok) throw await failure(response, url);
  const blob = URL.createObjectURL(await response.blob());
  const a = Object.assign(document.createElement("a"), { href: blob, download: filename || "" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(blob), 10000);
}
