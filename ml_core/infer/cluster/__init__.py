"""Prediction of a whole city or region on a Dask cluster (``dask.distributed``).

The single-process path (:func:`ml_core.infer.predict.predict_raster`) plans the windows, blends
them and writes the probability GeoTIFF; here only the middle step moves to the cluster: each
task reads its own windows through GDAL on a worker (no pixels through the scheduler), runs the
model (sent to the workers once, cached per worker) and returns the windows' probabilities.
The client blends them in window order with the same blender, so the raster equals the
single-process one within float tolerance, seams included. Dask is optional (the ``cluster``
extra): :func:`require_dask` names the install command when it is missing.

Modules: :mod:`.session` (local cluster or scheduler address), :mod:`.runner` (tasks, order,
progress from task counts, cancel), :mod:`.worker` (what runs on a worker), :mod:`.sources`
(a folder of GeoTIFFs as one VRT mosaic).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ml_core.errors import InputError

DASK_REQUIREMENT = "dask[distributed]==2026.8.0"  # as in pyproject.toml's 'cluster' extra


def require_dask() -> ModuleType:
    """``distributed``, or an :class:`InputError` with the command that installs it: when it is
    missing, and when importing it fails otherwise (a broken or mismatched install raises
    anything from its own imports), the cause chained."""
    try:
        return importlib.import_module("distributed")
    except Exception as exc:  # any import failure: the same message and fix
        raise InputError(
            f"Prediction on a cluster needs Dask, which cannot be imported ({exc}). Install it "
            f"with: pip install '{DASK_REQUIREMENT}' (or pip install -e '.[cluster]' in a bfe "
            "checkout), or predict in this process: in the CLI without --workers/--scheduler, "
            "in the dock with 'Run prediction on: this process', in Processing with 'Predict "
            "building probability'.") from exc
