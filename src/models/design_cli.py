"""``metascan design probes | retrieve | optimize | predict``: the model's side of inverse design.

torch and FAISS are imported inside the commands, so ``metascan --help`` does not pay for them.
``design targets`` is :mod:`models.targets_cli`; ``design evaluate`` (the simulated bench as fab)
is :mod:`simulators.design_eval_cli`. Targets and spectra databases of another film material than
the model's are refused (:mod:`layout.material`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from common.outputs import check_outputs
from common.values import COUNT, SEED, Bounds
from dataset.probes_file import SCHEMA as PROBES_SCHEMA
from dataset.targets_file import SCHEMA as TARGETS_SCHEMA

if TYPE_CHECKING:
    from models.probes import ProbeConstraints

TOP_K = Bounds(1, 10_000, integer=True)
THREADS = Bounds(1, 1024, integer=True)
BATCH = Bounds(1, 65_536, integer=True)
PERIODS = Bounds(100, 5000, unit="nm", integer=True)
THICKNESSES = Bounds(10.0, 5000.0, unit="nm")
RULE_NM = Bounds(0.0, 1000.0, unit="nm", lo_open=True)
PRIMITIVES = Bounds(1, 8, integer=True)
SIZES = Bounds(1, 10**10, integer=True)
ITERATIONS = Bounds(1, 100_000, integer=True)
PARTICLES = Bounds(2, 100_000, integer=True)
PENALTY = Bounds(0.0, 1e6)
ROBUST = Bounds(1, 64, integer=True)
FAB_SD_NM = Bounds(0.0, 50.0, unit="nm")
# The design constraints, one declaration for ``probes`` and ``optimize``.
PeriodsOption = Annotated[Any, PERIODS.list_option("--periods", help="Allowed periods.")]
ThicknessesOption = Annotated[
    Any, THICKNESSES.list_option("--thicknesses", help="Allowed film thicknesses.")
]
KindsOption = Annotated[str, typer.Option("--kinds", help="Allowed primitives, comma-separated.")]
PrimitivesOption = Annotated[int, PRIMITIVES.option("--max-primitives")]
MinFeatureOption = Annotated[
    float | None,
    RULE_NM.option("--min-feature-nm", help="Larger minimum feature than the fab's 50 nm."),
]
MinGapOption = Annotated[
    float | None, RULE_NM.option("--min-gap-nm", help="Larger minimum gap than the fab's 50 nm.")
]


def _exclusion_ids(path: Path) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Design ids to leave out: a design library, a chip manifest or a pairs file."""
    import h5py

    from common.versioned_hdf5 import has_schema
    from dataset.pairs_file import SCHEMA as PAIRS_SCHEMA
    from layout.library_file import SCHEMA as LIBRARY_SCHEMA
    from layout.library_file import read_library
    from layout.manifest import SCHEMA as MANIFEST_SCHEMA
    from layout.manifest import read_manifest

    if has_schema(path, LIBRARY_SCHEMA):
        return read_library(path).design_id
    if has_schema(path, MANIFEST_SCHEMA):
        return read_manifest(path).designs.design_id
    if has_schema(path, PAIRS_SCHEMA):
        with h5py.File(path, "r") as f:
            return np.asarray(f["design_id"][()], dtype=np.int64)
    raise ValueError(
        f"--exclude {path} is not a design library, chip manifest or pairs file (or does not exist)"
    )


def _split_rows(path: Path, split: str, option: str, model: Path) -> np.ndarray[Any, Any]:
    """The measured spectra of one split of a pairs file of the model's film, for prediction."""
    from dataset.pairs_file import SPLIT_NAMES
    from dataset.pairs_io import load_pairs
    from models.model_dir import check_material

    if split not in SPLIT_NAMES:
        raise ValueError(f"--db-split {split!r} is not a split; known: {', '.join(SPLIT_NAMES)}")
    pairs = load_pairs(path)
    check_material(model, pairs.material, f"{option} {path}")
    rows = np.flatnonzero(pairs.split == SPLIT_NAMES.index(split))
    if rows.size == 0:
        raise ValueError(f"{option} {path} has no {split!r} rows")
    return pairs.spectra[rows]


def _constraints(
    periods: Any,
    thicknesses: Any,
    kinds: str,
    max_primitives: int,
    min_feature_nm: float | None,
    min_gap_nm: float | None,
) -> ProbeConstraints:
    """The user's design constraints, shared by ``probes`` and ``optimize``."""
    from models.probes import ProbeConstraints

    defaults = ProbeConstraints()
    return ProbeConstraints(
        periods_nm=tuple(periods) if periods else defaults.periods_nm,
        thicknesses_nm=tuple(float(t) for t in thicknesses)
        if thicknesses
        else defaults.thicknesses_nm,
        kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()),
        max_primitives=max_primitives,
        min_feature_nm=min_feature_nm,
        min_gap_nm=min_gap_nm,
    )


def probes_cmd(
    model: Annotated[Path, typer.Option("--model", help="Model directory (metascan train).")],
    output: Annotated[Path, typer.Option("--output", help="Probe database (HDF5) to write.")],
    count: Annotated[int, COUNT.option("--count", help="Probes in the whole build.")] = 10_000,
    seed: Annotated[int, SEED.option("--seed")] = 0,
    periods: PeriodsOption = None,
    thicknesses: ThicknessesOption = None,
    kinds: KindsOption = "rectangle,ellipse,ring",
    max_primitives: PrimitivesOption = 4,
    min_feature_nm: MinFeatureOption = None,
    min_gap_nm: MinGapOption = None,
    exclude: Annotated[
        Path | None,
        typer.Option("--exclude", help="Leave out these designs (library, manifest or pairs)."),
    ] = None,
    shard: Annotated[
        str | None, typer.Option("--shard", help="Build only shard I/N of the build.")
    ] = None,
    shards: Annotated[
        int | None,
        Bounds(1, 100_000, integer=True).option(
            "--shards", help="Split into N shards run as dask.distributed tasks."
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Dask scheduler address; default a LocalCluster."),
    ] = None,
    block_size: Annotated[int, Bounds(64, 1 << 20, integer=True).option("--block-size")] = 4096,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or bf16.")] = "bf16",
    batch_size: Annotated[int, BATCH.option("--batch-size", help="Encoder batch.")] = 256,
    threads: Annotated[int | None, THREADS.option("--threads", help="torch threads.")] = None,
    compile_encoder: Annotated[
        bool,
        typer.Option(
            "--compile", help="torch.compile the encoder (~1 min; pays past ~1e6 probes)."
        ),
    ] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an unfinished build.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Generate, rasterize and encode probes under the given constraints (no retraining)."""
    from models.inference import InferenceConfig
    from models.probes import (
        ProbeBuild,
        Shard,
        build_on_cluster,
        build_probes,
        exclusion_key,
        parts_dir,
        shard_paths,
    )

    if shard is not None and shards is not None:
        raise ValueError("give --shard I/N (this process builds one shard) or --shards N, not both")
    if scheduler is not None and shards is None:
        raise ValueError("--scheduler runs shards as tasks; give --shards N too")
    if not model.is_dir():
        raise FileNotFoundError(f"model directory {model} does not exist")
    constraints = _constraints(
        periods, thicknesses, kinds, max_primitives, min_feature_nm, min_gap_nm
    )
    inference = InferenceConfig(precision=precision, batch_size=batch_size, compile=compile_encoder)
    outputs = shard_paths(output, shards or 1)
    inputs: dict[str, Path | None] = {"--model": model, "--exclude": exclude}
    labels = ["--output"] if len(outputs) == 1 else [f"shard {p.name} of --output" for p in outputs]
    check_outputs(
        dict(zip(labels, outputs, strict=True)),
        inputs,
        force,  # --resume continues a build, never replaces a finished one
        schemas=dict.fromkeys(labels, PROBES_SCHEMA),
    )
    if force and not resume:
        import shutil

        for p in outputs:
            if parts_dir(p).is_dir():
                shutil.rmtree(parts_dir(p))
    ids = _exclusion_ids(exclude) if exclude is not None else None
    build = ProbeBuild(
        count=count,
        seed=seed,
        block_size=block_size,
        constraints=constraints,
        exclude_sha256=exclusion_key(ids) if ids is not None else None,
        exclude_count=int(np.unique(ids).size) if ids is not None else 0,
    )
    if shards is not None:
        paths = build_on_cluster(scheduler, output, model, build, shards, inference, ids, resume)
    else:
        part = Shard.parse(shard) if shard is not None else Shard()
        paths = [
            build_probes(output, model, build, part, inference, ids, resume, progress, threads)
        ]
    from dataset.probes_file import read_probes

    db = read_probes(paths)
    typer.echo(
        f"wrote {len(db)} probes to {', '.join(str(p) for p in paths)} "
        f"({db.duplicates_dropped} designs drawn twice dropped"
        + (f"; shards {list(db.shards_missing)} still to build" if db.shards_missing else "")
        + ")"
    )


def retrieve_cmd(
    model: Annotated[Path, typer.Option("--model", help="Model directory.")],
    probes: Annotated[list[Path], typer.Option("--probes", help="Probe shard(s); repeatable.")],
    targets: Annotated[Path, typer.Option("--targets", help="Targets file (design targets).")],
    output: Annotated[Path, typer.Option("--output", help="Chosen designs (HDF5) to write.")],
    top_k: Annotated[int, TOP_K.option("--top-k")] = 1,
    database_sizes: Annotated[
        Any,
        SIZES.list_option(
            "--database-sizes", help="Also search only the first S probes, for each S (a study)."
        ),
    ] = None,
    index: Annotated[str, typer.Option("--index", help="flat (exact), ivf or hnsw.")] = "flat",
    spectra_db: Annotated[
        Path | None,
        typer.Option(
            "--spectra-db",
            help="Pairs whose measured spectra predict each shortlisted probe's spectrum; the "
            "shortlist is then ordered by the targets' weighted MSE.",
        ),
    ] = None,
    db_split: Annotated[str, typer.Option("--db-split", help="Rows of --spectra-db.")] = "train",
    shortlist: Annotated[
        int, TOP_K.option("--shortlist", help="Probes per target to re-rank (with --spectra-db).")
    ] = 100,
    precision: Annotated[str, typer.Option("--precision")] = "bf16",
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
) -> None:
    """Each target's most similar probes, as a design library `layout chip` accepts."""
    from dataset.chosen_designs_file import write_chosen
    from dataset.targets_file import read_targets
    from models.inference import InferenceConfig
    from models.inverse import Rerank, retrieve
    from models.search import SearchConfig

    inputs: dict[str, Path | None] = {
        "--model": model,
        "--targets": targets,
        "--spectra-db": spectra_db,
    }
    inputs.update({f"--probes {p}": p for p in probes})
    check_outputs(
        {"--output": output}, inputs, force, schemas={"--output": "metascan.design_library"}
    )
    png = output.with_suffix(".png")
    check_outputs({"plot beside --output": png}, inputs, force)
    t = read_targets(targets)
    sizes = tuple(sorted(set(database_sizes))) if database_sizes else None
    rerank = None
    if spectra_db is not None:
        rows = _split_rows(spectra_db, db_split, "--spectra-db", model)
        rerank = Rerank(rows, f"{spectra_db} ({db_split})", shortlist)
    chosen = retrieve(
        model,
        probes,
        t,
        targets,
        top_k,
        sizes,
        InferenceConfig(precision=precision),
        SearchConfig(index=index),
        rerank,
    )
    write_chosen(output, chosen)
    from models.design_plots import plot_targets_and_designs

    plot_targets_and_designs(t, chosen, png)
    thick = sorted(set(chosen.thickness_nm.tolist()))
    note = "" if len(thick) == 1 else f"; designs span thicknesses {thick} nm (one chip holds one)"
    typer.echo(
        f"wrote {len(chosen.library)} designs for {len(t)} targets (top {top_k}) to {output}, "
        f"plot {png}{note}"
    )


def predict_cmd(
    model: Annotated[Path, typer.Option("--model", help="Model directory.")],
    designs: Annotated[
        Path,
        typer.Option(
            "--designs",
            help="Geometries: chosen designs (design retrieve), a design library (with "
            "--thickness-nm) or a pairs file (its --split rows, scored against their spectra).",
        ),
    ],
    spectra_db: Annotated[
        Path,
        typer.Option("--spectra-db", help="Pairs file whose measured spectra are the answers."),
    ],
    output: Annotated[Path, typer.Option("--output", help="Predicted spectra (targets format).")],
    db_split: Annotated[
        str, typer.Option("--db-split", help="Rows of --spectra-db to use.")
    ] = "train",
    split: Annotated[
        str, typer.Option("--split", help="Rows of --designs when it is pairs.")
    ] = "test",
    thickness_nm: Annotated[
        float | None, THICKNESSES.option("--thickness-nm", help="For a plain design library.")
    ] = None,
    top_k: Annotated[int, TOP_K.option("--top-k")] = 1,
    weighted: Annotated[
        bool, typer.Option("--weighted", help="Similarity-weighted mean of the top k.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
) -> None:
    """Spectra of geometries, retrieved from measured data (MOCLIP's zero-shot prediction)."""
    from common.versioned_hdf5 import has_schema
    from dataset.pairs_file import SPLIT_NAMES
    from dataset.pairs_io import load_pairs
    from dataset.targets_file import Targets, write_targets
    from layout.library_file import read_library
    from layout.raster import rasterize
    from models.inverse import check_bands, predict, score_prediction
    from models.model_dir import check_material, load_model, model_material

    inputs: dict[str, Path | None] = {
        "--model": model,
        "--designs": designs,
        "--spectra-db": spectra_db,
    }
    check_outputs({"--output": output}, inputs, force, schemas={"--output": TARGETS_SCHEMA})
    check_outputs({"report beside --output": output.with_suffix(".json")}, inputs, force)
    for name, value in (("--db-split", db_split), ("--split", split)):
        if value not in SPLIT_NAMES:
            raise ValueError(f"{name} {value!r} is not a split; known: {', '.join(SPLIT_NAMES)}")
    net = load_model(model)
    material = model_material(model)
    db = load_pairs(spectra_db)
    check_material(model, db.material, f"--spectra-db {spectra_db}")
    check_bands(net, db.wavelength_nm, f"--spectra-db {spectra_db}")
    db_rows = np.flatnonzero(db.split == SPLIT_NAMES.index(db_split))
    if db_rows.size == 0:
        raise ValueError(f"--spectra-db {spectra_db} has no {db_split!r} rows")
    truth = None
    if has_schema(designs, "metascan.pairs") or designs.suffix == ".npz":
        q = load_pairs(designs)
        check_material(model, q.material, f"--designs {designs}")
        rows = np.flatnonzero(q.split == SPLIT_NAMES.index(split))
        if rows.size == 0:
            raise ValueError(f"--designs {designs} has no {split!r} rows")
        images, params = q.geometry[rows], q.params[rows]
        ids = [f"pairs:{int(q.design_id[r])}:{int(r)}" for r in rows]
        truth = q.spectra[rows].astype(np.float64)
    else:
        from dataset.chosen_designs_file import has_choices, read_chosen

        if has_choices(designs):
            chosen = read_chosen(designs)
            check_material(model, chosen.material, f"--designs {designs}")
            lib, thick = chosen.library, chosen.first_thickness_nm()
        else:
            lib = read_library(designs)
            if thickness_nm is None:
                raise ValueError(
                    f"--designs {designs} is a plain design library; give --thickness-nm"
                )
            thick = np.full(len(lib), thickness_nm)
        if thickness_nm is not None:
            thick = np.full(len(lib), thickness_nm)
        images = rasterize(lib)
        params = np.stack([lib.period_nm, thick], axis=1) / 1000.0
        ids = [f"design:{int(d)}" for d in lib.design_id]
    spectra_db_rows = db.spectra[db_rows]
    pred = predict(net, images, params, spectra_db_rows, top_k, weighted)
    write_targets(
        output,
        Targets.build(
            np.clip(pred.spectra, 0.0, 1.5),
            db.wavelength_nm,
            target_id=ids,
            provenance={
                "source": "predicted",
                "command": "metascan design predict",
                "model": str(model),
                "spectra_db": str(spectra_db),
                "db_split": db_split,
                "top_k": top_k,
                "weighted": weighted,
            },
            material=material,  # spectra measured on the model's film
        ),
    )
    line = f"wrote {len(ids)} predicted spectra to {output}"
    if truth is not None:
        report = score_prediction(pred.spectra, truth, spectra_db_rows)
        report_path = output.with_suffix(".json")
        from common.atomic import save_json

        save_json(report, report_path)
        line += (
            f"; MSE median {report['model']['q50']:.2e} (oracle {report['oracle']['q50']:.2e}, "
            f"mean spectrum {report['mean_spectrum']['q50']:.2e}), report {report_path}"
        )
    typer.echo(line)


def optimize_cmd(
    model: Annotated[Path, typer.Option("--model", help="Model directory.")],
    targets: Annotated[Path, typer.Option("--targets", help="Targets file (design targets).")],
    output: Annotated[Path, typer.Option("--output", help="Chosen designs (HDF5) to write.")],
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="pso; hybrid (PSO then gradient steps); surrogate or surrogate-hybrid (the "
            "same on a forward surrogate's predicted MSE: --model names the surrogate); "
            "random (random search in the same space).",
        ),
    ] = "pso",
    iterations: Annotated[
        int, ITERATIONS.option("--iterations", help="PSO iterations (hybrid: before the steps).")
    ] = 30,
    steps: Annotated[
        int, ITERATIONS.option("--steps", help="hybrid: gradient steps after the swarm.")
    ] = 40,
    start: Annotated[
        str,
        typer.Option(
            "--start", help="The first swarm: probes (random generator designs) or uniform."
        ),
    ] = "probes",
    robust: Annotated[
        int,
        ROBUST.option("--robust", help="Score each candidate over K sampled fabrications."),
    ] = 1,
    fab_sd_nm: Annotated[
        float,
        FAB_SD_NM.option("--fab-sd-nm", help="--robust: pad-to-pad size-bias spread (SEM: 10)."),
    ] = 10.0,
    particles: Annotated[int, PARTICLES.option("--particles")] = 100,
    seed: Annotated[int, SEED.option("--seed")] = 0,
    record: Annotated[
        Any,
        ITERATIONS.list_option(
            "--record-iterations",
            help="Also keep the best designs after these iterations (design evaluate's curve).",
        ),
    ] = None,
    periods: PeriodsOption = None,
    thicknesses: ThicknessesOption = None,
    kinds: KindsOption = "rectangle,ellipse,ring",
    max_primitives: PrimitivesOption = 4,
    min_feature_nm: MinFeatureOption = None,
    min_gap_nm: MinGapOption = None,
    probes: Annotated[
        list[Path] | None,
        typer.Option(
            "--probes",
            help="Probe shard(s): the designs the model interpolates (distance reported).",
        ),
    ] = None,
    support_penalty: Annotated[
        float,
        PENALTY.option(
            "--support-penalty", help="Score less this x the excess distance from --probes."
        ),
    ] = 0.0,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or bf16.")] = "bf16",
    threads: Annotated[int | None, THREADS.option("--threads", help="torch threads.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Search the generator's parameter space for each target's best design (MOCLIP's PSO)."""
    from dataset.chosen_designs_file import write_chosen
    from dataset.targets_file import read_targets
    from models.hybrid import HybridConfig
    from models.inference import InferenceConfig
    from models.optimize import METHODS, OptimizeConfig, optimize

    if method not in METHODS:
        raise ValueError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    inputs: dict[str, Path | None] = {"--model": model, "--targets": targets}
    inputs.update({f"--probes {p}": p for p in probes or []})
    check_outputs(
        {"--output": output}, inputs, force, schemas={"--output": "metascan.design_library"}
    )
    png = output.with_suffix(".png")
    check_outputs({"plot beside --output": png}, inputs, force)
    constraints = _constraints(
        periods, thicknesses, kinds, max_primitives, min_feature_nm, min_gap_nm
    )
    t = read_targets(targets)
    cfg = OptimizeConfig(
        iterations=iterations,
        particles=particles,
        seed=seed,
        record_iterations=tuple(record) if record else (),
        robust=robust,
        fab_sd_nm=fab_sd_nm,
        start=start,
    )
    chosen, result = optimize(
        model,
        t,
        targets,
        constraints.design_space(),
        cfg,
        InferenceConfig(precision=precision),
        method=method,
        probes=probes,
        support_penalty=support_penalty,
        hybrid=HybridConfig(steps=steps, snap_every=min(10, steps))
        if method.endswith("hybrid")
        else None,
        threads=threads,
        progress=progress,
    )
    write_chosen(output, chosen)
    from models.design_plots import plot_targets_and_designs

    plot_targets_and_designs(t, chosen, png)
    objective = (
        f"median predicted weighted MSE {float(np.median(-result.similarity)):.2e}"
        if method.startswith("surrogate")
        else f"median similarity {float(np.median(result.similarity)):.4f}"
    )
    typer.echo(
        f"wrote {len(t)} optimized designs to {output} (plot {png}): {objective}, "
        f"{result.encoded} designs through the network in "
        f"{result.wall_s:.1f} s ({result.wall_s / len(t):.2f} s/target); "
        f"{100 * result.infeasible_fraction:.1f} % of proposals infeasible, "
        f"{100 * result.repaired_fraction:.1f} % repaired"
        + (
            ""
            if not probes
            else f"; median distance from the probes {float(np.nanmedian(result.distance)):.4f}"
        )
    )
