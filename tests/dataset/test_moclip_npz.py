"""The MOCLIP ``.npz`` layout: round trip, content-hashed design ids, one-line errors, no pickle."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataset.moclip_npz import KEYS, content_design_ids, read_moclip_npz, write_moclip_npz
from dataset.pairs_file import read_pairs, write_pairs
from dataset.pairs_io import load_pairs
from simulators.synthetic_pairs import SyntheticPairsConfig, make_pairs


def arrays(n: int = 8, w: int = 29, size: int = 32, seed: int = 0) -> dict[str, Any]:
    """A valid MOCLIP-layout content, every row a different design."""
    rng = np.random.default_rng(seed)
    return {
        "wvl": np.linspace(450.0, 730.0, w),
        "geom": (rng.random((n, size, size)) < 0.3).astype(np.uint8),
        "params": np.stack([rng.choice([0.3, 0.4, 0.5, 0.6], n), np.full(n, 0.178)], axis=1),
        "spectra_x": rng.random((n, w)).astype(np.float32),
        "spectra_y": rng.random((n, w)).astype(np.float32),
    }


def save(folder: Path, content: dict[str, Any], name: str = "m.npz") -> Path:
    path = folder / name
    np.savez(path, **content)
    return path


def test_round_trip_keeps_geometry_params_spectra_and_wavelengths(tmp_path: Path) -> None:
    # 10 designs, each measured twice with independent noise: replicas differ only in spectra.
    pairs = make_pairs(SyntheticPairsConfig(count=10, replicas=2, noise=0.01))
    path = tmp_path / "pairs.npz"
    write_moclip_npz(path, pairs)
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.npz"]  # no temporary left behind
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(KEYS)
        assert z["geom"].dtype == np.uint8 and z["params"].dtype == np.float64
        assert z["spectra_x"].dtype == z["spectra_y"].dtype == np.float32
        assert z["geom"].shape == (20, 128, 128) and z["spectra_x"].shape == (20, 29)
        np.testing.assert_array_equal(z["spectra_y"], pairs.spectra[:, 1])
    back = read_moclip_npz(path)
    np.testing.assert_array_equal(back.geometry, pairs.geometry)
    np.testing.assert_array_equal(back.params, pairs.params)
    np.testing.assert_array_equal(back.wavelength_nm, pairs.wavelength_nm)
    np.testing.assert_allclose(back.spectra, pairs.spectra, rtol=0, atol=1e-7)
    # The hashed ids group rows exactly as the layout's ids did.
    _, by_hash = np.unique(back.design_id, return_inverse=True)
    _, by_layout = np.unique(pairs.design_id, return_inverse=True)
    first: dict[int, int] = {}
    for h, lay in zip(by_hash.tolist(), by_layout.tolist(), strict=True):
        assert first.setdefault(h, lay) == lay
    assert np.unique(back.design_id).size == 10


def test_float64_spectra_and_any_file_name(tmp_path: Path) -> None:
    pairs = make_pairs(SyntheticPairsConfig(count=4))
    pairs64 = type(pairs).build(
        pairs.geometry,
        pairs.params,
        pairs.spectra.astype(np.float64) * 0.5,
        pairs.wavelength_nm,
        pairs.design_id,
        pairs.split,
        material=pairs.material,
    )
    path = tmp_path / "export.bin"  # numpy would append ".npz"; the writer must not
    write_moclip_npz(path, pairs64)
    assert [p.name for p in tmp_path.iterdir()] == ["export.bin"]
    back = load_pairs(path)  # recognized by content, not suffix
    assert back.provenance["source"] == "moclip_npz"
    np.testing.assert_allclose(back.spectra, pairs64.spectra, rtol=1e-6, atol=0)


def test_duplicates_share_an_id_and_a_split(tmp_path: Path) -> None:
    base = arrays(n=40, seed=1)
    rows = np.r_[np.arange(40), np.arange(0, 40, 2)]  # every other design measured twice
    content = {k: v if k == "wvl" else v[rows] for k, v in base.items()}
    content["spectra_x"] = np.clip(content["spectra_x"] + 0.01, 0, 1)  # replicas' spectra differ
    pairs = read_moclip_npz(save(tmp_path, content))
    assert np.unique(pairs.design_id).size == 40
    np.testing.assert_array_equal(pairs.design_id[40:], pairs.design_id[0:40:2])
    np.testing.assert_array_equal(pairs.split[40:], pairs.split[0:40:2])
    assert set(np.unique(pairs.split).tolist()) == {0, 1, 2}


def test_ids_depend_on_the_row_alone() -> None:
    a = arrays(n=6, seed=2)
    geom, params = a["geom"].astype(bool), a["params"]
    ids = content_design_ids(geom, params)
    assert np.all(ids >= 0) and np.unique(ids).size == 6
    perm = np.array([5, 3, 1, 0, 2, 4])
    np.testing.assert_array_equal(content_design_ids(geom[perm], params[perm]), ids[perm])
    np.testing.assert_array_equal(content_design_ids(geom[2:3], params[2:3]), ids[2:3])
    flipped = geom.copy()
    flipped[0, 3, 4] ^= True
    thicker = params.copy()
    thicker[1, 1] = 0.195
    changed = content_design_ids(flipped, thicker)
    assert changed[0] != ids[0] and changed[1] != ids[1]
    np.testing.assert_array_equal(changed[2:], ids[2:])
    # The documented rule, computed independently for one row.
    h = hashlib.blake2b(np.asarray([32, 32], "<i8").tobytes(), digest_size=8)
    h.update(np.packbits(geom[0].ravel()).tobytes())
    h.update(params[0].astype("<f8").tobytes())
    assert ids[0] == int.from_bytes(h.digest(), "little") & (2**63 - 1)


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_, np.float32, np.float64, np.int64])
def test_geometry_dtypes_read_alike(tmp_path: Path, dtype: Any) -> None:
    content = arrays(seed=3)
    reference = read_moclip_npz(save(tmp_path, content, "ref.npz"))
    content["geom"] = content["geom"].astype(dtype)
    pairs = read_moclip_npz(save(tmp_path, content))
    np.testing.assert_array_equal(pairs.geometry, reference.geometry)
    np.testing.assert_array_equal(pairs.design_id, reference.design_id)


def test_provenance_and_split_seed(tmp_path: Path) -> None:
    path = save(tmp_path, arrays(n=60, seed=4))
    a = read_moclip_npz(path, split_seed=0)
    b = read_moclip_npz(path, split_seed=1)
    assert a.provenance["source"] == "moclip_npz" and a.provenance["source_file"] == "m.npz"
    assert a.provenance["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert a.provenance["split_seed"] == 0 and b.provenance["split_seed"] == 1
    np.testing.assert_array_equal(a.design_id, b.design_id)
    assert not np.array_equal(a.split, b.split)
    np.testing.assert_array_equal(read_moclip_npz(path, split_seed=1).split, b.split)
    # Provenance survives the pairs file, so an imported file says where it came from.
    write_pairs(tmp_path / "p.h5", a)
    assert (
        read_pairs(tmp_path / "p.h5").provenance["source_sha256"] == a.provenance["source_sha256"]
    )


def _without(key: str) -> dict[str, Any]:
    content = arrays()
    del content[key]
    return content


def _with(**override: Any) -> dict[str, Any]:
    content = arrays()
    content.update(override)
    return content


def _set(key: str, index: tuple[int, ...], value: float) -> dict[str, Any]:
    content = arrays()
    array = content[key].astype(np.float64)
    array[index] = value
    content[key] = array.astype(content[key].dtype) if key != "geom" else array
    return content


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (_without("wvl"), r"missing key\(s\) \['wvl'\]"),
        (_without("spectra_y"), r"missing key\(s\) \['spectra_y'\]"),
        (_with(wvl=np.zeros((29, 1))), r"wvl has shape \(29, 1\)"),
        (_with(wvl=np.linspace(730.0, 450.0, 29)), "wvl must be .*strictly increasing"),
        (_with(wvl=np.linspace(0.45, 0.73, 29)), "wvl .*looks like um"),
        (_with(geom=np.zeros((8, 32, 16), np.uint8)), r"geom has shape \(8, 32, 16\)"),
        (_with(geom=np.zeros((8, 32), np.uint8)), r"geom has shape \(8, 32\)"),
        (_set("geom", (0, 0, 0), 2), "geom values must be 0 or 1"),
        (_set("geom", (0, 0, 0), 0.5), "geom values must be 0 or 1"),
        (_with(params=np.ones((8, 3))), r"params has shape \(8, 3\).*expected \(8, 2\)"),
        (_with(params=np.ones((7, 2))), r"params has shape \(7, 2\)"),
        (_set("params", (0, 0), -0.4), "params .*positive"),
        (_set("params", (0, 1), np.nan), "params .*finite"),
        (_set("params", (0, 0), 400.0), "params reach 400, which looks like nm"),
        (_with(spectra_x=np.zeros((8, 30), np.float32)), r"spectra_x has shape \(8, 30\)"),
        (_with(spectra_y=np.zeros((7, 29), np.float32)), r"spectra_y has shape \(7, 29\)"),
        (_with(spectra_y=np.zeros((8, 29), np.int64)), "spectra_y .*dtype int64"),
        (_set("spectra_x", (1, 2), np.nan), "spectra_x holds 1 NaN/inf"),
        (_set("spectra_y", (1, 2), 87.0), r"spectra_y spans .*\.\.87.*percent"),
        (_set("spectra_x", (1, 2), -0.02), r"spectra_x spans -0.02.*--clip-spectra"),
    ],
)
def test_bad_content_is_a_one_line_error_naming_the_key(
    tmp_path: Path, content: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message) as info:
        read_moclip_npz(save(tmp_path, content))
    assert "\n" not in str(info.value)


def test_clip_spectra_clips_and_records_it(tmp_path: Path) -> None:
    content = arrays()
    content["spectra_x"][0, :3] = [1.01, 1.02, -0.01]
    pairs = read_moclip_npz(save(tmp_path, content), clip_spectra=True)
    assert pairs.provenance["spectra_clipped"] == 3
    assert pairs.spectra[0, 0, :3].tolist() == [1.0, 1.0, 0.0]
    np.testing.assert_array_equal(pairs.spectra[0, 0, 3:], content["spectra_x"][0, 3:])


def test_object_arrays_are_refused_not_unpickled(tmp_path: Path) -> None:
    content = arrays()
    content["params"] = np.array([[0.4, 0.178]] * 8, dtype=object)
    path = save(tmp_path, content)  # numpy pickles object arrays on saving
    with pytest.raises(ValueError, match="'params' cannot be read without pickle") as info:
        read_moclip_npz(path)
    assert "\n" not in str(info.value)


def test_files_that_are_not_moclip_npz(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_moclip_npz(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pairs(tmp_path / "missing.npz")  # the npz reader answers for an .npz name
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match=r"not a readable \.npz archive"):
        read_moclip_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"single \.npy array"):
        read_moclip_npz(tmp_path / "one.npy")
    content = arrays()
    content["notes"] = np.arange(3)
    with caplog.at_level(logging.WARNING, logger="dataset.moclip_npz"):
        pairs = read_moclip_npz(save(tmp_path, content))
    assert "notes" in caplog.text and pairs.provenance["ignored_keys"] == ["notes"]


def test_load_pairs_reads_both_layouts(tmp_path: Path) -> None:
    pairs = make_pairs(SyntheticPairsConfig(count=6))
    write_pairs(tmp_path / "p.h5", pairs)
    write_moclip_npz(tmp_path / "p.npz", pairs)
    from_h5, from_npz = load_pairs(tmp_path / "p.h5"), load_pairs(tmp_path / "p.npz")
    np.testing.assert_array_equal(from_h5.design_id, pairs.design_id)  # stored ids kept
    assert from_npz.provenance["source"] == "moclip_npz"
    np.testing.assert_array_equal(from_npz.geometry, from_h5.geometry)
    assert from_npz.material == from_h5.material == "a-Si"  # MOCLIP's film, and the default


def test_the_layout_has_no_material_so_the_import_names_it(tmp_path: Path) -> None:
    path = save(tmp_path, arrays(n=8, seed=2))
    assert read_moclip_npz(path).material == "a-Si"  # MOCLIP's LPCVD amorphous silicon
    assert read_moclip_npz(path, material="a-Si:H").material == "a-Si:H"
    with pytest.raises(ValueError, match="material 'Si' is not a film material"):
        read_moclip_npz(path, material="Si")
