"""``metascan evaluate``: recall both ways, the oracle, JSON and PNGs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch

from dataset.pairs_file import Pairs, write_pairs
from dataset.pairs_io import load_pairs
from dataset.truth_file import Defect, Truth, write_truth
from helpers import TINY
from layout.manifest import Role
from models.evaluate import evaluate
from models.model import ContrastiveModel
from models.model_dir import write_model_dir
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


NAN = float("nan")


def test_nan_scores_never_count_as_hits() -> None:
    ids = np.arange(4)
    ranks = ranks_of_truth(torch.full((4, 4), NAN, dtype=torch.float64), ids, ids)
    assert ranks.tolist() == [4, 4, 4, 4]  # all NaN: every truth last, not first
    assert recall_at(ranks, (1, 3)) == {1: 0.0, 3: 0.0}


def test_all_equal_scores_rank_every_truth_last() -> None:
    ids = np.array([0, 0, 1, 2, 3])  # design 0 has two replicas: they do not count against it
    ranks = ranks_of_truth(torch.full((5, 5), 0.3, dtype=torch.float64), ids, ids)
    assert ranks.tolist() == [4, 4, 5, 5, 5]


def test_a_single_nan_candidate_ranks_ahead_of_the_truth() -> None:
    scores = torch.tensor([[0.9, NAN, 0.1], [0.2, 0.8, 0.1], [0.1, 0.2, 0.7]])
    ids = np.arange(3)
    assert ranks_of_truth(scores, ids, ids).tolist() == [2, 1, 1]


def test_a_nan_truth_ranks_last() -> None:
    scores = torch.tensor([[NAN, 0.5, -0.5], [0.2, 0.8, 0.1], [0.1, 0.2, 0.7]])
    ids = np.arange(3)
    assert ranks_of_truth(scores, ids, ids).tolist() == [3, 1, 1]
    # One replica's NaN does not hide the other replica's real score.
    scores = torch.tensor([[NAN, 0.9, 0.5]])
    assert ranks_of_truth(scores, np.array([7]), np.array([7, 7, 9])).tolist() == [1]


def _tiny_model_dir(folder: Path) -> Path:
    torch.manual_seed(0)
    write_model_dir(folder, ContrastiveModel(TINY), {"note": "untrained"}, material="a-Si")
    return folder


def test_a_constant_model_scores_no_better_than_chance(tmp_path: Path, pairs_h5: Path) -> None:
    model = ContrastiveModel(TINY)
    with torch.no_grad():  # every input maps to the same unit vector on both sides
        for tower in (model.geometry_proj, model.spectra_proj):
            proj = tower[1]
            assert isinstance(proj, torch.nn.Linear)
            proj.weight.zero_()
            proj.bias.fill_(1.0)
    write_model_dir(tmp_path / "constant", model, material="a-Si")
    report = evaluate(tmp_path / "constant", pairs_h5, "test", 10, None, 0, tmp_path / "out")
    for entry in report["results"]:  # galleries of 20 and 10 designs
        for direction in ("spectrum_to_geometry", "geometry_to_spectrum"):
            assert entry[direction]["R@1"] <= 1 / entry["size"]
            assert entry[direction]["R@10"] <= 10 / entry["size"]


def test_evaluate_refuses_nan_weights_in_one_line(tmp_path: Path, pairs_h5: Path, cli: Cli) -> None:
    run = _tiny_model_dir(tmp_path / "run")
    state = torch.load(run / "model.pt", weights_only=True)
    state["spectra_proj.1.weight"][0, 0] = NAN
    torch.save(state, run / "model.pt")
    code, out, err = cli("evaluate", "--model", str(run), "--pairs", str(pairs_h5))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.strip() == (
        f"error: {run / 'model.pt'}: weights 'spectra_proj.1.weight' hold NaN/inf values "
        "(a diverged run?); refusing to load it"
    )
    assert not (run / "evaluation.json").exists()


@pytest.mark.parametrize(
    ("field", "index", "value", "message"),
    [
        ("spectra_std", 3, 0.0, "spectra_std[3] = 0.0 must be finite and > 0"),
        ("params_std", 1, -0.2, "params_std[1] = -0.2 must be finite and > 0"),
        ("spectra_std", 0, NAN, "spectra_std[0] = nan must be finite and > 0"),
        ("spectra_std", 5, 1e-60, "spectra_std[5] = 1e-60 must be finite and > 0"),  # 0 in f32
        ("params_mean", 0, float("inf"), "params_mean[0] = inf must be finite"),
    ],
)
def test_evaluate_refuses_a_normalization_it_cannot_divide_by(
    tmp_path: Path, pairs_h5: Path, cli: Cli, field: str, index: int, value: float, message: str
) -> None:
    run = _tiny_model_dir(tmp_path / "run")
    path = run / "normalization.json"
    norm = json.loads(path.read_text())
    norm[field][index] = value
    path.write_text(json.dumps(norm))  # NaN and Infinity as Python's json writes them
    code, _, err = cli("evaluate", "--model", str(run), "--pairs", str(pairs_h5))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: {path}: normalization {message} (1 of ")


def test_evaluate_refuses_non_finite_embeddings(
    tmp_path: Path, pairs_h5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.retrieval import embed as real_embed

    run = _tiny_model_dir(tmp_path / "run")

    def embed_with_nan(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        g, s = real_embed(*args, **kwargs)
        s[:3, 0] = NAN
        return g, s

    monkeypatch.setattr("models.evaluate.embed", embed_with_nan)
    with pytest.raises(ValueError) as info:
        evaluate(run, pairs_h5, "test", 10, None, 0, tmp_path / "out")
    assert str(info.value) == (
        f"model {run} outputs NaN/inf on split 'test' (3 of 20 spectra embeddings are not "
        "finite); refusing to score it"
    )
    assert not (tmp_path / "out").exists()


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
    # Both name the chip manifest they come from, and only a truth of the pairs' chip is used.
    chip = tmp_path / "chip_truth.h5"
    digest = "7a" * 32
    write_truth(chip, _chip_truth_of(load_pairs(truth_h5)), {"manifest_sha256": digest})
    curated = tmp_path / "curated.h5"
    write_pairs(curated, load_pairs(pairs_h5), {"manifest_sha256": {"chip": digest}})
    via_chip = evaluate(run, curated, "test", 10, chip, 0, tmp_path / "via_chip")
    for a, b in zip(via_chip["results"], report["results"], strict=True):
        assert a["oracle"] == b["oracle"] and a["model_over_oracle"] == b["model_over_oracle"]
    assert via_chip["truth"] == str(chip)
    other = tmp_path / "other_chip.h5"
    write_pairs(other, load_pairs(pairs_h5), {"manifest_sha256": {"chip": "b0" * 32}})
    with pytest.raises(ValueError, match="the pairs were not curated from that chip"):
        evaluate(run, other, "test", 10, chip, 0, tmp_path / "other")
    # A truth of another film, a twin of another film, pairs of another film: each refused.
    asih = tmp_path / "asih_truth.h5"
    truth_asih = _chip_truth_of(load_pairs(truth_h5), material="a-Si:H")
    write_truth(asih, truth_asih, {"manifest_sha256": digest})
    with pytest.raises(ValueError, match=r"truth .*asih_truth.h5 \(material 'a-Si:H'\) and pairs"):
        evaluate(run, curated, "test", 10, asih, 0, tmp_path / "asih")
    twin = tmp_path / "asih_twin.h5"
    write_pairs(twin, replace(load_pairs(truth_h5), material="a-Si:H"))
    with pytest.raises(
        ValueError, match=r"truth pairs .*asih_twin.h5 \(material 'a-Si:H'\) and pairs"
    ):
        evaluate(run, pairs_h5, "test", 10, twin, 0, tmp_path / "twin")
    with pytest.raises(ValueError, match=r"pairs .*asih_twin.h5 \(material 'a-Si:H'\) and model"):
        evaluate(run, twin, "test", 10, None, 0, tmp_path / "on_asih")


def _chip_truth_of(pairs: Pairs, glass: float = 0.93, material: str = "a-Si") -> Truth:
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
        provenance={"material": material},
    )


def test_evaluate_errors_are_one_line(tmp_path: Path, pairs_h5: Path, cli: Cli) -> None:
    code, _, err = cli("evaluate", "--model", str(tmp_path / "none"), "--pairs", str(pairs_h5))
    assert code == 2 and err.strip() == f"error: model directory {tmp_path / 'none'} does not exist"
