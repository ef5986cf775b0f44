"""``metascan sim …``: every bad input is one line, exit 2, and leaves every file as it was."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from edits import before_materials, copy, write
from world import Case


def pairs(*extra: str) -> list[str]:
    return ["sim", "pairs", "--count", "4", "-o", "{w}/new.h5", *extra]


def truth(*extra: str, output: str = "{w}/new_truth.h5") -> list[str]:
    return ["sim", "truth", "--manifest", "{w}/chip.h5", "-o", output, *extra]


def preview(*extra: str, output: str = "{w}/previews") -> list[str]:
    return ["sim", "preview", "--manifest", "{w}/chip.h5", "-o", output, *extra]


CASES = [
    Case(
        "serve base port 0",
        ["sim", "serve", "-c", "{w}/bench.toml", "--base-port", "0"],
        "--base-port 0 is outside the allowed range [1024, 65533]",
    ),
    Case(
        "serve base port 65535",
        ["sim", "serve", "-c", "{w}/bench.toml", "--base-port", "65535"],
        "--base-port 65535 is outside",
    ),
    Case(
        "serve duration -1",
        ["sim", "serve", "-c", "{w}/bench.toml", "--duration-s", "-1"],
        "--duration-s -1.0 is outside",
    ),
    Case(
        "serve duration nan",
        ["sim", "serve", "-c", "{w}/bench.toml", "--duration-s", "nan"],
        "--duration-s nan must be a finite number",
    ),
    Case("serve config missing", ["sim", "serve", "-c", "{w}/none.toml"], "does not exist"),
    Case("pairs count 0", pairs("--count", "0"), "--count 0 is outside"),
    Case("pairs thickness 1e9", pairs("--thickness-nm", "1e9"), "--thickness-nm 1000000000.0"),
    Case("pairs thickness nan", pairs("--thickness-nm", "178,nan"), "--thickness-nm nan must"),
    Case("pairs thickness text", pairs("--thickness-nm", "thick"), "comma-separated numbers"),
    Case("pairs noise -1", pairs("--noise", "-1"), "--noise -1.0 is outside"),
    Case("pairs noise nan", pairs("--noise", "nan"), "--noise nan must be"),
    Case("pairs replicas 0", pairs("--replicas", "0"), "--replicas 0 is outside"),
    Case("pairs period nan", pairs("--periods-nm", "nan"), "--periods-nm nan must be"),
    Case("pairs orders text", pairs("--model", "rcwa", "--orders", "a,b"), "--orders 'a,b'"),
    Case("pairs orders three", pairs("--model", "rcwa", "--orders", "3,3,3"), "two integers"),
    Case("pairs model", pairs("--model", "fdtd"), "--model 'fdtd' is not known"),
    Case(
        "pairs workers -1", pairs("--model", "rcwa", "--workers", "-1"), "--workers -1 is outside"
    ),
    Case("pairs workers 1.5", pairs("--model", "rcwa", "--workers", "1.5"), "--workers"),
    Case("pairs workers analytic", pairs("--workers", "2"), "--model rcwa only"),
    Case("pairs scheduler analytic", pairs("--scheduler", "tcp://h:1"), "--model rcwa only"),
    Case(
        "pairs scheduler no port",
        pairs("--model", "rcwa", "--scheduler", "tcp://127.0.0.1"),
        "--scheduler 'tcp://127.0.0.1' is not a dask scheduler address",
    ),
    Case(
        "pairs scheduler scheme",
        pairs("--model", "rcwa", "--scheduler", "http://h:8786"),
        "unknown address scheme 'http'",
    ),
    Case(
        "pairs workers and scheduler",
        pairs("--model", "rcwa", "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"),
        "give one",
    ),
    Case("pairs material", pairs("--material", "gold"), "--material 'gold' is not a film"),
    Case("pairs substrate as film", pairs("--material", "fused-silica"), "not a film material"),
    Case("pairs seed -1", pairs("--seed", "-1"), "--seed -1 is outside"),
    Case("pairs existing output", [*pairs()[:-1], "{w}/pairs.h5"], "exists; pass --force"),
    Case(
        "pairs --force onto the truth",
        ["sim", "pairs", "--count", "4", "-o", "{w}/truth.h5", "--force"],
        "holds a metascan.truth, not a previous metascan.pairs",
    ),
    Case("truth output = manifest", truth(output="{w}/chip.h5"), "is the input --manifest"),
    Case("truth existing output", truth(output="{w}/truth.h5"), "exists; pass --force"),
    Case("truth seed -1", truth("--seed", "-1"), "--seed -1 is outside"),
    Case("truth bias nan", truth("--bias-nm", "nan"), "--bias-nm nan must be"),
    Case("truth defects 2", truth("--defect-fraction", "2"), "--defect-fraction 2.0 is outside"),
    Case("truth bandwidth", truth("--bandwidth", "ultra"), "--bandwidth 'ultra' is not"),
    Case("truth workers -1", truth("--model", "rcwa", "--workers", "-1"), "--workers -1 is"),
    Case("truth workers analytic", truth("--workers", "2"), "--workers applies to --model rcwa"),
    Case("truth orders analytic", truth("--orders", "1,1"), "--orders applies to --model rcwa"),
    Case("truth cache analytic", truth("--cache", "{w}/c.h5"), "--cache applies to --model rcwa"),
    Case("truth orders three", truth("--model", "rcwa", "--orders", "3,3,3"), "two integers"),
    Case("truth orders -1", truth("--model", "rcwa", "--orders", "-1,3"), "--orders -1 is outside"),
    Case(
        "truth scheduler text",
        truth("--model", "rcwa", "--scheduler", "nonsense"),
        "--scheduler 'nonsense' is not a dask scheduler address",
    ),
    Case(
        "truth output = cache",
        truth("--model", "rcwa", "--cache", "{w}/new_truth.h5"),
        "is the input --cache",
    ),
    Case(
        "truth config and workers",
        truth("--config", "{w}/bench.toml", "--workers", "2"),
        "--workers cannot be combined with --config",
    ),
    Case(
        "truth material other than the manifest's",
        truth("--material", "a-Si:H"),
        "--material 'a-Si:H' differs from the material of chip manifest {w}/chip.h5 ('a-Si')",
    ),
    Case(
        "truth material other than the manifest's, with a bench config",
        truth("--config", "{w}/bench.toml", "--material", "a-Si:H"),
        "differs from the material of chip manifest",
    ),
    Case(
        "truth of a manifest written before materials",
        ["sim", "truth", "-m", "{w}/old_chip.h5", "-o", "{w}/t.h5"],
        "written before materials were recorded); rewrite it with metascan layout chip",
        prepare=before_materials("chip.h5", "old_chip.h5", 1),
    ),
    Case(
        "truth manifest of text",
        ["sim", "truth", "-m", "{w}/notes.txt", "-o", "{w}/t.h5"],
        "not a readable HDF5 chip manifest",
    ),
    Case("truth config not a bench", truth("--config", "{w}/notes.txt"), "not valid TOML"),
    Case(
        "truth config and seed",
        truth("--config", "{w}/bench.toml", "--seed", "3"),
        "cannot be combined with --config",
    ),
    Case("preview wavelength nan", preview("--wavelength", "nan"), "--wavelength nan must be"),
    Case("preview wavelength 800", preview("--wavelength", "800"), "[420, 730] nm"),
    Case("preview pads 0", preview("--pads", "0"), "--pads 0 is outside"),
    Case("preview output is a file", preview(output="{w}/notes.txt"), "is a file"),
    Case("preview array", preview("--array", "ZZZ"), "ZZZ"),
    Case(
        "preview over an existing PNG",
        preview(),
        "exists; pass --force",
        prepare=write("previews/rgb_A0R0.png", b"old"),
    ),
    Case(
        "preview output = manifest folder file",
        preview(output="{w}/chip_copy.h5"),
        "is a file",
        prepare=copy("chip.h5", "chip_copy.h5"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sim_refuses_bad_input(case: Case, refused: Callable[[Case], None]) -> None:
    refused(case)
