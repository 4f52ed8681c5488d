"""QgsTask adapters over ml_core calls.

A task runs one ml_core step in a QGIS worker thread. It only adapts the progress callback to
``setProgress`` plus a ``progress_event`` signal (a ``ProgressEvent.to_dict()``, delivered to
the UI thread by Qt) and cancellation to ``CancelToken(is_cancelled=self.isCanceled)``. It never
touches widgets, layers or the project: ``finished()`` (UI thread) hands the result to
``on_done`` or the error to ``on_error``. The ml_core step is imported in ``__init__``, on the
UI thread: importing torch inside a worker thread can crash QGIS. The same holds for what torch
imports lazily on first use (:func:`preload_torch`): an import in the worker also blocks the UI,
because the many new objects trigger full garbage collections there, which hold the GIL.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from osgeo import gdal_array  # noqa: F401  ReadAsArray imports it on first use: not in a worker
from qgis.core import Qgis, QgsRasterDataProvider, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ml_core.config import (
    ClusterOptions,
    ExtractOptions,
    JobSpec,
    PredictOptions,
    RasterizeOptions,
)
from ml_core.errors import Cancelled
from ml_core.events import CancelToken, ProgressCallback, ProgressEvent

from .cluster import prepare_cluster
from .imagery import FetchResult, ImageryRequest, ServiceErrors, clip_raster, fetch
from .messages import format_traceback, log
from .sources import base_model

if TYPE_CHECKING:  # types only: the Processing provider loads tasks without the dock widgets
    from ml_core.osm.export import ExportResult

    from .widgets.export import ExportRequest

PREDICT_SHARE = 0.85  # of an extraction's progress bar; the rest is polygonising
OnDone = Callable[[Any], None]
OnError = Callable[[BaseException, str], None]
_TORCH_READY = False


def preload_torch() -> None:
    """Import torch and what it imports lazily on first use, on the calling (UI) thread.

    The optimisers' ``@torch._disable_dynamo`` methods import ``torch._dynamo`` (with sympy and
    mpmath, about 800 modules) on their first call, and ``step`` imports a profiler module. Done
    in a worker thread, those imports trigger full (generation 2) garbage collections there that
    hold the GIL for 0.1-0.3 s each, freezing the QGIS event loop. A zero-learning-rate step of
    each optimiser triggers them here instead. Runs once; a failure here (e.g. an older sympy
    on the path that torch._dynamo rejects) is left for the task to report as its error.
    """
    global _TORCH_READY
    if _TORCH_READY:
        return
    _TORCH_READY = True
    import torch

    try:
        import torch._dynamo  # named: the import the warm-up below must not miss

        param = torch.zeros(1, requires_grad=True)
        param.grad = torch.zeros(1)
        for optimizer in (torch.optim.AdamW([param], lr=0.0), torch.optim.SGD([param], lr=0.0)):
            optimizer.step()
    except Exception as exc:  # never out of the dock's constructor or a Qt slot
        log(f"torch warm-up failed: {exc!r}", Qgis.Warning)


def limit_torch_threads() -> None:
    """Leave one core to the QGIS UI thread."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))


def _release_frames(exc: Optional[BaseException]) -> None:
    """Drop the locals of the frames in ``exc``'s tracebacks (its chain too), once formatted.

    They hold what the failed step had open, e.g. GDAL datasets: kept alive by the task, they
    would lock files (Windows) and be closed only by a garbage collection, possibly after QGIS
    has exited, which crashes in GDALClose.
    """
    while exc is not None:
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


class CoreTask(QgsTask):
    """Runs ``step(progress=..., cancel=...)`` (an ml_core call with its inputs bound)."""

    progress_event = pyqtSignal(dict)

    def __init__(self, description: str, step: Callable[..., Any], on_done: OnDone,
                 on_error: OnError) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.step = step
        self._on_done = on_done
        self._on_error = on_error
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.details = ""

    def run(self) -> bool:
        try:
            self.result = self.step(progress=self._progress,
                                    cancel=CancelToken(is_cancelled=self.isCanceled))
        except Exception as exc:  # reported in finished(), on the UI thread
            self.error, self.details = exc, format_traceback(exc)
            _release_frames(exc)
            return False
        return True

    def _progress(self, event: ProgressEvent) -> None:
        self.setProgress(100.0 * min(max(event.fraction, 0.0), 1.0))
        self.progress_event.emit(event.to_dict())

    def finished(self, ok: bool) -> None:
        if ok:
            self._on_done(self.result)
        else:
            self._on_error(self.error or Cancelled("Cancelled by the user."), self.details)


class RasterizeTask(CoreTask):
    """Building polygons to a partial label mask."""

    def __init__(self, raster: str, buildings: str, out_path: Path, options: RasterizeOptions,
                 on_done: OnDone, on_error: OnError) -> None:
        from ml_core.labels.rasterize import rasterize_labels

        super().__init__("bfe: rasterise labels",
                         partial(rasterize_labels, raster, buildings, out_path, options),
                         on_done, on_error)


class FinetuneTask(CoreTask):
    """Fine-tune a model; on cancel the best checkpoint so far stays at ``out_model``."""

    def __init__(self, raster: str, buildings: str, out_model: Path, job: JobSpec,
                 base: Optional[str], bands: Optional[list], on_done: OnDone,
                 on_error: OnError) -> None:
        from ml_core.learn.train import finetune

        self.out_model = out_model
        step = partial(finetune, raster, buildings, out_model, job.train, base=base_model(base),
                       bands=bands, rasterize=job.rasterize, loss_options=job.loss)
        super().__init__("bfe: fine-tune", torch_step(step), on_done, on_error)


class ExportTask(CoreTask):
    """New buildings to an .osm file for JOSM or GeoJSON, as the Export panel's ``request``
    says; quick, so it is not cancelled midway: the file is written whole or not at all."""

    def __init__(self, request: ExportRequest, on_done: OnDone, on_error: OnError) -> None:
        from ml_core.osm.export import export_buildings

        self.request = request

        def step(progress: ProgressCallback, cancel: CancelToken) -> ExportResult:
            return export_buildings(request.footprints, request.out, source=request.source,
                                    layer=request.layer, accepted_only=request.accepted_only,
                                    on_flagged=request.on_flagged, progress=progress)

        super().__init__("bfe: export for OSM", step, on_done, on_error)


@dataclass
class ExtractJob:
    """Everything an extraction needs, as plain paths and options."""

    raster: str
    model: str
    probability: Path
    footprints: Path
    predict: PredictOptions
    extract: ExtractOptions
    bands: Optional[list] = None
    extent: Optional[tuple] = None  # xmin, ymin, xmax, ymax in the raster's CRS
    aoi: Optional[str] = None  # polygon file limiting the area
    existing: Optional[str] = None  # the user's buildings, to find the new ones
    hints: Optional[Path] = None  # where to write "look here first" hints (None: no hints)
    previous: Optional[str] = None  # a reviewed new-buildings file whose answers carry over
    cluster: ClusterOptions = field(default_factory=ClusterOptions)  # where prediction runs


def torch_step(step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` with torch limited to the cores the UI does not need.

    Called in a task's ``__init__``, on the UI thread: it imports torch there (see
    :func:`preload_torch`), so that the step imports nothing in the worker thread.
    """
    preload_torch()

    def run(**kwargs: Any) -> Any:
        limit_torch_threads()
        return step(**kwargs)

    return run


def stage_progress(progress: ProgressCallback, start: float, span: float) -> ProgressCallback:
    """Map a stage's 0..1 onto ``start .. start + span`` of the whole task."""

    def forward(event: ProgressEvent) -> None:
        progress(replace(event, fraction=start + span * event.fraction))

    return forward


class ExtractTask(CoreTask):
    """Predict probability over the area (in this process, or on the Dask cluster of
    ``job.cluster``: a local one is started and closed by the task), then polygonise it
    (footprints, new buildings) and, with ``job.hints``, write the uncertainty hints."""

    def __init__(self, job: ExtractJob, on_done: OnDone, on_error: OnError) -> None:
        from ml_core.infer.cluster.predict import predict_anywhere
        from ml_core.infer.extract import extract_footprints
        from ml_core.review.hints import hints
        from ml_core.review.loop import carry_decisions

        self.job = job
        prepare_cluster(job.cluster)

        def step(progress: ProgressCallback, cancel: CancelToken) -> Any:
            predict_anywhere(job.raster, job.model, job.probability, job.predict, job.cluster,
                             bands=job.bands, extent=job.extent, aoi=job.aoi, cancel=cancel,
                             progress=stage_progress(progress, 0.0, PREDICT_SHARE))
            result = extract_footprints(job.probability, job.footprints, job.extract,
                                        existing=job.existing, cancel=cancel,
                                        progress=stage_progress(progress, PREDICT_SHARE,
                                                                1.0 - PREDICT_SHARE))
            if job.previous is not None:
                carry_decisions(job.previous, job.footprints)
            if job.hints is not None:
                hints(job.probability, job.existing, job.hints, new_buildings=job.footprints,
                      min_area=job.extract.min_area, cancel=cancel)
            return result

        super().__init__("bfe: extract buildings", torch_step(step), on_done, on_error)


class FetchingTask(CoreTask):
    """A task that may fetch imagery: a failure says what the imagery server answered."""

    def watch(self, request: Optional[ImageryRequest]) -> None:
        """Listen to the replies of ``request``'s server until the task finishes."""
        self.service = ServiceErrors(request) if request is not None else None

    def finished(self, ok: bool) -> None:
        if self.service is not None:
            self.service.close()
            if self.error is not None:
                self.error = self.service.explain(self.error)
        super().finished(ok)


class ImageryTask(FetchingTask):
    """Fetch imagery from a layer (XYZ, WMS, WMTS, a file) into a cached GeoTIFF."""

    def __init__(self, request: ImageryRequest, provider: QgsRasterDataProvider, folder: Path,
                 on_done: OnDone, on_error: OnError) -> None:
        self.provider = provider  # a clone made on the UI thread; the pipe takes it over
        super().__init__(f"bfe: fetch imagery from {request.name}",
                         partial(fetch, request, folder, provider), on_done, on_error)
        self.watch(request)


# Shares of the whole chain's progress bar, by stage (fetch only when imagery is fetched).
CHAIN_SHARES = {"fetch": 0.08, "rasterize": 0.02, "train": 0.75, "predict": 0.12,
                "extract": 0.03}
_SAME_STAGE = {"validate": "train"}


class ChainProgress:
    """One progress bar and one ETA over several stages (a :data:`ProgressCallback`).

    Each stage's 0..1 is mapped onto its share of :data:`CHAIN_SHARES`. The ETA for the whole
    chain is the remaining share divided by the current rate: from the stage's own ETA when it
    gives one (fine-tuning knows its time budget), else from the stage's progress so far, else
    from the chain's. Events of unknown stages keep the current fraction.
    """

    def __init__(self, progress: ProgressCallback, stages: tuple, clock=time.monotonic) -> None:
        total = sum(CHAIN_SHARES[s] for s in stages)
        self.spans: dict = {}
        start = 0.0
        for stage in stages:
            self.spans[stage] = (start, CHAIN_SHARES[stage] / total)
            start += CHAIN_SHARES[stage] / total
        self._progress, self._clock = progress, clock
        self._t0 = clock()
        self._stage: Optional[str] = None
        self._stage_t0 = self._t0
        self.fraction = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        stage = _SAME_STAGE.get(event.stage, event.stage)
        now = self._clock()
        eta = None
        if stage in self.spans:
            if stage != self._stage:
                self._stage, self._stage_t0 = stage, now
            start, span = self.spans[stage]
            done = min(max(event.fraction, 0.0), 1.0)
            self.fraction = max(self.fraction, start + span * done)
            eta = self._eta(event, span, done, now)
        self._progress(replace(event, fraction=self.fraction, eta_s=eta))

    def _eta(self, event: ProgressEvent, span: float, done: float, now: float) -> Optional[float]:
        left = 1.0 - self.fraction
        if event.eta_s is not None and done < 1.0:
            rate = span * (1.0 - done) / max(event.eta_s, 1e-3)
        elif done > 0.05 and now > self._stage_t0:
            rate = span * done / (now - self._stage_t0)
        elif self.fraction > 0.02 and now > self._t0:
            rate = self.fraction / (now - self._t0)
        else:
            return None
        return left / rate


@dataclass
class ChainJob:
    """'Find missing buildings': the area's imagery, the buildings, where to write, options."""

    buildings: str
    outdir: Path
    spec: JobSpec  # the options of every step, as the dock's forms give them
    raster: Optional[str] = None  # a GDAL raster, clipped to ``extent`` when given
    extent: Optional[tuple] = None  # xmin, ymin, xmax, ymax in the raster's CRS
    imagery: Optional[ImageryRequest] = None  # fetched first instead of ``raster``
    imagery_folder: Optional[Path] = None
    base: Optional[str] = None
    bands: Optional[list] = None
    fetched: Optional[FetchResult] = field(default=None, compare=False)

    @property
    def model(self) -> Path:
        """Where the chain's fine-tuned model is (the best so far, also after a cancel)."""
        return self.outdir / "model.safetensors"

    @property
    def probability(self) -> Path:
        return self.outdir / "probability.tif"

    @property
    def footprints(self) -> Path:
        return self.outdir / "footprints.gpkg"

    @property
    def extract(self) -> ExtractOptions:
        return self.spec.extract


class ChainTask(FetchingTask):
    """Fetch or clip the area's imagery, then ``ml_core.pipeline.run`` on it (rasterise,
    fine-tune, predict, extract) behind one progress bar; cancel keeps the best model."""

    def __init__(self, job: ChainJob, provider: Optional[QgsRasterDataProvider],
                 on_done: OnDone, on_error: OnError) -> None:
        from ml_core.pipeline import run

        self.job, self.provider = job, provider
        base = base_model(job.base)
        prepare_cluster(job.spec.cluster)  # the dock's "Run prediction on" (predict stage)
        stages = ("fetch",) * (job.imagery is not None) + ("rasterize", "train", "predict",
                                                           "extract")

        def step(progress: ProgressCallback, cancel: CancelToken) -> Any:
            chain = ChainProgress(progress, stages)
            if job.imagery is not None:
                job.fetched = fetch(job.imagery, job.imagery_folder, provider, chain, cancel)
                raster = str(job.fetched.path)
            elif job.extent is not None:
                raster = str(clip_raster(job.raster, job.extent, job.outdir / "area.vrt"))
            else:
                raster = job.raster
            return run(raster, job.buildings, job.outdir, job.spec, base=base, bands=job.bands,
                       progress=chain, cancel=cancel)

        super().__init__("bfe: find missing buildings", torch_step(step), on_done, on_error)
        self.watch(job.imagery)
