"""Inverse-design figures on this machine, printed as one JSON object.

* **Probe builds, end to end** (generate, check, rasterize, encode, write a shard): designs/s of
  ``models.probes.build_shard`` with the encoder in fp32 and in bf16 autocast, channels-last on
  and off, two batch sizes, and generation overlapped with encoding or not; plus each stage's
  own rate and ``torch.compile`` of the encoder.
* **Retrieval quality of what is kept**: spectrum -> geometry R@1 on the test split of
  ``--pairs`` with geometry latents encoded in fp32 and in bf16 (the issue's bar: within 0.005).
* **Optimization** (``--optimize``): seconds per target of ``metascan design optimize`` at 30
  iterations x 100 particles (the hybrids: 10 x 100 and 40 gradient steps), batched over 16
  targets: pso in fp32 and bf16, hybrid, random search, and the surrogate's pso (fp32, bf16) and
  hybrid; exact network calls/s and their share of the time, and nevergrad's own ask/tell cost.
* **Search**: FAISS flat, our ``ProbeIndex``, naive torch and torch bf16 on the same data
  (``bench_search.bench_search``).

Run: ``.venv/bin/python benchmarks/bench_design.py --model RUN --pairs PAIRS [--quick]``. Without
``--model`` an untrained ``metascan-small`` is timed (speed does not depend on training) and the
R@1 comparison is skipped, said so in the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_search import bench_search
from dataset.pairs_file import SPLIT_NAMES
from dataset.pairs_io import load_pairs
from layout.generator import generate
from layout.material import DEFAULT_MATERIAL
from layout.raster import rasterize
from models.config import get_config
from models.inference import InferenceConfig, encode_geometry, encode_spectra, prepare
from models.model import ContrastiveModel
from models.model_dir import load_model, model_identity, write_model_dir
from models.probes import ProbeBuild, Shard, build_shard, draw_block
from models.retrieval import ranks_of_truth, recall_at
from models.surrogate import ForwardSurrogate


def _model_dir(folder: Path | None, scratch: Path) -> Path:
    """The model to time: the one given, or an untrained metascan-small (speed does not
    depend on training)."""
    if folder is None:
        torch.manual_seed(0)
        folder = scratch / "untrained"
        write_model_dir(
            folder, ContrastiveModel(get_config("metascan-small")), material=DEFAULT_MATERIAL
        )
    return folder


def _surrogate_dir(folder: Path | None, scratch: Path) -> Path:
    """The surrogate to time: the one given, or an untrained one of metascan-small."""
    if folder is None:
        torch.manual_seed(0)
        folder = scratch / "untrained-surrogate"
        write_model_dir(
            folder, ForwardSurrogate(get_config("metascan-small")), material=DEFAULT_MATERIAL
        )
    return folder


def build_rate(
    model_dir: Path, count: int, cfg: InferenceConfig, prefetch: bool, scratch: Path, tag: str
) -> dict[str, Any]:
    model = prepare(load_model(model_dir), cfg)

    def encoder(images: Any, params: Any) -> Any:
        return encode_geometry(model, images, params, cfg)

    build = ProbeBuild(count=count, seed=11, block_size=4096)
    out = scratch / f"probes-{tag}.h5"
    # A warm-up batch outside the timing (first-call allocations, oneDNN kernel selection, and
    # with compile the compilation, reported separately).
    t0 = time.perf_counter()
    encoder(*_warm(cfg.batch_size))
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_shard(
        out,
        build,
        Shard(),
        encoder,
        model_identity(model_dir),
        model.cfg.embed_dim,
        prefetch=prefetch,
    )
    seconds = time.perf_counter() - t0
    out.unlink()
    return {
        "precision": cfg.precision,
        "channels_last": cfg.channels_last,
        "batch_size": cfg.batch_size,
        "compile": cfg.compile,
        "prefetch": prefetch,
        "designs": count,
        "seconds": round(seconds, 2),
        "designs_per_s": round(count / seconds),
        "warm_up_s": round(warm_s, 1),
    }


def _warm(batch: int) -> tuple[Any, Any]:
    lib = generate(batch, 99)
    return rasterize(lib), np.stack([lib.period_nm, np.full(len(lib), 178.0)], 1) / 1000


def stage_rates(model_dir: Path, n: int) -> dict[str, Any]:
    build = ProbeBuild(count=n, seed=5, block_size=n)
    t0 = time.perf_counter()
    lib, thick = draw_block(build, 0)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    images = rasterize(lib)
    raster_s = time.perf_counter() - t0
    params = np.stack([lib.period_nm, thick], 1) / 1000
    out: dict[str, Any] = {
        "generate_check_per_s": round(n / gen_s),
        "rasterize_per_s": round(n / raster_s),
    }
    fp32_latent = None
    for precision in ("fp32", "bf16"):
        for channels_last, batch in ((False, 256), (False, 1024), (True, 256)):
            cfg = InferenceConfig(precision, batch, channels_last)
            model = prepare(load_model(model_dir), cfg)
            encode_geometry(model, images[:1024], params[:1024], cfg)
            t0 = time.perf_counter()
            z = encode_geometry(model, images, params, cfg)
            key = f"encode_{precision}_b{batch}{'_channels_last' if channels_last else ''}_per_s"
            out[key] = round(n / (time.perf_counter() - t0))
            if precision == "fp32" and not channels_last and batch == 256:
                fp32_latent = z
            elif fp32_latent is not None:
                cos = (z * fp32_latent).sum(1)
                out[f"{key[:-6]}_min_cosine_vs_fp32"] = round(float(cos.min()), 6)
    out["compile"] = compile_rate(model_dir, images, params)
    return out


def compile_rate(model_dir: Path, images: Any, params: Any) -> dict[str, Any]:
    """``InferenceConfig(compile=True)``: the first batch's cost (compilation) and the steady
    bf16 encode rate after it, on the same inputs as the eager figures."""
    try:
        cfg = InferenceConfig("bf16", compile=True)
        model = prepare(load_model(model_dir), cfg)
        t0 = time.perf_counter()
        encode_geometry(model, images[: cfg.batch_size], params[: cfg.batch_size], cfg)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        encode_geometry(model, images, params, cfg)
        rate = images.shape[0] / (time.perf_counter() - t0)
        return {"first_call_s": round(first, 1), "bf16_encode_per_s": round(rate)}
    except Exception as exc:  # a compiler toolchain problem is a figure, not a crash
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}


def r_at_1(model_dir: Path, pairs_path: Path) -> dict[str, Any]:
    pairs = load_pairs(pairs_path)
    rows = np.flatnonzero(pairs.split == SPLIT_NAMES.index("test"))
    ids = pairs.design_id[rows]
    out: dict[str, Any] = {"pairs": str(pairs_path), "test_pairs": int(rows.size)}
    spectra_cfg = InferenceConfig("fp32")
    for precision in ("fp32", "bf16"):
        cfg = InferenceConfig(precision)
        model = prepare(load_model(model_dir), cfg)
        g = encode_geometry(model, pairs.geometry[rows], pairs.params[rows], cfg)
        s = encode_spectra(model, pairs.spectra[rows], spectra_cfg)
        ranks = ranks_of_truth(torch.from_numpy(s @ g.T), ids, ids)
        out[f"R@1_{precision}"] = round(recall_at(ranks, (1,))[1], 4)
    out["R@1_difference"] = round(out["R@1_bf16"] - out["R@1_fp32"], 4)
    return out


def optimize_rate(
    model_dir: Path, precision: str, method: str = "pso", targets: int = 16
) -> dict[str, Any]:
    """``method`` at 30 x 100 (the hybrids: 10 iterations x 100 and 40 gradient steps) for
    ``targets`` random spectra (speed does not depend on the target). ``model_dir`` is the
    contrastive model, or the surrogate for the surrogate methods."""
    import nevergrad as ng

    from models.hybrid import HybridConfig, optimize_hybrid
    from models.inference import predict_geometry
    from models.model_dir import load_surrogate
    from models.objectives import LatentSimilarity, Objective, PredictedMSE
    from models.optimize import OptimizeConfig, optimize_pso
    from models.probes import ProbeConstraints

    cfg = InferenceConfig(precision)
    spectra = np.random.default_rng(0).random((targets, 2, 29)).astype(np.float32)
    calls = {"n": 0, "s": 0.0}

    def timed(fn: Any) -> Any:
        def call(images: Any, params: Any) -> Any:
            start = time.perf_counter()
            out = fn(images, params)
            calls["n"] += images.shape[0]
            calls["s"] += time.perf_counter() - start
            return out

        return call

    objective: Objective
    if method.startswith("surrogate"):
        net = prepare(load_surrogate(model_dir), cfg)
        objective = PredictedMSE(timed(lambda i, p: predict_geometry(net, i, p, cfg)), net)
        queries = PredictedMSE.queries(spectra, np.ones_like(spectra))
    else:
        model = prepare(load_model(model_dir), cfg)
        objective = LatentSimilarity(timed(lambda i, p: encode_geometry(model, i, p, cfg)), model)
        queries = encode_spectra(model, spectra, cfg)
    space = ProbeConstraints(thicknesses_nm=(178.0,)).design_space()
    hybrid = method.endswith("hybrid")
    pso = OptimizeConfig(iterations=10 if hybrid else 30, targets_per_batch=targets)
    if hybrid:
        run = optimize_hybrid(objective, space, queries, pso, HybridConfig(steps=40))
    else:
        run = optimize_pso(space, objective, queries, pso, random_search=method == "random")
    row = {
        "method": method,
        "precision": precision,
        "targets": targets,
        "s_per_target": round(run.wall_s / targets, 3),
        "network_calls_per_target": round(run.encoded / targets),
        "exact_calls_per_s": round(calls["n"] / calls["s"], 1),
        "exact_call_share": round(calls["s"] / run.wall_s, 3),
        "infeasible_fraction": round(run.infeasible_fraction, 4),
        "repaired_fraction": round(run.repaired_fraction, 4),
    }
    if method == "pso":  # nevergrad's own cost: as many ask/tell on a trivial objective
        param = ng.p.Array(shape=(space.dimension,), lower=0.0, upper=1.0)
        opt = ng.families.ConfPSO(popsize=100)(param, budget=3000, num_workers=100)
        start = time.perf_counter()
        for _ in range(30):
            asked = [opt.ask() for _ in range(100)]
            for c in asked:
                opt.tell(c, float(c.value[0]))
        row["nevergrad_ask_tell_s_per_target"] = round(time.perf_counter() - start, 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--pairs", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-search", action="store_true", help="skip the search figures")
    parser.add_argument("--optimize", action="store_true", help="only the optimization rows")
    parser.add_argument("--surrogate", type=Path, default=None, help="a forward surrogate")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    count = 8192 if args.quick else 40_960
    result: dict[str, Any] = {"threads": args.threads, "torch": torch.__version__}
    if args.optimize:
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = _model_dir(args.model, Path(tmp))
            result["model"] = str(args.model) if args.model else "untrained metascan-small"
            surrogate = _surrogate_dir(args.surrogate, Path(tmp))
            result["surrogate"] = str(args.surrogate) if args.surrogate else "untrained"
            result["optimize"] = [
                optimize_rate(surrogate if m.startswith("surrogate") else model_dir, p, m)
                for m, p in (
                    ("pso", "fp32"), ("pso", "bf16"), ("hybrid", "bf16"), ("random", "bf16"),
                    ("surrogate", "fp32"), ("surrogate", "bf16"), ("surrogate-hybrid", "bf16"),
                )
            ]  # fmt: skip
        print(json.dumps(result, indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        model_dir = _model_dir(args.model, scratch)
        result["model"] = str(args.model) if args.model else "untrained metascan-small"
        result["stages"] = stage_rates(model_dir, 4096 if args.quick else 16_384)
        variants = [  # (encoder settings, generation overlapped with encoding)
            (InferenceConfig("fp32"), False),
            (InferenceConfig("fp32", batch_size=1024), False),
            (InferenceConfig("bf16"), False),
            (InferenceConfig("bf16", batch_size=1024), False),
            (InferenceConfig("bf16", batch_size=128), False),
            (InferenceConfig("bf16", channels_last=True), False),
            (InferenceConfig("bf16"), True),
            (InferenceConfig("bf16", compile=True), False),
        ]
        result["probe_build"] = [
            build_rate(model_dir, count, cfg, prefetch, scratch, f"{i}")
            for i, (cfg, prefetch) in enumerate(variants)
        ]
        if args.model is not None and args.pairs is not None:
            result["retrieval_quality"] = r_at_1(model_dir, args.pairs)
        else:
            result["retrieval_quality"] = "skipped: give --model and --pairs"
    if not args.no_search:
        if args.quick:
            result["search_1e4"] = bench_search(10_000, 20_000, threads=args.threads, repeats=2)
        else:
            result["search_1e4"] = bench_search(10_000, 100_000, threads=args.threads, repeats=2)
            result["search_1e6"] = bench_search(1_000_000, 2_000, threads=args.threads, repeats=2)
    result["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
