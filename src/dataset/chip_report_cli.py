"""``metascan design report``: an inverse-designed chip's measured pads against its targets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.atomic import save_json
from common.outputs import check_outputs

FILES = ("report.json", "images.png", "delta_e.png", "spectra.png")


def report_cmd(
    chip: Annotated[Path, typer.Option("--chip", help="The designed chip's manifest (.h5).")],
    spectra: Annotated[
        list[Path],
        typer.Option("--spectra", help="Processed array spectra: files or a folder; repeatable."),
    ],
    output: Annotated[Path, typer.Option("--output", help="Folder for the report.")],
    design: Annotated[
        Path | None,
        typer.Option("--design", help="Chip-design record (default: <chip>_design.h5 beside it)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a previous report.")] = False,
) -> None:
    """Target, promised and measured colour (and spectrum) of every designed pad."""
    from dataset.array_spectra_file import ArraySpectra, read_array_spectra
    from dataset.chip_design_file import read_chip_design
    from dataset.chip_report import compare_pads, summarize
    from dataset.chip_report_plots import plot_histogram, plot_images, plot_spectra
    from dataset.curate_cli import spectra_files
    from layout.manifest import read_manifest

    design = design or chip.with_name(chip.stem + "_design.h5")
    inputs: dict[str, Path | None] = {"--chip": chip, "--design": design}
    inputs.update({f"--spectra {p}": p for p in spectra})
    check_outputs({"--output": output}, inputs, force, directories=True)
    output.mkdir(exist_ok=True)
    check_outputs({f"{name} in --output": output / name for name in FILES}, inputs, force)
    manifest = read_manifest(chip)
    record = read_chip_design(design)
    files = spectra_files(spectra)
    measured = ArraySpectra.concatenate([read_array_spectra(p) for p in files])
    comparison = compare_pads(manifest, record, measured)
    summary = summarize(comparison, record)
    summary["inputs"] = {
        "chip": str(chip),
        "design": str(design),
        "spectra": [str(p) for p in files],
    }
    save_json(summary, output / "report.json")
    plot_images(comparison, record, output / "images.png")
    plot_histogram(comparison, output / "delta_e.png")
    plot_spectra(comparison, record, output / "spectra.png")
    de = summary["delta_e2000"]["measured_vs_target"]
    line = (
        f"wrote {output}/report.json, images.png, delta_e.png, spectra.png: "
        f"{summary['pads_usable']}/{summary['pads']} usable pads, measured ΔE2000 median "
        f"{de['median']:.2f}, q95 {de['q95']:.2f} "
        f"(promised {summary['delta_e2000']['promised_vs_target']['median']:.2f})"
    )
    if "measured_vs_target" in summary["mse"]:
        mse = summary["mse"]["measured_vs_target"]
        line += f"; measured weighted MSE median {mse['median']:.2e}, q95 {mse['q95']:.2e}"
    typer.echo(line)
