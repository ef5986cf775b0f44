"""The ``metascan`` command end to end, and its one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Cli


def test_layout_workflow(tmp_path: Path, cli: Cli) -> None:
    designs, gds = tmp_path / "designs.h5", tmp_path / "chip.gds"
    code, out, _ = cli(
        "layout",
        "generate",
        "--count",
        "120",
        "--seed",
        "5",
        "--output",
        str(designs),
    )
    assert code == 0 and "wrote 120 designs" in out
    code, out, _ = cli("layout", "chip", "--designs", str(designs), "--arrays", "2", "--rows", "5",
                       "--cols", "6", "--thickness-nm", "500", "--companion", "3", "--output", str(gds))  # fmt: skip
    assert code == 0 and "120 dataset pads" in out and "18 companion pads" in out
    code, out, _ = cli("layout", "drc", str(gds))
    assert code == 0 and "width<50 nm: 0, space<50 nm: 0" in out
    code, out, _ = cli("layout", "info", str(tmp_path / "chip.h5"), "--json")
    summary = json.loads(out)
    assert (
        summary["pads"] == {"dataset": 120, "companion": 18, "fiducial": 24}
        and summary["designs"] == 60
    )
    code, out, _ = cli("layout", "preview", "--designs", str(designs), "--manifest",
                       str(tmp_path / "chip.h5"), "--output", str(tmp_path))  # fmt: skip
    assert code == 0
    for png in ("designs.png", "array.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_drc_exits_nonzero_on_violations(tmp_path: Path, cli: Cli) -> None:
    import gdstk

    lib = gdstk.Library(unit=1e-6, precision=1e-9)
    lib.new_cell("TOP").add(gdstk.rectangle((0, 0), (0.03, 1), layer=1))
    lib.write_gds(str(tmp_path / "bad.gds"))
    code, out, _ = cli("layout", "drc", str(tmp_path / "bad.gds"))
    assert code == 1 and "width 30 nm at x=" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["layout", "generate", "--count", "0", "--output", "{d}/x.h5"],
            "--count 0 is outside the allowed range [1, 1000000000]",
        ),
        (
            ["layout", "generate", "--periods-nm", "100", "--output", "{d}/x.h5"],
            "period 100 nm cannot hold",
        ),
        (
            ["layout", "generate", "--periods-nm", "4x0", "--output", "{d}/x.h5"],
            "--periods-nm '4x0'",
        ),
        (["layout", "generate", "--output", "{d}/no/such/dir/x.h5"], "does not exist"),
        (
            [
                "layout",
                "chip",
                "--designs",
                "{d}/missing.h5",
                "--thickness-nm",
                "500",
                "--output",
                "{d}/c.gds",
            ],
            "design library",
        ),
        (["layout", "drc", "{d}/missing.gds"], "does not exist"),
        (["layout", "info", "{d}/missing.h5"], "does not exist"),
    ],
)
def test_bad_input_gets_one_line_and_no_file(
    tmp_path: Path, args: list[str], message: str, cli: Cli
) -> None:
    code, _out, err = cli(*(a.format(d=tmp_path) for a in args))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_chip_asking_for_too_many_designs_writes_nothing(tmp_path: Path, cli: Cli) -> None:
    designs = tmp_path / "designs.h5"
    assert cli("layout", "generate", "--count", "50", "--output", str(designs))[0] == 0
    code, _, err = cli("layout", "chip", "--designs", str(designs), "--arrays", "3",
                       "--thickness-nm", "500", "--output", str(tmp_path / "chip.gds"))  # fmt: skip
    assert code == 2 and "need 300 designs; the library has 50" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["designs.h5"]
