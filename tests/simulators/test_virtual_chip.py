"""The virtual chip: fabrication draws, defects, band truth, and ``metascan sim truth``."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from dataset.truth_file import Defect, read_truth
from instruments.protocols import BandwidthMode
from layout.chip import ChipConfig, plan_chip
from layout.generator import generate
from layout.manifest import ChipManifest, PadTable, Role, write_manifest
from simulators.passband import band_weights, fine_grid
from simulators.spectral import AnalyticModel, film_transmission
from simulators.virtual_chip import FabricationConfig, VirtualChip, make_truth

if TYPE_CHECKING:
    from conftest import Cli

MODEL = AnalyticModel()


@pytest.fixture(scope="module")
def manifest() -> ChipManifest:
    """Two arrays of 8x8, three replicas, 3x3 companions, fiducials: 648 rows."""
    config = ChipConfig(thickness_nm=178, arrays=2, rows=8, cols=8, replicas=3, companion_size=3)
    return plan_chip(generate(128, seed=5), config)


def permuted(m: ChipManifest, order: np.ndarray) -> ChipManifest:
    pads = PadTable(*(getattr(m.pads, f.name)[order] for f in fields(PadTable)))
    return replace(m, pads=pads)


def test_same_seed_same_truth_and_order_does_not_matter(manifest: ChipManifest) -> None:
    fab = FabricationConfig(seed=7, missing_fraction=0.05, contamination_fraction=0.05)
    a = make_truth(VirtualChip(manifest, MODEL, fab))
    b = make_truth(VirtualChip(manifest, MODEL, fab))
    np.testing.assert_array_equal(a.transmission, b.transmission)
    np.testing.assert_array_equal(a.size_bias_nm, b.size_bias_nm)
    np.testing.assert_array_equal(a.defect, b.defect)
    order = np.random.default_rng(0).permutation(len(manifest.pads))
    shuffled = VirtualChip(permuted(manifest, order), MODEL, fab)
    np.testing.assert_array_equal(shuffled.size_bias_nm, a.size_bias_nm[order])
    np.testing.assert_array_equal(shuffled.defect, a.defect[order])
    other = VirtualChip(manifest, MODEL, replace(fab, seed=8))
    assert not np.array_equal(other.size_bias_nm, a.size_bias_nm)


def test_dilation_statistics_match_the_config() -> None:
    # Many pads sharing a few designs: the draws need pads, not distinct designs.
    lib = generate(4, seed=1)
    n = 40_000
    idx = np.arange(n)
    pads = PadTable(
        array_id=(idx // 10_000).astype(np.int32),
        replica=(idx // 5_000 % 2).astype(np.int32),
        role=np.zeros(n, dtype=np.int8),
        row=(idx % 5_000 // 100).astype(np.int32),
        col=(idx % 100).astype(np.int32),
        x_um=(idx * 6.0).astype(np.float64),
        y_um=np.zeros(n),
        design_id=lib.design_id[idx % 4],
    )
    m = ChipManifest("big", 178.0, 6.0, 6.0, None, pads, lib, {}, material="a-Si")  # type: ignore[arg-type]
    bias = VirtualChip(m, MODEL, FabricationConfig(seed=3, dilation_sd_nm=10.0)).size_bias_nm
    se = 10.0 / np.sqrt(n)
    assert abs(bias.mean() - 4.0) < 4 * se
    assert abs(bias.std() - 10.0) < 4 * 10.0 / np.sqrt(2 * n)
    within_one_sd = np.mean(np.abs(bias - 4.0) < 10.0)
    assert abs(within_one_sd - 0.6827) < 0.01  # Gaussian, not merely the right variance
    assert len(np.unique(bias)) == n
    zero = VirtualChip(m, MODEL, FabricationConfig(seed=3, dilation_sd_nm=0.0)).size_bias_nm
    np.testing.assert_array_equal(zero, 4.0)


def test_replicas_differ_in_dilation_but_not_much_in_spectrum(manifest: ChipManifest) -> None:
    chip = VirtualChip(manifest, MODEL, FabricationConfig(seed=1))
    transmission, _ = chip.band_transmission()
    pads = manifest.pads
    dataset = np.flatnonzero(pads.role == Role.DATASET)
    by_design: dict[int, list[int]] = {}
    for i in dataset:
        by_design.setdefault(int(pads.design_id[i]), []).append(int(i))
    pairs = np.array([rows[:2] for rows in by_design.values()])
    assert np.all(chip.size_bias_nm[pairs[:, 0]] != chip.size_bias_nm[pairs[:, 1]])
    same = np.abs(transmission[pairs[:, 0]] - transmission[pairs[:, 1]]).mean()
    shuffled = np.roll(pairs[:, 1], 1)
    different = np.abs(transmission[pairs[:, 0]] - transmission[shuffled]).mean()
    assert 0 < same < 0.5 * different
    # With no spread every replica is the same fabricated design: identical spectra.
    exact = VirtualChip(manifest, MODEL, FabricationConfig(seed=1, dilation_sd_nm=0.0))
    t0, _ = exact.band_transmission()
    np.testing.assert_array_equal(t0[pairs[:, 0]], t0[pairs[:, 1]])


def test_defects_sit_on_one_replica_and_change_what_they_should(manifest: ChipManifest) -> None:
    fab = FabricationConfig(seed=2, missing_fraction=0.2, contamination_fraction=0.2)
    chip = VirtualChip(manifest, MODEL, fab)
    clean = VirtualChip(manifest, MODEL, replace(fab, missing_fraction=0, contamination_fraction=0))
    pads = manifest.pads
    hit = chip.defect != Defect.NONE
    assert hit.any() and np.unique(pads.replica[hit]).tolist() == [chip.defect_replica]
    assert np.all(pads.role[hit] == Role.DATASET)
    on_replica = np.sum((pads.role == Role.DATASET) & (pads.replica == chip.defect_replica))
    assert 0.25 < hit.sum() / on_replica < 0.55
    np.testing.assert_array_equal(chip.size_bias_nm, clean.size_bias_nm)  # independent streams
    t, glass = chip.band_transmission()
    t_clean, _ = clean.band_transmission()
    missing = chip.defect == Defect.MISSING
    dirty = chip.defect == Defect.CONTAMINATED
    np.testing.assert_allclose(t[missing], np.broadcast_to(glass, t[missing].shape))
    np.testing.assert_allclose(t[dirty], 0.5 * t_clean[dirty])
    np.testing.assert_array_equal(t[~hit], t_clean[~hit])
    fixed = VirtualChip(manifest, MODEL, replace(fab, defect_replica=2))
    assert np.all(manifest.pads.replica[fixed.defect != Defect.NONE] == 2)
    with pytest.raises(ValueError, match="not on this chip"):
        VirtualChip(manifest, MODEL, replace(fab, defect_replica=9))


def test_fiducials_are_unpatterned_film_and_glass_is_bare_substrate(
    manifest: ChipManifest,
) -> None:
    chip = VirtualChip(manifest, MODEL)
    t, glass = chip.band_transmission(mode=BandwidthMode.WIDE)
    lam = fine_grid(mode=BandwidthMode.WIDE)
    w = band_weights(lam, np.arange(450.0, 731.0, 10.0), BandwidthMode.WIDE)
    assert chip.material == manifest.material == "a-Si"  # the manifest's film, the default
    film = w @ film_transmission(lam, 178.0, "a-Si")
    fid = manifest.pads.role == Role.FIDUCIAL
    assert fid.any()
    np.testing.assert_allclose(t[fid], np.broadcast_to(film, t[fid].shape))
    assert np.all((glass > 0.95) & (glass < 0.97))  # 4n / (1 + n)^2 for fused silica
    assert np.all(chip.size_bias_nm[fid] == 0)


def test_band_truth_is_the_passband_average_of_fine_spectra(manifest: ChipManifest) -> None:
    chip = VirtualChip(manifest, MODEL, FabricationConfig(seed=4))
    lam = fine_grid()
    fine = chip.fine_spectra(lam)
    t, _ = chip.band_transmission()
    w = band_weights(lam, np.arange(450.0, 731.0, 10.0), BandwidthMode.NARROW)
    np.testing.assert_allclose(t, fine @ w.T, atol=1e-12)


def test_config_rejects_out_of_range_values() -> None:
    with pytest.raises(ValueError, match=r"dilation_sd_nm=-1.0 must be in \[0, 50\]"):
        FabricationConfig(dilation_sd_nm=-1.0)
    with pytest.raises(ValueError, match="<= 1"):
        FabricationConfig(missing_fraction=0.7, contamination_fraction=0.7)


def test_truth_command_writes_a_readable_truth_file(
    tmp_path: Path, cli: Cli, manifest: ChipManifest
) -> None:
    chip_path, out = tmp_path / "chip.h5", tmp_path / "truth.h5"
    write_manifest(chip_path, manifest)
    code, stdout, err = cli("sim", "truth", "--manifest", str(chip_path), "--output", str(out),
                            "--seed", "3", "--bandwidth", "medium", "--defect-fraction", "0.2")  # fmt: skip
    assert code == 0, err
    assert f"wrote truth for {len(manifest.pads)} pads x 2 polarizations x 29 medium" in stdout
    assert "spectra" in err  # the progress bar
    truth = read_truth(out)
    assert truth.transmission.shape == (len(manifest.pads), 2, 29)
    assert truth.bandwidth_mode == "medium"
    assert truth.provenance["chip_id"] == manifest.chip_id
    assert truth.provenance["spectral_model"] == "analytic"
    assert truth.provenance["fabrication"]["seed"] == 3
    assert truth.provenance["manifest"] == str(chip_path)
    assert (truth.defect != Defect.NONE).any()
    np.testing.assert_array_equal(truth.design_id, manifest.pads.design_id)
    direct = make_truth(
        VirtualChip(manifest, MODEL, FabricationConfig(seed=3, missing_fraction=0.1,
                                                        contamination_fraction=0.1)),
        mode=BandwidthMode.MEDIUM,
    )  # fmt: skip
    np.testing.assert_allclose(truth.transmission, direct.transmission)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--manifest", "missing.h5"], "does not exist"),
        (["--model", "fdtd"], "known: analytic, rcwa"),
        (["--bandwidth", "black"], "use one of: wide, medium, narrow"),
        (["--dilation-sd-nm", "80"], "is outside the allowed range [0, 50] nm"),
        (["--defect-fraction", "1.5"], "is outside the allowed range [0, 1]"),
    ],
)
def test_truth_command_errors_are_one_line(
    tmp_path: Path, cli: Cli, manifest: ChipManifest, args: list[str], message: str
) -> None:
    chip_path = tmp_path / "chip.h5"
    write_manifest(chip_path, manifest)
    base = {"--manifest": str(chip_path), "--output": str(tmp_path / "t.h5")}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = str(tmp_path / value) if key == "--manifest" else value
    code, _, err = cli("sim", "truth", *[x for kv in base.items() for x in kv])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "t.h5").exists()


def test_the_chip_is_simulated_in_its_manifests_film(
    tmp_path: Path, cli: Cli, manifest: ChipManifest
) -> None:
    """The film comes from the manifest; `sim truth --material` may only confirm it."""
    asih = replace(manifest, material="a-Si:H")
    chip_path = tmp_path / "chip.h5"
    write_manifest(chip_path, asih)
    code, _, err = cli("sim", "truth", "-m", str(chip_path), "-o", str(tmp_path / "t.h5"),
                       "--material", "a-Si:H")  # fmt: skip
    assert code == 0, err
    truth = read_truth(tmp_path / "t.h5")
    assert truth.material == "a-Si:H"
    np.testing.assert_allclose(
        truth.transmission, make_truth(VirtualChip(asih, MODEL)).transmission, atol=1e-12
    )
    default = make_truth(VirtualChip(manifest, MODEL))
    assert np.abs(default.transmission - truth.transmission).max() > 0.05  # another film
    code, _, err = cli("sim", "truth", "-m", str(chip_path), "-o", str(tmp_path / "u.h5"),
                       "--material", "a-Si")  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert "--material 'a-Si' differs from the material of chip manifest" in err
    assert "('a-Si:H')" in err and not (tmp_path / "u.h5").exists()
