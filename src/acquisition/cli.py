"""``metascan instruments check`` (connect to every device of a bench config and report) and
``metascan scan`` (for now its ``--dry-run``: validate and estimate a scan, touching no device)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from acquisition.bench import Bench
    from acquisition.estimate import DryRunReport

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


def _simulated_mounting(
    raw: dict[str, object], path: Path
) -> Callable[[float, float], tuple[float, float]] | None:
    """Chip µm -> stage µm of the simulated bench's chip, or None for a bench without a
    ``[simulation]`` table: only the simulator knows where it put the chip."""
    from simulators.devices.sim_config import simulation_config  # only a simulated bench
    from simulators.microscope.bench_setup import microscope_config

    simulation = simulation_config(dict(raw), path)
    if simulation is None:
        return None
    return microscope_config(simulation.microscope, simulation.seed).mount.chip_to_stage


def scan_dry_run(
    config_path: Path, manifest_path: Path, output: Path, arrays: list[str] | None
) -> DryRunReport:
    """Everything ``scan --dry-run`` does short of printing: read, align, plan, check, estimate."""
    from dataclasses import replace

    from acquisition.alignment import align_from_config
    from acquisition.estimate import DeviceLimits, dry_run
    from acquisition.plan import array_index
    from acquisition.scan_config import default_flat_point, scan_config
    from instruments.config import instruments_config, read_toml
    from layout.manifest import read_manifest

    raw = read_toml(config_path)
    instruments = instruments_config(raw, config_path)
    config = scan_config(raw, config_path)
    manifest = read_manifest(manifest_path)
    for name in arrays or []:
        array_index(manifest, name)
    fit = align_from_config(manifest, config.alignment, _simulated_mounting(raw, config_path))
    flat = config.flat
    if flat.x_um is not None and flat.y_um is not None:
        flat_chip_um = (flat.x_um, flat.y_um)
    else:
        flat_chip_um = default_flat_point(manifest, flat.clearance_um, config.optics.fov_um)
    report = dry_run(
        manifest,
        config,
        DeviceLimits.from_config(instruments, config),
        fit.transform,
        output,
        arrays,
        flat_chip_um=flat_chip_um,
        settle_s=config.scan.settle_s,
        mode=config.scan.mode(),
    )
    return replace(report, alignment_rms_um=fit.rms_residual, alignment_max_um=fit.max_residual)


def _arrays_option(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"--arrays {text!r} names no array; give e.g. A0R0,A0R1")
    return names


def scan_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="Bench config (TOML).")],
    manifest: Annotated[Path, typer.Option("--manifest", "-m", help="Chip manifest (chip.h5).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the scan's files.")],
    arrays: Annotated[
        str | None,
        typer.Option("--arrays", help="Comma-separated array names (default: every array)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Validate the whole plan and estimate time and disk without moving anything. "
            "Required for now: executing a scan arrives with the runner.",
        ),
    ] = False,
) -> None:
    """Scan a chip's arrays: darks, flat, and every tile in every band and polarisation."""
    if not dry_run:
        raise ValueError(
            "scan execution arrives with the runner (not implemented yet); "
            "use --dry-run to validate the plan and estimate its time"
        )
    from acquisition.estimate import format_duration

    report = scan_dry_run(config, manifest, output, _arrays_option(arrays))
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
