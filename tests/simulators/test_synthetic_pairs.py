"""``metascan sim pairs`` end to end: the file it writes, read back, and its one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from dataset.pairs_file import read_pairs
from layout.generator import generate
from layout.raster import rasterize
from simulators.spectral import (
    MOCLIP_WAVELENGTHS_NM,
    AnalyticConfig,
    AnalyticModel,
    bare_substrate_transmission,
)
from simulators.synthetic_pairs import SyntheticPairsConfig, make_pairs

if TYPE_CHECKING:
    from conftest import Cli


def test_pairs_command_writes_moclip_shaped_pairs(tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "pairs.h5"
    code, stdout, err = cli("sim", "pairs", "--count", "60", "--seed", "4", "--replicas", "2",
                            "--noise", "0.02", "--output", str(out))  # fmt: skip
    assert code == 0, err
    assert "wrote 120 pairs (60 designs x 2 replicas)" in stdout
    pairs = read_pairs(out)
    assert pairs.geometry.shape == (120, 128, 128) and pairs.spectra.shape == (120, 2, 29)
    np.testing.assert_array_equal(pairs.wavelength_nm, MOCLIP_WAVELENGTHS_NM)
    assert set(np.round(pairs.params[:, 0], 6)) <= {0.3, 0.4, 0.5, 0.6}
    assert set(np.round(pairs.params[:, 1], 6)) <= {0.15, 0.178, 0.195}
    # Replicas: same design, geometry and split; spectra differ only by the noise.
    assert np.all(pairs.design_id[0::2] == pairs.design_id[1::2])
    assert np.all(pairs.split[0::2] == pairs.split[1::2])
    np.testing.assert_array_equal(pairs.geometry[0::2], pairs.geometry[1::2])
    diff = pairs.spectra[0::2] - pairs.spectra[1::2]
    assert 0.02 < diff.std() < 0.035  # two independent sigma = 0.02 draws: sqrt(2) * 0.02
    # Geometry is the generator's designs, rasterized.
    lib = generate(60, seed=4)
    np.testing.assert_array_equal(pairs.geometry[0::2], rasterize(lib))
    np.testing.assert_array_equal(pairs.design_id[0::2], lib.design_id)
    assert (
        pairs.provenance["config"]["noise"] == 0.02
        and pairs.provenance["model_settings"]["anisotropy"] == AnalyticConfig().anisotropy
    )


def test_noise_free_pairs_are_the_model_spectra_relative_to_bare_glass() -> None:
    pairs = make_pairs(SyntheticPairsConfig(count=30, seed=2, thicknesses_nm=(178.0,)))
    lib = generate(30, seed=2)
    absolute = AnalyticModel().spectra(lib, MOCLIP_WAVELENGTHS_NM, thickness_nm=178.0)
    glass = bare_substrate_transmission(MOCLIP_WAVELENGTHS_NM)
    assert 0.963 < glass.min() < glass.max() < 0.967  # what the convention changes
    expected = np.clip(absolute / glass, 0.0, 1.0)
    np.testing.assert_allclose(pairs.spectra, expected, atol=1e-7)  # stored as float32
    assert pairs.provenance["spectra_values_clipped"] == int(np.count_nonzero(absolute > glass))
    again = make_pairs(SyntheticPairsConfig(count=30, seed=2, thicknesses_nm=(178.0,)))
    np.testing.assert_array_equal(again.spectra, pairs.spectra)
    np.testing.assert_array_equal(again.split, pairs.split)


def test_pairs_command_with_rcwa(tmp_path: Path, cli: Cli) -> None:
    out, cache = tmp_path / "pairs.h5", tmp_path / "cache.h5"
    code, _, err = cli("sim", "pairs", "--count", "2", "--model", "rcwa", "--orders", "1,1",
                            "--thickness-nm", "178", "--cache", str(cache), "--output", str(out))  # fmt: skip
    assert code == 0, err
    pairs = read_pairs(out)
    assert pairs.spectra.shape == (2, 2, 29) and cache.is_file()
    assert pairs.provenance["model_settings"]["orders"] == [1, 1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "--count 0 is outside the allowed range"),
        (["--model", "fdtd"], "--model 'fdtd' is not known; known: analytic, rcwa"),
        (["--thickness-nm", "thick"], "--thickness-nm 'thick' must be comma-separated numbers"),
        (["--noise", "-0.1"], "--noise -0.1 is outside the allowed range [0, 0.5]"),
        (["--replicas", "0"], "--replicas 0 is outside the allowed range [1, 100]"),
        (["--material", "gold"], "--material 'gold' is not a film material; known: a-Si, a-Si:H"),
        (["--model", "rcwa", "--orders", "3"], "--orders (3,) must be two integers"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], message: str, cli: Cli) -> None:
    code, _, err = cli(
        "sim",
        "pairs",
        "--count",
        "5",
        *args,
        "--output",
        str(tmp_path / "p.h5"),
    )
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "p.h5").exists()


def test_missing_output_directory(tmp_path: Path, cli: Cli) -> None:
    code, _, err = cli(
        "sim",
        "pairs",
        "--count",
        "5",
        "--output",
        str(tmp_path / "no" / "p.h5"),
    )
    assert code == 2 and "output directory" in err


def test_missing_rcwa_backend_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    import importlib

    real = importlib.import_module

    def without_torcwa(name: str, package: str | None = None) -> object:
        if name == "torcwa":
            raise ImportError("No module named 'torcwa'")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_torcwa)
    code, _, err = cli("sim", "pairs", "--count", "2", "--model", "rcwa",
                       "--output", str(tmp_path / "p.h5"))  # fmt: skip
    assert code == 2 and "pip install 'metascan[rcwa]'" in err
