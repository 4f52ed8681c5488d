"""Where a reviewer should look first: hints from the probability raster and the OSM layer.

One GeoPackage layer ``hints`` (raster CRS) with fields ``reason`` and ``score`` (mean building
probability inside the polygon, or the proposal's score):

- ``unsure``: regions where the model hesitates, ``|p - 0.5| < band``, at least ``min_area`` m²;
- ``osm_low_score``: a mapped building the model scores below ``osm_low`` (demolished, or
  misaligned with the imagery);
- ``missing_in_osm``: a new building (from the extraction) scored at least ``new_high``.

Everything is read strip by strip through extract's polygonising and zonal-mean helpers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from osgeo import ogr

from ml_core.config import ExtractOptions
from ml_core.events import CancelToken, check_cancel
from ml_core.infer.polygonize import binary_polygons, zonal_mean
from ml_core.io import raster as gdalio
from ml_core.io.atomic import atomic_output, check_writable
from ml_core.io.grid import overlaps, raster_bounds
from ml_core.io.vector import (
    AreaMeter,
    as_list,
    create_gpkg,
    open_layer,
    read_polygons,
    srs_of,
    transform,
)

UNSURE, OSM_LOW, MISSING = "unsure", "osm_low_score", "missing_in_osm"
REASONS = (UNSURE, OSM_LOW, MISSING)
PathLike = Union[str, os.PathLike]


def _unsure(ds, band: float, min_area: float, cancel: Optional[CancelToken]) -> list:
    gt = ds.GetGeoTransform()
    meter = AreaMeter.at_centre_of(ds)
    regions = [g.SimplifyPreserveTopology(abs(gt[1]))
               for g in binary_polygons(ds, 0.5 - band, 0.5 + band, cancel)]
    regions = [g for g in regions if not g.IsEmpty() and meter.area(g) >= min_area]
    return [(UNSURE, float(s), g) for g, s in zip(regions, zonal_mean(ds, regions, cancel))]


def _osm_low(ds, buildings, osm_low: float, cancel: Optional[CancelToken]) -> list:
    box = raster_bounds(ds)
    geoms = [g for p in as_list(buildings)
             for g in read_polygons(p, srs_of(ds), "buildings").geoms
             if overlaps(g.GetEnvelope(), box)]
    return [(OSM_LOW, float(s), g) for g, s in zip(geoms, zonal_mean(ds, geoms, cancel))
            if s < osm_low]


def _missing(ds, new_buildings: PathLike, new_high: float) -> list:
    src, layer = open_layer(new_buildings, prefer="new_buildings")
    ct = transform(srs_of(layer), srs_of(ds))
    layer.SetAttributeFilter(f"score >= {float(new_high)}")
    out = []
    for feat in layer:
        g = feat.GetGeometryRef().Clone()
        if ct is not None:
            g.Transform(ct)
        out.append((MISSING, float(feat.GetField("score")), g))
    del src
    return out


def hints(prob_path: gdalio.RasterLike, buildings, out_path: PathLike,
          new_buildings: Optional[PathLike] = None, band: float = 0.15,
          min_area: float = ExtractOptions.min_area, osm_low: float = 0.2,
          new_high: float = 0.8, cancel: Optional[CancelToken] = None) -> Path:
    """Write the ``hints`` layer (see the module docstring) to ``out_path``; returns it.

    ``buildings``: the OSM building path(s); ``new_buildings``: the extraction's
    ``new_buildings`` layer (no ``missing_in_osm`` hints without it).
    """
    ds = gdalio.open_raster(prob_path)
    check_writable(out_path)
    found = _unsure(ds, band, min_area, cancel) + _osm_low(ds, buildings, osm_low, cancel)
    if new_buildings is not None:
        found += _missing(ds, new_buildings, new_high)
    check_cancel(cancel)
    with atomic_output(out_path) as tmp:
        out = create_gpkg(tmp)  # keep the data source alive while writing its layer
        layer = out.CreateLayer("hints", srs=srs_of(ds), geom_type=ogr.wkbMultiPolygon)
        layer.CreateField(ogr.FieldDefn("reason", ogr.OFTString))
        layer.CreateField(ogr.FieldDefn("score", ogr.OFTReal))
        layer.StartTransaction()
        for reason, score, geom in found:
            feat = ogr.Feature(layer.GetLayerDefn())
            feat.SetGeometry(ogr.ForceToMultiPolygon(geom))
            feat.SetField("reason", reason)
            feat.SetField("score", round(score, 4))
            layer.CreateFeature(feat)
        layer.CommitTransaction()
        out = layer = None
    return Path(out_path)
