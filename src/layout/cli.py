"""``metascan layout …``: generate, chip, drc, preview, info."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from common.outputs import check_outputs
from common.values import COUNT, SEED, Bounds
from layout.chip import CHIP_BOUNDS, ChipConfig, plan_chip
from layout.drc import run_drc
from layout.gds_writer import write_chip
from layout.generator import MAX_PRIMITIVES, PERIOD_NM, GeneratorConfig, generate
from layout.library_file import SCHEMA as LIBRARY_SCHEMA
from layout.library_file import read_library, write_library
from layout.manifest import SCHEMA as MANIFEST_SCHEMA
from layout.manifest import Role, read_manifest
from layout.material import ALLOWED as MATERIALS_ALLOWED
from layout.material import DEFAULT_MATERIAL, check_name
from layout.preview import preview_array, preview_designs
from layout.rules import RULE_BOUNDS, DesignRules

app = typer.Typer(
    help="Design libraries, chip layouts (GDS/OASIS + manifest), DRC and previews.",
    no_args_is_help=True,
)
log = logging.getLogger(__name__)


DRC_NM = Bounds(0.0, 10_000.0, unit="nm", lo_open=True)
SHOW = Bounds(0, 10**6, integer=True)
PREVIEW_COUNT = Bounds(1, 100, integer=True)
TOLERANCE_NM = Bounds(0.0, 1.0, unit="nm", lo_open=True)  # the design rules assume <= 1 nm
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing outputs.")]


def _manifest_path(layout_path: Path) -> Path:
    return layout_path.with_suffix(".h5")


def check_chip_id(chip_id: str) -> None:
    """A chip id names the GDS top cell and every file of the chip: printable, no spaces."""
    if not chip_id or len(chip_id) > 64 or not all(c.isalnum() or c in "-_." for c in chip_id):
        raise ValueError(
            f"--chip-id {chip_id!r} must be 1-64 letters, digits, '-', '_' or '.', e.g. W7-C3"
        )


@app.command("generate")
def generate_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="Design library to write (.h5).")],
    count: Annotated[int, COUNT.option(help="Number of unique designs.")] = 1000,
    seed: Annotated[int, SEED.option(help="Random seed; same seed, same designs.")] = 0,
    grid_nm: Annotated[
        float, RULE_BOUNDS["grid_nm"].option(help="Fabrication grid for centres and sizes.")
    ] = 5.0,
    periods_nm: Annotated[
        Any, PERIOD_NM.list_option(help="Comma-separated periods to draw from.")
    ] = "300,400,500,600",
    max_primitives: Annotated[int, MAX_PRIMITIVES.option(help="Primitives per design.")] = 4,
    force: Force = False,
) -> None:
    """Draw COUNT unique designs that pass the fabrication checker."""
    check_outputs({"--output": output}, {}, force, schemas={"--output": LIBRARY_SCHEMA})
    periods: tuple[int, ...] = periods_nm
    rules = DesignRules(grid_nm=grid_nm)
    config = GeneratorConfig(periods_nm=periods, max_primitives=max_primitives, rules=rules)
    library = generate(count, seed, config, progress=True)
    write_library(
        output,
        library,
        {
            "seed": seed,
            "rules": rules.to_dict(),
            "periods_nm": list(periods),
            "max_primitives": max_primitives,
        },
    )
    counts = np.bincount(np.count_nonzero(library.present, axis=1), minlength=max_primitives + 1)[
        1:
    ]
    typer.echo(
        f"wrote {len(library)} designs to {output} (primitives per design 1..{max_primitives}: {counts.tolist()})"
    )


@app.command("chip")
def chip_cmd(
    designs: Annotated[Path, typer.Option(help="Design library (.h5) from `layout generate`.")],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Layout to write; the manifest goes beside it as .h5."),
    ],
    thickness_nm: Annotated[
        float,
        CHIP_BOUNDS["thickness_nm"].option(help="Film thickness recorded in the manifest."),
    ],
    material: Annotated[
        str,
        typer.Option(
            help=f"Film the chip is made of, recorded in the manifest: {MATERIALS_ALLOWED}. "
            f"{DEFAULT_MATERIAL} is the LPCVD amorphous silicon MOCLIP fabricated."
        ),
    ] = DEFAULT_MATERIAL,
    arrays: Annotated[int, CHIP_BOUNDS["arrays"].option(help="Number of distinct arrays.")] = 1,
    rows: Annotated[int, CHIP_BOUNDS["rows"].option(help="Pad rows per array.")] = 10,
    cols: Annotated[int, CHIP_BOUNDS["cols"].option(help="Pad columns per array.")] = 10,
    replicas: Annotated[
        int,
        CHIP_BOUNDS["replicas"].option(help="Copies of each array, each in its own seeded order."),
    ] = 2,
    pad_size_um: Annotated[
        float,
        CHIP_BOUNDS["pad_size_um"].option(help="Pad side; a whole number of every period."),
    ] = 6.0,
    pad_gap_um: Annotated[
        float, CHIP_BOUNDS["pad_gap_um"].option(help="Gap between pads (0: pads touch).")
    ] = 0.0,
    companion: Annotated[
        int,
        CHIP_BOUNDS["companion_size"].option(
            help="Side of each array's companion (SEM) array; 0 for none."
        ),
    ] = 10,
    seed: Annotated[int, SEED.option(help="Seed for replica orders and companion picks.")] = 0,
    chip_id: Annotated[str, typer.Option(help="Chip name in the manifest and top cell.")] = "chip",
    tolerance_nm: Annotated[
        float, TOLERANCE_NM.option(help="Max polygon deviation from curves.")
    ] = 1.0,
    fmt: Annotated[str, typer.Option("--format", help="gds or oas.")] = "gds",
    force: Force = False,
) -> None:
    """Place arrays of pads (one AREF of a unit cell each) and write layout + manifest."""
    if fmt not in ("gds", "oas"):
        raise ValueError(f"--format {fmt!r} must be gds or oas")
    check_chip_id(chip_id)
    check_name(material, "--material")
    manifest_path = _manifest_path(output)
    manifest_label = f"manifest {manifest_path.name} (beside --output)"
    check_outputs(
        {"--output": output, manifest_label: manifest_path},
        {"--designs": designs},
        force,
        schemas={manifest_label: MANIFEST_SCHEMA},
    )
    config = ChipConfig(
        thickness_nm=thickness_nm,
        material=material,
        arrays=arrays,
        rows=rows,
        cols=cols,
        replicas=replicas,
        pad_size_um=pad_size_um,
        pad_gap_um=pad_gap_um,
        companion_size=companion,
        seed=seed,
        chip_id=chip_id,
    )
    library = read_library(designs)
    manifest = plan_chip(library, config)
    write_chip(manifest, config, output, manifest_path, fmt, tolerance_nm, progress=True)  # type: ignore[arg-type]
    pads = manifest.pads
    typer.echo(
        f"wrote {output} and {manifest_path}: {len(manifest.arrays.name)} arrays, "
        f"{int(np.sum(pads.role == Role.DATASET))} dataset pads, {int(np.sum(pads.role == Role.COMPANION))} "
        f"companion pads, {int(np.sum(pads.role == Role.FIDUCIAL))} fiducials, {len(manifest.designs)} designs"
    )


@app.command("drc")
def drc_cmd(
    layout: Annotated[Path, typer.Argument(help="GDS or OASIS file.")],
    min_width_nm: Annotated[float, DRC_NM.option(help="Minimum feature width.")] = 50.0,
    min_space_nm: Annotated[float, DRC_NM.option(help="Minimum gap.")] = 50.0,
    show: Annotated[int, SHOW.option(help="How many violation locations to print.")] = 20,
) -> None:
    """KLayout width and space checks on the silicon layer; exits 1 on any violation."""
    result = run_drc(layout, min_width_nm, min_space_nm)
    counts = result.counts()
    typer.echo(
        f"DRC {layout}: {result.polygons_checked} polygons, width<{min_width_nm:g} nm: {counts['width']}, "
        f"space<{min_space_nm:g} nm: {counts['space']} ({result.seconds:.1f} s)"
    )
    for m in result.markers[:show]:
        typer.echo(f"  {m.check} {m.distance_nm:.0f} nm at x={m.x_um:.3f} µm y={m.y_um:.3f} µm")
    if len(result.markers) > show:
        typer.echo(f"  … {len(result.markers) - show} more")
    if not result.clean:
        raise typer.Exit(1)


@app.command("preview")
def preview_cmd(
    output_dir: Annotated[Path, typer.Option("--output", "-o", help="Directory for the PNGs.")],
    designs: Annotated[Path | None, typer.Option(help="Design library to preview.")] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="Chip manifest (.h5) to preview an array of.")
    ] = None,
    array: Annotated[
        str | None, typer.Option(help="Array name, e.g. A0R1 (default: the first).")
    ] = None,
    count: Annotated[int, PREVIEW_COUNT.option(help="Designs to show.")] = 6,
    force: Force = False,
) -> None:
    """designs.png (raster beside polygons) and array.png (pad mosaic)."""
    if designs is None and manifest is None:
        raise ValueError("give --designs and/or --manifest")
    if not output_dir.is_dir():
        raise FileNotFoundError(f"output directory {output_dir} does not exist")
    pngs = {"designs.png": output_dir / "designs.png"}
    if manifest is not None:
        pngs["array.png"] = output_dir / "array.png"
    check_outputs(pngs, {"--designs": designs, "--manifest": manifest}, force)
    chip = read_manifest(manifest) if manifest else None
    if chip is not None and array is not None and array not in chip.arrays.name:
        raise ValueError(
            f"--array {array!r} is not on chip {chip.chip_id!r}; its arrays are "
            f"{', '.join(chip.arrays.name)}"
        )
    library = read_library(designs) if designs else chip.designs  # type: ignore[union-attr]
    preview_designs(library, output_dir / "designs.png", count)
    typer.echo(f"wrote {output_dir / 'designs.png'}")
    if chip is not None:
        preview_array(chip, output_dir / "array.png", array)
        typer.echo(f"wrote {output_dir / 'array.png'}")


@app.command("info")
def info_cmd(
    manifest: Annotated[Path, typer.Argument(help="Chip manifest (.h5).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Summary of a chip: designs, pads by role, arrays, files and their sizes."""
    chip = read_manifest(manifest)
    pads = chip.pads
    layout_file = manifest.parent / str(chip.attrs.get("layout_file", ""))
    summary = {
        "chip_id": chip.chip_id,
        "thickness_nm": chip.thickness_nm,
        "material": chip.material,
        "designs": len(chip.designs),
        "arrays": chip.arrays.name,
        "pads": {r.name.lower(): int(np.sum(pads.role == r)) for r in Role},
        "pad_size_um": chip.pad_size_um,
        "pad_pitch_um": chip.pad_pitch_um,
        "manifest_mb": round(manifest.stat().st_size / 1e6, 3),
        "layout_file": layout_file.name,
        "layout_mb": round(layout_file.stat().st_size / 1e6, 3) if layout_file.is_file() else None,
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        typer.echo(f"{key:>14}: {value}")
