"""Imports follow DESIGN.md's table and nothing else, so dependencies point one way."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PROJECT = {
    "common",
    "layout",
    "instruments",
    "acquisition",
    "dataset",
    "models",
    "simulators",
    "metascan",
}
ALLOWED = {
    "common": set(),
    "layout": {"common"},
    "instruments": {"common"},
    "simulators": {"common", "layout", "instruments", "dataset"},
    "acquisition": {"common", "instruments", "layout", "dataset", "simulators"},
    "dataset": {"common", "layout"},
    "models": {"common", "dataset", "layout"},
    "metascan": PROJECT,
}
# Where DESIGN.md allows only part of a package: emulators and the virtual microscope see the
# device protocols and the bench config's device tables, never a driver.
ONLY_MODULES = {
    ("simulators", "instruments"): {"instruments.protocols", "instruments.config"},
}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] in PROJECT}


def violations(package: str, path: Path) -> list[str]:
    bad = []
    for module in imported_modules(path):
        target = module.split(".")[0]
        if target == package:
            continue
        if target not in ALLOWED[package] or (
            (package, target) in ONLY_MODULES and module not in ONLY_MODULES[package, target]
        ):
            bad.append(module)
    return sorted(bad)


def test_every_package_imports_only_what_design_allows() -> None:
    checked = 0
    for package, allowed in ALLOWED.items():
        for path in (SRC / package).rglob("*.py"):
            bad = violations(package, path)
            assert not bad, (
                f"{path.relative_to(SRC)} imports {bad}; DESIGN.md allows {sorted(allowed)}"
                f" and of those only {ONLY_MODULES}"
            )
            checked += 1
    assert checked >= 30


def test_the_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text(
        "from models.train import fit\nimport layout\nfrom instruments.thorlabs import Kurios\n"
    )
    assert imported_modules(bad) == {"models.train", "layout", "instruments.thorlabs"}
    assert violations("simulators", bad) == ["instruments.thorlabs", "models.train"]
    ok = tmp_path / "y.py"
    ok.write_text("from instruments.protocols import Stage\n")
    assert violations("simulators", ok) == []
