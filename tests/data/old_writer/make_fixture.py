"""Writes the old-writer fixture beside this file: one real scan on the simulated bench, kept small.

Not run by the tests. Run it against the code whose files it should keep, e.g.::

    git worktree add /tmp/old_tree <commit>
    PYTHONPATH=/tmp/old_tree/src .venv/bin/python tests/data/old_writer/make_fixture.py

It keeps ``chip.h5`` (the manifest), ``flat.h5`` and ``A0C_r0c0.h5`` (the one tile of the
companion array) exactly as the runner wrote them: 64x64 px, x and y, 2 bands.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dataset
from acquisition.runner import run_scan
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import write_manifest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
KEEP = ("A0C_r0c0.h5", "flat.h5")
SCAN_TABLES = """
[optics]
um_per_px = 0.5
width_px = 64
height_px = 64

[scan]
bands_nm = [520.0, 660.0]
frames = 2
reference_frames = 2
dark_frames = 2

[alignment]
automatic = true

[runner]
step_backoff_s = 0.0

[simulation.microscope]
camera_feed = "direct"
"""


def main() -> None:
    src = Path(dataset.__file__).resolve().parents[1]
    commit = subprocess.run(
        ["git", "-C", str(src), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    print(f"writing with the code in {src} (commit {commit})")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        chip = root / "chip.h5"
        config = ChipConfig(
            thickness_nm=500, arrays=1, rows=4, cols=4, replicas=2, companion_size=2
        )
        write_manifest(chip, plan_chip(generate(24, seed=5), config))
        text = (REPO / "configs" / "sim-bench.toml").read_text().split("# --- the scan")[0]
        text = text.replace("time_scale = 1.0 ", "time_scale = 0.001")
        text = text.replace("bit_depth = 16\n", "bit_depth = 16\nreadout_margin_s = 10.0\n")
        bench = root / "bench.toml"
        bench.write_text(text + SCAN_TABLES)
        run_scan(bench, chip, root / "scan", arrays=["A0C"])
        written = sorted(p.name for p in (root / "scan").glob("*.h5"))
        if written != sorted(KEEP):
            sys.exit(f"the scan wrote {written}, expected {sorted(KEEP)}")
        shutil.copyfile(chip, HERE / "chip.h5")
        for name in KEEP:
            shutil.copyfile(root / "scan" / name, HERE / name)
    for name in ("chip.h5", *KEEP):
        print(f"{name}: {(HERE / name).stat().st_size} bytes")
    print(f"commit {commit}")


if __name__ == "__main__":
    main()
