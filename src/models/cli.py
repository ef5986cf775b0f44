"""``metascan train`` and ``metascan evaluate``.

torch is imported inside the commands, so ``metascan --help`` does not pay for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.outputs import check_outputs
from common.values import SEED, Bounds

EPOCHS = Bounds(1, 100_000, integer=True)
BATCH = Bounds(2, 65_536, integer=True)  # a contrastive batch needs two pairs
LR = Bounds(0.0, 1.0, lo_open=True)  # AdamW's base rate; past 1 nothing trains
PATIENCE = Bounds(0, 1_000_000, integer=True)
BUDGET_MIN = Bounds(0.0, 100_000.0, unit="min", lo_open=True)
VAL_EVERY = Bounds(0, 10**9, integer=True)
OLD_FRACTION = Bounds(0.0, 1.0, hi_open=True)  # 1 would leave no room for the new pairs
DEFAULT_CONFIG, DEFAULT_TASK = "metascan-small", "contrastive"
GALLERY = Bounds(2, 10**8, integer=True)


def train_cmd(
    pairs: Annotated[
        Path, typer.Option("--pairs", help="Pairs file (HDF5, contract 5) or MOCLIP .npz.")
    ],
    output: Annotated[Path, typer.Option("--output", help="Model directory to write.")],
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help=f"Architecture name (default {DEFAULT_CONFIG}; a fine-tune keeps RUN's).",
        ),
    ] = None,
    epochs: Annotated[int, EPOCHS.option("--epochs")] = 10,
    batch_size: Annotated[int, BATCH.option("--batch-size", help="Global batch.")] = 64,
    lr: Annotated[
        float | None,
        LR.option(
            "--lr",
            help="Base rate (default 1e-4 moclip, 1e-3 cosine; a fine-tune: 0.1x the rate "
            "RUN's recipe used).",
        ),
    ] = None,
    schedule: Annotated[str, typer.Option("--schedule", help="cosine or moclip.")] = "cosine",
    seed: Annotated[int, SEED.option("--seed")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from latest.pt.")] = False,
    patience: Annotated[
        int,
        PATIENCE.option("--patience", help="Stop after P epochs without better val R@1; 0 off."),
    ] = 0,
    no_shift: Annotated[
        bool, typer.Option("--no-shift", help="Switch off the circular-shift augmentation.")
    ] = False,
    no_transpose: Annotated[
        bool, typer.Option("--no-transpose", help="Switch off the transpose augmentation.")
    ] = False,
    time_budget_min: Annotated[
        float | None,
        BUDGET_MIN.option(
            "--time-budget-min",
            help="Wall-clock minutes; the schedule is fitted to it and training stops after "
            "the step that passes it.",
        ),
    ] = None,
    val_every_steps: Annotated[
        int,
        VAL_EVERY.option("--val-every-steps", help="Also validate every N steps; 0: per epoch."),
    ] = 0,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="fp32, or bf16 autocast of the forward pass (faster on AVX-512-bf16).",
        ),
    ] = "fp32",
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help=f"{DEFAULT_TASK} (the default: the CLIP model), or surrogate (geometry -> "
            "spectra, for design optimize --method surrogate); a fine-tune keeps RUN's.",
        ),
    ] = None,
    resume_from: Annotated[
        Path | None,
        typer.Option(
            "--resume-from",
            help="Fine-tune this model directory (RUN) on --pairs: its best weights, "
            "architecture, task and normalization, a fresh optimizer and schedule; --output "
            "is a new directory.",
        ),
    ] = None,
    old_pairs: Annotated[
        Path | None,
        typer.Option(
            "--old-pairs",
            help="With --resume-from: pairs to rehearse each epoch (default: RUN's own "
            "training pairs, when that file still holds them).",
        ),
    ] = None,
    old_fraction: Annotated[
        float | None,
        OLD_FRACTION.option(
            "--old-fraction",
            help="With --resume-from: share of old pairs in each epoch (default 0.5; 0: none, "
            "the old validation figure is still reported).",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress")] = True,
) -> None:
    """Train a contrastive geometry-spectrum model, or a forward surrogate (runs under
    torchrun too); with --resume-from, fine-tune a trained one on newly measured pairs."""
    from models.augment import AugmentConfig
    from models.config import get_config
    from models.fine_tune import (
        DEFAULT_OLD_FRACTION,
        FineTune,
        check_fine_tune_choices,
        fine_tune_of,
    )
    from models.tasks import task_for
    from models.train import STOP_MESSAGES, TrainConfig, train

    fine_tune: FineTune | None = None
    if resume_from is not None:
        if resume:
            raise ValueError(
                f"--resume-from {resume_from} with --resume: --resume continues the run in "
                "--output, --resume-from starts a new one from RUN; give one of them"
            )
        inputs: dict[str, Path | None] = {
            "--pairs": pairs,
            "--resume-from": resume_from,
            "--old-pairs": old_pairs,
        }
        check_outputs({"--output": output}, inputs, False, directories=True)
        task, config = check_fine_tune_choices(resume_from, "--resume-from", config, task)
        fraction = DEFAULT_OLD_FRACTION if old_fraction is None else old_fraction
        fine_tune = FineTune(resume_from, old_pairs, fraction)
    elif old_pairs is not None or old_fraction is not None:
        flag = "--old-pairs" if old_pairs is not None else "--old-fraction"
        again = " (a resumed fine-tune keeps its own)" if resume else ""
        raise ValueError(f"{flag} goes with --resume-from RUN{again}")
    else:
        if resume and fine_tune_of(output) is not None:  # continuing a fine-tune
            task, config = check_fine_tune_choices(output, "fine-tune --output", config, task)
        else:
            config, task = config or DEFAULT_CONFIG, task or DEFAULT_TASK
            get_config(config)  # an unknown name fails before the pairs are read
        check_outputs({"--output": output}, {"--pairs": pairs}, False, directories=True)
    cfg = TrainConfig(
        model=config,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule,
        seed=seed,
        patience=patience,
        augment=AugmentConfig(circular_shift=not no_shift, transpose=not no_transpose),
        time_budget_min=time_budget_min,
        val_every_steps=val_every_steps,
        precision=precision,
        task=task,
    )
    result = train(pairs, output, cfg, resume=resume, progress=progress, fine_tune=fine_tune)
    chosen = task_for(task)
    epochs_done = result.history[-1]["epoch"] if result.history else 0.0
    start = f" (fine-tuned from {resume_from})" if resume_from is not None else ""
    typer.echo(
        f"trained {round(epochs_done, 2):g} epochs ({result.steps} steps; stopped: "
        f"{STOP_MESSAGES[result.stop_reason]}); best {chosen.label} {result.best_value:{chosen.fmt}} "
        f"at epoch {round(result.best_epoch, 2):g}; model in {output}{start}"
    )


def evaluate_cmd(
    model: Annotated[Path, typer.Option("--model", help="Model directory.")],
    pairs: Annotated[
        Path, typer.Option("--pairs", help="Pairs file (HDF5, contract 5) or MOCLIP .npz.")
    ],
    split: Annotated[str, typer.Option("--split")] = "test",
    gallery: Annotated[
        int, GALLERY.option("--gallery", help="Size of the seeded gallery.")
    ] = 10_000,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="Noise-free spectra for the oracle: a pairs file of the same designs, or the "
            "chip's truth file (metascan sim truth) for pairs curated from its scan.",
        ),
    ] = None,
    seed: Annotated[int, SEED.option("--seed")] = 0,
    output: Annotated[
        Path | None, typer.Option("--output", help="Folder for JSON and PNGs (default: model).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a previous evaluation in the folder.")
    ] = False,
) -> None:
    """R@1/5/10 both ways, the oracle and its ratio; writes evaluation.json and PNGs. For a
    forward surrogate: its per-pair MSE beside the mean spectrum's and the noise floor."""
    from models.evaluate import evaluate, output_files
    from models.model_dir import SURROGATE, model_kind

    if not model.is_dir():
        raise FileNotFoundError(f"model directory {model} does not exist")
    folder = output if output is not None else model
    inputs: dict[str, Path | None] = {"--pairs": pairs, "--truth": truth}
    check_outputs({"--output": folder}, inputs, force, directories=True)
    if model_kind(model) == SURROGATE:
        from models.surrogate_eval import EVALUATION_FILE, PLOT_FILE, evaluate_surrogate

        if folder.is_dir():
            files = {f"output {f}": folder / f for f in (EVALUATION_FILE, PLOT_FILE)}
            check_outputs(files, inputs, force)
        got = evaluate_surrogate(model, pairs, split, truth, output)
        line = (
            f"surrogate on {got['pairs_scored']} {split} pairs: MSE vs measured median "
            f"{got['surrogate_vs_measured']['q50']:.2e}, q95 {got['surrogate_vs_measured']['q95']:.2e}"
            f" (mean spectrum: median {got['mean_spectrum_vs_measured']['q50']:.2e})"
        )
        if got["noise_floor"] is not None:
            line += (
                f"; vs true median {got['surrogate_vs_true']['q50']:.2e}, noise floor median "
                f"{got['noise_floor']['q50']:.2e}"
            )
        typer.echo(line)
        return
    if folder.is_dir():
        check_outputs({f"output {f}": f for f in output_files(folder)}, inputs, force)
    report = evaluate(model, pairs, split, gallery, truth, seed, output)
    for entry in report["results"]:
        s2g = entry["spectrum_to_geometry"]
        line = f"{entry['gallery']} ({entry['size']}): spectrum→geometry " + ", ".join(
            f"{k} {v:.3f}" for k, v in s2g.items()
        )
        if entry["model_over_oracle"]:
            line += f"; model/oracle R@1 {entry['model_over_oracle']['R@1']:.3f}"
        typer.echo(line)
