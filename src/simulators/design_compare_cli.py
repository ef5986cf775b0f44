"""``metascan design compare``: several ``design evaluate`` results on one figure (MOCLIP
Fig. 6f): measured MSE quantile bands against network calls per target, one band per method,
with the in-database oracle as the reference line.

Each evaluation's ``database_size`` is the calls its designs cost per target (an optimizer's
proposals so far, a hybrid's gradient steps counted as forward-pass equivalents, a retrieval's
database size), so methods meet on one axis. Evaluations of other targets, or judged in
another world, are refused rather than drawn side by side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from common.atomic import atomic_output
from common.outputs import check_outputs
from common.values import Bounds

PARTICLES = Bounds(1, 100_000, integer=True)
FILES = ("compare.json", "mse_vs_calls.png")
QUANTILES = ("q25", "q50", "q75", "q95")


def read_evaluations(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``LABEL=FOLDER`` (or a folder alone, labelled by its name) → its evaluation.json; one
    targets file and one world for all, or a one-line refusal naming the odd one out."""
    out: dict[str, dict[str, Any]] = {}
    for item in pairs:
        label, _, folder = item.rpartition("=") if "=" in item else ("", "", item)
        path = Path(folder) / "evaluation.json"
        if not path.is_file():
            raise FileNotFoundError(f"--evaluation {item}: {path} does not exist (design evaluate)")
        label = label or Path(folder).name
        if label in out:
            raise ValueError(f"--evaluation label {label!r} is given twice")
        out[label] = json.loads(path.read_text())
    first_label, first = next(iter(out.items()))
    for label, data in out.items():
        for key in ("targets_sha256", "world"):
            if key in first and data.get(key) != first.get(key):
                raise ValueError(
                    f"--evaluation {label} was judged with another {key.split('_')[0]} than "
                    f"{first_label}; compare evaluations of the same targets in the same world"
                )
    return out


def compare(evaluations: dict[str, dict[str, Any]], particles: int) -> dict[str, Any]:
    """The table the figure draws: per method, per calls, the measured MSE quantiles; and the
    oracle of the largest database any evaluation searched."""
    methods = {
        label: [
            {
                "calls_per_target": int(row["database_size"]),
                "iterations": row["database_size"] / particles,
                "targets": int(row["targets"]),
                **{q: float(row["model"][q]) for q in QUANTILES},
            }
            for row in data["sizes"]
        ]
        for label, data in evaluations.items()
    }
    counts = {row["targets"] for rows in methods.values() for row in rows}
    if len(counts) != 1:
        raise ValueError(f"the evaluations judge different numbers of targets: {sorted(counts)}")
    oracle = None
    for label, data in evaluations.items():
        for row in data["sizes"]:
            if "oracle" in row and (oracle is None or row["database_size"] > oracle["probes"]):
                oracle = {"probes": int(row["database_size"]), "from": label, **row["oracle"]}
    return {"particles": particles, "methods": methods, "oracle": oracle}


def figure(table: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 6.2))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, rows) in enumerate(table["methods"].items()):
        colour = f"C{k}"
        x = np.array([r["calls_per_target"] for r in rows], dtype=float)
        q = {name: np.array([r[name] for r in rows]) for name in QUANTILES}
        ax.fill_between(x, q["q25"], q["q75"], color=colour, alpha=0.2)
        ax.plot(x, q["q50"], "o-", color=colour, ms=3, label=f"{label}: median, 25-75 %")
        ax.plot(x, q["q95"], "^:", color=colour, ms=3, label=f"{label}: 95th percentile")
    oracle = table["oracle"]
    if oracle is not None:
        for name, style, what in (("q50", "-", "median"), ("q95", ":", "95th percentile")):
            ax.axhline(
                oracle[name], color="k", ls=style, lw=1,
                label=f"in-database oracle ({oracle['probes']} probes): {what}",
            )  # fmt: skip
    for level in (1e-2, 1e-3):
        ax.axhline(level, color="0.6", lw=0.6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("network calls per target (PSO: particles x iterations)")
    ax.set_ylabel("measured weighted MSE")
    top = ax.secondary_xaxis(
        "top",
        functions=(lambda c: c / table["particles"], lambda i: i * table["particles"]),
    )
    top.set_xlabel(f"iterations of {table['particles']} particles", fontsize=8)
    ax.legend(fontsize=6, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.tight_layout()
    return fig


def compare_cmd(
    evaluation: Annotated[
        list[str],
        typer.Option(
            "--evaluation",
            help="LABEL=FOLDER of a design evaluate output; repeat for each method.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", help="Folder for compare.json and PNG.")],
    particles: Annotated[
        int, PARTICLES.option("--particles", help="Particles per iteration (the top axis).")
    ] = 100,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a previous comparison.")
    ] = False,
) -> None:
    """Measured MSE quantiles of several methods against calls per target (MOCLIP Fig. 6f)."""
    from common.atomic import save_png

    inputs: dict[str, Path | None] = {
        f"--evaluation {e}": Path(e.rpartition("=")[2]) / "evaluation.json" for e in evaluation
    }
    for e in evaluation:
        if Path(e.rpartition("=")[2]).resolve() == output.resolve():
            raise ValueError(f"--output {output} is the folder of --evaluation {e}; give another")
    check_outputs({"--output": output}, inputs, force, directories=True)
    if output.is_dir():
        check_outputs({f"output {f}": output / f for f in FILES}, inputs, force)
    table = compare(read_evaluations(evaluation), particles)
    output.mkdir(exist_ok=True)
    with atomic_output(output / FILES[0]) as tmp:
        tmp.write_text(json.dumps(table, indent=2) + "\n")
    save_png(figure(table), output / FILES[1])
    for label, rows in table["methods"].items():
        cells = ", ".join(f"{r['calls_per_target']}: {r['q50']:.1e}/{r['q95']:.1e}" for r in rows)
        typer.echo(f"{label} (calls: median/q95) {cells}")
    if table["oracle"] is not None:
        o = table["oracle"]
        typer.echo(f"oracle ({o['probes']} probes): median {o['q50']:.1e}, q95 {o['q95']:.1e}")
    typer.echo(f"wrote {output / FILES[0]} and {FILES[1]}")
