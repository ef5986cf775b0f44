"""``metascan design evaluate``: chosen designs fabricated and measured on the simulated bench.

The bench is the judge, so this command lives with the simulators and never loads the model:
what it scores is what the bench measures of the chosen designs, against the targets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from common.atomic import atomic_output
from common.outputs import check_outputs
from common.values import SEED, Bounds

if TYPE_CHECKING:
    from dataset.targets_file import Targets
    from simulators.design_bench import BenchReport

PLOTS = ("mse_vs_database_size.png", "examples.png")
DILATION = Bounds(0.0, 50.0, unit="nm")
FABRICATIONS = Bounds(1, 64, integer=True)


def evaluate_cmd(
    designs: Annotated[
        Path, typer.Option("--designs", help="Chosen designs (metascan design retrieve).")
    ],
    targets: Annotated[Path, typer.Option("--targets", help="The targets they were chosen for.")],
    output: Annotated[Path, typer.Option("--output", help="Folder for evaluation.json and PNGs.")],
    world: Annotated[
        Path | None,
        typer.Option(
            "--world",
            help="What the model learned from: its synthetic pairs file, or the chip's truth file "
            "for pairs curated from a scan. Default: the pairs its model was trained on.",
        ),
    ] = None,
    probes: Annotated[
        list[Path] | None,
        typer.Option("--probes", help="The probe shards searched: adds the oracle and random."),
    ] = None,
    seed: Annotated[int, SEED.option("--seed", help="Fabrication and random-probe seed.")] = 0,
    dilation_sd_nm: Annotated[
        float | None,
        DILATION.option(
            "--dilation-sd-nm",
            help="Pad-to-pad size-bias spread of the fab (default: the world's own; MOCLIP's "
            "SEM: 10).",
        ),
    ] = None,
    fabrications: Annotated[
        int,
        FABRICATIONS.option(
            "--fabrications",
            help="Fabricate each design K times; its MSE is the mean over them.",
        ),
    ] = 1,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a previous evaluation.")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Measured weighted MSE of each target's best design, per database size, beside the
    in-database oracle and a random probe."""
    from common.atomic import save_png
    from dataset.chosen_designs_file import file_sha256, read_chosen
    from dataset.probes_file import read_probes
    from dataset.targets_file import read_targets
    from simulators.design_bench import check_world, evaluate_chosen, world_from

    inputs: dict[str, Path | None] = {"--designs": designs, "--targets": targets, "--world": world}
    inputs.update({f"--probes {p}": p for p in probes or []})
    check_outputs({"--output": output}, inputs, force, directories=True)
    files = [output / "evaluation.json", *(output / p for p in PLOTS)]
    if output.is_dir():
        check_outputs({f"output {f}": f for f in files}, inputs, force)
    chosen = read_chosen(designs)
    if file_sha256(targets) != chosen.targets_sha256:
        raise ValueError(f"{designs} was chosen for another targets file than {targets}")
    t = read_targets(targets)
    bench = world_from(
        world if world is not None else _training_pairs(chosen.provenance), seed
    ).with_fabrication(dilation_sd_nm, fabrications)
    check_world(bench, chosen, t, str(designs))
    probe_db = None
    if probes:
        db = read_probes(probes, chosen.model_identity)
        probe_db = (db.library, db.thickness_nm)
    report = evaluate_chosen(bench, chosen, t, probe_db, seed, progress)
    output.mkdir(exist_ok=True)
    summary = report.summary()
    summary["designs"] = str(designs)
    summary["targets"] = str(targets)
    summary["targets_sha256"] = chosen.targets_sha256  # design compare refuses a mix
    with atomic_output(output / "evaluation.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    save_png(_quantile_figure(report.sizes), output / PLOTS[0])
    save_png(_examples_figure(t, report), output / PLOTS[1])
    for row in report.sizes:
        line = (
            f"database {row['database_size']}: {row['targets']} targets, measured MSE median "
            f"{row['model']['q50']:.2e}, q95 {row['model']['q95']:.2e}"
        )
        if "oracle" in row:
            line += (
                f"; oracle median {row['oracle']['q50']:.2e}, random median "
                f"{row['random']['q50']:.2e}, model/oracle {row['model_over_oracle_median']:.2f}"
            )
        typer.echo(line)
    typer.echo(f"wrote {output / 'evaluation.json'} and {', '.join(PLOTS)}")


def _training_pairs(provenance: dict[str, Any]) -> Path:
    """The pairs file the choosing model was trained on, from its model directory's config."""
    model = provenance.get("model")
    config = Path(str(model)) / "config.json" if model else None
    if config is None or not config.is_file():
        raise ValueError("the designs do not name a readable model directory; give --world")
    train = json.loads(config.read_text()).get("train", {})
    pairs = train.get("pairs") if isinstance(train, dict) else None
    if not pairs or not Path(pairs).is_file():
        raise ValueError(
            f"the model {model} does not record a readable training pairs file ({pairs}); "
            "give --world"
        )
    return Path(pairs)


def _quantile_figure(rows: list[dict[str, Any]]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    sizes = np.array([r["database_size"] for r in rows], dtype=float)
    for name, colour in (("model", "C0"), ("oracle", "C2"), ("random", "C3")):
        if name not in rows[0]:
            continue
        q = {k: np.array([r[name][k] for r in rows]) for k in ("q25", "q50", "q75", "q95")}
        ax.fill_between(sizes, q["q25"], q["q75"], color=colour, alpha=0.25)
        ax.plot(sizes, q["q50"], "o-", color=colour, label=f"{name} median (25-75 % band)")
        ax.plot(sizes, q["q95"], ":", color=colour, label=f"{name} 95th percentile")
    ax.axhline(1e-2, color="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("probe database size")
    ax.set_ylabel("measured weighted MSE")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _examples_figure(targets: Targets, report: BenchReport) -> Any:
    """Six targets at the largest database size (or last iteration): each design's unit cell
    beside the target and measured spectra, so a reader sees what was asked, what was made and
    what the bench measured of it."""
    from matplotlib.figure import Figure

    from layout.raster import rasterize

    size = report.database_size
    pick = np.flatnonzero(size == size.max())[:6]
    fig = Figure(figsize=(12, 5.2))
    grid = fig.add_gridspec(2, 6, width_ratios=[1, 2.4] * 3)
    lam = targets.wavelength_nm
    cells = rasterize(report.library.take(pick))
    for j, i in enumerate(pick):
        r, c = divmod(j, 3)
        cell = fig.add_subplot(grid[r, 2 * c])
        cell.imshow(cells[j], cmap="gray_r", origin="lower", interpolation="nearest")
        cell.set_xticks([])
        cell.set_yticks([])
        cell.set_xlabel(
            f"P {report.library.period_nm[i]:.0f}, t {report.thickness_nm[i]:.0f} nm", fontsize=6
        )
        ax = fig.add_subplot(grid[r, 2 * c + 1])
        t = report.target_rows[i]
        for pol, style in ((0, "-"), (1, "--")):
            ax.plot(
                lam, targets.spectra[t, pol], style, color="k", lw=1, label=f"target {'xy'[pol]}"
            )
            ax.plot(
                lam,
                report.measured[i, pol],
                style,
                color="C1",
                lw=1.2,
                label=f"measured {'xy'[pol]}",
            )
        ax.set_title(f"{targets.target_id[t][:24]}  MSE {report.per_target_mse[i]:.1e}", fontsize=7)
        ax.set_ylim(0, 1.1)
        ax.tick_params(labelsize=6)
        if j == 0:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
