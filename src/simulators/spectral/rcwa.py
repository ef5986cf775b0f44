"""The RCWA spectral model: torcwa on the rasterized unit cell (optional extra ``rcwa``).

Stack, top to bottom: air half-space (incidence, normal), one patterned layer of the design's
thickness whose permittivity is 1 + (eps_film - 1) * raster, and a fused-silica half-space.
The zero order's transmitted power for x- and y-polarized incidence is T_x = |S_xx|^2 +
|S_yx|^2 and T_y = |S_yy|^2 + |S_xy|^2, co- plus cross-polarized: the camera sees both unless
an analyser follows the sample. ``power_norm=True`` already makes |S|^2 a power fraction (torcwa
applies sqrt(kz_out / kz_in)), so no index correction is added; physics.md checked uniform
films against the Airy formula to < 1e-9 this way.

Facts that shape the code (physics.md section 1):

* torcwa takes one frequency per solver object, so each wavelength is its own solve; the cost
  is ~(2N+1)^6 in the Fourier order N: [3,3] takes ~0.7 s per 29-wavelength design (x and y)
  on 2 CPU cores in complex128,
  which is why results are cached by ``design_id``.
* At an order's grazing wavelength (lambda = P / |G| in air, the normal-incidence Rayleigh
  anomaly; torcwa issue #25) torcwa silently returns 0, so such wavelengths are nudged by
  ``rayleigh_guard_nm`` (1e-3 nm, far below any feature width). The glass-side anomalies
  (lambda = n_glass P / |G|) are nudged the same way.
* torcwa's patterned ``eps`` is indexed [x, y]; the raster is [y, x], so it is transposed.
* Laurent's rule only: convergence in N is slow, roughly 1/N. Against [11,11] on a fixed set
  of six designs (a-Si, 178 nm, 8 bands) the rms error in T is 0.080 at [3,3], 0.038 at [5,5],
  0.027 at [6,6], 0.018 at [7,7] and 0.009 at [9,9]; the default [7,7] is the smallest within
  the project's target of 0.02 (``benchmarks/bench_spectral.py --convergence``). [3,3] stays
  available (``orders=(3, 3)``) as the fast, unconverged model for large quick sets.
* GPU: used when torch sees one (``device="auto"``), in complex64 there and complex128 on
  the CPU; small non-Hermitian eigensolves gain little on a GPU, so measure before relying on it.
  torcwa cannot batch: one solver object holds one frequency and one layer stack, so there is
  nothing to batch across wavelengths or designs, and a GPU solves design by design too.

At dataset scale (``workers`` or ``scheduler``) the unique designs still missing from the cache
are tasks on ``dask.distributed`` (``simulators.spectral.rcwa_cluster``); each task runs the
same per-design code as this process, so the spectra are bit-identical either way.
"""

from __future__ import annotations

import importlib
import logging
import weakref
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from tqdm import tqdm

from common.cluster import LOCAL_WORKERS, DaskCluster
from layout.design import DesignLibrary
from layout.fabrication import apply_size_bias
from layout.raster import IMAGE_SIZE, rasterize
from simulators.materials import SUBSTRATE, refractive_index
from simulators.spectral.base import DEFAULT_MATERIAL, check_request
from simulators.spectral.cache import SpectraCache, bias_pm

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]

DEFAULT_ORDERS = (7, 7)
ALGORITHM_VERSION = 1  # bump when a change alters results, so old cache entries are not reused

# torch threads while solving. torch's CPU results depend on its thread count in the last bits
# (6e-16 between 1 and 2 threads at orders [1,1]), so every solve, in this process and in every
# cluster task, runs with the same count and spectra are bit-identical however they were solved.
# One, because cluster workers share the cores out by tasks, and because on two busy cores one
# thread was also the faster ([3,3], 128 px, 29 bands: 0.95 s/design against 2.6 s with two).
SOLVER_THREADS = 1


class MissingBackendError(ImportError):
    """torcwa (or torch) is not installed; the message says how to get it."""


def _backend() -> tuple[ModuleType, ModuleType]:
    try:
        torch = importlib.import_module("torch")
        torcwa = importlib.import_module("torcwa")
    except ImportError as exc:
        raise MissingBackendError(
            f"the rcwa spectral model needs torcwa ({exc}); install it with "
            "pip install 'metascan[rcwa]' or use --model analytic"
        ) from None
    return torch, torcwa


@dataclass(frozen=True)
class RcwaConfig:
    """How to solve; everything here except the cache, progress, batching and where the solving
    runs (``workers``, ``scheduler``) enters the cache key, because it changes the numbers.

    ``workers=0`` solves in this process; ``workers=N`` starts a LocalCluster of N worker
    processes, one thread each, and solves the designs there as dask tasks; ``scheduler`` is
    the address (``tcp://host:port``) of a running dask scheduler to use instead. The cluster
    starts on the first solve that needs it and lives until :meth:`RcwaModel.close` (or the
    model is garbage collected), so the callers' many ``spectra`` calls share one cluster.
    """

    # The smallest orders within rms 0.02 of [11,11] (benchmarks/bench_spectral.py
    # --convergence: [5,5] 0.038, [6,6] 0.027, [7,7] 0.018, at 1.3 s a design-band here).
    orders: tuple[int, int] = DEFAULT_ORDERS
    raster_size: int = IMAGE_SIZE
    device: str = "auto"  # "auto" (cuda when available), "cpu" or "cuda"
    precision: str = "auto"  # "auto" (double on cpu, single on cuda), "double" or "single"
    rayleigh_guard_nm: float = 1e-3
    cache_path: Path | None = None
    progress: bool = False
    cache_every: int = 8  # designs per cache append (in process) and at most per cluster task
    workers: int = 0  # 0: solve here; N: a LocalCluster of N processes
    scheduler: str | None = None  # address of a running dask scheduler (overrides workers)

    def __post_init__(self) -> None:
        if len(self.orders) != 2 or min(self.orders) < 0:
            raise ValueError(f"orders={self.orders} must be two non-negative integers, e.g. (3, 3)")
        if self.raster_size <= 0 or self.raster_size % 64:
            raise ValueError(f"raster_size={self.raster_size} must be a positive multiple of 64")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r} must be auto, cpu or cuda")
        if self.precision not in ("auto", "double", "single"):
            raise ValueError(f"precision={self.precision!r} must be auto, double or single")
        if not self.rayleigh_guard_nm > 0:
            raise ValueError(f"rayleigh_guard_nm={self.rayleigh_guard_nm} must be > 0")
        if self.cache_every < 1:
            raise ValueError(f"cache_every={self.cache_every} must be >= 1")
        LOCAL_WORKERS.check("workers", self.workers)
        if self.scheduler is not None and not self.scheduler.strip():
            raise ValueError("scheduler must be an address such as tcp://host:8786, not empty")

    @property
    def distributed(self) -> bool:
        """Whether the solving runs as dask tasks (a scheduler given, or workers >= 1)."""
        return self.scheduler is not None or self.workers > 0


def nudge_off_anomalies(
    wavelength_nm: FloatArray,
    period_nm: float,
    orders: tuple[int, int],
    n_substrate: FloatArray,
    guard_nm: float,
) -> FloatArray:
    """Wavelengths moved by ``guard_nm`` where some order's kz vanishes in air or substrate."""
    mx, my = np.meshgrid(np.arange(-orders[0], orders[0] + 1), np.arange(-orders[1], orders[1] + 1))
    g = np.sqrt(mx**2 + my**2).ravel()
    g = np.unique(g[g > 0])
    grazing = np.concatenate(
        [np.broadcast_to(period_nm / g, (wavelength_nm.size, g.size)),
         n_substrate[:, None] * period_nm / g[None, :]], axis=1,
    )  # fmt: skip
    near = np.any(np.abs(wavelength_nm[:, None] - grazing) < guard_nm / 2, axis=1)
    out: FloatArray = np.where(near, wavelength_nm + guard_nm, wavelength_nm)
    return out


class RcwaModel:
    """Zero-order transmission by RCWA, cached by design (module docstring)."""

    name = "rcwa"

    def __init__(self, config: RcwaConfig | None = None) -> None:
        self.config = config or RcwaConfig()
        self._torch, self._torcwa = _backend()
        torch = self._torch
        cuda = bool(torch.cuda.is_available())
        if self.config.device == "cuda" and not cuda:
            raise ValueError("device='cuda' but torch sees no CUDA device; use auto or cpu")
        self.device = torch.device("cuda" if self.config.device != "cpu" and cuda else "cpu")
        single = self.config.precision == "single" or (
            self.config.precision == "auto" and self.device.type == "cuda"
        )
        self.precision = "single" if single else "double"
        self.dtype = torch.complex64 if single else torch.complex128
        self._cluster: DaskCluster | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def cluster(self) -> DaskCluster:
        """The dask cluster of ``workers``/``scheduler``, started on first use."""
        if self._cluster is None:
            cfg = self.config
            self._cluster = DaskCluster(cfg.scheduler, cfg.workers)
            self._finalizer = weakref.finalize(self, self._cluster.close)
        return self._cluster

    def close(self) -> None:
        """Close the cluster this model started (if any); the model stays usable."""
        if self._finalizer is not None:
            self._finalizer()
        self._cluster = self._finalizer = None

    def task_config(self) -> RcwaConfig:
        """The config a cluster task solves with: this one's numbers, no cache, no progress, no
        cluster. The precision is this process's resolution, as the cache key records it; the
        device is the configured one, so ``auto`` picks each worker's own GPU when it has one."""
        return replace(
            self.config,
            precision=self.precision,
            cache_path=None,
            progress=False,
            workers=0,
            scheduler=None,
        )

    def cache_key(
        self, wavelength_nm: FloatArray, thickness_nm: float, material: str
    ) -> dict[str, Any]:
        cfg = self.config
        return {
            "model": self.name,
            "algorithm_version": ALGORITHM_VERSION,
            "orders": list(cfg.orders),
            "raster_size": cfg.raster_size,
            "precision": self.precision,
            "rayleigh_guard_nm": cfg.rayleigh_guard_nm,
            "thickness_nm": float(thickness_nm),
            "material": material,
            "substrate": SUBSTRATE,
            "wavelength_nm": [float(x) for x in wavelength_nm],
        }

    def describe(self) -> dict[str, Any]:
        """The settings for provenance."""
        out = asdict(self.config)
        out["cache_path"] = str(self.config.cache_path) if self.config.cache_path else None
        out.update(device=str(self.device), precision=self.precision)
        return out

    def spectra(
        self,
        library: DesignLibrary,
        wavelength_nm: ArrayLike,
        *,
        thickness_nm: float,
        material: str = DEFAULT_MATERIAL,
        size_bias_nm: float | ArrayLike = 0.0,
    ) -> FloatArray:
        lam, bias = check_request(library, wavelength_nm, thickness_nm, material, size_bias_nm)
        n = len(library)
        out = np.full((n, 2, lam.size), np.nan)
        if n == 0:
            return out
        # Replicas (same design, same bias) are solved once.
        ids, pms = library.design_id, bias_pm(bias)
        _, first, inverse = np.unique(
            np.stack([ids, pms], axis=1), axis=0, return_index=True, return_inverse=True
        )
        inverse = inverse.ravel()
        unique_out = np.full((first.size, 2, lam.size), np.nan)
        cfg = self.config
        cache = (
            SpectraCache(cfg.cache_path, self.cache_key(lam, thickness_nm, material))
            if cfg.cache_path
            else None
        )
        todo = np.arange(first.size)
        if cache is not None:
            found, cached = cache.lookup(ids[first], pms[first])
            if cached is not None:
                unique_out[found] = cached[found]
            todo = np.flatnonzero(~found)
            log.info(
                "rcwa: %d of %d designs from cache %s",
                first.size - todo.size,
                first.size,
                cfg.cache_path,
            )
        if todo.size:
            designs, todo_bias = library.take(first[todo]), bias[first[todo]]
            with tqdm(total=todo.size, desc="rcwa", unit="design", disable=not cfg.progress) as bar:

                def finished(local: NDArray[np.intp], solved: FloatArray) -> None:
                    """A solved chunk (rows of ``todo``): kept, appended to the cache at once."""
                    rows = todo[local]
                    unique_out[rows] = solved
                    if cache is not None:
                        cache.append(ids[first[rows]], pms[first[rows]], solved)
                    bar.update(local.size)

                if cfg.distributed:
                    from simulators.spectral.rcwa_cluster import solve_on_cluster

                    solve_on_cluster(
                        self, designs, todo_bias, lam, float(thickness_nm), material, finished
                    )
                else:
                    for start in range(0, todo.size, cfg.cache_every):
                        local = np.arange(start, min(start + cfg.cache_every, todo.size))
                        solved = self.solve_designs(
                            designs.take(local),
                            todo_bias[local],
                            lam,
                            float(thickness_nm),
                            material,
                        )
                        finished(local, solved)
        out[:] = unique_out[inverse]
        return out

    def solve_designs(
        self,
        designs: DesignLibrary,
        size_bias_nm: FloatArray,
        wavelength_nm: FloatArray,
        thickness_nm: float,
        material: str,
    ) -> FloatArray:
        """(N, 2, W) spectra of ``designs`` fabricated with ``size_bias_nm``, one by one, no
        cache: the per-design computation this process and every cluster task run alike."""
        fabricated = apply_size_bias(designs, size_bias_nm)
        eps_film = refractive_index(material, wavelength_nm) ** 2
        n_glass = refractive_index(SUBSTRATE, wavelength_nm)
        images = rasterize(fabricated, self.config.raster_size)
        torch = self._torch
        threads = torch.get_num_threads()
        torch.set_num_threads(SOLVER_THREADS)  # see SOLVER_THREADS; the caller's count is restored
        try:
            return np.stack(
                [
                    self._solve_cell(
                        images[i],
                        float(fabricated.period_nm[i]),
                        wavelength_nm,
                        eps_film,
                        n_glass,
                        thickness_nm,
                    )
                    for i in range(len(fabricated))
                ]
            )
        finally:
            torch.set_num_threads(threads)

    def _solve_cell(
        self,
        image: NDArray[np.bool_],
        period_nm: float,
        wavelength_nm: FloatArray,
        eps_film: ComplexArray,
        n_substrate: ComplexArray,
        thickness_nm: float,
    ) -> FloatArray:
        T, _ = zero_order_powers(
            self._torch, self._torcwa, image, period_nm, wavelength_nm, eps_film, n_substrate,
            thickness_nm, self.config.orders, self.dtype, self.device, self.config.rayleigh_guard_nm,
        )  # fmt: skip
        out: FloatArray = np.clip(T, 0.0, 1.0)
        return out


def zero_order_powers(
    torch: ModuleType,
    torcwa: ModuleType,
    image: NDArray[np.bool_],
    period_nm: float,
    wavelength_nm: FloatArray,
    eps_film: ComplexArray,
    n_substrate: ComplexArray,
    thickness_nm: float,
    orders: tuple[int, int],
    dtype: Any,
    device: Any,
    guard_nm: float = 1e-3,
) -> tuple[FloatArray, FloatArray]:
    """Zero-order transmitted and reflected power, each (2, W) for x and y incidence, of one
    periodic cell whose silicon is ``image`` ([y, x] raster, any circular shift allowed)."""
    solve_nm = nudge_off_anomalies(wavelength_nm, period_nm, orders, n_substrate.real, guard_nm)
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    mask = torch.as_tensor(
        np.ascontiguousarray(np.asarray(image, dtype=np.float64).T), dtype=real, device=device
    )
    T = np.empty((2, wavelength_nm.size))
    R = np.empty((2, wavelength_nm.size))
    zero = [[0, 0]]
    for w, lam in enumerate(solve_nm):
        sim = torcwa.rcwa(
            freq=1.0 / lam, order=list(orders), L=[period_nm, period_nm], dtype=dtype, device=device
        )
        sim.add_input_layer(eps=1.0)
        sim.add_output_layer(eps=complex(n_substrate[w] ** 2))
        sim.set_incident_angle(inc_ang=0.0, azi_ang=0.0)
        sim.add_layer(
            thickness=thickness_nm, eps=1.0 + (complex(eps_film[w]) - 1.0) * mask.to(dtype)
        )
        sim.solve_global_smatrix()
        for port, target in (("transmission", T), ("reflection", R)):
            s = {
                pol: complex(sim.S_parameters(zero, direction="forward", port=port, polarization=pol, ref_order=[0, 0], power_norm=True).reshape(-1)[0])
                for pol in ("xx", "yx", "yy", "xy")
            }  # fmt: skip
            target[0, w] = abs(s["xx"]) ** 2 + abs(s["yx"]) ** 2
            target[1, w] = abs(s["yy"]) ** 2 + abs(s["xy"]) ** 2
    return T, R
