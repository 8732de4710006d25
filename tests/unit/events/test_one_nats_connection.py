"""Exactly one place in earthkeep opens a NATS connection: :func:`earthkeep.events.nats.connect`."""

from __future__ import annotations

import ast
from pathlib import Path

import earthkeep

SRC = Path(earthkeep.__file__).parent


def nats_connect_calls() -> list[str]:
    """``nats.connect(...)`` calls (and ``from nats import connect``) in src, as ``module:function``."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            direct = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                      and node.func.attr == "connect" and isinstance(node.func.value, ast.Name)
                      and node.func.value.id == "nats")
            imported = (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "nats"
                        and any(a.name == "connect" for a in node.names))
            if direct or imported:
                scope = node
                while scope in parents and not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
                    scope = parents[scope]
                name = getattr(scope, "name", "<module>")
                found.append(f"{path.relative_to(SRC).with_suffix('').as_posix().replace('/', '.')}:{name}")
    return found


def test_the_only_nats_connect_is_the_adapters():
    assert nats_connect_calls() == ["events.nats:connect"]
