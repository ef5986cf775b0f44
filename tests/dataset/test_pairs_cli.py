"""``metascan pairs``: import, info, export, overwrite refusal, and training on an ``.npz``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dataset.moclip_npz import write_moclip_npz
from dataset.pairs_file import SPLIT_NAMES, VAL, read_pairs
from dataset.pairs_io import load_pairs
from simulators.synthetic_pairs import SyntheticPairsConfig, make_pairs

if TYPE_CHECKING:
    from conftest import Cli


def _npz(folder: Path, count: int, noise: float = 0.01, replicas: int = 1) -> Path:
    path = folder / f"moclip_{count}_{noise}_{replicas}.npz"
    pairs = make_pairs(SyntheticPairsConfig(count=count, noise=noise, replicas=replicas))
    write_moclip_npz(path, pairs)
    return path


def test_import_info_export(tmp_path: Path, cli: Cli) -> None:
    npz = _npz(tmp_path, 12, replicas=2)
    h5 = tmp_path / "pairs.h5"
    code, out, err = cli(
        "pairs", "import-moclip", str(npz), "--output", str(h5), "--split-seed", "3"
    )
    assert code == 0, err
    assert "wrote 24 pairs of 12 designs" in out
    pairs = read_pairs(h5)
    assert len(pairs) == 24 and pairs.provenance["split_seed"] == 3
    assert pairs.provenance["source_file"] == npz.name

    code, out, err = cli("pairs", "info", str(h5))
    assert code == 0, err
    assert "pairs        24" in out and "designs      12 (2.00 pairs per design)" in out
    assert "29 bands, 450..730 nm" in out and "128x128 px" in out
    for code_, name in enumerate(SPLIT_NAMES):
        rows = pairs.split == code_
        designs = np.unique(pairs.design_id[rows]).size
        assert f"{name} {int(rows.sum())} pairs / {designs} designs" in out
    assert f"source_sha256: {pairs.provenance['source_sha256']}" in out

    code, out, err = cli("pairs", "info", str(npz))  # an .npz directly: splits drawn on reading
    assert code == 0, err
    assert "MOCLIP npz" in out and "pairs        24" in out

    back = tmp_path / "back.npz"
    code, out, err = cli("pairs", "export-moclip", str(h5), "--output", str(back))
    assert code == 0, err
    assert "wrote 24 pairs" in out and "note" not in out
    with np.load(npz, allow_pickle=False) as a, np.load(back, allow_pickle=False) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_outputs_are_not_overwritten_without_force(tmp_path: Path, cli: Cli) -> None:
    npz = _npz(tmp_path, 4)
    h5 = tmp_path / "pairs.h5"
    h5.write_bytes(b"keep me")
    code, _, err = cli("pairs", "import-moclip", str(npz), "--output", str(h5))
    assert code == 2 and err.strip() == f"error: --output {h5} exists; pass --force to overwrite it"
    assert h5.read_bytes() == b"keep me"
    code, _, err = cli("pairs", "import-moclip", str(npz), "--output", str(h5), "--force")
    assert code == 0, err
    assert len(read_pairs(h5)) == 4

    code, _, err = cli("pairs", "export-moclip", str(h5), "--output", str(npz))
    assert code == 2 and "exists; pass --force" in err
    code, _, err = cli("pairs", "export-moclip", str(h5), "--output", str(npz), "--force")
    assert code == 0, err
    code, _, err = cli("pairs", "import-moclip", str(npz), "-o", str(tmp_path / "no" / "p.h5"))
    assert code == 2 and "output directory" in err


def test_bad_npz_is_a_one_line_error(tmp_path: Path, cli: Cli) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, wvl=np.linspace(450, 730, 29), geom=np.zeros((2, 8, 8)), params=np.ones((2, 2)))
    code, out, err = cli("pairs", "import-moclip", str(bad), "--output", str(tmp_path / "p.h5"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "missing key(s) ['spectra_x', 'spectra_y']" in err
    assert not (tmp_path / "p.h5").exists()


def test_train_and_evaluate_on_an_npz(tmp_path: Path, cli: Cli) -> None:
    # 64 designs (a handful per validation/test split), one short epoch: the .npz path works.
    npz = _npz(tmp_path, 64)
    truth = tmp_path / "truth.npz"  # same designs, noise-free: the same hashed ids
    write_moclip_npz(truth, make_pairs(SyntheticPairsConfig(count=64, noise=0.0)))
    run = tmp_path / "run"
    code, out, err = cli("train", "--pairs", str(npz), "--output", str(run),
                         "--config", "metascan-small", "--epochs", "1",
                         "--batch-size", "16", "--no-progress")  # fmt: skip
    assert code == 0, err
    assert "trained 1 epochs" in out and (run / "model.pt").is_file()
    code, out, err = cli("evaluate", "--model", str(run), "--pairs", str(npz),
                         "--truth", str(truth), "--split", "val")  # fmt: skip
    assert code == 0, err
    report = json.loads((run / "evaluation.json").read_text())
    (whole,) = report["results"]
    assert whole["size"] == int(np.count_nonzero(load_pairs(npz).split == VAL)) >= 2
    assert whole["oracle"] is not None and whole["model_over_oracle"] is not None


def test_the_npz_layout_drops_the_material_and_the_import_names_it(
    tmp_path: Path, cli: Cli
) -> None:
    h5, npz, back = tmp_path / "asih.h5", tmp_path / "asih.npz", tmp_path / "back.h5"
    code, _, err = cli("sim", "pairs", "--count", "6", "--material", "a-Si:H", "-o", str(h5))
    assert code == 0, err
    assert read_pairs(h5).material == "a-Si:H"
    code, out, err = cli("pairs", "export-moclip", str(h5), "--output", str(npz))
    assert code == 0, err
    assert "import it with --material a-Si:H (not MOCLIP's a-Si)" in out
    code, out, err = cli(
        "pairs", "import-moclip", str(npz), "-o", str(back), "--material", "a-Si:H"
    )
    assert code == 0, err
    assert read_pairs(back).material == "a-Si:H" and "(a-Si:H; train" in out
    code, out, _ = cli("pairs", "info", str(back))
    assert "material     a-Si:H" in out
    assert load_pairs(npz).material == "a-Si"  # read directly: MOCLIP's film, as documented
    code, _, err = cli("pairs", "import-moclip", str(npz), "-o", str(tmp_path / "x.h5"),
                       "--material", "glass")  # fmt: skip
    assert code == 2 and "material 'glass' is not a film material" in err
