"""``metascan process``: every scanned array of a scan folder to its array-spectra file.

One Dask task per array (its tiles run inside it, in order, so a tile never waits on another
array's flat or manifest and the task's result is one file). Arrays run in parallel on Dask's
threaded scheduler by default — numpy releases the GIL for the arithmetic (h5py reads one file
at a time), and threads share one copy of the flat and the manifest — or on an existing
``dask.distributed`` cluster given by its scheduler address, whose workers must see the same
file system (they read the hypercubes and write the outputs themselves). Each output is written
to a temporary name and renamed (:func:`dataset.array_spectra_file.write_array_spectra`), so an
interrupted run leaves only whole files.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from dask.base import compute
from dask.delayed import delayed
from tqdm import tqdm

from common.outputs import check_outputs
from dataset.array_spectra_file import write_array_spectra
from dataset.extraction import ExtractionSettings, FlatCache, TileSpectra, extract_array
from dataset.hypercube_attrs import HypercubeAttrsError
from dataset.hypercube_file import read_hypercube_attrs
from dataset.quality import PadFlag
from layout.manifest import ChipManifest, read_manifest

log = logging.getLogger(__name__)

HYPERCUBE_SUFFIXES = (".h5", ".nc")


@dataclass(frozen=True)
class TileFile:
    """One tile hypercube found in the scan folder, from its attributes alone."""

    path: Path
    array: str
    chip_id: str
    manifest_sha256: str
    tile: tuple[int, int]
    nbytes: int  # file size


@dataclass(frozen=True)
class FoundTiles:
    """The tiles of a scan folder by array, and the hypercube files that could not be read."""

    arrays: dict[str, list[TileFile]]
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why


def find_tiles(scans_dir: Path, *, skip_unreadable: bool = False) -> FoundTiles:
    """Tile hypercubes under ``scans_dir`` (recursively), grouped by array name.

    HDF5 files of another kind (outputs, other projects' files) and flats are passed over. A
    file that says it is HDF5 but cannot be opened (a tile truncated by a crash or a copy) is an
    error naming it, unless ``skip_unreadable``: then it is skipped loudly, and the caller lists
    it in the outputs' provenance. A tile without an ``array`` attribute or a tile found twice
    is refused."""
    scans_dir = Path(scans_dir)
    if not scans_dir.is_dir():
        raise FileNotFoundError(f"scan folder {scans_dir} does not exist")
    found: dict[str, list[TileFile]] = {}
    unreadable: dict[str, str] = {}
    seen: dict[tuple[str, str, tuple[int, int]], Path] = {}
    for path in sorted(p for p in scans_dir.rglob("*") if p.suffix in HYPERCUBE_SUFFIXES):
        if not path.is_file() or path.name.startswith("."):
            continue
        if not has_hdf5_signature(path):
            log.debug("skipping %s: not an HDF5 file", path)
            continue
        try:
            attrs = read_hypercube_attrs(path)
        except HypercubeAttrsError:
            raise  # a hypercube whose attributes are bad: an error naming it, never passed over
        except ValueError as exc:
            if readable_hdf5(path):
                log.debug("skipping %s: not a hypercube (%s)", path, exc)
                continue
            if not skip_unreadable:
                raise ValueError(
                    f"{path} cannot be read (truncated or damaged HDF5); restore it, rescan "
                    "its array, or pass --skip-unreadable to process the rest without it"
                ) from None
            log.warning("SKIPPED unreadable hypercube %s", path)
            unreadable[str(path)] = "cannot be opened as HDF5 (truncated or damaged)"
            continue
        if attrs.role != "tile":
            continue
        array = attrs.array
        if array is None:
            raise ValueError(f"{path}: tile hypercube without an 'array' attribute (e.g. 'A0R1')")
        assert attrs.tile_row is not None and attrs.tile_col is not None  # a tile has them
        tile = (attrs.tile_row, attrs.tile_col)
        chip = attrs.chip_id
        key = (chip, array, tile)
        if key in seen:
            raise ValueError(
                f"tile {tile} of array {array} (chip {chip}) is in two files: {seen[key]} and "
                f"{path}; process one scan of an array at a time"
            )
        seen[key] = path
        found.setdefault(array, []).append(
            TileFile(path, array, chip, attrs.manifest_sha256, tile, path.stat().st_size)
        )
    return FoundTiles(found, unreadable)


def has_hdf5_signature(path: Path) -> bool:
    """The 8-byte HDF5 signature at offset 0 (where this project's writers put it): a damaged
    file keeps it, a log or a PNG does not."""
    with Path(path).open("rb") as f:
        return f.read(8) == b"\x89HDF\r\n\x1a\n"


def readable_hdf5(path: Path) -> bool:
    try:
        with h5py.File(path, "r", locking=False):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class ArrayOutcome:
    """What one array's task wrote (small: it travels back from a Dask worker)."""

    array_name: str
    path: Path
    pads: int
    tiles: int
    flag_counts: dict[str, int]
    registration_residual_px: float
    hypercube_bytes: int
    seconds: float


@dataclass(frozen=True)
class ProcessSummary:
    arrays: list[ArrayOutcome]
    seconds: float
    hypercube_bytes: int  # tile files plus each flat file once
    settings: ExtractionSettings = field(repr=False)
    unreadable: dict[str, str] = field(default_factory=dict)  # skipped files -> why

    @property
    def pads(self) -> int:
        return sum(a.pads for a in self.arrays)

    @property
    def pads_per_s(self) -> float:
        return self.pads / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.hypercube_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def flag_counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for a in self.arrays:
            for name, count in a.flag_counts.items():
                total[name] = total.get(name, 0) + count
        return total


def process_array(
    tile_paths: list[str],
    manifest_path: str,
    array_name: str,
    output_path: str,
    settings: ExtractionSettings,
    *,
    manifest: ChipManifest | None = None,
    flats: FlatCache | None = None,
    on_tile: Callable[[TileSpectra], None] | None = None,
    skipped_unreadable: dict[str, str] | None = None,
) -> ArrayOutcome:
    """One Dask task: extract an array's tiles, write its array-spectra file. Arguments are
    plain paths so the task pickles for a distributed worker; threads pass the shared
    ``manifest`` and ``flats`` instead of re-reading them."""
    start = time.perf_counter()
    chip = manifest if manifest is not None else read_manifest(Path(manifest_path))
    result = extract_array(
        [Path(p) for p in tile_paths],
        chip,
        array_name,
        settings,
        flats=flats,
        on_tile=on_tile,
        provenance={
            "manifest": str(manifest_path),
            # Skipped files are listed in every output: a tile missing from an array may have
            # held some of its pads, and a reader must be able to tell.
            **({"skipped_unreadable": skipped_unreadable} if skipped_unreadable else {}),
        },
    )
    spectra = result.spectra
    write_array_spectra(Path(output_path), spectra)
    counts = {
        str(flag.name).lower(): int(np.count_nonzero(spectra.flags & flag))
        for flag in PadFlag
        if flag.value
    }
    return ArrayOutcome(
        array_name=array_name,
        path=Path(output_path),
        pads=len(spectra),
        tiles=result.tiles,
        flag_counts=counts,
        registration_residual_px=spectra.registration_residual_px,
        hypercube_bytes=result.hypercube_bytes,
        seconds=time.perf_counter() - start,
    )


def _flat_bytes(tiles: list[TileFile]) -> int:
    """Size of each distinct flat file the tiles link to (read once per run)."""
    files: set[Path] = set()
    for t in tiles:
        link = read_hypercube_attrs(t.path).flat_file
        if link is not None:
            files.add((t.path.parent / link).resolve())
    return sum(f.stat().st_size for f in files if f.is_file())


def process_scans(
    scans_dir: Path,
    manifest_path: Path,
    output_dir: Path,
    settings: ExtractionSettings | None = None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = False,
    force: bool = False,
    skip_unreadable: bool = False,
) -> ProcessSummary:
    """Every array found under ``scans_dir`` to ``output_dir/<array>.h5`` (module docstring).

    ``scheduler`` is the address of a running ``dask.distributed`` scheduler (threads here when
    None); ``workers`` the threads to use (default: Dask's, one per core)."""
    settings = settings or ExtractionSettings()
    if workers is not None and not 1 <= workers <= 1024:
        raise ValueError(f"workers={workers} must be in [1, 1024]")
    manifest = read_manifest(Path(manifest_path))
    digest = manifest.content_sha256()
    found = find_tiles(scans_dir, skip_unreadable=skip_unreadable)
    groups = found.arrays
    if not groups:
        raise ValueError(f"no tile hypercubes (*.h5, *.nc with role 'tile') under {scans_dir}")
    for array, tiles in groups.items():
        chips = {t.chip_id for t in tiles}
        if chips != {manifest.chip_id}:
            raise ValueError(
                f"array {array} was scanned on chip {', '.join(sorted(chips))}, the manifest "
                f"{manifest_path} is chip {manifest.chip_id!r}"
            )
        for t in tiles:
            if t.manifest_sha256 != digest:
                raise ValueError(
                    f"{t.path} was scanned with another chip manifest (manifest_sha256 "
                    f"{t.manifest_sha256[:12] or 'not recorded'}) than {manifest_path} "
                    f"({digest[:12]}), though both say chip_id {manifest.chip_id!r}; give the "
                    "manifest the scan was made with"
                )
        if array not in manifest.arrays.name:
            raise ValueError(
                f"array {array!r} (in {tiles[0].path}) is not in the manifest {manifest_path}; "
                f"its arrays are {', '.join(manifest.arrays.name)}"
            )
    output_dir = Path(output_dir)
    outputs = {f"output {output_dir / f'{a}.h5'}": output_dir / f"{a}.h5" for a in groups}
    inputs: dict[str, Path | None] = {"--manifest": Path(manifest_path)}
    inputs.update({f"hypercube {t.path.name}": t.path for ts in groups.values() for t in ts})
    check_outputs({"--output": output_dir}, inputs, force, directories=True)
    if output_dir.is_dir():
        check_outputs(outputs, inputs, force)
    output_dir.mkdir(exist_ok=True)
    all_tiles = [t for tiles in groups.values() for t in tiles]
    jobs = {
        array: (
            [str(t.path.resolve()) for t in tiles],
            str((output_dir / f"{array}.h5").resolve()),
            int(manifest.pads_of(array).size),
        )
        for array, tiles in sorted(groups.items())
    }
    total_pads = sum(job[2] for job in jobs.values())
    start = time.perf_counter()
    with tqdm(total=total_pads, unit="pad", desc="process", disable=not progress) as bar:
        if scheduler is None:
            outcomes = _run_threads(
                jobs, manifest, manifest_path, settings, workers, bar, found.unreadable
            )
        else:
            outcomes = _run_distributed(
                jobs, Path(manifest_path), settings, scheduler, bar, found.unreadable
            )
    seconds = time.perf_counter() - start
    read = sum(o.hypercube_bytes for o in outcomes)
    tile_bytes = sum(t.nbytes for t in all_tiles)
    log.info("%d arrays, %.1f MB of image data in %.2f s", len(outcomes), read / 1e6, seconds)
    return ProcessSummary(
        arrays=sorted(outcomes, key=lambda o: o.array_name),
        seconds=seconds,
        hypercube_bytes=tile_bytes + _flat_bytes(all_tiles),
        settings=settings,
        unreadable=dict(found.unreadable),
    )


def _run_threads(
    jobs: dict[str, tuple[list[str], str, int]],
    manifest: ChipManifest,
    manifest_path: Path,
    settings: ExtractionSettings,
    workers: int | None,
    bar: tqdm[Any],
    skipped: dict[str, str],
) -> list[ArrayOutcome]:
    lock = threading.Lock()
    flats = FlatCache()
    seen: set[int] = set()

    def tile_done(tile: TileSpectra) -> None:
        # Pads new to this run: a pad two tiles hold counts once (pad-table rows are unique).
        with lock:
            new = {int(r) for r in tile.pad_rows} - seen
            seen.update(new)
            bar.update(len(new))

    # Shared objects ride in a partial, not as arguments: Dask would unpack a dataclass
    # argument (the manifest) into graph nodes.
    task = functools.partial(
        process_array,
        manifest=manifest,
        flats=flats,
        on_tile=tile_done,
        skipped_unreadable=skipped,
    )
    tasks = [
        delayed(task, pure=False)(paths, str(manifest_path), array, output, settings)
        for array, (paths, output, _) in jobs.items()
    ]
    options: dict[str, Any] = {"scheduler": "threads"}
    if workers is not None:
        options["num_workers"] = workers
    results = compute(*tasks, **options)  # type: ignore[no-untyped-call]
    return list(results)


def _run_distributed(
    jobs: dict[str, tuple[list[str], str, int]],
    manifest_path: Path,
    settings: ExtractionSettings,
    address: str,
    bar: tqdm[Any],
    skipped: dict[str, str],
) -> list[ArrayOutcome]:
    try:
        from distributed import (  # type: ignore[import-not-found, unused-ignore]
            Client,
            as_completed,
        )
    except ImportError:
        raise ValueError(
            f"--scheduler {address} needs dask.distributed, which is not installed "
            "(pip install distributed)"
        ) from None
    try:
        client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise ValueError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    outcomes = []
    with client:
        futures = [
            client.submit(
                process_array,
                paths,
                str(manifest_path.resolve()),
                array,
                output,
                settings,
                skipped_unreadable=skipped,
                pure=False,
                key=f"metascan-process-{array}-{time.time_ns()}",
            )
            for array, (paths, output, _) in jobs.items()
        ]
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            outcome: ArrayOutcome = future.result()
            bar.update(jobs[outcome.array_name][2])
            outcomes.append(outcome)
    return outcomes
