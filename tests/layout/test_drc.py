"""KLayout DRC: clean on generated chips (pads of different periods touching), and it finds
violations in layouts built to break width and space."""

from __future__ import annotations

from pathlib import Path

import gdstk
import numpy as np
import pytest

from layout.chip import ChipConfig, plan_chip
from layout.design import DesignLibrary, Kind
from layout.drc import run_drc
from layout.gds_writer import write_chip
from layout.manifest import ChipManifest


def test_generated_chip_is_clean(written_chip: tuple[ChipManifest, Path, Path]) -> None:
    m, gds, _ = written_chip
    periods = set(m.designs.period_nm.tolist())
    assert len(periods) >= 3  # touching pads of different periods are part of what is checked
    result = run_drc(gds)
    assert result.polygons_checked > 10_000
    assert result.clean, result.markers[:5]


def _write(tmp_path: Path, *polygons: gdstk.Polygon) -> Path:
    lib = gdstk.Library(unit=1e-6, precision=1e-9)
    lib.new_cell("TOP").add(*polygons)
    path = tmp_path / "bad.gds"
    lib.write_gds(str(path))
    return path


def test_finds_a_narrow_line_and_a_narrow_gap(tmp_path: Path) -> None:
    narrow = gdstk.rectangle((0, 0), (0.040, 1.0), layer=1)  # 40 nm wide
    a = gdstk.rectangle((2.0, 0), (2.3, 0.3), layer=1)
    b = gdstk.rectangle((2.33, 0), (2.6, 0.3), layer=1)  # 30 nm from a
    result = run_drc(_write(tmp_path, narrow, a, b))
    assert result.counts()["width"] >= 1 and result.counts()["space"] >= 1
    widths = [m for m in result.markers if m.check == "width"]
    assert all(abs(m.x_um - 0.02) < 0.05 and m.distance_nm == pytest.approx(40) for m in widths)
    spaces = [m for m in result.markers if m.check == "space"]
    assert all(abs(m.x_um - 2.315) < 0.05 and m.distance_nm == pytest.approx(30) for m in spaces)


def test_ignores_other_layers(tmp_path: Path) -> None:
    result = run_drc(_write(tmp_path, gdstk.rectangle((0, 0), (0.01, 1.0), layer=10)))
    assert result.clean


def test_finds_violations_across_pad_borders(tmp_path: Path) -> None:
    """Designs hugging their cell border (no checker) make touching pads violate space."""
    n = 4
    kind = np.full((n, 1), Kind.RECTANGLE, dtype=np.int8)
    # 400 nm cell, 380 nm square starting 10 nm from the left: 20 nm to the next cell.
    lib = DesignLibrary.from_arrays(
        np.full(n, 400.0),
        kind,
        np.full((n, 1), 200.0),
        np.full((n, 1), 200.0) + np.arange(n)[:, None] * 5,
        np.full((n, 1), 380.0),
        np.full((n, 1), 300.0),
    )
    cfg = ChipConfig(thickness_nm=500, rows=2, cols=2, replicas=1, companion_size=0)
    gds = tmp_path / "bad.gds"
    write_chip(plan_chip(lib, cfg), cfg, gds, tmp_path / "bad.h5")
    result = run_drc(gds)
    assert result.counts()["space"] > 0
    assert all(
        m.distance_nm == pytest.approx(20, abs=1) for m in result.markers if m.check == "space"
    )


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_drc(tmp_path / "nope.gds")
    junk = tmp_path / "junk.gds"
    junk.write_bytes(b"not a layout")
    with pytest.raises(ValueError, match="not a readable GDS/OASIS"):
        run_drc(junk)
    with pytest.raises(ValueError, match="min_width_nm=0"):
        run_drc(junk, min_width_nm=0)
