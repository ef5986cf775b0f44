"""The simulated bench as fab and microscope for inverse design: what would a chosen design
measure, and how close is that to the target?

A design is judged in the world its model learned from, read from that data's provenance:

* **synthetic pairs** (``metascan sim pairs``): the spectral model, material and options they
  record, sampled at the band centres, relative to the bare substrate, no fabrication bias: the
  very function that made the training data;
* **a chip's truth file** (``metascan sim truth``), for a model trained on pairs curated from a
  scan: the same spectral model and material, the chip's fabrication (mean size bias plus a
  seeded per-design dilation, as the virtual chip gives each pad) and the filter's passband,
  exactly as the virtual chip computes its ground truth.

Either way the world's film material is the file's own (``material``), and designs chosen by a
model of another film are refused (:func:`check_world`): they would be judged in a film they were
not chosen for.

Scores are the targets file's weighted MSE (:func:`dataset.targets_file.weighted_mse`), never
anything the model itself predicts.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from common.versioned_hdf5 import has_schema
from dataset.chosen_designs_file import ChosenDesigns
from dataset.pairs_file import read_pairs
from dataset.targets_file import Targets, mse_quantiles, nearest_weighted_mse, weighted_mse
from dataset.truth_file import read_truth
from instruments.protocols import BandwidthMode
from layout import material as film
from layout.design import DesignLibrary
from simulators.passband import PassbandConfig, band_weights, fine_grid
from simulators.spectral import bare_substrate_transmission, get_model

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class World:
    """What turns a design into a measured relative spectrum."""

    source: str
    spectral_model: str
    model_options: dict[str, Any]
    material: str
    mean_bias_nm: float = 0.0
    dilation_sd_nm: float = 0.0
    passband: PassbandConfig | None = None  # None: sampled at the band centres
    bandwidth_mode: str = "narrow"
    seed: int = 0
    fabrications: int = 1  # independent fabrications measured per design (their MSEs averaged)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "spectral_model": self.spectral_model,
            "model_options": self.model_options,
            "material": self.material,
            "mean_bias_nm": self.mean_bias_nm,
            "dilation_sd_nm": self.dilation_sd_nm,
            "passband": self.passband is not None,
            "bandwidth_mode": self.bandwidth_mode,
            "fabrications": self.fabrications,
        }

    def with_fabrication(self, dilation_sd_nm: float | None, fabrications: int) -> World:
        """This world with another pad-to-pad dilation spread (None: its own) and each design
        fabricated ``fabrications`` times: a design's score is then its expected measured MSE
        over the fab's spread, what ``design optimize --robust`` aims at."""
        if fabrications < 1:
            raise ValueError(f"--fabrications {fabrications} must be >= 1")
        if dilation_sd_nm is not None and not (np.isfinite(dilation_sd_nm) and dilation_sd_nm >= 0):
            raise ValueError(f"--dilation-sd-nm {dilation_sd_nm} must be a finite number >= 0")
        sd = self.dilation_sd_nm if dilation_sd_nm is None else float(dilation_sd_nm)
        return replace(self, dilation_sd_nm=sd, fabrications=fabrications)

    def measure(
        self,
        library: DesignLibrary,
        thickness_nm: FloatArray,
        wavelength_nm: FloatArray,
        batch_size: int = 4096,
        progress: bool = False,
    ) -> FloatArray:
        """(N, 2, W) relative transmission of the designs as fabricated and measured."""
        model = get_model(self.spectral_model, **self.model_options)
        lam = np.asarray(wavelength_nm, dtype=np.float64)
        mode = BandwidthMode(self.bandwidth_mode)
        if self.passband is not None:
            fine = fine_grid(lam, mode, self.passband)
            weights = band_weights(fine, lam, mode, self.passband)
        else:
            fine, weights = lam, np.eye(lam.size)
        glass = weights @ bare_substrate_transmission(fine)
        rng = np.random.default_rng([self.seed, 0xFAB])
        bias = self.mean_bias_nm + self.dilation_sd_nm * rng.standard_normal(len(library))
        out = np.empty((len(library), 2, lam.size))
        with tqdm(total=len(library), desc="bench", unit="design", disable=not progress) as bar:
            for start in range(0, len(library), batch_size):
                rows = np.arange(start, min(start + batch_size, len(library)))
                for t in np.unique(thickness_nm[rows]):
                    pick = rows[thickness_nm[rows] == t]
                    spectra = model.spectra(
                        library.take(pick),
                        fine,
                        thickness_nm=float(t),
                        material=self.material,
                        size_bias_nm=bias[pick],
                    )
                    out[pick] = spectra @ weights.T
                bar.update(rows.size)
        return np.clip(out / glass, 0.0, None)


def world_from(path: Path, seed: int = 0) -> World:
    """The world of a synthetic pairs file or a chip's truth file (module docstring)."""
    from dataset.truth_file import SCHEMA as TRUTH_SCHEMA

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--world {path} does not exist (a synthetic pairs or truth file)")
    if has_schema(path, TRUTH_SCHEMA):
        truth = read_truth(path)
        p = truth.provenance
        fab = dict(p.get("fabrication") or {})
        pb = dict(p.get("passband") or {})
        if "qe_table" in pb:
            pb["qe_table"] = tuple(tuple(x) for x in pb["qe_table"])
        return World(
            source=f"truth file {path}",
            spectral_model=str(p["spectral_model"]),
            model_options=_options(str(p["spectral_model"]), p.get("spectral_model_config")),
            material=truth.material,
            mean_bias_nm=float(fab.get("mean_bias_nm", 0.0)),
            dilation_sd_nm=float(fab.get("dilation_sd_nm", 0.0)),
            passband=PassbandConfig(**pb),
            bandwidth_mode=str(truth.bandwidth_mode),
            seed=seed,
        )
    pairs = read_pairs(path)
    prov = pairs.provenance
    if prov.get("source") != "synthetic":
        raise ValueError(
            f"{path} holds measured pairs, which do not record the bench; give the chip's truth "
            "file (metascan sim truth) as --world"
        )
    cfg = dict(prov["config"])
    return World(
        source=f"synthetic pairs {path}",
        spectral_model=str(cfg["model"]),
        model_options=dict(cfg.get("model_options") or {}),
        material=pairs.material,
        seed=seed,
    )


def check_world(world: World, chosen: ChosenDesigns, targets: Targets, designs: str) -> None:
    """Refuse a world of another film than the model that chose the designs, or than the
    targets (when a film made them)."""
    film.require(world.material, f"world {world.source}", chosen.material, f"designs {designs}")
    targets.check_material(world.material, f"world {world.source}")


def _options(name: str, described: Any) -> dict[str, Any]:
    """The options a truth file's spectral model ran with. Its provenance holds the model's
    ``describe()``, which is not a constructor's input; a model with default settings is
    rebuilt exactly, any other is refused rather than judged in a different world."""
    default = json.loads(json.dumps(get_model(name).describe()))
    if json.loads(json.dumps(described)) != default:
        raise ValueError(
            f"the truth file's {name} spectral model has non-default settings; the bench cannot "
            "rebuild them from its provenance, so it cannot judge designs in that world"
        )
    return {}


@dataclass(frozen=True, eq=False)
class BenchReport:
    """What the bench measured of each target's rank-1 design, and the figures per size."""

    world: dict[str, Any]
    sizes: list[dict[str, Any]]  # per database size: quantiles of model, oracle, random
    per_target_mse: FloatArray  # (M,) one per rank-1 choice
    target_rows: NDArray[np.int64]  # (M,) the targets-file row of each choice
    database_size: NDArray[np.int64]  # (M,)
    measured: FloatArray  # (M, 2, W) the spectra the bench measured
    library: DesignLibrary  # (M,) the designs measured
    thickness_nm: FloatArray  # (M,)

    def summary(self) -> dict[str, Any]:
        """The JSON part: the world and the per-size figures."""
        return {"world": self.world, "sizes": self.sizes}


def evaluate_chosen(
    world: World,
    chosen: ChosenDesigns,
    targets: Targets,
    probes: tuple[DesignLibrary, FloatArray] | None = None,
    random_seed: int = 0,
    progress: bool = False,
) -> BenchReport:
    """Per database size: the measured weighted MSE of each target's rank-1 design; with
    ``probes`` (the database, in build order) the in-database oracle (the probe whose measured
    spectrum best matches, among the first ``size``) and a random probe, for comparison."""
    index = {t: i for i, t in enumerate(targets.target_id)}
    top = chosen.rank == 1
    missing = sorted(set(np.asarray(chosen.target_id)[top]) - index.keys())
    if missing:
        raise ValueError(
            f"chosen designs name targets not in the targets file, e.g. {missing[0]!r}"
        )
    lam = targets.wavelength_nm
    sizes = sorted(set(chosen.database_size[top].tolist()))
    designs = chosen.chosen().take(np.flatnonzero(top))
    tid = np.array([index[t] for t in np.asarray(chosen.target_id)[top]])
    k = world.fabrications
    draws = np.repeat(np.arange(len(designs)), k)  # each design's fabrications side by side
    made = world.measure(designs.take(draws), chosen.thickness_nm[top][draws], lam)
    per_draw = weighted_mse(made, targets.spectra[tid[draws]], targets.weight[tid[draws]])
    mse = per_draw.reshape(len(designs), k).mean(axis=1)
    measured = made.reshape(len(designs), k, *made.shape[1:])[:, 0]
    db_size = chosen.database_size[top]
    probe_spectra = None
    if probes is not None:
        lib, thick = probes
        need = max(sizes)
        if need > len(lib):
            raise ValueError(f"database size {need} is larger than the probe database ({len(lib)})")
        probe_spectra = world.measure(
            lib.take(slice(0, need)), thick[:need], lam, progress=progress
        )
    rows = []
    for s in sizes:
        pick = db_size == s
        entry: dict[str, Any] = {
            "database_size": int(s),
            "targets": int(pick.sum()),
            "model": mse_quantiles(mse[pick]),
        }
        if probe_spectra is not None:
            t_rows = tid[pick]
            oracle = nearest_weighted_mse(
                probe_spectra[:s], targets.spectra[t_rows], targets.weight[t_rows]
            )
            rng = np.random.default_rng([random_seed, s])
            r = rng.integers(0, s, t_rows.size)
            rand = weighted_mse(probe_spectra[r], targets.spectra[t_rows], targets.weight[t_rows])
            entry["oracle"] = mse_quantiles(oracle)
            entry["random"] = mse_quantiles(rand)
            entry["model_over_oracle_median"] = float(
                np.median(mse[pick]) / max(float(np.median(oracle)), 1e-12)
            )
        rows.append(entry)
    return BenchReport(
        world.describe(), rows, mse, tid, db_size, measured, designs, chosen.thickness_nm[top]
    )
