"""``metascan layout …``: every bad input is one line, exit 2, and leaves every file as it was."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from edits import copy
from world import Case


def gen(*extra: str) -> list[str]:
    return ["layout", "generate", "--count", "5", "-o", "{w}/new.h5", *extra]


def chip(*extra: str, output: str = "{w}/new.gds") -> list[str]:
    return [
        "layout",
        "chip",
        "--designs",
        "{w}/designs.h5",
        "--thickness-nm",
        "500",
        "--rows",
        "2",
        "--cols",
        "2",
        "--companion",
        "0",
        "-o",
        output,
        *extra,
    ]


CASES = [
    Case("generate count 0", gen("--count", "0"), "--count 0 is outside the allowed range"),
    Case("generate count nan", gen("--count", "nan"), "--count"),
    Case("generate seed -1", gen("--seed", "-1"), "--seed -1 is outside the allowed range"),
    Case("generate grid nan", gen("--grid-nm", "nan"), "--grid-nm nan must be a finite number"),
    Case("generate grid 0", gen("--grid-nm", "0"), "--grid-nm 0.0 is outside the allowed range"),
    Case("generate period nan", gen("--periods-nm", "400,nan"), "--periods-nm nan must be"),
    Case("generate period text", gen("--periods-nm", "4x0"), "comma-separated integers"),
    Case("generate period 50", gen("--periods-nm", "50"), "--periods-nm 50 is outside"),
    Case("generate primitives 99", gen("--max-primitives", "99"), "--max-primitives 99 is"),
    Case(
        "generate over an existing library",
        ["layout", "generate", "--count", "5", "-o", "{w}/designs.h5"],
        "exists; pass --force",
    ),
    Case(
        "generate --force over a manifest",
        ["layout", "generate", "--count", "5", "--force", "-o", "{w}/chip.h5"],
        "holds a metascan.chip_manifest, not a previous metascan.design_library",
    ),
    Case("generate into a missing folder", [*gen()[:-1], "{w}/no/x.h5"], "does not exist"),
    Case("chip pad gap nan", chip("--pad-gap-um", "nan"), "--pad-gap-um nan must be"),
    Case("chip thickness inf", chip("--thickness-nm", "inf"), "--thickness-nm inf must be"),
    Case("chip thickness 1e9", chip("--thickness-nm", "1e9"), "--thickness-nm 1000000000.0 is"),
    Case("chip pad size -6", chip("--pad-size-um", "-6"), "--pad-size-um -6.0 is outside"),
    Case("chip rows 0", chip("--rows", "0"), "--rows 0 is outside the allowed range"),
    Case("chip material", chip("--material", "Si"), "--material 'Si' is not a film material"),
    Case("chip material with gain", chip("--material", "n=3-0.1j"), "loss, not gain"),
    Case("chip replicas 0", chip("--replicas", "0"), "--replicas 0 is outside"),
    Case("chip companion -1", chip("--companion", "-1"), "--companion -1 is outside"),
    Case("chip tolerance nan", chip("--tolerance-nm", "nan"), "--tolerance-nm nan must be"),
    Case("chip seed -1", chip("--seed", "-1"), "--seed -1 is outside"),
    Case("chip format", chip("--format", "dxf"), "--format 'dxf' must be gds or oas"),
    Case("chip id with a space", chip("--chip-id", "my chip"), "--chip-id 'my chip' must be"),
    Case("chip id empty", chip("--chip-id", ""), "--chip-id '' must be"),
    Case(
        "chip output = designs",
        chip(output="{w}/designs.h5"),
        "is the input --designs",
    ),
    Case(
        "chip manifest derived onto designs",
        chip(output="{w}/designs.gds"),
        "manifest designs.h5 (beside --output)",
    ),
    Case(
        "chip derived manifest exists (a design library)",
        chip(output="{w}/lib.gds"),
        "manifest lib.h5 (beside --output) {w}/lib.h5 exists; pass --force",
        prepare=copy("designs.h5", "lib.h5"),
    ),
    Case(
        "chip --force onto a design library",
        chip("--force", output="{w}/lib.gds"),
        "holds a metascan.design_library, not a previous metascan.chip_manifest",
        prepare=copy("designs.h5", "lib.h5"),
    ),
    Case("chip existing layout", chip(output="{w}/chip.gds"), "exists; pass --force"),
    Case(
        "chip designs not HDF5",
        [*chip()[:2], "--designs", "{w}/notes.txt", *chip()[4:]],
        "is not a readable HDF5 design library",
    ),
    Case(
        "chip designs missing",
        [*chip()[:2], "--designs", "{w}/none.h5", *chip()[4:]],
        "design library {w}/none.h5 does not exist",
    ),
    Case("chip too many designs", chip("--arrays", "99"), "need"),
    Case("drc show -5", ["layout", "drc", "{w}/chip.gds", "--show", "-5"], "--show -5 is"),
    Case("drc width nan", ["layout", "drc", "{w}/chip.gds", "--min-width-nm", "nan"], "nan"),
    Case("drc missing file", ["layout", "drc", "{w}/none.gds"], "does not exist"),
    Case("drc not a layout", ["layout", "drc", "{w}/notes.txt"], "notes.txt"),
    Case(
        "preview bad array writes nothing",
        [
            "layout",
            "preview",
            "--designs",
            "{w}/designs.h5",
            "--manifest",
            "{w}/chip.h5",
            "--array",
            "ZZZ",
            "-o",
            "{w}",
        ],
        "--array 'ZZZ' is not on chip",
    ),
    Case(
        "preview count 0",
        ["layout", "preview", "--designs", "{w}/designs.h5", "--count", "0", "-o", "{w}"],
        "--count 0 is outside",
    ),
    Case(
        "preview over existing PNGs",
        ["layout", "preview", "--designs", "{w}/designs.h5", "-o", "{w}"],
        "designs.png {w}/designs.png exists; pass --force",
        prepare=lambda w: (w / "designs.png").write_bytes(b"an old plot"),
    ),
    Case("info of a text file", ["layout", "info", "{w}/notes.txt"], "notes.txt"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_layout_refuses_bad_input(case: Case, refused: Callable[[Case], None]) -> None:
    refused(case)
