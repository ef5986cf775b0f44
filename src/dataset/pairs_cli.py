"""``metascan pairs …``: import and export the public MOCLIP ``.npz`` layout, and summaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from common.outputs import check_outputs
from common.values import SEED
from dataset.moclip_npz import read_moclip_npz, write_moclip_npz
from dataset.pairs_file import SCHEMA, SPLIT_NAMES, Pairs, write_pairs
from dataset.pairs_io import is_moclip_npz, load_pairs
from layout.material import ALLOWED as MATERIALS_ALLOWED
from layout.material import MOCLIP_MATERIAL

app = typer.Typer(
    help="Pairs files: import/export the MOCLIP .npz layout, and summaries.",
    no_args_is_help=True,
)

_MOCLIP_CELL_PX, _MOCLIP_BANDS = 128, 29
_MAX_VALUE_CHARS = 160  # long provenance values (whole configs) are cut in the summary

Force = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
SplitSeed = Annotated[
    int, SEED.option("--split-seed", help="Seed for the design-grouped splits of an .npz.")
]


def _split_summary(pairs: Pairs) -> str:
    parts = []
    for code, name in enumerate(SPLIT_NAMES):
        rows = pairs.split == code
        designs = np.unique(pairs.design_id[rows]).size
        parts.append(f"{name} {int(rows.sum())} pairs / {designs} designs")
    return ", ".join(parts)


@app.command("import-moclip")
def import_moclip_cmd(
    source: Annotated[Path, typer.Argument(help="MOCLIP-layout .npz to read.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Pairs file to write (.h5).")],
    split_seed: SplitSeed = 0,
    clip_spectra: Annotated[
        bool,
        typer.Option(
            "--clip-spectra", help="Clip transmission outside [0, 1] instead of refusing."
        ),
    ] = False,
    material: Annotated[
        str,
        typer.Option(
            help=f"Film the spectra were measured on ({MATERIALS_ALLOWED}); the .npz layout "
            f"records none. Default: MOCLIP's LPCVD amorphous silicon, {MOCLIP_MATERIAL}."
        ),
    ] = MOCLIP_MATERIAL,
    force: Force = False,
) -> None:
    """Convert a MOCLIP .npz into a pairs file: design ids hashed from content, splits drawn."""
    check_outputs({"--output": output}, {"SOURCE": source}, force, schemas={"--output": SCHEMA})
    pairs = read_moclip_npz(
        source, split_seed=split_seed, clip_spectra=clip_spectra, material=material
    )
    write_pairs(output, pairs)
    designs = np.unique(pairs.design_id).size
    typer.echo(
        f"wrote {len(pairs)} pairs of {designs} designs to {output} ({pairs.material}; "
        f"{_split_summary(pairs)})"
    )


@app.command("export-moclip")
def export_moclip_cmd(
    source: Annotated[Path, typer.Argument(help="Pairs file (.h5, or an .npz) to read.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="MOCLIP-layout .npz to write.")],
    force: Force = False,
) -> None:
    """Write pairs in the MOCLIP .npz layout (design ids, splits, provenance and the material
    are dropped)."""
    check_outputs({"--output": output}, {"SOURCE": source}, force)
    pairs = load_pairs(source)
    write_moclip_npz(output, pairs)
    size, bands = pairs.geometry.shape[1], pairs.wavelength_nm.size
    note = ""
    if (size, bands) != (_MOCLIP_CELL_PX, _MOCLIP_BANDS):
        note = (
            f"; note: {size} px and {bands} bands, MOCLIP's own model expects "
            f"{_MOCLIP_CELL_PX} px and {_MOCLIP_BANDS} bands"
        )
    if pairs.material != MOCLIP_MATERIAL:
        note += (
            f"; note: the layout has no material, import it with --material {pairs.material} "
            f"(not MOCLIP's {MOCLIP_MATERIAL})"
        )
    typer.echo(f"wrote {len(pairs)} pairs to {output}{note}")


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


@app.command("info")
def info_cmd(
    path: Annotated[Path, typer.Argument(help="Pairs file (.h5) or MOCLIP .npz.")],
    split_seed: SplitSeed = 0,
) -> None:
    """Count, cell size, bands, params, splits, designs and provenance of a pairs file."""
    pairs = load_pairs(path, split_seed=split_seed)
    w = pairs.wavelength_nm
    period, thickness = pairs.params[:, 0], pairs.params[:, 1]
    designs = np.unique(pairs.design_id).size
    layout = "MOCLIP npz (ids hashed, splits drawn on reading)" if is_moclip_npz(path) else "HDF5"
    lines = [
        f"{path}: {layout}",
        f"pairs        {len(pairs)}",
        f"designs      {designs} ({len(pairs) / designs:.2f} pairs per design)",
        f"geometry     {pairs.geometry.shape[1]}x{pairs.geometry.shape[2]} px, "
        f"fill {pairs.geometry.mean():.3f}",
        f"material     {pairs.material}",
        f"wavelengths  {w.size} bands, {w[0]:g}..{w[-1]:g} nm",
        f"period       {period.min():g}..{period.max():g} um",
        f"thickness    {thickness.min():g}..{thickness.max():g} um",
        f"spectra      {pairs.spectra.dtype}, {pairs.spectra.min():.3f}..{pairs.spectra.max():.3f}",
        f"splits       {_split_summary(pairs)}",
    ]
    if pairs.provenance:
        lines.append("provenance")
        lines += [f"  {k}: {_show(v)}" for k, v in sorted(pairs.provenance.items())]
    typer.echo("\n".join(lines))
