"""``metascan design ...``: one line, exit 2, files untouched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from edits import before_materials, write
from world import Case


def targets(*extra: str) -> list[str]:
    return ["design", "targets", "--output", "{w}/design_new_targets.h5", *extra]


def probes(*extra: str, model: str = "{w}/model") -> list[str]:
    return [
        "design",
        "probes",
        "--model",
        model,
        "--count",
        "100",
        "--block-size",
        "64",
        "--no-progress",
        "--output",
        "{w}/design_new_probes.h5",
        *extra,
    ]


def retrieve(
    *extra: str,
    model: str = "{w}/model",
    probes_file: str = "{w}/design_probes.h5",
    targets_file: str = "{w}/design_targets.h5",
) -> list[str]:
    return [
        "design",
        "retrieve",
        "--model",
        model,
        "--probes",
        probes_file,
        "--targets",
        targets_file,
        "--output",
        "{w}/design_new_chosen.h5",
        *extra,
    ]


def predict(*extra: str, designs: str = "{w}/pairs.h5", db: str = "{w}/pairs.h5") -> list[str]:
    return [
        "design",
        "predict",
        "--model",
        "{w}/model",
        "--designs",
        designs,
        "--spectra-db",
        db,
        "--output",
        "{w}/design_new_pred.h5",
        *extra,
    ]


def evaluate(
    *extra: str,
    designs: str = "{w}/design_chosen.h5",
    targets_file: str = "{w}/design_targets.h5",
    world: str = "{w}/pairs.h5",
) -> list[str]:
    return [
        "design",
        "evaluate",
        "--designs",
        designs,
        "--targets",
        targets_file,
        "--world",
        world,
        "--output",
        "{w}/design_new_ev",
        "--no-progress",
        *extra,
    ]


def fewer_targets(w: Path) -> None:
    """A real targets file, but not the one the designs were chosen for."""
    from dataset.targets_file import read_targets, write_targets

    write_targets(
        w / "design_new_targets.h5", read_targets(w / "design_targets.h5").take(slice(0, 3))
    )


CASES = [
    Case("targets none", targets(), "no targets given"),
    Case("targets binary csv", targets("--csv", "{w}/binary.csv"), "not a UTF-8 text CSV"),
    Case(
        "targets short csv", targets("--csv", "{w}/short.csv"), "does not include the band 450 nm"
    ),
    Case("targets bad pol", targets("--filter", "bandpass z 600 40 0.8"), "polarization 'z'"),
    Case("targets depth 2", targets("--filter", "notch x 600 40 2"), "depth"),
    Case("targets nan centre", targets("--filter", "notch x nan 40 0.5"), "nan"),
    Case("targets split", targets("--pairs", "{w}/pairs.h5", "--split", "dev"), "'dev'"),
    Case(
        "targets window empty",
        targets("--filter", "notch x 600 40 0.5", "--window", "800,900"),
        "800",
    ),
    Case(
        "targets over input",
        ["design", "targets", "--pairs", "{w}/pairs.h5", "--output", "{w}/pairs.h5", "--force"],
        "destroy the input",
    ),
    Case(
        "targets over a targets file",
        targets("--filter", "notch x 600 40 0.5"),
        "exists; pass --force",
        prepare=write("design_new_targets.h5", "x"),
    ),
    Case("probes count 0", probes("--count", "0"), "--count 0 is outside"),
    Case("probes period off grid", probes("--periods", "333"), "multiple of the 5.0 nm grid"),
    Case("probes thickness nan", probes("--thicknesses", "nan"), "--thicknesses"),
    Case("probes gap below fab", probes("--min-gap-nm", "30"), "min_gap_nm"),
    Case("probes kind", probes("--kinds", "triangle"), "triangle"),
    Case("probes shard", probes("--shard", "2/2"), "--shard '2/2'"),
    Case("probes precision", probes("--precision", "fp8"), "fp8"),
    Case("probes exclude notes", probes("--exclude", "{w}/notes.txt"), "is not a design library"),
    Case("probes model missing", probes(model="{w}/none"), "does not exist"),
    Case(
        "probes over pairs", [*probes()[:-1], "{w}/pairs.h5", "--force"], "holds a metascan.pairs"
    ),
    Case(
        "probes resume over a finished build",
        [*probes()[:-1], "{w}/design_probes.h5", "--resume"],
        "exists; pass --force",
    ),
    Case("probes scheduler alone", probes("--scheduler", "tcp://127.0.0.1:9"), "--shards N"),
    Case("retrieve top-k 0", retrieve("--top-k", "0"), "--top-k 0 is outside"),
    Case("retrieve top-k > db", retrieve("--top-k", "500"), "more than the database size"),
    Case("retrieve size > db", retrieve("--database-sizes", "10,5000"), "5000"),
    Case("retrieve index", retrieve("--index", "lsh"), "'lsh'"),
    Case("retrieve shortlist 0", retrieve("--shortlist", "0"), "--shortlist 0 is outside"),
    Case(
        "retrieve spectra-db targets",
        retrieve("--spectra-db", "{w}/design_targets.h5"),
        "not a pairs file",
    ),
    Case(
        "retrieve spectra-db split",
        retrieve("--spectra-db", "{w}/pairs.h5", "--db-split", "x"),
        "--db-split 'x'",
    ),
    Case("retrieve probes are pairs", retrieve(probes_file="{w}/pairs.h5"), "not a probe database"),
    Case("retrieve targets are pairs", retrieve(targets_file="{w}/pairs.h5"), "not a targets file"),
    Case("retrieve shard twice", [*retrieve(), "--probes", "{w}/design_probes.h5"], "given twice"),
    Case(
        "retrieve over targets",
        [*retrieve()[:-1], "{w}/design_targets.h5", "--force"],
        "destroy the input",
    ),
    Case("predict db split", predict("--db-split", "all"), "'all'"),
    Case("predict library without thickness", predict(designs="{w}/designs.h5"), "--thickness-nm"),
    Case("predict targets as db", predict(db="{w}/design_targets.h5"), "not a pairs file"),
    Case(
        "evaluate probes as designs",
        evaluate(designs="{w}/design_probes.h5"),
        "not a design library",
    ),
    Case("evaluate plain library", evaluate(designs="{w}/designs.h5"), "without inverse-design"),
    Case(
        "evaluate other targets",
        evaluate(targets_file="{w}/design_new_targets.h5"),
        "another targets file",
        prepare=fewer_targets,
    ),
    Case("evaluate measured world", evaluate(world="{w}/chip_pairs_missing.h5"), "does not exist"),
    Case("evaluate world is targets", evaluate(world="{w}/design_targets.h5"), "not a pairs file"),
    Case(
        "evaluate in a world of another film",
        evaluate(world="{w}/pairs_asih.h5"),
        "world synthetic pairs {w}/pairs_asih.h5 (material 'a-Si:H') and designs",
    ),
    Case(
        "evaluate designs chosen before materials",
        evaluate(designs="{w}/old_chosen.h5"),
        "written before materials were recorded); rewrite it with metascan design retrieve",
        prepare=before_materials("design_chosen.h5", "old_chosen.h5", 1, group="choices"),
    ),
    Case(
        "retrieve targets of another film",
        retrieve(targets_file="{w}/design_targets_asih.h5"),
        "targets {w}/design_targets_asih.h5 (material 'a-Si:H') and model {w}/model",
    ),
    Case(
        "retrieve targets written before materials",
        retrieve(targets_file="{w}/old_targets.h5"),
        "rewrite it with metascan design targets",
        prepare=before_materials("design_targets.h5", "old_targets.h5", 1),
    ),
    Case(
        "retrieve re-ranked by spectra of another film",
        retrieve("--spectra-db", "{w}/pairs_asih.h5"),
        "--spectra-db {w}/pairs_asih.h5 (material 'a-Si:H') and model",
    ),
    Case(
        "predict from spectra of another film",
        predict(db="{w}/pairs_asih.h5"),
        "--spectra-db {w}/pairs_asih.h5 (material 'a-Si:H') and model",
    ),
    Case(
        "predict designs of another film",
        predict(designs="{w}/pairs_asih.h5"),
        "--designs {w}/pairs_asih.h5 (material 'a-Si:H') and model",
    ),
    Case(
        "targets of pairs of another film than the model",
        targets("--pairs", "{w}/pairs_asih.h5", "--model", "{w}/model"),
        "--pairs {w}/pairs_asih.h5 (material 'a-Si:H') and --model {w}/model (material 'a-Si')",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_design_refuses_bad_input(case: Case, refused: Callable[[Case], None]) -> None:
    refused(case)
