"""Prediction on a Dask cluster from QGIS: what a run needs on the UI thread.

Dask is optional (:func:`deps.dask_missing` names the install command). It is imported on the
UI thread (:func:`preload_dask`), for the reason torch is (``tasks.preload_torch``): its many
modules, imported in a worker thread, set off garbage collections there that hold the GIL and
freeze the QGIS event loop. Inside QGIS ``sys.executable`` is QGIS itself, so a local cluster's
worker processes are started with QGIS's Python instead (:func:`prepare_cluster`).
"""

from __future__ import annotations

import multiprocessing
import os

from ml_core.config import ClusterOptions
from ml_core.errors import InputError

from . import deps


def default_workers() -> int:
    """The workers of a new local cluster (the dock's local choice, the cluster algorithms'
    default): every core but one (kept for the QGIS UI)."""
    return max(1, (os.cpu_count() or 2) - 1)


def dask_missing_text() -> str:
    """Why prediction on a cluster is unavailable and the command that fixes it; "" when Dask
    can be imported."""
    missing = deps.dask_missing()
    if missing is None:
        return ""
    return ("Prediction on a cluster needs Dask, which QGIS's Python cannot import. Install it "
            f"with: {missing.command}.")


def preload_dask() -> None:
    """Import ``distributed`` here (the UI thread); :class:`InputError` with the fix when it
    cannot be imported."""
    from ml_core.infer.cluster import require_dask

    require_dask()


def prepare_cluster(cluster: ClusterOptions) -> None:
    """Get ready to run on ``cluster`` from QGIS (nothing when it is not enabled): Dask
    imported and, for a local cluster, its workers started by QGIS's own Python."""
    if not cluster.enabled:
        return
    preload_dask()
    if not cluster.scheduler:
        try:
            multiprocessing.set_executable(deps.python_executable())
        except deps.PythonNotFound as exc:
            raise InputError(f"A local Dask cluster starts its workers with QGIS's Python, "
                             f"which bfe cannot find: {exc} Or give the address of a running "
                             "Dask scheduler instead.") from exc
