"""How well a forward surrogate predicts spectra on a held-out split (``metascan evaluate``
when the model directory holds a surrogate).

Three numbers frame its per-pair MSE against the measured spectra: the mean training spectrum
predicted for every design (what a surrogate that learned nothing scores), and, given true
spectra (``--truth``, as for the contrastive oracle), the measurement noise itself (measured
against true: no predictor of measured spectra can beat it on average) and the surrogate's error
against the true spectra (its own error, with the noise taken out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from common.atomic import save_json, save_png
from dataset.pairs_file import SPLIT_NAMES
from dataset.pairs_io import load_pairs
from dataset.targets_file import mse_quantiles, weighted_mse
from models.evaluate import plot_training, read_true_spectra
from models.model_dir import check_material, load_surrogate
from models.tasks import predict_spectra

EVALUATION_FILE = "surrogate_evaluation.json"
PLOT_FILE = "surrogate_examples.png"
TRAINING_PLOT = "training.png"


def _mse(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return weighted_mse(a, b, np.ones_like(b))


def evaluate_surrogate(
    model_dir: Path,
    pairs_path: Path,
    split: str = "test",
    truth: Path | None = None,
    output: Path | None = None,
) -> dict[str, Any]:
    """Per-pair MSE quantiles of the surrogate on ``split`` (module docstring); JSON and a PNG
    of examples into ``output`` (default: the model directory)."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLIT_NAMES)}")
    model = load_surrogate(model_dir)
    pairs = load_pairs(pairs_path)
    check_material(model_dir, pairs.material, f"pairs {pairs_path}")
    true_spectra = read_true_spectra(truth, pairs, pairs_path) if truth is not None else None
    rows = np.flatnonzero(pairs.split == SPLIT_NAMES.index(split))
    if rows.size < 1:
        raise ValueError(f"{pairs_path} has no pairs in split {split!r}")
    predicted = predict_spectra(
        model,
        torch.from_numpy(np.ascontiguousarray(pairs.geometry[rows]).view(np.uint8)),
        torch.from_numpy(pairs.params[rows].astype(np.float32)),
    ).numpy()
    if not np.isfinite(predicted).all():
        raise ValueError(f"surrogate {model_dir} predicts NaN/inf on split {split!r}")
    measured = pairs.spectra[rows].astype(np.float64)
    mean_spectrum = pairs.spectra[pairs.split == SPLIT_NAMES.index("train")].mean(axis=0)
    model_mse = _mse(predicted, measured)
    report: dict[str, Any] = {
        "model": str(model_dir),
        "pairs": str(pairs_path),
        "truth": str(truth) if truth else None,
        "split": split,
        "pairs_scored": int(rows.size),
        "surrogate_vs_measured": mse_quantiles(model_mse),
        "mean_spectrum_vs_measured": mse_quantiles(
            _mse(np.broadcast_to(mean_spectrum, measured.shape), measured)
        ),
        "surrogate_vs_true": None,
        "noise_floor": None,
    }
    if true_spectra is not None:
        true = true_spectra[rows]
        report["surrogate_vs_true"] = mse_quantiles(_mse(predicted, true))
        report["noise_floor"] = mse_quantiles(_mse(measured, true))
    out = Path(output) if output is not None else Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_json(report, out / EVALUATION_FILE)
    _plot_examples(pairs.wavelength_nm, measured, predicted, model_mse, out / PLOT_FILE)
    metrics = Path(model_dir) / "metrics.csv"
    if metrics.is_file():
        plot_training(metrics, out / TRAINING_PLOT)
    return report


def _plot_examples(
    lam: np.ndarray[Any, Any],
    measured: np.ndarray[Any, Any],
    predicted: np.ndarray[Any, Any],
    mse: np.ndarray[Any, Any],
    path: Path,
) -> None:
    """The median-error and 95th-percentile-error pairs, beside the error histogram."""
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    axes = fig.subplots(1, 3)
    order = np.argsort(mse)
    for ax, q in zip(axes[:2], (0.5, 0.95), strict=True):
        i = int(order[min(int(q * order.size), order.size - 1)])
        for pol, style in ((0, "-"), (1, "--")):
            ax.plot(lam, measured[i, pol], style, color="k", lw=1, label=f"measured {'xy'[pol]}")
            ax.plot(
                lam, predicted[i, pol], style, color="C0", lw=1.2, label=f"surrogate {'xy'[pol]}"
            )
        ax.set_title(f"{int(q * 100)}th-percentile pair: MSE {mse[i]:.1e}", fontsize=8)
        ax.set_xlabel("wavelength (nm)")
        ax.set_ylim(0, 1.1)
    axes[0].legend(fontsize=6)
    axes[2].hist(np.log10(np.maximum(mse, 1e-12)), bins=40, color="C0")
    axes[2].set_xlabel("log10 per-pair MSE")
    axes[2].set_ylabel("pairs")
    save_png(fig, path, dpi=100)
