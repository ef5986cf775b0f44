"""``metascan process``, ``curate`` and ``pairs …``: one line, exit 2, files untouched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from edits import copy, legacy_absolute_pairs, truncate, write
from world import Case, case_world


def process(*extra: str, manifest: str = "{w}/chip.h5", output: str = "{w}/out") -> list[str]:
    return ["process", "{w}/scans", "-m", manifest, "-o", output, *extra]


def curate(*extra: str, output: str = "{w}/curated.h5") -> list[str]:
    return ["curate", "{w}/spectra", "-m", "{w}/chip.h5", "-o", output, *extra]


TILE = "scans/A0C_r0c0.h5"

CASES = [
    Case(
        "process with another chip's manifest (same chip_id and arrays)",
        process(manifest="{w}/other.h5"),
        "was scanned with another chip manifest",
    ),
    Case("process manifest not HDF5", process(manifest="{w}/notes.txt"), "not a readable HDF5"),
    Case("process manifest missing", process(manifest="{w}/none.h5"), "does not exist"),
    Case(
        "process truncated tile",
        process(),
        f"{TILE} cannot be read (truncated or damaged HDF5)".replace("scans/", ""),
        prepare=truncate(TILE),
    ),
    Case("process margin nan", process("--margin-um", "nan"), "--margin-um nan must be"),
    Case("process margin -1", process("--margin-um", "-1"), "--margin-um -1.0 is outside"),
    Case("process workers 0", process("--workers", "0"), "--workers 0 is outside"),
    Case("process over spectra", process(output="{w}/spectra"), "exists; pass --force"),
    Case("process output is a file", process(output="{w}/notes.txt"), "is a file"),
    Case(
        "process no scan folder",
        ["process", "{w}/none", "-m", "{w}/chip.h5", "-o", "{w}/o"],
        "scan folder",
    ),
    Case(
        "process no tiles",
        ["process", "{w}/spectra", "-m", "{w}/chip.h5", "-o", "{w}/o"],
        "no tile hypercubes",
    ),
    Case("curate threshold nan", curate("--threshold", "nan"), "--threshold nan must be"),
    Case("curate threshold 0", curate("--threshold", "0"), "--threshold 0.0 is outside"),
    Case("curate seed -1", curate("--seed", "-1"), "--seed -1 is outside"),
    Case(
        "curate output = a spectra file",
        curate(output="{w}/spectra/A0C.h5"),
        "is the input spectra file",
    ),
    Case(
        "curate --force output = the manifest",
        curate("--force", output="{w}/chip.h5"),
        "chip.h5 is the input manifest",
    ),
    Case("curate existing output", curate(output="{w}/pairs.h5"), "exists; pass --force"),
    Case(
        "curate with another chip's manifest",
        ["curate", "{w}/spectra", "-m", "{w}/other.h5", "-o", "{w}/c.h5"],
        "was extracted with another chip manifest",
    ),
    Case(
        "curate folder without spectra",
        ["curate", "{w}/scans", "-o", "{w}/c.h5"],
        "holds no array-spectra files",
    ),
    Case("curate missing input", ["curate", "{w}/none.h5", "-o", "{w}/c.h5"], "does not exist"),
    Case(
        "pairs absolute (legacy) into a reader",
        ["pairs", "info", "{w}/absolute.h5"],
        "holds spectra 'absolute_into_substrate'",
        prepare=legacy_absolute_pairs("absolute.h5"),
    ),
    Case(
        "export output = source",
        ["pairs", "export-moclip", "{w}/pairs.npz", "-o", "{w}/pairs.npz", "--force"],
        "is the input SOURCE",
    ),
    Case(
        "import output = source (hard link)",
        ["pairs", "import-moclip", "{w}/link.npz", "-o", "{w}/pairs.npz", "--force"],
        "is the input SOURCE",
        prepare=lambda w: (w / "link.npz").hardlink_to(w / "pairs.npz"),
    ),
    Case(
        "import split seed -1",
        ["pairs", "import-moclip", "{w}/pairs.npz", "-o", "{w}/p.h5", "--split-seed", "-1"],
        "--split-seed -1 is outside",
    ),
    Case(
        "import of a text file",
        ["pairs", "import-moclip", "{w}/notes.npz", "-o", "{w}/p.h5"],
        "notes.npz",
        prepare=copy("notes.txt", "notes.npz"),
    ),
    Case(
        "import material",
        ["pairs", "import-moclip", "{w}/pairs.npz", "-o", "{w}/p.h5", "--material", "Si"],
        "material 'Si' is not a film material; known: a-Si, a-Si:H or n=<complex index>",
    ),
    Case("pairs info of a text file", ["pairs", "info", "{w}/notes.txt"], "notes.txt"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_dataset_refuses_bad_input(case: Case, refused: Callable[[Case], None]) -> None:
    refused(case)


def test_skip_unreadable_processes_the_rest_and_lists_the_skipped_file(
    world: Path,
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    from dataset.array_spectra_file import read_array_spectra

    w = case_world(world, tmp_path)
    truncate(TILE, into="scans/A0R0_r0c0.h5")(w)  # a second tile, cut short by a crash
    code, _, err = cli(*[a.replace("{w}", str(w)) for a in process()])
    assert code == 2 and "A0R0_r0c0.h5 cannot be read" in err
    code, out, err = cli(*[a.replace("{w}", str(w)) for a in process("--skip-unreadable")])
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: SKIPPED {w / 'scans' / 'A0R0_r0c0.h5'}: cannot be opened as HDF5 "
        "(truncated or damaged)"
    ]
    assert "1 unreadable file(s) SKIPPED" in out
    spectra = read_array_spectra(w / "out" / "A0C.h5")
    assert spectra.provenance["skipped_unreadable"] == {
        str(w / "scans" / "A0R0_r0c0.h5"): "cannot be opened as HDF5 (truncated or damaged)"
    }


def test_an_output_that_is_refused_stays_byte_identical_under_force_of_another_kind(
    world: Path,
    tmp_path: Path,
    cli,  # type: ignore[no-untyped-def]
) -> None:
    w = case_world(world, tmp_path)
    write("junk.h5", b"not HDF5")(w)
    # --force may replace a file that is no project file at all ...
    code, _, err = cli(
        "pairs", "import-moclip", str(w / "pairs.npz"), "-o", str(w / "junk.h5"), "--force"
    )
    assert code == 0, err
    # ... but never a project file of another kind.
    before = (w / "truth.h5").read_bytes()
    code, _, err = cli(
        "pairs", "import-moclip", str(w / "pairs.npz"), "-o", str(w / "truth.h5"), "--force"
    )
    assert code == 2 and "holds a metascan.truth" in err
    assert (w / "truth.h5").read_bytes() == before
