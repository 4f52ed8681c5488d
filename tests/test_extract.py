"""extract.py: counts and m² areas from known masks, EPSG:4326 areas, new-building dedupe."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import pixel_box
from osgeo import ogr, osr

from ml_core.config import ExtractOptions
from ml_core.errors import InputError
from ml_core.infer.extract import extract_footprints

UTM16 = (732786.0, 3730085.0)  # Atlanta, EPSG:32616
LONLAT = (-84.49, 33.685)


def prob_raster(make_raster, name, rects, epsg=32616, origin=UTM16, pixel=0.5, size=(80, 60)):
    prob = np.full((1, size[1], size[0]), 0.1, np.float32)
    for c0, r0, c1, r1, value in rects:
        prob[0, r0:r1, c0:c1] = value
    return make_raster(name, width=size[0], height=size[1], data=prob, epsg=epsg, origin=origin,
                       pixel=pixel, nodata=-1.0)


def features(path, layer):
    src = ogr.Open(str(path))
    lyr = src.GetLayerByName(layer)
    return [(f.GetField("area_m2"), f.GetField("score"), f.GetField("is_new"),
             f.GetGeometryRef().Clone()) for f in lyr], lyr.GetSpatialRef().Clone()


def test_known_mask_count_and_areas(make_raster, tmp_path):
    raster = prob_raster(make_raster, "p.tif", [(5, 5, 15, 15, 0.9), (30, 10, 50, 18, 0.7),
                                                (60, 40, 62, 42, 0.9)])
    result = extract_footprints(raster, tmp_path / "f.gpkg", ExtractOptions(min_area=4.0))
    assert (result.footprints, result.new) == (2, 2)
    feats, _ = features(result.path, "footprints")
    got = sorted((round(a, 1), round(s, 2), n) for a, s, n, _ in feats)
    assert got == [(25.0, 0.9, 1), (40.0, 0.7, 1)]
    src = ogr.Open(str(result.path))
    assert [f.GetField("status") for f in src.GetLayer("new_buildings")] == ["proposed"] * 2


def test_4326_areas_agree_with_utm(make_raster, tmp_path):
    deg = 5e-6
    rects = [(5, 5, 25, 15, 0.9), (40, 20, 70, 50, 0.8)]
    raster = prob_raster(make_raster, "g.tif", rects, epsg=4326, origin=LONLAT, pixel=deg)
    feats, _ = features(extract_footprints(raster, tmp_path / "g.gpkg").path, "footprints")
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromEPSG(4326)
    dst.ImportFromEPSG(32616)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    expected = []
    for c0, r0, c1, r1, _ in rects:
        g = ogr.CreateGeometryFromWkt(pixel_box(c0, r0, c1, r1, origin=LONLAT, pixel=deg))
        g.Transform(osr.CoordinateTransformation(src, dst))
        expected.append(g.GetArea())
    got = sorted(a for a, *_ in feats)
    np.testing.assert_allclose(got, sorted(expected), rtol=0.01)


def test_new_buildings_in_dense_blob(make_raster, make_vector, tmp_path):
    # one blob of three touching houses (A|B|C), one isolated house D, one mapped house E
    raster = prob_raster(make_raster, "d.tif", [(4, 4, 40, 16, 0.9), (50, 30, 60, 40, 0.9),
                                                (10, 40, 22, 52, 0.9)])
    existing = make_vector("osm.gpkg", [pixel_box(4, 4, 16, 16, origin=UTM16, pixel=0.5),
                                        pixel_box(28, 4, 40, 16, origin=UTM16, pixel=0.5),
                                        pixel_box(10, 40, 22, 52, origin=UTM16, pixel=0.5)],
                           epsg=32616)
    result = extract_footprints(raster, tmp_path / "n.gpkg", existing=existing, crs="EPSG:4326")
    new, srs = features(result.path, "new_buildings")
    assert srs.GetAuthorityCode(None) == "4326"
    # new: the middle house B (cut out of the blob, minus the 0.5 m buffers) and D
    areas = sorted(a for a, *_ in new)
    assert len(areas) == 2
    np.testing.assert_allclose(areas, [25.0, 6 * 6 - 0.5 * 2 * 6], rtol=0.01)  # D, then B
    everything, _ = features(result.path, "footprints")
    assert sum(not n for *_, n, _ in everything) == 3  # A, C and E stay existing


def test_regularize_squares_a_jagged_house(make_raster, tmp_path):
    raster = prob_raster(make_raster, "j.tif", [(10, 10, 30, 24, 0.9), (29, 12, 31, 14, 0.9)])
    opts = ExtractOptions(regularize=True, simplify=0.0)
    feats, _ = features(extract_footprints(raster, tmp_path / "j.gpkg", opts).path, "footprints")
    (area, _, _, geom), = feats
    ring = np.array(geom.GetGeometryRef(0).GetGeometryRef(0).GetPoints())[:, :2]
    edges = np.diff(ring, axis=0)
    turns = [abs(np.dot(a, b)) / np.hypot(*a) / np.hypot(*b)
             for a, b in zip(edges, np.roll(edges, 1, axis=0))]
    assert max(turns) < 1e-9  # every corner a right angle, the bump kept as JOSM's Q keeps it
    plain = ExtractOptions(regularize=False, simplify=0.0)
    (raw_area, *_), = features(extract_footprints(raster, tmp_path / "p.gpkg", plain).path,
                               "footprints")[0]
    assert area == pytest.approx(raw_area, rel=0.02)


def test_bad_inputs(make_raster, make_vector, tmp_path):
    raster = prob_raster(make_raster, "b.tif", [(5, 5, 15, 15, 0.9)])
    lines = make_vector("l.gpkg", ["LINESTRING(732786 3730085,732790 3730080)"], epsg=32616)
    with pytest.raises(InputError, match=r"l\.gpkg.*no polygons"):
        extract_footprints(raster, tmp_path / "x.gpkg", existing=lines)
    with pytest.raises(InputError, match="coordinate reference system"):
        extract_footprints(make_raster("n.tif", epsg=None), tmp_path / "x.gpkg")
    assert not (tmp_path / "x.gpkg").exists()


def test_an_image_is_not_taken_for_a_probability_raster(make_raster, tmp_path):
    image = make_raster("rgb.tif", bands=3)
    out = tmp_path / "fp.gpkg"
    with pytest.raises(InputError, match=r"rgb\.tif looks like an image.*-m MODEL"):
        extract_footprints(image, out)
    assert not out.exists()


def test_threshold_defaults_to_the_one_stored_by_the_model(make_raster, tmp_path):
    from osgeo import gdal

    from ml_core.config import THRESHOLD_KEY

    raster = prob_raster(make_raster, "t.tif", [(5, 5, 15, 15, 0.9), (30, 10, 50, 18, 0.6)])
    assert extract_footprints(raster, tmp_path / "a.gpkg").footprints == 2  # 0.5 without a model
    ds = gdal.Open(str(raster), gdal.GA_Update)
    ds.SetMetadataItem(THRESHOLD_KEY, "0.7")
    ds = None
    assert extract_footprints(raster, tmp_path / "b.gpkg").footprints == 1  # the model's 0.7
    chosen = ExtractOptions(threshold=0.55)
    assert extract_footprints(raster, tmp_path / "c.gpkg", chosen).footprints == 2  # user wins


def test_zonal_mean_is_nan_where_a_polygon_sees_only_nodata(make_raster):
    from osgeo import gdal

    from ml_core.infer.polygonize import zonal_mean

    raster = prob_raster(make_raster, "z.tif", [(0, 0, 20, 20, 0.8), (40, 0, 60, 20, -1.0)])
    ds = gdal.Open(str(raster))
    inside = ogr.CreateGeometryFromWkt(pixel_box(2, 2, 10, 10, origin=UTM16, pixel=0.5))
    on_nodata = ogr.CreateGeometryFromWkt(pixel_box(42, 2, 50, 10, origin=UTM16, pixel=0.5))
    means = zonal_mean(ds, [inside, on_nodata])
    assert means[0] == pytest.approx(0.8, abs=1e-6)
    assert np.isnan(means[1])


def test_slivers_between_neighbours_are_cut_but_real_overlaps_are_left():
    from ml_core.infer.extract import without_overlaps

    a = ogr.CreateGeometryFromWkt("POLYGON((0 0,10 0,10 10,0 10,0 0))")
    sliver = ogr.CreateGeometryFromWkt("POLYGON((9.8 0,20 0,20 10,9.8 10,9.8 0))")  # 2 % over a
    big = ogr.CreateGeometryFromWkt("POLYGON((5 0,15 0,15 10,5 10,5 0))")  # half over a
    first, second = without_overlaps([a, sliver])
    assert first.Equals(a) and second.Intersection(first).GetArea() == pytest.approx(0)
    assert second.GetArea() == pytest.approx(100.0)  # 102 m² less the 2 m² a already covers
    _, kept = without_overlaps([a, big])
    assert kept.Intersection(a).GetArea() == pytest.approx(50.0)  # left for the checks to flag
