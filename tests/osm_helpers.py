"""Test data for the OSM tests: an ``.osm`` extract of the sample's buildings, written with
bfe's own writer and renumbered as mapped data (positive ids, version 1), and OSM tool runners.

The sample's buildings are © OpenStreetMap contributors, ODbL 1.0 (data/sample/DATA_LICENSE.md);
the extracts are made in ``tmp_path`` and never committed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from ml_core.io.vector import local_utm, polygons_of, read_polygons, srs_of, transform
from ml_core.osm.checks import DUPLICATE_M
from ml_core.osm.export import osm_document, polygon_rings, to_lonlat
from ml_core.osm.topology import share_nodes

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RASTER = REPO / "data" / "sample" / "banepa_sample.tif"
SAMPLE_BUILDINGS = REPO / "data" / "sample" / "banepa_sample_buildings.gpkg"
EXTRA_TAGS = '    <tag k="name" v="Shop &amp; Home"/>\n    <tag k="building:levels" v="2"/>\n'


def mapped_osm(geoms, srs, path: Path, extra_tags: bool = True) -> Path:
    """An ``.osm`` file of polygons ``geoms`` (in ``srs``) as mapped buildings, one per polygon
    part: positive ids ascending, ``version="1"``; the first way also gets a name and
    building:levels."""
    utm = local_utm(srs, *geoms[0].Centroid().GetPoint_2D())
    ct = transform(srs, utm)
    rings = []
    for g in geoms:
        for part in polygons_of(g):
            if ct is not None:
                part.Transform(ct)
            rings.append(polygon_rings(part))
    nodes = share_nodes([r for rs in rings for r in rs], DUPLICATE_M)
    buildings, i = [], 0
    for rs in rings:
        buildings.append(nodes.rings[i:i + len(rs)])
        i += len(rs)
    text = osm_document(to_lonlat(nodes.xy, utm), buildings, {"building": "yes"})
    text = re.sub(r'(id|ref)="-(\d+)"', r'\1="\2"', text)
    text = re.sub(r'<(node|way|relation) id="(\d+)"', r'<\1 id="\2" version="1"', text)
    if extra_tags:
        text = text.replace('    <tag k="building" v="yes"/>\n',
                            '    <tag k="building" v="yes"/>\n' + EXTRA_TAGS, 1)
    path.write_text(text, encoding="utf-8")
    return path


def sample_osm(path: Path) -> Path:
    """The sample's 391 buildings as an ``.osm`` extract."""
    polys = read_polygons(SAMPLE_BUILDINGS)
    return mapped_osm(polys.geoms, srs_of(polys.srs), path)


def osmium(*args: str) -> subprocess.CompletedProcess:
    """Run ``osmium`` (Debian osmium-tool) with arguments as a list, no shell."""
    exe = shutil.which("osmium")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, check=False)


def squares_osm(path: Path, squares: list, size_deg: float = 1e-4) -> Path:
    """An ``.osm`` file of closed square ways as mapped data: ``squares`` is a list of
    (lon, lat, tags) with the square's south-west corner and its tags, e.g.
    ``{"building": "yes"}`` or ``{"landuse": "grass"}`` (both become OSM multipolygons)."""
    nodes, ways = [], []
    for k, (lon, lat, tags) in enumerate(squares):
        corners = [(lon, lat), (lon + size_deg, lat), (lon + size_deg, lat + size_deg),
                   (lon, lat + size_deg)]
        ids = [4 * k + i + 1 for i in range(4)]
        nodes += [f'  <node id="{n}" version="1" lat="{y:.7f}" lon="{x:.7f}"/>'
                  for n, (x, y) in zip(ids, corners)]
        refs = "".join(f'<nd ref="{n}"/>' for n in [*ids, ids[0]])
        tag_xml = "".join(f'<tag k="{t}" v="{v}"/>' for t, v in tags.items())
        ways.append(f'  <way id="{k + 1}" version="1">{refs}{tag_xml}</way>')
    text = "\n".join(['<?xml version="1.0" encoding="UTF-8"?>',
                      '<osm version="0.6" generator="test">', *nodes, *ways, "</osm>", ""])
    path.write_text(text, encoding="utf-8")
    return path
