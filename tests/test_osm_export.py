"""bfe export: new buildings -> .osm for JOSM (checked with osmium, GDAL and JOSM) or GeoJSON."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from osgeo import gdal, ogr, osr
from osm_helpers import SAMPLE_BUILDINGS, SAMPLE_RASTER, osmium

from ml_core.errors import InputError, OutputError
from ml_core.io.vector import AreaMeter, read_polygons, srs_of
from ml_core.osm.checks import FLAGS_FIELD, OFFSET_KEY
from ml_core.osm.export import export_buildings
from ml_core.osm.offset import Offset

UTM45 = 32645
X0, Y0 = 354000.0, 3057000.0  # Banepa, UTM 45N
needs_osmium = pytest.mark.skipif(shutil.which("osmium") is None,
                                  reason="osmium-tool absent (Debian package osmium-tool)")
needs_josm = pytest.mark.skipif(shutil.which("josm") is None or shutil.which("java") is None,
                                reason="JOSM or Java absent (Debian package josm)")


def rect(x0, y0, x1, y1, hole=None) -> ogr.Geometry:
    rings = [[(x0, y0), (x1, y0), (x1, y1), (x0, y1)]] + ([hole] if hole else [])
    poly = ogr.Geometry(ogr.wkbPolygon)
    for pts in rings:
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in [*pts, pts[0]]:
            ring.AddPoint_2D(X0 + x, Y0 + y)
        poly.AddGeometry(ring)
    return poly


def footprints(path, items, offset=None):
    """A footprints GeoPackage: layer new_buildings with (geometry, status, flags) items."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(UTM45)
    src = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = src.CreateLayer("new_buildings", srs=srs, geom_type=ogr.wkbMultiPolygon)
    for name, kind in (("score", ogr.OFTReal), ("status", ogr.OFTString),
                       (FLAGS_FIELD, ogr.OFTString)):
        layer.CreateField(ogr.FieldDefn(name, kind))
    for geom, status, flags in items:
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetGeometry(ogr.ForceToMultiPolygon(geom))
        feat.SetField("score", 0.9)
        feat.SetField("status", status)
        feat.SetField(FLAGS_FIELD, flags)
        layer.CreateFeature(feat)
    if offset is not None:
        layer.SetMetadataItem(OFFSET_KEY, offset.to_json())
    src = None
    return path


A, B = rect(0, 0, 10, 8), rect(10, 0, 18, 8)  # share the wall x = 10
G = rect(18, 0, 22, 4)  # its corner (18, 4) lies on B's wall x = 18
C = rect(30, 0, 40, 10, hole=[(33, 3), (33, 7), (37, 7), (37, 3)])
E = rect(50, 0, 56, 6)
ITEMS = [(A, "proposed", ""), (B, "proposed", ""), (G, "proposed", ""), (C, "proposed", ""),
         (rect(60, 0, 66, 6), "rejected", ""), (E, "accepted", ""),
         (rect(70, 0, 76, 6), "proposed", "overlaps_mapped")]


@pytest.fixture
def fp(tmp_path):
    return footprints(tmp_path / "fp.gpkg", ITEMS)


def _osm(path):
    root = ET.parse(path).getroot()
    return root, {k: root.findall(k) for k in ("node", "way", "relation")}


def test_osm_file_for_josm(fp, tmp_path):
    res = export_buildings(fp, tmp_path / "new.osm", source="Test imagery 2026")
    root, objs = _osm(res.path)
    assert root.get("version") == "0.6" and root.get("generator") == "bfe"
    # A and B share 2 nodes; G shares (18, 0) with B, and its corner (18, 4) goes into B's wall
    assert len(objs["node"]) == (4 + 2 + 3) + 8 + 4 == res.nodes
    assert res.shared_nodes == 4 and res.buildings == 5
    assert len(objs["way"]) == 6 and len(objs["relation"]) == 1
    ids = [int(o.get("id")) for k in objs for o in objs[k]]
    assert all(i < 0 for i in ids) and len(set(ids)) == len(ids)
    assert not any("version" in o.attrib for k in objs for o in objs[k])
    tagged = [o for k in objs for o in objs[k] if o.find("tag[@k='building']") is not None]
    assert len(tagged) == 5
    assert {o.find("tag[@k='source']").get("v") for o in tagged} == {"Test imagery 2026"}
    b_way = next(w for w in objs["way"] if len(w.findall("nd")) == 6)  # B + G's corner + closing
    assert len({nd.get("ref") for nd in b_way.findall("nd")}) == 5
    rel = objs["relation"][0]
    assert {m.get("role") for m in rel.findall("member")} == {"outer", "inner"}
    assert rel.find("tag[@k='type']").get("v") == "multipolygon"
    assert res.not_written == {"overlaps_mapped": 1}


def _areas_m2(polys) -> list:
    meter = AreaMeter(polys.srs, polys.geoms[0].Centroid().GetPoint_2D())
    return sorted(meter.area(g) for g in polys.geoms)


@pytest.mark.parametrize("name", ["new.osm", "new.geojson"])
def test_read_back_same_buildings_and_areas(fp, tmp_path, name):
    out = export_buildings(fp, tmp_path / name).path
    back = read_polygons(out)
    assert srs_of(back.srs).GetAuthorityCode(None) == "4326"
    expected = sorted(g.GetArea() for g in (A, B, G, C, E))
    np.testing.assert_allclose(_areas_m2(back), expected, rtol=0.005)


def test_geojson_properties(fp, tmp_path):
    data = json.loads(export_buildings(fp, tmp_path / "n.geojson", source="x").path.read_text())
    props = [f["properties"] for f in data["features"]]
    assert len(props) == 5 and {p["building"] for p in props} == {"yes"}
    assert {p["source"] for p in props} == {"x"}
    lon, lat = data["features"][0]["geometry"]["coordinates"][0][0]
    assert 85 < lon < 86 and 27 < lat < 28


def test_accepted_only(fp, tmp_path):
    res = export_buildings(fp, tmp_path / "a.osm", accepted_only=True)
    assert res.buildings == 1


@needs_osmium
def test_osmium_accepts_the_export(fp, tmp_path):
    out = export_buildings(fp, tmp_path / "new.osm").path
    refs = osmium("check-refs", "-r", str(out))
    assert refs.returncode == 0, refs.stdout + refs.stderr
    assert re.search(r"Nodes\s+in ways\s+missing: 0", refs.stderr + refs.stdout)
    info = osmium("fileinfo", "-e", "-j", str(out))
    data = json.loads(info.stdout)["data"]
    assert data["count"] == {"nodes": 21, "ways": 6, "relations": 1, "changesets": 0}
    assert data["objects_ordered"] is True


def test_stored_offset_moves_buildings_back_into_osm_frame(tmp_path):
    fp = footprints(tmp_path / "o.gpkg", [(A, "proposed", "")],
                    Offset(1.0, -0.5, 20.0, 50, True, 0.3))
    res = export_buildings(fp, tmp_path / "o.geojson")
    assert res.shift_m == (1.0, -0.5)
    back = read_polygons(res.path, target=srs_of(f"EPSG:{UTM45}"))
    minx, _, miny, _ = back.geoms[0].GetEnvelope()
    assert minx - X0 == pytest.approx(-1.0, abs=0.02) and miny - Y0 == pytest.approx(0.5, abs=0.02)
    unshifted = export_buildings(fp, tmp_path / "u.geojson", shift_m=(0, 0))
    env = read_polygons(unshifted.path, target=srs_of(f"EPSG:{UTM45}")).geoms[0].GetEnvelope()
    assert env[0] - X0 == pytest.approx(0.0, abs=0.02)


def test_unconfident_offset_is_not_applied(tmp_path):
    fp = footprints(tmp_path / "o.gpkg", [(A, "proposed", "")],
                    Offset(1.0, -0.5, 2.0, 5, False, 0.3, "too few"))
    assert export_buildings(fp, tmp_path / "o.osm").shift_m == (0.0, 0.0)


def test_flagged_geometry_refused_or_warned(tmp_path):
    skew = ogr.CreateGeometryFromWkt(  # a parallelogram: corners 80° and 100°
        f"POLYGON(({X0 + 20} {Y0},{X0 + 30} {Y0},{X0 + 31.41} {Y0 + 8},{X0 + 21.41} {Y0 + 8},"
        f"{X0 + 20} {Y0}))")
    fp = footprints(tmp_path / "f.gpkg", [(A, "proposed", ""), (skew, "proposed", "")])
    out = tmp_path / "f.osm"
    with pytest.raises(InputError, match=r"1 of 2 buildings .* flagged .*fid 2: unsquare"):
        export_buildings(fp, out, on_flagged="refuse")
    assert not out.exists() and not list(tmp_path.glob("*.part*"))
    res = export_buildings(fp, out, on_flagged="warn")
    assert res.buildings == 2 and res.warnings == ["proposal fid 2: unsquare"]


def test_bad_output_paths(fp, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"file\.txt"):
        export_buildings(fp, blocker / "new.osm")
    with pytest.raises(OutputError, match=r"\.osm .* \.geojson"):
        export_buildings(fp, tmp_path / "new.shp")
    with pytest.raises(InputError, match="no accepted buildings"):
        export_buildings(footprints(tmp_path / "p.gpkg", [(A, "proposed", "")]),
                         tmp_path / "x.osm", accepted_only=True)
    assert not (tmp_path / "x.osm").exists()


def _josm_findings(osm, report) -> list:
    subprocess.run([shutil.which("josm"), "validate", "--input", str(osm), "--output",
                    str(report)], capture_output=True, timeout=300, check=True)
    records = [json.loads(r) for r in report.read_text().split("\x1e") if r.strip()]  # RFC 8142
    return [f["properties"] for rec in records for f in rec["features"]
            if "severity" in f["properties"]]


@needs_josm
def test_josm_validator_on_the_sample_buildings(tmp_path):
    """JOSM's own validator, headless: the sample's 391 buildings exported as new."""
    fp = tmp_path / "fp.gpkg"
    gdal.VectorTranslate(str(fp), str(SAMPLE_BUILDINGS), layerName="new_buildings")
    res = export_buildings(fp, tmp_path / "sample.osm", source="OpenAerialMap Banepa")
    findings = _josm_findings(res.path, tmp_path / "report.geojson")
    by = {s: [f for f in findings if f["severity"] == s] for s in ("Errors", "Warnings")}
    assert by["Errors"] == [], [(f["message"], f.get("test")) for f in by["Errors"]]
    assert len(by["Warnings"]) <= 0.05 * res.buildings, [f["message"] for f in by["Warnings"]]


@needs_josm
def test_josm_sees_overlapping_new_buildings(tmp_path):
    """The check is real: two overlapping new buildings are a JOSM warning."""
    fp = footprints(tmp_path / "x.gpkg", [(A, "proposed", ""), (rect(5, 2, 14, 6), "proposed", "")])
    res = export_buildings(fp, tmp_path / "x.osm")
    messages = [f["message"] for f in _josm_findings(res.path, tmp_path / "r.geojson")]
    assert any("verlapping" in m for m in messages), messages


@needs_josm
def test_josm_validator_on_extracted_proposals(tmp_path):
    """What a mapper would load: proposals the shipped base model finds beside half of the
    sample's buildings, extracted, flagged and exported."""
    from ml_core.config import PredictOptions
    from ml_core.infer.extract import extract_footprints
    from ml_core.infer.predict import predict_raster
    from ml_core.labels.rasterize import drop_buildings
    from ml_core.learn.train import DEFAULT_BASE

    kept = f"{drop_buildings(SAMPLE_BUILDINGS, 0.5, 0, tmp_path / 'kept.gpkg').path}" \
           "|layername=buildings"
    west, north, south = 85.52032, 27.63274, 27.63183  # the northern half of the sample
    prob = predict_raster(SAMPLE_RASTER, DEFAULT_BASE, tmp_path / "prob.tif",
                          PredictOptions(device="cpu"), extent=(west, south, 85.5224, north))
    fp = extract_footprints(prob, tmp_path / "fp.gpkg", existing=kept).path
    res = export_buildings(fp, tmp_path / "new.osm", source="OpenAerialMap Banepa")
    assert res.buildings >= 10, res
    findings = _josm_findings(res.path, tmp_path / "report.geojson")
    errors = [f["message"] for f in findings if f["severity"] == "Errors"]
    warnings = [f["message"] for f in findings if f["severity"] == "Warnings"]
    assert errors == []
    assert len(warnings) <= 0.05 * res.buildings, warnings


def test_shared_nodes_remove_spikes_and_degenerate_rings():
    """A spike whose two base vertices merge (1 cm apart) is cut off (JOSM: "Way contains
    segment twice"); a sliver collapsing to two nodes is dropped."""
    from ml_core.osm.topology import share_nodes

    spiky = np.array([(0, 0), (10, 0), (10, 5), (12, 5), (10, 5.01), (10, 10), (0, 10)], float)
    flat = np.array([(20, 0), (30, 0), (20, 0.01)], float)
    nodes = share_nodes([spiky, flat], 0.02)
    ring = nodes.xy[nodes.rings[0]]
    np.testing.assert_allclose(ring, [(0, 0), (10, 0), (10, 5), (10, 10), (0, 10)])
    assert nodes.rings[1] is None


def test_source_tag_is_escaped(fp, tmp_path):
    source = 'Esri & "OAM" <2026> O\'Neil'
    _, objs = _osm(export_buildings(fp, tmp_path / "s.osm", source=source).path)
    assert {w.find("tag[@k='source']").get("v") for w in objs["way"]
            if w.find("tag[@k='source']") is not None} == {source}
