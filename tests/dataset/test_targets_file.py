"""The targets file: round trip, the one objective, and one-line refusals of bad targets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from dataset.targets_file import Targets, read_targets, weighted_mse, write_targets

GRID = np.arange(450.0, 731.0, 10.0)


def make(n: int = 3, seed: int = 0, **override: Any) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    fields: dict[str, Any] = {
        "spectra": rng.random((n, 2, GRID.size)) * 1.2,
        "wavelength_nm": GRID,
        "weight": rng.random((n, 2, GRID.size)),
        "target_id": tuple(f"t{i}" for i in range(n)),
        "provenance": {"source": "test", "rows": [1, 2, 3], "config": {"a": 0.5}},
    }
    fields.update(override)
    return fields


def test_round_trip_is_bit_equal(tmp_path: Path) -> None:
    ids = ("bandpass x 600 40 0.8", "pairs:123:4", "ünïcode")
    targets = Targets.build(**make(target_id=ids))
    path = tmp_path / "targets.h5"
    write_targets(path, targets)
    back = read_targets(path)
    for name in ("spectra", "wavelength_nm", "weight"):
        a, b = getattr(targets, name), getattr(back, name)
        assert b.dtype == np.float64, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert back.target_id == ids
    assert back.provenance == {"source": "test", "rows": [1, 2, 3], "config": {"a": 0.5}}
    with h5py.File(path) as f:
        assert f.attrs["schema"] == "metascan.targets" and f.attrs["schema_version"] == 2
        assert f.attrs["spectra_convention"] == "relative_to_substrate"
        assert f.attrs["material"] == "any"  # no film made them
        assert "software_version" in f.attrs
    assert back.material is None
    assert [p.name for p in tmp_path.iterdir()] == ["targets.h5"]  # no temporary left behind


def test_default_weight_is_ones_and_take_concatenate() -> None:
    fields = make(4)
    del fields["weight"]
    targets = Targets.build(**fields)
    assert np.all(targets.weight == 1.0) and len(targets) == 4
    part = targets.take([2, 0])
    assert part.target_id == ("t2", "t0")
    np.testing.assert_array_equal(part.spectra, targets.spectra[[2, 0]])
    assert targets.take(1).target_id == ("t1",)
    assert targets.take(np.array([False, True, True, False])).target_id == ("t1", "t2")
    joined = Targets.concatenate([targets.take(slice(0, 2)), targets.take(slice(2, 4))])
    assert joined.target_id == targets.target_id
    np.testing.assert_array_equal(joined.spectra, targets.spectra)
    assert len(joined.provenance["parts"]) == 2
    with pytest.raises(ValueError, match="'t1' appears in more than one part"):
        Targets.concatenate([targets, targets.take([1])])
    other = Targets.build(**make(1, wavelength_nm=GRID + 1.0, target_id=("z",)))
    with pytest.raises(ValueError, match="another wavelength grid"):
        Targets.concatenate([targets, other])
    with pytest.raises(ValueError, match="no targets to concatenate"):
        Targets.concatenate([])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"spectra": np.full((3, 2, 29), np.nan)}, "spectra hold 174 NaN/inf values"),
        ({"spectra": np.full((3, 2, 29), 1.6)}, r"in \[0, 1.5\], found 1.6..1.6"),
        ({"spectra": np.full((3, 2, 29), -0.1)}, r"in \[0, 1.5\]"),
        ({"spectra": np.ones((3, 2, 28))}, r"spectra must be \(N=3, 2, W=29\)"),
        ({"weight": np.ones((3, 1, 29))}, r"weight must be \(N=3, 2, W=29\)"),
        ({"weight": np.full((3, 2, 29), -1.0)}, "weight must be >= 0, found -1"),
        ({"weight": np.full((3, 2, 29), np.inf)}, "weight holds 174 NaN/inf"),
        ({"target_id": ("a", "b", "a")}, "target_id 'a' is given more than once"),
        ({"target_id": ("a", " ", "c")}, "target_id at index 1 is empty"),
        ({"target_id": ("a", "b")}, r"spectra must be \(N=2"),
        ({"wavelength_nm": GRID[::-1].copy()}, "strictly increasing"),
        ({"wavelength_nm": GRID - 500.0}, "positive"),
    ],
)
def test_bad_targets_are_refused(override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Targets.build(**make(**override))
    with pytest.raises(ValueError, match="targets are empty"):
        Targets.build(**make(0))


def test_zero_total_weight_names_the_target() -> None:
    weight = np.ones((3, 2, 29))
    weight[1] = 0.0
    with pytest.raises(ValueError, match="target 't1' has zero total weight"):
        Targets.build(**make(weight=weight))


def test_weighted_mse_by_hand() -> None:
    s = np.array([[[0.0, 1.0], [0.5, 0.5]], [[1.0, 1.0], [1.0, 1.0]]])  # (2, 2, 2)
    t = np.array([[0.0, 0.0], [1.0, 1.0]])  # one target, broadcast
    w = np.array([[1.0, 3.0], [0.0, 2.0]])  # the y band at 0 does not count
    # row 0: (1*0 + 3*1 + 0*0.25 + 2*0.25) / 6 = 3.5 / 6; row 1: (1 + 3 + 0 + 0) / 6
    np.testing.assert_allclose(weighted_mse(s, t, w), [3.5 / 6, 4.0 / 6], rtol=0, atol=1e-15)
    assert weighted_mse(t, t, w).tolist() == [0.0]
    with pytest.raises(ValueError, match="row 0 has zero total weight"):
        weighted_mse(s, t, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="do not broadcast"):
        weighted_mse(s, np.ones((2, 3)), w)
    with pytest.raises(ValueError, match=r"broadcast to \(M, 2, W\)"):
        weighted_mse(np.ones((2, 3, 4)), np.ones((3, 4)), np.ones((3, 4)))


def _rewrite(path: Path, **attrs: Any) -> None:
    with h5py.File(path, "r+") as f:
        for key, value in attrs.items():
            f.attrs[key] = value


def test_reader_refuses_other_schema_convention_and_bad_content(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    write_targets(path, Targets.build(**make()))
    _rewrite(path, schema="metascan.pairs")
    with pytest.raises(ValueError, match="not a targets file"):
        read_targets(path)
    write_targets(path, Targets.build(**make()))
    _rewrite(path, spectra_convention="absolute_into_substrate")
    with pytest.raises(ValueError, match=r"'relative_to_substrate'.*is needed"):
        read_targets(path)
    write_targets(path, Targets.build(**make()))
    with h5py.File(path, "r+") as f:
        del f.attrs["spectra_convention"]
    with pytest.raises(ValueError, match="does not say which spectra convention"):
        read_targets(path)
    write_targets(path, Targets.build(**make()))
    with h5py.File(path, "r+") as f:
        f["weight"][0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"t.h5: weight holds 1 NaN/inf"):
        read_targets(path)
    write_targets(path, Targets.build(**make()))
    with h5py.File(path, "r+") as f:
        del f["target_id"]
    with pytest.raises(ValueError, match=r"lacks the dataset.*target_id"):
        read_targets(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_targets(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_targets(tmp_path / "text.h5")


def test_reserved_provenance_is_refused(tmp_path: Path) -> None:
    targets = Targets.build(**make(provenance={"schema": "mine"}))
    with pytest.raises(ValueError, match="reserved by the targets format"):
        write_targets(tmp_path / "t.h5", targets)
    assert not list(tmp_path.iterdir())


def test_nearest_weighted_mse_is_the_brute_force_minimum() -> None:
    from dataset.targets_file import mse_quantiles, nearest_weighted_mse

    rng = np.random.default_rng(5)
    candidates = rng.uniform(0, 1, (300, 2, 7))
    targets = rng.uniform(0, 1, (70, 2, 7))
    weight = rng.uniform(0, 1, (70, 2, 7))
    weight[::3, 1] = 0.0  # some targets care about x only
    brute = np.array(
        [weighted_mse(candidates, targets[i], weight[i]).min() for i in range(len(targets))]
    )
    assert np.allclose(
        nearest_weighted_mse(candidates, targets, weight, chunk=16), brute, atol=1e-12
    )
    q = mse_quantiles(brute)
    assert q["q25"] <= q["q50"] <= q["q75"] <= q["q95"] and q["mean"] == pytest.approx(brute.mean())


def test_the_material_round_trips_and_one_film_per_file(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    of_film = Targets.build(**make(), material="a-Si:H")
    write_targets(path, of_film)
    assert read_targets(path).material == "a-Si:H"
    # Targets of no film join targets of one; two films do not.
    anywhere = Targets.build(**make(target_id=("f0", "f1", "f2")))
    assert Targets.concatenate([of_film, anywhere]).material == "a-Si:H"
    assert Targets.concatenate([anywhere]).material is None
    other = Targets.build(**make(target_id=("o0", "o1", "o2")), material="a-Si")
    with pytest.raises(ValueError, match=r"targets part 2 \(material 'a-Si'\) and targets part 0"):
        Targets.concatenate([of_film, anywhere, other])
    assert of_film.take([1]).material == "a-Si:H"
    of_film.check_material("a-Si:H", "model m")
    anywhere.check_material("a-Si", "model m")  # a filter suits every film
    with pytest.raises(ValueError, match=r"the targets \(material 'a-Si:H'\) and model m"):
        of_film.check_material("a-Si", "model m")
    with pytest.raises(ValueError, match="'gold' is not a film material"):
        Targets.build(**make(), material="gold")


def test_targets_written_before_materials_were_recorded_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.h5"
    write_targets(path, Targets.build(**make()))
    with h5py.File(path, "r+") as f:  # as a version-1 writer left it
        del f.attrs["material"]
        f.attrs["schema_version"] = 1
    with pytest.raises(ValueError, match="written before materials were recorded") as info:
        read_targets(path)
    assert "metascan design targets" in str(info.value)
