"""``metascan design targets``: write an inverse-design targets file from pairs, CSVs and filters.

The command function only; the top-level CLI registers it. torch (through the model directory)
is imported only when --model is given, so ``metascan --help`` does not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from common.outputs import check_outputs
from common.values import COUNT, SEED
from dataset.targets_file import POLARIZATIONS, SCHEMA, Targets, write_targets
from models import targets as build  # numpy and h5py, no torch
from models.targets import WINDOW_NM

WINDOW_HELP = "Only bands in LO,HI nm count (weight 0 elsewhere)."


def targets_cmd(
    output: Annotated[Path, typer.Option("--output", help="Targets file (HDF5) to write.")],
    pairs: Annotated[
        Path | None,
        typer.Option(
            "--pairs",
            help="Pairs file (HDF5 or MOCLIP .npz): its --split spectra become targets, and its "
            "bands are the grid.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", help="Split of --pairs.")] = "test",
    limit: Annotated[
        int | None, COUNT.option("--limit", help="A seeded random subset of the --pairs rows.")
    ] = None,
    seed: Annotated[int, SEED.option("--seed", help="Seed of the --limit subset.")] = 0,
    csv: Annotated[
        list[Path] | None,
        typer.Option(
            "--csv",
            help="CSV of wavelength_nm,tx,ty[,target_id], interpolated onto the grid; repeatable.",
        ),
    ] = None,
    filter_specs: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="Parametric filter 'KIND POL CENTRE_NM WIDTH_NM DEPTH' (bandpass, notch, "
            "longpass, shortpass; x, y, both), e.g. 'bandpass x 600 40 0.8'; repeatable.",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Model directory whose bands are the grid (without --pairs)."),
    ] = None,
    window: Annotated[Any, WINDOW_NM.list_option("--window", help=WINDOW_HELP)] = None,
    window_pol: Annotated[
        str | None,
        typer.Option("--window-pol", help="Only this polarization (x or y) counts."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --output.")] = False,
) -> None:
    """Write the targets an inverse-design search is asked to reach: pairs rows, then CSV
    targets, then filters, all on one band grid (the pairs', else the model's, else MOCLIP's)."""
    csvs = list(csv or [])
    filters = list(filter_specs or [])
    if pairs is None and not csvs and not filters:
        raise ValueError("no targets given; give --pairs, --csv or --filter (any of them)")
    if limit is not None and pairs is None:
        raise ValueError("--limit chooses rows of --pairs; give --pairs too")
    if window is not None and len(window) != 2:
        raise ValueError(f"--window {','.join(map(str, window))} must be two numbers LO,HI in nm")
    if window_pol is not None and window_pol not in POLARIZATIONS:
        raise ValueError(
            f"--window-pol {window_pol!r} is not known; known: {', '.join(POLARIZATIONS)}"
        )
    inputs: dict[str, Path | None] = {"--pairs": pairs, "--model": model}
    inputs.update({f"--csv {p}": p for p in csvs})
    check_outputs({"--output": output}, inputs, force, schemas={"--output": SCHEMA})

    parts: list[Targets] = []
    if pairs is not None:
        parts.append(build.from_pairs(pairs, split, limit, seed))
        grid = parts[0].wavelength_nm
        if model is not None:
            from models.model_dir import model_material  # torch: only when a model is asked for

            parts[0].check_material(model_material(model), f"--model {model}", f"--pairs {pairs}")
            model_grid = build.model_wavelengths_nm(model)
            if model_grid.size != grid.size:
                raise ValueError(
                    f"--pairs {pairs} has {grid.size} bands but --model {model} predicts "
                    f"{model_grid.size}"
                )
    elif model is not None:
        grid = build.model_wavelengths_nm(model)
    else:
        grid = build.default_wavelengths_nm()
    parts.extend(build.from_csv(p, grid) for p in csvs)
    if filters:
        parts.append(build.from_filters(filters, grid))
    targets = Targets.concatenate(parts)
    if window is not None or window_pol is not None:
        lo, hi = (float(v) for v in window) if window is not None else (grid[0], grid[-1])
        targets = build.weight_window(targets, lo, hi, window_pol)
    write_targets(output, targets)
    typer.echo(
        f"wrote {len(targets)} targets ({grid.size} bands, {grid[0]:g}..{grid[-1]:g} nm) "
        f"to {output}"
    )
