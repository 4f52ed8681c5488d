"""Predict windows on a Dask cluster and hand them back in window order.

:class:`ClusterRunner` is the ``runner`` of :func:`ml_core.infer.predict.predict_raster`: the
windows are cut into tasks of ``windows_per_task`` consecutive windows; a task gets the raster
path, the plan (:class:`~ml_core.infer.predict.WindowJob`) and its windows, never pixels. At
most a few tasks per worker thread are submitted ahead of the one the blender needs next, so
the client's memory stays bounded by that many tasks' results. Earlier tasks have higher
priority. When a worker dies, Dask reruns its tasks elsewhere (a restarted worker fetches the
model from another one), so the output is complete and the same. Progress is the share of
finished tasks, reported when it changes; a cancel request cancels the submitted tasks within
about 0.25 s.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Optional

from osgeo import gdal

from ml_core.config import ClusterOptions, PredictOptions
from ml_core.errors import BfeError, InputError
from ml_core.events import CancelToken, ProgressCallback, ProgressEvent, check_cancel, emit
from ml_core.infer.cluster import require_dask
from ml_core.infer.cluster.worker import model_blob, predict_task
from ml_core.infer.predict import WindowJob
from ml_core.infer.tiling import Window
from ml_core.learn.modelfile import LoadedModel

POLL_S = 0.25  # how often a wait checks for cancel and reports progress
AHEAD_PER_THREAD = 3  # tasks submitted ahead per worker thread (enough to keep each busy)


class ClusterRunner:
    """Runs a prediction's windows as tasks on ``client``'s cluster (see the module docstring)."""

    def __init__(self, client, cluster: ClusterOptions, options: PredictOptions) -> None:
        self.client, self.cluster, self.options = client, cluster, options

    def __call__(self, ds: gdal.Dataset, loaded: LoadedModel, job: WindowJob,
                 windows: Sequence[Window], progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> Iterator[tuple]:
        path = ds.GetDescription()
        if not path or path.startswith("/vsimem/"):
            raise InputError("Prediction on a cluster needs a raster file (or VRT) the workers "
                             "can open; this raster exists only in memory. Save it first.")
        require_dask()
        n = self.cluster.windows_per_task
        chunks = [list(windows[i:i + n]) for i in range(0, len(windows), n)]
        blob = self.client.scatter(model_blob(loaded), broadcast=True, hash=True)
        prefix = f"bfe-predict-{uuid.uuid4().hex[:8]}"
        pending: deque = deque()
        submitted = consumed = 0
        reported = [-1]  # tasks done at the last report: one event per change of the count

        def report(threads: int) -> None:
            done = consumed + sum(f.done() for f in pending)
            if done == reported[0]:
                return
            reported[0] = done
            emit(progress, ProgressEvent(
                "predict", done / max(len(chunks), 1),
                f"task {done}/{len(chunks)} on {threads} worker thread(s)",
                extra={"tasks_done": done, "tasks": len(chunks)}))

        try:
            while consumed < len(chunks):
                threads = sum(self.client.nthreads().values())  # workers may come and go
                while submitted < len(chunks) and (
                        submitted - consumed < max(2, AHEAD_PER_THREAD * threads)):
                    pending.append(self.client.submit(
                        predict_task, path, blob, job, chunks[submitted], self.options.device,
                        self.cluster.torch_threads, key=f"{prefix}-{submitted}",
                        priority=-submitted, pure=False))
                    submitted += 1
                results = _result(pending[0], lambda t=threads: report(t), cancel)
                pending.popleft()
                consumed += 1
                yield from results
                report(threads)
        finally:
            self.client.cancel(list(pending))
            self.client.cancel([blob])


def _result(future, report, cancel: Optional[CancelToken]) -> list:
    """The result of ``future``, checking for cancel and reporting progress meanwhile."""
    distributed = require_dask()
    while True:
        check_cancel(cancel)
        try:
            distributed.wait(future, timeout=POLL_S)
        except TimeoutError:
            report()
            continue
        try:
            return future.result()
        except BfeError:
            raise
        except Exception as exc:  # the worker's own error, e.g. bfe missing there
            raise InputError(
                f"A cluster task failed ({type(exc).__name__}: {exc}). Every worker needs "
                "bfe, GDAL and torch installed, the raster readable at the same path, and "
                "memory for a task (see 'Tiles one cluster task predicts').") from exc
