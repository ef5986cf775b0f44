"""Files written before the declared attribute schema (tests/data/old_writer, see its README.txt)
read with today's readers, and today's writer makes the same files from the same content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from common.versioned_hdf5 import decode_attr
from dataset.extraction import ExtractionSettings, extract_array
from dataset.hypercube_attrs import HypercubeAttrs
from dataset.hypercube_file import (
    CubeSection,
    HypercubeLayout,
    HypercubeWriter,
    flat_location,
    read_flat,
    read_flat_section,
    read_hypercube,
    read_hypercube_attrs,
    read_section,
)
from layout.manifest import read_manifest

OLD = Path(__file__).resolve().parents[1] / "data" / "old_writer"
TILE, FLAT = OLD / "A0C_r0c0.h5", OLD / "flat.h5"
HEADER = ("schema", "schema_version", "software_version")
# Attributes whose values name the installed software, not the file's content.
VERSIONED = ("software_version", "_NCProperties")


def stored_attrs(path: Path) -> dict[str, Any]:
    """The file's root attributes after the header, decoded, in file order."""
    with h5py.File(path, "r") as f:
        return {
            k: decode_attr(v)
            for k, v in f.attrs.items()
            if k not in HEADER and not k.startswith("_")
        }


@pytest.mark.parametrize("path", [TILE, FLAT], ids=["tile", "flat"])
def test_attributes_round_trip_through_the_schema(path: Path) -> None:
    stored = stored_attrs(path)
    attrs = read_hypercube_attrs(path)
    assert attrs.role == ("tile" if path == TILE else "flat")
    assert attrs.extra == {}  # every attribute the old writer wrote is declared
    again = attrs.to_attrs()
    assert list(again) == list(stored)  # same keys, same order
    assert again == stored
    for key, value in again.items():  # and the same Python types, down to int vs float
        assert type(value) is type(stored[key]), key
    with h5py.File(path, "r") as f:  # encoded the way the writer encodes them: the same bytes
        for key, value in again.items():
            raw = f.attrs[key]
            if isinstance(value, str | int | float):
                assert raw == value and np.asarray(raw).dtype == np.asarray(value).dtype, key
            else:
                assert raw == json.dumps(value), key
    assert HypercubeAttrs.from_attrs(again, path) == attrs


def test_the_tile_declares_what_processing_reads() -> None:
    attrs = read_hypercube_attrs(TILE)
    assert (attrs.array, attrs.array_id, attrs.replica) == ("A0C", 0, -1)
    assert (attrs.tile_row, attrs.tile_col, attrs.flat_file) == (0, 0, "flat.h5")
    assert attrs.pads == (40, 41, 42, 43) and attrs.full_scale_dn == 65535
    assert attrs.pixel_size_um == 0.5 and attrs.centre_chip_um == (174.0, 6.0)
    assert attrs.darks_from is None and attrs.autoexposure is None
    flat = read_hypercube_attrs(FLAT)
    assert flat.array == "*" and flat.tile_row is None and flat.flat_file is None
    assert flat.autoexposure is not None and len(flat.autoexposure) == 4  # 2 pol x 2 bands
    assert {"polarization", "wavelength_nm", "result"} <= set(flat.autoexposure[0])


def test_both_readers_read_the_old_files_alike() -> None:
    tile = read_section(TILE)
    assert flat_location(TILE, tile.attrs) == (FLAT, "signal")
    flat = read_flat_section(TILE, tile.attrs)
    assert flat.path == FLAT and flat.attrs.role == "flat"
    for cube in (tile, flat):
        assert cube.polarization == ("x", "y")
        np.testing.assert_array_equal(cube.wavelength_nm, [520.0, 660.0])
        assert cube.images.shape == (2, 2, 64, 64) and cube.images.dtype == np.float32
        assert cube.completed.all() and np.isfinite(cube.images).all()
        assert np.isfinite(cube.darks).all() and np.isfinite(cube.reference_dark).all()
        assert np.isfinite(cube.exposure_s).all() and np.isfinite(cube.reference).all()
        assert int(cube.band_flags.max()) == 0
    with read_hypercube(TILE) as ds, read_flat(TILE) as xflat:
        assert {k: ds.attrs[k] for k in HEADER}["schema"] == "metascan.hypercube"
        assert {k: v for k, v in ds.attrs.items() if k not in HEADER} == tile.attrs.to_attrs()
        assert tuple(ds.polarization.values) == tile.polarization
        np.testing.assert_array_equal(ds.signal.values, tile.images)
        np.testing.assert_array_equal(ds.dark.values, tile.darks)
        np.testing.assert_array_equal(ds.signal_exposure_s.values, tile.exposure_s)
        np.testing.assert_array_equal(ds.reference_dark.values, tile.reference_dark)
        assert xflat.attrs["flat_source"] == str(FLAT)
        np.testing.assert_array_equal(xflat.flat.values, flat.images)
        np.testing.assert_array_equal(xflat.dark.values, flat.darks)


def rewrite(cube: CubeSection, path: Path) -> None:
    """The content of an old file written again with today's writer, band by band."""
    layout = HypercubeLayout.build(
        cube.polarization,
        cube.wavelength_nm,
        *cube.shape,
        cube.dark_exposure_s,
        cube.reference_dark_exposure_s,
    )
    with h5py.File(cube.path, "r") as f, HypercubeWriter.create(
        path, layout, cube.attrs.to_attrs()
    ) as writer:  # fmt: skip
        for i, pol in enumerate(cube.polarization):
            for j, wl in enumerate(cube.wavelength_nm):
                writer.write_band(
                    "signal", pol, float(wl), f["signal"][i, j],
                    reference=float(f["signal_reference"][i, j]),
                    reference_exposure_s=float(f["signal_reference_exposure_s"][i, j]),
                    exposure_s=float(f["signal_exposure_s"][i, j]),
                    frames=int(f["signal_frames"][i, j]),
                    timestamp_s=float(f["signal_timestamp_s"][i, j]),
                    flags=int(f["signal_band_flags"][i, j]),
                )  # fmt: skip
        for k, e in enumerate(cube.dark_exposure_s):
            writer.write_dark(
                float(e), f["dark"][k], frames=int(f["dark_frames"][k]),
                timestamp_s=float(f["dark_timestamp_s"][k]),
            )  # fmt: skip
        for k, e in enumerate(cube.reference_dark_exposure_s):
            writer.write_reference_dark(
                float(e), float(f["reference_dark"][k]),
                frames=int(f["reference_dark_frames"][k]),
                timestamp_s=float(f["reference_dark_timestamp_s"][k]),
            )  # fmt: skip


def _attr_value(f: h5py.File, value: Any) -> Any:
    """An attribute value comparable across files (NaN equal to NaN, types kept): object
    references by the name they point at."""
    if isinstance(value, h5py.Reference):
        return f[value].name
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [_attr_value(f, v) for v in value.ravel()]
    if isinstance(value, np.ndarray | np.generic):
        return (value.dtype.str, np.shape(value), repr(np.asarray(value).tolist()))
    return (type(value).__name__, repr(value))


def structure(path: Path) -> dict[str, Any]:
    """Every object of the file: kind, shape, dtype, storage, filters, fill value, attributes."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:

        def attrs(obj: h5py.HLObject) -> list[tuple[str, Any]]:
            return [
                (k, None if k in VERSIONED else _attr_value(f, v)) for k, v in obj.attrs.items()
            ]

        def visit(name: str, obj: h5py.HLObject) -> None:
            if isinstance(obj, h5py.Dataset):
                plist = obj.id.get_create_plist()
                out[name] = {
                    "shape": obj.shape,
                    "maxshape": obj.maxshape,
                    "dtype": obj.dtype.str if obj.dtype.kind != "O" else str(obj.dtype),
                    "string": h5py.check_string_dtype(obj.dtype),
                    "chunks": obj.chunks,
                    "compression": (obj.compression, obj.compression_opts),
                    "shuffle": obj.shuffle,
                    "fletcher32": obj.fletcher32,
                    "fillvalue": repr(obj.fillvalue),
                    "layout": plist.get_layout(),
                    "alloc_time": plist.get_alloc_time(),
                    "offset": obj.id.get_offset(),
                    "attrs": attrs(obj),
                }
            else:
                out[name] = {"group": True, "attrs": attrs(obj)}

        out["/"] = {"attrs": [*attrs(f), *[(k, "present") for k in VERSIONED if k in f.attrs]]}
        f.visititems(visit)
    return out


@pytest.mark.parametrize("path", [TILE, FLAT], ids=["tile", "flat"])
def test_todays_writer_makes_the_old_file(path: Path, tmp_path: Path) -> None:
    new = tmp_path / path.name
    rewrite(read_section(path), new)
    old_structure, new_structure = structure(path), structure(new)
    assert list(new_structure) == list(old_structure)  # the same objects, in the same order
    for name, old in old_structure.items():
        assert new_structure[name] == old, name
    # The same content in the same structure: byte for byte the file the old writer wrote.
    assert new.read_bytes() == path.read_bytes()


def test_processing_the_old_tile_gives_finite_spectra(tmp_path: Path) -> None:
    for name in ("A0C_r0c0.h5", "flat.h5"):  # a copy: processing never touches the fixture
        shutil.copy(OLD / name, tmp_path / name)
    manifest = read_manifest(OLD / "chip.h5")
    assert manifest.content_sha256() == read_hypercube_attrs(TILE).manifest_sha256
    result = extract_array([tmp_path / "A0C_r0c0.h5"], manifest, "A0C", ExtractionSettings())
    spectra = result.spectra
    assert len(spectra) == manifest.pads_of("A0C").size == 4
    assert spectra.transmission.shape == (4, 2, 2)
    assert np.isfinite(spectra.transmission).all() and np.isfinite(spectra.spread).all()
    assert np.all((spectra.transmission > 0.0) & (spectra.transmission < 1.0))
    assert np.all(spectra.flags == 0), spectra.flags
