"""A tiny wafer (0.2 mm disc of 5 µm pads, a 40 x 40 grid) written by streaming, checked against
independent computations: KLayout and gdstk read it, its silicon is what gdstk's own OASIS writer
gives for one reference per pad, the manifest holds exactly the pads inside the disc with the
target of the pixel above each, and bad inputs or an existing output are refused."""

from __future__ import annotations

import errno
import math
from pathlib import Path
from typing import Any

import gdstk
import klayout.db as kdb
import numpy as np
import pytest

from layout import oasis_stream, wafer
from layout.design import DesignLibrary
from layout.drc import run_drc
from layout.generator import GeneratorConfig, generate
from layout.manifest import ChipManifest, Role, read_manifest
from layout.oasis_stream import signed, unsigned
from layout.polygons import design_polygons
from layout.wafer import WaferConfig, WaferStats, estimate_wafer, write_wafer

PAD_UM = 5.0
SIDE = 40  # pads across a 0.2 mm disc
TARGETS = ("red", "green", "blue", "unused", "teal")


@pytest.fixture(scope="module")
def palette() -> DesignLibrary:
    """Five entries: periods 500 and 250 nm (10 and 20 cells a pad); entry 4 repeats entry 0's
    design (two colours, one design: one cell, runs across both); entry 3 is never sampled."""
    a = generate(3, seed=4, config=GeneratorConfig(periods_nm=(500,)))
    b = generate(1, seed=5, config=GeneratorConfig(periods_nm=(250,)))
    lib = DesignLibrary.concatenate([a.take(np.array([0, 1])), b, a.take(np.array([2, 0]))])
    return lib


def _image() -> np.ndarray:
    """An 8 x 10 index image: stripes, a transparent (-1) block, and entry 3 only in the top
    left pixel, which lies outside the disc."""
    img = np.zeros((8, 10), np.int64)
    img[:, 4:] = 1
    img[5:, :] = 2
    img[:, 8:] = 4
    img[2:4, 1:3] = -1
    img[0, 0] = 3
    return img


@pytest.fixture(scope="module")
def written(
    tmp_path_factory: pytest.TempPathFactory, palette: DesignLibrary
) -> tuple[WaferStats, Path, Path, WaferConfig]:
    out = tmp_path_factory.mktemp("wafer")
    cfg = WaferConfig(thickness_nm=180, diameter_mm=0.2, pad_size_um=PAD_UM, tile_rows=7)
    stats = write_wafer(_image(), palette, TARGETS, cfg, out / "w.oas", out / "w.h5")
    return stats, out / "w.oas", out / "w.h5", cfg


def _expected() -> tuple[np.ndarray, np.ndarray]:
    """Independently: pad (r, c) of the 40 x 40 grid centred on the disc is in when its four
    corners are within 100 µm of the centre; it takes the pixel at its centre (image row 0 at
    the top). Returns (inside mask, palette entry per pad, -1 none) indexed [row, col]."""
    img = _image()
    h, w = img.shape
    entry = np.full((SIDE, SIDE), -1)
    inside = np.zeros((SIDE, SIDE), bool)
    for r in range(SIDE):
        for c in range(SIDE):
            x0, y0 = -100 + c * PAD_UM, -100 + r * PAD_UM
            corners = [(x0 + dx, y0 + dy) for dx in (0, PAD_UM) for dy in (0, PAD_UM)]
            inside[r, c] = all(math.hypot(x, y) <= 100 + 1e-9 for x, y in corners)
            px = int((c + 0.5) * w / SIDE)
            py = int((1 - (r + 0.5) / SIDE) * h)
            if inside[r, c]:
                entry[r, c] = img[py, px]
    return inside, np.where(entry >= 0, entry, -1)


def test_manifest_holds_the_pads_inside_the_disc(
    written: tuple[WaferStats, Path, Path, WaferConfig], palette: DesignLibrary
) -> None:
    stats, oas, h5, _ = written
    m = read_manifest(h5)
    inside, entry = _expected()
    placed = entry >= 0
    assert stats.pads == len(m.pads) == int(placed.sum())
    assert int(inside.sum()) < SIDE * SIDE and int(placed.sum()) < int(inside.sum())
    rows, cols = np.nonzero(placed)  # row-major, as the writer appends
    p = m.pads
    assert np.array_equal(p.row, rows) and np.array_equal(p.col, cols)
    assert m.pad_target is not None and m.target_ids == TARGETS
    assert np.array_equal(m.pad_target, entry[rows, cols])
    assert np.array_equal(p.design_id, palette.design_id[entry[rows, cols]])
    assert np.allclose(p.x_um, -100 + (cols + 0.5) * PAD_UM)
    assert np.allclose(p.y_um, -100 + (rows + 0.5) * PAD_UM)
    assert np.all(np.hypot(np.abs(p.x_um) + 2.5, np.abs(p.y_um) + 2.5) <= 100 + 1e-9)
    assert set(p.role.tolist()) == {int(Role.DATASET)} and not m.fiducials()
    assert m.arrays.name == ["A0R0"] and m.pads_of("A0R0").size == len(p)
    assert (m.arrays.origin_x_um[0], m.arrays.rows[0], m.arrays.cols[0]) == (-100.0, SIDE, SIDE)
    assert m.material == "a-Si" and m.thickness_nm == 180 and m.pad_pitch_um == PAD_UM
    # Entry 3 is sampled by no pad and entry 4 shares entry 0's design: three designs.
    assert sorted(m.designs.design_id.tolist()) == sorted(
        set(palette.design_id[[0, 1, 2]].tolist())
    )
    assert m.attrs["layout_format"] == "oas" and m.attrs["layout_file"] == "w.oas"
    import hashlib

    assert m.attrs["layout_sha256"] == hashlib.sha256(oas.read_bytes()).hexdigest()
    assert stats.layout_bytes == oas.stat().st_size and stats.manifest_bytes == h5.stat().st_size
    assert stats.estimate.layout_bytes >= stats.layout_bytes
    assert stats.estimate.manifest_bytes >= stats.manifest_bytes
    assert stats.estimate.runs_max >= stats.runs


def _runs_expected(entry: np.ndarray, palette: DesignLibrary) -> int:
    """Runs per row of one design (entries 0 and 4 are one design), independently."""
    design = np.where(entry >= 0, palette.design_id[np.maximum(entry, 0)], -1)
    runs = 0
    for row in design:
        prev = -1
        for d in row:
            runs += int(d != -1 and d != prev)
            prev = d
    return runs


def test_klayout_and_gdstk_read_the_runs(
    written: tuple[WaferStats, Path, Path, WaferConfig], palette: DesignLibrary
) -> None:
    stats, oas, _, _ = written
    _, entry = _expected()
    assert stats.runs == _runs_expected(entry, palette) < stats.pads
    cells_per_pad = {
        int(d): round(PAD_UM * 1000 / p)
        for d, p in zip(palette.design_id, palette.period_nm, strict=True)
    }
    expected_cells = sum(
        cells_per_pad[int(palette.design_id[e])] ** 2 for e in entry[entry >= 0].tolist()
    )
    ly = kdb.Layout()
    ly.read(str(oas))
    assert ly.dbu == pytest.approx(0.001)
    top = ly.top_cell()
    assert top.name == "WAFER_wafer"
    insts = list(top.each_inst())
    assert len(insts) == stats.runs
    assert sum(max(i.na, 1) * max(i.nb, 1) for i in insts) == expected_cells
    lib = gdstk.read_oas(str(oas))
    (gtop,) = lib.top_level()
    assert len(gtop.references) == stats.runs
    assert sum(r.repetition.columns * r.repetition.rows for r in gtop.references) == expected_cells
    assert len(lib.cells) == 4  # three designs and the top cell


def _same_silicon(a: Path, b: Path) -> tuple[int, bool]:
    """(polygons of ``a``, whether the flattened silicon of ``a`` XOR ``b`` is empty), in
    KLayout's deep mode (0.4 s here where flat regions take 12 s)."""
    store = kdb.DeepShapeStore()
    layouts, regions = [], []
    for path in (a, b):
        ly = kdb.Layout()
        ly.read(str(path))
        layouts.append(ly)  # a region made from a layout's shapes needs the layout alive
        regions.append(kdb.Region(ly.top_cell().begin_shapes_rec(ly.find_layer(1, 0)), store))
    return regions[0].count(), (regions[0] ^ regions[1]).is_empty()


def _window(path: Path, box: kdb.Box) -> kdb.Region:
    ly = kdb.Layout()
    ly.read(str(path))
    shapes = ly.top_cell().begin_shapes_rec_overlapping(ly.find_layer(1, 0), box)
    return (kdb.Region(shapes) & kdb.Region(box)).merged()


def test_silicon_equals_gdstk_oasis_of_one_reference_per_pad(
    tmp_path: Path, written: tuple[WaferStats, Path, Path, WaferConfig]
) -> None:
    """The same wafer built independently from the manifest with gdstk, one n x n AREF per pad,
    written by gdstk's own OASIS writer: the flattened silicon XORs to nothing."""
    _, oas, h5, _ = written
    m = read_manifest(h5)
    lib = gdstk.Library(unit=1e-6, precision=1e-9)
    cells: dict[int, tuple[gdstk.Cell, float]] = {}
    for i in range(len(m.designs)):
        cell = lib.new_cell(f"D{int(m.designs.design_id[i])}")
        cell.add(*design_polygons(m.designs.design(i)))
        cells[int(m.designs.design_id[i])] = (cell, float(m.designs.period_nm[i]))
    top = lib.new_cell("TOP")
    for x, y, d in zip(m.pads.x_um, m.pads.y_um, m.pads.design_id, strict=True):
        cell, period = cells[int(d)]
        n = round(PAD_UM * 1000 / period)
        p = period / 1000
        top.add(gdstk.Reference(cell, (x - 2.5, y - 2.5), columns=n, rows=n, spacing=(p, p)))
    ref = tmp_path / "reference.oas"
    lib.write_oas(str(ref))
    polygons, same = _same_silicon(oas, ref)
    assert polygons > 0 and same


def test_a_pad_is_its_unit_cell_tiled(
    tmp_path: Path, written: tuple[WaferStats, Path, Path, WaferConfig], palette: DesignLibrary
) -> None:
    """A pad's square of the written wafer is its design's unit cell (as gdstk writes it for a
    chip) tiled n x n from the pad's corner, at the first, a middle and the last pad."""
    _, oas, h5, _ = written
    m = read_manifest(h5)
    for k in (0, len(m.pads) // 2, len(m.pads) - 1):
        x0 = round((m.pads.x_um[k] - 2.5) * 1000)
        y0 = round((m.pads.y_um[k] - 2.5) * 1000)
        design = palette.design(int(np.flatnonzero(palette.design_id == m.pads.design_id[k])[0]))
        lib = gdstk.Library(unit=1e-6, precision=1e-9)
        lib.new_cell("U").add(*design_polygons(design))
        lib.write_oas(str(tmp_path / "unit.oas"))
        unit = _window(tmp_path / "unit.oas", kdb.Box(-1, -1, 10_000, 10_000))
        period = round(design.period_nm)
        tiled = kdb.Region()
        n = 5000 // period
        for i in range(n):
            for j in range(n):
                tiled += unit.moved(x0 + i * period, y0 + j * period)
        pad = _window(oas, kdb.Box(x0, y0, x0 + 5000, y0 + 5000))
        assert not pad.is_empty()
        assert (pad ^ tiled.merged()).is_empty(), k


def test_the_wafer_is_drc_clean(written: tuple[WaferStats, Path, Path, WaferConfig]) -> None:
    _, oas, _, _ = written
    result = run_drc(oas)
    assert result.polygons_checked > 0 and result.clean, result.counts()


def test_estimate_matches_the_writer(palette: DesignLibrary) -> None:
    cfg = WaferConfig(thickness_nm=180, diameter_mm=0.2, tile_rows=7)
    est = estimate_wafer(_image(), palette, TARGETS, cfg)
    inside, _ = _expected()
    assert est.pads_max == int(inside.sum())
    assert est.placement_bytes <= 24


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"diameter_mm": -1.0}, r"diameter_mm -1.0 is outside the allowed range \(0, 450\] mm"),
        ({"tile_rows": 0}, "tile_rows 0 is outside"),
        ({"tile_rows": 2.5}, "tile_rows 2.5 must be an integer"),
        ({"pad_size_um": float("nan")}, "pad_size_um nan must be a finite number"),
        ({"edge_exclusion_mm": 0.1}, "edge_exclusion_mm 0.1 leaves nothing"),
        ({"diameter_mm": 0.005}, "holds no whole 5.0 µm pad"),
        ({"pad_size_um": 5.0005}, "not a whole number of nm"),
        ({"chip_id": "my wafer"}, "chip_id 'my wafer' must be"),
        ({"material": "gold"}, "material 'gold' is not a film material"),
        ({"compression_level": 10}, "compression_level 10 is outside"),
    ],
)
def test_bad_configs_are_one_line_errors(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        WaferConfig(thickness_nm=180, **{"diameter_mm": 0.2, **change})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("image", "targets", "pad_um", "match"),
    [
        (np.zeros((2, 2, 2), np.int64), TARGETS, 5.0, "2-D integer array"),
        (np.zeros((4, 4)), TARGETS, 5.0, "2-D integer array"),
        (np.full((4, 4), 5), TARGETS, 5.0, "palette index 5; the palette has 5 entries"),
        (np.zeros((4, 4), np.int64), TARGETS[:2], 5.0, "target_ids has 2 names"),
        (np.full((4, 4), -1), TARGETS, 5.0, "places no pad"),
        (np.zeros((4, 4), np.int64), TARGETS, 5.2, "not a whole number of 250 nm periods"),
    ],
)
def test_bad_inputs_are_one_line_errors(
    tmp_path: Path,
    palette: DesignLibrary,
    image: np.ndarray,
    targets: tuple[str, ...],
    pad_um: float,
    match: str,
) -> None:
    cfg = WaferConfig(thickness_nm=180, diameter_mm=0.2, pad_size_um=pad_um)
    with pytest.raises(ValueError, match=match) as info:
        write_wafer(image, palette, targets, cfg, tmp_path / "w.oas", tmp_path / "w.h5")
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_is_not_overwritten(tmp_path: Path, palette: DesignLibrary) -> None:
    cfg = WaferConfig(thickness_nm=180, diameter_mm=0.2)
    layout, manifest = tmp_path / "w.oas", tmp_path / "w.h5"
    manifest.write_bytes(b"previous")
    with pytest.raises(FileExistsError, match=r"w\.h5 exists; pass force=True"):
        write_wafer(_image(), palette, TARGETS, cfg, layout, manifest)
    assert manifest.read_bytes() == b"previous" and not layout.exists()
    write_wafer(_image(), palette, TARGETS, cfg, layout, manifest, force=True)
    assert isinstance(read_manifest(manifest), ChipManifest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.h5", "w.oas"]


def test_a_disk_too_small_is_refused_before_writing(
    tmp_path: Path, palette: DesignLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Usage:
        free = 10_000

    monkeypatch.setattr(wafer.shutil, "disk_usage", lambda path: Usage())
    cfg = WaferConfig(thickness_nm=180, diameter_mm=0.2)
    with pytest.raises(OSError, match="no space left on device") as info:
        write_wafer(_image(), palette, TARGETS, cfg, tmp_path / "w.oas", tmp_path / "w.h5")
    assert info.value.errno == errno.ENOSPC and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_the_manifest_leaves_nothing(
    tmp_path: Path, palette: DesignLibrary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HDF5 never sees the failed write (it would crash closing the file); the error comes
    after, in one line, and both temporaries are gone."""
    original = wafer._NeverFailingFile.write
    calls = {"n": 0}

    def failing(self: Any, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] > 3:
            raise_full = OSError(errno.ENOSPC, "No space left on device")
            self.failure = self.failure or raise_full
            return len(data)
        return original(self, data)

    monkeypatch.setattr(wafer._NeverFailingFile, "write", failing)
    cfg = WaferConfig(thickness_nm=180, diameter_mm=0.2)
    with pytest.raises(OSError, match=r"no space left on device for .*w\.h5"):
        write_wafer(_image(), palette, TARGETS, cfg, tmp_path / "w.oas", tmp_path / "w.h5")
    assert list(tmp_path.iterdir()) == []


def test_oasis_integers_follow_the_spec() -> None:
    assert unsigned(0) == b"\x00" and unsigned(127) == b"\x7f"
    assert unsigned(128) == b"\x80\x01" and unsigned(16384) == b"\x80\x80\x01"
    assert signed(1) == b"\x02" and signed(-1) == b"\x03" and signed(-64) == b"\x81\x01"
    values = np.random.default_rng(0).integers(0, 2**62, 500, dtype=np.int64)
    values[:5] = [0, 1, 127, 128, 2**62 - 1]
    count, data = oasis_stream._varints(values.astype(np.uint64))
    for v, n, row in zip(values.tolist(), count.tolist(), data, strict=True):
        assert bytes(row[:n]) == unsigned(v)
    s_count, s_data = oasis_stream._signed_varints(-values)
    for v, n, row in zip((-values).tolist(), s_count.tolist(), s_data, strict=True):
        assert bytes(row[:n]) == signed(v)


def test_the_oasis_file_ends_with_a_256_byte_end_record(
    written: tuple[WaferStats, Path, Path, WaferConfig],
) -> None:
    data = written[1].read_bytes()
    assert data.startswith(b"%SEMI-OASIS\r\n\x01\x031.0")
    assert data[-256] == oasis_stream.END and data[-1] == 0


@pytest.mark.parametrize("shape", [(3, 5), (37, 50), (200, 97), (1, 1)])
def test_designs_and_run_bound_on_random_images(
    tmp_path: Path, palette: DesignLibrary, shape: tuple[int, int]
) -> None:
    """Random images coarser and finer than the grid: the designs written are exactly those of
    the entries some pad samples (brute force over the grid), and the runs stay within the
    estimate's bound."""
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    image = rng.integers(-1, len(TARGETS), shape)
    image[image == 3] = 0 if shape == (1, 1) else 3
    cfg = WaferConfig(thickness_nm=180, diameter_mm=0.2, tile_rows=5)
    stats = write_wafer(image, palette, TARGETS, cfg, tmp_path / "w.oas", tmp_path / "w.h5")
    m = read_manifest(tmp_path / "w.h5")
    h, w = shape
    inside, _ = _expected()
    rows, cols = np.nonzero(inside)
    sampled = image[((2 * (SIDE - rows) - 1) * h) // (2 * SIDE), ((2 * cols + 1) * w) // (2 * SIDE)]
    used = set(palette.design_id[np.unique(sampled[sampled >= 0])].tolist())
    assert set(m.designs.design_id.tolist()) == used
    assert stats.pads == int((sampled >= 0).sum())
    assert stats.runs <= stats.estimate.runs_max
