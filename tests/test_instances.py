"""infer/instances.py and infer/regularize.py: touching buildings separated, strips stitched,
right angles where a building is nearly rectangular."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from ml_core.infer.instances import instance_polygons, instance_raster, label_instances
from ml_core.infer.regularize import orthogonalize
from ml_core.infer.thresholds import Thresholds
from ml_core.labels.classes import INTERIOR, instance_classes


def _row_of_houses(h: int = 60, w: int = 90) -> np.ndarray:
    """Ids of six touching 14 x 20 px houses in two rows (a terrace), plus one lone house."""
    ids = np.zeros((h, w), np.int32)
    for k in range(3):
        ids[5:25, 5 + 14 * k:19 + 14 * k] = 1 + k
        ids[25:45, 5 + 14 * k:19 + 14 * k] = 4 + k
    ids[10:30, 60:80] = 7
    return ids


def _bands(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What an ideal instance model predicts: building 0.9, interior 0.8 off the edges."""
    classes = instance_classes(ids, 1, 1)
    building = np.where(ids > 0, 0.9, 0.05).astype(np.float32)
    interior = np.where(classes == INTERIOR, 0.8, 0.1).astype(np.float32)
    return building, interior


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


def test_touching_buildings_get_one_label_each():
    ids = _row_of_houses()
    building, interior = _bands(ids)
    labels, n = label_instances(building, interior, np.ones(ids.shape, bool), Thresholds())
    assert n == 7 and _same_partition(labels, ids)


def test_wide_edges_between_touching_buildings_are_shared_at_the_wall():
    """Edges of 5 px on both sides of each wall: all edge pixels have one interior probability
    (a plateau), and each must still go to its own house (flooding the relief with
    ``watershed_ift`` gave one house its neighbours' edges)."""
    ids = np.zeros((40, 100), np.int32)
    for k in range(3):
        ids[5:35, 5 + 30 * k:35 + 30 * k] = 1 + k
    classes = instance_classes(ids, 5, 2)
    building = np.where(ids > 0, 0.9, 0.05).astype(np.float32)
    interior = np.where(classes == INTERIOR, 0.8, 0.0).astype(np.float32)
    labels, n = label_instances(building, interior, np.ones(ids.shape, bool), Thresholds())
    assert n == 3 and _same_partition(labels, ids)


def test_without_an_interior_band_components_are_buildings():
    ids = _row_of_houses()
    building, _ = _bands(ids)
    _, n = label_instances(building, None, np.ones(ids.shape, bool), Thresholds())
    assert n == 2  # the terrace is one blob: a 2-class model cannot separate it


def test_a_blob_without_a_seed_stays_one_building():
    ids = _row_of_houses()
    building, interior = _bands(ids)
    interior[ids == 7] = 0.1  # no confident interior in the lone house
    labels, n = label_instances(building, interior, np.ones(ids.shape, bool), Thresholds())
    assert n == 7 and len(np.unique(labels[ids == 7])) == 1 and (labels[ids == 7] > 0).all()


@pytest.fixture
def probability_raster(tmp_path):
    ids = _row_of_houses()
    path = tmp_path / "prob.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), ids.shape[1], ids.shape[0], 2,
                                              gdal.GDT_Float32)
    ds.SetGeoTransform((500000, 0.5, 0, 4000000, 0, -0.5))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    for i, band in enumerate(_bands(ids), start=1):
        ds.GetRasterBand(i).WriteArray(band)
    ds = None
    return path, ids


@pytest.mark.parametrize("rows", [7, 13, 25])
def test_strips_are_stitched_to_the_single_pass_result(probability_raster, rows):
    path, ids = probability_raster
    ds = gdal.Open(str(path))
    instance_raster(ds, "/vsimem/one.tif", Thresholds(), rows=ids.shape[0])
    instance_raster(ds, "/vsimem/strips.tif", Thresholds(), rows=rows, overlap=24)
    one = gdal.Open("/vsimem/one.tif").ReadAsArray()
    strips = gdal.Open("/vsimem/strips.tif").ReadAsArray()
    for p in ("/vsimem/one.tif", "/vsimem/strips.tif"):
        gdal.Unlink(p)
    assert _same_partition(one, strips) and _same_partition(strips, ids)


@pytest.mark.parametrize("overlap", [0, 2])
def test_a_building_crossing_seams_diagonally_keeps_one_id(overlap):
    """A one-pixel diagonal line (8-connected) crosses every seam corner to corner; with no
    overlap the upper strip still sees the row below its seam."""
    ds = gdal.GetDriverByName("MEM").Create("", 16, 16, 2, gdal.GDT_Float32)
    ds.SetGeoTransform((0, 1, 0, 16, 0, -1))
    line = np.eye(16, dtype=np.float32) * 0.9
    for i in (1, 2):
        ds.GetRasterBand(i).WriteArray(line)
    instance_raster(ds, "/vsimem/diagonal.tif", Thresholds(), overlap=overlap, min_seed_px=1,
                    rows=4)
    labels = gdal.Open("/vsimem/diagonal.tif").ReadAsArray()
    gdal.Unlink("/vsimem/diagonal.tif")
    assert len(np.unique(labels[line > 0])) == 1 and (labels[line > 0] > 0).all()
    assert (labels[line == 0] == 0).all()


def test_polygons_share_walls_and_keep_areas(probability_raster):
    path, ids = probability_raster
    polys = instance_polygons(gdal.Open(str(path)), Thresholds())
    assert len(polys) == 7
    areas = sorted(round(p.GetArea(), 2) for p in polys)  # 0.25 m² pixels
    assert areas == sorted(round(float((ids == i).sum()) * 0.25, 2) for i in range(1, 8))
    union = ogr.Geometry(ogr.wkbMultiPolygon)
    for p in polys:
        union.AddGeometry(p)
    assert union.UnionCascaded().GetArea() == pytest.approx(sum(p.GetArea() for p in polys))


def test_orthogonalize_squares_a_nearly_rectangular_outline():
    g = ogr.CreateGeometryFromWkt("POLYGON((0 0,10.2 0.3,10 6.1,5 6.0,0.1 5.8,0 0))")
    out = orthogonalize(g, 1.0, 1.0)
    xy = np.array(out.GetGeometryRef(0).GetPoints())[:, :2]
    assert len(xy) == 5  # four corners
    e = np.diff(xy, axis=0)
    cosines = [abs(np.dot(a, b)) / np.hypot(*a) / np.hypot(*b) for a, b in zip(e, np.roll(e, 1, 0))]
    assert max(cosines) < 1e-9  # right angles
    assert out.GetArea() == pytest.approx(g.GetArea(), rel=0.05)


def test_orthogonalize_keeps_round_and_skewed_shapes():
    circle = ogr.CreateGeometryFromWkt("POINT(0 0)").Buffer(5, 8)
    assert orthogonalize(circle, 1.0, 1.0).Equals(circle)
    rhombus = ogr.CreateGeometryFromWkt("POLYGON((0 0,10 0,14 8,4 8,0 0))")
    assert orthogonalize(rhombus, 1.0, 1.0).Equals(rhombus)
