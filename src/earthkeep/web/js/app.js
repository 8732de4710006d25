// The dashboard shell: hash routing, the API key field, the error banner and polling while the tab is visible.
import { apiKey, setApiKey } from "./api.js";

const PAGES = ["overview", "jobs", "catalog", "forcing", "stations", "granules", "rescue", "nightlights"];
const POLL_MS = 5000;
const main = document.getElementById("page");
const banner = document.getElementById("error");
let current = null; // {name, page, timer, generation}
let generation = 0;

/** Show ``err`` (or a message) above the page; ``null`` clears it. */
export function showError(err) {
  if (!err) { banner.hidden = true; banner.textContent = ""; return; }
  banner.hidden = false;
  banner.textContent = err.message || String(err);
}

function route() {
  const [name, query = ""] = window.location.hash.replace(/^#\/?/, "").split("?");
  return { name: PAGES.includes(name) ? name : "overview", params: new URLSearchParams(query) };
}

async function show() {
  const { name, params } = route();
  if (current?.page?.unmount) current.page.unmount();
  clearTimeout(current?.timer);
  const mine = ++generation;
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.hash === `#/${name}`));
  document.title = `earthkeep: ${name}`;
  main.replaceChildren();
  main.dataset.page = name;
  delete main.dataset.ready;
  showError(null);
  const module = await import(`./pages/${name}.js`);
  if (mine !== generation) return;
  let page = {};
  try {
    page = (await module.mount(main, { params, showError })) || {};
  } catch (err) { showError(err); }
  if (mine !== generation) return;
  current = { name, page, timer: null };
  main.dataset.ready = name;
  performance.mark(`earthkeep:ready:${name}`); // read by bench/dashboard.py
  stamp();
  schedule(mine);
}

function schedule(mine) {
  if (!current?.page?.refresh) return;
  current.timer = setTimeout(async () => {
    if (mine !== generation) return;
    if (document.visibilityState === "visible") {
      try { await current.page.refresh(); showError(null); stamp(); } catch (err) { showError(err); }
    }
    if (mine === generation) schedule(mine);
  }, POLL_MS);
}

function stamp() {
  document.getElementById("fresh").textContent =
    `updated ${new Date().toISOString().slice(11, 19)}Z; refreshes every ${POLL_MS / 1000} s while visible`;
}

function keyField() {
  const input = document.getElementById("key");
  const state = document.getElementById("key-state");
  const label = () => { state.textContent = apiKey() ? "key set (this tab only)" : "no key: read only"; };
  document.getElementById("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setApiKey(input.value.trim());
    input.value = "";
    label();
    show();
  });
  document.getElementById("key-forget").addEventListener("click", () => { setApiKey(""); label(); show(); });
  label();
}

keyField();
window.addEventListener("hashchange", show);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && current?.page?.refresh) current.page.refresh().catch(showError);
});
show();
