"""labels.py: rasterisation on the raster grid, reprojection, unknown pixels, dropping labels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import pixel_box
from osgeo import gdal, ogr, osr

from ml_core.config import RasterizeOptions
from ml_core.errors import InputError, OutputError
from ml_core.labels.classes import CONTACT, EDGE, INTERIOR, is_building, to_binary
from ml_core.labels.rasterize import (
    UNKNOWN,
    drop_buildings,
    drop_mask_components,
    rasterize_labels,
    read_mask,
)

BINARY = RasterizeOptions(instance=False)
BOWTIE = "POLYGON((3627874 39105,3627884 39095,3627884 39105,3627874 39095,3627874 39105))"
WITH_HOLE = ("POLYGON((3627856 39133,3627870 39133,3627870 39119,3627856 39119,3627856 39133),"
             "(3627860 39129,3627866 39129,3627866 39123,3627860 39123,3627860 39129))")
MULTI = ("MULTIPOLYGON(((3627890 39130,3627895 39130,3627895 39125,3627890 39125,3627890 39130)),"
         "((3627900 39130,3627905 39130,3627905 39125,3627900 39125,3627900 39130)))")


def _direct(raster, vector) -> np.ndarray:
    src = gdal.Open(str(raster))
    mem = gdal.GetDriverByName("MEM").Create("", src.RasterXSize, src.RasterYSize, 1)
    mem.SetGeoTransform(src.GetGeoTransform())
    mem.SetProjection(src.GetProjection())
    gdal.Rasterize(mem, str(vector), burnValues=[1])
    return mem.ReadAsArray()


def test_matches_direct_gdal_rasterize(make_raster, make_vector, tmp_path):
    raster = make_raster()
    vector = make_vector(wkts=[WITH_HOLE, MULTI, pixel_box(40, 40, 60, 70)])
    out = rasterize_labels(raster, vector, tmp_path / "m.tif", BINARY)
    mask = read_mask(out)
    np.testing.assert_array_equal(mask, _direct(raster, vector))
    assert mask[10, 8] == 0 and mask[3, 3] == 1  # the hole stays background


def test_invalid_geometry_is_made_valid(make_raster, make_vector, tmp_path):
    vector = make_vector(wkts=[BOWTIE])
    mask = read_mask(rasterize_labels(make_raster(), vector, tmp_path / "m.tif", BINARY))
    assert 40 < mask.sum() < 60  # both triangles of the bow-tie, 50 px


def test_reprojected_vector_gives_same_mask(make_raster, make_vector, tmp_path):
    wkts = [pixel_box(3, 4, 20, 18), pixel_box(30, 30, 41, 50)]
    to4326 = osr.CoordinateTransformation(*[_srs(e) for e in (3857, 4326)])
    geo = []
    for w in wkts:
        g = ogr.CreateGeometryFromWkt(w)
        g.Transform(to4326)
        geo.append(g.ExportToWkt())
    raster = make_raster()
    a = read_mask(rasterize_labels(raster, make_vector("a.gpkg", wkts), tmp_path / "a.tif",
                                   BINARY))
    b_vec = make_vector("b.gpkg", geo, epsg=4326)
    b = read_mask(rasterize_labels(raster, b_vec, tmp_path / "b.tif", BINARY))
    np.testing.assert_array_equal(a, b)
    assert a.sum() == 17 * 14 + 11 * 20


def _srs(epsg):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def test_unknown_margin_mask_complete_area_and_background(make_raster, make_vector, tmp_path):
    valid = np.ones((64, 64), bool)
    valid[:, 60:] = False
    raster = make_raster(mask=valid)
    vector = make_vector(wkts=[pixel_box(10, 10, 20, 20), pixel_box(40, 40, 50, 50)])
    complete = make_vector("c.gpkg", [pixel_box(0, 0, 32, 64)])
    rejected = make_vector("r.gpkg", [pixel_box(40, 40, 50, 45)])
    out = rasterize_labels(raster, vector, tmp_path / "m.tif", RasterizeOptions(unknown_margin=2),
                           complete_area=complete, background=rejected)
    mask = read_mask(out)
    assert is_building(mask[10:20, 10:20]).all()
    assert (mask[38:40, 38:52] == UNKNOWN).all() and mask[37, 45] == 0  # 2-px margin
    assert (mask[8:10, 8:22] == 0).all()  # inside the complete area the margin is background
    assert (mask[0:5, 40:60] == 0).all()  # outside it, background stays background
    assert (mask[40:45, 40:50] == 0).all() and is_building(mask[45:50, 40:50]).all()  # rejected
    assert (mask[:, 60:] == UNKNOWN).all()  # masked imagery


def test_instance_classes_edge_and_contact_in_metres(make_raster, make_vector, tmp_path):
    # Two 10 x 10 px buildings (1 m pixels) one pixel apart; edge ring 1 m, contact gap < 2 m.
    vector = make_vector(wkts=[pixel_box(10, 10, 20, 20), pixel_box(21, 10, 31, 20)])
    mask = read_mask(rasterize_labels(make_raster(), vector, tmp_path / "m.tif",
                                      RasterizeOptions(edge_m=1.0, contact_m=2.0)))
    for x0 in (10, 21):
        box = mask[10:20, x0:x0 + 10]
        assert (box[1:-1, 1:-1] == INTERIOR).all() and (box == EDGE).sum() == 36
    # the gap column, plus one pixel above and below it that sees both buildings diagonally
    assert (mask[9:21, 20] == CONTACT).all() and (mask == CONTACT).sum() == 12
    np.testing.assert_array_equal(to_binary(mask), read_mask(rasterize_labels(
        make_raster(), vector, tmp_path / "b.tif", BINARY)))


def test_mixed_layer_skips_and_reports(make_raster, make_vector, tmp_path):
    vector = make_vector(wkts=[pixel_box(1, 1, 5, 5), "POINT(3627860 39120)"])
    events = []
    rasterize_labels(make_raster(), vector, tmp_path / "m.tif", progress=events.append)
    assert any("skipped 1" in e.message for e in events)


@pytest.mark.parametrize("case, message", [
    ("points", "no polygons"), ("empty", "empty"), ("nocrs", "coordinate reference system"),
    ("far", "does not overlap"), ("corrupt", "corrupt")])
def test_bad_vectors(make_raster, make_vector, tmp_path, case, message):
    if case == "points":
        vector = make_vector(wkts=["POINT(3627860 39120)",
                                   "LINESTRING(3627860 39120,3627870 39110)"])
    elif case == "empty":
        vector = make_vector(wkts=[])
    elif case == "nocrs":
        vector = make_vector(wkts=[pixel_box(1, 1, 5, 5)], epsg=None)
    elif case == "far":
        vector = make_vector(wkts=[pixel_box(1, 1, 5, 5, origin=(0, 0))])
    else:
        vector = tmp_path / "bad.gpkg"
        vector.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    out = tmp_path / "m.tif"
    with pytest.raises(InputError, match=message) as err:
        rasterize_labels(make_raster(), vector, out)
    assert vector.name in str(err.value)
    assert not out.exists()


def test_unwritable_output(make_raster, make_vector, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(OutputError, match="blocker"):
        rasterize_labels(make_raster(), make_vector(wkts=[pixel_box(1, 1, 5, 5)]),
                         blocker / "m.tif")


def test_drop_buildings_is_seeded(make_vector, tmp_path):
    vector = make_vector(wkts=[pixel_box(i, 0, i + 1, 1) for i in range(20)])
    a = drop_buildings(vector, 0.5, seed=3, out_path=tmp_path / "a.gpkg")
    b = drop_buildings(vector, 0.5, seed=3, out_path=tmp_path / "b.gpkg")
    assert (a.kept, a.dropped) == (10, 10)

    def fids(path, layer):
        src = ogr.Open(str(path))
        return sorted(f.GetField("src_fid") for f in src.GetLayerByName(layer))

    assert fids(a.path, "dropped") == fids(b.path, "dropped")
    assert sorted(fids(a.path, "dropped") + fids(a.path, "buildings")) == list(range(1, 21))
    assert fids(drop_buildings(vector, 0.5, 4, tmp_path / "c.gpkg").path, "dropped") != \
        fids(a.path, "dropped")


def test_drop_mask_components():
    mask = np.zeros((20, 20), np.uint8)
    mask[1:3, 1:3] = 1
    mask[3, 3] = 1  # diagonal neighbour: same 8-connected component
    mask[10:12, 10:15] = 1
    mask[15:18, 2:4] = 1
    mask[0, 19] = UNKNOWN
    partial, dropped = drop_mask_components(mask, 2 / 3, seed=0)
    assert dropped.sum() in (5 + 10, 5 + 6, 10 + 6)
    assert (partial[dropped] == 0).all() and partial[0, 19] == UNKNOWN
    assert (partial[~dropped] == mask[~dropped]).all()
    np.testing.assert_array_equal(drop_mask_components(mask, 2 / 3, seed=0)[1], dropped)




@pytest.mark.shared_data
def test_hotosm_mask_and_4326_buildings(shared_data, tmp_path):
    folder = shared_data / "hotosm" / "kampala"
    out = rasterize_labels(folder / "kampala_z19.tif", folder / "kampala_buildings.gpkg",
                           tmp_path / "k.tif")
    mask = read_mask(out)
    assert (mask == 1).sum() > 1000 and (mask == UNKNOWN).sum() > 0  # masked imagery is unknown
