"""The project's one way onto ``dask.distributed``: a client on a running scheduler, or on a
LocalCluster of worker processes started here (DESIGN.md, "Growing past one machine").

Probe-database builds (``models.probes``) and RCWA spectra (``simulators.spectral``) both start
their clusters through :class:`DaskCluster`, so the two agree on what a local cluster is (worker
*processes*, one thread each, the scheduler's HTTP endpoint on a free localhost port), on how
long to wait for one, and on the one-line errors for a bad or silent scheduler address or a
missing ``distributed``.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from common.values import Bounds

# Worker processes of a LocalCluster; 0 is "no cluster" to the commands that accept it.
LOCAL_WORKERS = Bounds(0, 1024, integer=True)

# A remote scheduler that does not answer in 10 s is not there; a local cluster's own processes
# may take longer to come up on a busy machine.
REMOTE_TIMEOUT = "10s"
LOCAL_TIMEOUT = "120s"


def check_address(address: str, name: str = "scheduler") -> str:
    """``address`` when it is a dask scheduler address (``tcp://host:port``, ``host:port``, or
    another scheme dask knows); else a one-line ValueError naming ``name``. Checked before a
    Client is made: a Client refused for its address lingers and times out noisily at exit."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme != "inproc":
            parse_host_port(location)
    except ValueError as exc:
        raise ValueError(
            f"{name} {address!r} is not a dask scheduler address ({exc}); give tcp://HOST:PORT"
        ) from None
    return address


class DaskCluster:
    """A ``distributed.Client`` on the scheduler at ``address`` or, with ``address=None``, on a
    LocalCluster of ``local_workers`` processes with ``threads_per_worker`` threads each (which
    this object owns and closes). Use it as a context manager, or call :meth:`close`."""

    def __init__(
        self, address: str | None, local_workers: int = 2, *, threads_per_worker: int = 1
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            where = f"--scheduler {address}" if address else "a local cluster"
            raise ValueError(
                f"{where} needs dask.distributed, which is not installed (pip install distributed)"
            ) from None
        if address is not None:
            check_address(address)
        self.address = address
        self.cluster: Any = None
        # distributed sets its loggers to INFO on import; follow the application's level, so a
        # command run without --verbose does not print the cluster's start-up and shut-down.
        chatter = logging.getLogger("distributed")
        chatter.setLevel(max(chatter.getEffectiveLevel(), logging.getLogger().getEffectiveLevel()))
        if address is None:
            LOCAL_WORKERS.check("local_workers", local_workers)
            if local_workers < 1:
                raise ValueError("local_workers must be >= 1 for a local cluster")
            self.cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=local_workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                # A free port on localhost: with None the scheduler's HTTP server still takes
                # 8787 and warns when another cluster on the machine holds it.
                dashboard_address="127.0.0.1:0",
            )
        try:
            self.client: Any = Client(  # type: ignore[no-untyped-call]
                self.cluster if self.cluster is not None else address,
                timeout=LOCAL_TIMEOUT if self.cluster is not None else REMOTE_TIMEOUT,
            )
        except OSError as exc:
            self._close_cluster()
            raise ValueError(f"cannot reach the Dask scheduler at {address} ({exc})") from None

    @property
    def nthreads(self) -> int:
        """Worker threads the scheduler knows of now (at least 1: a remote cluster's workers
        may still be joining)."""
        threads: dict[str, int] = self.client.nthreads()
        return max(1, sum(threads.values()))

    def close(self) -> None:
        """Close the client and, if this object started it, the local cluster (idempotent)."""
        client, self.client = self.client, None
        try:
            if client is not None:
                client.close()
        finally:
            self._close_cluster()

    def _close_cluster(self) -> None:
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            cluster.close()

    def __enter__(self) -> DaskCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
