"""``metascan instruments check`` (connect to every device of a bench config and report) and
``metascan scan`` (run or resume a scan; ``--dry-run`` validates and estimates it, touching no
device)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from common.outputs import check_outputs

if TYPE_CHECKING:
    from acquisition.bench import Bench
    from acquisition.estimate import DryRunReport
    from acquisition.runner import QuickLook

log = logging.getLogger(__name__)


def bench_report(bench: Bench) -> list[tuple[str, str, str]]:
    """(role, identity, state) for each device: what a person checks before a scan."""
    f, r, s = bench.filter, bench.rotator, bench.stage
    lo, hi = f.wavelength_range_nm
    position = ", ".join(f"{v:.1f}" for v in s.position_um)
    rows = [
        (
            "filter",
            f.identity,
            f"{f.wavelength_nm:.1f} nm, {f.bandwidth_mode.value}, range {lo:g}-{hi:g} nm, "
            f"narrowest {f.narrowest_mode.value}, {'ready' if f.is_ready else 'not ready'}",
        ),
        ("rotator", r.identity, f"{r.angle_deg:.2f}°, {'busy' if r.is_busy else 'idle'}"),
        (
            "stage",
            s.identity,
            f"position {position} µm, speed {s.speed_mm_per_s:g} mm/s, "
            f"{'busy' if s.is_busy else 'idle'}",
        ),
    ]
    for role, camera in (("camera", bench.camera), ("reference", bench.reference_camera)):
        x, y, w, h = camera.roi
        rows.append(
            (
                role,
                camera.identity,
                f"{camera.bit_depth}-bit, exposure {camera.exposure_s * 1e3:g} ms, "
                f"gain {camera.gain_db:g} dB, ROI {w}x{h}+{x}+{y}",
            )
        )
    return rows


def check_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="Bench config (TOML).")],
) -> None:
    """Connect to every device of a bench config (real or emulated) and print identity and state."""
    from acquisition.bench import connected_bench  # drivers and pypylon load only when needed

    with connected_bench(config) as bench:
        for role, identity, state in bench_report(bench):
            typer.echo(f"{role:<10} {identity}\n{'':<10} {state}")
    typer.echo("all devices answered")


def scan_dry_run(
    config_path: Path, manifest_path: Path, output: Path, arrays: list[str] | None
) -> DryRunReport:
    """Everything ``scan --dry-run`` does short of printing: read, align, plan, check, estimate."""
    from acquisition.estimate import setup_dry_run
    from acquisition.scan_setup import scan_setup

    return setup_dry_run(scan_setup(config_path, manifest_path, arrays), output)


def _arrays_option(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"--arrays {text!r} names no array; give e.g. A0R0,A0R1")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"--arrays {text!r} names {', '.join(twice)} more than once")
    return names


def scan_command(quicklook: QuickLook | None = None) -> Callable[..., None]:
    """The ``metascan scan`` command, drawing each finished array with ``quicklook`` (the
    ``metascan`` package wires dataset's quick-look in: acquisition does no processing)."""

    def scan_cmd(
        config: Annotated[Path, typer.Option("--config", "-c", help="Bench config (TOML).")],
        manifest: Annotated[
            Path, typer.Option("--manifest", "-m", help="Chip manifest (chip.h5).")
        ],
        output: Annotated[
            Path, typer.Option("--output", "-o", help="Folder for the scan's files.")
        ],
        arrays: Annotated[
            str | None,
            typer.Option("--arrays", help="Comma-separated array names (default: every array)."),
        ] = None,
        dry_run: Annotated[
            bool,
            typer.Option(
                "--dry-run",
                help="Validate the whole plan and estimate time and disk without moving anything.",
            ),
        ] = False,
        resume: Annotated[
            bool,
            typer.Option("--resume", help="Continue the scan in --output from what is on disk."),
        ] = False,
        progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
    ) -> None:
        """Scan a chip's arrays: flat, darks, and every tile in every band and polarisation."""
        names = _arrays_option(arrays)
        check_outputs(
            {"--output": output},
            {"--config": config, "--manifest": manifest},
            resume,
            directories=True,
        )
        if dry_run:
            _print_dry_run(scan_dry_run(config, manifest, output, names))
            return
        from acquisition.runner import run_scan
        from acquisition.scan_stats import ScanFault

        try:
            summary = run_scan(
                config,
                manifest,
                output,
                arrays=names,
                resume=resume,
                progress=progress,
                quicklook=quicklook,
            )
        except ScanFault as exc:
            typer.echo(f"error: scan stopped: {exc}", err=True)
            typer.echo(
                f"everything completed is on disk; continue with: metascan scan --config {config} "
                f"--manifest {manifest} --output {output} --resume",
                err=True,
            )
            raise typer.Exit(1) from None
        s = summary.stats
        typer.echo(
            f"scanned {len(summary.arrays)} array(s), {summary.tiles} tile(s): "
            f"{s.bands_acquired} bands acquired, {s.bands_skipped} already on disk, "
            f"{s.flagged_bands} flagged, {s.retries} step retries, "
            f"{s.lamp_interruptions} lamp interruptions"
        )
        typer.echo(
            f"wall {summary.wall_s:.1f} s for {s.modeled_s:.1f} s of modeled device time; "
            f"files in {summary.folder}"
        )
        for path in summary.quicklooks:
            typer.echo(f"quick-look {path}")

    return scan_cmd


def _print_dry_run(report: DryRunReport) -> None:
    from acquisition.estimate import format_duration

    tiles = ", ".join(f"{name} {report.tiles.get(name, 0)}" for name in report.arrays)
    typer.echo(f"arrays     {len(report.arrays)}: {', '.join(report.arrays)}")
    typer.echo(f"tiles      {sum(report.tiles.values())} ({tiles}); {report.pads} pads inside")
    steps = ", ".join(f"{kind} {count}" for kind, count in sorted(report.steps.items()))
    typer.echo(f"steps      {sum(report.steps.values())} ({steps})")
    typer.echo(f"duration   {format_duration(report.duration_s)} (estimated; {report.notes[0]})")
    typer.echo(
        f"disk       {report.bytes_needed / 1e9:.3f} GB needed, {report.bytes_free / 1e9:.1f} GB free"
    )
    if report.alignment_rms_um is not None:
        typer.echo(
            f"alignment  residual rms {report.alignment_rms_um:.3f} µm, "
            f"max {report.alignment_max_um:.3f} µm"
        )
    typer.echo("dry run: plan valid, nothing moved")
