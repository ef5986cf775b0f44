"""``metascan curate``: array-spectra files -> replica-checked pairs file and a report.

Every input problem (threshold, output, files, manifests) is refused before the first spectrum
is compared, so a long curation never dies at the end on a typo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from common.outputs import check_outputs
from common.values import SEED
from common.versioned_hdf5 import has_schema
from dataset.array_spectra_file import SCHEMA as SPECTRA_SCHEMA
from dataset.array_spectra_file import ArraySpectra, read_array_spectra
from dataset.curation import DEFAULT_THRESHOLD, THRESHOLD, curate
from dataset.pairs_file import SCHEMA as PAIRS_SCHEMA
from dataset.pairs_file import SPLIT_NAMES, write_pairs
from layout import material as film
from layout.manifest import ChipManifest, read_manifest

MANIFEST_ATTRIBUTE = "manifest"  # provenance attribute of an array-spectra file naming its chip


def curate_cmd(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            metavar="SPECTRA",
            help="Array-spectra files, or directories holding them (every HDF5 file there "
            "with the array-spectra schema).",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Pairs file to write (.h5).")],
    threshold: Annotated[
        float,
        THRESHOLD.option(help="Reject a design whose largest pairwise replica MSE exceeds this."),
    ] = DEFAULT_THRESHOLD,
    manifest: Annotated[
        list[Path] | None,
        typer.Option(
            "--manifest",
            "-m",
            help="Chip manifest (chip.h5), repeatable for several chips; matched by chip_id. "
            "Default: the manifest the spectra files name.",
        ),
    ] = None,
    seed: Annotated[int, SEED.option(help="Seed of the design-grouped 80/10/10 split.")] = 0,
    keep_single: Annotated[
        bool,
        typer.Option(
            "--keep-single", help="Keep designs with one usable replica (default: rejected)."
        ),
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(help="Report directory (default: <output stem>_report beside the output)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
) -> None:
    """Cross-check replicas of every design, keep the consistent ones as training pairs."""
    from dataset.curation_report import (  # matplotlib: lazy
        REPORT_FILES,
        default_report_dir,
        write_report,
    )

    report_dir = report if report is not None else default_report_dir(output)
    files = spectra_files(inputs)
    spectra = [read_array_spectra(f) for f in files]
    manifests, manifest_paths = resolve_manifests(spectra, files, manifest or [])
    # One film per pairs file: chips of two materials are refused before any comparison.
    film.common((f"manifest {manifest_paths[c]}", m.material) for c, m in manifests.items())
    inputs_by_name: dict[str, Path | None] = {f"spectra file {f}": f for f in files}
    inputs_by_name.update({f"manifest {p}": p for p in manifest_paths.values()})
    reports = {}
    if report_dir.is_dir():
        reports = {f"report file {report_dir / n}": report_dir / n for n in REPORT_FILES}
    check_outputs({"--report": report_dir}, inputs_by_name, force, directories=True)
    check_outputs(
        {"--output": output, **reports},
        inputs_by_name,
        force,
        schemas={"--output": PAIRS_SCHEMA},
    )

    result = curate(spectra, manifests, threshold, keep_single=keep_single)
    report_path = write_report(
        result,
        report_dir,
        pairs_path=output,
        inputs=[str(f) for f in files],
        manifests=[str(p) for p in manifest_paths.values()],
    )
    counts = result.design_counts()
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    if counts["kept"] == 0:
        raise ValueError(
            f"no design passed curation ({summary}); nothing written, see {report_path}"
        )
    pairs = result.to_pairs(
        seed,
        provenance={
            "spectra_files": [str(f) for f in files],
            "manifests": {chip: str(p) for chip, p in manifest_paths.items()},
            "manifest_sha256": {chip: m.content_sha256() for chip, m in manifests.items()},
        },
    )
    write_pairs(output, pairs)
    splits = ", ".join(
        f"{name} {int((pairs.split == code).sum())}" for code, name in enumerate(SPLIT_NAMES)
    )
    typer.echo(
        f"wrote {len(pairs)} pairs to {output} ({splits}) from {len(files)} spectra files; "
        f"designs: {summary}; report {report_path}"
    )


def spectra_files(inputs: list[Path]) -> list[Path]:
    """Files named directly (each must exist; the reader refuses non-spectra files with one
    line) and, from directories, every file carrying the array-spectra schema; each file once."""
    if not inputs:
        raise ValueError("no array-spectra files given; pass files or a directory of them")
    found: dict[Path, Path] = {}
    for item in inputs:
        if item.is_dir():
            in_dir = [p for p in sorted(item.iterdir()) if has_schema(p, SPECTRA_SCHEMA)]
            if not in_dir:
                raise ValueError(
                    f"{item} holds no array-spectra files (HDF5 with schema {SPECTRA_SCHEMA!r})"
                )
            for p in in_dir:
                found.setdefault(p.resolve(), p)
        elif item.exists():
            found.setdefault(item.resolve(), item)
        else:
            raise FileNotFoundError(f"array-spectra input {item} does not exist")
    return list(found.values())


def resolve_manifests(
    spectra: list[ArraySpectra], files: list[Path], given: list[Path]
) -> tuple[dict[str, ChipManifest], dict[str, Path]]:
    """Manifests by chip_id: the ``--manifest`` files first; a chip none of them covers uses the
    manifest its spectra files name (attribute ``manifest``; a relative path is tried from the
    working directory, then beside the spectra file)."""
    manifests: dict[str, ChipManifest] = {}
    paths: dict[str, Path] = {}
    for path in given:
        m = read_manifest(path)
        if m.chip_id in paths and paths[m.chip_id].resolve() != path.resolve():
            raise ValueError(
                f"manifests {paths[m.chip_id]} and {path} are both for chip_id {m.chip_id!r}; "
                "give one manifest per chip"
            )
        manifests[m.chip_id], paths[m.chip_id] = m, path
    chips = {s.chip_id for s in spectra}
    for chip, path in paths.items():
        if chip not in chips:
            raise ValueError(
                f"--manifest {path} is for chip_id {chip!r}, and no spectra file is from that "
                f"chip (chips: {', '.join(sorted(chips))})"
            )
    for s, file in zip(spectra, files, strict=True):
        if s.chip_id in manifests:
            continue
        named = s.provenance.get(MANIFEST_ATTRIBUTE)
        if not isinstance(named, str) or not named:
            raise ValueError(
                f"{file} is from chip_id {s.chip_id!r} but no manifest covers it and the file "
                f"names none; pass --manifest chip.h5 for that chip"
            )
        path = _locate(Path(named), file)
        m = read_manifest(path)
        if m.chip_id != s.chip_id:
            raise ValueError(
                f"{file} (chip_id {s.chip_id!r}) names manifest {path}, which is for chip_id "
                f"{m.chip_id!r}; pass --manifest with the right chip's manifest"
            )
        manifests[m.chip_id], paths[m.chip_id] = m, path
    digests = {chip: m.content_sha256() for chip, m in manifests.items()}
    for s, file in zip(spectra, files, strict=True):
        if s.manifest_sha256 != digests[s.chip_id]:
            raise ValueError(
                f"{file} was extracted with another chip manifest (manifest_sha256 "
                f"{s.manifest_sha256[:12]}) than {paths[s.chip_id]} ({digests[s.chip_id][:12]}), "
                f"though both say chip_id {s.chip_id!r}; give the manifest of the scanned chip"
            )
    return manifests, paths


def _locate(named: Path, spectra_file: Path) -> Path:
    if named.is_absolute() or named.is_file():
        return named
    for beside in (spectra_file.parent / named, spectra_file.parent / named.name):
        if beside.is_file():
            return beside
    raise FileNotFoundError(
        f"manifest {named} named by {spectra_file} is neither in the working directory nor "
        f"beside the file; pass --manifest chip.h5"
    )
