"""Buildings from an OpenStreetMap extract (``.osm`` XML or ``.osm.pbf``) via GDAL's OSM driver.

The driver's ``multipolygons`` layer holds closed ways and multipolygon relations; buildings are
the features whose ``building`` tag is set. Each keeps its OSM id (``way/N`` or ``relation/N``)
and its tags (the driver's own fields plus its ``other_tags`` hstore string).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from osgeo import gdal, ogr, osr

from ml_core.errors import InputError

gdal.UseExceptions()
ogr.UseExceptions()

PathLike = Union[str, os.PathLike]
OSM_SUFFIXES = (".osm", ".pbf")
BUILDINGS_LAYER = "multipolygons"
BUILDING_FILTER = "building IS NOT NULL"
_HSTORE = re.compile(r'"((?:[^"\\]|\\.)*)"=>"((?:[^"\\]|\\.)*)"')
_SKIP_FIELDS = ("osm_id", "osm_way_id", "other_tags")
_INDEXING = "OSM_USE_CUSTOM_INDEXING"


def is_osm(path: PathLike) -> bool:
    """True for an OSM extract by name: ``.osm``, ``.osm.pbf`` or ``.pbf``."""
    return Path(str(path)).suffix.lower() in OSM_SUFFIXES


def open_buildings(path: PathLike):
    """(datasource, layer) of the buildings of an OSM extract; :class:`InputError` without any.

    The layer is the driver's ``multipolygons`` filtered on ``building``; keep the datasource
    alive while using the layer.
    """
    # Files saved by JOSM (and bfe's exports) number new objects -1, -2, ...: GDAL's fast node
    # index needs increasing positive ids, so XML files use its SQLite index (read at open).
    xml = Path(str(path)).suffix.lower() == ".osm"
    previous = gdal.GetConfigOption(_INDEXING)
    try:
        if xml:
            gdal.SetConfigOption(_INDEXING, "NO")
        src = ogr.GetDriverByName("OSM").Open(str(path))
    except RuntimeError as exc:
        raise InputError(f"OSM file {path} cannot be read by GDAL's OSM driver ({exc}). Download "
                         "the extract again (.osm XML or .osm.pbf).") from exc
    finally:
        gdal.SetConfigOption(_INDEXING, previous)
    if src is None:
        raise InputError(f"OSM file {path} cannot be read by GDAL's OSM driver. Download the "
                         "extract again (.osm XML or .osm.pbf).")
    layer = src.GetLayerByName(BUILDINGS_LAYER)
    layer.SetAttributeFilter(BUILDING_FILTER)
    if layer.GetNextFeature() is None:
        raise InputError(f"OSM file {path} has no buildings (no closed way or multipolygon "
                         "tagged building=*). Choose an extract of an area with mapped buildings.")
    layer.ResetReading()
    return src, layer


def parse_hstore(text: Optional[str]) -> dict:
    """The tags of the OSM driver's ``other_tags`` field (``"k"=>"v","k2"=>"v2"``)."""
    unescape = lambda s: s.replace('\\"', '"').replace("\\\\", "\\")  # noqa: E731
    return {unescape(k): unescape(v) for k, v in _HSTORE.findall(text or "")}


def osm_id(feat: ogr.Feature) -> str:
    """``way/N`` for a closed way, ``relation/N`` for a multipolygon relation."""
    way = feat.GetField("osm_way_id")
    return f"way/{way}" if way else f"relation/{feat.GetField('osm_id')}"


def feature_tags(feat: ogr.Feature) -> dict:
    """All OSM tags of a ``multipolygons`` feature: set driver fields plus ``other_tags``."""
    defn = feat.GetDefnRef()
    tags = {}
    for i in range(defn.GetFieldCount()):
        name = defn.GetFieldDefn(i).GetName()
        if name not in _SKIP_FIELDS and feat.IsFieldSetAndNotNull(i):
            tags[name] = feat.GetFieldAsString(i)
    tags.update(parse_hstore(feat.GetField("other_tags")))
    return tags


@dataclass
class OsmBuildings:
    """Mapped buildings of an extract: geometries in ``srs`` with their OSM ids and tags."""

    geoms: list
    ids: list
    tags: list = field(default_factory=list)
    srs: Optional[osr.SpatialReference] = None


def read_buildings(path: PathLike, target: Optional[osr.SpatialReference] = None) -> OsmBuildings:
    """The buildings of an OSM extract (valid polygons, in ``target``, default EPSG:4326)."""
    from ml_core.io.vector import feature_polygons, srs_of, transform

    if not Path(str(path)).exists():
        raise InputError(f"OSM file {path} not found. Check the path.")
    src, layer = open_buildings(path)
    srs = srs_of(layer)
    target = srs_of(target) if target is not None else srs
    ct = transform(srs, target)
    out = OsmBuildings([], [], [], target)
    for feat, g in feature_polygons(layer, ct):
        if g is None:
            continue
        out.geoms.append(g)
        out.ids.append(osm_id(feat))
        out.tags.append(feature_tags(feat))
    del src
    return out
