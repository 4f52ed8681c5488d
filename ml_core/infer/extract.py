"""Probability raster -> building footprint polygons in a GeoPackage.

One polygon per building (``ml_core.infer.instances``: thresholds from the raster, its model or
the user; touching buildings separated from confident interiors (nearest seed) for instance
models; holes kept; neighbours share their walls), simplified at about a pixel of ground
distance, polygons under ``min_area`` m² dropped, optionally regularised (right angles where a
building is nearly rectangular, ``ml_core.infer.regularize``), then what is new is split off.

New buildings: a blob overlapping existing footprints by at most
``existing_overlap`` of its area is new as a whole. Otherwise the (slightly buffered) existing
footprints are cut out of it and every remaining part that is building-sized (≥ ``min_area`` and
at least :data:`MIN_WIDTH_M` wide) becomes a new footprint; the rest of the blob stays
``is_new = 0``. So touching buildings merged into one blob no longer hide the new ones.

Layers: ``footprints`` (all, fields ``area_m2``, ``score`` = mean probability, ``is_new``) and
``new_buildings`` (only new, plus ``status`` = ``proposed`` for review).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from osgeo import gdal, ogr, osr

from ml_core.config import ExtractOptions
from ml_core.errors import InputError
from ml_core.events import CancelToken, ProgressCallback, ProgressEvent, check_cancel, emit
from ml_core.infer.instances import instance_polygons
from ml_core.infer.polygonize import zonal_mean
from ml_core.infer.regularize import orthogonalize
from ml_core.infer.thresholds import Thresholds
from ml_core.io import raster as gdalio
from ml_core.io.atomic import atomic_output, check_not_input, check_writable, close_vector
from ml_core.io.vector import (
    AreaMeter,
    BoxIndex,
    as_list,
    create_gpkg,
    ground_distance_m,
    polygon_part,
    polygons_of,
    read_polygons,
    srs_of,
    transform,
)
from ml_core.osm.checks import flag_proposals
from ml_core.osm.offset import estimate_offset, shift_geoms

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

MIN_WIDTH_M = 2.0  # parts narrower than this (after cutting out existing buildings) are slivers
EXISTING_BUFFER_M = 0.5  # existing footprints are grown by max(this, 1 pixel) before cutting
PathLike = Union[str, os.PathLike]


@dataclass
class ExtractResult:
    """The GeoPackage written and how many footprints (all / new) it holds."""

    path: Path
    footprints: int
    new: int


@dataclass
class _Footprint:
    geom: ogr.Geometry
    area_m2: float
    is_new: bool
    score: float = 0.0


def valid_polygon(geom: ogr.Geometry) -> Optional[ogr.Geometry]:
    """``geom`` as one valid polygon: pixel outlines can touch themselves at a corner (8-connected
    pixels), which GEOS calls invalid; made valid, the largest piece is kept. None when empty."""
    if geom.IsValid() and geom.GetGeometryType() == ogr.wkbPolygon:
        return None if geom.IsEmpty() else geom
    fixed = polygon_part(geom)
    if fixed is None:
        return None
    parts = polygons_of(fixed)
    return max(parts, key=lambda g: g.GetArea()) if parts else None


def without_overlaps(geoms: list, max_share: float = 0.05) -> list:
    """Neighbours simplified (or squared) one at a time can overlap a little along the wall
    they shared; each polygon gives up what an earlier one covers, so buildings touch but never
    overlap (JOSM warns on overlapping buildings). Overlaps above ``max_share`` of a polygon's
    area are not such slivers: they are left for the checks to flag."""
    index = BoxIndex(geoms)
    out: list = []
    for i, geom in enumerate(geoms):
        for j in index.query(geom.GetEnvelope()):
            if j >= i or out[j] is None or geom is None or not geom.Intersects(out[j]):
                continue
            shared = geom.Intersection(out[j])  # a line or point where they only touch
            common = shared.GetArea() if ogr.GT_Flatten(shared.GetGeometryType()) in (
                ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbGeometryCollection) else 0.0
            if 0 < common <= max_share * geom.GetArea():
                geom = valid_polygon(geom.Difference(out[j]))
        out.append(geom)
    return [g for g in out if g is not None]


def metres_per_unit(ds: gdal.Dataset) -> tuple[float, float]:
    """Ground metres per CRS unit along x and y at the raster's centre (angles are measured in
    that frame, also for rasters in degrees)."""
    gt, srs = ds.GetGeoTransform(), srs_of(ds)
    cx, cy = gdal.ApplyGeoTransform(gt, ds.RasterXSize / 2, ds.RasterYSize / 2)
    dx, dy = abs(gt[1]), abs(gt[5])
    return (ground_distance_m(srs, (cx, cy), (cx + dx, cy)) / dx,
            ground_distance_m(srs, (cx, cy), (cx, cy + dy)) / dy)


class _NewSplitter:
    """Decides what of each predicted blob is new, given existing footprints (raster CRS)."""

    def __init__(self, existing: list, buffer: float, min_width: float, min_area: float,
                 max_overlap: float, meter: AreaMeter) -> None:
        self.index = BoxIndex(existing)
        self.buffer, self.min_width, self.min_area = buffer, min_width, min_area
        self.max_overlap, self.meter = max_overlap, meter

    def _building_sized(self, part: ogr.Geometry) -> bool:
        return (self.meter.area(part) >= self.min_area
                and not part.Buffer(-self.min_width / 2).IsEmpty())

    def split(self, blob: ogr.Geometry, area_m2: float) -> list:
        b = self.buffer
        union = self.index.union(self.index.query(blob.GetEnvelope(), pad=b))
        if union is None:
            return [_Footprint(blob, area_m2, True)]
        overlap = blob.Intersection(union).GetArea() / blob.GetArea()
        if overlap <= self.max_overlap:
            return [_Footprint(blob, area_m2, True)]
        new = [p for p in polygons_of(blob.Difference(union.Buffer(b))) if self._building_sized(p)]
        out = [_Footprint(p, self.meter.area(p), True) for p in new]
        rest = blob
        for p in new:
            rest = rest.Difference(p)
        out += [_Footprint(p, self.meter.area(p), False) for p in polygons_of(rest)
                if self.meter.area(p) >= self.min_area]
        return out


def _write(path: Path, footprints: list, srs: osr.SpatialReference, ct, final: Path) -> None:
    out = create_gpkg(path)
    layers = {}
    for name in ("footprints", "new_buildings"):
        layer = out.CreateLayer(name, srs=srs, geom_type=ogr.wkbMultiPolygon)
        layer.CreateField(ogr.FieldDefn("area_m2", ogr.OFTReal))
        layer.CreateField(ogr.FieldDefn("score", ogr.OFTReal))
        flag = ogr.FieldDefn("is_new", ogr.OFTInteger)
        flag.SetSubType(ogr.OFSTBoolean)
        layer.CreateField(flag)
        if name == "new_buildings":
            layer.CreateField(ogr.FieldDefn("status", ogr.OFTString))
        layers[name] = layer
    for lname, layer in layers.items():
        layer.StartTransaction()
        for f in footprints:
            if lname == "new_buildings" and not f.is_new:
                continue
            feat = ogr.Feature(layer.GetLayerDefn())
            geom = ogr.ForceToMultiPolygon(f.geom.Clone())
            if ct is not None:
                geom.Transform(ct)
            feat.SetGeometry(geom)
            feat.SetField("area_m2", round(f.area_m2, 2))
            feat.SetField("score", round(f.score, 4))
            feat.SetField("is_new", int(f.is_new))
            if lname == "new_buildings":
                feat.SetField("status", "proposed")
            layer.CreateFeature(feat)
        layer.CommitTransaction()
    close_vector(out, final)  # the spatial index is written here: a full disk fails it


def probability_threshold(ds: gdal.Dataset, options: ExtractOptions) -> float:
    """The building threshold extraction uses: the user's, else the raster's (its model's)."""
    return Thresholds.of_raster(ds).overridden(options.threshold).building


def seed_pixels(min_seed_m2: float, pixel_m: float) -> int:
    """The smallest interior region, in pixels, that seeds a building of its own."""
    return max(1, round(min_seed_m2 / (pixel_m * pixel_m)))


def _check_probability(ds: gdal.Dataset, path) -> None:
    """Refuse an image given where a probability raster (one or two Float32 bands: building,
    and interior for instance models) is expected."""
    band = ds.GetRasterBand(1)
    if ds.RasterCount > 2 or band.DataType not in (gdal.GDT_Float32, gdal.GDT_Float64):
        raise InputError(
            f"{path} looks like an image ({ds.RasterCount} band(s) of "
            f"{gdal.GetDataTypeName(band.DataType)}), not a building probability raster. "
            "Give a model (-m MODEL) to predict first, or the output of 'bfe predict'.")


def extract_footprints(prob_path: gdalio.RasterLike, out_path: PathLike,
                       options: Optional[ExtractOptions] = None, existing=None,
                       crs: Optional[str] = None, progress: Optional[ProgressCallback] = None,
                       cancel: Optional[CancelToken] = None) -> ExtractResult:
    """Polygonise a probability raster into ``out_path`` (GeoPackage); see the module docstring.

    ``existing``: path(s) of existing building footprints (any CRS); ``crs``: output CRS
    (e.g. ``EPSG:4326``), default the raster's.
    """
    options = options or ExtractOptions()
    ds = gdalio.open_raster(prob_path)
    _check_probability(ds, prob_path)
    check_writable(out_path)
    check_not_input(out_path, prob_path, existing)
    srs = srs_of(ds)
    out_srs = srs_of(crs) if crs else srs
    existing_geoms = []
    for path in as_list(existing):
        existing_geoms += read_polygons(path, srs, what="existing buildings",
                                        progress=progress).geoms
    mapped, offset = existing_geoms, estimate_offset(ds, existing_geoms) if existing_geoms else None
    if offset is not None and offset.applies:  # split blobs against the roofs as imaged
        existing_geoms = shift_geoms(mapped, srs, offset.dx_m, offset.dy_m)
    gt = ds.GetGeoTransform()
    px_crs, px_m = abs(gt[1]), gdalio.pixel_size_m(ds)
    to_crs = px_crs / px_m  # CRS units per metre at the raster centre
    meter = AreaMeter.at_centre_of(ds)
    splitter = _NewSplitter(existing_geoms, max(EXISTING_BUFFER_M, px_m) * to_crs,
                            MIN_WIDTH_M * to_crs, options.min_area, options.existing_overlap, meter)
    emit(progress, ProgressEvent("extract", 0.0, "polygonising"))
    frame = metres_per_unit(ds)
    thresholds = Thresholds.of_raster(ds).overridden(options.threshold, options.seed_threshold)
    blobs = instance_polygons(ds, thresholds, seed_pixels(options.min_seed_m2, px_m), cancel)
    shaped = []
    for i, blob in enumerate(blobs):
        if i % 200 == 0:
            check_cancel(cancel)
            emit(progress, ProgressEvent("extract", 0.1 + 0.6 * i / len(blobs),
                                         f"polygon {i}/{len(blobs)}"))
        geom = valid_polygon(blob.SimplifyPreserveTopology(options.simplify * px_crs))
        if geom is not None and options.regularize:
            geom = orthogonalize(geom, *frame)
        if geom is not None and meter.area(geom) >= options.min_area:
            shaped.append(geom)
    footprints = []
    for geom in without_overlaps(shaped):
        area = meter.area(geom)
        if area >= options.min_area:
            footprints += splitter.split(geom, area)
    emit(progress, ProgressEvent("extract", 0.75, "scoring"))
    scores = zonal_mean(ds, [f.geom for f in footprints], cancel)
    for f, score in zip(footprints, np.nan_to_num(scores)):
        f.score = float(score)
    with atomic_output(out_path) as tmp:
        _write(tmp, footprints, out_srs, transform(srs, out_srs), out_path)
        flag_proposals(tmp, mapped, srs, ds, offset=offset)  # mapper-style flags, the offset
    n_new = sum(f.is_new for f in footprints)
    emit(progress, ProgressEvent("extract", 1.0, f"{len(footprints)} footprints, {n_new} new"))
    return ExtractResult(Path(out_path), len(footprints), n_new)
