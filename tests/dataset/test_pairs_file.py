"""The pairs file (contract 5): round trip, grouped splits, and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from dataset.pairs_file import SPLIT_NAMES, Pairs, assign_splits, read_pairs, write_pairs


def make(n: int = 12, w: int = 29, seed: int = 0, **override: Any) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ids = np.repeat(rng.integers(0, 2**62, n // 2), 2)  # every design twice (replicas)
    fields = {
        "geometry": rng.random((n, 128, 128)) < 0.3,
        "params": np.stack([rng.choice([0.3, 0.4, 0.5, 0.6], n), np.full(n, 0.178)], axis=1),
        "spectra": rng.random((n, 2, w)).astype(np.float32),
        "wavelength_nm": np.arange(450.0, 450.0 + 10 * w, 10.0),
        "design_id": ids,
        "split": assign_splits(ids, seed=seed),
        "material": "a-Si",
    }
    fields.update(override)
    return fields


def test_round_trip(tmp_path: Path) -> None:
    pairs = Pairs.build(
        **make(),
        provenance={"model": "analytic", "config": {"noise": 0.01, "periods_nm": [300, 400]}},
    )
    path = tmp_path / "pairs.h5"
    write_pairs(path, pairs, {"seed": 3})
    back = read_pairs(path)
    for name in ("geometry", "params", "spectra", "wavelength_nm", "design_id", "split"):
        a, b = getattr(pairs, name), getattr(back, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert back.provenance["model"] == "analytic" and back.provenance["seed"] == 3
    assert back.provenance["config"] == {"noise": 0.01, "periods_nm": [300, 400]}
    assert back.material == "a-Si" and "material" not in back.provenance
    with h5py.File(path) as f:
        assert f.attrs["schema"] == "metascan.pairs" and f.attrs["schema_version"] == 3
        assert f.attrs["spectra_convention"] == "relative_to_substrate"
        assert f.attrs["material"] == "a-Si"
        assert f["geometry"].compression == "gzip" and f["split"].dtype == np.uint8
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.h5"]  # no temporary left behind


def test_float64_spectra_and_moclip_names_line_up(tmp_path: Path) -> None:
    fields = make(spectra=np.random.default_rng(1).random((12, 2, 29)))
    pairs = Pairs.build(**fields)
    write_pairs(tmp_path / "p.h5", pairs)
    back = read_pairs(tmp_path / "p.h5")
    assert back.spectra.dtype == np.float64
    spectra_x, spectra_y = back.spectra[:, 0], back.spectra[:, 1]  # MOCLIP's keys
    assert spectra_x.shape == spectra_y.shape == (12, 29)


def test_splits_are_grouped_deterministic_and_sized() -> None:
    rng = np.random.default_rng(5)
    designs = rng.integers(0, 2**62, 1000)
    ids = np.repeat(designs, 3)
    codes = assign_splits(ids, (0.8, 0.1, 0.1), seed=9)
    per_design = codes.reshape(1000, 3)
    assert np.all(per_design == per_design[:, :1])  # replicas never straddle
    assert np.bincount(per_design[:, 0], minlength=3).tolist() == [800, 100, 100]
    # Order of the pairs does not matter, the seed does.
    perm = rng.permutation(ids.size)
    np.testing.assert_array_equal(assign_splits(ids[perm], (0.8, 0.1, 0.1), seed=9), codes[perm])
    assert not np.array_equal(assign_splits(ids, seed=10), codes)
    assert set(assign_splits(np.array([7, 7, 7]))) <= {0, 1, 2}
    assert SPLIT_NAMES == ("train", "val", "test")


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((0.8, 0.1), "three non-negative"),
        ((0.9, 0.2, -0.1), "non-negative"),
        ((0.5, 0.3, 0.1), "summing to 1"),
    ],
)
def test_bad_fractions(fractions: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        assign_splits(np.arange(10), fractions)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"spectra": np.full((12, 2, 29), np.nan)}, "NaN/inf"),
        ({"spectra": np.full((12, 2, 29), 1.2)}, r"in \[0, 1\], found 1.2"),
        ({"spectra": np.zeros((12, 29))}, r"spectra must be \(N=12, 2, W=29\)"),
        ({"params": np.ones((12, 3))}, r"params must be \(N=12, 2\)"),
        ({"geometry": np.zeros((12, 64, 128))}, r"geometry must be \(N=12, S, S\)"),
        ({"geometry": np.full((12, 128, 128), 2)}, "binary"),
        ({"wavelength_nm": np.arange(29.0)[::-1]}, "strictly increasing"),
        ({"split": np.zeros(12, dtype=np.uint8) + 3}, "codes 0..2"),
        ({"split": np.tile([0, 2], 6)}, "replicas of a design must share one split"),
        ({"material": "Si"}, "pairs material 'Si' is not a film material; known: a-Si, a-Si:H"),
    ],
)
def test_bad_pairs_are_one_line_value_errors(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Pairs.build(**make(**override))
    assert "\n" not in str(info.value)


def test_read_errors_and_reserved_provenance(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_pairs(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable HDF5 pairs file"):
        read_pairs(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["schema"] = "metascan.design_library"
    with pytest.raises(ValueError, match="not a pairs file"):
        read_pairs(tmp_path / "other.h5")
    with pytest.raises(ValueError, match="reserved"):
        write_pairs(tmp_path / "p.h5", Pairs.build(**make()), {"schema": "x"})
    with pytest.raises(FileNotFoundError, match="output directory"):
        write_pairs(tmp_path / "nowhere" / "p.h5", Pairs.build(**make()))


@pytest.mark.parametrize("material", ["a-Si:H", "n=3.5+0.01j"])
def test_material_round_trips(tmp_path: Path, material: str) -> None:
    write_pairs(tmp_path / "p.h5", Pairs.build(**make(material=material)))
    assert read_pairs(tmp_path / "p.h5").material == material


def test_a_file_without_its_material_is_refused_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "old.h5"
    write_pairs(path, Pairs.build(**make()))
    with h5py.File(path, "r+") as f:  # as a version-2 writer left it
        del f.attrs["material"]
        f.attrs["schema_version"] = 2
    with pytest.raises(ValueError, match="written before materials were recorded") as info:
        read_pairs(path)
    assert "\n" not in str(info.value) and "no 'material' attribute" in str(info.value)
    with pytest.raises(ValueError, match="reserved"):
        write_pairs(tmp_path / "p.h5", Pairs.build(**make()), {"material": "a-Si:H"})
