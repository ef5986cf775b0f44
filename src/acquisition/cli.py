"""``metascan instruments check``: connect to every device of a bench config and report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from acquisition.bench import Bench

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
