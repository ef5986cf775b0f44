"""Chip placement, the hierarchical GDS/OASIS, the manifest round trip and atomic writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import gdstk
import numpy as np
import pytest

from layout.chip import ChipConfig, cells_per_pad, plan_chip
from layout.design import DesignLibrary
from layout.gds_writer import write_chip
from layout.layers import Layer
from layout.manifest import ChipManifest, Role, read_manifest


def test_plan_places_every_array_replica_and_companion(
    library: DesignLibrary, chip_config: ChipConfig
) -> None:
    m = plan_chip(library, chip_config)
    pads = m.pads
    per_array = chip_config.rows * chip_config.cols
    assert m.arrays.name == ["A0R0", "A0R1", "A0C", "A1R0", "A1R1", "A1C"]
    assert (
        np.sum(pads.role == Role.DATASET) == chip_config.arrays * chip_config.replicas * per_array
    )
    assert np.sum(pads.role == Role.COMPANION) == chip_config.arrays * 16
    assert np.sum(pads.role == Role.FIDUCIAL) == 4 * len(m.arrays.name)
    for k in range(chip_config.arrays):
        expected = library.design_id[k * per_array : (k + 1) * per_array]
        orders = []
        for rep in range(chip_config.replicas):
            sel = (pads.array_id == k) & (pads.replica == rep) & (pads.role == Role.DATASET)
            order = pads.design_id[sel][np.lexsort((pads.col[sel], pads.row[sel]))]
            assert sorted(order) == sorted(expected)  # same designs in every replica
            orders.append(order)
        assert np.array_equal(orders[0], expected)  # replica 0 in library order
        assert not np.array_equal(orders[0], orders[1])  # replica 1 in another order
        comp = pads.design_id[(pads.array_id == k) & (pads.role == Role.COMPANION)]
        assert set(comp) <= set(expected) and len(set(comp)) == comp.size


def test_pads_touch_and_fiducials_sit_outside_the_corners(
    library: DesignLibrary, chip_config: ChipConfig
) -> None:
    m = plan_chip(library, chip_config)
    a = m.arrays.name.index("A1R1")
    sel = (m.pads.array_id == 1) & (m.pads.replica == 1) & (m.pads.role == Role.DATASET)
    x, y, r, c = m.pads.x_um[sel], m.pads.y_um[sel], m.pads.row[sel], m.pads.col[sel]
    np.testing.assert_allclose(x, m.arrays.origin_x_um[a] + 6.0 * c + 3.0)
    np.testing.assert_allclose(y, m.arrays.origin_y_um[a] + 6.0 * r + 3.0)
    fid = (m.pads.array_id == 1) & (m.pads.replica == 1) & (m.pads.role == Role.FIDUCIAL)
    fx, fy = m.pads.x_um[fid], m.pads.y_um[fid]
    ox, oy = m.arrays.origin_x_um[a], m.arrays.origin_y_um[a]
    assert np.all((fx < ox) | (fx > ox + 42)) and np.all((fy < oy) | (fy > oy + 36))


def test_pad_gap_sets_the_pitch(library: DesignLibrary) -> None:
    cfg = ChipConfig(thickness_nm=500, rows=2, cols=3, replicas=1, companion_size=0, pad_gap_um=1.5)
    m = plan_chip(library, cfg)
    assert m.pad_pitch_um == 7.5
    sel = m.pads.role == Role.DATASET
    assert np.allclose(np.diff(np.unique(m.pads.x_um[sel])), 7.5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arrays": 50, "rows": 10, "cols": 10}, "need 5000 designs; the library has 400"),
        ({"pad_size_um": 6.5}, "is not a whole number of"),
        ({"companion_size": 20}, "companion_size=20"),
    ],
)
def test_plan_rejects_what_cannot_fit(
    library: DesignLibrary, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        plan_chip(library, ChipConfig(thickness_nm=500, **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"thickness_nm": -5}, r"thickness_nm -5 is outside the allowed range \(0, 10000\] nm"),
        ({"rows": 0}, r"rows 0 is outside the allowed range \[1, 10000\]"),
        ({"pad_gap_um": -1}, "pad_gap_um -1 is outside"),
        ({"pad_gap_um": float("nan")}, "pad_gap_um nan must be a finite number"),
        ({"rows": 2.5}, "rows 2.5 must be an integer"),
        ({"material": "Si"}, "material 'Si' is not a film material; known: a-Si, a-Si:H or n="),
        ({"material": "n=3-1j"}, "loss, not gain"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, float], message: str) -> None:
    base = {"thickness_nm": 500.0} | kwargs
    with pytest.raises(ValueError, match=message):
        ChipConfig(**base)  # type: ignore[arg-type]


def test_cells_per_pad() -> None:
    assert [cells_per_pad(p, 6.0) for p in (300, 400, 500, 600)] == [20, 15, 12, 10]


def test_gds_is_hierarchical_with_one_aref_per_pad(
    written_chip: tuple[ChipManifest, Path, Path],
) -> None:
    m, gds, _ = written_chip
    lib = gdstk.read_gds(str(gds))
    cells = {c.name: c for c in lib.cells}
    assert len(lib.top_level()) == 1
    unit = {n for n in cells if n.startswith("D")}
    assert unit == {f"D{i}" for i in m.designs.design_id}
    for a, name in enumerate(m.arrays.name):
        cell = cells[name]
        assert not cell.polygons  # arrays hold references only: nothing flattened
        assert len(cell.references) == int(m.arrays.rows[a] * m.arrays.cols[a])
        for ref in cell.references:
            period_um = (
                float(
                    m.designs.period_nm[m.designs.index_of(np.array([int(ref.cell.name[1:])]))][0]
                )
                / 1000
            )
            rep = ref.repetition
            assert rep.columns == rep.rows == round(6.0 / period_um)
            assert rep.spacing == pytest.approx((period_um, period_um))
    for name in unit:
        assert all((p.layer, p.datatype) == Layer.SILICON.value for p in cells[name].polygons)


def test_written_unit_cells_match_the_library(
    written_chip: tuple[ChipManifest, Path, Path],
) -> None:
    from layout.polygons import design_polygons

    m, gds, _ = written_chip
    cells = {c.name: c for c in gdstk.read_gds(str(gds)).cells}
    for i in range(len(m.designs)):
        ideal = design_polygons(m.designs.design(i))
        expected = sum(p.area() for p in ideal)
        got = sum(p.area() for p in cells[f"D{int(m.designs.design_id[i])}"].polygons)
        # Vertices snap to the 1 nm GDS grid: at most half a nanometre times the perimeter.
        assert abs(got - expected) <= sum(p.perimeter() for p in ideal) * 0.5e-3


def test_manifest_round_trip(written_chip: tuple[ChipManifest, Path, Path]) -> None:
    m, gds, h5 = written_chip
    back = read_manifest(h5)
    assert back.chip_id == m.chip_id and back.thickness_nm == 450
    assert back.material == m.material == "a-Si"  # the default film: MOCLIP's LPCVD a-Si
    assert back.arrays.name == m.arrays.name
    for field in ("array_id", "replica", "role", "row", "col", "x_um", "y_um", "design_id"):
        assert np.array_equal(getattr(back.pads, field), getattr(m.pads, field)), field
    assert np.array_equal(back.designs.design_id, m.designs.design_id)
    assert np.array_equal(back.designs.width_nm, m.designs.width_nm)
    assert back.attrs["layout_sha256"] == hashlib.sha256(gds.read_bytes()).hexdigest()
    assert back.attrs["layout_file"] == "chip.gds"


@pytest.mark.parametrize("fmt", ["gds", "oas"])
def test_same_inputs_give_the_same_bytes(tmp_path: Path, library: DesignLibrary, fmt: str) -> None:
    cfg = ChipConfig(thickness_nm=500, rows=3, cols=3, replicas=2, companion_size=2)
    digests = []
    for run in range(2):
        out = tmp_path / f"{run}.{fmt}"
        write_chip(plan_chip(library, cfg), cfg, out, tmp_path / f"{run}.h5", fmt)  # type: ignore[arg-type]
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_oasis_holds_the_same_geometry(
    tmp_path: Path, written_chip: tuple[ChipManifest, Path, Path], chip_config: ChipConfig
) -> None:
    m, gds, _ = written_chip
    oas = tmp_path / "chip.oas"
    write_chip(m, chip_config, oas, tmp_path / "chip_oas.h5", "oas")
    a = gdstk.read_gds(str(gds))
    b = gdstk.read_oas(str(oas))
    assert sorted(c.name for c in a.cells) == sorted(c.name for c in b.cells)
    top_a, top_b = a.top_level()[0], b.top_level()[0]
    area = lambda cell: sum(p.area() for p in cell.get_polygons(layer=1, datatype=0))  # noqa: E731
    assert area(top_b) == pytest.approx(area(top_a), rel=1e-6)


def test_failed_write_leaves_no_file(tmp_path: Path, library: DesignLibrary) -> None:
    cfg = ChipConfig(thickness_nm=500, rows=2, cols=2, replicas=1, companion_size=0)
    m = plan_chip(library, cfg)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_chip(m, cfg, tmp_path / "chip.gds", tmp_path / "missing" / "chip.h5")
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_the_umask_mode_not_a_private_one(
    tmp_path: Path, library: DesignLibrary
) -> None:
    import os

    from layout.library_file import write_library

    old = os.umask(0o022)
    try:
        write_library(tmp_path / "designs.h5", library)
    finally:
        os.umask(old)
    assert (tmp_path / "designs.h5").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("material", ["a-Si:H", "n=3.5+0.01j"])
def test_the_manifest_records_the_film(
    tmp_path: Path, library: DesignLibrary, material: str
) -> None:
    cfg = ChipConfig(thickness_nm=178, rows=2, cols=2, replicas=1, companion_size=0)
    default = plan_chip(library, cfg)
    other = plan_chip(library, ChipConfig(**{**cfg.__dict__, "material": material}))
    write_chip(other, cfg, tmp_path / "chip.gds", tmp_path / "chip.h5")
    assert read_manifest(tmp_path / "chip.h5").material == material
    # Another film is another chip: the content hash every scan and spectra file records differs.
    assert other.content_sha256() != default.content_sha256()


def test_a_manifest_written_before_materials_were_recorded_is_refused(
    written_chip: tuple[ChipManifest, Path, Path], tmp_path: Path
) -> None:
    import shutil

    import h5py

    _, _, h5 = written_chip
    old = tmp_path / "old.h5"
    shutil.copy(h5, old)
    with h5py.File(old, "r+") as f:  # what a version-1 writer left
        del f.attrs["material"]
        f.attrs["schema_version"] = 1
    with pytest.raises(ValueError, match="written before materials were recorded") as info:
        read_manifest(old)
    assert "rewrite it with metascan layout chip" in str(info.value)
    assert "\n" not in str(info.value)
