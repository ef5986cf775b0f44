"""The truth file: round trip, provenance, and refusal of malformed contents."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from dataset.truth_file import (
    SCHEMA_VERSION,
    Defect,
    Truth,
    design_truth,
    read_truth,
    write_truth,
)
from layout.manifest import Role


def make(n: int = 5, bands: int = 29) -> Truth:
    rng = np.random.default_rng(0)
    return Truth(
        array_id=np.zeros(n, dtype=np.int32),
        replica=np.arange(n, dtype=np.int32) % 2,
        row=np.arange(n, dtype=np.int32),
        col=np.arange(n, dtype=np.int32),
        role=np.array([Role.DATASET] * (n - 1) + [Role.FIDUCIAL], dtype=np.int8),
        design_id=np.array([*range(100, 100 + n - 1), -1], dtype=np.int64),
        size_bias_nm=rng.normal(4, 10, n),
        defect=np.array([Defect.NONE, Defect.MISSING] + [Defect.NONE] * (n - 2), dtype=np.int8),
        transmission=rng.uniform(0, 0.9, (n, 2, bands)),
        band_center_nm=np.arange(450.0, 450.0 + 10 * bands, 10.0),
        glass_transmission=np.full(bands, 0.965),
        bandwidth_mode="narrow",
        provenance={
            "chip_id": "c1",
            "material": "a-Si",
            "fabrication": {"seed": 3, "mean_bias_nm": 4.0},
        },
    )


def test_round_trip(tmp_path: Path) -> None:
    truth = make()
    path = tmp_path / "truth.h5"
    write_truth(path, truth, provenance={"manifest": "chip.h5"})
    back = read_truth(path)
    for name in ("array_id", "replica", "row", "col", "role", "design_id", "size_bias_nm",
                 "defect", "transmission", "band_center_nm", "glass_transmission"):  # fmt: skip
        np.testing.assert_array_equal(getattr(back, name), getattr(truth, name))
        assert getattr(back, name).dtype == getattr(truth, name).dtype
    assert back.bandwidth_mode == "narrow"
    assert back.provenance["chip_id"] == "c1"
    assert back.provenance["fabrication"] == {"seed": 3, "mean_bias_nm": 4.0}
    assert back.provenance["manifest"] == "chip.h5"
    assert back.material == "a-Si"
    with h5py.File(path) as f:
        assert f.attrs["software_version"] and f.attrs["schema"] == "metascan.truth"
    np.testing.assert_allclose(back.relative_transmission(), truth.transmission / 0.965)
    assert not list(tmp_path.glob(".*.part"))  # the atomic write left nothing behind


def test_bad_contents_are_refused() -> None:
    truth = make()
    with pytest.raises(ValueError, match=r"transmission must be \(N=5, 2, B=29\)"):
        replace(truth, transmission=truth.transmission[:, :, :3])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        replace(truth, transmission=truth.transmission + 1)
    with pytest.raises(ValueError, match="defect codes"):
        replace(truth, defect=np.full(5, 7, dtype=np.int8))
    with pytest.raises(ValueError, match="size_bias_nm must be"):
        replace(truth, size_bias_nm=truth.size_bias_nm.astype(np.float32))
    with pytest.raises(ValueError, match="reserved"):
        write_truth(Path("unused.h5"), truth, provenance={"schema": "x"})


def test_reader_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_truth(tmp_path / "none.h5")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["schema"] = "metascan.pairs"
    with pytest.raises(ValueError, match="not a truth file"):
        read_truth(other)
    newer = tmp_path / "newer.h5"
    write_truth(newer, make())
    with h5py.File(newer, "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ValueError, match="newer than supported"):
        read_truth(newer)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_truth(text)


def test_a_designs_truth_is_the_mean_of_its_defect_free_pads() -> None:
    base = make(6)
    truth = replace(
        base,
        design_id=np.array([100, 100, 101, 101, 102, -1], dtype=np.int64),
        defect=np.array([Defect.NONE] * 3 + [Defect.MISSING] + [Defect.NONE] * 2, dtype=np.int8),
    )
    rel = truth.relative_transmission()
    got = design_truth(truth, np.array([102, 100, 101, 100]))
    np.testing.assert_allclose(got[0], rel[4])
    np.testing.assert_allclose(got[1], (rel[0] + rel[1]) / 2)
    np.testing.assert_allclose(got[2], rel[2])  # the missing replica does not count
    np.testing.assert_array_equal(got[3], got[1])
    with pytest.raises(ValueError, match=r"design 103 has no defect-free pad in the truth"):
        design_truth(truth, np.array([100, 103]))


def test_a_truth_without_its_material_is_refused(tmp_path: Path) -> None:
    truth = make()
    path = tmp_path / "truth.h5"
    write_truth(path, replace(truth, provenance={"chip_id": "c1"}))
    with pytest.raises(ValueError, match="does not record its film material") as info:
        read_truth(path)
    assert "metascan sim truth" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="'Si' is not a film material"):
        replace(truth, provenance={"material": "Si"}).material  # noqa: B018
