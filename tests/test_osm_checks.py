"""Mapper-style validation and conflation of proposals (JOSM/Rapid-like checks)."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from ml_core.io import raster as gdalio
from ml_core.io.grid import burn
from ml_core.io.vector import memory_layer
from ml_core.osm.checks import (
    CROSSES_BUILDING,
    CROSSES_MAPPED,
    DUPLICATE_NODES,
    FLAGS_FIELD,
    OFFSET_KEY,
    OVERLAP_FIELD,
    OVERLAPS_MAPPED,
    SLIVER,
    TINY,
    UNSQUARE,
    check_against_mapped,
    check_geometries,
    flag_proposals,
    is_unsquare,
    turning_angles,
)
from ml_core.osm.offset import Offset, shift_geoms

X0, Y0 = 354000.0, 3057000.0  # UTM 45N (Banepa)


def poly(*pts) -> ogr.Geometry:
    return ogr.CreateGeometryFromWkt(
        "POLYGON((" + ",".join(f"{x} {y}" for x, y in [*pts, pts[0]]) + "))")


def rect(x0, y0, x1, y1) -> ogr.Geometry:
    return poly((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def skewed(deg: float, x0: float = 0.0) -> ogr.Geometry:
    """A 10 x 8 m parallelogram whose corners are ``deg`` off a right angle."""
    dx = 8 * np.tan(np.radians(deg))
    return poly((x0, 0), (x0 + 10, 0), (x0 + 10 + dx, 8), (x0 + dx, 8))


def test_turning_angles_of_a_rectangle():
    ring = np.array([(0, 0), (10, 0), (10, 8), (0, 8)], float)
    np.testing.assert_allclose(turning_angles(ring), 90.0)


@pytest.mark.parametrize(("geom", "expected"), [
    (rect(0, 0, 10, 8), False),
    (skewed(3.0), False),  # within 5° of square
    (skewed(8.0), True),
    (poly((0, 0), (5, 0), (10, 0.05), (10, 8), (0, 8)), False),  # a near-straight extra vertex
    (poly((0, 0), (10, 0), (10, 4), (5, 4), (5, 8), (0, 8)), False),  # an L: not rectangular
])
def test_unsquare(geom, expected):
    assert is_unsquare(geom) is expected


def test_shape_flags():
    polys = [rect(0, 0, 10, 8), rect(20, 0, 22, 2), rect(30, 0, 31, 12),
             poly((40, 0), (50, 0), (50, 8), (40.01, 8), (40, 8)), skewed(10.0, 60)]
    flags = check_geometries(polys)
    assert flags[0] == []
    assert TINY in flags[1] and SLIVER not in flags[1]
    assert flags[2] == [SLIVER]
    assert flags[3] == [DUPLICATE_NODES]
    assert flags[4] == [UNSQUARE]


def test_crossing_proposals_flag_each_other_touching_does_not():
    flags = check_geometries([rect(0, 0, 10, 8), rect(9, 0, 19, 8), rect(19, 0, 25, 8)])
    assert CROSSES_BUILDING in flags[0] and CROSSES_BUILDING in flags[1]
    assert flags[2] == []  # only touches the second
    assert check_geometries([rect(0, 0, 10, 8), rect(10, 0, 20, 8)]) == [[], []]


def test_conflation_with_mapped_buildings():
    mapped = [rect(0, 0, 10, 10)]
    props = [rect(5, 0, 15, 10), rect(9.9, 0, 19.9, 10), rect(10, 0, 20, 10), rect(30, 0, 40, 10)]
    flags, share = check_against_mapped(props, mapped)
    np.testing.assert_allclose(share, [0.5, 0.01, 0.0, 0.0], atol=1e-9)
    assert flags == [[OVERLAPS_MAPPED], [CROSSES_MAPPED], [], []]


def _utm():
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32645)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _gpkg(path, geoms):
    src = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = src.CreateLayer("new_buildings", srs=_utm(), geom_type=ogr.wkbMultiPolygon)
    layer.CreateField(ogr.FieldDefn("status", ogr.OFTString))
    for g in geoms:
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetGeometry(ogr.ForceToMultiPolygon(g.Clone()))
        feat.SetField("status", "proposed")
        layer.CreateFeature(feat)
    src = None
    return path


def _flags(path) -> list:
    src = ogr.Open(str(path))
    return [f.GetField(FLAGS_FIELD) for f in src.GetLayerByName("new_buildings")]


def _moved(g, dx, dy):
    """``g`` translated by (dx, dy) in its own coordinates."""
    out = g.Clone()
    ring = out.GetGeometryRef(0)
    for i in range(ring.GetPointCount()):
        x, y = ring.GetPoint_2D(i)
        ring.SetPoint_2D(i, x + dx, y + dy)
    return out


def test_flag_proposals_writes_fields_and_offset(tmp_path):
    mapped = [_moved(rect(0, 0, 10, 10), X0, Y0)]
    path = _gpkg(tmp_path / "fp.gpkg", [_moved(rect(5, 0, 15, 10), X0, Y0),
                                        _moved(rect(30, 0, 32, 2), X0, Y0)])
    offset = flag_proposals(path, mapped, _utm())
    assert not offset.confident
    src = ogr.Open(str(path))
    layer = src.GetLayerByName("new_buildings")
    rows = [(f.GetField(FLAGS_FIELD), f.GetField(OVERLAP_FIELD)) for f in layer]
    assert rows == [(OVERLAPS_MAPPED, 0.5), (TINY, 0.0)]
    assert Offset.from_json(layer.GetMetadataItem(OFFSET_KEY)) == offset


def test_flag_proposals_compares_in_osm_frame(tmp_path):
    """Mapped buildings sit 1.5 m east of the imagery. A proposal in the 4 m gap east of a
    roof crosses the mapped outline as drawn, but not once moved back into OSM's frame; the
    offset is stored for the export."""
    grid = [rect(x, y, x + 8, y + 6) for x in range(0, 120, 12) for y in range(0, 90, 10)]
    imagery = [_moved(g, X0, Y0) for g in grid]
    osm = shift_geoms(imagery, _utm(), 1.5, 0.0)
    ds = gdalio.create_like(_probability_grid(), "/vsimem/bfe_checks_prob.tif", 0, 0, 600, 480,
                            gdal.GDT_Float32)
    _src, layer = memory_layer(imagery, _utm())
    ds.GetRasterBand(1).WriteArray(burn(layer, ds, 0, 0, 600, 480).astype(np.float32))
    proposal = _moved(rect(8.5, 0, 11, 6), X0, Y0)
    drawn = _gpkg(tmp_path / "drawn.gpkg", [proposal])
    flag_proposals(drawn, osm, _utm())  # no probability raster: no offset
    assert _flags(drawn) == [OVERLAPS_MAPPED]
    path = _gpkg(tmp_path / "fp.gpkg", [proposal])
    offset = flag_proposals(path, osm, _utm(), ds)
    assert offset.applies and offset.dx_m == pytest.approx(-1.5, abs=0.1)
    assert _flags(path) == [""]


def _probability_grid() -> gdal.Dataset:
    """A 600 x 480 px grid of 0.25 m in UTM 45N around the test buildings."""
    ds = gdal.GetDriverByName("MEM").Create("", 600, 480, 1, gdal.GDT_Float32)
    ds.SetGeoTransform((X0 - 20, 0.25, 0, Y0 + 100, 0, -0.25))
    ds.SetSpatialRef(_utm())
    return ds
