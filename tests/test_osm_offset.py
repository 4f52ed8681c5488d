"""OSM-imagery offset: phase correlation recovers a known shift of the sample's buildings."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal
from osm_helpers import SAMPLE_BUILDINGS, SAMPLE_RASTER

from ml_core.io import raster as gdalio
from ml_core.io.grid import burn
from ml_core.io.vector import ground_distance_m, memory_layer, read_polygons
from ml_core.learn.train import DEFAULT_BASE
from ml_core.osm.offset import (
    Offset,
    align_labels,
    estimate_offset,
    shift_geoms,
    write_polygons,
)

EAST, NORTH = 2.1, -1.4  # the known artificial shift: 2.1 m east, 1.4 m south


def _raster():
    """The sample raster, opened inside each test: a GDAL dataset returned by a fixture
    crashed the interpreter at teardown here (pytest 9, GDAL 3.6)."""
    return gdalio.open_raster(SAMPLE_RASTER)


@pytest.fixture
def buildings():
    """The sample's buildings in the raster's CRS."""
    return read_polygons(SAMPLE_BUILDINGS, _raster().GetSpatialRef())


def _burned_probability(ds, polys) -> gdal.Dataset:
    """A 'probability' raster that is exactly the rasterised (unshifted) buildings."""
    _src, layer = memory_layer(polys.geoms, polys.srs)
    out = gdalio.create_like(ds, "/vsimem/bfe_test_prob.tif", 0, 0, ds.RasterXSize,
                             ds.RasterYSize, gdal.GDT_Float32)
    out.GetRasterBand(1).WriteArray(burn(layer, ds, 0, 0, ds.RasterXSize,
                                         ds.RasterYSize).astype(np.float32))
    return out


def test_shift_geoms_moves_by_metres_in_a_geographic_crs(buildings):
    polys = buildings
    moved = shift_geoms(polys.geoms[:1], polys.srs, 3.0, -4.0)[0]
    a, b = polys.geoms[0].Centroid().GetPoint_2D(), moved.Centroid().GetPoint_2D()
    assert ground_distance_m(polys.srs, a, b) == pytest.approx(5.0, abs=0.01)
    assert b[0] > a[0] and b[1] < a[1]


def test_known_shift_recovered_against_rasterised_buildings(buildings):
    ds, polys = _raster(), buildings
    prob = _burned_probability(ds, polys)
    off = estimate_offset(prob, shift_geoms(polys.geoms, polys.srs, EAST, NORTH))
    assert off.confident and off.applies and len(off.blocks) >= 2
    assert np.hypot(off.dx_m + EAST, off.dy_m + NORTH) < 0.3  # imagery = OSM moved back
    assert "2.0" in off.describe() or "2.1" in off.describe()
    assert Offset.from_json(off.to_json()) == off


def test_too_few_buildings_is_not_confident(buildings):
    ds, polys = _raster(), buildings
    off = estimate_offset(_burned_probability(ds, polys), polys.geoms[:6])
    assert not off.confident and not off.applies
    assert "at least 10" in off.reason and "unshifted" in off.describe()


def test_unrelated_probability_is_not_confident(buildings):
    ds, polys = _raster(), buildings
    noise = gdalio.create_like(ds, "/vsimem/bfe_noise.tif", 0, 0, ds.RasterXSize,
                               ds.RasterYSize, gdal.GDT_Float32)
    rng = np.random.default_rng(0)
    noise.GetRasterBand(1).WriteArray(rng.random((ds.RasterYSize, ds.RasterXSize),
                                                 dtype=np.float32))
    off = estimate_offset(noise, polys.geoms)
    assert not off.confident and "peak-to-sidelobe" in off.reason


def test_buildings_off_the_raster_are_not_confident(buildings, make_raster):
    polys = buildings
    off = estimate_offset(make_raster(bands=1, dtype=np.float32), polys.geoms, polys.srs)
    assert not off.confident and off.buildings == 0


def test_align_labels_with_the_base_model(buildings, tmp_path):
    """The shipped base model's probability finds the known shift; labels are moved back."""
    polys = buildings
    shifted = tmp_path / "shifted.gpkg"
    write_polygons(shifted, shift_geoms(polys.geoms, polys.srs, EAST, NORTH), polys.srs)
    events = []
    paths, off = align_labels(SAMPLE_RASTER, shifted, DEFAULT_BASE, tmp_path,
                              device="cpu", progress=events.append)
    assert off.applies and np.hypot(off.dx_m + EAST, off.dy_m + NORTH) < 0.3, off
    assert paths == [tmp_path / "aligned_labels.gpkg"]
    assert any("sit" in e.message and "applied" in e.message for e in events)
    back = read_polygons(paths[0], polys.srs)
    a, b = polys.geoms[0].Centroid().GetPoint_2D(), back.geoms[0].Centroid().GetPoint_2D()
    assert ground_distance_m(polys.srs, a, b) < 0.3


def test_align_labels_off_or_without_confidence_keeps_the_labels(buildings, tmp_path):
    polys = buildings
    paths, off = align_labels(SAMPLE_RASTER, SAMPLE_BUILDINGS, DEFAULT_BASE, tmp_path,
                              enabled=False)
    assert paths == [SAMPLE_BUILDINGS] and not off.applies
    few = tmp_path / "few.gpkg"
    write_polygons(few, polys.geoms[:5], polys.srs)
    events = []
    paths, off = align_labels(SAMPLE_RASTER, few, DEFAULT_BASE, tmp_path, device="cpu",
                              progress=events.append)
    assert paths == [few] and not off.confident
    assert "unshifted" in events[-1].message
