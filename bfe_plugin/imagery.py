"""Imagery from any raster layer of the project (XYZ, WMS, WMTS, a file) into a local GeoTIFF.

Mappers work over tile services; ml_core reads GDAL files. :func:`imagery_request` (UI thread)
fixes what to fetch: the layer's provider and URI, an area in the layer's CRS and a pixel size
(a web-map zoom, or metres such as the model's pixel size). :func:`fetch` (a task's worker)
renders it through QGIS's own raster pipe (``QgsRasterPipe`` + ``QgsRasterFileWriter``: what
"Save As" does) into a cached GeoTIFF, with progress and cancel, and fails with a clear message
when the service returned nothing. The imagery's name and attribution are stored as GDAL
metadata (:data:`NAME_KEY`, :data:`ATTRIBUTION_KEY`) for the ``source=`` tag of exported
buildings; :func:`imagery_info` reads them back.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCoordinateTransformContext,
    QgsDataSourceUri,
    QgsDistanceArea,
    QgsNetworkAccessManager,
    QgsNetworkReplyContent,
    QgsPointXY,
    QgsRasterBlockFeedback,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtNetwork import QNetworkReply, QNetworkRequest

from ml_core.errors import Cancelled, InputError, OutputError
from ml_core.events import CancelToken, ProgressCallback, ProgressEvent, emit
from ml_core.io.atomic import atomic_output

NAME_KEY = "BFE_IMAGERY_NAME"
ATTRIBUTION_KEY = "BFE_IMAGERY_ATTRIBUTION"
FETCHED_KEY = "BFE_IMAGERY_FETCHED"
RESOLUTION_KEY = "BFE_IMAGERY_RESOLUTION"
EQUATOR_M = 40075016.686  # Web Mercator: one 256 px tile at zoom 0 spans the equator
MAX_PIXELS = 250_000_000  # about 1 GB of RGBA: beyond that, a smaller area or a lower zoom
BLOCK = 512  # pixels per writer block side: progress and cancel at least this often
WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")


@dataclass(frozen=True)
class ImageryRequest:
    """What to fetch: plain values, so a task can carry it (see :func:`imagery_request`)."""

    provider: str  # QGIS provider key: "wms" for XYZ, WMS and WMTS; "gdal" for files
    uri: str
    name: str  # the layer's name, e.g. "Esri World Imagery"
    attribution: str
    crs_wkt: str  # the layer's CRS: the GeoTIFF is written in it
    extent: tuple  # xmin, ymin, xmax, ymax in that CRS, a whole number of pixels
    pixel: tuple  # pixel width and height in CRS units
    resolution: str  # what the user chose, e.g. "zoom 19" or "0.30 m"

    @property
    def size(self) -> tuple[int, int]:
        """Columns and rows of the GeoTIFF."""
        xmin, ymin, xmax, ymax = self.extent
        return round((xmax - xmin) / self.pixel[0]), round((ymax - ymin) / self.pixel[1])

    def cache_name(self) -> str:
        """A file name unique to provider, URI, CRS, area and pixel size (the URI, which may
        hold an API key, only as part of a hash)."""
        key = repr((self.provider, self.uri, self.crs_wkt, self.extent, self.pixel))
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{self.name} {self.resolution}").strip("_")
        return f"{slug[:60]}_{digest}.tif"


@dataclass
class FetchResult:
    """The GeoTIFF and whether it came from the cache."""

    path: Path
    cached: bool
    request: ImageryRequest


def cache_dir() -> Path:
    """Where fetched imagery is kept between runs (inside the QGIS profile)."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "cache" / "bfe_imagery"


def layer_attribution(layer: QgsRasterLayer) -> str:
    """The attribution the layer declares (its server properties, else its metadata rights)."""
    return layer.attribution() or "; ".join(r for r in layer.metadata().rights() if r)


def zoom_pixel_m(zoom: int, latitude: float) -> float:
    """Ground metres per pixel of web-map tiles at ``zoom`` and ``latitude`` (degrees)."""
    return EQUATOR_M * math.cos(math.radians(latitude)) / (256 * 2 ** zoom)


def _metres_per_unit(crs: QgsCoordinateReferenceSystem, extent: QgsRectangle) -> tuple:
    """Ground metres per CRS unit along x and y at the centre of ``extent``, and its latitude."""
    to_wgs84 = QgsCoordinateTransform(crs, WGS84, QgsCoordinateTransformContext())
    centre = extent.center()
    step = max(min(extent.width(), extent.height()) / 10, 1e-9)
    points = [to_wgs84.transform(QgsPointXY(centre.x() + dx, centre.y() + dy))
              for dx, dy in ((0, 0), (step, 0), (0, step))]
    measure = QgsDistanceArea()
    measure.setEllipsoid("WGS84")
    return (measure.measureLine(points[0], points[1]) / step,
            measure.measureLine(points[0], points[2]) / step, points[0].y())


def pixel_size(crs: QgsCoordinateReferenceSystem, extent: QgsRectangle,
               zoom: Optional[int] = None, metres: Optional[float] = None) -> tuple[float, float]:
    """Pixel width and height in ``crs`` units for a web-map ``zoom`` or ``metres`` on the
    ground (exactly the tile grid's for a zoom in Web Mercator)."""
    if (zoom is None) == (metres is None):
        raise InputError("Choose either a zoom level or a pixel size in metres for the imagery.")
    if zoom is not None and crs.authid() == "EPSG:3857":
        size = EQUATOR_M / (256 * 2 ** zoom)
        return size, size
    per_x, per_y, latitude = _metres_per_unit(crs, extent)
    ground = zoom_pixel_m(zoom, latitude) if zoom is not None else metres
    if not ground or ground <= 0:
        raise InputError(f"Imagery pixel size must be positive, not {ground}.")
    return ground / per_x, ground / per_y


def imagery_request(layer: QgsRasterLayer, extent: QgsRectangle, zoom: Optional[int] = None,
                    metres: Optional[float] = None) -> ImageryRequest:
    """What :func:`fetch` needs to copy ``extent`` (in the layer's CRS) of ``layer`` at ``zoom``
    or ``metres`` per pixel (UI thread: reads the layer)."""
    if layer is None or not layer.isValid():
        raise InputError("Choose a raster layer to take the imagery from.")
    if extent.isEmpty() or not math.isfinite(extent.width()):
        raise InputError(f"The area to fetch from '{layer.name()}' is empty; choose the canvas "
                         "extent or area polygons over the imagery.")
    crs = layer.crs()
    px, py = pixel_size(crs, extent, zoom, metres)
    cols, rows = max(1, math.ceil(extent.width() / px)), max(1, math.ceil(extent.height() / py))
    label = f"zoom {zoom}" if zoom is not None else f"{metres:.2f} m"
    if cols * rows > MAX_PIXELS:
        raise InputError(f"The area is {cols} x {rows} pixels at {label} from '{layer.name()}', "
                         f"more than bfe fetches at once ({MAX_PIXELS // 1_000_000} Mpx). Choose "
                         "a smaller area or a lower zoom.")
    xmin, ymax = extent.xMinimum(), extent.yMaximum()
    return ImageryRequest(layer.providerType(), layer.source(), layer.name(),
                          layer_attribution(layer), crs.toWkt(),
                          (xmin, ymax - rows * py, xmin + cols * px, ymax), (px, py), label)


def _has_data(path: Path) -> bool:
    """True when any pixel of the GeoTIFF is valid (alpha or nodata mask), read strip-wise."""
    ds = gdal.Open(str(path))
    mask = ds.GetRasterBand(1).GetMaskBand()
    for y in range(0, ds.RasterYSize, BLOCK):
        rows = min(BLOCK, ds.RasterYSize - y)
        if mask.ReadAsArray(0, y, ds.RasterXSize, rows).any():
            return True
    return False


def _tag(path: Path, request: ImageryRequest) -> None:
    ds = gdal.Open(str(path), gdal.GA_Update)
    ds.SetMetadata({**ds.GetMetadata(), NAME_KEY: request.name,
                    ATTRIBUTION_KEY: request.attribution, RESOLUTION_KEY: request.resolution,
                    FETCHED_KEY: datetime.now(timezone.utc).isoformat(timespec="seconds")})
    ds = None


def _write(request: ImageryRequest, provider: QgsRasterDataProvider, out: Path,
           progress: Optional[ProgressCallback], cancel: Optional[CancelToken]) -> None:
    """Render the request through ``provider`` into ``out`` (GeoTIFF, tiled, deflate)."""
    feedback = QgsRasterBlockFeedback()

    def forward(percent: float) -> None:
        if cancel is not None and cancel.cancelled:
            feedback.cancel()
        emit(progress, ProgressEvent("fetch", percent / 100.0, f"imagery from {request.name}"))

    feedback.progressChanged.connect(forward)  # emitted in this (the worker) thread
    pipe = QgsRasterPipe()
    if not pipe.set(provider):
        raise InputError(f"QGIS cannot read layer '{request.name}' through a raster pipe.")
    writer = QgsRasterFileWriter(str(out))
    writer.setOutputFormat("GTiff")
    writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES"])
    writer.setMaxTileWidth(BLOCK)
    writer.setMaxTileHeight(BLOCK)
    xmin, ymin, xmax, ymax = request.extent
    cols, rows = request.size
    error = writer.writeRaster(pipe, cols, rows, QgsRectangle(xmin, ymin, xmax, ymax),
                               QgsCoordinateReferenceSystem.fromWkt(request.crs_wkt),
                               QgsCoordinateTransformContext(), feedback)
    if error == QgsRasterFileWriter.WriteCanceled or feedback.isCanceled():
        raise Cancelled("Cancelled by the user.")
    if error != QgsRasterFileWriter.NoError:
        raise OutputError(f"Writing the imagery of '{request.name}' to {out} failed "
                          f"(QGIS raster writer error {int(error)}).")


def fetch(request: ImageryRequest, folder: Path, provider: QgsRasterDataProvider,
          progress: Optional[ProgressCallback] = None,
          cancel: Optional[CancelToken] = None) -> FetchResult:
    """The request as a GeoTIFF in ``folder`` (a cache: the same request is fetched once).

    ``provider`` is a clone of the layer's data provider made on the UI thread (as QGIS does
    for rendering). :class:`OutputError` when the service returned no image for the area.
    """
    path = folder / request.cache_name()
    if path.is_file():
        emit(progress, ProgressEvent("fetch", 1.0, f"imagery from the cache: {path.name}"))
        return FetchResult(path, True, request)
    with atomic_output(path) as tmp:
        _write(request, provider, tmp, progress, cancel)
        if not _has_data(tmp):
            raise OutputError(
                f"The imagery service of layer '{request.name}' returned no image for this area "
                f"at {request.resolution}: it failed, or has no coverage here. Check that the "
                "layer draws on the map over this area, then try again or choose another zoom.")
        _tag(tmp, request)
    return FetchResult(path, False, request)


class ServiceErrors:
    """Failed replies of the request's server while a fetch runs, to say why it failed.

    QGIS reports the replies of every thread's network manager on the main thread's one, so
    this listens there (create and close it on the UI thread).
    """

    def __init__(self, request: ImageryRequest) -> None:
        uri = QgsDataSourceUri()
        uri.setEncodedUri(request.uri)  # XYZ, WMS and WMTS layers: "type=xyz&url=..."
        self.host = QUrl(uri.param("url")).host()
        self.errors: list[str] = []
        self._manager = QgsNetworkAccessManager.instance()
        self._manager.finished.connect(self._finished)

    def _finished(self, reply: QgsNetworkReplyContent) -> None:
        if reply.error() == QNetworkReply.NoError or reply.request().url().host() != self.host:
            return
        status = reply.attribute(QNetworkRequest.HttpStatusCodeAttribute)
        self.errors.append(f"HTTP {status}" if status else reply.errorString())

    def close(self) -> None:
        self._manager.finished.disconnect(self._finished)

    def explain(self, exc: BaseException) -> BaseException:
        """``exc`` with what the server answered, when a request failed (else ``exc``)."""
        if not self.errors or not isinstance(exc, OutputError):
            return exc
        return OutputError(f"{exc} {len(self.errors)} request(s) to {self.host} failed, the "
                           f"first with {self.errors[0]}.")


def imagery_info(path: str) -> dict:
    """Name, attribution, resolution and fetch time stored on a fetched GeoTIFF ({} for others):
    ``info.get("name")`` is the ``source=`` tag of buildings traced on it."""
    ds = gdal.Open(str(path))
    meta = ds.GetMetadata() if ds is not None else {}
    keys = {"name": NAME_KEY, "attribution": ATTRIBUTION_KEY, "resolution": RESOLUTION_KEY,
            "fetched": FETCHED_KEY}
    return {k: meta[key] for k, key in keys.items() if key in meta}


def clip_raster(raster: str, extent: tuple, out: Path) -> Path:
    """The part of a local ``raster`` inside ``extent`` (its CRS) as a VRT: no copy, no
    resampling, the raster's own pixel grid (the window snapped outwards to whole pixels)."""
    ds = gdal.Open(os.path.abspath(raster) if os.path.exists(raster) else str(raster))
    if ds is None:
        raise InputError(f"GDAL cannot open the raster {raster}.")
    x0, px, _, y0, _, py = ds.GetGeoTransform()
    xmin, ymin, xmax, ymax = extent
    col0, col1 = max(0, math.floor((xmin - x0) / px)), min(ds.RasterXSize,
                                                           math.ceil((xmax - x0) / px))
    row0, row1 = max(0, math.floor((ymax - y0) / py)), min(ds.RasterYSize,
                                                           math.ceil((ymin - y0) / py))
    if col1 <= col0 or row1 <= row0:
        raise InputError(f"The chosen area does not overlap the raster {raster}; choose an "
                         "area over the imagery.")
    vrt = gdal.Translate("", ds, format="VRT", srcWin=[col0, row0, col1 - col0, row1 - row0])
    if vrt is None:
        raise OutputError(f"Cannot clip {raster}: {gdal.GetLastErrorMsg()}")
    with atomic_output(out) as tmp:  # the XML names the source by its absolute path
        tmp.write_text(vrt.GetMetadata("xml:VRT")[0], encoding="utf-8")
    return out
