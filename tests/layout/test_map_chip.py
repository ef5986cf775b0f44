"""A chip that prints a map: every replica is the whole map, each pad records its target, the
manifest round-trips it, and its identity depends on it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from layout.chip import ChipConfig, plan_map_chip
from layout.design import DesignLibrary
from layout.gds_writer import write_chip
from layout.manifest import Role, read_manifest


def _map(library: DesignLibrary) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    six = np.flatnonzero(np.isin(library.period_nm, (300, 400, 500, 600)))[:2]
    ids = library.design_id[six]
    target = np.array([[0, 0, 1], [1, -1, 2]], np.int32)  # target 2 shares design 1
    design = np.where(target >= 0, np.array([ids[0], ids[1], ids[1]])[np.maximum(target, 0)], -1)
    return design.astype(np.int64), target, ("red", "blue", "blue too")


def test_every_replica_prints_the_whole_map(library: DesignLibrary, tmp_path: Path) -> None:
    design, target, names = _map(library)
    cfg = ChipConfig(thickness_nm=178, replicas=2, companion_size=0, chip_id="map")
    m = plan_map_chip(design, target, names, library, cfg)
    assert m.arrays.name == ["A0R0", "A0R1"] and len(m.designs) == 2
    assert m.pad_target is not None and m.target_ids == names
    for rep in (0, 1):
        pads = np.flatnonzero((m.pads.replica == rep) & (m.pads.role == Role.DATASET))
        assert pads.size == 5  # the empty cell gets no pad
        r, c = m.pads.row[pads], m.pads.col[pads]
        np.testing.assert_array_equal(m.pad_target[pads], target[r, c])
        np.testing.assert_array_equal(m.pads.design_id[pads], design[r, c])
    fiducials = m.pads.role == Role.FIDUCIAL
    assert fiducials.sum() == 8 and (m.pad_target[fiducials] == -1).all()
    gds, h5 = tmp_path / "map.gds", tmp_path / "map.h5"
    write_chip(m, cfg, gds, h5)
    back = read_manifest(h5)
    assert back.target_ids == names
    assert back.pad_target is not None
    np.testing.assert_array_equal(back.pad_target, m.pad_target)
    assert (
        back.content_sha256()
        != replace(back, pad_target=np.roll(back.pad_target, 1)).content_sha256()
    )


def test_maps_that_cannot_be_placed_are_refused(library: DesignLibrary) -> None:
    design, target, names = _map(library)
    cfg = ChipConfig(thickness_nm=178, companion_size=0)
    with pytest.raises(ValueError, match="places no pad"):
        plan_map_chip(np.full_like(design, -1), target, names, library, cfg)
    with pytest.raises(ValueError, match="one 2-D shape"):
        plan_map_chip(design, target[:1], names, library, cfg)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        plan_map_chip(design, target, names[:2], library, cfg)
    with pytest.raises(ValueError, match="not a whole number"):
        plan_map_chip(design, target, names, library, replace(cfg, pad_size_um=5.5))
    m = plan_map_chip(design, target, names, library, cfg)
    assert m.pad_target is not None
    with pytest.raises(ValueError, match="names target 7"):
        replace(m, pad_target=np.full_like(m.pad_target, 7))
