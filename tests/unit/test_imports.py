"""The import graph of ``earthkeep``: no cycles, even counting the imports made inside functions.

An import inside a function can hide a cycle: the module-level graph looks
clean and the cycle shows only when the function runs. So the checks are:

* the module-level graph (imports outside functions and outside
  ``TYPE_CHECKING``) has no cycle;
* adding every function-local import to it still gives no cycle, so each
  function-local import is there for laziness only and could move to the top;
* a function-local import that reaches into *another* package of earthkeep is
  allowed only where it defers a heavy optional dependency (the table
  ``HEAVY`` names the module and what it pulls in) or in the CLI, whose
  commands load their implementation on demand so that ``earthkeep --help``
  starts in about 0.5 s instead of about 2 s with every domain imported;
* every module imports in a fresh interpreter, in dependency order.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import earthkeep

SRC = Path(earthkeep.__file__).parent
ROOT = "earthkeep"

# earthkeep modules whose import pulls in a heavy optional dependency, with the reason
HEAVY: dict[str, str] = {
    "earthkeep.api.app": "FastAPI, the routers and the dashboard (only the api role needs them)",
    "earthkeep.forcing.export": "xarray and the NetCDF writers",
    "earthkeep.forcing.quicklook": "rasterio (PNG rendering) and xarray through export",
    "earthkeep.raster.grib": "eccodes",
    "earthkeep.store.obstore": "obstore, the Rust object-store client (not needed with an injected store)",
    "earthkeep.transfer.engine": "httpx and h2 (only processes that download need them)",
}
LAZY_PACKAGES = ("earthkeep.cli",)  # start-up time of the command line, see the module docstring


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SCRIPTS = ("earthkeep.catalog.migrations",)  # Alembic's env.py and revisions run inside Alembic, never imported


@cache
def modules() -> dict[str, Path]:
    found = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}
    return {m: p for m, p in found.items() if not m.startswith(SCRIPTS)}


def _resolve(node: ast.ImportFrom, here: str, is_pkg: bool) -> list[str]:
    """The earthkeep modules an ``import from`` statement loads."""
    if node.level:
        base = here.split(".") if is_pkg else here.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    if not target.startswith(ROOT):
        return []
    known = modules()
    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
    # ``from package import submodule`` runs the submodule; the package itself counts only for other names
    return subs + ([target] if target in known and len(subs) < len(node.names) else [])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, in_function: bool, found: list[tuple[str, bool, int]], here: str, is_pkg: bool) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for sub in child.orelse:
                _walk(sub, in_function, found, here, is_pkg)
            continue
        if isinstance(child, ast.Import):
            found += [(a.name, in_function, child.lineno) for a in child.names if a.name in modules()]
        elif isinstance(child, ast.ImportFrom):
            found += [(t, in_function, child.lineno) for t in _resolve(child, here, is_pkg)]
        _walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda),
              found, here, is_pkg)


@cache
def imports(name: str) -> tuple[tuple[str, bool, int], ...]:
    """``(target, inside a function, line)`` for every earthkeep import of module ``name``."""
    path = modules()[name]
    found: list[tuple[str, bool, int]] = []
    _walk(ast.parse(path.read_text(), str(path)), False, found, name, path.name == "__init__.py")
    return tuple((t, f, n) for t, f, n in found if t != name)


def _graph(with_local: bool) -> dict[str, set[str]]:
    return {m: {t for t, local, _ in imports(m) if with_local or not local} for m in modules()}


def _package(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_the_module_level_import_graph_has_no_cycle() -> None:
    try:
        tuple(TopologicalSorter(_graph(False)).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_no_cycle_hides_behind_an_import_inside_a_function() -> None:
    try:
        tuple(TopologicalSorter(_graph(True)).static_order())
    except CycleError as exc:
        raise AssertionError(f"a function-local import closes a cycle: {' -> '.join(exc.args[1])}") from None


def test_imports_inside_functions_across_packages_only_defer_heavy_dependencies() -> None:
    offending = [
        f"{m}:{line} imports {t}"
        for m in modules() if not m.startswith(LAZY_PACKAGES)
        for t, local, line in imports(m)
        if local and _package(t) != _package(m) and t not in HEAVY
    ]
    assert not offending, "move these imports to the top of the module:\n" + "\n".join(offending)


def test_the_heavy_table_names_real_modules() -> None:
    assert set(HEAVY) <= set(modules())


def test_every_module_imports_in_a_fresh_interpreter_in_dependency_order() -> None:
    order = list(TopologicalSorter(_graph(False)).static_order())
    assert set(order) == set(modules())
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except Exception as exc:\n"
            "        sys.exit(f'{name}: {exc!r}')\n")
    done = subprocess.run([sys.executable, "-c", code, *order], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("first", ["eccodes", "cfgrib", "earthkeep.raster.grib"])
def test_libraries_that_clash_with_eccodes_load_before_it(first):
    """eccodes' wheel bundles its own PROJ and libraries that crash pyproj (abort) and psycopg (SIGSEGV at
    exit) when loaded before them; ``import earthkeep`` makes them load first, however eccodes arrives."""
    code = (
        "import earthkeep, sys\n"
        "assert 'pyproj' not in sys.modules and 'psycopg' not in sys.modules  # not paid for until needed\n"
        f"import {first}\n"
        "assert 'pyproj' in sys.modules and 'psycopg' in sys.modules\n"
        "import pyproj, psycopg\n"
        "print(pyproj.CRS('EPSG:4326').name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "WGS 84"
