"""Extraction from hypercubes rendered by the virtual microscope (tests/dataset/scan_fixture.py).

Two small scans of one chip (a 6x6 array of 6 µm pads, two replicas, missing pads planted on
replica 0): replica 0 through nine overlapping 28 µm tiles, so most pads lie wholly in two or
more tiles; replica 1 in one 40 µm tile, which the flag tests copy and doctor.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from numpy.typing import NDArray
from scan_fixture import RenderedScan, ScanSettings, render_scan

from dataset.array_spectra_file import ArraySpectra
from dataset.extraction import (
    ExtractionSettings,
    FlatCache,
    TileSpectra,
    extract_array,
    extract_tile,
    merge_tiles,
    pad_regions,
    transmission_images,
)
from dataset.hypercube_file import read_flat, read_hypercube, read_hypercube_attrs
from dataset.process import find_tiles
from dataset.quality import BandFlag, PadFlag
from dataset.registration import METHOD
from dataset.truth_file import Defect
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest
from simulators.virtual_chip import FabricationConfig

FABRICATION = FabricationConfig(missing_fraction=0.15, defect_replica=0)


@pytest.fixture(scope="module")
def manifest() -> ChipManifest:
    config = ChipConfig(thickness_nm=178, arrays=1, rows=6, cols=6, replicas=2, companion_size=0)
    return plan_chip(generate(36, seed=3), config)


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory, manifest: ChipManifest) -> RenderedScan:
    """A0R0 in 3x3 tiles of 112 px (28 µm), 2 pads each with 14 µm overlap."""
    settings = ScanSettings(sensor_px=112, frames=1, dark_frames=1, overlap_um=14.0,
                            fabrication=FABRICATION)  # fmt: skip
    return render_scan(tmp_path_factory.mktemp("tiled") / "scan", manifest, settings, ["A0R0"])


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, manifest: ChipManifest) -> RenderedScan:
    """A0R1 in one 160 px (40 µm) tile."""
    settings = ScanSettings(sensor_px=160, frames=2, dark_frames=1, fabrication=FABRICATION)
    return render_scan(tmp_path_factory.mktemp("single") / "scan", manifest, settings, ["A0R1"])


def truth_of(scan: RenderedScan, spectra: ArraySpectra) -> NDArray[np.float64]:
    rows = scan.manifest.pads_of(spectra.array_name)
    out: NDArray[np.float64] = scan.truth.relative_transmission()[rows]
    return out


def rmse(spectra: ArraySpectra, truth: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = np.sqrt(np.mean((spectra.transmission - truth) ** 2, axis=(1, 2)))
    return out


def test_tiled_array_matches_the_truth_and_missing_pads_are_flagged(tiled: RenderedScan) -> None:
    paths = tiled.tiles["A0R0"]
    assert len(paths) == 9
    result = extract_array(paths, tiled.manifest, "A0R0", ExtractionSettings())
    spectra = result.spectra
    rows = tiled.manifest.pads_of("A0R0")
    defect = tiled.truth.defect[rows]
    missing = defect == Defect.MISSING
    assert 1 <= missing.sum() <= 12  # the scenario plants some, not all
    error = rmse(spectra, truth_of(tiled, spectra))
    good = ~missing
    print(f"tiled, per-pad RMSE quantiles 0/50/100 %: {np.quantile(error[good], [0, 0.5, 1])}")
    assert np.all(error[good] < 2e-3)
    assert np.all(spectra.flags[good] == 0)
    assert np.all(spectra.flags[missing] & PadFlag.MISSING)
    # A missing pad is bare glass: measured, not NaN (only uncovered pads are NaN).
    assert np.all(np.isfinite(spectra.transmission))
    # 3 µm eroded squares of 0.25 µm pixels: 12 x 12 give or take a row from the rotation.
    assert np.all((spectra.pixel_count >= 132) & (spectra.pixel_count <= 156))
    assert spectra.registration_method == METHOD
    assert spectra.registration_residual_px < 0.1
    assert spectra.hypercubes == tuple(p.name for p in sorted(paths))
    assert set(spectra.provenance["registration"]) == {p.name for p in paths}
    assert result.tiles == 9


def test_each_pad_comes_from_the_tile_where_it_lies_furthest_from_the_edge(
    tiled: RenderedScan,
) -> None:
    settings = ExtractionSettings()
    flats = FlatCache()
    tiles = [extract_tile(p, tiled.manifest, "A0R0", settings, flats) for p in tiled.tiles["A0R0"]]
    merged = merge_tiles(tiled.manifest, "A0R0", tiles, settings)
    rows = tiled.manifest.pads_of("A0R0")
    holders = {int(r): [t for t in tiles if r in t.pad_rows] for r in rows}
    assert max(len(h) for h in holders.values()) >= 3  # the overlap does put pads in many tiles
    for k, row in enumerate(rows):
        best = max(
            holders[int(row)],
            key=lambda t, r=row: t.edge_distance_px[np.flatnonzero(t.pad_rows == r)[0]],
        )
        i = int(np.flatnonzero(best.pad_rows == row)[0])
        np.testing.assert_array_equal(merged.transmission[k], best.transmission[i])
    # The same pad measured in two tiles agrees to the noise of one frame (~4e-4 per value):
    # registration and stitching hold together.
    copies = [
        np.array([t.transmission[np.flatnonzero(t.pad_rows == r)[0]] for t in h])
        for r, h in holders.items()
        if len(h) > 1
    ]
    differences = np.concatenate([(c[1:] - c[0]).ravel() for c in copies])
    assert np.sqrt(np.mean(differences**2)) < 1e-3


def test_merge_prefers_the_central_copy_and_marks_uncovered_pads_missing(
    tiled: RenderedScan,
) -> None:
    manifest = tiled.manifest
    settings = ExtractionSettings()
    real = extract_tile(tiled.tiles["A0R0"][0], manifest, "A0R0", settings)
    rows = manifest.pads_of("A0R0")

    def fake(value: float, edge: float, pads: NDArray[np.int64]) -> TileSpectra:
        n = pads.size
        shape = (n, *real.transmission.shape[1:])
        return TileSpectra(
            source=f"fake{value}.h5",
            pad_rows=pads,
            transmission=np.full(shape, value),
            spread=np.zeros(shape),
            pixel_count=np.full((n, 2), 100, dtype=np.int32),
            flags=np.zeros(n, dtype=np.uint16),
            edge_distance_px=np.full(n, edge),
            registration=real.registration,
            polarization=real.polarization,
            wavelength_nm=real.wavelength_nm,
            nbytes=0,
        )

    a = fake(0.3, 5.0, rows[:20])
    b = fake(0.6, 9.0, rows[10:30])
    merged = merge_tiles(manifest, "A0R0", [a, b], settings)
    t = merged.transmission[:, 0, 0]
    np.testing.assert_array_equal(t[:10], 0.3)
    np.testing.assert_array_equal(t[10:30], 0.6)  # both hold them: b is further from its edge
    assert np.all(np.isnan(merged.transmission[30:]))
    assert np.all(merged.flags[30:] == PadFlag.MISSING) and np.all(merged.flags[:30] == 0)
    assert np.all(merged.pixel_count[30:] == 0)


def test_pad_means_agree_with_the_per_pixel_images(single: RenderedScan) -> None:
    """The pad statistics (gathered and summed sparsely) equal the mean of the per-pixel
    transmission images over each pad's region, and the images follow the formula by hand."""
    path = single.tiles["A0R1"][0]
    settings = ExtractionSettings()
    tile = extract_tile(path, single.manifest, "A0R1", settings)
    rows = single.manifest.pads_of("A0R1")
    centres = np.column_stack([single.manifest.pads.x_um[rows], single.manifest.pads.y_um[rows]])
    regions = pad_regions(tile.registration.transform, centres, 6.0, settings.margin_um, (160, 160))
    images = transmission_images(path).images
    with read_hypercube(path) as cube, read_flat(path) as flat:
        for p, b in ((0, 3), (1, 17)):
            image = images[p, b].ravel()
            values = image[regions.pixels]
            for k in (0, 7, 20):
                mean = values[regions.label == k].mean()
                assert tile.transmission[k, p, b] == pytest.approx(mean, abs=1e-5)
            # By hand, for one pixel: dark-subtracted signal over flat, times exposure ratio and
            # the lamp ratio the reference camera measured.
            e, ef = float(cube.signal_exposure_s[p, b]), float(flat.flat_exposure_s[p, b])
            er, erf = (
                float(cube.signal_reference_exposure_s[p, b]),
                float(flat.flat_reference_exposure_s[p, b]),
            )
            y, x = 80, 20
            s = float(cube.signal[p, b, y, x]) - float(cube.dark.sel(dark_exposure_s=e)[y, x])
            g = float(flat.flat[p, b, y, x]) - float(flat.dark.sel(dark_exposure_s=ef)[y, x])
            r = float(cube.signal_reference[p, b]) - float(
                cube.reference_dark.sel(reference_dark_exposure_s=er)
            )
            rf = float(flat.flat_reference[p, b]) - float(
                flat.reference_dark.sel(reference_dark_exposure_s=erf)
            )
            expected = (s / e) / (g / ef) * (rf / erf) / (r / er)
            assert float(images[p, b, y, x]) == pytest.approx(expected, rel=1e-5)


def test_without_reference_the_lamp_drift_stays_in(single: RenderedScan) -> None:
    paths = single.tiles["A0R1"]
    with_ref = extract_array(paths, single.manifest, "A0R1", ExtractionSettings()).spectra
    without = extract_array(
        paths, single.manifest, "A0R1", ExtractionSettings(reference=False)
    ).spectra
    truth = truth_of(single, with_ref)
    a, b = rmse(with_ref, truth), rmse(without, truth)
    print(f"single tile, median RMSE with reference {np.median(a):.5f}, without {np.median(b):.5f}")
    assert np.median(b) > 3 * np.median(a)
    assert with_ref.reference_compensation and not without.reference_compensation


# -- flags from doctored copies of the single tile ---------------------------------------------


def doctored(single: RenderedScan, tmp_path: Path) -> Path:
    """A copy of the single tile and its flat in ``tmp_path``; returns the tile's path."""
    src = single.tiles["A0R1"][0]
    shutil.copy(src.parent / "flat.h5", tmp_path / "flat.h5")
    return Path(shutil.copy(src, tmp_path / src.name))


def region_of(
    single: RenderedScan, path: Path, k: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(rows, cols) of measured pad ``k``'s region in the tile at ``path``."""
    settings = ExtractionSettings()
    tile = extract_tile(path, single.manifest, "A0R1", settings)
    rows = single.manifest.pads_of("A0R1")
    centres = np.column_stack([single.manifest.pads.x_um[rows], single.manifest.pads.y_um[rows]])
    regions = pad_regions(tile.registration.transform, centres, 6.0, settings.margin_um, (160, 160))
    pixels = regions.pixels[regions.label == k]
    return pixels // 160, pixels % 160


def flags_of(single: RenderedScan, path: Path, **settings: object) -> NDArray[np.uint16]:
    spectra = extract_array([path], single.manifest, "A0R1", ExtractionSettings(**settings))  # type: ignore[arg-type]
    return spectra.spectra.flags


def test_untouched_tile_has_no_flags_but_its_missing_pads(
    single: RenderedScan, tmp_path: Path
) -> None:
    flags = flags_of(single, doctored(single, tmp_path))
    assert set(np.unique(flags).tolist()) <= {0, int(PadFlag.MISSING)}
    assert np.count_nonzero(flags == 0) >= 30


def test_a_streak_across_a_pad_is_non_uniform(single: RenderedScan, tmp_path: Path) -> None:
    path = doctored(single, tmp_path)
    r, c = region_of(single, path, 9)
    with h5py.File(path, "r+") as f:
        band = f["signal"][0, 5]
        # Half the pixels doubled: spread T/2, over max_spread 0.05 for any pad with T > 0.1 in
        # that band (x 1.3 needed T > 0.33, which calibrated a-Si pads at 500 nm are not).
        band[r[: r.size // 2], c[: r.size // 2]] *= 2.0
        f["signal"][0, 5] = band
    flags = flags_of(single, path)
    assert flags[9] & PadFlag.NON_UNIFORM
    assert np.count_nonzero(flags & PadFlag.NON_UNIFORM) == 1


def test_a_pixel_at_full_scale_saturates_its_pad_only(single: RenderedScan, tmp_path: Path) -> None:
    path = doctored(single, tmp_path)
    r, c = region_of(single, path, 4)
    with h5py.File(path, "r+") as f:
        band = f["signal"][1, 20]
        band[r[0], c[0]] = 4095.0  # the fixture's cameras are 12-bit
        f["signal"][1, 20] = band
    flags = flags_of(single, path)
    assert flags[4] & PadFlag.SATURATED
    assert np.count_nonzero(flags & PadFlag.SATURATED) == 1


def test_without_a_full_scale_a_saturated_band_flags_every_pad(
    single: RenderedScan, tmp_path: Path
) -> None:
    path = doctored(single, tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["config"] = "{}"  # a scan that did not record its camera's bit depth
        f["signal_band_flags"][0, 2] = int(BandFlag.SATURATED)
    assert np.all(flags_of(single, path) & PadFlag.SATURATED)


def test_a_low_signal_flat_band_flags_every_pad(single: RenderedScan, tmp_path: Path) -> None:
    path = doctored(single, tmp_path)
    with h5py.File(tmp_path / "flat.h5", "r+") as f:
        f["signal_band_flags"][1, 0] = int(BandFlag.LOW_SIGNAL)
    assert np.all(flags_of(single, path) & PadFlag.LOW_SIGNAL)


def test_a_registration_limit_below_the_residual_flags_the_tile(
    single: RenderedScan, tmp_path: Path
) -> None:
    flags = flags_of(single, doctored(single, tmp_path), max_registration_residual_px=0.0)
    assert np.all(flags & PadFlag.REGISTRATION_DOUBTFUL)


def test_an_incomplete_band_leaves_its_pads_missing(single: RenderedScan, tmp_path: Path) -> None:
    path = doctored(single, tmp_path)
    with h5py.File(path, "r+") as f:
        f["signal_completed"][1, 7] = 0  # a crash lost this band
    spectra = extract_array([path], single.manifest, "A0R1", ExtractionSettings()).spectra
    assert np.all(spectra.flags & PadFlag.MISSING)
    assert np.all(np.isnan(spectra.transmission[:, 1, 7]))
    assert np.isfinite(np.delete(spectra.transmission.reshape(len(spectra), -1), 36, axis=1)).all()


def test_bad_settings_and_inputs_are_refused(single: RenderedScan, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"margin_um=-1.0 must be a number in \[0, 1000\]"):
        ExtractionSettings(margin_um=-1.0)
    with pytest.raises(ValueError, match="registration_model='rigid'"):
        ExtractionSettings(registration_model="rigid")  # type: ignore[arg-type]
    path = doctored(single, tmp_path)
    with pytest.raises(ValueError, match="margin_um=3 leaves nothing of a 6 µm pad"):
        extract_tile(path, single.manifest, "A0R1", ExtractionSettings(margin_um=3.0))
    with pytest.raises(ValueError, match="array 'A9R9' is not on chip"):
        extract_tile(path, single.manifest, "A9R9", ExtractionSettings())
    with pytest.raises(ValueError, match="has role 'flat'; extraction reads tiles"):
        extract_tile(tmp_path / "flat.h5", single.manifest, "A0R1", ExtractionSettings())
    with h5py.File(path, "r+") as f:
        del f.attrs["centre_chip_um"]
    with pytest.raises(ValueError, match="centre_chip_um=None must be"):
        extract_tile(path, single.manifest, "A0R1", ExtractionSettings())


def test_bands_whose_dark_is_missing_are_left_out(single: RenderedScan, tmp_path: Path) -> None:
    path = doctored(single, tmp_path)
    with h5py.File(path, "r+") as f:
        exposure = float(f["signal_exposure_s"][0, 3])
        darks = f["dark_exposure_s"][()]
        k = int(np.argmin(np.abs(darks - exposure)))
        f["dark_completed"][k] = 0  # the scan stopped before this dark
        lost = np.isclose(f["signal_exposure_s"][()], darks[k])
    spectra = extract_array([path], single.manifest, "A0R1", ExtractionSettings()).spectra
    assert np.all(np.isnan(spectra.transmission[:, lost]))
    assert np.all(np.isfinite(spectra.transmission[:, ~lost]))
    assert np.all(spectra.flags & PadFlag.MISSING)


def test_a_tile_found_twice_is_refused(single: RenderedScan, tmp_path: Path) -> None:
    path = doctored(single, tmp_path)
    (tmp_path / "again").mkdir()
    shutil.copy(path, tmp_path / "again" / path.name)
    with pytest.raises(ValueError, match=r"tile \(0, 0\) of array A0R1 \(chip chip\) is in two"):
        find_tiles(tmp_path)
    assert list(find_tiles(single.folder).arrays) == ["A0R1"]  # the flat is not a tile


def test_flat_cache_shares_a_flat_and_keeps_the_most_recent(
    single: RenderedScan, tiled: RenderedScan
) -> None:
    cache = FlatCache(capacity=1)
    a_path, b_path = single.tiles["A0R1"][0], tiled.tiles["A0R0"][0]
    a_attrs, b_attrs = read_hypercube_attrs(a_path), read_hypercube_attrs(b_path)
    first = cache.get(a_path, a_attrs)
    assert cache.get(a_path, a_attrs) is first  # read once
    other = cache.get(b_path, b_attrs)
    assert other is not first and other.shape == (112, 112)
    assert cache.get(a_path, a_attrs) is not first  # evicted by the other flat, read again
    with pytest.raises(ValueError, match="capacity=0 must be >= 1"):
        FlatCache(capacity=0)
