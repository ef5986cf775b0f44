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
* **Wafer** (``--wafer [--diameter-mm D ...] [--noise]``): a structural-colour print of a drawn
  512x512 index image (16 palette designs, period 500 nm; ``--noise``: the worst case, a random
  entry per pad) on discs of 5 µm pads, streamed to OASIS +
  manifest (``layout.wafer.write_wafer``) in a temporary folder, deleted after: pads,
  references, pads/s, bytes per pad, wall seconds and peak RSS per diameter (the peak is reset
  before each wafer, so it is that wafer's plus what the process already held, given as
  ``rss_before_gib``); then KLayout reads the largest with at most 2e7 references, and the DRC
  of ``layout.drc`` runs on a window clipped from it at the disc's edge (on pad borders, so no
  unit cell is cut); and the figures extrapolated to a 100 mm disc.

Run: ``.venv/bin/python benchmarks/bench_design.py --model RUN --pairs PAIRS [--quick]``. Without
``--model`` an untrained ``metascan-small`` is timed (speed does not depend on training) and the
R@1 comparison is skipped, said so in the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
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
from layout.generator import GeneratorConfig, generate
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


def wafer_image(size: int = 512) -> np.ndarray:
    """A deterministic index image like a colour print: a sky of 6 bands, a sun, 3 mountain
    ranges, a lake with 4 shades, a row of 8 houses and a transparent (-1) frame corner."""
    yy, xx = np.mgrid[0:size, 0:size] / size  # y grows downwards, as in an image
    img = np.minimum((yy * 12).astype(np.int64), 5)  # sky bands 0-5
    img[(xx - 0.7) ** 2 + (yy - 0.22) ** 2 < 0.09**2] = 6  # sun
    for k, (peak, height) in enumerate(((0.25, 0.35), (0.55, 0.3), (0.85, 0.4))):
        ridge = 0.62 - height * np.maximum(0, 1 - np.abs(xx - peak) / 0.3)
        img[(yy > ridge) & (yy < 0.7)] = 7 + k  # mountains 7-9
    lake = yy >= 0.7
    img[lake] = 10 + ((xx[lake] * 7 + yy[lake] * 11).astype(np.int64) % 4)  # lake 10-13
    for h in range(8):
        x0 = 0.06 + h * 0.115
        img[(xx > x0) & (xx < x0 + 0.07) & (yy > 0.62) & (yy < 0.7)] = 14 + h % 2  # houses
    img[(xx < 0.08) & (yy < 0.08)] = -1  # transparent corner
    return img


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5) so ``getrusage`` reports this
    wafer's peak; returns the RSS now, in bytes."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def drc_window(layout: Path, window_um: float, radius_um: float, scratch: Path) -> dict[str, Any]:
    """KLayout reads the whole layout, clips a window of ``window_um`` square at the disc's
    right edge (half inside, half outside), writes it as its own layout and ``run_drc`` checks
    it: the DRC of chips, on a piece of the wafer."""
    import klayout.db as kdb

    from layout.drc import run_drc

    t0 = time.perf_counter()
    ly = kdb.Layout()
    ly.read(str(layout))
    read_s = time.perf_counter() - t0
    top = ly.top_cell()
    half = round(window_um * 500)
    edge = round(radius_um * 1000)
    box = kdb.Box(edge - half, -half, edge + half, half)  # on pad borders: no cell is cut
    clip = ly.clip(top.cell_index(), box)
    options = kdb.SaveLayoutOptions()
    options.add_cell(clip)
    out = scratch / "window.oas"
    ly.write(str(out), options)
    result = run_drc(out)
    return {
        "klayout_read_s": round(read_s, 2),
        "top_instances": top.child_instances(),
        "window_um": [box.left / 1000, box.bottom / 1000, box.right / 1000, box.top / 1000],
        "window_polygons": result.polygons_checked,
        "drc_clean": result.clean,
        "drc_markers": result.counts(),
        "drc_s": round(result.seconds, 2),
    }


KLAYOUT_MAX_REFERENCES = 20_000_000
"""Above this, the DRC window is cut from a smaller wafer: KLayout reads a layout whole, and
3e8 placements (a noise image on 100 mm) would take tens of GB."""


def bench_wafer(
    diameters_mm: list[float], tile_rows: int, window_um: float, noise: bool = False
) -> dict[str, Any]:
    """``noise``: the worst case instead of the drawn image, an index image of one random
    palette entry per pad (as fine as the grid), so nearly every pad is its own reference."""
    from layout.wafer import WaferConfig, write_wafer

    palette = generate(16, seed=7, config=GeneratorConfig(periods_nm=(500,)))
    targets = tuple(f"colour{i}" for i in range(16))
    rows: list[dict[str, Any]] = []
    out: dict[str, Any] = {
        "image": "noise: one random entry per pad" if noise else "drawn 512x512",
        "palette": len(palette),
    }
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        largest: tuple[Path, float] | None = None  # the largest KLayout may read whole
        for d in sorted(diameters_mm):
            layout, manifest = scratch / f"wafer{d:g}.oas", scratch / f"wafer{d:g}.h5"
            cfg = WaferConfig(thickness_nm=180, diameter_mm=d, tile_rows=tile_rows)
            side = cfg.grid_side
            image = (
                np.random.default_rng(0).integers(0, 16, (side, side), dtype=np.int16)
                if noise
                else wafer_image()
            )
            before = _reset_peak_rss()
            st = write_wafer(image, palette, targets, cfg, layout, manifest, progress=True)
            del image
            rows.append(
                {
                    "diameter_mm": d,
                    "grid": st.grid_side,
                    "pads": st.pads,
                    "references": st.runs,
                    "pads_per_reference": round(st.pads / max(st.runs, 1), 1),
                    "pads_per_s": round(st.pads_per_s),
                    "layout_bytes": st.layout_bytes,
                    "manifest_bytes": st.manifest_bytes,
                    "layout_bytes_per_pad": round(st.layout_bytes / st.pads, 5),
                    "layout_bytes_per_reference": round(st.layout_bytes / max(st.runs, 1), 2),
                    "manifest_bytes_per_pad": round(st.manifest_bytes / st.pads, 4),
                    "estimated_layout_bytes": st.estimate.layout_bytes,
                    "estimated_manifest_bytes": st.estimate.manifest_bytes,
                    "wall_s": round(st.wall_s, 2),
                    "peak_rss_gib": round(st.peak_rss_bytes / 2**30, 3),
                    "rss_before_gib": round(before / 2**30, 3),
                }
            )
            manifest.unlink()
            if st.runs > KLAYOUT_MAX_REFERENCES:  # KLayout holds every placement in memory
                layout.unlink()
                continue
            if largest is not None:
                largest[0].unlink()
            largest = (layout, d)
        out["wafers"] = rows
        if largest is not None:
            out["klayout_and_drc"] = {
                "diameter_mm": largest[1],
                **drc_window(largest[0], window_um, largest[1] * 500, scratch),
            }
    big = rows[-1]
    scale = (100.0 / big["diameter_mm"]) ** 2
    out["extrapolated_to_100mm_from"] = big["diameter_mm"]
    out["extrapolated_100mm"] = {
        "pads": round(big["pads"] * scale),
        "wall_s": round(big["wall_s"] * scale, 1),
        "layout_bytes": round(big["layout_bytes"] * 100.0 / big["diameter_mm"]),
        "manifest_bytes": round(big["manifest_bytes"] * scale),
        "note": "pads and time grow with the area; references with the rows (the layout)",
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--pairs", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-search", action="store_true", help="skip the search figures")
    parser.add_argument("--optimize", action="store_true", help="only the optimization rows")
    parser.add_argument("--surrogate", type=Path, default=None, help="a forward surrogate")
    parser.add_argument("--wafer", action="store_true", help="only the wafer rows")
    parser.add_argument(
        "--diameter-mm", type=float, nargs="+", default=[5.0, 10.0, 20.0, 100.0],
        help="wafer diameters to write (--wafer)",
    )  # fmt: skip
    parser.add_argument("--tile-rows", type=int, default=256, help="pad rows per tile (--wafer)")
    parser.add_argument("--window-um", type=float, default=200.0, help="DRC window (--wafer)")
    parser.add_argument(
        "--noise", action="store_true", help="worst-case image: a random entry per pad (--wafer)"
    )
    args = parser.parse_args()
    if args.wafer:
        import logging

        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        figures = bench_wafer(args.diameter_mm, args.tile_rows, args.window_um, args.noise)
        print(json.dumps(figures, indent=2))
        return
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
