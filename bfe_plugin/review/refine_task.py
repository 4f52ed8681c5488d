"""The next round as a QgsTask: labels from the review answers, then fine-tuning that starts
from the current model (``ml_core.review.loop.run_round``).

``round_job`` snapshots the QGIS layers to files on the UI thread; ``RefineTask.run`` only
sees paths, and the result (a ``RoundResult``) reaches ``on_done`` in ``finished()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional

from qgis.core import QgsVectorLayer

from ml_core.config import JobSpec
from ml_core.errors import InputError

from ..sources import vector_path
from ..tasks import CoreTask, OnDone, OnError, torch_step


@dataclass
class RoundJob:
    """Everything a review round needs, as plain paths and options (``spec``: as the round
    trains it, ``JobSpec.for_review_round``)."""

    raster: str
    buildings: str
    new_buildings: str
    current_model: str
    out_model: Path
    spec: JobSpec
    complete_area: Optional[str] = None
    bands: Optional[list] = None


def round_job(raster: str, buildings: str, new_layer: Optional[QgsVectorLayer],
              complete_layer: Optional[QgsVectorLayer], current_model: str, folder: Path,
              spec: JobSpec, bands: Optional[list] = None) -> RoundJob:
    """Write the reviewed proposals and the complete areas (if any) to files in ``folder``;
    the round trains with ``spec.for_review_round()``."""
    if new_layer is None:
        raise InputError("Extract buildings and review the proposals before fine-tuning again.")
    complete = None
    if complete_layer is not None and complete_layer.featureCount() != 0:  # -1: not counted
        complete = vector_path(complete_layer, folder / "complete_areas.gpkg",
                               osm_buildings=False)  # areas: every polygon
    return RoundJob(raster, buildings, vector_path(new_layer, folder / "reviewed.gpkg"),
                    current_model, folder / "model.safetensors", spec.for_review_round(),
                    complete, bands)


class RefineTask(CoreTask):
    """Fine-tune again on the reviewed labels; on cancel the best checkpoint so far stays."""

    def __init__(self, job: RoundJob, on_done: OnDone, on_error: OnError) -> None:
        from ml_core.review.loop import run_round  # torch: imported on the UI thread

        self.job = job
        self.out_model = job.out_model
        step = partial(run_round, job.raster, job.buildings, job.new_buildings,
                       job.current_model, job.out_model, job.spec, job.complete_area,
                       bands=job.bands)
        super().__init__("bfe: fine-tune again (review round)", torch_step(step), on_done,
                         on_error)
