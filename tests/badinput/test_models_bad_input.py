"""``metascan train`` and ``metascan evaluate``: one line, exit 2, files untouched."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from edits import before_materials, edit_json, legacy_absolute_pairs, nan_weights, write
from world import Case


def train(*extra: str, output: str = "{w}/run", pairs: str = "{w}/pairs.h5") -> list[str]:
    return ["train", "--pairs", pairs, "--output", output, "--no-progress", *extra]


def evaluate(*extra: str, model: str = "{w}/model") -> list[str]:
    return ["evaluate", "--model", model, "--pairs", "{w}/pairs.h5", "--output", "{w}/ev", *extra]


def no_material(data: dict) -> None:  # type: ignore[type-arg]
    data.pop("material")
    data["format_version"] = 2


def zero_std(data: dict) -> None:  # type: ignore[type-arg]
    data["spectra_std"][3] = 0.0


def old_format(data: dict) -> None:  # type: ignore[type-arg]
    data.pop("spectra_convention", None)
    data["format_version"] = 1


CASES = [
    Case("train lr 1e10", train("--lr", "1e10"), "--lr 10000000000.0 is outside"),
    Case("train lr nan", train("--lr", "nan"), "--lr nan must be a finite number"),
    Case("train lr -1", train("--lr", "-1"), "--lr -1.0 is outside"),
    Case("train epochs 0", train("--epochs", "0"), "--epochs 0 is outside"),
    Case("train batch 1", train("--batch-size", "1"), "--batch-size 1 is outside"),
    Case("train seed -1", train("--seed", "-1"), "--seed -1 is outside"),
    Case("train patience -1", train("--patience", "-1"), "--patience -1 is outside"),
    Case("train budget nan", train("--time-budget-min", "nan"), "--time-budget-min nan must"),
    Case("train val every -1", train("--val-every-steps", "-1"), "--val-every-steps -1 is"),
    Case("train config", train("--config", "resnet-9000"), "resnet-9000"),
    Case("train schedule", train("--schedule", "step"), "schedule 'step'"),
    Case("train precision", train("--precision", "fp16"), "precision 'fp16' not in fp32, bf16"),
    Case("train output = pairs", train(output="{w}/pairs.h5"), "is a file"),
    Case("train over a run", train(output="{w}/model"), "already holds a run; pass --resume"),
    Case("train resume of nothing", train("--resume"), "nothing to resume"),
    Case(
        "train resume on other data",
        train("--resume", output="{w}/model", pairs="{w}/more.npz"),
        "--resume with other data",
        prepare=lambda w: __import__("shutil").copy(w / "pairs.npz", w / "more.npz"),
    ),
    Case(
        "train resume on pairs of another film",
        train("--resume", output="{w}/model", pairs="{w}/pairs_asih.h5"),
        "--resume pairs {w}/pairs_asih.h5 (material 'a-Si:H') and run {w}/model/latest.pt "
        "(material 'a-Si') are of different films",
    ),
    Case(
        "train on pairs written before materials",
        train(pairs="{w}/old_pairs.h5"),
        "does not record its film material",
        prepare=before_materials("pairs.h5", "old_pairs.h5", 2),
    ),
    Case(
        "train on absolute (legacy) spectra",
        train(pairs="{w}/absolute.h5"),
        "holds spectra 'absolute_into_substrate'",
        prepare=legacy_absolute_pairs("absolute.h5"),
    ),
    Case("train pairs missing", train(pairs="{w}/none.h5"), "does not exist"),
    Case(
        "evaluate NaN weights",
        evaluate(),
        "hold NaN/inf values",
        prepare=nan_weights("model"),
    ),
    Case(
        "evaluate zero std",
        evaluate(),
        "spectra_std[3]",
        prepare=edit_json("model/normalization.json", zero_std),
    ),
    Case(
        "evaluate a model without a spectra convention",
        evaluate(),
        "does not say which spectra convention it holds",
        prepare=edit_json("model/config.json", old_format),
    ),
    Case(
        "evaluate a model written before materials",
        evaluate(),
        "(config.json) does not record its film material",
        prepare=edit_json("model/config.json", no_material),
    ),
    Case(
        "evaluate on pairs of another film",
        ["evaluate", "--model", "{w}/model", "--pairs", "{w}/pairs_asih.h5", "--output", "{w}/ev"],
        "pairs {w}/pairs_asih.h5 (material 'a-Si:H') and model {w}/model (material 'a-Si')",
    ),
    Case(
        "evaluate with a truth of another film",
        evaluate("--truth", "{w}/pairs_asih.h5"),
        "truth pairs {w}/pairs_asih.h5 (material 'a-Si:H') and pairs",
    ),
    Case("evaluate seed -1", evaluate("--seed", "-1"), "--seed -1 is outside"),
    Case("evaluate gallery 1", evaluate("--gallery", "1"), "--gallery 1 is outside"),
    Case("evaluate split", evaluate("--split", "holdout"), "unknown split 'holdout'"),
    Case("evaluate model missing", evaluate(model="{w}/none"), "does not exist"),
    Case(
        "evaluate truth of a chip the pairs are not from",
        evaluate("--truth", "{w}/truth.h5"),
        "the pairs were not curated from that chip",
    ),
    Case(
        "evaluate over a previous evaluation",
        evaluate(),
        "evaluation.json exists; pass --force",
        prepare=write("ev/evaluation.json", "{}"),
    ),
    Case("evaluate output is a file", [*evaluate()[:-2], "--output", "{w}/notes.txt"], "is a file"),
    Case(
        "evaluate absolute (legacy) pairs",
        ["evaluate", "--model", "{w}/model", "--pairs", "{w}/absolute.h5", "--output", "{w}/ev"],
        "holds spectra 'absolute_into_substrate'",
        prepare=legacy_absolute_pairs("absolute.h5"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_models_refuse_bad_input(case: Case, refused: Callable[[Case], None]) -> None:
    refused(case)
