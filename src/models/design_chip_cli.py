"""``metascan design chip``: a target map (colour image or spectral table) to a written chip.

Outputs, beside ``--output`` (the layout, .gds or .oas): the manifest ``<stem>.h5`` (contract 2,
each pad's target in ``pads/target``), the chip-design record ``<stem>_design.h5`` (what was
asked and promised, :mod:`dataset.chip_design_file`), ``<stem>_design.json`` (summary: designs,
promised errors, the reachable gamut) and ``<stem>_gamut.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from common.outputs import check_outputs
from common.values import SEED, Bounds
from layout.chip import CHIP_BOUNDS
from layout.wafer import WAFER_BOUNDS

log = logging.getLogger(__name__)

ITERATIONS = Bounds(1, 10_000, integer=True)
PARTICLES = Bounds(2, 10_000, integer=True)
LAMP_K = Bounds(1000.0, 20_000.0, unit="K")
COLS = Bounds(1, 100_000, integer=True)


def _quantiles(values: np.ndarray[Any, Any]) -> dict[str, float]:
    return {
        "median": float(np.median(values)),
        "q95": float(np.quantile(values, 0.95)),
        "max": float(values.max()),
    }


def chip_cmd(
    targets: Annotated[
        Path,
        typer.Option(
            "--targets",
            help="The map: a PNG (each pixel a pad of that colour) or a targets file (placed by "
            "--placement, or row-major).",
        ),
    ],
    model: Annotated[Path, typer.Option("--model", help="Contrastive model directory.")],
    probes: Annotated[list[Path], typer.Option("--probes", help="Probe shard(s); repeatable.")],
    output: Annotated[Path, typer.Option("--output", help="Layout to write: .gds or .oas.")],
    thickness_nm: Annotated[
        float, CHIP_BOUNDS["thickness_nm"].option("--thickness-nm", help="The chip's film.")
    ],
    method: Annotated[
        str, typer.Option("--method", help="retrieve, or hybrid (retrieval then PSO).")
    ] = "retrieve",
    surrogate: Annotated[
        Path | None,
        typer.Option("--surrogate", help="Forward surrogate: predicts each design's spectrum."),
    ] = None,
    spectra_db: Annotated[
        Path | None,
        typer.Option(
            "--spectra-db",
            help="Without --surrogate: pairs whose nearest measured spectrum is "
            "each design's prediction.",
        ),
    ] = None,
    placement: Annotated[
        Path | None,
        typer.Option("--placement", help="CSV target_id,row,col for a targets file."),
    ] = None,
    cols: Annotated[int | None, COLS.option("--cols", help="Row-major placement: columns.")] = None,
    iterations: Annotated[
        int, ITERATIONS.option("--iterations", help="hybrid: PSO iterations.")
    ] = 10,
    particles: Annotated[int, PARTICLES.option("--particles", help="hybrid: swarm size.")] = 50,
    seed: Annotated[int, SEED.option("--seed")] = 0,
    replicas: Annotated[
        int, CHIP_BOUNDS["replicas"].option("--replicas", help="Copies of the whole map.")
    ] = 2,
    pad_size_um: Annotated[
        float, CHIP_BOUNDS["pad_size_um"].option("--pad-size-um", help="Pad side (touching).")
    ] = 6.0,
    lamp_temperature_k: Annotated[
        float,
        LAMP_K.option("--lamp-temperature-k", help="The bench lamp the colours are seen under."),
    ] = 3200.0,
    chip_id: Annotated[str, typer.Option("--chip-id", help="Chip name.")] = "designed",
    wafer_mm: Annotated[
        float | None,
        WAFER_BOUNDS["diameter_mm"].option(
            "--wafer-mm",
            help="Print the image over a whole wafer of this diameter (OASIS, streamed; "
            "--pad-size-um 5 is MOCLIP's); --replicas does not apply.",
        ),
    ] = None,
    edge_exclusion_mm: Annotated[
        float, WAFER_BOUNDS["edge_exclusion_mm"].option("--edge-exclusion-mm")
    ] = 0.0,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or bf16.")] = "bf16",
    force: Annotated[bool, typer.Option("--force", help="Overwrite the outputs.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Design every distinct target of a map once and write the chip that prints it."""
    from common.atomic import save_json
    from dataset.chip_design_file import SCHEMA as DESIGN_SCHEMA
    from dataset.chip_design_file import ChipDesign, write_chip_design
    from dataset.probes_file import read_probes
    from dataset.target_map import describe, read_map
    from layout.chip import ChipConfig, plan_map_chip
    from layout.cli import check_chip_id
    from layout.gds_writer import write_chip
    from layout.manifest import SCHEMA as MANIFEST_SCHEMA
    from layout.manifest import read_manifest
    from models.chip_design import (
        ChipDesignConfig,
        design_map,
        load_predictor,
        reachable_gamut,
        tiling_periods,
    )
    from models.design_cli import _constraints
    from models.design_plots import plot_gamut
    from models.inference import InferenceConfig
    from models.model_dir import model_identity, model_material

    fmt = output.suffix.lower().lstrip(".")
    if fmt not in ("gds", "oas"):
        raise ValueError(f"--output {output} must end in .gds or .oas")
    check_chip_id(chip_id)
    if wafer_mm is not None and fmt != "oas":
        raise ValueError(f"--output {output}: a wafer is written as OASIS; end it in .oas")
    cfg = ChipDesignConfig(
        method=method,  # type: ignore[arg-type]
        iterations=iterations,
        particles=particles,
        seed=seed,
        lamp_temperature_k=lamp_temperature_k,
    )
    stem = output.with_suffix("")
    manifest_path = output.with_suffix(".h5")
    design_path = stem.with_name(stem.name + "_design.h5")
    summary_path = stem.with_name(stem.name + "_design.json")
    gamut_png = stem.with_name(stem.name + "_gamut.png")
    inputs: dict[str, Path | None] = {
        "--targets": targets,
        "--model": model,
        "--surrogate": surrogate,
        "--spectra-db": spectra_db,
        "--placement": placement,
    }
    inputs.update({f"--probes {p}": p for p in probes})
    check_outputs(
        {
            "--output": output,
            "manifest beside --output": manifest_path,
            "design record beside --output": design_path,
        },
        inputs,
        force,
        schemas={
            "manifest beside --output": MANIFEST_SCHEMA,
            "design record beside --output": DESIGN_SCHEMA,
        },
    )
    check_outputs({"summary": summary_path, "gamut plot": gamut_png}, inputs, force)
    material = model_material(model)
    target_map = read_map(targets, placement, cols)
    if target_map.targets is not None:
        target_map.targets.check_material(material, f"model {model}", f"targets {targets}")
    wafer = None
    if wafer_mm is not None:
        from layout.wafer import WaferConfig

        wafer = WaferConfig(
            thickness_nm=thickness_nm,
            diameter_mm=wafer_mm,
            pad_size_um=pad_size_um,
            material=material,
            chip_id=chip_id,
            edge_exclusion_mm=edge_exclusion_mm,
        )
    chip_cfg = ChipConfig(
        thickness_nm=thickness_nm,
        material=material,
        replicas=replicas,
        pad_size_um=pad_size_um,
        companion_size=0,
        chip_id=chip_id,
        seed=seed,
    )
    inference = InferenceConfig(precision=precision)
    predictor = load_predictor(model, surrogate, spectra_db, inference)
    if target_map.targets is not None and not np.allclose(
        target_map.targets.wavelength_nm, predictor.wavelength_nm
    ):
        raise ValueError(
            f"targets {targets} are on other bands than the model's prediction "
            f"({predictor.wavelength_nm[0]:g}..{predictor.wavelength_nm[-1]:g} nm)"
        )
    database = read_probes(probes, model_identity(model))
    # The hybrid searches the probes' own periods that tile the pad, at the chip's film.
    # (None when no probe tiles the pad: design_map then says so in one line.)
    tiling = tiling_periods(database.library.period_nm, pad_size_um)
    space = (
        _constraints(tiling, [thickness_nm], "rectangle,ellipse,ring", 4, None, None)
        if tiling and method == "hybrid"
        else None
    )
    designed = design_map(
        target_map,
        predictor,
        database.library,
        database.thickness_nm,
        thickness_nm,
        pad_size_um,
        cfg,
        None if space is None else space.design_space(),
        progress=progress,
    )
    # Each designed target's design; targets identical to it share its cell.
    design_of_target = np.full(len(target_map.target_ids), -1, np.int64)
    slot = {int(r): i for i, r in enumerate(designed.target_rows)}
    used = np.unique(target_map.grid[target_map.grid >= 0])
    designed_row = np.full(len(target_map.target_ids), -1, np.int64)
    for t in used:
        designed_row[t] = slot[int(target_map.unique[t])]
        design_of_target[t] = designed.library.design_id[designed_row[t]]
    grid = target_map.grid
    if wafer is not None:
        from layout.wafer import write_wafer

        # Palette row p is target p's design; the image is top row first, as layout.wafer takes.
        palette = designed.library.take(np.maximum(designed_row, 0))
        stats = write_wafer(
            grid[::-1],
            palette,
            target_map.target_ids,
            wafer,
            output,
            manifest_path,
            progress=progress,
            force=force,
        )
        _wafer_summary(stats.to_dict(), designed, target_map, summary_path, gamut_png, method)
        typer.echo(
            f"wrote {output} ({stats.layout_bytes / 1e6:.1f} MB) + {manifest_path.name} "
            f"({stats.manifest_bytes / 1e6:.1f} MB): {stats.pads} pads of "
            f"{len(target_map.target_ids)} targets on a {wafer_mm:g} mm wafer, {stats.runs} "
            f"references, {stats.wall_s:.1f} s writing ({stats.pads_per_s / 1e6:.2f} M pads/s), "
            f"peak RSS {stats.peak_rss_bytes / 2**30:.2f} GiB"
        )
        return
    design_grid = np.where(grid >= 0, design_of_target[np.maximum(grid, 0)], -1)
    _, first = np.unique(designed.library.design_id, return_index=True)
    library = designed.library.take(np.sort(first))
    manifest = plan_map_chip(design_grid, grid, target_map.target_ids, library, chip_cfg)
    write_chip(manifest, chip_cfg, output, manifest_path, fmt, progress=progress)  # type: ignore[arg-type]
    written = read_manifest(manifest_path)
    from dataset.colorimetry import Colorimetry, lab_of_srgb

    colours = Colorimetry(predictor.wavelength_nm, lamp_temperature_k)
    if target_map.kind == "colour":
        assert target_map.srgb is not None
        target_lab = lab_of_srgb(target_map.srgb)
    else:
        assert target_map.targets is not None
        target_lab = colours.lab_of_spectra(target_map.targets.spectra)
    t = target_map.targets
    record = ChipDesign(
        kind=target_map.kind,
        target_id=target_map.target_ids,
        designed_row=designed_row,
        target_lab=target_lab,
        design_id=designed.library.design_id.astype(np.int64),
        promised_spectra=designed.promised_spectra,
        promised_lab=designed.promised_lab,
        promised_error=designed.promised_error,
        retrieved_error=designed.retrieved_error,
        wavelength_nm=predictor.wavelength_nm,
        grid=grid,
        manifest_sha256=written.content_sha256(),
        material=material,
        thickness_nm=thickness_nm,
        lamp_temperature_k=lamp_temperature_k,
        truncation=colours.truncation,
        target_srgb=target_map.srgb,
        target_spectra=None if t is None else t.spectra,
        target_weight=None if t is None else t.weight,
        provenance={
            "command": "metascan design chip",
            "method": method,
            "iterations": iterations if method == "hybrid" else 0,
            "particles": particles if method == "hybrid" else 0,
            "predictor": predictor.described,
            "model": str(model),
            "model_identity": model_identity(model),
            "map_source": target_map.source,
            "map_source_sha256": target_map.source_sha256,
            "chip": output.name,
        },
    )
    write_chip_design(design_path, record)
    gamut = reachable_gamut(designed.pool_lab)
    plot_gamut(designed.pool_lab, designed.target_lab, designed.promised_lab, gamut_png)
    error_name = "delta_e2000" if target_map.kind == "colour" else "weighted_mse"
    summary: dict[str, Any] = {
        "map": describe(target_map),
        "method": method,
        "predictor": predictor.described,
        "colorimetry": {
            "observer": "CIE 1931 2 degree",
            "lamp_temperature_k": lamp_temperature_k,
            "adaptation": "CAT02 from the lamp white to D65",
            "truncation": colours.truncation,
        },
        "chip": {
            "layout": output.name,
            "pads": int(np.count_nonzero(written.pad_target >= 0))
            if written.pad_target is not None
            else 0,
            "replicas": replicas,
            "designs": len(library),
            "thickness_nm": thickness_nm,
        },
        f"promised_{error_name}": _quantiles(designed.promised_error),
        f"retrieved_{error_name}": _quantiles(designed.retrieved_error),
        "predictor_calls_per_target": designed.calls,
        "reachable_gamut": gamut,
    }
    save_json(summary, summary_path)
    q = summary[f"promised_{error_name}"]
    typer.echo(
        f"wrote {output} + {manifest_path.name} + {design_path.name}: {target_map.pads} pads x "
        f"{replicas} replicas, {len(target_map.target_ids)} targets, {len(library)} designs; "
        f"promised {error_name} median {q['median']:.3g}, q95 {q['q95']:.3g}; "
        f"{100 * gamut['fraction_within_delta_e']['10']:.0f} % of sRGB within ΔE 10 "
        f"(plot {gamut_png.name})"
    )


def _wafer_summary(
    stats: dict[str, Any],
    designed: Any,
    target_map: Any,
    summary_path: Path,
    gamut_png: Path,
    method: str,
) -> None:
    """A wafer's ``_design.json``: what was designed and written. A wafer gets no chip-design
    record: its report would need every pad's spectrum, which no bench scans at wafer scale,
    and its manifest's content hash means reading 3e8 pad rows back."""
    from common.atomic import save_json
    from dataset.target_map import describe
    from models.chip_design import reachable_gamut
    from models.design_plots import plot_gamut

    error_name = "delta_e2000" if target_map.kind == "colour" else "weighted_mse"
    plot_gamut(designed.pool_lab, designed.target_lab, designed.promised_lab, gamut_png)
    save_json(
        {
            "map": describe(target_map),
            "method": method,
            "wafer": stats,
            f"promised_{error_name}": _quantiles(designed.promised_error),
            "reachable_gamut": reachable_gamut(designed.pool_lab),
        },
        summary_path,
    )
