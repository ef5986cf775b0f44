"""Curation (issue 6): replica cross-checks on synthetic spectra with known noise and planted
defects, the pairs built from what survives, the report, and ``metascan curate``."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from numpy.typing import NDArray

from dataset.array_spectra_file import ArraySpectra, write_array_spectra
from dataset.curation import CurationResult, Decision, curate
from dataset.curation_report import write_report
from dataset.pairs_file import read_pairs
from dataset.quality import PadFlag
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest, Role, read_manifest, write_manifest
from layout.raster import rasterize

W = 29
WAVELENGTH_NM = np.linspace(450.0, 730.0, W)
NOISE = 0.003  # rms per value: a realistic extraction noise
THRESHOLD = 1e-3
Truth = dict[int, NDArray[np.float64]]


def chip(
    chip_id: str = "C1",
    replicas: int = 2,
    thickness_nm: float = 178.0,
    arrays: int = 1,
    rows: int = 20,
    cols: int = 20,
    seed: int = 3,
) -> ChipManifest:
    designs = generate(arrays * rows * cols, seed=seed)
    config = ChipConfig(
        thickness_nm=thickness_nm,
        arrays=arrays,
        rows=rows,
        cols=cols,
        replicas=replicas,
        companion_size=3,
        chip_id=chip_id,
    )
    return plan_chip(designs, config)


def truth_for(manifest: ChipManifest, seed: int = 0) -> Truth:
    """A smooth true spectrum per design (x and y), well inside 0-1."""
    rng = np.random.default_rng(seed)
    ids = manifest.designs.design_id
    phase = rng.uniform(0, 2 * np.pi, (ids.size, 2, 1))
    period = rng.uniform(60, 200, (ids.size, 2, 1))
    base = rng.uniform(0.3, 0.7, (ids.size, 2, 1))
    spectra = base + 0.25 * np.sin(2 * np.pi * WAVELENGTH_NM / period + phase)
    return dict(zip(ids.tolist(), spectra, strict=True))


def measure(
    manifest: ChipManifest,
    truth: Truth,
    rng: np.random.Generator,
    *,
    noise: float = NOISE,
    alter: Callable[[str, NDArray[np.int64], NDArray[np.float64], NDArray[np.uint16]], None]
    | None = None,
    wavelength_nm: NDArray[np.float64] = WAVELENGTH_NM,
    **attributes: Any,
) -> list[ArraySpectra]:
    """One ArraySpectra per placed array (companions included): truth plus Gaussian noise;
    ``alter(array_name, design_id, transmission, flags)`` plants defects and flags in place."""
    out = []
    pads = manifest.pads
    for a, name in enumerate(manifest.arrays.name):
        rows = (
            (pads.array_id == manifest.arrays.array_id[a])
            & (pads.replica == manifest.arrays.replica[a])
            & (pads.role == manifest.arrays.role[a])
        )
        table = pads.select(rows)
        n = len(table)
        t = np.stack([truth[int(i)] for i in table.design_id])
        t = t + rng.normal(0.0, noise, t.shape)
        flags = np.zeros(n, np.uint16)
        if alter is not None:
            alter(name, table.design_id, t, flags)
        spread = np.where(np.isnan(t), np.nan, 0.01)
        fields: dict[str, Any] = {
            "chip_id": manifest.chip_id,
            "manifest_sha256": manifest.content_sha256(),
            "array_name": name,
            "hypercubes": [f"{name}.nc"],
            "registration_method": "fiducial-affine",
            "registration_residual_px": 0.2,
            "erosion_margin_um": 1.0,
            "flag_thresholds": {"non_uniform_spread": 0.05},
            "reference_compensation": True,
        }
        fields.update(attributes)
        out.append(
            ArraySpectra.from_pads(
                table,
                transmission=t,
                spread=spread,
                pixel_count=np.full((n, 2), 300),
                flags=flags,
                wavelength_nm=wavelength_nm,
                **fields,
            )
        )
    return out


@pytest.fixture(scope="module")
def two_replicas() -> ChipManifest:
    return chip()


@pytest.fixture(scope="module")
def truth(two_replicas: ChipManifest) -> Truth:
    return truth_for(two_replicas)


def design_ids(manifest: ChipManifest) -> NDArray[np.int64]:
    return np.unique(manifest.pads.design_id[manifest.pads.role == Role.DATASET])


def corrupt(t: NDArray[np.float64], rows: NDArray[np.bool_], rng: np.random.Generator) -> None:
    """The virtual chip's two defects on one replica: half the chosen pads missing (bare glass,
    flat ~0.93) and half contaminated (a particle scaling transmission by 0.5-0.9)."""
    idx = np.flatnonzero(rows)
    missing, dirty = idx[::2], idx[1::2]
    t[missing] = 0.93 + rng.normal(0.0, NOISE, t[missing].shape)
    t[dirty] *= rng.uniform(0.5, 0.9, (dirty.size, 1, 1))


def rates(result: CurationResult, bad: set[int]) -> tuple[float, float]:
    """(fraction of corrupted designs rejected, fraction of good designs rejected)."""
    rejected = result.decision != Decision.KEPT
    is_bad = np.isin(result.design_id, list(bad))
    return float(rejected[is_bad].mean()), float(rejected[~is_bad].mean())


@pytest.mark.parametrize("replicas", [2, 3])
def test_defects_on_one_replica_are_rejected_and_good_designs_kept(replicas: int) -> None:
    manifest = chip(replicas=replicas, rows=25, cols=20)
    truth = truth_for(manifest)
    ids = design_ids(manifest)
    rng = np.random.default_rng(1)
    bad = set(rng.choice(ids, ids.size // 10, replace=False).tolist())

    def alter(name: str, d: NDArray[np.int64], t: NDArray[np.float64], f: Any) -> None:
        if name == "A0R1":
            corrupt(t, np.isin(d, list(bad)), rng)

    result = curate(measure(manifest, truth, rng, alter=alter), {manifest.chip_id: manifest})
    bad_rejected, good_rejected = rates(result, bad)
    print(
        f"{replicas} replicas, noise {NOISE}: corrupted designs rejected {bad_rejected:.1%}, "
        f"good designs rejected {good_rejected:.1%}, median good MSE "
        f"{np.median(result.replica_mse[~np.isin(result.design_id, list(bad))]):.2g}"
    )
    assert bad_rejected >= 0.90
    assert good_rejected <= 0.02
    # Pad view: every corrupted pad ends up in no pair.
    pad_ids = np.where(result.pad_design >= 0, result.design_id[result.pad_design], -1)
    on_r1 = (result.pad_replica == 1) & np.isin(pad_ids, list(bad))
    assert result.pad_rejected[on_r1].mean() >= 0.90
    assert (
        result.pad_counts()["companion"] == 9
        and not result.pad_rejected[result.pad_role == Role.COMPANION].any()
    )


def test_replica_mse_is_the_largest_pairwise_mse(two_replicas: ChipManifest, truth: Truth) -> None:
    """Brute force over every pair of usable replicas, per design, for 1..4 replicas (two
    chips of equal thickness pool their replicas; some pads flagged away)."""
    rng = np.random.default_rng(5)
    second = chip("C2", replicas=2)  # same library (same seed), same thickness

    def alter(name: str, d: NDArray[np.int64], t: NDArray[np.float64], f: Any) -> None:
        f[rng.random(d.size) < 0.3] = PadFlag.LOW_SIGNAL
        t[rng.random(d.size) < 0.2] *= 0.8

    parts = measure(two_replicas, truth, rng, alter=alter) + measure(
        second, truth, rng, alter=alter
    )
    result = curate(parts, {"C1": two_replicas, "C2": second})
    assert set(np.unique(result.replicas).tolist()) == {0, 1, 2, 3, 4}
    values: dict[int, list[NDArray[np.float64]]] = {}
    for p in parts:
        for i in np.flatnonzero((p.role == Role.DATASET) & (p.flags == 0)):
            values.setdefault(int(p.design_id[i]), []).append(p.transmission[i])
    for row, d in enumerate(result.design_id.tolist()):
        reps = values.get(d, [])
        assert result.replicas[row] == len(reps)
        if len(reps) < 2:
            assert np.isnan(result.replica_mse[row])
            continue
        expected = max(np.mean((a - b) ** 2) for a, b in itertools.combinations(reps, 2))
        assert result.replica_mse[row] == pytest.approx(expected, rel=1e-12)
        assert (result.decision[row] == Decision.REPLICA_MSE) == (expected > THRESHOLD)
        np.testing.assert_allclose(result.spectrum[row], np.mean(reps, axis=0), atol=1e-12)


def test_kept_pairs_carry_the_mean_spectrum_geometry_and_params(
    two_replicas: ChipManifest, truth: Truth
) -> None:
    rng = np.random.default_rng(2)
    parts = measure(two_replicas, truth, rng)
    pairs = curate(parts, {"C1": two_replicas}).to_pairs(seed=0)
    assert len(pairs) == design_ids(two_replicas).size  # all good at this noise
    by_id: dict[int, list[NDArray[np.float64]]] = {}
    for p in parts[:2]:  # A0R0, A0R1
        for d, t in zip(p.design_id.tolist(), p.transmission, strict=True):
            by_id.setdefault(d, []).append(t)
    expected = np.stack([np.mean(by_id[d], axis=0) for d in pairs.design_id.tolist()])
    assert pairs.spectra.dtype == np.float32
    np.testing.assert_allclose(pairs.spectra, expected, atol=1e-6)
    # Averaging two replicas brings the spectrum closer to the truth than one replica.
    true = np.stack([truth[d] for d in pairs.design_id.tolist()])
    one = np.stack([by_id[d][0] for d in pairs.design_id.tolist()])
    assert np.sqrt(np.mean((pairs.spectra - true) ** 2)) < 0.8 * np.sqrt(np.mean((one - true) ** 2))
    rows = two_replicas.designs.index_of(pairs.design_id)
    np.testing.assert_array_equal(pairs.geometry, rasterize(two_replicas.designs.take(rows)))
    np.testing.assert_allclose(pairs.params[:, 0], two_replicas.designs.period_nm[rows] / 1000)
    np.testing.assert_allclose(pairs.params[:, 1], 0.178)


def test_counts_by_reason_are_exact(two_replicas: ChipManifest, truth: Truth) -> None:
    ids = design_ids(two_replicas)
    rng = np.random.default_rng(3)
    pick = rng.permutation(ids)
    saturated, nonuniform, both_missing, disagree = pick[:7], pick[7:12], pick[12:16], pick[16:27]
    rep0_doubtful = pick[27:30]  # registration doubtful on replica 0 only

    def alter(name: str, d: NDArray[np.int64], t: NDArray[np.float64], f: Any) -> None:
        if name == "A0R0":
            f[np.isin(d, saturated)] |= np.uint16(PadFlag.SATURATED)
            f[np.isin(d, rep0_doubtful)] |= np.uint16(PadFlag.REGISTRATION_DOUBTFUL)
        if name == "A0R1":
            f[np.isin(d, nonuniform)] |= np.uint16(PadFlag.NON_UNIFORM | PadFlag.LOW_SIGNAL)
            t[np.isin(d, disagree)] *= 0.6
        if name in ("A0R0", "A0R1"):
            gone = np.isin(d, both_missing)
            f[gone] |= np.uint16(PadFlag.MISSING)
            t[gone] = np.nan
        if name == "A0C":  # companions never count, whatever their flags
            f[:] = PadFlag.SATURATED

    parts = measure(two_replicas, truth, rng, alter=alter)
    result = curate(parts, {"C1": two_replicas})
    single = len(saturated) + len(nonuniform) + len(rep0_doubtful)
    assert result.flag_counts() == {
        "saturated": 7,
        "low_signal": 5,
        "registration_doubtful": 3,
        "non_uniform": 5,
        "missing": 2 * 4,
    }
    assert result.design_counts() == {
        "kept": ids.size - single - 4 - 11,
        "replica_mse": 11,
        "single_replica": single,
        "no_usable_replica": 4,
    }
    assert result.pad_counts() == {
        "total": 2 * ids.size + 9,
        "dataset": 2 * ids.size,
        "companion": 9,
        "fiducial": 0,
        "dataset_flagged": 7 + 5 + 3 + 2 * 4,
        "dataset_usable": 2 * ids.size - (7 + 5 + 3 + 2 * 4),
    }
    prov = result.provenance()
    assert prov["designs_rejected_by_reason"] == {
        "replica_mse": 11,
        "single_replica": single,
        "no_usable_replica": 4,
    }
    assert prov["hypercubes"] == ["A0R0.nc", "A0R1.nc", "A0C.nc"]
    # Keeping singles: the unverified designs come back with their lone replica's spectrum.
    kept = curate(parts, {"C1": two_replicas}, keep_single=True)
    assert kept.design_counts()["kept"] == ids.size - 4 - 11
    row = int(np.flatnonzero(kept.design_id == saturated[0])[0])
    lone = parts[1].transmission[int(np.flatnonzero(parts[1].design_id == saturated[0])[0])]
    np.testing.assert_array_equal(kept.spectrum[row], lone)
    assert np.isnan(kept.replica_mse[row])


def test_only_replicas_scanned_count_and_unscanned_designs_are_reported() -> None:
    manifest = chip(arrays=2, rows=10, cols=10)
    truth = truth_for(manifest)
    parts = measure(manifest, truth, np.random.default_rng(0))
    only_a0 = [p for p in parts if p.array_name.startswith("A0")]
    result = curate(only_a0, {"C1": manifest})
    assert result.designs_not_scanned == 100 and len(result) == 100
    only_r0 = curate([parts[0]], {"C1": manifest})
    assert only_r0.design_counts()["single_replica"] == 100


def test_no_dataset_pads_gives_an_empty_result_and_report(
    tmp_path: Path, two_replicas: ChipManifest, truth: Truth
) -> None:
    companion = measure(two_replicas, truth, np.random.default_rng(0))[-1]
    result = curate([companion], {"C1": two_replicas})
    assert len(result) == 0 and result.pad_counts()["companion"] == len(companion) == 9
    assert len(result.to_pairs()) == 0
    report = write_report(result, tmp_path / "r")
    assert "No design had two usable replicas." in report.read_text()
    assert (tmp_path / "r" / "replica_mse.png").exists()
    assert not (tmp_path / "r" / "examples.png").exists()


def test_split_is_grouped_by_design_and_seeded(two_replicas: ChipManifest, truth: Truth) -> None:
    """A second chip with a thicker film: same design ids, different structures, so two rows
    per design; they must share a split."""
    thick = chip("C9", thickness_nm=195.0)
    rng = np.random.default_rng(4)
    parts = measure(two_replicas, truth, rng) + measure(thick, truth_for(thick, 1), rng)
    result = curate(parts, {"C1": two_replicas, "C9": thick})
    pairs = result.to_pairs(seed=11)
    n = design_ids(two_replicas).size
    assert len(pairs) == 2 * n
    assert sorted(set(pairs.params[:, 1].tolist())) == [0.178, 0.195]
    for d in np.unique(pairs.design_id):
        assert np.unique(pairs.split[pairs.design_id == d]).size == 1
    fractions = np.bincount(pairs.split, minlength=3) / len(pairs)
    np.testing.assert_allclose(fractions, [0.8, 0.1, 0.1], atol=0.01)
    again = result.to_pairs(seed=11)
    other = result.to_pairs(seed=12)
    np.testing.assert_array_equal(pairs.split, again.split)
    assert np.any(pairs.split != other.split)
    assert pairs.provenance["chips"] == ["C1", "C9"] and pairs.provenance["split_seed"] == 11


@pytest.mark.parametrize("threshold", [0.0, -1e-3, float("nan"), float("inf")])
def test_bad_threshold_is_one_line(
    two_replicas: ChipManifest, truth: Truth, threshold: float
) -> None:
    parts = measure(two_replicas, truth, np.random.default_rng(0))[:1]
    with pytest.raises(
        ValueError,
        match=r"threshold .* (is outside the allowed range|must be a finite number in) \(0, 1\]",
    ) as e:
        curate(parts, {"C1": two_replicas}, threshold)
    assert "\n" not in str(e.value)


def test_bad_inputs_are_one_line(two_replicas: ChipManifest, truth: Truth) -> None:
    rng = np.random.default_rng(0)
    parts = measure(two_replicas, truth, rng)
    other = chip("C2")
    shifted = measure(other, truth_for(other), rng, wavelength_nm=WAVELENGTH_NM + 5.0)
    only_x = ArraySpectra.from_pads(
        parts[0].pad_table(),
        transmission=parts[0].transmission[:, :1],
        spread=parts[0].spread[:, :1],
        pixel_count=parts[0].pixel_count[:, :1],
        flags=parts[0].flags,
        wavelength_nm=WAVELENGTH_NM,
        polarization=("x",),
        chip_id="C3",
        manifest_sha256="c3" * 32,
        array_name="A0R0",
        registration_method="m",
        registration_residual_px=0.0,
        erosion_margin_um=1.0,
        flag_thresholds={},
        reference_compensation=True,
    )
    cases: list[tuple[list[ArraySpectra], dict[str, ChipManifest], str]] = [
        ([], {"C1": two_replicas}, "at least one array-spectra input"),
        (parts, {}, "chip_id 'C1' .* has no chip manifest"),
        (parts + shifted, {"C1": two_replicas, "C2": other}, "only identical grids curate"),
        ([parts[0], parts[0]], {"C1": two_replicas}, "appears 2 times"),
        ([only_x], {"C3": two_replicas}, r"pairs need \('x', 'y'\), missing \['y'\]"),
        (parts, {"C1": chip("C1", seed=9)}, "not in the library of the chip manifest"),
    ]
    other_grid = measure(two_replicas, truth, rng, wavelength_nm=WAVELENGTH_NM + 1.0)
    cases.append(([parts[0], other_grid[1]], {"C1": two_replicas}, "only identical grids"))
    for spectra, manifests, message in cases:
        with pytest.raises(ValueError, match=message) as e:
            curate(spectra, manifests)
        assert "\n" not in str(e.value)


# ---- metascan curate -------------------------------------------------------------------------


@pytest.fixture
def scanned(
    tmp_path: Path, two_replicas: ChipManifest, truth: Truth
) -> tuple[Path, Path, set[int]]:
    """chip.h5 and spectra/ with one file per array naming the manifest; 10 % of designs
    contaminated on replica 1."""
    manifest_path = tmp_path / "chip.h5"
    write_manifest(manifest_path, two_replicas)
    ids = design_ids(two_replicas)
    rng = np.random.default_rng(7)
    bad = set(rng.choice(ids, ids.size // 10, replace=False).tolist())

    def alter(name: str, d: NDArray[np.int64], t: NDArray[np.float64], f: Any) -> None:
        if name == "A0R1":
            corrupt(t, np.isin(d, list(bad)), rng)

    spectra_dir = tmp_path / "spectra"
    spectra_dir.mkdir()
    for part in measure(two_replicas, truth, rng, alter=alter):
        write_array_spectra(
            spectra_dir / f"{part.array_name}.h5", part, {"manifest": str(manifest_path)}
        )
    (spectra_dir / "notes.txt").write_text("not a spectra file")
    return manifest_path, spectra_dir, bad


Cli = Callable[..., tuple[int, str, str]]


def test_cli_writes_pairs_and_report(tmp_path: Path, cli: Cli, scanned: Any) -> None:
    manifest_path, spectra_dir, bad = scanned
    out = tmp_path / "pairs.h5"
    code, stdout, err = cli("curate", str(spectra_dir), "--output", str(out), "--seed", "3")
    assert code == 0, err
    assert "wrote" in stdout and "replica_mse" in stdout
    pairs = read_pairs(out)
    assert not set(pairs.design_id.tolist()) & bad
    n = design_ids(read_manifest(manifest_path)).size
    assert len(pairs) >= 0.98 * (n - len(bad))
    prov = pairs.provenance
    assert prov["chips"] == ["C1"] and prov["manifests"] == {"C1": str(manifest_path)}
    assert sorted(Path(f).name for f in prov["spectra_files"]) == ["A0C.h5", "A0R0.h5", "A0R1.h5"]
    assert prov["replica_mse_threshold"] == THRESHOLD and prov["split_seed"] == 3
    assert prov["designs_rejected_by_reason"]["replica_mse"] >= 0.9 * len(bad)
    assert prov["pads_flagged_by_reason"]["missing"] == 0
    report = tmp_path / "pairs_report"
    for name in ("report.md", "replica_mse.png", "reject_reasons.png", "examples.png"):
        assert (report / name).stat().st_size > 0, name
    text = (report / "report.md").read_text()
    assert "**0.001**" in text and "replica_mse" in text
    with h5py.File(out) as f:
        assert f.attrs["software_version"]


def test_cli_explicit_manifest_threshold_and_report_dir(
    tmp_path: Path, cli: Cli, scanned: Any
) -> None:
    manifest_path, spectra_dir, _ = scanned
    files = sorted(str(p) for p in spectra_dir.glob("A0R*.h5"))
    out, report = tmp_path / "strict.h5", tmp_path / "rep"
    code, _, err = cli(
        "curate", *files, "-o", str(out), "--manifest", str(manifest_path),
        "--threshold", "1e-9", "--keep-single", "--report", str(report),
    )  # fmt: skip
    # A threshold below the noise floor rejects every verified design: nothing to write.
    assert code == 2 and err.startswith("error: no design passed curation")
    assert not out.exists() and (report / "report.md").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["SPECTRA", "--threshold", "0"], "--threshold 0.0 is outside the allowed range (0, 1]"),
        (["SPECTRA", "--threshold", "-1"], "is outside the allowed range (0, 1]"),
        (["SPECTRA", "--seed", "-1"], "--seed -1 is outside the allowed range [0, 4294967295]"),
        (["EMPTY"], "holds no array-spectra files"),
        (["NOPE"], "does not exist"),
        (["NOTES"], "not a readable HDF5"),
        (["SPECTRA", "--manifest", "OTHER"], "for chip_id 'C2', and no spectra file is"),
    ],
)
def test_cli_bad_input_is_one_line(
    tmp_path: Path, cli: Cli, scanned: Any, args: list[str], message: str
) -> None:
    _, spectra_dir, _ = scanned
    (tmp_path / "empty").mkdir()
    write_manifest(tmp_path / "other.h5", chip("C2", rows=4, cols=4))
    subst = {
        "SPECTRA": spectra_dir,
        "EMPTY": tmp_path / "empty",
        "NOPE": tmp_path / "nope.h5",
        "NOTES": spectra_dir / "notes.txt",
        "OTHER": tmp_path / "other.h5",
    }
    out = tmp_path / "p.h5"
    code, _, err = cli("curate", *(str(subst.get(a, a)) for a in args), "-o", str(out))
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_cli_chip_without_manifest_and_existing_output(
    tmp_path: Path, cli: Cli, two_replicas: ChipManifest, truth: Truth
) -> None:
    spectra_dir = tmp_path / "spectra"
    spectra_dir.mkdir()
    for part in measure(two_replicas, truth, np.random.default_rng(0)):
        write_array_spectra(spectra_dir / f"{part.array_name}.h5", part)  # names no manifest
    out = tmp_path / "p.h5"
    code, _, err = cli("curate", str(spectra_dir), "-o", str(out))
    assert code == 2 and "chip_id 'C1'" in err and "--manifest" in err
    assert err.count("\n") == 1
    manifest = tmp_path / "chip.h5"
    write_manifest(manifest, two_replicas)
    out.write_bytes(b"")
    code, _, err = cli("curate", str(spectra_dir), "--manifest", str(manifest), "-o", str(out))
    assert code == 2 and "pass --force" in err and err.count("\n") == 1
    assert out.read_bytes() == b""


def test_chips_of_two_films_are_never_curated_together(
    tmp_path: Path, cli: Cli, two_replicas: ChipManifest, truth: Truth
) -> None:
    """The same cells on another film are other structures, and a pairs file has one film."""
    from dataclasses import replace

    asih = replace(chip("C2", replicas=2), material="a-Si:H")
    rng = np.random.default_rng(6)
    one = curate(measure(two_replicas, truth, rng), {"C1": two_replicas}).to_pairs()
    assert one.material == "a-Si"  # the chip's film (the default), recorded in the pairs
    parts = measure(two_replicas, truth, rng) + measure(asih, truth, rng)
    with pytest.raises(
        ValueError, match=r"chip C2 \(its manifest\) \(material 'a-Si:H'\) and chip C1"
    ):
        curate(parts, {"C1": two_replicas, "C2": asih})
    only = curate(measure(asih, truth, rng), {"C2": asih})
    assert only.to_pairs().material == "a-Si:H"
    # The command refuses before comparing anything, naming both manifests.
    spectra_dir = tmp_path / "spectra"
    spectra_dir.mkdir()
    for i, part in enumerate(parts):
        write_array_spectra(spectra_dir / f"{part.chip_id}_{i}.h5", part)
    write_manifest(tmp_path / "c1.h5", two_replicas)
    write_manifest(tmp_path / "c2.h5", asih)
    out = tmp_path / "p.h5"
    code, _, err = cli("curate", str(spectra_dir), "-m", str(tmp_path / "c1.h5"),
                       "-m", str(tmp_path / "c2.h5"), "-o", str(out))  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "c2.h5 (material 'a-Si:H') and manifest" in err and "c1.h5 (material 'a-Si')" in err
    assert not out.exists()
    code, _, err = cli("curate", str(spectra_dir), "-m", str(tmp_path / "c1.h5"), "-m",
                       str(tmp_path / "c2.h5"), "-o", str(out), "--keep-single")  # fmt: skip
    assert code == 2  # still refused: no option mixes films
