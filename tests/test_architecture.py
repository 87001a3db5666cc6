"""The layering of docs/architecture.md: every module listed with a layer, and every import of a
klrpn module goes to a lower layer (or to a sibling of the same package folder and layer)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| `(klrpn/[\w/]+\.py)` \| (\d+) \|", re.M)
SNAKEMAKE_MAX_LAYER = 3


def layers() -> dict[str, int]:
    return {m: int(n) for m, n in ROW.findall((REPO / "docs/architecture.md").read_text())}


def module_file(name: str) -> str | None:
    """``klrpn.a.b`` -> ``klrpn/a/b.py`` or ``klrpn/a/b/__init__.py`` (None if neither)."""
    base = REPO / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path.relative_to(REPO).as_posix()
    return None


def klrpn_imports(source: str) -> set[str]:
    """The klrpn module files ``source`` imports anywhere (top level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from klrpn import checkpoint` imports the module klrpn/checkpoint.py
            names = [f"{node.module}.{a.name}" if module_file(f"{node.module}.{a.name}")
                     else node.module for a in node.names]
        else:
            continue
        for name in names:
            if name == "klrpn" or name.startswith("klrpn."):
                found.add(module_file(name))
    return found - {None}


def test_every_module_has_a_layer_and_no_listed_module_is_gone():
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "klrpn").rglob("*.py")}
    assert set(layers()) == modules


def test_imports_go_down_the_layers():
    table = layers()
    bad = []
    for module, layer in table.items():
        for target in klrpn_imports((REPO / module).read_text()):
            if target == module:
                continue
            same_folder = Path(target).parent == Path(module).parent and \
                Path(module).parent != Path("klrpn")
            if not (table[target] < layer or (table[target] == layer and same_folder)):
                bad.append(f"{module} (layer {layer}) imports {target} (layer {table[target]})")
    assert not bad, "\n".join(bad)


def test_the_workflow_imports_only_the_lower_layers():
    table = layers()
    sources = [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))]
    for path in sources:
        # a Snakemake file is not Python: take its import lines only
        lines = "\n".join(line.strip() for line in path.read_text().splitlines()
                          if re.match(r"\s*(from|import) klrpn\b", line))
        for target in klrpn_imports(lines):
            assert table[target] <= SNAKEMAKE_MAX_LAYER, (path.name, target)


@pytest.mark.parametrize("source, expected", [
    ("from klrpn import checkpoint as ckpt", {"klrpn/checkpoint.py"}),
    ("from klrpn.layout import run_dir", {"klrpn/layout.py"}),
    ("def f():\n    import klrpn.models.rpn", {"klrpn/models/rpn.py"}),
    ("from klrpn import __version__", {"klrpn/__init__.py"}),
    ("import torch", set()),
])
def test_imports_are_read_at_any_depth(source, expected):
    assert klrpn_imports(source) == expected
