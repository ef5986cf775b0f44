"""Horizontal runs of one design become one AREF: the run detection on hand-built rows, and chips
written with runs merged against the same chips written one reference per pad (same bytes when
there is nothing to merge, same silicon when there is)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import klayout.db as kdb
import numpy as np
import pytest

from layout import gds_writer
from layout.chip import ChipConfig, plan_chip
from layout.design import DesignLibrary
from layout.gds_writer import build_gds, row_runs
from layout.generator import GeneratorConfig, generate
from layout.manifest import ChipManifest, Role


def _runs(grid: list[list[int]], **kw: int) -> list[tuple[int, int, int, int]]:
    r = row_runs(np.array(grid), **kw)
    return list(
        zip(r.row.tolist(), r.start.tolist(), r.length.tolist(), r.value.tolist(), strict=True)
    )


def test_runs_of_hand_built_rows() -> None:
    grid = [
        [1, 1, 2, 2, 2, -1, 1],
        [3, 3, 3, 3, -1, -1, -1],
        [-1, -1, -1, -1, -1, -1, -1],
        [4, 5, 4, 5, 4, 5, 4],
    ]
    assert _runs(grid) == [
        (0, 0, 2, 1),
        (0, 2, 3, 2),
        (0, 6, 1, 1),
        (1, 0, 4, 3),
        *[(3, c, 1, 4 + c % 2) for c in range(7)],
    ]
    # A run never continues from one row's end into the next row's start.
    assert _runs([[7, 7], [7, 7]]) == [(0, 0, 2, 7), (1, 0, 2, 7)]
    # Another value as "empty": -1 is then a design like any other.
    assert _runs([[-1, -1, 0, 0]], empty=0) == [(0, 0, 2, -1)]


def test_runs_are_cut_to_the_longest_reference() -> None:
    assert _runs([[5] * 7, [6] * 3 + [-1] * 4], max_length=3) == [
        (0, 0, 3, 5),
        (0, 3, 3, 5),
        (0, 6, 1, 5),
        (1, 0, 3, 6),
    ]


def test_runs_of_nothing_and_bad_shapes() -> None:
    assert len(row_runs(np.zeros((0, 5), np.int64))) == 0
    assert len(row_runs(np.full((3, 4), -1))) == 0
    with pytest.raises(ValueError, match="2-D"):
        row_runs(np.arange(4))
    with pytest.raises(ValueError, match="max_length"):
        row_runs(np.zeros((2, 2)), max_length=0)


def _per_pad(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make build_gds write one reference per pad, as it did before runs were merged."""
    monkeypatch.setattr(
        gds_writer, "_pad_runs", lambda m, sel, longest: (sel, np.ones(sel.size, np.int64))
    )


def _references(lib: object) -> int:
    return sum(len(c.references) for c in lib.cells if c.name.startswith("A"))  # type: ignore[attr-defined]


def _same_silicon(a: Path, b: Path) -> tuple[int, bool]:
    """(polygons of ``a``, whether the flattened silicon of ``a`` XOR ``b`` is empty), in
    KLayout's deep mode (a region made from a layout's shapes needs the layout alive)."""
    store = kdb.DeepShapeStore()
    layouts, regions = [], []
    for path in (a, b):
        ly = kdb.Layout()
        ly.read(str(path))
        layouts.append(ly)
        regions.append(kdb.Region(ly.top_cell().begin_shapes_rec(ly.find_layer(1, 0)), store))
    return regions[0].count(), (regions[0] ^ regions[1]).is_empty()


def test_a_dataset_chip_keeps_its_bytes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    written_chip: tuple[ChipManifest, Path, Path],
    chip_config: ChipConfig,
) -> None:
    """The shared chip fixture (random designs, none repeated in a row): merging finds nothing,
    and the file is the one-reference-per-pad file byte for byte, in both formats."""
    m, gds, _ = written_chip
    merged = build_gds(m, chip_config)
    with monkeypatch.context() as patch:
        _per_pad(patch)
        per_pad = build_gds(m, chip_config)
    assert _references(merged) == _references(per_pad) == int(np.sum(m.pads.role != Role.FIDUCIAL))
    for fmt in ("gds", "oas"):
        a, b = tmp_path / f"merged.{fmt}", tmp_path / f"per_pad.{fmt}"
        gds_writer.write_layout(merged, a, fmt)  # type: ignore[arg-type]
        gds_writer.write_layout(per_pad, b, fmt)  # type: ignore[arg-type]
        assert a.read_bytes() == b.read_bytes(), fmt
    assert (tmp_path / "merged.gds").read_bytes() == gds.read_bytes()


def _striped(m: ChipManifest, drop: int) -> ChipManifest:
    """The manifest with designs repeated along rows (3 designs in stripes of 1-4 pads, as an
    image would place them) and one pad of every ``drop`` removed, so runs meet holes."""
    pads = m.pads
    ids = np.unique(pads.design_id[pads.role != Role.FIDUCIAL])[:3]
    stripe = (pads.col // 3 + pads.row // 2) % 3
    design_id = np.where(pads.role == Role.FIDUCIAL, -1, ids[stripe])
    keep = (np.arange(len(pads)) % drop != drop - 1) | (pads.role == Role.FIDUCIAL)
    new_pads = dataclasses.replace(pads, design_id=design_id.astype(np.int64)).select(keep)
    designs: DesignLibrary = m.designs.take(m.designs.index_of(ids))
    return dataclasses.replace(m, pads=new_pads, designs=designs)


def test_runs_give_fewer_references_and_the_same_silicon(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    library: DesignLibrary,
) -> None:
    cfg = ChipConfig(thickness_nm=450, rows=6, cols=9, replicas=2, companion_size=3, seed=3)
    m = _striped(plan_chip(library, cfg), drop=7)
    merged = build_gds(m, cfg)
    with monkeypatch.context() as patch:
        _per_pad(patch)
        per_pad = build_gds(m, cfg)
    pads = int(np.sum(m.pads.role != Role.FIDUCIAL))
    assert _references(per_pad) == pads
    assert _references(merged) < pads // 2
    a, b = tmp_path / "merged.gds", tmp_path / "per_pad.gds"
    merged.write_gds(str(a))
    per_pad.write_gds(str(b))
    polygons, same = _same_silicon(a, b)
    assert polygons > 0 and same


def test_pads_with_a_gap_stay_one_reference_each(library: DesignLibrary) -> None:
    cfg = ChipConfig(thickness_nm=450, rows=4, cols=6, replicas=1, companion_size=0, pad_gap_um=1)
    m = _striped(plan_chip(library, cfg), drop=1000)
    assert _references(build_gds(m, cfg)) == int(np.sum(m.pads.role != Role.FIDUCIAL))


def test_a_run_longer_than_a_gds_aref_is_cut() -> None:
    """1,700 touching pads of one 300 nm design in a row are 34,000 unit cells: more than the
    32,767 columns a GDSII AREF holds, so two references (1,638 + 62 pads)."""
    lib = generate(1700, seed=2, config=GeneratorConfig(periods_nm=(300,)))
    cfg = ChipConfig(thickness_nm=450, rows=1, cols=1700, replicas=1, companion_size=0)
    m = plan_chip(lib, cfg)
    one = m.designs.take(np.array([0]))
    pads = dataclasses.replace(
        m.pads,
        design_id=np.where(m.pads.role == Role.FIDUCIAL, -1, one.design_id[0]).astype(np.int64),
    )
    gds = build_gds(dataclasses.replace(m, pads=pads, designs=one), cfg)
    (array,) = (c for c in gds.cells if c.name == "A0R0")
    columns = [r.repetition.columns for r in array.references]
    assert columns == [1638 * 20, 62 * 20]
    assert all(r.repetition.rows == 20 for r in array.references)
