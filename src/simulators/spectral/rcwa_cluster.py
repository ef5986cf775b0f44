"""RCWA at dataset scale: the designs a run still needs, as tasks on ``dask.distributed``.

:meth:`RcwaModel.spectra <simulators.spectral.rcwa.RcwaModel.spectra>` dedups replicas and looks
the rest up in its cache; what is left comes here when the config names ``workers`` (a
LocalCluster of that many processes, started through :class:`common.cluster.DaskCluster`, the
project's one way onto a cluster) or a ``scheduler``. Choices:

* **Tasks** are chunks of unique designs, ``ceil(todo / (4 * worker threads))`` designs each
  and at most ``cache_every``, so every worker has several tasks, the progress bar moves
  smoothly and a kill loses little. A task's input is plain data: the DesignLibrary slice (numpy
  arrays), the size biases, wavelengths, thickness, material and the solver config; it builds
  its own :class:`RcwaModel` (no cache, no cluster) on the worker and runs
  :meth:`RcwaModel.solve_designs`, the very per-design code of an in-process run, so the spectra
  are bit-identical to it. Results are put back in order by row, never by completion order.
* **One torch thread per task** (``rcwa.SOLVER_THREADS``, the same count an in-process solve
  uses, because torch's results depend on it in the last bits): a worker runs as many tasks at
  once as it has threads (one, for a LocalCluster), so the cores are shared out by tasks.
* **The cache has one writer, the client**: it appends each task's spectra as the task
  completes (``as_completed``). HDF5 is not safe for concurrent writers, and a
  ``distributed.Lock`` around worker-side appends would also need every worker to see the cache
  file under the same path; the single writer needs neither a lock nor a shared file system, and
  the client is where the cache was opened and looked up anyway. A run interrupted by Ctrl-C or
  even SIGKILL of the client has appended every task that finished (each append a short
  open-append-close) and loses only the tasks in flight (the LocalCluster's processes exit with
  their parent); the rerun looks up the cache first and solves only what is missing.
* **GPU**: torcwa takes one frequency per solver object, so there is no batching across
  wavelengths or designs to exploit; a task solves design by design on the device its config
  says (``auto``: the worker's GPU when it has one), in the precision the client resolved,
  because the precision is part of the cache key.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from layout.design import DesignLibrary
from simulators.spectral.rcwa import FloatArray, RcwaConfig, RcwaModel

log = logging.getLogger(__name__)

TASKS_PER_THREAD = 4

Finished = Callable[[NDArray[np.intp], FloatArray], None]


def solve_task(
    designs: DesignLibrary,
    size_bias_nm: FloatArray,
    wavelength_nm: FloatArray,
    thickness_nm: float,
    material: str,
    config: RcwaConfig,
) -> FloatArray:
    """One cluster task: (N, 2, W) spectra of ``designs``, solved on the worker."""
    model = RcwaModel(config)
    return model.solve_designs(designs, size_bias_nm, wavelength_nm, thickness_nm, material)


def task_size(todo: int, threads: int, cache_every: int) -> int:
    """Designs per task: several tasks per worker thread, at most ``cache_every``."""
    return max(1, min(cache_every, math.ceil(todo / (TASKS_PER_THREAD * max(1, threads)))))


def solve_on_cluster(
    model: RcwaModel,
    designs: DesignLibrary,
    size_bias_nm: FloatArray,
    wavelength_nm: FloatArray,
    thickness_nm: float,
    material: str,
    finished: Finished,
) -> None:
    """Solve ``designs`` as tasks on ``model``'s cluster; ``finished(rows, spectra)`` is called
    here, in the client, as each task completes (rows index ``designs``), which is where the
    caller appends to its cache. On any error or interrupt the tasks not yet done are
    cancelled, so a cluster shared by later calls is left idle."""
    cluster = model.cluster()  # a missing dask.distributed is reported here, in one line
    from distributed import as_completed

    client = cluster.client
    n = len(designs)
    size = task_size(n, cluster.nthreads, model.config.cache_every)
    config = model.task_config()
    stamp = time.time_ns()
    rows: dict[str, NDArray[np.intp]] = {}
    futures = []
    for start in range(0, n, size):
        local = np.arange(start, min(start + size, n))
        future = client.submit(
            solve_task,
            designs.take(local),
            size_bias_nm[local],
            wavelength_nm,
            thickness_nm,
            material,
            config,
            pure=False,
            key=f"metascan-rcwa-{stamp}-{start}",
        )
        rows[future.key] = local
        futures.append(future)
    log.info(
        "rcwa: solving %d designs as %d tasks on %d worker threads",
        n,
        len(futures),
        cluster.nthreads,
    )
    try:
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            solved: FloatArray = np.asarray(future.result(), dtype=np.float64)
            finished(rows[future.key], solved)
    except BaseException:
        client.cancel([f for f in futures if not f.done()])
        raise
