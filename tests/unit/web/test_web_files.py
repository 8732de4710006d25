"""The dashboard as shipped: every file a page names is in the package, nothing is fetched off the host,
and the vendored libraries are the files their README pins."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from earthkeep.web import ROOT

OWN = sorted([ROOT / "index.html", ROOT / "app.css", *ROOT.glob("js/**/*.js")])
SCRIPTS = sorted(ROOT.glob("js/**/*.js"))
IMPORT = re.compile(r'^import\s*\{([^}]*)\}\s*from\s*"(\.{1,2}/[^"]+)";', re.M)
EXPORT = re.compile(r"^export\s+(?:async\s+)?(?:function|const|let|class)\s+([A-Za-z_$][\w$]*)", re.M)
XML_NAMESPACES = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink")


def exports(path: Path) -> set[str]:
    return set(EXPORT.findall(path.read_text()))


def test_the_package_holds_the_pages():
    assert (ROOT / "index.html").is_file() and (ROOT / "vendor" / "README.md").is_file()
    assert [p.name for p in SCRIPTS if p.parent.name == "js"] == ["api.js", "app.js", "chart.js", "dom.js", "map.js"]


def test_every_ui_path_in_the_index_is_a_file_of_the_package():
    paths = re.findall(r'(?:href|src)="/ui/([^"]+)"', (ROOT / "index.html").read_text())
    assert len(paths) == 7
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert missing == []


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_import_exists_in_the_module_it_comes_from(script):
    text = script.read_text()
    found = IMPORT.findall(text)
    assert len(found) == len(re.findall(r"^import ", text, re.M)), "an import of another form (default, URL)"
    for names, target in found:
        module = (script.parent / target).resolve()
        assert module.is_file(), f"{script.name} imports {target}, which is not in the package"
        wanted = {n.strip() for n in names.split(",") if n.strip()}
        assert wanted <= exports(module), f"{script.name}: {sorted(wanted - exports(module))} not exported by {target}"


def test_each_routed_page_is_in_the_nav_and_has_a_module_with_mount():
    app = (ROOT / "js" / "app.js").read_text()
    pages = re.findall(r'"(\w+)"', re.search(r"const PAGES = \[([^\]]*)\]", app).group(1))  # type: ignore[union-attr]
    assert pages == ["overview", "jobs", "catalog", "forcing", "stations", "granules", "rescue", "nightlights"]
    nav = re.findall(r'href="#/(\w+)"', (ROOT / "index.html").read_text())
    assert nav[1:] == pages  # the brand link goes to the overview first
    assert sorted(p.stem for p in (ROOT / "js" / "pages").glob("*.js")) == sorted(pages)
    assert all("mount" in exports(ROOT / "js" / "pages" / f"{p}.js") for p in pages)


@pytest.mark.parametrize("path", [*OWN, ROOT / "favicon.svg"], ids=lambda p: str(p.relative_to(ROOT)))
def test_our_own_files_name_no_other_host(path):
    urls = re.findall(r"\b(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'`)]*", path.read_text())
    assert [u for u in urls if not u.startswith(XML_NAMESPACES)] == []


def _pinned() -> dict[str, str]:
    text = (ROOT / "vendor" / "README.md").read_text()
    block = text[text.index("## sha256 (as vendored)"):]
    return {path.removeprefix("./"): digest for digest, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", block, re.M)}


def test_every_vendored_file_is_pinned_and_matches_its_sha256():
    vendor = ROOT / "vendor"
    files = {str(p.relative_to(vendor)): p for p in vendor.rglob("*") if p.is_file() and p.name != "README.md"}
    pinned = _pinned()
    assert sorted(files) == sorted(pinned)
    changed = [name for name, p in files.items() if hashlib.sha256(p.read_bytes()).hexdigest() != pinned[name]]
    assert changed == []


def test_each_vendored_library_ships_its_licence():
    for library in ("leaflet", "uplot", "swagger-ui", "redoc"):
        assert (ROOT / "vendor" / library / "LICENSE").is_file(), library
