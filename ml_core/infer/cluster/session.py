"""A Dask client for a job: a local cluster of worker processes, or a running scheduler."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from ml_core.config import ClusterOptions
from ml_core.errors import InputError
from ml_core.infer.cluster import require_dask

CONNECT_TIMEOUT_S = 10
PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


def worker_environment() -> contextlib.AbstractContextManager:
    """Dask's environment for new worker processes, less ``MALLOC_TRIM_THRESHOLD_``: that
    setting turns off glibc's adaptive mmap threshold, so each of torch's large activation
    buffers is mapped and zeroed anew; measured here, a U-Net forward ran ~1.5x slower in a
    worker than in the parent with it, as fast without it."""
    import dask

    environ = dask.config.get(PRE_SPAWN, {})
    return dask.config.set({PRE_SPAWN: {k: v for k, v in environ.items()
                                        if k != "MALLOC_TRIM_THRESHOLD_"}})


@contextlib.contextmanager
def cluster_client(options: ClusterOptions, memory_limit: str = "auto") -> Iterator:
    """A ``distributed.Client`` for ``options`` (closed, with its local cluster, on exit).

    A local cluster has ``options.workers`` processes of one thread each on 127.0.0.1 (one
    thread: GDAL datasets and torch's threads are per process); its HTTP endpoint (the dashboard
    where bokeh is installed) listens on a free port of 127.0.0.1.
    """
    distributed = require_dask()
    cluster = None
    if options.scheduler:
        try:
            client = distributed.Client(options.scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"Cannot reach the Dask scheduler at {options.scheduler} ({exc}). "
                             "Check the address, or start one with 'dask scheduler' and "
                             "'dask worker ADDRESS' on each machine.") from exc
    else:
        with worker_environment():
            cluster = distributed.LocalCluster(
                n_workers=options.workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address="127.0.0.1:0", memory_limit=memory_limit,
                silence_logs=logging.ERROR)
        client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
