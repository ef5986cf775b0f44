"""One small, complete world of files for the bad-input tests and the sweep script.

Every command family's refusals are tried against real files made by the real commands: a design
library, a chip layout with its manifest, a second chip with the same chip_id and arrays but other
content, a scan of the companion array on the fast simulated bench, its spectra, the chip's truth,
synthetic pairs (and pairs of the other silicon film, a-Si:H, with targets from them, for the
refusals of mixed materials), a MOCLIP npz and a tiny trained model. A case copies the world into its own
folder, so no case can spoil another's inputs and each can check that its inputs are untouched.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "acquisition"))

from scan_bench import bench_config  # noqa: E402

from helpers import TINY, metascan  # noqa: E402


def build_world(folder: Path) -> Path:
    """Write the world into ``folder`` (about 20 s on two cores) and return it."""
    from dataclasses import replace

    from acquisition.runner import run_scan
    from dataset.pairs_io import load_pairs
    from models.train import TrainConfig, train

    d = folder
    metascan("layout", "generate", "--count", "80", "--seed", "1", "-o", str(d / "designs.h5"))
    chip = ["--arrays", "1", "--rows", "4", "--cols", "4", "--replicas", "2", "--companion", "2"]
    metascan(
        "layout",
        "chip",
        "--designs",
        str(d / "designs.h5"),
        *chip,
        "--thickness-nm",
        "500",
        "-o",
        str(d / "chip.gds"),
    )
    metascan(
        "layout",
        "chip",
        "--designs",
        str(d / "designs.h5"),
        *chip,
        "--thickness-nm",
        "500",
        "--seed",
        "9",
        "-o",
        str(d / "other.gds"),
    )
    config = bench_config(d)
    run_scan(config, d / "chip.h5", d / "scans", arrays=["A0C"])
    metascan("process", str(d / "scans"), "-m", str(d / "chip.h5"), "-o", str(d / "spectra"))
    metascan("sim", "truth", "-m", str(d / "chip.h5"), "-o", str(d / "truth.h5"))
    metascan(
        "sim",
        "pairs",
        "--count",
        "60",
        "--replicas",
        "2",
        "--noise",
        "0.01",
        "--seed",
        "3",
        "-o",
        str(d / "pairs.h5"),
    )
    metascan("sim", "pairs", "--count", "60", "--replicas", "2", "--noise", "0.01", "--seed", "3",
             "--material", "a-Si:H", "-o", str(d / "pairs_asih.h5"))  # fmt: skip
    metascan("pairs", "export-moclip", str(d / "pairs.h5"), "-o", str(d / "pairs.npz"))
    assert len(load_pairs(d / "pairs.h5")) == 120
    train(
        d / "pairs.h5",
        d / "model",
        replace(TrainConfig(), epochs=1, batch_size=16),
        progress=False,
        model_config=TINY,
    )
    model, pairs = str(d / "model"), str(d / "pairs.h5")
    metascan(
        "design",
        "targets",
        "--pairs",
        pairs,
        "--limit",
        "5",
        "--output",
        str(d / "design_targets.h5"),
    )
    metascan("design", "targets", "--pairs", str(d / "pairs_asih.h5"), "--limit", "5",
             "--output", str(d / "design_targets_asih.h5"))  # fmt: skip
    metascan(
        "design",
        "probes",
        "--model",
        model,
        "--count",
        "200",
        "--block-size",
        "64",
        "--no-progress",
        "--output",
        str(d / "design_probes.h5"),
    )
    metascan(
        "design",
        "retrieve",
        "--model",
        model,
        "--probes",
        str(d / "design_probes.h5"),
        "--targets",
        str(d / "design_targets.h5"),
        "--top-k",
        "2",
        "--output",
        str(d / "design_chosen.h5"),
    )
    (d / "notes.txt").write_text("not a project file\n")
    (d / "binary.csv").write_bytes(bytes(range(256)))
    (d / "short.csv").write_text("wavelength_nm,tx,ty\n500,0.5,0.5\n600,0.6,0.6\n")
    return d


def digest_tree(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder``: what 'untouched' means."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@dataclass(frozen=True)
class Case:
    """One kind of bad input: a command line (``{w}`` is the case's copy of the world), the text
    its one-line error must hold, and what to prepare first (an existing output, a bad file)."""

    name: str
    argv: Sequence[str]
    expect: str
    prepare: Callable[[Path], None] | None = None
    code: int = 2
    # Files the command may leave behind besides what was there (none: a refusal writes nothing).
    may_write: tuple[str, ...] = field(default=())

    def command(self, world: Path) -> list[str]:
        return [a.replace("{w}", str(world)) for a in self.argv]


def case_world(world: Path, into: Path) -> Path:
    """A private copy of the world for one case."""
    target = into / "w"
    shutil.copytree(world, target, symlinks=True)
    return target


def check_refusal(
    case: Case, code: int, out: str, err: str, before: dict[str, str], w: Path
) -> None:
    """The contract of a refusal: the exit code, exactly one line on stderr starting with
    ``error:`` holding the expected text, no traceback, and every file as it was."""
    lines = err.strip().splitlines()
    assert code == case.code, f"{case.name}: exit {code}, stderr {err!r}, stdout {out[-300:]!r}"
    assert "Traceback" not in err and "Traceback" not in out, f"{case.name}: {err}"
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and len(lines) == 1, f"{case.name}: stderr {err!r}"
    expect = case.expect.replace("{w}", str(w))
    assert expect in errors[0], f"{case.name}: {errors[0]!r} lacks {expect!r}"
    after = digest_tree(w)
    changed = sorted(k for k in before if after.get(k) != before[k])
    added = sorted(k for k in after.keys() - before.keys() if k not in case.may_write)
    assert not changed, f"{case.name}: inputs changed: {changed}"
    assert not added, f"{case.name}: files written by a refused command: {added}"
