"""Retrieval quality of a trained model, and of the oracle that bounds it.

The oracle represents each geometry by its noise-free true spectrum and retrieves by Euclidean
distance between the measured spectrum and those true spectra: it is what a perfect geometry
encoder could achieve, limited only by measurement noise and by designs whose spectra look
alike. The pairs format has no true spectra, so they come from ``truth``: either a second pairs
file with the same designs in the same order (``metascan sim pairs`` with the same count and
seed and ``--noise 0``; its design ids must match row for row), or, for pairs curated from a
scan of the simulated bench, the chip's truth file (``metascan sim truth``), where a design's
true spectrum is the mean over its defect-free pads. Without it the oracle is reported as
null. The model, the pairs and the truth must be of one film material: a model is never scored
on another film's spectra.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from common.atomic import save_json, save_png
from common.versioned_hdf5 import has_schema
from dataset.pairs_file import SPLIT_NAMES, Pairs
from dataset.pairs_io import load_pairs
from dataset.truth_file import SCHEMA as TRUTH_SCHEMA
from dataset.truth_file import design_truth, read_truth
from layout import material as film
from models.model_dir import check_material, load_model
from models.retrieval import (
    cosine_scores,
    embed,
    negative_distance,
    nonfinite_rows,
    ranks_of_truth,
    recall_at,
)

log = logging.getLogger(__name__)

KS = (1, 5, 10)
CURVE_KS = range(1, 21)
EVALUATION_FILE = "evaluation.json"
PLOT_FILES = ("similarity.png", "recall_at_k.png", "training.png")


@dataclass(frozen=True)
class _Gallery:
    rows: np.ndarray[Any, np.dtype[np.int64]]  # rows of the pairs file
    label: str


def _recalls(ranks: np.ndarray[Any, np.dtype[np.int64]]) -> dict[str, float]:
    return {f"R@{k}": v for k, v in recall_at(ranks, KS).items()}


def _ratio(model: dict[str, float], oracle: dict[str, float] | None) -> dict[str, float] | None:
    if oracle is None:
        return None
    return {k: (model[k] / oracle[k] if oracle[k] > 0 else float("nan")) for k in model}


def evaluate(
    model_dir: Path,
    pairs_path: Path,
    split: str = "test",
    gallery_size: int = 10_000,
    truth: Path | None = None,
    seed: int = 0,
    output: Path | None = None,
) -> dict[str, Any]:
    """R@1/5/10 both ways on ``split`` (whole split, and a seeded ``gallery_size`` subset when
    the split is larger), the oracle where true spectra are given, JSON and PNGs into
    ``output`` (default: the model directory)."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLIT_NAMES)}")
    if gallery_size < 2:
        raise ValueError(f"gallery={gallery_size} must be >= 2")
    model = load_model(model_dir)
    pairs = load_pairs(pairs_path)
    check_material(model_dir, pairs.material, f"pairs {pairs_path}")
    true_spectra = read_true_spectra(truth, pairs, pairs_path) if truth is not None else None
    rows = np.flatnonzero(pairs.split == SPLIT_NAMES.index(split)).astype(np.int64)
    if rows.size < 2:
        raise ValueError(f"{pairs_path} has {rows.size} pairs in split {split!r}; need >= 2")
    g_all, s_all = embed(
        model,
        torch.from_numpy(np.ascontiguousarray(pairs.geometry[rows]).view(np.uint8)),
        torch.from_numpy(pairs.params[rows].astype(np.float32)),
        torch.from_numpy(pairs.spectra[rows].astype(np.float32)),
    )
    bad = nonfinite_rows(g_all, s_all)
    if bad is not None:
        raise ValueError(
            f"model {model_dir} outputs NaN/inf on split {split!r} ({bad} are not finite); "
            "refusing to score it"
        )
    galleries = [_Gallery(np.arange(rows.size), f"whole {split} split")]
    if rows.size > gallery_size:
        pick = np.sort(np.random.default_rng(seed).choice(rows.size, gallery_size, replace=False))
        galleries.append(_Gallery(pick, f"seeded {gallery_size} subset"))
    results: list[dict[str, Any]] = []
    curves: dict[str, list[float]] = {}
    for gal in galleries:
        ids = pairs.design_id[rows[gal.rows]]
        g, s = g_all[gal.rows], s_all[gal.rows]
        scores = cosine_scores(s, g)
        s2g = ranks_of_truth(scores, ids, ids)
        g2s = ranks_of_truth(scores.T.contiguous(), ids, ids)
        entry: dict[str, Any] = {
            "gallery": gal.label,
            "size": int(gal.rows.size),
            "spectrum_to_geometry": _recalls(s2g),
            "geometry_to_spectrum": _recalls(g2s),
            "oracle": None,
        }
        if true_spectra is not None:
            measured = torch.from_numpy(pairs.spectra[rows[gal.rows]].reshape(gal.rows.size, -1))
            true = torch.from_numpy(true_spectra[rows[gal.rows]].reshape(gal.rows.size, -1))
            dist = negative_distance(measured, true)
            o_s2g = ranks_of_truth(dist, ids, ids)
            o_g2s = ranks_of_truth(dist.T.contiguous(), ids, ids)
            entry["oracle"] = {
                "spectrum_to_geometry": _recalls(o_s2g),
                "geometry_to_spectrum": _recalls(o_g2s),
            }
            if gal is galleries[-1]:
                curves["oracle s→g"] = list(recall_at(o_s2g, CURVE_KS).values())
        entry["model_over_oracle"] = _ratio(
            entry["spectrum_to_geometry"],
            entry["oracle"]["spectrum_to_geometry"] if entry["oracle"] else None,
        )
        results.append(entry)
        if gal is galleries[-1]:
            curves["model s→g"] = list(recall_at(s2g, CURVE_KS).values())
            curves["model g→s"] = list(recall_at(g2s, CURVE_KS).values())
    report = {
        "model": str(model_dir),
        "pairs": str(pairs_path),
        "truth": str(truth) if truth else None,
        "split": split,
        "seed": seed,
        "results": results,
        # R@K for K = 1..20 on the last gallery listed, as plotted in recall_at_k.png.
        "recall_curve": {"gallery": galleries[-1].label, "K": list(CURVE_KS), **curves},
    }
    out = Path(output) if output is not None else Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_json(report, out / EVALUATION_FILE)
    n = min(64, rows.size)
    _plot_similarity(cosine_scores(s_all[:n], g_all[:n]).numpy(), out / PLOT_FILES[0])
    _plot_recall_curve(curves, galleries[-1].label, out / PLOT_FILES[1])
    metrics = Path(model_dir) / "metrics.csv"
    if metrics.is_file():
        plot_training(metrics, out / PLOT_FILES[2])
    return report


def output_files(output: Path) -> list[Path]:
    """What :func:`evaluate` writes into ``output`` (checked as outputs before it starts)."""
    return [output / n for n in (EVALUATION_FILE, *PLOT_FILES)]


def read_true_spectra(
    path: Path, pairs: Pairs, pairs_path: Path
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """True spectra row for row with ``pairs``, from a chip truth file or a twin pairs file."""
    if has_schema(path, TRUTH_SCHEMA):
        chip = read_truth(path)
        film.require(chip.material, f"truth {path}", pairs.material, f"pairs {pairs_path}")
        chips = pairs.provenance.get("manifest_sha256")
        digest = chip.provenance.get("manifest_sha256")
        if not isinstance(chips, dict) or not digest or digest not in chips.values():
            raise ValueError(
                f"truth {path} is of chip manifest {str(digest)[:12] or 'unrecorded'}, and the "
                f"pairs were not curated from that chip (their manifests: "
                f"{', '.join(str(v)[:12] for v in chips.values()) if isinstance(chips, dict) else 'unrecorded'}); "
                "give the truth file of the pairs' chip"
            )
        if chip.band_center_nm.size != pairs.spectra.shape[-1]:
            raise ValueError(
                f"truth {path} has {chip.band_center_nm.size} bands; the pairs have "
                f"{pairs.spectra.shape[-1]}"
            )
        return design_truth(chip, pairs.design_id)
    truth = load_pairs(path)
    film.require(truth.material, f"truth pairs {path}", pairs.material, f"pairs {pairs_path}")
    if len(truth) != len(pairs) or not np.array_equal(truth.design_id, pairs.design_id):
        raise ValueError(
            f"truth pairs {path} do not hold the same designs in the same order as the pairs"
        )
    if truth.spectra.shape != pairs.spectra.shape:
        raise ValueError(f"truth pairs {path} spectra shape differs from the pairs'")
    return truth.spectra.astype(np.float64)


def _plot_similarity(sim: np.ndarray[Any, Any], path: Path) -> None:
    fig = Figure(figsize=(5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(sim, cmap="viridis", vmin=-1, vmax=1)
    ax.set_xlabel("geometry")
    ax.set_ylabel("spectrum")
    ax.set_title(f"cosine similarity, {sim.shape[0]} samples")
    fig.colorbar(im, ax=ax)
    save_png(fig, path, dpi=100)


def _plot_recall_curve(curves: dict[str, list[float]], label: str, path: Path) -> None:
    fig = Figure(figsize=(5, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for name, values in curves.items():
        ax.plot(list(CURVE_KS), values, marker=".", label=name)
    ax.set_xlabel("K")
    ax.set_ylabel("R@K")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"retrieval, {label}")
    ax.legend()
    save_png(fig, path, dpi=100)


def plot_training(metrics_csv: Path, path: Path) -> None:
    with metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
    epoch = [float(r["epoch"]) for r in rows]
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax_loss, ax_r1 = fig.subplots(1, 2)
    ax_loss.plot(epoch, [float(r["train_loss"]) for r in rows], marker=".")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train loss")
    if "val_r1" in rows[0]:
        ax_r1.plot(epoch, [float(r["val_r1"]) for r in rows], marker=".", label="val R@1")
        ax_r1.plot(epoch, [float(r["val_r5"]) for r in rows], marker=".", label="val R@5")
        ax_r1.set_ylim(0, 1.02)
    else:  # a surrogate's run
        ax_r1.plot(epoch, [float(r["val_mse"]) for r in rows], marker=".", label="val MSE")
        ax_r1.set_yscale("log")
    ax_r1.set_xlabel("epoch")
    ax_r1.legend()
    save_png(fig, path, dpi=100)
