"""``metascan evaluate``: recall both ways, the oracle, JSON and PNGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dataset.pairs_file import Pairs
from dataset.pairs_io import load_pairs
from dataset.truth_file import Defect, Truth, write_truth
from layout.manifest import Role
from models.evaluate import evaluate
from models.retrieval import ranks_of_truth, recall_at
from models.train import TrainConfig, train

if TYPE_CHECKING:
    from conftest import Cli


def test_ranks_count_any_replica_as_a_hit() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.9, 0.8, 0.1], [0.9, 0.5, 0.2]])
    ids = np.array([7, 7, 9])
    ranks = ranks_of_truth(scores, ids, ids)
    assert ranks.tolist() == [1, 1, 3]  # query 3's only match scores below both others
    assert recall_at(ranks, (1, 3)) == {1: 2 / 3, 3: 1.0}


def test_ranks_do_not_depend_on_the_query_chunk() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (37, 23), generator=gen).double()  # many ties
    q_ids = np.arange(37) % 11
    g_ids = np.arange(23) % 11
    whole = ranks_of_truth(scores, q_ids, g_ids, chunk=37)
    assert whole.min() >= 1 and whole.max() > 1
    for chunk in (1, 5, 36):
        assert ranks_of_truth(scores, q_ids, g_ids, chunk=chunk).tolist() == whole.tolist()


def test_evaluate_writes_json_and_pngs_with_the_oracle(
    tmp_path: Path, pairs_h5: Path, truth_h5: Path, cli: Cli
) -> None:
    run = tmp_path / "run"
    train(pairs_h5, run, TrainConfig(epochs=1, batch_size=32), progress=False)
    code, stdout, err = cli("evaluate", "--model", str(run), "--pairs", str(pairs_h5),
                            "--truth", str(truth_h5), "--gallery", "10")  # fmt: skip
    assert code == 0, err
    assert "model/oracle R@1" in stdout
    report = json.loads((run / "evaluation.json").read_text())
    whole, subset = report["results"]
    assert whole["size"] == 20 and subset["size"] == 10
    for entry in (whole, subset):
        for direction in ("spectrum_to_geometry", "geometry_to_spectrum"):
            assert set(entry[direction]) == {"R@1", "R@5", "R@10"}
    # Noise 0.01 on distinct designs: the oracle finds nearly every one.
    assert whole["oracle"]["spectrum_to_geometry"]["R@1"] >= 0.9
    ratio = whole["model_over_oracle"]["R@1"]
    assert (
        ratio
        == whole["spectrum_to_geometry"]["R@1"] / whole["oracle"]["spectrum_to_geometry"]["R@1"]
    )
    curve = report["recall_curve"]
    assert curve["K"] == list(range(1, 21)) and curve["gallery"] == subset["gallery"]
    assert curve["model s→g"][0] == subset["spectrum_to_geometry"]["R@1"]
    assert curve["oracle s→g"][9] == subset["oracle"]["spectrum_to_geometry"]["R@10"]
    assert all(a <= b for a, b in zip(curve["model g→s"], curve["model g→s"][1:], strict=False))
    for png in ("similarity.png", "recall_at_k.png", "training.png"):
        assert (run / png).stat().st_size > 1000

    # Pairs curated from a scan of the simulated bench get their oracle from the chip's truth
    # file: the same noise-free spectra, seen through the glass, give the same oracle.
    chip = tmp_path / "chip_truth.h5"
    write_truth(chip, _chip_truth_of(load_pairs(truth_h5)))
    via_chip = evaluate(run, pairs_h5, "test", 10, chip, 0, tmp_path / "via_chip")
    for a, b in zip(via_chip["results"], report["results"], strict=True):
        assert a["oracle"] == b["oracle"] and a["model_over_oracle"] == b["model_over_oracle"]
    assert via_chip["truth"] == str(chip)


def _chip_truth_of(pairs: Pairs, glass: float = 0.93) -> Truth:
    """A truth file whose dataset pads are the pairs' rows (replicas of a design are pads)."""
    n, bands = len(pairs), pairs.spectra.shape[-1]
    return Truth(
        array_id=np.zeros(n, dtype=np.int32),
        replica=np.zeros(n, dtype=np.int32),
        row=np.arange(n, dtype=np.int32),
        col=np.zeros(n, dtype=np.int32),
        role=np.full(n, Role.DATASET, dtype=np.int8),
        design_id=pairs.design_id.astype(np.int64),
        size_bias_nm=np.zeros(n),
        defect=np.full(n, Defect.NONE, dtype=np.int8),
        transmission=pairs.spectra.astype(np.float64) * glass,
        band_center_nm=np.arange(450.0, 450.0 + 10 * bands, 10.0),
        glass_transmission=np.full(bands, glass),
        bandwidth_mode="narrow",
    )


def test_evaluate_errors_are_one_line(tmp_path: Path, pairs_h5: Path, cli: Cli) -> None:
    code, _, err = cli("evaluate", "--model", str(tmp_path / "none"), "--pairs", str(pairs_h5))
    assert code == 2 and err.strip() == f"error: model directory {tmp_path / 'none'} does not exist"
