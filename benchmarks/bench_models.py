"""Model figures on this machine, printed as JSON.

Fast mode (the default): training samples/s for ``metascan-small`` and ``moclip`` (a few
optimizer steps on random binary cells) and retrieval time for a 10k gallery.

``--scale`` mode: the figures of issue 7. It generates ``metascan sim pairs --count 50000
--seed 0`` (two noisy replicas per design, as the demo, and the noise-free twin for the oracle)
into a cache folder, skipped when present, then trains under one wall-clock budget each
``metascan-small`` with both augmentations, without shift, without transpose, without either,
and the ``moclip`` architecture (same recipe, both augmentations), evaluates each on the test
split against the oracle, and writes ``scale-<settings>.json`` (what it prints) and
``scale-<settings>.png`` (R@K curves and validation R@1 against time) into the cache folder,
e.g. ``scale-8min.json``; settings other than the defaults (batch, lr, schedule) join the name.
Finished runs are kept in ``runs/`` there and reused when their settings match (``--fresh``
retrains). ``--spectral-model rcwa --orders 3,3 --workers 2`` makes the pairs with RCWA instead
(each design solved once into a resumable cache in the cache folder), to see how retrieval
changes when the physics gets harder; compare with ``--count`` equal in the analytic world.

``--scarce`` mode: the same four augmentation settings of ``metascan-small`` where data is
scarce, as on a first chip: ``--scarce-count`` designs (one noisy replica each, so 80 % of them
train), a fixed number of epochs, several seeds; prints model/oracle R@1 per setting and seed
and writes ``scarce-<count>.json`` and ``.png`` into the cache folder.

Run: ``.venv/bin/python benchmarks/bench_models.py [--steps N] [--batch B]``,
``.venv/bin/python benchmarks/bench_models.py --scale --threads 1 --budget-min 8`` or
``.venv/bin/python benchmarks/bench_models.py --scarce --threads 1``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from dataset.pairs_file import SPLIT_NAMES
from dataset.pairs_io import load_pairs
from models.augment import AugmentConfig
from models.config import get_config
from models.evaluate import evaluate
from models.model import ContrastiveModel
from models.model_dir import load_model
from models.retrieval import cosine_scores, ranks_of_truth
from models.tasks import ContrastiveLoss
from models.train import TrainConfig, train, train_step

DEFAULT_CACHE = Path("/tmp/metascan_bench_models")


def train_rate(
    name: str, steps: int, batch: int, device: torch.device, precision: str = "fp32"
) -> float:
    torch.manual_seed(0)
    model = ContrastiveModel(get_config(name)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    image = (torch.rand(batch, 128, 128, device=device) > 0.5).to(torch.uint8)
    params = 0.2 + 0.4 * torch.rand(batch, 2, device=device)
    spectra = torch.rand(batch, 2, 29, device=device)
    loss = ContrastiveLoss()
    train_step(model, loss, opt, image, params, spectra, device, precision)  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(model, loss, opt, image, params, spectra, device, precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def retrieval_seconds(n: int = 10_000, dim: int = 64) -> float:
    feats = torch.nn.functional.normalize(torch.randn(2, n, dim), dim=-1)
    ids = np.arange(n, dtype=np.int64)
    t0 = time.perf_counter()
    ranks_of_truth(cosine_scores(feats[0], feats[1]), ids, ids)
    return time.perf_counter() - t0


def fast(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "train_samples_per_s": {
            f"{name} {precision}": round(
                train_rate(name, args.steps, args.batch, device, precision), 1
            )
            for name in ("metascan-small", "moclip")
            for precision in ("fp32", "bf16")
        },
        "retrieval_10k_gallery_s": round(retrieval_seconds(), 3),
    }


# --- scale mode -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One trained-and-evaluated configuration of the comparison."""

    name: str
    model: str
    shift: bool
    transpose: bool


RUNS = (
    Run("small", "metascan-small", shift=True, transpose=True),
    Run("small-no-shift", "metascan-small", shift=False, transpose=True),
    Run("small-no-transpose", "metascan-small", shift=True, transpose=False),
    Run("small-no-aug", "metascan-small", shift=False, transpose=False),
    Run("moclip", "moclip", shift=True, transpose=True),
)


def _metascan() -> list[str]:
    """The ``metascan`` command of this interpreter's environment."""
    beside = Path(sys.executable).parent / "metascan"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("metascan")
    if found is None:
        raise FileNotFoundError("the metascan command is not installed in this environment")
    return [found]


@dataclass(frozen=True)
class World:
    """The spectral model the pairs come from: the analytic one, or rcwa at some orders.

    The rcwa world solves each design once into ``cache`` (shared by the noisy pairs and their
    noise-free twin, and resumable) in the cache folder, on a LocalCluster of ``workers``
    processes.
    """

    model: str = "analytic"
    orders: str = "3,3"
    workers: int = 2

    def tag(self) -> str:
        return "" if self.model == "analytic" else f"rcwa-o{self.orders.replace(',', 'x')}_"

    def options(self, cache_dir: Path) -> list[str]:
        if self.model == "analytic":
            return []
        cache = cache_dir / f"rcwa_cache_o{self.orders.replace(',', 'x')}.h5"
        return ["--model", "rcwa", "--orders", self.orders, "--workers", str(self.workers),
                "--cache", str(cache)]  # fmt: skip


def ensure_pairs(
    cache: Path, count: int, seed: int, noise: float, replicas: int, world: World = World()
) -> tuple[Path, Path]:
    """The noisy pairs and their noise-free twin (same designs, same order), made once."""
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind, sigma in (("pairs", noise), ("truth", 0.0)):
        path = cache / f"{kind}_{world.tag()}{count}_s{seed}_r{replicas}_n{sigma:g}.h5"
        if not path.is_file():  # the writer is atomic: a present file is a whole file
            cmd = [*_metascan(), "sim", "pairs", "--count", str(count), "--seed", str(seed),
                   "--replicas", str(replicas), "--noise", str(sigma), "--output", str(path),
                   *world.options(cache)]  # fmt: skip
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        paths.append(path)
    return paths[0], paths[1]


def _reusable(folder: Path, cfg: TrainConfig, pairs: Path) -> bool:
    """Whether ``folder`` holds a finished run of this architecture, recipe and data."""
    metrics, config = folder / "metrics.json", folder / "config.json"
    if not (metrics.is_file() and config.is_file()):
        return False
    if json.loads(metrics.read_text()).get("stop") is None:  # killed before it finished
        return False
    saved = json.loads(config.read_text())

    def as_json(obj: dict[str, Any]) -> Any:  # a config file may have changed since
        return json.loads(json.dumps(obj))  # tuples come back as lists

    return bool(
        saved["model"] == as_json(get_config(cfg.model).to_dict())
        and saved["train"]["train"] == as_json(cfg.to_dict())
        and saved["train"]["pairs"] == str(pairs)
    )


@torch.no_grad()
def encode_rates(
    model: ContrastiveModel, geometry: torch.Tensor, params: torch.Tensor, spectra: torch.Tensor
) -> dict[str, float]:
    """Samples/s of each encoder in eval mode, batches of 256 until ~5 s or the data runs out."""

    def encode_geometry(sl: slice) -> torch.Tensor:
        return model.encode_geometry(geometry[sl], params[sl])

    def encode_spectra(sl: slice) -> torch.Tensor:
        return model.encode_spectra(spectra[sl])

    out = {}
    for name, encode in (("geometry", encode_geometry), ("spectra", encode_spectra)):
        encode(slice(0, 8))  # warm-up
        done, t0 = 0, time.perf_counter()
        while done < geometry.shape[0] and time.perf_counter() - t0 < 5.0:
            encode(slice(done, done + 256))
            done = min(done + 256, geometry.shape[0])
        out[f"encode_{name}_per_s"] = round(done / (time.perf_counter() - t0), 1)
    return out


def run_one(
    run: Run, args: argparse.Namespace, pairs: Path, truth: Path, val_every: int
) -> dict[str, Any]:
    folder = args.cache / "runs" / (run.name + _suffix(args))
    cfg = TrainConfig(
        model=run.model,
        epochs=args.max_epochs,
        batch_size=args.batch,
        lr=args.lr,
        schedule=args.schedule,
        seed=0,
        time_budget_min=args.budget_min,
        val_every_steps=val_every,
        augment=AugmentConfig(circular_shift=run.shift, transpose=run.transpose),
        precision=args.precision,
    )
    if not args.fresh and _reusable(folder, cfg, pairs) and (folder / "scale_run.json").is_file():
        cached: dict[str, Any] = json.loads((folder / "scale_run.json").read_text())
        cached["reused"] = True
        return cached
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    result = train(pairs, folder, cfg, progress=args.progress)
    train_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = evaluate(folder, pairs, "test", 10_000, truth, 0, folder)
    eval_wall = time.perf_counter() - t0

    data = load_pairs(pairs)
    rows = np.flatnonzero(data.split == SPLIT_NAMES.index("test"))
    rates = encode_rates(
        load_model(folder),
        torch.from_numpy(np.ascontiguousarray(data.geometry[rows]).view(np.uint8)),
        torch.from_numpy(data.params[rows].astype(np.float32)),
        torch.from_numpy(data.spectra[rows].astype(np.float32)),
    )
    hist = result.history
    train_s = sum(r["seconds"] - r["val_seconds"] for r in hist)
    galleries: dict[str, Any] = {}
    for entry in report["results"]:
        key = "whole_test_split" if entry["gallery"].startswith("whole") else "gallery_10k"
        galleries[key] = {
            "size": entry["size"],
            "spectrum_to_geometry": _rounded(entry["spectrum_to_geometry"]),
            "geometry_to_spectrum": _rounded(entry["geometry_to_spectrum"]),
            "oracle_spectrum_to_geometry": _rounded(entry["oracle"]["spectrum_to_geometry"]),
            "oracle_geometry_to_spectrum": _rounded(entry["oracle"]["geometry_to_spectrum"]),
            "model_over_oracle_R@1": round(entry["model_over_oracle"]["R@1"], 4),
        }
    if "gallery_10k" not in galleries and galleries["whole_test_split"]["size"] == 10_000:
        galleries["gallery_10k"] = "the whole test split (10000 pairs)"
    figures = {
        "run": run.name,
        "model": run.model,
        "circular_shift": run.shift,
        "transpose": run.transpose,
        "train_samples_per_s": round(result.steps * args.batch / train_s, 1),
        **rates,
        "epochs_done": round(hist[-1]["epoch"], 3),
        "steps": result.steps,
        "stop": result.stop_reason,
        "best_val_r1": round(result.best_value, 4),
        "best_epoch": round(result.best_epoch, 3),
        "val_r1_curve": [
            [round(r["epoch"], 3), round(r["elapsed_s"] / 60, 2), round(r["val_r1"], 4)]
            for r in hist
        ],
        "train_wall_s": round(train_wall, 1),
        "eval_wall_s": round(eval_wall, 1),
        **galleries,
        "recall_curve_s2g": [round(v, 4) for v in report["recall_curve"]["model s→g"]],
        "oracle_curve_s2g": [round(v, 4) for v in report["recall_curve"]["oracle s→g"]],
    }
    (folder / "scale_run.json").write_text(dumps(figures) + "\n")
    return figures


def _suffix(args: argparse.Namespace) -> str:
    """Names the settings that differ from the defaults, so such runs get their own files."""
    world = World(args.spectral_model, args.orders)
    parts = [f"-{world.tag().rstrip('_')}" if world.tag() else ""]
    parts.append(f"-n{args.count}" if args.count != 50_000 else "")
    parts.append(f"-e{args.max_epochs}" if args.max_epochs != 100 else "")
    parts.append(f"-b{args.batch}" if args.batch != 64 else "")
    parts.append(f"-lr{args.lr:g}" if args.lr is not None else "")
    parts.append(f"-{args.schedule}" if args.schedule != "cosine" else "")
    parts.append(f"-{args.precision}" if args.precision != "fp32" else "")
    parts.append(f"-{args.budget_min:g}min")
    return "".join(parts)


def _rounded(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in d.items()}


def plot(runs: list[dict[str, Any]], path: Path, title: str) -> None:
    """R@K (spectrum → geometry) of every run against the oracle, and val R@1 against time."""
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_k, ax_t = fig.subplots(1, 2)
    ks = list(range(1, 21))
    for r in runs:
        ax_k.plot(ks, r["recall_curve_s2g"], marker=".", label=r["run"])
        curve = np.array(r["val_r1_curve"])
        ax_t.plot(curve[:, 1], curve[:, 2], marker="o", label=r["run"])
    ax_k.plot(ks, runs[0]["oracle_curve_s2g"], "k--", label="oracle")
    ax_k.set_xlabel("K")
    ax_k.set_ylabel("R@K, spectrum → geometry (test)")
    ax_k.set_ylim(0, 1.02)
    ax_k.legend(fontsize=8)
    ax_t.set_xlabel("wall clock (min)")
    ax_t.set_ylabel("validation R@1")
    ax_t.set_ylim(0, 1.02)
    ax_t.legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)


def scale(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    world = World(args.spectral_model, args.orders, args.workers)
    pairs, truth = ensure_pairs(args.cache, args.count, args.seed, args.noise, args.replicas, world)
    generate_s = time.perf_counter() - t0
    split = load_pairs(pairs).split
    n_train = int((split == SPLIT_NAMES.index("train")).sum())
    # Two validations per epoch (curves to judge convergence by), unless asked otherwise.
    val_every = args.val_every_steps if args.val_every_steps >= 0 else n_train // args.batch // 2
    chosen = [r for r in RUNS if r.name in args.runs.split(",")]
    if not chosen:
        raise ValueError(f"--runs {args.runs!r} names none of {', '.join(r.name for r in RUNS)}")
    results = []
    for run in chosen:
        results.append(run_one(run, args, pairs, truth, val_every))
        print(f"done {run.name}", file=sys.stderr, flush=True)
    out = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "pairs": str(pairs),
        "truth": str(truth),
        "designs": args.count,
        "spectral_model": args.spectral_model,
        "rcwa_orders": args.orders if args.spectral_model == "rcwa" else None,
        "replicas": args.replicas,
        "noise": args.noise,
        "train_pairs": n_train,
        "batch": args.batch,
        "schedule": args.schedule,
        "lr": args.lr if args.lr is not None else TrainConfig(schedule=args.schedule).base_lr,
        "budget_min": args.budget_min,
        "val_every_steps": val_every,
        "generate_s": round(generate_s, 1),
        "runs": results,
    }
    args.cache.mkdir(parents=True, exist_ok=True)
    stem = "scale" + _suffix(args)
    (args.cache / f"{stem}.json").write_text(dumps(out) + "\n")
    plot(
        results,
        args.cache / f"{stem}.png",
        f"{args.count} {args.spectral_model} designs x {args.replicas}, "
        f"{args.budget_min:g} min each on "
        f"{out['device']} ({out['threads']} thread(s))",
    )
    return out


# --- scarce mode -----------------------------------------------------------------------------


def scarce(args: argparse.Namespace) -> dict[str, Any]:
    pairs, truth = ensure_pairs(args.cache, args.scarce_count, args.seed, args.noise, 1)
    chosen = [r for r in RUNS if r.model == "metascan-small" and r.name in args.runs.split(",")]
    rows: list[dict[str, Any]] = []
    for run in chosen:
        for seed in range(args.scarce_seeds):
            folder = (
                args.cache
                / "scarce"
                / f"{run.name}-{args.scarce_count}-e{args.scarce_epochs}-s{seed}"
            )
            cfg = TrainConfig(
                model=run.model,
                epochs=args.scarce_epochs,
                batch_size=64,
                seed=seed,
                augment=AugmentConfig(circular_shift=run.shift, transpose=run.transpose),
            )
            if args.fresh or not _reusable(folder, cfg, pairs):
                shutil.rmtree(folder, ignore_errors=True)
                train(pairs, folder, cfg, progress=args.progress)
            report = evaluate(folder, pairs, "test", 10_000, truth, seed, folder)
            whole = report["results"][0]
            rows.append(
                {
                    "run": run.name,
                    "seed": seed,
                    "test_size": whole["size"],
                    "R@1": round(whole["spectrum_to_geometry"]["R@1"], 4),
                    "oracle_R@1": round(whole["oracle"]["spectrum_to_geometry"]["R@1"], 4),
                    "model_over_oracle_R@1": round(whole["model_over_oracle"]["R@1"], 4),
                }
            )
            print(f"done {run.name} seed {seed}", file=sys.stderr, flush=True)
    summary = {}
    for run in chosen:
        ratios = np.array([r["model_over_oracle_R@1"] for r in rows if r["run"] == run.name])
        summary[run.name] = {
            "model_over_oracle_R@1_mean": round(float(ratios.mean()), 4),
            "model_over_oracle_R@1_sd": round(float(ratios.std(ddof=1)), 4)
            if ratios.size > 1
            else None,
        }
    out = {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "pairs": str(pairs),
        "designs": args.scarce_count,
        "train_pairs": int((load_pairs(pairs).split == SPLIT_NAMES.index("train")).sum()),
        "epochs": args.scarce_epochs,
        "batch": 64,
        "summary": summary,
        "runs": rows,
    }
    stem = f"scarce-{args.scarce_count}"
    (args.cache / f"{stem}.json").write_text(dumps(out) + "\n")
    fig = Figure(figsize=(6, 3.5), layout="constrained")
    ax = fig.add_subplot()
    for i, run in enumerate(chosen):
        dots = [r["model_over_oracle_R@1"] for r in rows if r["run"] == run.name]
        ax.bar(i, float(np.mean(dots)), color="tab:blue", alpha=0.6)
        ax.plot([i] * len(dots), dots, "ko", ms=4)
    ax.set_xticks(range(len(chosen)), [r.name for r in chosen], fontsize=8)
    ax.set_ylabel("model / oracle R@1 (test)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{args.scarce_count} designs, {args.scarce_epochs} epochs, one dot per seed")
    fig.savefig(args.cache / f"{stem}.png", dpi=100)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="fast mode: timed steps")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's own")
    parser.add_argument("--scale", action="store_true", help="the 50k-pair figures of issue 7")
    parser.add_argument("--scarce", action="store_true", help="augmentations with scarce data")
    parser.add_argument("--scarce-count", type=int, default=1200, help="scarce mode: designs")
    parser.add_argument("--scarce-epochs", type=int, default=40)
    parser.add_argument("--scarce-seeds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument(
        "--spectral-model", default="analytic", choices=("analytic", "rcwa"), help="the world"
    )
    parser.add_argument("--orders", default="3,3", help="rcwa world: Fourier orders NX,NY")
    parser.add_argument("--workers", type=int, default=2, help="rcwa world: LocalCluster size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--budget-min", type=float, default=30.0, help="per run")
    parser.add_argument("--max-epochs", type=int, default=100, help="the budget usually ends first")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--schedule", default="cosine")
    parser.add_argument("--precision", default="fp32", help="scale mode: fp32 or bf16 training")
    parser.add_argument("--val-every-steps", type=int, default=-1, help="-1: half an epoch")
    parser.add_argument("--runs", default=",".join(r.name for r in RUNS))
    parser.add_argument("--fresh", action="store_true", help="retrain runs found in the cache")
    parser.add_argument("--progress", action="store_true", help="training progress bars")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = scale(args) if args.scale else scarce(args) if args.scarce else fast(args)
    print(dumps(out))


def dumps(obj: Any) -> str:
    """Indented JSON with each list of numbers on one line."""
    text = json.dumps(obj, indent=2)
    return re.sub(
        r"\[\s+([-0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text
    )


if __name__ == "__main__":
    main()
