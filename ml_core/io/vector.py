"""Vector helpers shared by labels, predict, extract and metrics: reading polygon layers with
validation, reprojection (traditional GIS axis order), areas in m² and in-memory layers. The
raster grid side (pixel windows, bounds, burning a layer into a window) is ``ml_core.io.grid``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Union

import numpy as np
from osgeo import gdal, ogr, osr

from ml_core.errors import InputError, OutputError
from ml_core.events import ProgressCallback, ProgressEvent, emit
from ml_core.io.grid import overlaps, raster_bounds
from ml_core.osm.read import is_osm, open_buildings

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()

PathLike = Union[str, os.PathLike]
_POLYGONS = (ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon, ogr.wkbMultiSurface)


def as_list(paths) -> list:
    """None -> [], a path -> [path], a list/tuple -> list (for "one or several files")."""
    if paths is None:
        return []
    return list(paths) if isinstance(paths, (list, tuple)) else [paths]


def srs_of(obj) -> osr.SpatialReference:
    """A copy of the CRS of a dataset/layer/WKT with traditional (x=lon/easting) axis order."""
    if isinstance(obj, osr.SpatialReference):
        srs = obj.Clone()
    elif isinstance(obj, str):
        srs = osr.SpatialReference()
        try:
            srs.SetFromUserInput(obj)
        except RuntimeError as exc:
            raise InputError(f"Unknown coordinate reference system {obj!r} ({exc}). Use a code "
                             "like EPSG:4326.") from exc
    else:
        srs = obj.GetSpatialRef().Clone()
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def has_crs(srs: Optional[osr.SpatialReference]) -> bool:
    """False for a missing CRS and for GeoPackage's "Undefined geographic/cartesian SRS"."""
    return srs is not None and not (srs.GetName() or "").startswith("Undefined")


def transform(src: osr.SpatialReference, dst: osr.SpatialReference):
    """A coordinate transformation, or None when both CRSs are the same."""
    src, dst = srs_of(src), srs_of(dst)
    return None if src.IsSame(dst) else osr.CoordinateTransformation(src, dst)


_WGS84 = srs_of("EPSG:4326")


def local_utm(srs: osr.SpatialReference, x: float, y: float) -> osr.SpatialReference:
    """The UTM zone (WGS 84) containing point (x, y) given in ``srs``."""
    ct = transform(srs, _WGS84)
    lon, lat = ct.TransformPoint(x, y)[:2] if ct else (x, y)
    utm = osr.SpatialReference()
    utm.SetWellKnownGeogCS("WGS84")
    utm.SetUTM(int((lon + 180) // 6) % 60 + 1, lat >= 0)
    return srs_of(utm)


def ground_distance_m(srs: osr.SpatialReference, a: tuple, b: tuple) -> float:
    """Distance in metres between two points given in ``srs`` (measured in the local UTM zone)."""
    ct = transform(srs, local_utm(srs, *a))
    (ax, ay), (bx, by) = ((ct.TransformPoint(*p)[:2]) if ct else p for p in (a, b))
    return float(np.hypot(bx - ax, by - ay))


class AreaMeter:
    """Areas in m² of geometries in ``srs``: each is measured in the local UTM zone of ``centre``.

    Within one UTM zone the scale error is below 0.1 %, so this agrees with geodesic areas well
    inside 1 % for any raster-sized area, in geographic, Web Mercator or projected CRSs.
    """

    def __init__(self, srs: osr.SpatialReference, centre: tuple) -> None:
        self.ct = transform(srs, local_utm(srs, *centre))

    @classmethod
    def at_centre_of(cls, ds: gdal.Dataset) -> AreaMeter:
        """A meter for geometries in the CRS of raster ``ds``, zoned at its centre."""
        gt = ds.GetGeoTransform()
        centre = (gt[0] + gt[1] * ds.RasterXSize / 2, gt[3] + gt[5] * ds.RasterYSize / 2)
        return cls(srs_of(ds), centre)

    def area(self, geom: ogr.Geometry) -> float:
        if self.ct is None:
            return geom.GetArea()
        g = geom.Clone()
        g.Transform(self.ct)
        return g.GetArea()


@dataclass
class PolygonSet:
    """Polygon geometries read from a vector file, in a target CRS."""

    geoms: list
    srs: osr.SpatialReference
    source: str
    skipped: int = 0

    def to(self, target: Optional[osr.SpatialReference]) -> PolygonSet:
        """The same polygons in ``target`` (this set itself when already there or None)."""
        ct = transform(self.srs, target) if target is not None else None
        if ct is None:
            return self
        geoms = [g.Clone() for g in self.geoms]
        for g in geoms:
            g.Transform(ct)
        return replace(self, geoms=geoms, srs=srs_of(target))

    def envelope(self) -> tuple:
        """(minx, maxx, miny, maxy) of all geometries."""
        env = np.array([g.GetEnvelope() for g in self.geoms])
        return env[:, 0].min(), env[:, 1].max(), env[:, 2].min(), env[:, 3].max()


class BoxIndex:
    """Envelope index over geometries: vectorised bounding-box queries instead of O(n²) tests."""

    def __init__(self, geoms: Sequence[ogr.Geometry]) -> None:
        self.geoms = list(geoms)
        self.env = np.array([g.GetEnvelope() for g in self.geoms], float).reshape(-1, 4)

    def query(self, env: tuple, pad: float = 0.0) -> np.ndarray:
        """Indices of geometries whose envelope meets ``env`` (minx, maxx, miny, maxy) + ``pad``."""
        e = self.env
        return np.flatnonzero((e[:, 0] <= env[1] + pad) & (e[:, 1] >= env[0] - pad) &
                              (e[:, 2] <= env[3] + pad) & (e[:, 3] >= env[2] - pad))

    def union(self, indices: Sequence[int]) -> Optional[ogr.Geometry]:
        """Union of the indexed geometries, or None for no index."""
        if len(indices) == 0:
            return None
        multi = ogr.Geometry(ogr.wkbMultiPolygon)
        for i in indices:
            for p in polygons_of(self.geoms[i]):
                multi.AddGeometry(p)
        return multi.UnionCascaded()

    def meets(self, geom: ogr.Geometry) -> bool:
        """True when ``geom`` intersects (touching counts) any indexed geometry."""
        return any(geom.Intersects(self.geoms[j]) for j in self.query(geom.GetEnvelope()))

    def cover_fraction(self, polys: Sequence[ogr.Geometry]) -> np.ndarray:
        """Share of each polygon's area covered by the union of the indexed geometries."""
        out = np.zeros(len(polys))
        for i, p in enumerate(polys):
            union = self.union(self.query(p.GetEnvelope()))
            if union is not None and p.GetArea() > 0:
                out[i] = p.Intersection(union).GetArea() / p.GetArea()
        return out


def polygons_of(geom: ogr.Geometry) -> list:
    """The single polygons of a (multi)polygon or collection, as independent clones."""
    geom = polygon_part(geom.Clone())
    if geom is None:
        return []
    if geom.GetGeometryType() == ogr.wkbPolygon:
        return [geom]
    return [geom.GetGeometryRef(i).Clone() for i in range(geom.GetGeometryCount())]


def split_layer_name(path: PathLike) -> tuple[str, Optional[str]]:
    """``file.gpkg|layername=NAME`` (QGIS style, other ``|key=value`` options ignored) ->
    (file, NAME); (file, None) without a layer name."""
    file, *options = str(path).split("|")
    names = [o.split("=", 1)[1] for o in options if o.startswith("layername=")]
    return file, names[0] if names else None


def open_layer(path: PathLike, prefer: Optional[str] = None):
    """Open a vector layer: the one named in ``path``, else ``prefer`` if present, else the first.

    Returns (datasource, layer); keep the datasource alive while using the layer.
    """
    file, name = split_layer_name(path)
    if not file.startswith("/vsi") and not Path(file).exists():
        raise InputError(f"Vector file {file} not found. Check the path.")
    if name is None and is_osm(file):  # an OSM extract (.osm, .osm.pbf): its buildings
        return open_buildings(file)
    try:
        src = ogr.Open(file)
    except RuntimeError as exc:
        raise InputError(f"Vector file {file} cannot be read by GDAL/OGR ({exc}). The file is "
                         "corrupt or not a vector format; re-export it as GeoPackage.") from exc
    if src is None or src.GetLayerCount() == 0:
        raise InputError(f"Vector file {file} has no layers. Choose a polygon layer.")
    names = [src.GetLayer(i).GetName() for i in range(src.GetLayerCount())]
    if name is not None and name not in names:
        raise InputError(f"Vector file {file} has no layer {name!r} (layers: {names}).")
    layer = src.GetLayerByName(name or (prefer if prefer in names else names[0]))
    return src, layer


def read_polygons(path: PathLike, target: Optional[osr.SpatialReference] = None,
                  what: str = "polygons", prefer: Optional[str] = None,
                  progress: Optional[ProgressCallback] = None) -> PolygonSet:
    """Read polygons, make invalid ones valid, reproject to ``target`` (default: the layer's CRS).

    Non-polygon features are skipped and reported via ``progress``; a layer without any polygon,
    an empty layer or a layer without CRS is an :class:`InputError` naming the file.
    """
    src, layer = open_layer(path, prefer)
    name = f"{split_layer_name(path)[0]} (layer {layer.GetName()})"
    if not has_crs(layer.GetSpatialRef()):
        raise InputError(f"The {what} file {name} has no coordinate reference system. Assign one "
                         "(QGIS: Layer Properties > Source > CRS) and save it again.")
    srs = srs_of(layer)
    target = srs_of(target) if target is not None else srs
    ct = transform(srs, target)
    geoms, skipped, total = [], 0, 0
    for _, g in feature_polygons(layer, ct):
        total += 1
        if g is None:
            skipped += 1
        else:
            geoms.append(g)
    del src
    if total == 0:
        raise InputError(f"The {what} layer {name} is empty. Choose a layer with polygons.")
    if not geoms:
        raise InputError(f"The {what} layer {name} has no polygons (points or lines only). "
                         "Choose a polygon layer of building footprints.")
    if skipped:
        emit(progress, ProgressEvent("read", 0.0, f"{name}: skipped {skipped} non-polygon or "
                                                  f"empty feature(s) of {total}."))
    return PolygonSet(geoms, target, name, skipped)


def feature_polygons(layer, ct=None) -> Iterator[tuple[ogr.Feature, Optional[ogr.Geometry]]]:
    """Each feature of ``layer`` with its polygon part (made valid, then transformed by ``ct``),
    or None where it has none (no geometry, empty, points or lines)."""
    for feat in layer:
        ref = feat.GetGeometryRef()
        g = polygon_part(ref.Clone()) if ref is not None and not ref.IsEmpty() else None
        if g is not None and ct is not None:
            g.Transform(ct)
        yield feat, g


def polygon_part(g: ogr.Geometry) -> Optional[ogr.Geometry]:
    """The (multi)polygon part of a geometry, made valid; None when it has no area."""
    if g.GetGeometryType() in (ogr.wkbCurvePolygon, ogr.wkbMultiSurface):
        g = g.GetLinearGeometry()
    g.FlattenTo2D()
    if ogr.GT_Flatten(g.GetGeometryType()) not in _POLYGONS and g.GetGeometryType() != \
            ogr.wkbGeometryCollection:
        return None
    if not g.IsValid():
        g = g.MakeValid()
    if g.GetGeometryType() == ogr.wkbGeometryCollection:
        parts = [g.GetGeometryRef(i).Clone() for i in range(g.GetGeometryCount())]
        polys = ogr.Geometry(ogr.wkbMultiPolygon)
        for p in parts:
            if p.GetGeometryType() == ogr.wkbPolygon:
                polys.AddGeometry(p)
            elif p.GetGeometryType() == ogr.wkbMultiPolygon:
                for i in range(p.GetGeometryCount()):
                    polys.AddGeometry(p.GetGeometryRef(i))
        g = polys
    return g if not g.IsEmpty() and g.GetArea() > 0 else None


def create_gpkg(path: PathLike):
    """Create a GeoPackage data source; :class:`OutputError` naming the path when impossible."""
    try:
        return ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    except RuntimeError as exc:
        raise OutputError(f"Cannot write {path}: {exc}. Choose another output path.") from exc


def memory_layer(geoms: Sequence[ogr.Geometry], srs: osr.SpatialReference,
                 values: Optional[Sequence[int]] = None):
    """An in-memory OGR layer of ``geoms`` with an integer field ``id`` (``values`` or 1..n).

    Returns (datasource, layer); keep the datasource alive while using the layer.
    """
    src = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = src.CreateLayer("geoms", srs=srs, geom_type=ogr.wkbUnknown)
    layer.CreateField(ogr.FieldDefn("id", ogr.OFTInteger))
    defn = layer.GetLayerDefn()
    for i, g in enumerate(geoms):
        feat = ogr.Feature(defn)
        feat.SetField(0, int(values[i]) if values is not None else i + 1)
        feat.SetGeometry(g)
        layer.CreateFeature(feat)
    return src, layer


def envelope_polygon(env: tuple) -> ogr.Geometry:
    """The rectangle of a (minx, maxx, miny, maxy) envelope."""
    x0, x1, y0, y1 = env
    return ogr.CreateGeometryFromWkt(
        f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))")


def check_overlap(ds: gdal.Dataset, sets: Sequence[PolygonSet], raster_file: str) -> None:
    """:class:`InputError` when none of the polygon sets (in the raster CRS) overlaps the raster."""
    if not any(overlaps(s.envelope(), raster_bounds(ds)) for s in sets):
        names = ", ".join(s.source for s in sets)
        raise InputError(f"{names} does not overlap raster {raster_file}. Check that both "
                         "cover the same place and that their CRSs are set correctly.")
