"""Imports follow DESIGN.md's table and nothing else, so dependencies point one way.

Package rules first (``ALLOWED``), then module rules where DESIGN.md allows only part of a
package, or only from one place (``ONLY_MODULES``, ``ONLY_FROM``): a package-level check cannot
see acquisition doing processing, or reaching into the simulators beyond building a bench.
"""

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
# dataset's file formats (contracts 3-9, their flag codes and conventions): what acquisition
# writes and the simulators write or judge. Processing (extraction, curation) is not among them.
DATASET_FORMATS = {
    "dataset.hypercube_file",
    "dataset.hypercube_attrs",
    "dataset.array_spectra_file",
    "dataset.pairs_file",
    "dataset.truth_file",
    "dataset.targets_file",
    "dataset.probes_file",
    "dataset.chosen_designs_file",
    "dataset.quality",
    "dataset.conventions",
}
# Where DESIGN.md allows only part of a package: emulators and the virtual microscope see the
# device protocols and the bench config's device tables, never a driver; acquisition sees
# dataset's formats and one door to the simulators.
ONLY_MODULES = {
    ("simulators", "instruments"): {"instruments.protocols", "instruments.config"},
    # false_colour: the simulator's previews draw the quick-look's colours (a pure function).
    ("simulators", "dataset"): DATASET_FORMATS | {"dataset.false_colour"},
    ("acquisition", "dataset"): DATASET_FORMATS,
    ("acquisition", "simulators"): {"simulators.simulated_bench"},
}
# Where DESIGN.md allows an import from one place only (keyed by target package or module):
# acquisition builds a simulated bench in acquisition.bench and nowhere else, and writes
# hypercubes only in its file subscriber (the engine measures, the store keeps).
ONLY_FROM = {
    ("acquisition", "simulators"): {"acquisition/bench.py"},
    ("acquisition", "dataset.hypercube_file"): {"acquisition/hypercube_store.py"},
    ("acquisition", "dataset.hypercube_attrs"): {"acquisition/hypercube_store.py"},
}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {m for m in found if m.split(".")[0] in PROJECT}


def violations(package: str, path: Path, where: str = "") -> list[str]:
    """The imports of ``path`` (``where``: its path under src) that DESIGN.md forbids."""
    bad = []
    for module in imported_modules(path):
        target = module.split(".")[0]
        if target == package:
            continue
        key = (package, target)
        if (
            target not in ALLOWED[package]
            or (key in ONLY_MODULES and module not in ONLY_MODULES[key])
            or (key in ONLY_FROM and where not in ONLY_FROM[key])
            or ((package, module) in ONLY_FROM and where not in ONLY_FROM[package, module])
        ):
            bad.append(module)
    return sorted(bad)


def test_every_package_imports_only_what_design_allows() -> None:
    checked = 0
    for package, allowed in ALLOWED.items():
        for path in (SRC / package).rglob("*.py"):
            bad = violations(package, path, path.relative_to(SRC).as_posix())
            assert not bad, (
                f"{path.relative_to(SRC)} imports {bad}; DESIGN.md allows {sorted(allowed)}"
                f" and of those only {ONLY_MODULES}, from {ONLY_FROM}"
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


def test_module_rules_catch_processing_and_a_second_simulator_door(tmp_path: Path) -> None:
    quicklook = tmp_path / "q.py"
    quicklook.write_text("from dataset.extraction import transmission_images\n")
    assert violations("acquisition", quicklook, "acquisition/quicklook.py") == [
        "dataset.extraction"
    ]
    door = tmp_path / "d.py"
    door.write_text("from simulators.simulated_bench import open_simulated_bench\n")
    assert violations("acquisition", door, "acquisition/bench.py") == []
    assert violations("acquisition", door, "acquisition/scan_setup.py") == [
        "simulators.simulated_bench"
    ]
    inner = tmp_path / "i.py"
    inner.write_text("from simulators.microscope.bench_setup import microscope_config\n")
    assert violations("acquisition", inner, "acquisition/bench.py") == [
        "simulators.microscope.bench_setup"
    ]


def test_only_the_store_writes_hypercubes_in_acquisition(tmp_path: Path) -> None:
    writer = tmp_path / "w.py"
    writer.write_text("from dataset.hypercube_file import HypercubeWriter\n")
    assert violations("acquisition", writer, "acquisition/hypercube_store.py") == []
    assert violations("acquisition", writer, "acquisition/engine.py") == ["dataset.hypercube_file"]
