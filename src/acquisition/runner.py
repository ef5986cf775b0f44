"""``metascan scan``: run a whole scan, or resume one, with its run record, log and quick-looks.

The engine (:mod:`acquisition.engine`) does the work message by message; this module sets
the scene around it: the scan folder and its identity (:mod:`acquisition.scan_folder`), the
connected bench, the run record that is always closed, a log file beside the data, a progress
bar, SIGTERM treated like Ctrl-C, the stage halted when a scan stops early, and one quick-look
per array as soon as its tiles are done.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
from tqdm import tqdm

from acquisition.bench import Bench, connect, simulated_bench
from acquisition.documents import ArrayDone, BandMeasured, BandSkipped, Document, Subscriber
from acquisition.engine import RunEngine
from acquisition.estimate import setup_dry_run
from acquisition.hypercube_store import FileContext, HypercubeStore
from acquisition.run_record import RunRecord
from acquisition.scan_folder import (
    IDENTITY,
    LOG_FILE,
    QUICKLOOK,
    RUN_RECORD,
    ScanIdentity,
    config_digest,
)
from acquisition.scan_setup import ScanSetup, scan_setup
from acquisition.scan_stats import ScanStats
from acquisition.suspenders import LampWatch
from acquisition.time_model import DeviceTimeModel
from instruments.protocols import Camera

log = logging.getLogger(__name__)

QuickLook = Callable[[Path, str, Path], Path]
"""Draws array ``str`` of scan folder ``Path`` into the PNG ``Path`` it returns."""


@dataclass(frozen=True)
class ScanSummary:
    folder: Path
    arrays: tuple[str, ...]
    tiles: int
    stats: ScanStats
    wall_s: float
    quicklooks: tuple[Path, ...]


@contextlib.contextmanager
def scan_log_file(path: Path) -> Iterator[None]:
    """Log INFO and above to ``path`` for the duration, without making the console chattier:
    handlers already on the root logger keep seeing only what they saw before."""
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    previous = root.level
    quiet = [h for h in root.handlers if h.level == logging.NOTSET]
    for h in quiet:
        h.setLevel(previous)
    root.addHandler(handler)
    root.setLevel(min(previous, logging.INFO))
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(previous)
        for h in quiet:
            h.setLevel(logging.NOTSET)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """A ``kill`` (SIGTERM) stops the scan like Ctrl-C: the run record closes as aborted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _identity(setup: ScanSetup, manifest_path: Path) -> ScanIdentity:
    t = setup.alignment.transform
    m = np.column_stack([t.matrix, t.offset])  # 2x3: [A | offset], stage = A @ chip + offset
    return ScanIdentity(
        chip_id=setup.manifest.chip_id,
        manifest=str(manifest_path),
        config_digest=config_digest(setup.config.model_dump(mode="json")),
        arrays=setup.arrays,
        chip_to_stage=tuple(tuple(float(v) for v in row) for row in m),
        manifest_sha256=setup.manifest.content_sha256(),
        layout_sha256=str(setup.manifest.attrs.get("layout_sha256", "")),
    )


def _check_folder(output: Path, identity: ScanIdentity, resume: bool) -> None:
    if resume:
        found = ScanIdentity.read(output)
        diff = found.mismatch(identity)
        if diff is not None:
            raise ValueError(
                f"{output} holds another scan ({diff}); resume it with its own config and "
                f"manifest (it was started with {found.manifest})"
            )
    elif (output / IDENTITY).exists():
        raise FileExistsError(
            f"{output} already holds a scan; pass --resume to continue it, or choose another folder"
        )


def recorder(record: RunRecord) -> Subscriber:
    """The subscriber that appends every recorded document to the run record."""

    def emit(doc: Document) -> None:
        if doc.kind:
            record.emit(doc.kind, **doc.fields())

    return emit


def _identities(bench: Bench) -> dict[str, str]:
    return {
        "filter": bench.filter.identity,
        "rotator": bench.rotator.identity,
        "stage": bench.stage.identity,
        "camera": bench.camera.identity,
        "reference_camera": bench.reference_camera.identity,
    }


def run_scan(
    config_path: Path,
    manifest_path: Path,
    output: Path,
    *,
    arrays: Sequence[str] | None = None,
    resume: bool = False,
    progress: bool = False,
    on_connect: Callable[[Bench], None] | None = None,
    quicklook: QuickLook | None = None,
) -> ScanSummary:
    """Scan (or with ``resume`` continue scanning) the chip's arrays into ``output``.

    ``on_connect`` sees the connected bench before the first step (tests inject faults
    there). ``quicklook`` (folder, array, png path) draws a picture of each array as soon as
    its tiles are done (``dataset.quicklook.write_quicklook``; the ``scan`` command wires it). Raises :class:`acquisition.scan_stats.ScanFault` when a persistent fault stops the
    scan; KeyboardInterrupt on Ctrl-C or SIGTERM. Either way the run record is closed and
    everything completed is on disk for ``--resume``.
    """
    setup = scan_setup(config_path, manifest_path, arrays)
    identity = _identity(setup, manifest_path)
    output = Path(output)
    _check_folder(output, identity, resume)
    # The plan the dry run checks, checked again here: limits, and the disk for the hypercubes
    # still to be made (a full disk mid-scan would cost a tile; HDF5 would cost the process).
    on_disk = sum(f.stat().st_size for f in output.glob("*.h5")) if output.is_dir() else 0
    report = setup_dry_run(setup, output, on_disk_bytes=on_disk)
    output.mkdir(parents=True, exist_ok=True)
    total_bands, tiles = report.steps.get("Acquire", 0), sum(report.tiles.values())
    config = setup.config
    quicklooks: list[Path] = []
    start = time.perf_counter()
    with scan_log_file(output / LOG_FILE), sigterm_as_interrupt():
        simulated = simulated_bench(
            setup.raw, config_path, setup.instruments, setup.manifest, scan_folder=output
        )
        bench = connect(setup.instruments, simulated, setup.manifest, config.optics)
        try:
            match_roi(bench.camera, config.optics.width_px, config.optics.height_px)
            identities = _identities(bench)
            if on_connect is not None:
                on_connect(bench)
            if not resume:
                identity.write(output)
            record = RunRecord(output / RUN_RECORD)
            start_doc: dict[str, Any] = {
                "resume": resume,
                "chip_id": identity.chip_id,
                "manifest": identity.manifest,
                "arrays": list(setup.arrays),
                "bands": total_bands,
                "tiles": tiles,
                "config": config.model_dump(mode="json"),
                "instruments": identities,
                "alignment_rms_um": setup.alignment.rms_residual,
            }
            with (
                record.run(**start_doc),
                tqdm(
                    total=total_bands,
                    unit="band",
                    desc="scan",
                    disable=not progress,
                    dynamic_ncols=True,
                ) as bar,
            ):

                def watch(doc: Document) -> None:
                    if isinstance(doc, BandMeasured | BandSkipped):
                        m = doc.message
                        where = m.array or "flat"
                        if m.tile is not None:
                            where += f" tile {m.tile[0]},{m.tile[1]}"
                        bar.set_postfix_str(
                            f"{where} {m.polarization} {m.wavelength_nm:g} nm", refresh=False
                        )
                        bar.update(1)
                    elif isinstance(doc, ArrayDone) and quicklook is not None:
                        path = output / QUICKLOOK / f"{doc.array}.png"
                        quicklook(output, doc.array, path)
                        quicklooks.append(path)
                        log.info("quick-look of %s: %s", doc.array, path)

                model = DeviceTimeModel(
                    config.dry_run,
                    setup.instruments.filter.settle_s,
                    setup.instruments.rotator.move_pause_s,
                )
                context = FileContext(
                    chip_id=setup.manifest.chip_id,
                    pixel_size_um=config.optics.um_per_px,
                    instruments=identities,
                    config=config.model_dump(mode="json"),
                    chip_to_stage=[list(row) for row in identity.chip_to_stage],
                    full_scale_dn=(1 << bench.camera.bit_depth) - 1,
                    frame_px=(config.optics.height_px, config.optics.width_px),
                )
                emit = recorder(record)
                store = HypercubeStore(
                    output, setup.manifest, context, emit, durable=config.runner.durable
                )
                engine = RunEngine(
                    bench,
                    config,
                    store,
                    model,
                    subscribers=(emit, watch),
                    suspenders=(LampWatch(config.runner, emit),),
                )
                stats = engine.run(setup.plan(bench.filter))
                record.emit("summary", **_stats_doc(stats, time.perf_counter() - start))
        except BaseException:
            with contextlib.suppress(Exception):
                bench.stage.halt()
            raise
        finally:
            bench.close()
    return ScanSummary(
        output, setup.arrays, tiles, stats, time.perf_counter() - start, tuple(quicklooks)
    )


def match_roi(camera: Camera, width_px: int, height_px: int) -> None:
    """Give the sample camera the ``[optics]`` ROI, centred in the one it has (the optical axis
    sits at the sensor's centre); refused when it does not fit."""
    x, y, w, h = camera.roi
    if (w, h) == (width_px, height_px):
        return
    if width_px > w or height_px > h:
        raise ValueError(
            f"[optics] {width_px}x{height_px} px does not fit the sample camera's {w}x{h} px ROI"
        )
    camera.roi = (x + (w - width_px) // 2, y + (h - height_px) // 2, width_px, height_px)
    log.info("sample camera ROI set to %s", camera.roi)


def _stats_doc(stats: ScanStats, wall_s: float) -> dict[str, Any]:
    return {
        "wall_s": wall_s,
        "modeled_s": stats.modeled_s,
        "modeled_by_kind": stats.modeled_by_kind,
        "bands_acquired": stats.bands_acquired,
        "bands_skipped": stats.bands_skipped,
        "darks_acquired": stats.darks_acquired,
        "darks_skipped": stats.darks_skipped,
        "darks_copied": stats.darks_copied,
        "dark_checks": stats.dark_checks,
        "retries": stats.retries,
        "lamp_interruptions": stats.lamp_interruptions,
        "flagged_bands": stats.flagged_bands,
    }
