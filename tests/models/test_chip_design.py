"""Designing a target map: with a stand-in predictor whose colours are known, retrieval finds
the probe of a reachable colour, the warm-started PSO never does worse than the probe it starts
from, what is promised is what was scored; then `design chip` and `design report` end to end on
a small model, probes and a PNG, the report checked against spectra of known colour."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from dataset.colorimetry import Colorimetry, delta_e, lab_to_srgb
from dataset.target_map import TargetMap
from layout.design import Kind
from layout.design_space import DesignSpace
from layout.generator import generate
from layout.rules import DesignRules
from models.chip_design import ChipDesignConfig, SpectraPredictor, design_map

BANDS = np.arange(450.0, 731.0, 10.0)
SPACE = DesignSpace(
    (300, 400, 500, 600), (178.0,), (Kind.RECTANGLE, Kind.ELLIPSE), 2, DesignRules()
)


def quadrant_colour(
    images: NDArray[np.bool_], params_um: NDArray[np.float64]
) -> NDArray[np.float32]:
    """A stand-in surrogate whose colours are known: the fill of three image quadrants dims the
    red, green and blue bands (x and y alike)."""
    n = images.shape[0]
    fill = images.reshape(n, 2, 64, 2, 64).mean(axis=(2, 4)).reshape(n, 4)
    out = np.empty((n, 2, BANDS.size), np.float32)
    for k, band in enumerate((BANDS >= 600, (BANDS >= 500) & (BANDS < 600), BANDS < 500)):
        out[:, :, band] = (0.95 - 0.9 * fill[:, k])[:, None, None]
    return out


PREDICTOR = SpectraPredictor(quadrant_colour, "quadrants", BANDS)


def colour_map(srgb: NDArray[np.uint8]) -> TargetMap:
    t = srgb.shape[0]
    grid = np.arange(t, dtype=np.int32).reshape(1, t).repeat(2, axis=0)
    return TargetMap(
        grid=grid,
        target_ids=tuple(f"c{i}" for i in range(t)),
        kind="colour",
        unique=np.arange(t, dtype=np.int64),
        source="test",
        source_sha256="0",
        srgb=srgb,
    )


def test_retrieval_finds_reachable_colours_and_the_hybrid_improves_on_it() -> None:
    probes = generate(600, seed=4)
    thick = np.full(len(probes), 178.0)
    colours = Colorimetry(BANDS)
    own = colours.lab_of_spectra(PREDICTOR.of_library(probes, thick))
    picks = [3, 77, 301]
    reachable = np.round(lab_to_srgb(own[picks]) * 255).astype(np.uint8)
    far = np.array([[60, 160, 90]], np.uint8)  # greener than any probe
    target_map = colour_map(np.concatenate([reachable, far]))
    found = design_map(target_map, PREDICTOR, probes, thick, 178.0, 6.0, ChipDesignConfig())
    assert (found.promised_error[:3] < 1.0).all(), found.promised_error  # 8-bit rounding only
    np.testing.assert_allclose(found.promised_error, found.retrieved_error, atol=1e-9)
    assert found.calls == len(probes) - np.count_nonzero(
        ~np.isin(probes.period_nm, (300, 400, 500, 600))
    )
    tuned = design_map(
        target_map,
        PREDICTOR,
        probes,
        thick,
        178.0,
        6.0,
        ChipDesignConfig(method="hybrid", iterations=8, particles=12, seed=1),
        SPACE,
    )
    assert (tuned.promised_error <= tuned.retrieved_error + 1e-9).all()
    assert tuned.promised_error[3] < found.promised_error[3] - 1.0, (
        tuned.promised_error,
        found.promised_error,
    )
    # What is promised is the predictor's colour of the design written.
    again = colours.lab_of_spectra(PREDICTOR.of_library(tuned.library, np.full(4, 178.0)))
    np.testing.assert_allclose(delta_e(again, tuned.target_lab), tuned.promised_error, atol=1e-6)
    assert set(tuned.library.period_nm.tolist()) <= {300, 400, 500, 600}


def test_a_nan_prediction_is_never_chosen() -> None:
    def broken(images: NDArray[np.bool_], params_um: NDArray[np.float64]) -> NDArray[np.float32]:
        out = quadrant_colour(images, params_um)
        out[params_um[:, 0] < 0.45] = np.nan  # fails on periods 300 and 400
        return out

    probes = generate(300, seed=4)
    thick = np.full(len(probes), 178.0)
    grey = colour_map(np.array([[120, 120, 120], [60, 70, 90]], np.uint8))
    found = design_map(
        grey,
        SpectraPredictor(broken, "broken", BANDS),
        probes,
        thick,
        178.0,
        6.0,
        ChipDesignConfig(),
    )
    assert np.isfinite(found.promised_error).all()
    assert (found.library.period_nm >= 500).all()

    def dead(images: NDArray[np.bool_], params_um: NDArray[np.float64]) -> NDArray[np.float32]:
        return np.full((images.shape[0], 2, BANDS.size), np.nan, np.float32)

    with pytest.raises(ValueError, match="no finite spectrum"):
        design_map(
            grey,
            SpectraPredictor(dead, "dead", BANDS),
            probes,
            thick,
            178.0,
            6.0,
            ChipDesignConfig(),
        )


def test_probes_a_chip_cannot_hold_are_not_candidates() -> None:
    probes = generate(50, seed=2)
    with pytest.raises(ValueError, match="no probe is 150 nm thick"):
        design_map(
            colour_map(np.array([[90, 90, 90]], np.uint8)),
            PREDICTOR,
            probes,
            np.full(50, 178.0),
            150.0,
            6.0,
            ChipDesignConfig(),
        )
    with pytest.raises(ValueError, match="--method 'pso'"):
        ChipDesignConfig(method="pso")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, pairs_h5: Path) -> dict[str, Path]:
    from models_data import untrained_model

    from models.model_dir import write_model_dir
    from models.probes import ProbeBuild, build_probes

    root = tmp_path_factory.mktemp("chipdesign")
    write_model_dir(root / "m", untrained_model(0), material="a-Si")
    build_probes(root / "p.h5", root / "m", ProbeBuild(count=400, seed=2, block_size=128))
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[...] = (120, 110, 100, 255)
    rgba[1:4, 2:5] = (90, 100, 120, 255)
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, "RGBA").save(root / "logo.png")
    return {"root": root, "model": root / "m", "probes": root / "p.h5", "pairs": pairs_h5}


def _designed(
    cli: Callable[..., tuple[int, str, str]], s: dict[str, Path], name: str, *extra: str
) -> Path:
    out = s["root"] / f"{name}.gds"
    code, stdout, stderr = cli(
        "design",
        "chip",
        "--targets",
        str(s["root"] / "logo.png"),
        "--model",
        str(s["model"]),
        "--probes",
        str(s["probes"]),
        "--spectra-db",
        str(s["pairs"]),
        "--thickness-nm",
        "178",
        "--output",
        str(out),
        "--no-progress",
        *extra,
    )
    assert code == 0, stderr
    assert "29 pads x 2 replicas, 2 targets, " in stdout
    return out


def _fake_spectra(
    manifest: Any, record: Any, colour_of: Callable[[int], NDArray[np.float64]]
) -> Any:
    from dataset.array_spectra_file import ArraySpectra
    from layout.manifest import Role

    pads = manifest.pads.select(manifest.pads.role == Role.DATASET)
    target = manifest.pad_target[manifest.pads.role == Role.DATASET]
    spectra = np.stack([colour_of(int(t)) for t in target])
    n = len(pads)
    return ArraySpectra.from_pads(
        pads,
        transmission=spectra,
        spread=np.zeros_like(spectra),
        pixel_count=np.full((n, 2), 50),
        flags=np.zeros(n, np.uint16),
        wavelength_nm=record.wavelength_nm,
        chip_id=manifest.chip_id,
        manifest_sha256=manifest.content_sha256(),
        array_name="A0R0,A0R1",
        registration_method="test",
        registration_residual_px=0.0,
        erosion_margin_um=0.5,
        flag_thresholds={},
        reference_compensation=True,
    )


def test_design_chip_writes_a_chip_and_the_report_measures_it(
    cli: Callable[..., tuple[int, str, str]], setup: dict[str, Path], tmp_path: Path
) -> None:
    import json

    from dataset.array_spectra_file import write_array_spectra
    from dataset.chip_design_file import read_chip_design
    from layout.manifest import read_manifest

    gds = _designed(cli, setup, "chip")
    manifest = read_manifest(gds.with_suffix(".h5"))
    record = read_chip_design(gds.with_name("chip_design.h5"))
    assert record.kind == "colour" and record.target_id == ("#5a6478", "#786e64")
    assert manifest.target_ids == record.target_id and len(manifest.designs) <= 2
    summary = json.loads(gds.with_name("chip_design.json").read_text())
    assert (
        summary["chip"]["pads"] == 58
        and 0 <= summary["reachable_gamut"]["fraction_within_delta_e"]["10"] <= 1
    )
    # Measured exactly as promised: the model's error is zero, the user's is the promise's.
    promised = lambda t: record.promised_spectra[record.designed_row[t]]  # noqa: E731
    folder = tmp_path / "spectra"
    folder.mkdir()
    write_array_spectra(folder / "all.h5", _fake_spectra(manifest, record, promised))
    code, stdout, stderr = cli(
        "design",
        "report",
        "--chip",
        str(gds.with_suffix(".h5")),
        "--spectra",
        str(folder),
        "--output",
        str(tmp_path / "report"),
    )
    assert code == 0, stderr
    assert "58/58 usable pads, measured ΔE2000 median" in stdout
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    de = report["delta_e2000"]
    assert report["pads_usable"] == 58
    assert de["measured_vs_promised"]["max"] < 1e-6
    assert de["measured_vs_target"]["median"] == pytest.approx(de["promised_vs_target"]["median"])
    for name in ("images.png", "delta_e.png", "spectra.png"):
        assert (tmp_path / "report" / name).stat().st_size > 1000
    # A clear pad is white: every target's error is then its colour's distance from white.
    white = lambda t: np.ones((2, BANDS.size))  # noqa: E731
    write_array_spectra(folder / "all.h5", _fake_spectra(manifest, record, white))
    cli(
        "design",
        "report",
        "--chip",
        str(gds.with_suffix(".h5")),
        "--spectra",
        str(folder),
        "--output",
        str(tmp_path / "white"),
    )
    report = json.loads((tmp_path / "white" / "report.json").read_text())
    expected = delta_e(np.array([100.0, 0, 0]), record.target_lab)
    got = sorted(t["delta_e_measured_median"] for t in report["targets"])
    np.testing.assert_allclose(got, sorted(expected), atol=1e-6)
    # The report is not written over without --force, and another chip's spectra are refused.
    code, _, stderr = cli(
        "design",
        "report",
        "--chip",
        str(gds.with_suffix(".h5")),
        "--spectra",
        str(folder),
        "--output",
        str(tmp_path / "white"),
    )
    assert code != 0 and "--force" in stderr
    other = _designed(cli, setup, "other", "--seed", "5", "--chip-id", "other")
    code, _, stderr = cli(
        "design",
        "report",
        "--chip",
        str(other.with_suffix(".h5")),
        "--spectra",
        str(folder),
        "--output",
        str(tmp_path / "x"),
    )
    assert code != 0 and "another chip" in stderr and "Traceback" not in stderr
    chip_bytes = gds.with_suffix(".h5").read_bytes()
    code, _, stderr = cli(
        "design",
        "report",
        "--chip",
        str(gds.with_suffix(".h5")),
        "--spectra",
        str(folder),
        "--output",
        str(gds.with_suffix(".h5")),
    )
    assert code != 0 and "give a directory" in stderr
    assert gds.with_suffix(".h5").read_bytes() == chip_bytes


def test_design_chip_refuses_bad_input_in_one_line(
    cli: Callable[..., tuple[int, str, str]], setup: dict[str, Path]
) -> None:
    base = [
        "design",
        "chip",
        "--targets",
        str(setup["root"] / "logo.png"),
        "--model",
        str(setup["model"]),
        "--probes",
        str(setup["probes"]),
        "--thickness-nm",
        "178",
    ]
    cases = [
        (
            [*base, "--output", str(setup["root"] / "x.txt"), "--spectra-db", str(setup["pairs"])],
            "must end in .gds or .oas",
        ),
        ([*base, "--output", str(setup["root"] / "y.gds")], "give --surrogate"),
        (
            [
                *base,
                "--output",
                str(setup["root"] / "z.gds"),
                "--spectra-db",
                str(setup["pairs"]),
                "--method",
                "pso",
            ],
            "--method 'pso'",
        ),
        (
            [
                *base,
                "--output",
                str(setup["root"] / "w.gds"),
                "--spectra-db",
                str(setup["pairs"]),
                "--lamp-temperature-k",
                "50",
            ],
            "lamp",
        ),
    ]
    db = ["--spectra-db", str(setup["pairs"])]
    out = ["--output", str(setup["root"] / "v.oas")]
    cases += [
        ([*base, *db, *out, "--lamp-temperature-k", "nan"], "lamp"),
        ([*base, *db, *out, "--wafer-mm", "nan"], "wafer-mm"),
        ([*base, *db, *out, "--wafer-mm", "1000"], "wafer-mm"),
        ([*base, *db, *out, "--wafer-mm", "1", "--edge-exclusion-mm", "0.6"], "leaves nothing"),
        ([*base, *db, *out, "--wafer-mm", "1", "--pad-size-um", "5.3"], "tiles"),
        ([*base, *db, "--output", str(setup["pairs"].with_suffix(".gds"))], "--spectra-db"),
        (
            [
                *base,
                *db,
                "--output",
                str(setup["root"] / "logo.oas"),
                "--placement",
                str(setup["root"] / "logo.png"),
            ],
            "--placement",
        ),
    ]
    inputs = [setup["root"] / "logo.png", setup["probes"], setup["pairs"]]
    before = [p.read_bytes() for p in inputs]
    for args, message in cases:
        code, _, stderr = cli(*args)
        assert code != 0 and message in stderr, stderr
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 3
    assert [p.read_bytes() for p in inputs] == before
    assert not (setup["root"] / "v.oas").exists() and not (setup["root"] / "v.h5").exists()


def test_design_chip_streams_an_image_over_a_wafer(
    cli: Callable[..., tuple[int, str, str]], setup: dict[str, Path]
) -> None:
    import json

    import klayout.db as kdb

    from layout.manifest import Role, read_manifest

    out = setup["root"] / "wafer.oas"
    args = [
        "design",
        "chip",
        "--targets",
        str(setup["root"] / "logo.png"),
        "--model",
        str(setup["model"]),
        "--probes",
        str(setup["probes"]),
        "--spectra-db",
        str(setup["pairs"]),
        "--thickness-nm",
        "178",
        "--pad-size-um",
        "5",
        "--wafer-mm",
        "0.2",
        "--chip-id",
        "w",
        "--no-progress",
    ]
    code, _, stderr = cli(*args, "--output", str(out.with_suffix(".gds")))
    assert code != 0 and "end it in .oas" in stderr
    code, _, stderr = cli(*args, "--output", str(out))
    assert code == 0, stderr
    m = read_manifest(out.with_suffix(".h5"))
    pads = m.pads.role == Role.DATASET
    assert m.pad_target is not None and m.target_ids == ("#5a6478", "#786e64")
    # 0.2 mm of 5 µm pads: a 40 x 40 grid cut to the disc; the logo's corner is transparent.
    assert 1000 < pads.sum() < 1600 and (m.pad_target[pads] >= 0).all()
    assert set(m.designs.period_nm.tolist()) == {500.0}  # the only period that tiles 5 µm
    by_target = {}
    for t, d in zip(m.pad_target[pads], m.pads.design_id[pads], strict=True):
        assert by_target.setdefault(int(t), int(d)) == int(d)  # one design per target
    summary = json.loads(out.with_name("wafer_design.json").read_text())
    assert summary["wafer"]["pads"] == int(pads.sum())
    layout = kdb.Layout()
    layout.read(str(out))
    top = layout.top_cell()
    assert top.name == "WAFER_w" and layout.cells() == 1 + len(m.designs)
    assert 0 < top.child_instances() < pads.sum()  # runs of pads merged into references
    code, _, stderr = cli(*args, "--output", str(out))
    assert code != 0 and "--force" in stderr  # a written wafer is not replaced silently
