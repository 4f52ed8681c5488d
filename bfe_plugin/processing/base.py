"""Shared machinery of the bfe algorithms: parameters from ml_core.config, feedback, errors.

The provider loads (and QGIS starts) without importing torch, and lists its algorithms even
before torch is installed. Each algorithm imports its ml_core modules (``CORE``) in
``prepareAlgorithm``, which Processing calls on the UI thread: importing torch inside a worker
thread can crash QGIS.
"""

from __future__ import annotations

import importlib
from typing import Any, Optional

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsProcessingUtils,
)

from ml_core.config import JobSpec
from ml_core.errors import BfeError
from ml_core.events import CancelToken, ProgressEvent
from ml_core.io.atomic import check_not_input

from ..optionspec import OptionSpec, option_specs
from ..sources import raster_path, vector_path
from ..tasks import limit_torch_threads, preload_torch

TORCH_MODULES = ("ml_core.learn.train", "ml_core.infer.predict")


def option_parameter(spec: OptionSpec, advanced: bool) -> QgsProcessingParameterDefinition:
    """The Processing parameter for one ml_core option."""
    if spec.choices:
        param = QgsProcessingParameterEnum(spec.name, spec.label, options=list(spec.choices),
                                           defaultValue=spec.choices.index(spec.default))
    elif spec.kind is bool:
        param = QgsProcessingParameterBoolean(spec.name, spec.label, defaultValue=spec.default)
    elif spec.kind in (int, float):
        number = (QgsProcessingParameterNumber.Integer if spec.kind is int
                  else QgsProcessingParameterNumber.Double)
        param = QgsProcessingParameterNumber(spec.name, spec.label, number, spec.default,
                                             optional=spec.optional,
                                             minValue=spec.minimum or 0)
        if spec.maximum is not None:
            param.setMaximum(spec.maximum)
    else:
        param = QgsProcessingParameterString(spec.name, spec.label, spec.default,
                                             optional=spec.optional)
    param.setHelp(spec.help)
    if advanced:
        param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return param


class BfeAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses declare ``NAME``, ``LABEL``, ``HELP`` and implement ``run_step``."""

    NAME = ""
    LABEL = ""
    HELP = ""
    OPTIONS: tuple = ()  # the ml_core.config dataclasses (JobSpec sections) this step reads
    PRIMARY: tuple = ()  # options shown first; the others are under "Advanced parameters"
    CORE: tuple = ()  # ml_core modules that run_step uses

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return self.LABEL

    def shortHelpString(self) -> str:  # noqa: N802 (QGIS API)
        return self.HELP

    def createInstance(self) -> BfeAlgorithm:  # noqa: N802 (QGIS API)
        return type(self)()

    def add_options(self) -> None:
        """Declare one parameter per field of each class of ``OPTIONS``."""
        for options_cls in self.OPTIONS:
            for spec in option_specs(options_cls):
                self.addParameter(option_parameter(spec, advanced=spec.name not in self.PRIMARY))

    def read_job(self, parameters: dict, context: QgsProcessingContext) -> JobSpec:
        """The job of this run: the ``OPTIONS`` sections from the parameters, others default."""
        return JobSpec.from_sections([self._read_options(cls, parameters, context)
                                      for cls in self.OPTIONS])

    def _read_options(self, options_cls: type, parameters: dict,
                      context: QgsProcessingContext) -> Any:
        values = {}
        for spec in option_specs(options_cls):
            if spec.optional and parameters.get(spec.name) in (None, ""):
                values[spec.name] = None
            elif spec.choices:
                index = self.parameterAsEnum(parameters, spec.name, context)
                values[spec.name] = spec.choices[index]
            elif spec.kind is bool:
                values[spec.name] = self.parameterAsBoolean(parameters, spec.name, context)
            elif spec.kind is int:
                values[spec.name] = self.parameterAsInt(parameters, spec.name, context)
            elif spec.kind is float:
                values[spec.name] = self.parameterAsDouble(parameters, spec.name, context)
            elif spec.kind is tuple:
                text = self.parameterAsString(parameters, spec.name, context)
                try:
                    values[spec.name] = spec.parse(text.strip())
                except ValueError as exc:
                    raise QgsProcessingException(
                        f"{spec.label} takes comma-separated numbers, one per class, not "
                        f"{text!r}.") from exc
            else:
                values[spec.name] = self.parameterAsString(parameters, spec.name, context)
        return options_cls(**values)

    def raster_parameter(self, name: str, parameters: dict, context: QgsProcessingContext) -> str:
        """The file path of a raster parameter (GDAL rasters only)."""
        try:
            return raster_path(self.parameterAsRasterLayer(parameters, name, context))
        except BfeError as exc:
            raise QgsProcessingException(str(exc)) from exc

    def prepareAlgorithm(self, parameters: dict, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> bool:
        for module in self.CORE:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise QgsProcessingException(
                    f"{module} cannot be imported ({exc}). Open the bfe dock for the command "
                    "that installs the missing package.") from exc
        if any(module in TORCH_MODULES for module in self.CORE):
            preload_torch()  # on the UI thread: torch's lazy imports would stall QGIS in a worker
            limit_torch_threads()
        return True

    def processAlgorithm(self, parameters: dict, context: QgsProcessingContext,  # noqa: N802
                         feedback: QgsProcessingFeedback) -> dict:
        def progress(event: ProgressEvent) -> None:
            feedback.setProgress(100.0 * event.fraction)
            if event.message:
                feedback.pushInfo(event.message)

        try:
            check_not_input_layers(self, parameters, context)
            return self.run_step(parameters, context, feedback, progress,
                            CancelToken(is_cancelled=feedback.isCanceled))
        except BfeError as exc:
            raise QgsProcessingException(str(exc)) from exc

    def run_step(self, parameters: dict, context: QgsProcessingContext,
                 feedback: QgsProcessingFeedback, progress, cancel: CancelToken) -> dict:
        """Run the ml_core step; return the outputs."""
        raise NotImplementedError


def check_not_input_layers(alg: QgsProcessingAlgorithm, parameters: dict,
                           context: QgsProcessingContext) -> None:
    """Refuse an output file that is one of the input layers' files (:class:`OutputError`).

    Vector inputs reach ml_core as temporary copies, so its own check would not see the user's
    file; temporary outputs are never inputs and are not resolved here (no side effects)."""
    inputs = []
    for param in alg.parameterDefinitions():
        if isinstance(param, QgsProcessingParameterRasterLayer):
            layer = alg.parameterAsRasterLayer(parameters, param.name(), context)
        elif isinstance(param, QgsProcessingParameterVectorLayer):
            layer = alg.parameterAsVectorLayer(parameters, param.name(), context)
        elif isinstance(param, QgsProcessingParameterFile):
            inputs.append(alg.parameterAsFile(parameters, param.name(), context) or None)
            continue
        else:
            continue
        inputs.append(layer.source() if layer is not None else None)
    for param in alg.destinationParameterDefinitions():
        value = parameters.get(param.name())
        if isinstance(value, QgsProcessingOutputLayerDefinition):
            value = value.sink.staticValue()
        if isinstance(value, str) and value and not value.startswith(("TEMPORARY", "memory:")):
            check_not_input(value, *inputs)


def raster_input(name: str = "INPUT", label: str = "Raster (GeoTIFF or any GDAL raster)"):
    """The input raster parameter used by several algorithms."""
    return QgsProcessingParameterRasterLayer(name, label)


def vector_input_path(alg: QgsProcessingAlgorithm, name: str, parameters: dict,
                      context: QgsProcessingContext, osm_buildings: bool = True) -> Optional[str]:
    """A vector layer parameter written to a temporary one-layer GeoPackage (None when unset).

    ``osm_buildings``: the input is buildings, so an OSM extract's layer gives the extract
    itself (only its buildings reach ml_core); False for areas (an area of interest, complete
    areas), which keep every polygon of the layer (:func:`~bfe_plugin.sources.vector_path`)."""
    layer = alg.parameterAsVectorLayer(parameters, name, context)
    if layer is None:
        return None
    try:
        return vector_path(layer, QgsProcessingUtils.generateTempFilename(f"{name.lower()}.gpkg"),
                           osm_buildings=osm_buildings)
    except BfeError as exc:
        raise QgsProcessingException(str(exc)) from exc


def parse_bands(text: str) -> Optional[list[int]]:
    """"1,2,3" -> [1, 2, 3]; empty -> None (ml_core picks RGB or the model card's bands)."""
    text = text.strip()
    if not text:
        return None
    try:
        return [int(part) for part in text.replace(" ", ",").split(",") if part]
    except ValueError as exc:
        raise QgsProcessingException(
            f"Bands must be 1-based numbers like 1,2,3, not {text!r}.") from exc
