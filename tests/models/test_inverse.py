"""Zero-shot inverse design and spectra prediction: retrieval returns the most similar probes
(checked against brute force), writes a library `layout chip` takes, refuses another model's
probes, and the `metascan design` commands run end to end with one-line refusals."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from models_data import untrained_model

from dataset.chosen_designs_file import read_chosen, write_chosen
from dataset.pairs_file import SPLIT_NAMES, read_pairs
from dataset.probes_file import read_probes
from dataset.targets_file import Targets, read_targets, write_targets
from layout.chip import ChipConfig, plan_chip
from layout.library_file import read_library
from models.inference import InferenceConfig, encode_spectra, prepare
from models.inverse import predict, retrieve, score_prediction
from models.model_dir import load_model, write_model_dir
from models.probes import ProbeBuild, build_probes

if TYPE_CHECKING:
    from conftest import Cli


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, pairs_h5: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inverse")
    write_model_dir(root / "m", untrained_model(0), material="a-Si")
    write_model_dir(root / "other", untrained_model(1), material="a-Si")
    probes = build_probes(root / "p.h5", root / "m", ProbeBuild(count=600, seed=2, block_size=128))
    pairs = read_pairs(pairs_h5)
    test = np.flatnonzero(pairs.split == SPLIT_NAMES.index("test"))[:12]
    targets = Targets.build(
        pairs.spectra[test].astype(np.float64),
        pairs.wavelength_nm,
        target_id=[f"t{i}" for i in range(test.size)],
    )
    write_targets(root / "t.h5", targets)
    return {
        "root": root,
        "model": root / "m",
        "other": root / "other",
        "probes": probes,
        "targets": root / "t.h5",
    }


def test_retrieval_returns_the_most_similar_probes(setup: dict[str, Path]) -> None:
    targets = read_targets(setup["targets"])
    chosen = retrieve(setup["model"], [setup["probes"]], targets, setup["targets"], 3, (100, 600))
    db = read_probes([setup["probes"]])
    model = prepare(load_model(setup["model"]), InferenceConfig())
    query = encode_spectra(model, targets.spectra, InferenceConfig())
    for size in (100, 600):
        sims = query.astype(np.float64) @ db.latent[:size].T.astype(np.float64)
        best = np.argsort(-sims, axis=1, kind="stable")[:, :3]
        pick = chosen.database_size == size
        ids = chosen.library.design_id[chosen.design_row[pick]].reshape(len(targets), 3)
        assert np.array_equal(ids, db.library.design_id[best])
        assert np.allclose(
            chosen.similarity[pick].reshape(-1, 3), np.take_along_axis(sims, best, 1), atol=1e-5
        )
        assert np.array_equal(
            chosen.rank[pick].reshape(-1, 3), np.tile([1, 2, 3], (len(targets), 1))
        )
    # The library starts with the best design of each target over the whole database.
    best_full = chosen.library.design_id[
        chosen.design_row[(chosen.database_size == 600) & (chosen.rank == 1)]
    ]
    in_order = list(dict.fromkeys(best_full.tolist()))
    assert chosen.library.design_id[: len(in_order)].tolist() == in_order
    # Each chosen probe keeps the thickness it was encoded with.
    rows = {int(d): i for i, d in enumerate(db.library.design_id)}
    chosen_ids = chosen.library.design_id[chosen.design_row]
    assert np.array_equal(chosen.thickness_nm, db.thickness_nm[[rows[int(d)] for d in chosen_ids]])


def test_chosen_designs_round_trip_and_layout_chip_takes_them(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    targets = read_targets(setup["targets"])
    chosen = retrieve(setup["model"], [setup["probes"]], targets, setup["targets"], 2)
    path = tmp_path / "d.h5"
    write_chosen(path, chosen)
    back = read_chosen(path)
    assert back.target_id == chosen.target_id
    assert np.array_equal(back.design_row, chosen.design_row)
    assert np.array_equal(back.similarity, chosen.similarity)
    assert back.material == chosen.material == "a-Si"  # the choosing model's film
    first = back.first_thickness_nm()
    assert np.all(np.isfinite(first))
    for row in range(len(back.library)):
        assert first[row] == back.thickness_nm[np.flatnonzero(back.design_row == row)[0]]
    lib = read_library(path)  # contract 1 at the root
    assert np.array_equal(lib.design_id, chosen.library.design_id)
    assert len(set(lib.design_id.tolist())) == len(lib)  # each design once
    n = len(lib)
    manifest = plan_chip(
        lib, ChipConfig(thickness_nm=178, arrays=1, rows=1, cols=n, replicas=1, companion_size=0)
    )
    assert set(manifest.designs.design_id.tolist()) == set(lib.design_id.tolist())


def test_targets_and_spectra_of_another_film_are_refused(
    setup: dict[str, Path], tmp_path: Path, cli: Cli, pairs_h5: Path
) -> None:
    from dataclasses import replace

    from dataset.pairs_file import write_pairs

    targets = replace(read_targets(setup["targets"]), material="a-Si:H")
    with pytest.raises(ValueError, match=r"targets .*asih_t.h5 \(material 'a-Si:H'\) and model"):
        retrieve(setup["model"], [setup["probes"]], targets, tmp_path / "asih_t.h5", 1)
    asih = tmp_path / "asih.h5"
    write_pairs(asih, replace(read_pairs(pairs_h5), material="a-Si:H"))
    m = str(setup["model"])
    for argv, message in (
        (["design", "predict", "--model", m, "--designs", str(pairs_h5), "--spectra-db",
          str(asih), "--output", str(tmp_path / "pr.h5")], "--spectra-db"),
        (["design", "predict", "--model", m, "--designs", str(asih), "--spectra-db",
          str(pairs_h5), "--output", str(tmp_path / "pr.h5")], "--designs"),
        (["design", "retrieve", "--model", m, "--probes", str(setup["probes"]), "--targets",
          str(setup["targets"]), "--spectra-db", str(asih), "--output", str(tmp_path / "d.h5")],
         "--spectra-db"),
        (["design", "targets", "--model", m, "--pairs", str(asih), "--output",
          str(tmp_path / "t2.h5")], "--pairs"),
    ):  # fmt: skip
        code, _, err = cli(*argv)
        assert code == 2 and err.count("\n") == 1, err
        assert f"{message} {asih} (material 'a-Si:H') and" in err, err
        assert "(material 'a-Si') are of different films" in err
    assert not any(tmp_path.glob("pr*")) and not (tmp_path / "d.h5").exists()
    # Predicted spectra are of the model's film; targets from pairs are of the pairs'.
    code, _, err = cli("design", "predict", "--model", m, "--designs", str(pairs_h5),
                       "--spectra-db", str(pairs_h5), "--output", str(tmp_path / "ok.h5"))  # fmt: skip
    assert code == 0, err
    assert read_targets(tmp_path / "ok.h5").material == "a-Si"
    code, _, err = cli(
        "design", "targets", "--pairs", str(asih), "--output", str(tmp_path / "t3.h5")
    )
    assert code == 0, err
    assert read_targets(tmp_path / "t3.h5").material == "a-Si:H"


def test_another_models_probes_are_refused(setup: dict[str, Path]) -> None:
    targets = read_targets(setup["targets"])
    with pytest.raises(ValueError, match="encoded by model"):
        retrieve(setup["other"], [setup["probes"]], targets, setup["targets"], 1)


def test_prediction_retrieves_measured_spectra_and_scores_honestly(pairs_h5: Path) -> None:
    pairs = read_pairs(pairs_h5)
    model = untrained_model(0)
    train = np.flatnonzero(pairs.split == 0)
    test = np.flatnonzero(pairs.split == 2)
    db = pairs.spectra[train]
    pred = predict(model, pairs.geometry[test], pairs.params[test], db, top_k=1)
    # Top-1 prediction is a database row, exactly.
    assert np.array_equal(pred.spectra, db[pred.top_rows[:, 0]].astype(np.float64))
    weighted = predict(model, pairs.geometry[test], pairs.params[test], db, top_k=5, weighted=True)
    lo = db[weighted.top_rows].min(axis=1)
    hi = db[weighted.top_rows].max(axis=1)
    assert np.all(weighted.spectra >= lo - 1e-9) and np.all(weighted.spectra <= hi + 1e-9)
    truth = pairs.spectra[test].astype(np.float64)
    report = score_prediction(pred.spectra, truth, db)
    assert report["oracle"]["q50"] <= report["model"]["q50"]
    # With the truth itself in the database, the oracle is exact.
    exact = score_prediction(pred.spectra, truth, np.concatenate([db, truth]))
    assert exact["oracle"]["q95"] < 1e-12


def test_design_commands_end_to_end(
    setup: dict[str, Path], tmp_path: Path, cli: Cli, pairs_h5: Path, truth_h5: Path
) -> None:
    m, t = str(setup["model"]), tmp_path / "t.h5"
    code, out, err = cli(
        "design",
        "targets",
        "--model",
        m,
        "--pairs",
        str(pairs_h5),
        "--limit",
        "8",
        "--filter",
        "bandpass x 600 40 0.8",
        "--output",
        str(t),
    )
    assert code == 0, err
    assert "wrote 9 targets" in out
    p = tmp_path / "p.h5"
    code, out, err = cli(
        "design",
        "probes",
        "--model",
        m,
        "--count",
        "300",
        "--seed",
        "1",
        "--block-size",
        "128",
        "--thicknesses",
        "178",
        "--exclude",
        str(pairs_h5),
        "--output",
        str(p),
        "--no-progress",
    )
    assert code == 0, err
    assert set(read_probes([p]).thickness_nm.tolist()) == {178.0}
    d = tmp_path / "d.h5"
    code, out, err = cli(
        "design",
        "retrieve",
        "--model",
        m,
        "--probes",
        str(p),
        "--targets",
        str(t),
        "--top-k",
        "2",
        "--database-sizes",
        "100,300",
        "--output",
        str(d),
    )
    assert code == 0, err
    assert d.with_suffix(".png").is_file()
    ev = tmp_path / "ev"
    code, out, err = cli(
        "design",
        "evaluate",
        "--designs",
        str(d),
        "--targets",
        str(t),
        "--world",
        str(truth_h5),
        "--probes",
        str(p),
        "--output",
        str(ev),
        "--no-progress",
    )
    assert code == 0, err
    assert "database 100:" in out and "oracle median" in out
    assert (ev / "evaluation.json").is_file() and (ev / "mse_vs_database_size.png").is_file()
    # Again, without --force: refused, nothing rewritten.
    before = (ev / "evaluation.json").stat().st_mtime_ns
    code, out, err = cli(
        "design",
        "evaluate",
        "--designs",
        str(d),
        "--targets",
        str(t),
        "--world",
        str(truth_h5),
        "--output",
        str(ev),
        "--no-progress",
    )
    assert code != 0 and "--force" in err and len(err.strip().splitlines()) == 1
    assert (ev / "evaluation.json").stat().st_mtime_ns == before
    # Without --world the model's training pairs are the world; this model records none.
    code, out, err = cli(
        "design",
        "evaluate",
        "--designs",
        str(d),
        "--targets",
        str(t),
        "--output",
        str(tmp_path / "ev3"),
    )
    assert code != 0 and "give --world" in err and len(err.strip().splitlines()) == 1
    # Another targets file than the designs were chosen for is refused.
    other = tmp_path / "t2.h5"
    targets = read_targets(t)
    write_targets(other, targets.take(slice(0, 3)))
    code, out, err = cli(
        "design",
        "evaluate",
        "--designs",
        str(d),
        "--targets",
        str(other),
        "--world",
        str(truth_h5),
        "--output",
        str(tmp_path / "ev2"),
    )
    assert code != 0 and "another targets file" in err
    pred = tmp_path / "pred.h5"
    code, out, err = cli(
        "design",
        "predict",
        "--model",
        m,
        "--designs",
        str(pairs_h5),
        "--spectra-db",
        str(pairs_h5),
        "--output",
        str(pred),
    )
    assert code == 0, err
    assert "oracle" in out and pred.with_suffix(".json").is_file()
    code, out, err = cli(
        "design",
        "predict",
        "--model",
        m,
        "--designs",
        str(d),
        "--spectra-db",
        str(pairs_h5),
        "--output",
        str(tmp_path / "pred2.h5"),
    )
    assert code == 0, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["probes", "--count", "0"], "--count"),
        (["probes", "--min-gap-nm", "30"], "min_gap_nm"),
        (["probes", "--kinds", "triangle"], "kinds"),
        (["probes", "--shard", "3/2"], "--shard"),
        (["probes", "--thicknesses", "nan"], "--thicknesses"),
        (["retrieve", "--top-k", "0"], "--top-k"),
        (["retrieve", "--top-k", "700"], "700"),
        (["retrieve", "--database-sizes", "5000"], "5000"),
        (["optimize", "--particles", "1"], "--particles"),
        (["optimize", "--iterations", "0"], "--iterations"),
        (["optimize", "--method", "annealing"], "annealing"),
        (["optimize", "--method", "hybrid", "--steps", "0"], "--steps"),
        (["optimize", "--support-penalty", "5"], "--probes"),
        (["optimize", "--support-penalty", "nan"], "--support-penalty"),
        (["optimize", "--record-iterations", "40"], "40"),
        (["optimize", "--robust", "0"], "--robust"),
        (["optimize", "--start", "sobol"], "--start"),
        (["optimize", "--robust", "2", "--fab-sd-nm", "80"], "--fab-sd-nm"),
        (["optimize", "--kinds", "triangle"], "kinds"),
        (["optimize", "--method", "surrogate-hybrid", "--steps", "0"], "--steps"),
    ],
)
def test_bad_design_input_is_one_line(
    setup: dict[str, Path], tmp_path: Path, cli: Cli, args: list[str], message: str
) -> None:
    common = {
        "probes": ["--model", str(setup["model"]), "--output", str(tmp_path / "x.h5")],
        "retrieve": [
            "--model",
            str(setup["model"]),
            "--probes",
            str(setup["probes"]),
            "--targets",
            str(setup["targets"]),
            "--output",
            str(tmp_path / "x.h5"),
        ],
        "optimize": [
            "--model",
            str(setup["model"]),
            "--targets",
            str(setup["targets"]),
            "--output",
            str(tmp_path / "x.h5"),
        ],
    }[args[0]]
    code, _out, err = cli("design", args[0], *common, *args[1:])
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "x.h5").exists()


def test_reranking_orders_the_shortlist_by_predicted_weighted_mse(
    setup: dict[str, Path], pairs_h5: Path
) -> None:
    from models.inverse import Rerank, SpectraDatabase

    targets = read_targets(setup["targets"])
    pairs = read_pairs(pairs_h5)
    db = pairs.spectra[pairs.split == 0]
    rerank = Rerank(db, "train rows", shortlist=40, predict_k=5)
    chosen = retrieve(
        setup["model"], [setup["probes"]], targets, setup["targets"], 4, rerank=rerank
    )
    plain = retrieve(setup["model"], [setup["probes"]], targets, setup["targets"], 40)
    probes = read_probes([setup["probes"]])
    model = prepare(load_model(setup["model"]), InferenceConfig())
    answers = SpectraDatabase.encode(model, db, InferenceConfig())
    row_of = {int(d): i for i, d in enumerate(probes.library.design_id)}
    for t in range(len(targets)):
        short = plain.library.design_id[plain.design_row[t * 40 : (t + 1) * 40]]
        rows = np.array([row_of[int(d)] for d in short])
        predicted = answers.predict(probes.latent[rows], 5, weighted=True).spectra
        w = targets.weight[t]
        err = (w * (predicted - targets.spectra[t]) ** 2).sum(axis=(1, 2)) / w.sum()
        expected = short[np.argsort(err, kind="stable")[:4]]
        got = chosen.library.design_id[chosen.design_row[t * 4 : (t + 1) * 4]]
        assert np.array_equal(got, expected)
    assert "predicted weighted MSE" in chosen.provenance["ranked_by"]


def test_optimize_command_writes_chosen_designs_that_layout_takes(
    setup: dict[str, Path], tmp_path: Path, cli: Cli
) -> None:
    out = tmp_path / "opt.h5"
    args = ["design", "optimize", "--model", str(setup["model"]), "--targets",
            str(setup["targets"]), "--iterations", "3", "--particles", "6", "--periods", "400,500",
            "--output", str(out), "--no-progress"]  # fmt: skip
    code, text, err = cli(*args)
    assert code == 0, err
    assert "wrote 12 optimized designs" in text and "% of proposals infeasible" in text
    chosen = read_chosen(out)
    targets = read_targets(setup["targets"])
    assert chosen.target_id == tuple(targets.target_id) and (chosen.rank == 1).all()
    assert set(chosen.chosen().period_nm.tolist()) <= {400.0, 500.0}
    assert (chosen.database_size == 18).all()
    found = np.asarray(chosen.provenance["found_at_iteration"])
    assert ((found >= 1) & (found <= 3)).all()
    history = np.asarray(chosen.provenance["best_by_iteration"])
    np.testing.assert_allclose(history[-1], chosen.similarity, rtol=1e-6)
    # The similarity recorded is the model's: re-encode the chosen designs.
    model = prepare(load_model(setup["model"]), InferenceConfig(precision="fp32"))
    from layout.raster import rasterize
    from models.inference import encode_geometry

    lib = chosen.chosen()
    z = encode_geometry(model, rasterize(lib),
                        np.stack([lib.period_nm, chosen.thickness_nm], axis=1) / 1000,
                        InferenceConfig(precision="fp32"))  # fmt: skip
    q = encode_spectra(model, targets.spectra, InferenceConfig(precision="fp32"))
    np.testing.assert_allclose(np.einsum("ne,ne->n", z, q), chosen.similarity, atol=0.02)
    n = len(chosen.library)
    plan_chip(
        chosen.library,
        ChipConfig(thickness_nm=178, arrays=1, rows=1, cols=n, replicas=1, companion_size=0),
    )
    code, _, err = cli(*args)
    assert code != 0 and "--force" in err and len(err.strip().splitlines()) == 1
    # With recorded iterations: the best so far after each, as database sizes of proposals.
    code, _, err = cli(*args, "--record-iterations", "1,2", "--force")
    assert code == 0, err
    curve = read_chosen(out)
    assert sorted(set(curve.database_size.tolist())) == [6, 12, 18]
    by_size = {int(n): curve.similarity[curve.database_size == n] for n in set(curve.database_size)}
    assert (by_size[6] <= by_size[12] + 1e-6).all() and (by_size[12] <= by_size[18] + 1e-6).all()
    np.testing.assert_allclose(by_size[18], chosen.similarity, rtol=1e-6)  # seeded
    assert curve.target_id[:12] == tuple(targets.target_id)  # the final designs come first
    # The hybrid: the same swarm, then gradient steps; never worse, placed after the swarm.
    code, text, err = cli(*args, "--method", "hybrid", "--steps", "2", "--force")
    assert code == 0, err
    hybrid = read_chosen(out)
    assert "hybrid" in hybrid.provenance["method"]
    sizes = sorted(set(hybrid.database_size.tolist()))
    assert sizes[0] == 18 and len(sizes) == 2 and sizes[1] > 18
    refined = hybrid.similarity[hybrid.database_size == sizes[1]]
    assert (refined >= chosen.similarity - 1e-6).all()
    # Warm-started from a retrieval: the first swarm is each target's most similar probes, so
    # even its first iteration is at least as similar as the retrieval's top choice.
    code, _, err = cli(*args, "--method", "hybrid", "--steps", "2", "--probes",
                       str(setup["probes"]), "--record-iterations", "1", "--force")  # fmt: skip
    assert code == 0, err
    warm = read_chosen(out)
    assert "most similar probes" in warm.provenance["method"]
    from models.probes import ProbeConstraints

    probe_set = read_probes([setup["probes"]])
    space = ProbeConstraints(periods_nm=(400, 500)).design_space()
    inside = space.contains(probe_set.library, probe_set.thickness_nm)
    assert 0 < inside.sum() < len(probe_set)  # the constraints leave some probes out
    bf16 = prepare(load_model(setup["model"]), InferenceConfig())
    best = encode_spectra(bf16, targets.spectra, InferenceConfig()) @ probe_set.latent[inside].T
    first = warm.similarity[warm.database_size == 6]
    np.testing.assert_array_less(best.max(axis=1) - 0.02, first)  # bf16 raster vs stored


def test_optimize_refuses_another_models_probes(
    setup: dict[str, Path], tmp_path: Path, cli: Cli
) -> None:
    out = tmp_path / "x.h5"
    before = setup["probes"].read_bytes()
    code, _, err = cli("design", "optimize", "--model", str(setup["other"]), "--targets",
                       str(setup["targets"]), "--probes", str(setup["probes"]), "--iterations",
                       "1", "--particles", "2", "--output", str(out), "--no-progress")  # fmt: skip
    assert code != 0 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "model" in err and not out.exists()
    assert setup["probes"].read_bytes() == before
    targets = setup["targets"].read_bytes()
    code, _, err = cli("design", "optimize", "--model", str(setup["model"]), "--targets",
                       str(setup["targets"]), "--iterations", "1", "--particles", "2",
                       "--output", str(setup["targets"]), "--no-progress")  # fmt: skip
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert setup["targets"].read_bytes() == targets  # the output named an input: refused


def test_random_search_command_writes_clean_designs_scored_by_the_model(
    setup: dict[str, Path], tmp_path: Path, cli: Cli
) -> None:
    out = tmp_path / "rand.h5"
    code, _, err = cli("design", "optimize", "--model", str(setup["model"]), "--targets",
                       str(setup["targets"]), "--method", "random", "--iterations", "2",
                       "--particles", "6", "--record-iterations", "1", "--output", str(out),
                       "--no-progress")  # fmt: skip
    assert code == 0, err
    chosen = read_chosen(out)
    assert chosen.provenance["method"].startswith("random search")
    assert sorted(set(chosen.database_size.tolist())) == [6, 12]
    from layout.checker import check_library

    assert check_library(chosen.chosen()).passed.all()
    by_size = {int(n): chosen.similarity[chosen.database_size == n] for n in (6, 12)}
    assert (by_size[6] <= by_size[12] + 1e-6).all()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fabrications", "0"], "--fabrications"),
        (["--dilation-sd-nm", "nan"], "--dilation-sd-nm"),
        (["--dilation-sd-nm", "80"], "--dilation-sd-nm"),
    ],
)
def test_bad_evaluate_fabrication_input_is_one_line(
    setup: dict[str, Path], pairs_h5: Path, tmp_path: Path, cli: Cli, args: list[str], message: str
) -> None:
    chosen = tmp_path / "c.h5"
    code, _, err = cli("design", "optimize", "--model", str(setup["model"]), "--targets",
                       str(setup["targets"]), "--iterations", "1", "--particles", "2",
                       "--output", str(chosen), "--no-progress")  # fmt: skip
    assert code == 0, err
    before = chosen.read_bytes(), setup["targets"].read_bytes()
    out = tmp_path / "eval"
    code, _, err = cli("design", "evaluate", "--designs", str(chosen), "--targets",
                       str(setup["targets"]), "--world", str(pairs_h5), "--output", str(out),
                       "--no-progress", *args)  # fmt: skip
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and (chosen.read_bytes(), setup["targets"].read_bytes()) == before


def test_train_refuses_an_unknown_task(pairs_h5: Path, tmp_path: Path, cli: Cli) -> None:
    out = tmp_path / "run"
    before = pairs_h5.read_bytes()
    code, _, err = cli("train", "--pairs", str(pairs_h5), "--output", str(out), "--task", "gan")
    assert code != 0 and "gan" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and pairs_h5.read_bytes() == before
