"""The bfe dock: inputs, labels, fine-tuning with a live chart, extraction, model.

Panels are separate widgets; ``add_section`` lets another module (e.g. a review panel) add one.
Every computation runs in a task from ``tasks.py``; this module only gathers inputs, starts
tasks, shows their progress and adds their results as layers.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Optional

from qgis.core import Qgis, QgsApplication, QgsProcessingUtils, QgsProject
from qgis.gui import QgsCollapsibleGroupBox, QgsDockWidget, QgsFileWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from qgis.PyQt.QtXml import QDomDocument

from ml_core.config import (
    ExtractOptions,
    JobSpec,
    LossOptions,
    PredictOptions,
    RasterizeOptions,
    TrainOptions,
)
from ml_core.errors import BfeError, InputError

from . import deps, imagery, layers
from .messages import log, report_error, report_success
from .review.panel import ReviewPanel
from .review.refine_task import RefineTask, round_job
from .tasks import (
    ChainJob,
    ChainTask,
    CoreTask,
    ExportTask,
    ExtractJob,
    ExtractTask,
    FinetuneTask,
    ImageryTask,
    RasterizeTask,
)
from .widgets.chart import TrainingChart
from .widgets.cluster import ClusterForm
from .widgets.export import ExportPanel, describe_export
from .widgets.fit import VerticalScroll, fit_narrow
from .widgets.inputs import InputsPanel
from .widgets.model import ModelPanel
from .widgets.options import OptionsForm

_RUNS = itertools.count(1)


def _format_eta(seconds: Optional[float]) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    return f"ETA {minutes}:{secs:02d}"


class BfeDock(QgsDockWidget):
    """The dock; ``install`` starts the dependency installation, ``missing`` lists what lacks."""

    def __init__(self, iface, install: Callable[[], None], missing: list[deps.Missing]) -> None:
        super().__init__("Building footprints (bfe)", iface.mainWindow())
        self.setObjectName("BfeDock")
        self.iface = iface
        self.task: Optional[CoreTask] = None
        body = QWidget()
        self.sections = QVBoxLayout(body)
        self._build_banner(install)
        self.inputs = InputsPanel(iface.mapCanvas())
        self.add_section("Inputs", self.inputs)
        self.inputs.fetch_button.clicked.connect(self.start_fetch)
        self.add_section("Find missing buildings", self._build_chain())
        self.add_section("Labels", self._build_labels())
        self.add_section("Fine-tune", self._build_finetune())
        self.add_section("Extract buildings", self._build_extract())
        self.review = ReviewPanel(iface.mapCanvas())
        self.review.refine_requested.connect(self.start_refine)
        self.review.error.connect(self._report)
        self.review.message.connect(lambda text: report_success(self.iface.messageBar(), text))
        self.review.split_requested.connect(self._split)
        self.review.layer_set.connect(self._show_review)
        self.review_box = self.add_section("Review", self.review)
        self.export = ExportPanel()
        self.export.button.clicked.connect(self.start_export)
        self.add_section("Export for OSM", self.export)
        self.model = ModelPanel()
        self.model.error.connect(self._report)
        self.add_section("Model", self.model)
        self.sections.addStretch(1)
        fit_narrow(body)
        self.setWidget(VerticalScroll(body))
        self.set_missing(missing)
        QgsProject.instance().readProject.connect(self._project_read)
        QgsProject.instance().writeProject.connect(self._project_written)

    # -- layout -----------------------------------------------------------------------------
    def add_section(self, title: str, widget: QWidget) -> QgsCollapsibleGroupBox:
        """Append a collapsible section holding ``widget`` (before the trailing stretch)."""
        box = QgsCollapsibleGroupBox(title)
        QVBoxLayout(box).addWidget(widget)
        index = self.sections.count()
        if index and self.sections.itemAt(index - 1).spacerItem() is not None:
            index -= 1
        self.sections.insertWidget(index, box)
        return box

    def _build_banner(self, install: Callable[[], None]) -> None:
        self.banner = QWidget()
        self.missing_banner = QLabel()
        self.missing_banner.setWordWrap(True)
        self.missing_banner.setTextInteractionFlags(Qt.TextSelectableByMouse)
        button = QPushButton("Install")
        button.clicked.connect(install)
        row = QHBoxLayout(self.banner)
        row.addWidget(self.missing_banner, 1)
        row.addWidget(button)
        self.sections.addWidget(self.banner)

    def _build_chain(self) -> QWidget:
        """One action for the common case, and the progress row every task shares."""
        panel = QWidget()
        self.find_button = QPushButton("Find missing buildings")
        self.find_button.setToolTip("On the chosen area: fetch the imagery if the raster is a "
                                    "service layer, rasterise the buildings, fine-tune the model "
                                    "and extract the buildings the layer lacks, in one go. The "
                                    "steps below do the same one at a time.")
        self.find_button.clicked.connect(self.start_chain)
        self.progress = QProgressBar()
        self.eta = QLabel()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop the running task; fine-tuning keeps its best model.")
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.eta)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(panel)
        layout.addWidget(self.find_button)
        layout.addLayout(row)
        return panel

    def _build_labels(self) -> QWidget:
        panel = QWidget()
        self.rasterize_form = OptionsForm(RasterizeOptions, primary=("unknown_margin",))
        self.rasterize_button = QPushButton("Rasterise labels")
        self.rasterize_button.clicked.connect(self.start_rasterize)
        layout = QVBoxLayout(panel)
        layout.addWidget(self.rasterize_form)
        layout.addWidget(self.rasterize_button)
        return panel

    def _build_finetune(self) -> QWidget:
        panel = QWidget()
        self.base_model = QgsFileWidget()
        self.base_model.setFilter("bfe model (*.safetensors)")
        self.base_model.setToolTip("Empty: the bundled base model (or a new model without one).")
        self.train_form = OptionsForm(TrainOptions, primary=("loss", "epochs", "minutes", "device"))
        self._loss_tooltips()
        self.loss_form = OptionsForm(LossOptions)  # all under "Advanced"
        self.device_label = QLabel()
        self.model_out = QgsFileWidget()
        self.model_out.setStorageMode(QgsFileWidget.SaveFile)
        self.model_out.setFilter("bfe model (*.safetensors)")
        self.model_out.setToolTip("Empty: a temporary file; save it from the Model section.")
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.clicked.connect(self.start_finetune)
        self.chart = TrainingChart()
        layout = QVBoxLayout(panel)
        layout.addWidget(QLabel("Base model"))
        layout.addWidget(self.base_model)
        layout.addWidget(self.train_form)
        layout.addWidget(QLabel("Loss parameters"))
        layout.addWidget(self.loss_form)
        layout.addWidget(self.device_label)
        layout.addWidget(QLabel("Save the fine-tuned model to"))
        layout.addWidget(self.model_out)
        layout.addWidget(self.finetune_button)
        layout.addWidget(self.chart)
        return panel

    def _build_extract(self) -> QWidget:
        panel = QWidget()
        self.predict_form = OptionsForm(PredictOptions, primary=("device", "tta"))
        self.cluster_form = ClusterForm()
        self.extract_form = OptionsForm(ExtractOptions, primary=("threshold", "min_area"))
        self.add_probability = QCheckBox("Add the probability raster")
        self.add_hints = QCheckBox("Add 'look here first' hints")
        self.add_hints.setToolTip("Where the model is unsure (probability near 0.5), OSM "
                                  "buildings it scores low, confident buildings OSM lacks")
        self.extract_button = QPushButton("Extract buildings")
        self.extract_button.clicked.connect(self.start_extract)
        layout = QVBoxLayout(panel)
        layout.addWidget(self.predict_form)
        layout.addWidget(self.cluster_form)
        layout.addWidget(self.extract_form)
        layout.addWidget(self.add_probability)
        layout.addWidget(self.add_hints)
        layout.addWidget(self.extract_button)
        return panel

    def _loss_tooltips(self) -> None:
        try:
            from ml_core.learn.losses import describe_loss
        except ImportError:
            return
        combo = self.train_form.editor("loss")
        for i in range(combo.count()):
            combo.setItemData(i, describe_loss(combo.itemText(i)), Qt.ToolTipRole)

    def set_missing(self, missing: list[deps.Missing]) -> None:
        """Show what is missing (torch) and how to fix it; detect the device once it is there."""
        self.banner.setVisible(bool(missing))
        self.missing_banner.setText("\n".join(deps.missing_text(m) for m in missing))
        for button in (self.find_button, self.rasterize_button, self.finetune_button,
                       self.extract_button):
            button.setEnabled(not missing)
        if not missing:
            self.device_label.setText(f"Device: {_describe_device()}")

    # -- running tasks ----------------------------------------------------------------------
    def _run_folder(self) -> Path:
        folder = Path(QgsProcessingUtils.tempFolder()) / f"bfe_run_{next(_RUNS)}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _start(self, task: CoreTask) -> None:
        self.task = task
        task.progress_event.connect(self._on_event)
        task.progressChanged.connect(self._on_progress)
        self.progress.setValue(0)
        self.eta.clear()
        self._set_busy(True)
        QgsApplication.taskManager().addTask(task)

    def _set_busy(self, busy: bool) -> None:
        for button in (self.find_button, self.rasterize_button, self.finetune_button,
                       self.extract_button, self.export.button):
            button.setEnabled(not busy)
        self.inputs.fetch_button.setEnabled(not busy and self.inputs.needs_fetch())
        self.cancel_button.setEnabled(busy)
        self.review.set_busy(busy)  # no decision, no second round while any task runs

    def _done(self) -> None:
        self.task = None
        self._set_busy(False)

    def _on_progress(self, value: float) -> None:
        self.progress.setValue(int(value))

    def _on_event(self, event: dict) -> None:
        self.eta.setText(_format_eta(event.get("eta_s")))
        if event.get("device"):
            self.device_label.setText(f"Device: {event['device']}")
        self.chart.add_event(event)

    def _error(self, exc: BaseException, details: str = "") -> None:
        """A task failed (or could not start): the dock is idle again."""
        self._done()
        report_error(self.iface.messageBar(), exc, details or None)

    def _report(self, exc: BaseException) -> None:
        """A panel action failed: a message only; a running task goes on."""
        report_error(self.iface.messageBar(), exc)

    def cancel(self) -> None:
        """Cancel the running task (honoured within about 2 s)."""
        if self.task is not None:
            self.task.cancel()

    def shutdown(self) -> None:
        """Cancel running work before the plugin unloads."""
        self.cancel()
        QgsProject.instance().readProject.disconnect(self._project_read)
        QgsProject.instance().writeProject.disconnect(self._project_written)
        self.save_settings()

    @property
    def _forms(self) -> tuple[OptionsForm | ClusterForm, ...]:
        return (self.rasterize_form, self.train_form, self.loss_form, self.predict_form,
                self.extract_form, self.cluster_form)

    def job(self, predicts: bool = True) -> JobSpec:
        """The run as the option forms describe it (the same JobSpec every front end builds).
        Only a step that ``predicts`` needs "Run prediction on" complete (a scheduler's
        address); rasterising, fine-tuning and a review round pass False."""
        return JobSpec.from_sections([form.options(predicts) if form is self.cluster_form
                                      else form.options() for form in self._forms])

    def save_settings(self) -> None:
        """Remember the options in the project and in QgsSettings (for new projects)."""
        for form in self._forms:
            form.save()

    def _project_read(self, _document: QDomDocument) -> None:
        """A project was opened: show its options, else those from QgsSettings."""
        for form in self._forms:
            form.restore()

    def _project_written(self, _document: QDomDocument) -> None:
        """The project is being saved; QGIS writes its entries after this, so ours go in too."""
        self.save_settings()

    def _guarded(self, start: Callable[[Path], CoreTask]) -> None:
        """Gather inputs and create the task; any problem goes to the message bar."""
        self.save_settings()
        try:
            self._start(start(self._run_folder()))
        except Exception as exc:  # an unexpected one too: never an exception out of a Qt slot
            self._error(exc)

    # -- find missing buildings: the whole chain in one task ---------------------------------
    def start_chain(self) -> None:
        """Fetch (a service layer) or clip the area, rasterise, fine-tune, extract: one task."""
        self.chart.clear()
        self._guarded(self._chain_task)

    def _chain_task(self, folder: Path) -> ChainTask:
        fetching = self.inputs.needs_fetch()
        request = self.inputs.imagery_request(self._model_pixel_m()) if fetching else None
        raster = None if fetching else self.inputs.raster()
        box = None if fetching else self.inputs.area_box()
        job = ChainJob(self.inputs.buildings(folder), folder, self.job(), raster=raster,
                       imagery=request, imagery_folder=imagery.cache_dir(),
                       base=self.base_model.filePath() or None,
                       bands=None if fetching else self.inputs.band_list())
        if box is not None:
            job.extent = (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum())
        provider = self.inputs.raster_layer().dataProvider().clone() if fetching else None
        return ChainTask(job, provider, self._chain_done, self._chain_failed)

    def _chain_done(self, report: dict) -> None:
        job, summary = self.task.job, report["summary"]
        self._done()
        run = layers.run_label(job.model)
        group = layers.result_group(self.inputs.raster_layer().name())
        if job.fetched is not None:
            layers.add_imagery(job.fetched.path, group, job.imagery.name,
                               job.imagery.resolution, layers.run_label(None))
        mask = layers.add_mask(job.outdir / "labels.tif", group, run=run)
        group.findLayer(mask.id()).setItemVisibilityChecked(False)
        if self.add_probability.isChecked():
            layers.add_probability(job.probability, group, run)
        _footprints, new = layers.add_footprints(job.footprints, group, run)
        self._use_model(job.model)
        self._review(new, job)
        dice = summary.get("val_dice")
        report_success(self.iface.messageBar(), (
            f"{summary['new_buildings']} buildings not in '{self.inputs.buildings_name()}' "
            f"({summary['footprints']} footprints) in {summary['seconds']:.0f} s; fine-tuned "
            f"{summary['epochs']} epoch(s), validation Dice "
            f"{'-' if dice is None else f'{dice:.2f}'}. Review them below."))

    def _chain_failed(self, exc: BaseException, details: str) -> None:
        job = self.task.job if isinstance(self.task, ChainTask) else None
        self._error(exc, details)
        if job is not None and job.model.exists():  # cancelled or failed late: the best model
            self._use_model(job.model)
            report_success(self.iface.messageBar(), f"The best model so far is kept: "
                           f"{job.model} (Model section).")

    def _model_pixel_m(self) -> float:
        """The pixel size (m) of the model that will be fine-tuned: imagery is fetched at it."""
        from ml_core.learn.modelfile import read_card

        return read_card(self.base_model.filePath() or self._bundled_base()).gsd_m

    # -- fetch imagery ----------------------------------------------------------------------
    def start_fetch(self) -> None:
        """Fetch the area of the service layer into a GeoTIFF layer, which becomes the raster."""
        self._guarded(self._fetch_task)

    def _fetch_task(self, _folder: Path) -> ImageryTask:
        request = self.inputs.imagery_request(self._model_pixel_m())
        return ImageryTask(request, self.inputs.raster_layer().dataProvider().clone(),
                           imagery.cache_dir(), self._fetched, self._error)

    def _fetched(self, result) -> None:
        self._done()
        request = result.request
        group = layers.result_group(self.inputs.raster_layer().name())
        layer = layers.add_imagery(result.path, group, request.name, request.resolution,
                                   layers.run_label(None))
        self.inputs.raster_combo.setLayer(layer)
        how = "from the cache" if result.cached else "fetched"
        report_success(self.iface.messageBar(), f"Imagery of '{request.name}' at "
                       f"{request.resolution} {how}: {result.path}. It is now the raster.")

    # -- rasterize --------------------------------------------------------------------------
    def start_rasterize(self) -> None:
        self._guarded(lambda folder: RasterizeTask(
            self.inputs.raster(), self.inputs.buildings(folder), folder / "labels.tif",
            self.job(predicts=False).rasterize, self._rasterized, self._error))

    def _rasterized(self, path: Path) -> None:
        self._done()
        layers.add_mask(path, layers.result_group(self.inputs.raster_layer().name()),
                        run=layers.run_label(None))
        report_success(self.iface.messageBar(), f"Labels rasterised to {path}.")

    # -- fine-tune --------------------------------------------------------------------------
    def start_finetune(self) -> None:
        self.chart.clear()
        self._guarded(lambda folder: FinetuneTask(
            self.inputs.raster(), self.inputs.buildings(folder),
            Path(self.model_out.filePath() or folder / "model.safetensors"),
            self.job(predicts=False), self.base_model.filePath() or None,
            self.inputs.band_list(), self._finetuned, self._finetune_failed))

    def _finetuned(self, result) -> None:
        self._done()
        self._use_model(result.model_path)
        report_success(self.iface.messageBar(),
                       f"Fine-tuned: {result.describe()}; model '{result.model_path.name}' "
                       "(Model section).")

    def _finetune_failed(self, exc: BaseException, details: str) -> None:
        out = self.task.out_model.with_suffix(".safetensors") if self.task else None
        self._error(exc, details)
        if out is not None and out.exists():  # cancelled or failed late: keep the best checkpoint
            self._use_model(out)

    def _use_model(self, path: Path) -> None:
        try:
            self.model.set_model(path)
        except BfeError as exc:
            self._report(exc)

    # -- extract ----------------------------------------------------------------------------
    def start_extract(self) -> None:
        self._guarded(self._extract_task)

    def _extract_task(self, folder: Path) -> ExtractTask:
        raster = self.inputs.raster()
        model = self.model.path or Path(self._bundled_base())
        extent, aoi = self.inputs.area_limits(folder)
        existing = self.inputs.buildings(folder) if self.inputs.has_buildings() else None
        spec = self.job()
        job = ExtractJob(raster, str(model), folder / "probability.tif",
                         folder / "footprints.gpkg", spec.predict, spec.extract,
                         self.inputs.band_list(), extent, aoi,
                         existing, folder / "hints.gpkg" if self.add_hints.isChecked() else None,
                         previous=self.review.answers_file(folder), cluster=spec.cluster)
        return ExtractTask(job, self._extracted, self._error)

    def _bundled_base(self) -> str:
        from .sources import base_model

        path = base_model(None)
        if path is None:
            raise InputError("No model yet: fine-tune one or load a .safetensors model first.")
        return path

    def _extracted(self, _result) -> None:
        job = self.task.job
        self._done()
        group = layers.result_group(self.inputs.raster_layer().name())
        run = layers.run_label(job.model)
        if self.add_probability.isChecked():
            layers.add_probability(job.probability, group, run)
        footprints, new = layers.add_footprints(job.footprints, group, run)
        if job.hints is not None:
            layers.add_hints(job.hints, group, run)
        self._review(new, job)
        report_success(self.iface.messageBar(), f"{footprints.featureCount()} footprints, "
                       f"{new.featureCount()} not in the building layer.")

    # -- export for OSM ---------------------------------------------------------------------
    def start_export(self) -> None:
        """Export the new buildings under review for OSM editing (.osm or GeoJSON), in a task."""
        self.export.show_result("")
        self._guarded(lambda _folder: ExportTask(
            self.export.request(self.review.layer, self.inputs.building_files()),
            self._exported, self._export_failed))

    def _exported(self, result) -> None:
        request = self.task.request
        self._done()
        text = describe_export(result, request.accepted_only)
        self.export.show_result(text)
        for line in result.warnings:
            log(f"export warning: {line}", Qgis.Warning)
        report_success(self.iface.messageBar(), text.splitlines()[0])

    def _export_failed(self, exc: BaseException, details: str) -> None:
        self._error(exc, details)
        self.export.show_result(f"Nothing exported: {exc}")

    # -- review round -----------------------------------------------------------------------
    def _review(self, new, job: ExtractJob) -> None:
        """Review the extraction's new buildings, centred on the threshold it used and with the
        calibration of the round that made its model (if any)."""
        from osgeo import gdal

        from ml_core.infer.extract import probability_threshold
        from ml_core.review.loop import read_round_log

        rounds = read_round_log(job.model)
        measured = (rounds[-1].get("yardstick_after") or {}) if rounds else {}
        threshold = probability_threshold(gdal.Open(str(job.probability)), job.extract)
        self.review.set_layer(new, threshold, measured.get("calibration"))

    def _show_review(self) -> None:
        """The next step is the review: open its section and scroll to it."""
        self.review_box.setCollapsed(False)
        self.widget().ensureWidgetVisible(self.review_box)

    def _split(self, layer) -> None:
        """QGIS's Split Features tool on the new-buildings layer, in edit mode."""
        self.iface.setActiveLayer(layer)
        if not layer.isEditable():
            layer.startEditing()
        self.iface.actionSplitFeatures().trigger()
        report_success(self.iface.messageBar(), "Draw a line across the proposal to split it, "
                       "then save the layer's edits: the parts join the review.")

    def start_refine(self) -> None:
        """Fine-tune again with the review answers and complete areas, from the current model.
        One task at a time: while any runs, this starts nothing."""
        if self.task is not None:
            self.review.show_status("A task is running: wait for it or cancel it first.")
            return
        self.chart.clear()
        self._guarded(lambda folder: RefineTask(
            round_job(self.inputs.raster(), self.inputs.buildings(folder), self.review.layer,
                      self.review.complete_layer(),
                      str(self.model.path or self._bundled_base()), folder,
                      self.job(predicts=False), self.inputs.band_list()),
            self._refined, self._finetune_failed))
        if isinstance(self.task, RefineTask):  # its progress shows in the Review section too
            self.task.progressChanged.connect(lambda v: self.review.progress.setValue(int(v)))
            self.task.progress_event.connect(
                lambda event: self.review.show_status(f"Round running: {event.get('message')}"))
            self.review.show_status("Round running: building the labels.")

    def _refined(self, result) -> None:
        from ml_core.review.loop import describe_round

        self._done()
        self._use_model(result.train.model_path)
        text = describe_round(result.log_entry)
        self.review.show_status(text)
        report_success(self.iface.messageBar(), text)


def _describe_device() -> str:
    """Imports torch, on the UI thread once: importing it inside a worker thread can crash."""
    from ml_core.learn.device import describe_device

    from .tasks import preload_torch

    preload_torch()
    return describe_device()
