"""Buildings from an OSM extract: .osm and .osm.pbf read through GDAL's OSM driver."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from osm_helpers import SAMPLE_BUILDINGS, SAMPLE_RASTER, osmium, sample_osm

from ml_core.errors import InputError
from ml_core.io.vector import AreaMeter, read_polygons
from ml_core.labels.rasterize import rasterize_labels, read_mask
from ml_core.osm.read import parse_hstore, read_buildings

needs_osmium = pytest.mark.skipif(shutil.which("osmium") is None,
                                  reason="osmium-tool absent (Debian package osmium-tool)")
NO_BUILDINGS = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
  <node id="1" version="1" lat="27.631" lon="85.521"/>
  <node id="2" version="1" lat="27.632" lon="85.522"/>
  <node id="3" version="1" lat="27.632" lon="85.521"/>
  <way id="10" version="1"><nd ref="1"/><nd ref="2"/><tag k="highway" v="path"/></way>
  <way id="11" version="1"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="1"/>
    <tag k="landuse" v="grass"/></way>
</osm>
"""


@pytest.fixture
def extract(tmp_path):
    return sample_osm(tmp_path / "banepa.osm")


def _areas(polys) -> np.ndarray:
    meter = AreaMeter(polys.srs, polys.geoms[0].Centroid().GetPoint_2D())
    return np.array([meter.area(g) for g in polys.geoms])


def test_osm_file_gives_the_same_buildings_as_the_layer(extract):
    osm, gpkg = read_polygons(extract), read_polygons(SAMPLE_BUILDINGS)
    assert "multipolygons" in osm.source
    assert len(osm.geoms) == len(gpkg.geoms) == 391
    np.testing.assert_allclose(_areas(osm), _areas(gpkg), rtol=0.005)


def test_osm_ids_and_tags_are_kept(extract):
    b = read_buildings(extract)
    assert len(b.ids) == len(b.geoms) == len(b.tags) == 391
    assert all(i.startswith("way/") for i in b.ids) and len(set(b.ids)) == 391
    assert b.tags[0] == {"building": "yes", "name": "Shop & Home", "building:levels": "2"}
    assert all(t["building"] == "yes" for t in b.tags)


def test_hstore_with_escaped_quotes():
    assert parse_hstore('"a"=>"1","name"=>"say \\"hi\\""') == {"a": "1", "name": 'say "hi"'}
    assert parse_hstore(None) == {}


@needs_osmium
def test_pbf_extract_reads_like_xml(extract, tmp_path):
    pbf = tmp_path / "banepa.osm.pbf"
    assert osmium("cat", str(extract), "-o", str(pbf)).returncode == 0
    assert len(read_polygons(pbf).geoms) == 391


def test_osm_without_buildings_is_a_clear_error(tmp_path):
    path = tmp_path / "roads.osm"
    path.write_text(NO_BUILDINGS, encoding="utf-8")
    with pytest.raises(InputError, match="has no buildings"):
        read_polygons(path)


@needs_osmium
def test_pbf_without_buildings_is_a_clear_error(tmp_path):
    xml, pbf = tmp_path / "roads.osm", tmp_path / "roads.osm.pbf"
    xml.write_text(NO_BUILDINGS, encoding="utf-8")
    assert osmium("cat", str(xml), "-o", str(pbf)).returncode == 0
    with pytest.raises(InputError, match=r"roads\.osm\.pbf has no buildings"):
        read_polygons(pbf)


def test_osm_labels_rasterise_like_the_layer(extract, tmp_path):
    a = read_mask(rasterize_labels(SAMPLE_RASTER, extract, tmp_path / "a.tif"))
    b = read_mask(rasterize_labels(SAMPLE_RASTER, SAMPLE_BUILDINGS, tmp_path / "b.tif"))
    assert (a == 1).sum() > 100_000
    assert np.mean(a == b) > 0.999


def test_extract_not_overlapping_the_raster_is_refused(extract, make_raster, tmp_path):
    raster = make_raster()  # near Kampala, far from Banepa
    with pytest.raises(InputError, match="does not overlap"):
        rasterize_labels(raster, extract, tmp_path / "m.tif")
    assert not (tmp_path / "m.tif").exists()
