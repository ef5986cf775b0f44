"""Target builders (pairs rows, CSVs, parametric filters, weight windows) and their command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from dataset.pairs_file import Pairs, write_pairs
from dataset.targets_file import read_targets
from models.targets import (
    FilterSpec,
    default_wavelengths_nm,
    from_csv,
    from_filters,
    from_pairs,
    model_wavelengths_nm,
    parse_filter,
    weight_window,
)
from models.targets_cli import targets_cmd

GRID = np.array([500.0, 550.0, 600.0, 650.0, 700.0])
DESIGNS = np.array([10, 10, 11, 12, 13, 14, 15, 16])
SPLITS = np.array([2, 2, 0, 0, 1, 2, 2, 0])  # test rows 0, 1, 5, 6


@pytest.fixture
def pairs_h5(tmp_path: Path) -> Path:
    n = DESIGNS.size
    rng = np.random.default_rng(0)
    pairs = Pairs.build(
        geometry=rng.random((n, 8, 8)) < 0.5,
        params=np.tile([0.4, 0.178], (n, 1)),
        spectra=rng.random((n, 2, GRID.size)).astype(np.float32),
        wavelength_nm=GRID,
        design_id=DESIGNS,
        split=SPLITS,
        material="a-Si",
    )
    path = tmp_path / "pairs.h5"
    write_pairs(path, pairs)
    return path


# --- pairs -----------------------------------------------------------------------------------


def test_from_pairs_takes_the_split_rows(pairs_h5: Path) -> None:
    targets = from_pairs(pairs_h5)
    assert targets.target_id == ("pairs:10:0", "pairs:10:1", "pairs:14:5", "pairs:15:6")
    assert targets.provenance == {
        "source": "pairs",
        "pairs": str(pairs_h5),
        "split": "test",
        "rows": [0, 1, 5, 6],
    }
    np.testing.assert_array_equal(targets.wavelength_nm, GRID)
    from dataset.pairs_file import read_pairs

    stored = read_pairs(pairs_h5).spectra
    np.testing.assert_array_equal(targets.spectra, stored[[0, 1, 5, 6]].astype(np.float64))
    assert np.all(targets.weight == 1.0)
    assert from_pairs(pairs_h5, "val").target_id == ("pairs:13:4",)


def test_from_pairs_limit_is_a_seeded_sorted_subset(pairs_h5: Path) -> None:
    a = from_pairs(pairs_h5, limit=2, seed=7)
    rows = a.provenance["rows"]
    assert len(rows) == 2 and rows == sorted(rows) and set(rows) <= {0, 1, 5, 6}
    assert from_pairs(pairs_h5, limit=2, seed=7).provenance["rows"] == rows
    draws = {tuple(from_pairs(pairs_h5, limit=2, seed=s).provenance["rows"]) for s in range(8)}
    assert len(draws) > 1  # the seed does choose
    assert from_pairs(pairs_h5, limit=99).provenance["rows"] == [0, 1, 5, 6]


def test_from_pairs_refusals(pairs_h5: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split 'testing' is not known; known: train, val, test"):
        from_pairs(pairs_h5, "testing")
    with pytest.raises(ValueError, match="limit 0 is outside the allowed range"):
        from_pairs(pairs_h5, limit=0)
    with pytest.raises(FileNotFoundError):
        from_pairs(tmp_path / "nope.h5")


# --- CSV -------------------------------------------------------------------------------------


def test_csv_single_target_interpolates(tmp_path: Path) -> None:
    path = tmp_path / "my_filter.csv"
    path.write_text("wavelength_nm, tx, ty\n400,0,1\n800,1,0.5\n\n")
    targets = from_csv(path, GRID)
    assert targets.target_id == ("my_filter",)
    np.testing.assert_allclose(targets.spectra[0, 0], (GRID - 400) / 400, rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        targets.spectra[0, 1], 1 - 0.5 * (GRID - 400) / 400, rtol=0, atol=1e-15
    )
    assert targets.provenance == {"source": "csv", "csv": str(path)}


def test_csv_long_format_keeps_first_appearance_order(tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    path.write_text(
        "target_id,wavelength_nm,tx,ty,note\n"
        "b,500,0.2,0.2,x\na,450,1,1,\nb,700,0.4,0.6,\na,750,0,0,\n"
    )
    targets = from_csv(path, GRID)
    assert targets.target_id == ("b", "a")
    np.testing.assert_allclose(targets.spectra[0, 0], [0.2, 0.25, 0.3, 0.35, 0.4])
    np.testing.assert_allclose(targets.spectra[0, 1], [0.2, 0.3, 0.4, 0.5, 0.6])
    np.testing.assert_allclose(targets.spectra[1, 0], [5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "wavelength_nm,tx,ty\n520,0,0\n700,1,1\n",
            r"covers 520..700 nm, which does not include the band 500 nm",
        ),
        (
            "wavelength_nm,tx,ty\n400,0,0\n690,1,1\n",
            r"covers 400..690 nm, which does not include the band 700 nm",
        ),
        ("wavelength_nm,tx\n400,0\n", r"lacks the column\(s\) ty"),
        ("lambda,tx,ty\n400,0,0\n", r"lacks the column\(s\) wavelength_nm"),
        ("wavelength_nm,tx,ty\n400,nan,0\n800,1,1\n", "line 2: tx is 'nan'; give a finite"),
        ("wavelength_nm,tx,ty\n400,0,0\n800,abc,1\n", "line 3: tx 'abc' is not a number"),
        ("wavelength_nm,tx,ty\n400,0,2\n800,1,1\n", r"line 2: ty 2 is outside .*\[0, 1.5\]"),
        (
            "wavelength_nm,tx,ty\n400,0,0\n600,1,1\n600,1,1\n800,0,0\n",
            "line 4: wavelength_nm 600 of target 'bad' does not increase",
        ),
        ("", "is empty; expected a header"),
        ("wavelength_nm,tx,ty\n", "has a header but no rows"),
        ("target_id,wavelength_nm,tx,ty\n,400,0,0\n", "line 2: empty target_id"),
    ],
)
def test_csv_refusals(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        from_csv(path, GRID)


def test_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        from_csv(tmp_path / "none.csv", GRID)


# --- filters ---------------------------------------------------------------------------------

C, W, D = 600.0, 40.0, 0.8
POINTS = np.array([C - W / 2, C, C + W / 2, C + 10 * W])


def test_filter_shapes_at_known_points() -> None:
    def shape(kind: str) -> np.ndarray:
        return FilterSpec(kind, "x", C, W, D).transmission(POINTS)

    np.testing.assert_allclose(shape("bandpass"), [1 - D / 2, 1, 1 - D / 2, 1 - D], atol=1e-12)
    np.testing.assert_allclose(shape("notch"), [1 - D / 2, 1 - D, 1 - D / 2, 1], atol=1e-12)
    # The logistic edge rises 10 % -> 90 % of the depth over the width.
    np.testing.assert_allclose(
        shape("longpass"), [1 - 0.9 * D, 1 - D / 2, 1 - 0.1 * D, 1], atol=1e-12
    )
    np.testing.assert_allclose(
        shape("shortpass"), [1 - 0.1 * D, 1 - D / 2, 1 - 0.9 * D, 1 - D], atol=1e-12
    )


def test_from_filters_weights_and_ids() -> None:
    targets = from_filters(
        ["Bandpass  X 600 40 0.8", "notch both 550.5 20 1", "longpass y 600 40 0"], GRID
    )
    assert targets.target_id == (
        "bandpass x 600 40 0.8",
        "notch both 550.5 20 1",
        "longpass y 600 40 0",
    )
    assert np.all(targets.weight[0, 0] == 1) and np.all(targets.weight[0, 1] == 0)
    assert np.all(targets.weight[1] == 1)
    assert np.all(targets.weight[2, 0] == 0) and np.all(targets.weight[2, 1] == 1)
    assert targets.spectra[0, 0, 2] == 1.0  # 600 nm is the centre
    assert np.all(targets.spectra[2] == 1.0)  # depth 0: flat
    assert targets.provenance["filters"] == list(targets.target_id)
    with pytest.raises(ValueError, match=r"'bandpass x 600 40 0\.8' is given more than once"):
        from_filters(["bandpass x 600 40 0.8", "bandpass x 600.0 40 0.80"], GRID)
    with pytest.raises(ValueError, match="no filters given"):
        from_filters([], GRID)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bandpass x 600 40", "must be KIND POL CENTRE_NM WIDTH_NM DEPTH"),
        ("lowpass x 600 40 0.5", "kind 'lowpass' is not known; known: bandpass, notch"),
        ("bandpass z 600 40 0.5", "polarization 'z' is not known; known: x, y, both"),
        ("bandpass x 600 40 1.5", r"depth 1.5 is outside the allowed range \[0, 1\]"),
        ("bandpass x 600 0 0.5", "width_nm 0.0 is outside the allowed range > 0 nm"),
        ("bandpass x -600 40 0.5", "centre_nm -600.0 is outside"),
        ("bandpass x nan 40 0.5", "centre_nm nan must be a finite number"),
        ("bandpass x 600 wide 0.5", "width_nm 'wide' is not a number"),
    ],
)
def test_bad_filters_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_filter(spec)


# --- windows and grids -----------------------------------------------------------------------


def test_weight_window_zeroes_outside_and_other_polarization() -> None:
    targets = from_filters(["bandpass both 600 40 0.8"], GRID)
    windowed = weight_window(targets, 540, 660, "x")
    assert windowed.weight[0, 0].tolist() == [0, 1, 1, 1, 0]
    assert windowed.weight[0, 1].tolist() == [0, 0, 0, 0, 0]
    np.testing.assert_array_equal(windowed.spectra, targets.spectra)
    assert windowed.provenance["window_nm"] == [540.0, 660.0]
    assert weight_window(targets, 500, 700).weight.sum() == 10
    with pytest.raises(
        ValueError, match=r"window 710..800 nm holds no band; the bands are 500..700"
    ):
        weight_window(targets, 710, 800)
    only_x = from_filters(["notch x 600 40 0.5"], GRID)
    with pytest.raises(ValueError, match=r"target 'notch x 600 40 0\.5' has zero total weight"):
        weight_window(only_x, 500, 700, "y")
    with pytest.raises(ValueError, match="lo < hi"):
        weight_window(targets, 700, 500)


def _model_dir(folder: Path, bands: int, pairs: Path | None) -> Path:
    folder.mkdir()
    config = {
        "format": "metascan.model",
        "format_version": 2,
        "model": {"num_wavelengths": bands},
        "train": {"pairs": str(pairs)} if pairs is not None else {},
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_model_wavelengths(tmp_path: Path, pairs_h5: Path) -> None:
    grid = default_wavelengths_nm()
    assert grid.size == 29 and grid[0] == 450 and grid[-1] == 730
    assert np.all(np.diff(grid) == 10)
    recorded = _model_dir(tmp_path / "m1", 5, pairs_h5)
    np.testing.assert_array_equal(model_wavelengths_nm(recorded), GRID)
    gone = _model_dir(tmp_path / "m2", 29, tmp_path / "moved.h5")
    np.testing.assert_array_equal(model_wavelengths_nm(gone), grid)
    other = _model_dir(tmp_path / "m3", 7, None)
    with pytest.raises(ValueError, match=r"predicts 7 bands.*--pairs"):
        model_wavelengths_nm(other)
    mismatch = _model_dir(tmp_path / "m4", 29, pairs_h5)
    with pytest.raises(ValueError, match="predicts 29 bands but its training pairs"):
        model_wavelengths_nm(mismatch)


# --- the command -----------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A group, so the command keeps its name."""

    app.command("targets")(targets_cmd)
    return app


def test_cli_writes_concatenated_targets_and_refuses_overwrite(
    tmp_path: Path, pairs_h5: Path
) -> None:
    csv_path = tmp_path / "drawn.csv"
    csv_path.write_text("wavelength_nm,tx,ty\n500,0.1,0.2\n700,0.3,0.4\n")
    out = tmp_path / "targets.h5"
    args = [
        "targets", "--output", str(out), "--pairs", str(pairs_h5), "--limit", "2",
        "--csv", str(csv_path), "--filter", "bandpass x 600 40 0.8",
        "--filter", "notch both 600 40 0.5", "--window", "540,700", "--window-pol", "x",
    ]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(_app(), args)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote 5 targets (5 bands, 500..700 nm) to {out}"
    targets = read_targets(out)
    assert targets.target_id[2:] == ("drawn", "bandpass x 600 40 0.8", "notch both 600 40 0.5")
    assert targets.target_id[0].startswith("pairs:")
    assert np.all(targets.weight[:, 1] == 0) and np.all(targets.weight[:, 0, 0] == 0)
    assert np.all(targets.weight[:, 0, 1:] == 1)
    assert len(targets.provenance["parts"]) == 3
    assert targets.provenance["window_polarization"] == "x"

    again = runner.invoke(_app(), args)
    assert again.exit_code == 1 and isinstance(again.exception, FileExistsError)
    assert "pass --force" in str(again.exception)
    forced = runner.invoke(_app(), [*args, "--force"])
    assert forced.exit_code == 0, forced.output


def test_cli_refusals(tmp_path: Path, pairs_h5: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "t.h5"
    none = runner.invoke(_app(), ["targets", "--output", str(out)])
    assert isinstance(none.exception, ValueError)
    assert "give --pairs, --csv or --filter" in str(none.exception)
    same = runner.invoke(_app(), ["targets", "--output", str(pairs_h5), "--pairs", str(pairs_h5)])
    assert isinstance(same.exception, ValueError) and "is the input --pairs" in str(same.exception)
    bad_limit = runner.invoke(
        _app(), ["targets", "--output", str(out), "--pairs", str(pairs_h5), "--limit", "0"]
    )
    assert bad_limit.exit_code != 0 and not out.exists()
    default = runner.invoke(
        _app(), ["targets", "--output", str(out), "--filter", "notch y 600 40 1"]
    )
    assert default.exit_code == 0, default.output
    assert "(29 bands, 450..730 nm)" in default.output
    assert math.isclose(read_targets(out).spectra[0, 1, 15], 0.0, abs_tol=1e-12)  # 600 nm
