"""``metascan process``: hypercubes of a scan folder to one array-spectra file per array."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.values import Bounds

MARGIN_UM = Bounds(0.0, 10.0, unit="µm")
WORKERS = Bounds(1, 1024, integer=True)


def process_cmd(
    scans_dir: Annotated[Path, typer.Argument(help="Scan folder (tile hypercubes and flat).")],
    manifest: Annotated[Path, typer.Option("--manifest", "-m", help="Chip manifest (chip.h5).")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder for <array>.h5 spectra (created if missing)."),
    ],
    margin_um: Annotated[
        float,
        MARGIN_UM.option("--margin-um", help="Erode each pad region by this from every edge."),
    ] = 1.5,
    no_reference: Annotated[
        bool,
        typer.Option(
            "--no-reference", help="Skip the reference-camera lamp correction (to measure it)."
        ),
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Address of a running dask.distributed scheduler (default: threads here).",
        ),
    ] = None,
    workers: Annotated[
        int | None, WORKERS.option("--workers", help="Threads (default: one per core).")
    ] = None,
    skip_unreadable: Annotated[
        bool,
        typer.Option(
            "--skip-unreadable",
            help="Skip hypercubes that cannot be read (listed in every output's provenance) "
            "instead of stopping.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite existing spectra files in --output.")
    ] = False,
) -> None:
    """Extract per-pad spectra: register each tile to the manifest, flat-field, average pads."""
    from dataset.extraction import ExtractionSettings  # keeps `metascan --help` fast
    from dataset.process import process_scans

    if not manifest.is_file():
        raise FileNotFoundError(f"chip manifest {manifest} does not exist")
    settings = ExtractionSettings(margin_um=margin_um, reference=not no_reference)
    summary = process_scans(
        scans_dir,
        manifest,
        output,
        settings,
        scheduler=scheduler,
        workers=workers,
        progress=True,
        force=force,
        skip_unreadable=skip_unreadable,
    )
    for path, why in summary.unreadable.items():
        typer.echo(f"warning: SKIPPED {path}: {why}", err=True)
    flagged = ", ".join(f"{k} {v}" for k, v in summary.flag_counts().items() if v) or "none"
    worst = max(a.registration_residual_px for a in summary.arrays)
    typer.echo(
        f"wrote {len(summary.arrays)} array-spectra files to {output} ({summary.pads} pads, "
        f"flagged: {flagged}; registration residual <= {worst:.3f} px rms; "
        f"{summary.pads_per_s:.0f} pads/s, {summary.mb_per_s:.0f} MB/s"
        f"{'' if settings.reference else '; no reference correction'}"
        f"{f'; {len(summary.unreadable)} unreadable file(s) SKIPPED' if summary.unreadable else ''})"
    )
