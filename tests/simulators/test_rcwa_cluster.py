"""RCWA on dask.distributed: a LocalCluster gives exactly the in-process spectra, and the cache
lets a killed run resume and a repeated run solve nothing. Tiny orders and rasters keep it fast;
the cost is the worker processes starting (each imports torch)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest

from layout.design import DesignLibrary
from layout.generator import generate
from simulators.spectral import rcwa_cluster
from simulators.spectral.rcwa import RcwaConfig, RcwaModel
from simulators.spectral.rcwa_cluster import task_size

W = np.array([460.0, 560.0, 700.0])
BIAS = np.array([0.0, 0.0, 1.5, 0.0, -2.0, 0.0])
FAST = {"orders": (1, 1), "raster_size": 64, "device": "cpu"}


@pytest.fixture(scope="module")
def lib() -> DesignLibrary:
    return generate(6, seed=3)


@pytest.fixture(scope="module")
def in_process(lib: DesignLibrary) -> np.ndarray:
    return RcwaModel(RcwaConfig(**FAST)).spectra(lib, W, thickness_nm=178.0, size_bias_nm=BIAS)


def cache_rows(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return sum(int(g["design_id"].shape[0]) for g in f.values())


def test_local_cluster_equals_one_process_and_a_repeat_solves_nothing(
    tmp_path: Path,
    lib: DesignLibrary,
    in_process: np.ndarray,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path / "cache.h5"
    twice = DesignLibrary.concatenate([lib, lib])  # replicas are solved once, then copied
    model = RcwaModel(RcwaConfig(**FAST, workers=2, cache_path=cache))
    try:
        s = model.spectra(twice, W, thickness_nm=178.0, size_bias_nm=np.concatenate([BIAS] * 2))
        assert model.cluster().nthreads == 2
    finally:
        model.close()
    np.testing.assert_array_equal(s, np.concatenate([in_process, in_process]))  # bit for bit
    assert cache_rows(cache) == 6

    def no_cluster(*args: object) -> None:
        raise AssertionError("a run with everything cached must not solve")

    monkeypatch.setattr(rcwa_cluster, "solve_on_cluster", no_cluster)
    again = RcwaModel(RcwaConfig(**FAST, workers=2, cache_path=cache))
    with caplog.at_level(logging.INFO, logger="simulators.spectral.rcwa"):
        s2 = again.spectra(lib, W, thickness_nm=178.0, size_bias_nm=BIAS)
    assert again._cluster is None  # no cluster was even started
    assert "6 of 6 designs from cache" in caplog.text
    np.testing.assert_array_equal(s2, in_process)


def test_tasks_are_small_enough_to_share_out() -> None:
    assert task_size(6, 2, 8) == 1
    assert task_size(1000, 2, 8) == 8  # at most cache_every
    assert task_size(100, 2, 64) == 13  # four tasks per worker thread
    assert task_size(5, 0, 8) == 2  # no worker known yet counts as one


SCRIPT = (
    textwrap.dedent(
        """
    import logging, sys
    import numpy as np
    from layout.generator import generate
    from simulators.spectral.cache import SpectraCache
    from simulators.spectral.rcwa import RcwaConfig, RcwaModel

    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        cache, out, pause = sys.argv[1], sys.argv[2], sys.argv[3] == "pause"
        if pause:
            append = SpectraCache.append

            def append_then_wait(self, *args):
                append(self, *args)
                print("appended", flush=True)
                sys.stdin.readline()  # the test SIGKILLs this process while it waits here

            SpectraCache.append = append_then_wait
        lib = generate(6, seed=3)
        bias = np.array(BIAS)
        config = RcwaConfig(orders=(1, 1), raster_size=64, device="cpu", workers=2,
                            cache_path=cache)
        lam = np.array(WAVELENGTHS)
        s = RcwaModel(config).spectra(lib, lam, thickness_nm=178.0, size_bias_nm=bias)
        np.save(out, s)
    """
    )
    .replace("BIAS", repr(BIAS.tolist()))
    .replace("WAVELENGTHS", repr(W.tolist()))
)


def test_killed_run_resumes_and_solves_only_the_missing_designs(
    tmp_path: Path, in_process: np.ndarray
) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    cache, out = tmp_path / "cache.h5", tmp_path / "s.npy"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, str(script), str(cache), str(out), "pause"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as first:
        try:
            assert first.stdout is not None
            assert first.stdout.readline().strip() == "appended"  # a finished task is on disk
            workers = psutil.Process(first.pid).children(recursive=True)
            assert workers  # the LocalCluster's processes
        finally:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, "the LocalCluster's workers outlived the killed client"
    assert not out.exists()
    kept = cache_rows(cache)
    assert 1 <= kept < 6

    rerun = subprocess.run(
        [sys.executable, str(script), str(cache), str(out), "run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"rcwa: {kept} of 6 designs from cache" in rerun.stderr
    assert f"rcwa: solving {6 - kept} designs as" in rerun.stderr
    assert cache_rows(cache) == 6  # the cached designs were not solved and appended again
    np.testing.assert_array_equal(np.load(out), in_process)
