"""Imports follow DESIGN.md's table and nothing else, so dependencies point one way."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PROJECT = {"layout", "instruments", "acquisition", "dataset", "models", "simulators", "metascan"}
ALLOWED = {
    "layout": set(),
    "instruments": set(),
    "simulators": {"layout", "instruments", "dataset"},
    "acquisition": {"instruments", "layout", "dataset", "simulators"},
    "dataset": {"layout"},
    "models": {"dataset", "layout"},
    "metascan": PROJECT,
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT


def test_every_package_imports_only_what_design_allows() -> None:
    checked = 0
    for package, allowed in ALLOWED.items():
        for path in (SRC / package).rglob("*.py"):
            extra = imported_packages(path) - allowed - {package}
            assert not extra, (
                f"{path.relative_to(SRC)} imports {sorted(extra)}; DESIGN.md allows {sorted(allowed)}"
            )
            checked += 1
    assert checked >= 15


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("from models.train import fit\nimport layout\n")
    assert imported_packages(bad) == {"models", "layout"}
