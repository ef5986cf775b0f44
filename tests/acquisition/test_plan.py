"""The scan plan: tiling, message order, exposures flowing from AutoExpose, one band per key."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest

from acquisition.messages import (
    Acquire,
    AcquireDark,
    Answer,
    AutoExpose,
    CheckDark,
    Checkpoint,
    CloseTile,
    DarkDrift,
    Exposures,
    Message,
    Move,
    OpenFlat,
    OpenTile,
    Rotate,
    SetExposure,
    SetMode,
    SetWavelength,
)
from acquisition.plan import scan_plan
from acquisition.scan_config import ScanConfig, scan_config
from acquisition.tiling import tiles_for_array
from instruments.protocols import BandwidthMode
from layout.affine import Affine2D
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest

SHIFT = Affine2D.from_similarity(1.0, 0.2, (100.0, -50.0))


@pytest.fixture(scope="module")
def manifest() -> ChipManifest:
    """A0R0/A0R1 are 10x10 pads of 6 µm (60 µm), A0C is 3x3."""
    config = ChipConfig(thickness_nm=178, arrays=1, rows=10, cols=10, replicas=2, companion_size=3)
    return plan_chip(generate(100, seed=3), config)


def small_config(**scan: object) -> ScanConfig:
    """A 40 x 30 µm field, three bands, x and y."""
    raw = {
        "optics": {"um_per_px": 1.0, "width_px": 40, "height_px": 30},
        "scan": {"bands_nm": [450.0, 550.0, 650.0], "frames": 2, "reference_frames": 3, **scan},
        "exposure": {"min_s": 1e-3, "max_s": 1.0},
    }
    return scan_config(raw, "test.toml")  # type: ignore[arg-type]


def exposure_for(pol: str, wl: float) -> float:
    """A different auto-exposure answer per band, two bands sharing one ladder value."""
    return {450.0: 0.2, 550.0: 0.02, 650.0: 0.0201}[wl] * (2.0 if pol == "y" else 1.0)


def reference_for(pol: str, wl: float) -> float:
    """The reference camera sees the lamp, not the sample: one answer per wavelength."""
    return {450.0: 0.05, 550.0: 0.005, 650.0: 0.004}[wl]


def run(
    manifest: ChipManifest,
    config: ScanConfig,
    arrays: list[str] | None,
    drifted: Callable[[CheckDark], bool] = lambda m: False,
    brightness: Callable[[str | None], float] = lambda array: 1.0,
) -> list[Message]:
    plan = scan_plan(manifest, config, SHIFT, arrays, flat_chip_um=(-200.0, -200.0), settle_s=0.07)
    messages: list[Message] = []
    answer: Answer = None
    try:
        while True:
            message = plan.send(answer)
            messages.append(message)
            answer = None
            if isinstance(message, AutoExpose):
                answer = Exposures(
                    exposure_for(message.polarization, message.wavelength_nm)
                    / brightness(message.array),
                    reference_for(message.polarization, message.wavelength_nm),
                )
            elif isinstance(message, CheckDark):
                answer = DarkDrift(0.5, True) if drifted(message) else DarkDrift(0.0, False)
    except StopIteration:
        return messages


def test_an_array_that_fits_is_one_centred_tile(manifest: ChipManifest) -> None:
    tiles = tiles_for_array(manifest, "A0C", (40.0, 30.0), 5.0)
    assert len(tiles) == 1
    k = manifest.arrays.name.index("A0C")
    a = manifest.arrays
    width = 3 * manifest.pad_pitch_um - (manifest.pad_pitch_um - manifest.pad_size_um)
    assert np.allclose(
        tiles[0].centre_um, (a.origin_x_um[k] + width / 2, a.origin_y_um[k] + width / 2)
    )
    assert len(tiles[0].pads) == 9


def test_a_large_array_is_a_grid_covering_every_pad(manifest: ChipManifest) -> None:
    fov, overlap = (40.0, 30.0), 5.0
    tiles = tiles_for_array(manifest, "A0R1", fov, overlap)
    rows = {t.row for t in tiles}
    cols = {t.col for t in tiles}
    # 60 µm of pads: 5 pads (30 µm) per 40 µm field in x, 4 per 30 µm field in y.
    assert len(cols) == 2 and len(rows) == 3 and len(tiles) == 6
    k = manifest.arrays.name.index("A0R1")
    p = manifest.pads
    mine = set(
        np.flatnonzero(
            (p.array_id == manifest.arrays.array_id[k])
            & (p.replica == manifest.arrays.replica[k])
            & (p.row >= 0)
        ).tolist()
    )
    covered = set().union(*(t.pads for t in tiles))
    assert covered == mine
    half = manifest.pad_size_um / 2
    for t in tiles:
        for i in t.pads:
            assert abs(p.x_um[i] - t.centre_um[0]) + half <= fov[0] / 2 + 1e-9
            assert abs(p.y_um[i] - t.centre_um[1]) + half <= fov[1] / 2 + 1e-9
    by_index = {t.index: t for t in tiles}
    step_x = by_index[0, 1].centre_um[0] - by_index[0, 0].centre_um[0]
    step_y = by_index[1, 0].centre_um[1] - by_index[0, 0].centre_um[1]
    assert fov[0] - step_x >= overlap and fov[1] - step_y >= overlap
    with pytest.raises(ValueError, match="cannot hold one"):
        tiles_for_array(manifest, "A0R1", (8.0, 8.0), 5.0)
    with pytest.raises(ValueError, match="arrays are A0R0, A0R1, A0C"):
        tiles_for_array(manifest, "A9R0", fov, overlap)


def test_message_order_and_exposures(manifest: ChipManifest) -> None:
    config = small_config(darks="per_tile")
    messages = run(manifest, config, ["A0R1", "A0C"])
    kinds = [type(m).__name__ for m in messages]
    assert kinds[:3] == ["Move", "SetMode", "Rotate"]
    assert messages[0] == Move(*SHIFT.apply((-200.0, -200.0)))
    ladder = config.exposure
    expected = {
        (pol, wl): Exposures(
            ladder.quantise(exposure_for(pol, wl)), ladder.quantise(reference_for(pol, wl))
        )
        for pol in "xy"
        for wl in (450.0, 550.0, 650.0)
    }
    # Every band auto-exposed on glass before the flat's file opens with those exposures.
    opened = kinds.index("OpenFlat")
    sweep = [m for m in messages[:opened] if isinstance(m, AutoExpose)]
    assert [(m.polarization, m.wavelength_nm) for m in sweep] == list(expected)
    assert "Acquire" not in kinds[:opened]
    flat_open = messages[opened]
    assert isinstance(flat_open, OpenFlat) and flat_open.array is None
    assert {(pol, wl): e for pol, wl, e in flat_open.exposures} == expected
    flat = [m for m in messages if isinstance(m, Acquire) and m.section == "flat"]
    assert len(flat) == 2 * 3 and all(m.array is None and m.tile is None for m in flat)
    # Darks in BLACK for each camera at each distinct exposure: after the flat, and in each tile.
    sample = sorted({e.sample_s for e in expected.values()})
    reference = sorted({e.reference_s for e in expected.values()})
    assert len(sample) == 4  # 550 and 650 nm share a ladder value
    first_tile = kinds.index("OpenTile")
    flat_darks = [m for m in messages[:first_tile] if isinstance(m, AcquireDark)]
    assert [(d.camera, d.exposure_s) for d in flat_darks] == [
        *(("sample", e) for e in sample),
        *(("reference", e) for e in reference),
    ]
    assert all(d.tile is None for d in flat_darks)
    black = kinds.index("AcquireDark") - 1
    assert messages[black] == SetMode(BandwidthMode.BLACK)
    tile_darks = [m for m in messages[first_tile:] if isinstance(m, AcquireDark)]
    assert len(tile_darks) == 7 * len(flat_darks)  # every tile takes its own
    # Every tile band runs at its flat's exposures, retuned and settled first, checkpointed after.
    tiles = 0
    current = {}
    for i, m in enumerate(messages):
        if isinstance(m, Rotate):
            current["pol"] = "x" if m.angle_deg == 0.0 else "y"
        if isinstance(m, OpenTile):
            tiles += 1
            assert messages[i + 1] == Move(*SHIFT.apply(m.centre_chip_um))
            assert messages[i + 2] == SetMode(BandwidthMode.BLACK)
        if isinstance(m, Acquire):
            assert m.polarization == current["pol"]
            e = expected[m.polarization, m.wavelength_nm]
            assert messages[i - 1] == SetExposure(e.sample_s, e.reference_s)
            assert messages[i - 2] == SetWavelength(m.wavelength_nm, 0.07)
            assert isinstance(messages[i + 1], Checkpoint)
            assert (m.frames, m.reference_frames) == (2, 3)
    assert tiles == 6 + 1
    assert kinds.count("CloseTile") == tiles and isinstance(messages[-1], CloseTile)
    assert kinds.count("Checkpoint") == kinds.count("Acquire") + kinds.count("AcquireDark")


def test_every_band_of_every_tile_appears_once(manifest: ChipManifest) -> None:
    config = small_config()
    messages = run(manifest, config, None)
    keys = Counter(
        (m.array, m.tile, m.polarization, m.wavelength_nm)
        for m in messages
        if isinstance(m, Acquire) and m.section == "signal"
    )
    assert set(keys.values()) == {1}
    expected = {
        (name, t.index, pol, wl)
        for name in manifest.arrays.name
        for t in tiles_for_array(manifest, name, config.optics.fov_um, config.scan.overlap_um)
        for pol in ("x", "y")
        for wl in config.scan.wavelengths_nm
    }
    assert set(keys) == expected
    labels = [m.label for m in messages if isinstance(m, Checkpoint)]
    assert len(labels) == len(set(labels))  # a checkpoint names exactly one step


def test_flat_per_array_and_unanswered_autoexpose(manifest: ChipManifest) -> None:
    messages = run(manifest, small_config(flat_per_array=True), ["A0R0", "A0C"])
    flats = [m for m in messages if isinstance(m, OpenFlat)]
    assert [f.array for f in flats] == ["A0R0", "A0C"]
    darks = {m.array for m in messages if isinstance(m, AcquireDark)}
    assert darks == {"A0R0", "A0C"}
    plan = scan_plan(manifest, small_config(), SHIFT, None, flat_chip_um=(0.0, 0.0), settle_s=0.0)
    message = next(plan)
    while not isinstance(message, AutoExpose):
        message = next(plan)
    with pytest.raises(ValueError, match="not answered"):
        next(plan)


def _dark_owners(messages: list[Message]) -> tuple[dict[object, object], set[object]]:
    """(file -> the file its darks come from, for files that reuse them; files that take their
    own darks)."""
    reuse: dict[object, object] = {}
    for m in messages:
        if isinstance(m, OpenTile | OpenFlat) and m.darks_from is not None:
            reuse[m.array, getattr(m, "tile", None)] = m.darks_from
    own = {(m.array, m.tile) for m in messages if isinstance(m, AcquireDark)}
    return reuse, own


def test_per_array_darks_are_taken_by_each_arrays_first_tile(manifest: ChipManifest) -> None:
    config = small_config()  # the default policy
    assert config.scan.darks == "per_array"
    messages = run(manifest, config, ["A0R1", "A0C"])
    tiles = [m for m in messages if isinstance(m, OpenTile)]
    first = {a: next(t.tile for t in tiles if t.array == a) for a in ("A0R1", "A0C")}
    reuse, own = _dark_owners(messages)
    assert own == {(None, None), ("A0R1", first["A0R1"]), ("A0C", first["A0C"])}
    assert reuse == {
        ("A0R1", t.tile): ("A0R1", first["A0R1"])
        for t in tiles
        if t.array == "A0R1" and t.tile != first["A0R1"]
    }
    assert len(reuse) == 5
    assert not any(isinstance(m, CheckDark) for m in messages)
    # A reusing tile goes straight from its move to its first band.
    for i, m in enumerate(messages):
        if isinstance(m, OpenTile) and m.darks_from is not None:
            assert isinstance(messages[i + 1], Move) and isinstance(messages[i + 2], Rotate)


def test_per_scan_darks_check_for_drift_at_each_array(manifest: ChipManifest) -> None:
    config = small_config(darks="per_scan", dark_drift_fraction=0.02, dark_check_frames=3)
    messages = run(manifest, config, ["A0R1", "A0C"])
    checks = [m for m in messages if isinstance(m, CheckDark)]
    assert [(c.array, c.source) for c in checks] == [("A0R1", (None, None)), ("A0C", (None, None))]
    flat = next(m for m in messages if isinstance(m, OpenFlat))
    assert all(c.exposure_s == max(flat.grid.dark_exposures_s) for c in checks)
    assert all((c.frames, c.max_fraction, c.camera) == (3, 0.02, "sample") for c in checks)
    # The check runs in BLACK on the tile's position, before the tile's file opens.
    for c in checks:
        i = messages.index(c)
        assert messages[i - 1] == SetMode(BandwidthMode.BLACK)
        assert isinstance(messages[i - 2], Move) and isinstance(messages[i + 2], OpenTile)
    reuse, own = _dark_owners(messages)
    assert own == {(None, None)}  # no drift: the flat's darks serve the scan
    assert set(reuse.values()) == {(None, None)} and len(reuse) == 7
    # Drift at A0C: its first tile takes fresh darks (and would be the source after it).
    drifting = run(manifest, config, ["A0R1", "A0C"], drifted=lambda m: m.array == "A0C")
    reuse, own = _dark_owners(drifting)
    assert own == {(None, None), ("A0C", (0, 0))}
    assert all(source == (None, None) for source in reuse.values()) and len(reuse) == 6


def test_darks_are_reused_only_at_the_same_exposures(manifest: ChipManifest) -> None:
    """Per-array flats auto-expose again; a file laid out at other exposures takes its own."""
    config = small_config(darks="per_scan", flat_per_array=True)
    messages = run(manifest, config, ["A0R0", "A0C"])
    flats = [m for m in messages if isinstance(m, OpenFlat)]
    assert flats[0].grid == flats[1].grid  # same answers: the second flat may reuse, checked
    checks = [m for m in messages if isinstance(m, CheckDark)]
    assert [c.array for c in checks] == ["A0C"]
    assert messages.index(checks[0]) + 2 == messages.index(flats[1])
    reuse, own = _dark_owners(messages)
    assert own == {("A0R0", None)} and set(reuse.values()) == {("A0R0", None)}
    # A0C's glass needs half the exposure: its flat is laid out at other exposures.
    darker = run(manifest, config, ["A0R0", "A0C"], brightness=lambda a: 2.0 if a == "A0C" else 1)
    flats = [m for m in darker if isinstance(m, OpenFlat)]
    assert flats[0].grid != flats[1].grid
    assert not any(isinstance(m, CheckDark) for m in darker)
    reuse, own = _dark_owners(darker)
    assert own == {("A0R0", None), ("A0C", None)}
    assert reuse == {(a, t): (a, None) for a, t in reuse} and len(reuse) == 6 + 1
