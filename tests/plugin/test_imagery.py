"""Imagery from a tile service into a local GeoTIFF, against a tile server started here.

The server (127.0.0.1, a thread) cuts 256 px Web Mercator tiles from the shipped sample with
GDAL on each request, so the fetched GeoTIFF can be checked against the sample itself.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDataSourceUri,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)

from bfe_plugin.imagery import (
    EQUATOR_M,
    clip_raster,
    imagery_info,
    imagery_request,
    pixel_size,
)
from bfe_plugin.tasks import ImageryTask
from ml_core.errors import InputError, OutputError

from .conftest import SAMPLE_RASTER, wait_for

HALF = EQUATOR_M / 2
ZOOM = 19


def _tile_png(z: int, x: int, y: int) -> bytes:
    """Tile z/x/y of the sample as PNG bytes (transparent outside it)."""
    size = EQUATOR_M / 2 ** z
    bounds = (-HALF + x * size, HALF - (y + 1) * size, -HALF + (x + 1) * size, HALF - y * size)
    name = f"/vsimem/tile_{threading.get_ident()}"
    gdal.Warp(f"{name}.tif", str(SAMPLE_RASTER), outputBounds=bounds, width=256, height=256,
              dstSRS="EPSG:3857", dstAlpha=True, resampleAlg="bilinear")
    gdal.Translate(f"{name}.png", f"{name}.tif", format="PNG")
    handle = gdal.VSIFOpenL(f"{name}.png", "rb")
    gdal.VSIFSeekL(handle, 0, 2)
    length = gdal.VSIFTellL(handle)
    gdal.VSIFSeekL(handle, 0, 0)
    data = gdal.VSIFReadL(1, length, handle)
    gdal.VSIFCloseL(handle)
    for suffix in (".tif", ".png"):
        gdal.Unlink(name + suffix)
    return data


class _Tiles(BaseHTTPRequestHandler):
    """Serves tiles; the subclass made per server sets ``requests`` (a log) and ``fail``."""

    requests: ClassVar[list]
    fail: ClassVar[bool]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.fail:
            self.send_error(500, "tile backend down")
            return
        z, x, y = (int(v) for v in self.path.strip("/").removesuffix(".png").split("/")[-3:])
        body = _tile_png(z, x, y)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _serve(fail: bool) -> Iterator[tuple[str, list]]:
    if not SAMPLE_RASTER.exists():
        pytest.skip("no sample data: data/sample/banepa_sample.tif is absent")
    handler = type("Handler", (_Tiles,), {"requests": [], "fail": fail})
    # a path of its own: QGIS caches tiles by URL, and a later server may get an earlier port
    token = uuid.uuid4().hex
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (f"http://127.0.0.1:{server.server_address[1]}/{token}/{{z}}/{{x}}/{{y}}.png",
               handler.requests)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tiles() -> Iterator[tuple[str, list]]:
    yield from _serve(fail=False)


@pytest.fixture
def broken_tiles() -> Iterator[tuple[str, list]]:
    yield from _serve(fail=True)


def _xyz_layer(url: str, name: str) -> QgsRasterLayer:
    uri = QgsDataSourceUri()
    uri.setParam("type", "xyz")
    uri.setParam("url", url)
    uri.setParam("zmin", "0")
    uri.setParam("zmax", "21")
    layer = QgsRasterLayer(bytes(uri.encodedUri()).decode(), name, "wms")
    assert layer.isValid() and layer.crs().authid() == "EPSG:3857"
    QgsProject.instance().addMapLayer(layer)
    return layer


def _sample_centre(layer: QgsRasterLayer, metres: float) -> QgsRectangle:
    """A square of about ``metres`` (Web Mercator units) at the centre of the sample."""
    sample = QgsRasterLayer(str(SAMPLE_RASTER), "sample")
    to_layer = QgsCoordinateTransform(sample.crs(), layer.crs(), QgsProject.instance())
    centre = to_layer.transformBoundingBox(sample.extent()).center()
    half = metres / 2
    return QgsRectangle(centre.x() - half, centre.y() - half, centre.x() + half, centre.y() + half)


def _run(request, layer, folder):
    outcome: dict = {}
    events: list = []
    task = ImageryTask(request, layer.dataProvider().clone(), folder,
                       lambda result: outcome.update(result=result),
                       lambda exc, details: outcome.update(error=exc))
    task.progress_event.connect(events.append)
    QgsApplication.taskManager().addTask(task)
    wait_for(lambda: bool(outcome), timeout=120)
    return outcome, events


def test_fetch_xyz_tiles_into_a_geotiff_on_the_requested_grid(tiles, tmp_path, qgis_new_project):
    url, requests = tiles
    layer = _xyz_layer(url, "Test aerial tiles")
    layer.setAttribution("© OpenAerialMap contributors (test)")
    area = _sample_centre(layer, 100.0)
    request = imagery_request(layer, area, zoom=ZOOM)
    outcome, events = _run(request, layer, tmp_path)
    assert "result" in outcome, outcome.get("error")
    result = outcome["result"]
    assert not result.cached and requests  # tiles were fetched from the server
    ds = gdal.Open(str(result.path))
    srs = ds.GetSpatialRef()
    srs.AutoIdentifyEPSG()
    assert srs.GetAuthorityCode(None) == "3857"
    # the grid: the zoom's pixel size exactly, from the area's top-left corner, whole pixels
    px = EQUATOR_M / (256 * 2 ** ZOOM)
    x0, gx, _, y0, _, gy = ds.GetGeoTransform()
    assert (gx, gy) == pytest.approx((px, -px), rel=1e-9)
    assert (x0, y0) == pytest.approx((area.xMinimum(), area.yMaximum()), abs=1e-6)
    assert (ds.RasterXSize, ds.RasterYSize) == (math.ceil(100 / px), math.ceil(100 / px))
    assert ds.RasterCount == 4  # RGB + alpha
    # the pixels: the sample warped directly onto the same grid, within JPEG + resampling noise
    bounds = (x0, y0 + gy * ds.RasterYSize, x0 + gx * ds.RasterXSize, y0)
    direct = gdal.Warp("/vsimem/direct.tif", str(SAMPLE_RASTER), outputBounds=bounds,
                       width=ds.RasterXSize, height=ds.RasterYSize, dstSRS="EPSG:3857",
                       resampleAlg="bilinear").ReadAsArray().astype(float)
    gdal.Unlink("/vsimem/direct.tif")
    fetched = ds.ReadAsArray().astype(float)
    assert (fetched[3] == 255).all()  # the area lies inside the sample: every pixel has data
    for band in range(3):
        corr = np.corrcoef(fetched[band].ravel(), direct[band].ravel())[0, 1]
        assert corr > 0.9, f"band {band + 1}: correlation {corr:.3f} with the sample"
    assert abs(fetched[:3].mean() - direct[:3].mean()) < 5
    # name and attribution for the source= tag
    info = imagery_info(str(result.path))
    assert info["name"] == "Test aerial tiles"
    assert info["attribution"] == "© OpenAerialMap contributors (test)"
    assert info["resolution"] == f"zoom {ZOOM}"
    assert events and events[-1]["fraction"] == pytest.approx(1.0)
    assert {e["stage"] for e in events} == {"fetch"}
    # the same request again: from the cache, no tile requested
    before = len(requests)
    again, _ = _run(request, layer, tmp_path)
    assert again["result"].cached and again["result"].path == result.path
    assert len(requests) == before


def test_a_failing_tile_service_is_a_clear_error_and_leaves_no_file(broken_tiles, tmp_path,
                                                                   qgis_new_project):
    url, requests = broken_tiles
    layer = _xyz_layer(url, "Broken tiles")
    outcome, _ = _run(imagery_request(layer, _sample_centre(layer, 60.0), zoom=ZOOM), layer,
                      tmp_path)
    error = outcome.get("error")
    assert isinstance(error, OutputError), outcome
    assert "returned no image" in str(error) and "'Broken tiles'" in str(error)
    assert "to 127.0.0.1 failed, the first with HTTP 500" in str(error)
    assert requests  # the service was asked
    assert not list(tmp_path.glob("*.tif"))


def test_pixel_size_in_degrees_matches_the_ellipsoid_formula():
    """0.3 m on the ground at the sample's latitude in EPSG:4326, against the closed form
    for the lengths of a degree on the WGS84 ellipsoid."""
    lat = 27.63
    crs = QgsCoordinateReferenceSystem("EPSG:4326")
    px, py = pixel_size(crs, QgsRectangle(85.52, lat - 0.001, 85.522, lat + 0.001), metres=0.3)
    a, e2, phi = 6378137.0, 0.00669437999014, math.radians(lat)
    lon_m = math.pi * a * math.cos(phi) / (180 * math.sqrt(1 - e2 * math.sin(phi) ** 2))
    lat_m = math.pi * a * (1 - e2) / (180 * (1 - e2 * math.sin(phi) ** 2) ** 1.5)
    assert px == pytest.approx(0.3 / lon_m, rel=1e-3)
    assert py == pytest.approx(0.3 / lat_m, rel=1e-3)
    with pytest.raises(InputError):
        pixel_size(crs, QgsRectangle(0, 0, 1, 1))


def test_too_large_an_area_is_refused_before_fetching(tiles, qgis_new_project):
    layer = _xyz_layer(tiles[0], "Big")
    with pytest.raises(InputError, match="smaller area or a lower zoom"):
        imagery_request(layer, _sample_centre(layer, 20_000.0), zoom=20)
    # nothing of the area was fetched (QGIS itself may ask for a tile to draw the new layer)
    assert not [path for path in tiles[1] if path.split("/")[2] == "20"]  # /TOKEN/Z/X/Y.png


def test_clip_raster_is_a_vrt_on_the_raster_grid(tmp_path):
    if not SAMPLE_RASTER.exists():
        pytest.skip("no sample data: data/sample/banepa_sample.tif is absent")
    src = gdal.Open(str(SAMPLE_RASTER))
    x0, px, _, y0, _, py = src.GetGeoTransform()
    # pixel columns 100.5..300.2 and rows 50.5..120.9: snapped outwards to 100..301, 50..121
    extent = (x0 + 100.5 * px, y0 + 120.9 * py, x0 + 300.2 * px, y0 + 50.5 * py)
    out = clip_raster(str(SAMPLE_RASTER), extent, tmp_path / "area.vrt")
    vrt = gdal.Open(str(out))
    assert (vrt.RasterXSize, vrt.RasterYSize) == (201, 71)
    assert vrt.GetGeoTransform() == pytest.approx((x0 + 100 * px, px, 0, y0 + 50 * py, 0, py))
    np.testing.assert_array_equal(vrt.ReadAsArray(), src.ReadAsArray(100, 50, 201, 71))
    with pytest.raises(InputError, match="does not overlap"):
        clip_raster(str(SAMPLE_RASTER), (0, 0, 1, 1), tmp_path / "none.vrt")
