"""``predict_on_cluster``: :func:`ml_core.infer.predict.predict_raster` with its windows run on
a Dask cluster (a local one of ``workers`` processes, a scheduler address, or a given client);
``predict_anywhere``: one or the other, as :class:`~ml_core.config.ClusterOptions` says."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from ml_core.config import ClusterOptions, PredictOptions
from ml_core.events import CancelToken, ProgressCallback
from ml_core.infer.cluster.runner import ClusterRunner
from ml_core.infer.cluster.session import cluster_client
from ml_core.infer.predict import PathLike, predict_raster
from ml_core.learn.modelfile import LoadedModel


def predict_on_cluster(raster: PathLike, model: Union[LoadedModel, PathLike], out_path: PathLike,
                       options: Optional[PredictOptions] = None,
                       cluster: Optional[ClusterOptions] = None, client=None,
                       bands: Optional[Sequence[int]] = None, extent: Optional[Sequence] = None,
                       aoi: Optional[PathLike] = None, progress: Optional[ProgressCallback] = None,
                       cancel: Optional[CancelToken] = None) -> Path:
    """Predict as ``predict_raster`` does (same arguments and output), on ``client``'s cluster,
    else on the one ``cluster`` describes (started here and closed afterwards)."""
    options = options or PredictOptions()
    cluster = cluster or ClusterOptions(workers=1)
    session = contextlib.nullcontext(client) if client is not None else cluster_client(cluster)
    with session as active:
        runner = ClusterRunner(active, cluster, options)
        return predict_raster(raster, model, out_path, options, bands=bands, extent=extent,
                              aoi=aoi, progress=progress, cancel=cancel, runner=runner)


def predict_anywhere(raster: PathLike, model: Union[LoadedModel, PathLike], out_path: PathLike,
                     options: Optional[PredictOptions] = None,
                     cluster: Optional[ClusterOptions] = None, **kwargs) -> Path:
    """``predict_raster`` in this process, or ``predict_on_cluster`` when ``cluster`` is
    enabled (``--workers``/``--scheduler``, the dock's "Run prediction on"): the one switch
    every front end uses. ``kwargs`` are those of ``predict_raster`` (bands, extent, aoi,
    progress, cancel). Dask is imported only for a cluster."""
    if cluster is not None and cluster.enabled:
        return predict_on_cluster(raster, model, out_path, options, cluster, **kwargs)
    return predict_raster(raster, model, out_path, options, **kwargs)
