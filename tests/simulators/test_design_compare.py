"""`design compare`: methods meet on one axis of calls per target, the oracle of the largest
database is the reference, and evaluations of other targets or another world are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from simulators.design_compare_cli import compare, read_evaluations

if TYPE_CHECKING:
    from conftest import Cli

WORLD = {"source": "synthetic pairs p.h5", "spectral_model": "analytic"}


def _evaluation(folder: Path, sizes: list[int], scale: float, **extra: Any) -> Path:
    rows = []
    for n in sizes:
        q = {f"q{k}": scale * k / n for k in (25, 50, 75, 95)}
        row: dict[str, Any] = {"database_size": n, "targets": 10, "model": {**q, "mean": 0.0}}
        if "oracle" in extra:
            row["oracle"] = {f"q{k}": extra["oracle"] * k for k in (25, 50, 75, 95)}
        rows.append(row)
    data = {"world": extra.get("world", WORLD), "sizes": rows,
            "targets_sha256": extra.get("sha", "abc")}  # fmt: skip
    folder.mkdir()
    (folder / "evaluation.json").write_text(json.dumps(data))
    return folder


def test_compare_tabulates_methods_and_takes_the_largest_oracle(tmp_path: Path, cli: Cli) -> None:
    pso = _evaluation(tmp_path / "pso", [100, 1000], 1.0)
    retr = _evaluation(tmp_path / "retr", [100, 10000], 2.0, oracle=1e-6)
    table = compare(read_evaluations([f"pso={pso}", f"retrieval={retr}"]), 100)
    assert list(table["methods"]) == ["pso", "retrieval"]
    assert [r["iterations"] for r in table["methods"]["pso"]] == [1.0, 10.0]
    assert table["methods"]["retrieval"][1]["q95"] == pytest.approx(2.0 * 95 / 10000)
    assert table["oracle"]["probes"] == 10000 and table["oracle"]["from"] == "retrieval"
    out = tmp_path / "cmp"
    code, text, err = cli("design", "compare", "--evaluation", f"pso={pso}",
                          "--evaluation", f"retrieval={retr}", "--output", str(out))  # fmt: skip
    assert code == 0, err
    assert (out / "mse_vs_calls.png").stat().st_size > 10_000
    assert json.loads((out / "compare.json").read_text())["methods"]["pso"][0]["q50"] == 0.5
    assert "oracle (10000 probes)" in text
    code, _, err = cli("design", "compare", "--evaluation", f"pso={pso}", "--output", str(out))
    assert code != 0 and "--force" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "needle"),
    [({"sha": "other"}, "another targets"), ({"world": {"source": "x"}}, "another world")],
)
def test_compare_refuses_a_mix(
    tmp_path: Path, cli: Cli, extra: dict[str, Any], needle: str
) -> None:
    a = _evaluation(tmp_path / "a", [100], 1.0)
    b = _evaluation(tmp_path / "b", [100], 1.0, **extra)
    code, _, err = cli("design", "compare", "--evaluation", f"a={a}", "--evaluation", f"b={b}",
                       "--output", str(tmp_path / "out"))  # fmt: skip
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_compare_refuses_a_missing_evaluation_and_an_output_naming_an_input(
    tmp_path: Path, cli: Cli
) -> None:
    a = _evaluation(tmp_path / "a", [100], 1.0)
    code, _, err = cli("design", "compare", "--evaluation", f"a={tmp_path / 'none'}",
                       "--output", str(tmp_path / "out"))  # fmt: skip
    assert code != 0 and "does not exist" in err and len(err.strip().splitlines()) == 1
    before = (a / "evaluation.json").read_bytes()
    code, _, err = cli("design", "compare", "--evaluation", f"a={a}", "--output", str(a))
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert (a / "evaluation.json").read_bytes() == before
