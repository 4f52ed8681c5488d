"""New buildings -> an ``.osm`` file for JOSM, or GeoJSON in EPSG:4326.

Only what is new is written: the proposals of a footprints GeoPackage (``new_buildings``), all
but the rejected ones, or only the accepted ones. Each becomes a closed way tagged
``building=yes`` (a ``type=multipolygon`` relation when it has holes of at least
:data:`ml_core.osm.checks.TINY_M2`; smaller pinholes are filled), with negative ids and no
version (new objects, as JOSM expects), simplified by :data:`SIMPLIFY_M`, and nodes shared
where buildings meet (:mod:`ml_core.osm.topology`, in the local UTM zone). Before writing,
buildings are shifted back into OSM's frame by the offset
:func:`ml_core.osm.checks.flag_proposals` stored with the layer, so they line up with their
mapped neighbours. Flagged geometry is refused or written
with a warning per building (duplicate nodes are merged here, so they are no longer a flag);
proposals overlapping a mapped building are never written.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
from osgeo import gdal, ogr, osr

from ml_core.errors import InputError, OutputError
from ml_core.events import ProgressCallback, ProgressEvent, emit
from ml_core.infer.extract import without_overlaps
from ml_core.io.atomic import atomic_output, check_writable
from ml_core.io.vector import local_utm, open_layer, polygons_of, srs_of, transform
from ml_core.osm import checks
from ml_core.osm.topology import share_nodes

gdal.UseExceptions()
ogr.UseExceptions()

PathLike = Union[str, os.PathLike]
NEW_LAYER = "new_buildings"
NODE_TOLERANCE_M = checks.DUPLICATE_M  # vertices closer than this become one node
COORD_DECIMALS = 7  # OSM stores 1e-7 degrees
# Near-collinear vertices closer than this to the outline are dropped: on the sample's proposals
# it halved the nodes (mostly arcs of buffered cuts), median area change 0.02 %, at most 0.9 %.
SIMPLIFY_M = 0.05
ON_FLAGGED = ("warn", "refuse")
FORMATS = {".osm": "osm", ".geojson": "geojson", ".json": "geojson"}
WGS84 = srs_of("EPSG:4326")


@dataclass
class ExportResult:
    """What was written: buildings, nodes (how many shared), warnings and the shift applied."""

    path: Path
    buildings: int
    nodes: int = 0
    shared_nodes: int = 0
    shift_m: tuple = (0.0, 0.0)
    warnings: list = field(default_factory=list)
    not_written: dict = field(default_factory=dict)  # reason -> count

    def summary(self) -> str:
        """One sentence: what was written where, the shift, what was not written and why."""
        skipped = ", ".join(f"{n} {why}" for why, n in self.not_written.items())
        return (f"{self.buildings} buildings ({self.nodes} nodes, {self.shared_nodes} shared) "
                f"written to {self.path}; shifted back {self.shift_m[0]:.2f} m east, "
                f"{self.shift_m[1]:.2f} m north" + (f"; not written: {skipped}" if skipped else "")
                + ".")


@dataclass
class _Proposal:
    fid: int
    geom: ogr.Geometry  # metric (local UTM), in OSM's frame
    score: Optional[float]
    flags: list


def output_format(path: PathLike) -> str:
    """``osm`` or ``geojson`` from the output name; :class:`OutputError` otherwise."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OutputError(f"Cannot export to {path}: name it .osm (for JOSM) or .geojson.")
    return fmt


def _read(footprints: PathLike, layer_name: str, accepted_only: bool):
    """(features, layer CRS, stored offset) of the proposals to export."""
    src, layer = open_layer(f"{footprints}|layername={layer_name}")
    names = [layer.GetLayerDefn().GetFieldDefn(i).GetName()
             for i in range(layer.GetLayerDefn().GetFieldCount())]
    if "status" in names:
        layer.SetAttributeFilter("status = 'accepted'" if accepted_only
                                 else "status IS NULL OR status <> 'rejected'")
    elif accepted_only:
        raise InputError(f"Layer {layer_name} of {footprints} has no review status; export "
                         "without --accepted-only, or review the proposals first.")
    feats = [(f.GetFID(), f.GetGeometryRef().Clone(),
              f.GetField("score") if "score" in names else None,
              checks.parse_flags(f.GetField(checks.FLAGS_FIELD))
              if checks.FLAGS_FIELD in names else [])
             for f in layer if f.GetGeometryRef() is not None]
    offset = checks.stored_offset(layer)
    srs = srs_of(layer)
    del src
    if not feats:
        what = "accepted buildings" if accepted_only else "new buildings"
        raise InputError(f"Layer {layer_name} of {footprints} has no {what} to export. "
                         + ("Accept some proposals in review first." if accepted_only else
                            "Run extraction with existing buildings first."))
    return feats, srs, offset


def _centre(geoms: list) -> tuple:
    env = np.array([g.GetEnvelope() for g in geoms])
    return (float(env[:, 0].min() + env[:, 1].max()) / 2,
            float(env[:, 2].min() + env[:, 3].max()) / 2)


def polygon_rings(poly: ogr.Geometry, min_hole_m2: float = 0.0) -> list:
    """Open rings ([n, 2] arrays) of a polygon: exterior first, then holes of at least
    ``min_hole_m2`` (metric CRS)."""
    out = []
    for i in range(poly.GetGeometryCount()):
        pts = np.array(poly.GetGeometryRef(i).GetPoints())[:, :2]
        pts = pts[:-1] if len(pts) > 1 and np.array_equal(pts[0], pts[-1]) else pts
        x, y = pts[:, 0], pts[:, 1]
        if i == 0 or abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2 >= min_hole_m2:
            out.append(pts)
    return out


def _proposals(feats: list, srs: osr.SpatialReference, metric: osr.SpatialReference,
               shift: tuple) -> list:
    ct = transform(srs, metric)
    out = []
    for fid, geom, score, flags in feats:
        for part in polygons_of(geom):
            if ct is not None:
                part.Transform(ct)
            moved = ogr.Geometry(ogr.wkbPolygon)
            for ring in polygon_rings(part):
                r = ogr.Geometry(ogr.wkbLinearRing)
                for x, y in np.vstack([ring, ring[:1]]) - np.asarray(shift):
                    r.AddPoint_2D(float(x), float(y))
                moved.AddGeometry(r)
            out.append(_Proposal(fid, moved.SimplifyPreserveTopology(SIMPLIFY_M), score,
                                 list(flags)))
    # simplified one at a time, neighbours that shared a wall may overlap by a few cm
    kept = [p for p in out if p.geom is not None and not p.geom.IsEmpty()]
    shapes = without_overlaps([p.geom for p in kept])
    if len(shapes) == len(kept):
        for p, g in zip(kept, shapes):
            p.geom = g
    return kept


def _judge(props: list, on_flagged: str, footprints: PathLike) -> tuple[list, list, dict]:
    """(proposals to write, warnings, not written by reason) after the geometry checks."""
    for p, found in zip(props, checks.check_geometries([p.geom for p in props])):
        p.flags = sorted((set(p.flags) | set(found)) - checks.FIXED_ON_EXPORT)
    never = [p for p in props if checks.OVERLAPS_MAPPED in p.flags]
    keep = [p for p in props if checks.OVERLAPS_MAPPED not in p.flags]
    flagged = [p for p in keep if p.flags]
    lines = [f"proposal fid {p.fid}: {', '.join(p.flags)}" for p in flagged]
    if flagged and on_flagged == "refuse":
        shown = "; ".join(lines[:10]) + (f"; and {len(lines) - 10} more" if len(lines) > 10 else "")
        raise InputError(f"{len(flagged)} of {len(keep)} buildings of {footprints} are flagged "
                         f"({shown}). Fix or reject them in review, or export with "
                         "--on-flagged warn. Nothing was written.")
    return keep, lines, ({checks.OVERLAPS_MAPPED: len(never)} if never else {})


def to_lonlat(xy: np.ndarray, metric: osr.SpatialReference) -> np.ndarray:
    """Longitude, latitude (rounded to OSM's 1e-7 degrees) of metric coordinates [N, 2]."""
    pts = transform(metric, WGS84).TransformPoints(np.asarray(xy, float))
    return np.round(np.array(pts)[:, :2], COORD_DECIMALS)


def _attr(text: str) -> str:
    """An XML attribute value, quoted and escaped (&, <, >, quotes)."""
    return '"' + html.escape(text, quote=True) + '"'


def _tag_lines(tags: dict, indent: str) -> list:
    return [f"{indent}<tag k={_attr(k)} v={_attr(v)}/>" for k, v in tags.items()]


def osm_document(node_lonlat: np.ndarray, buildings: list, tags: dict) -> str:
    """OSM XML of new objects: ``buildings`` is a list of node-index rings (exterior first).

    Node ``i`` gets id ``-(i + 1)``; ways and relations continue the negative sequence.
    """
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="bfe">']
    lines += [f'  <node id="{-(i + 1)}" lat="{lat:.{COORD_DECIMALS}f}" '
              f'lon="{lon:.{COORD_DECIMALS}f}"/>' for i, (lon, lat) in enumerate(node_lonlat)]
    next_id = len(node_lonlat) + 1
    ways, relations = [], []
    for rings in buildings:
        members = []
        for k, ring in enumerate(rings):
            way = [f'  <way id="{-next_id}">']
            way += [f'    <nd ref="{-(n + 1)}"/>' for n in [*ring, ring[0]]]
            way += _tag_lines(tags, "    ") if len(rings) == 1 else []
            ways += [*way, "  </way>"]
            members.append((next_id, "outer" if k == 0 else "inner"))
            next_id += 1
        if len(rings) > 1:
            relations += [f'  <relation id="{-next_id}">']
            relations += [f'    <member type="way" ref="{-w}" role="{role}"/>'
                          for w, role in members]
            relations += [*_tag_lines({"type": "multipolygon", **tags}, "    "), "  </relation>"]
            next_id += 1
    return "\n".join([*lines, *ways, *relations, "</osm>", ""])


def _write_geojson(path: Path, node_lonlat: np.ndarray, buildings: list, props: list,
                   tags: dict) -> None:
    src = ogr.GetDriverByName("GeoJSON").CreateDataSource(str(path))
    layer = src.CreateLayer("new_buildings", srs=WGS84, geom_type=ogr.wkbPolygon,
                            options=["RFC7946=YES", f"COORDINATE_PRECISION={COORD_DECIMALS}"])
    for name, kind in (("building", ogr.OFTString), ("source", ogr.OFTString), ("score",
                       ogr.OFTReal), ("flags", ogr.OFTString), ("bfe_fid", ogr.OFTInteger)):
        layer.CreateField(ogr.FieldDefn(name, kind))
    for rings, p in zip(buildings, props):
        poly = ogr.Geometry(ogr.wkbPolygon)
        for ring in rings:
            r = ogr.Geometry(ogr.wkbLinearRing)
            for lon, lat in node_lonlat[[*ring, ring[0]]]:
                r.AddPoint_2D(float(lon), float(lat))
            poly.AddGeometry(r)
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetGeometry(poly)
        for k, v in tags.items():
            feat.SetField(k, v)
        if p.score is not None:
            feat.SetField("score", float(p.score))
        feat.SetField("flags", ",".join(p.flags))
        feat.SetField("bfe_fid", int(p.fid))
        layer.CreateFeature(feat)
    layer = None  # the layer before its datasource
    src = None


def export_buildings(footprints: PathLike, out: PathLike, source: Optional[str] = None,
                     layer: str = NEW_LAYER, accepted_only: bool = False,
                     on_flagged: str = "warn", shift_m: Optional[tuple] = None,
                     progress: Optional[ProgressCallback] = None) -> ExportResult:
    """Write the new buildings of ``footprints`` to ``out`` (``.osm`` or ``.geojson``).

    ``shift_m``: (east, north) metres from OSM's frame to the imagery's; default the offset
    stored with the layer (none when not confident). ``on_flagged``: ``warn`` (write, one
    warning per flagged building) or ``refuse`` (write nothing).
    """
    fmt = output_format(out)
    if on_flagged not in ON_FLAGGED:
        raise InputError(f"--on-flagged must be one of {', '.join(ON_FLAGGED)}, "
                         f"not {on_flagged!r}.")
    check_writable(out)
    feats, srs, stored = _read(footprints, layer, accepted_only)
    shift = tuple(shift_m) if shift_m is not None else stored
    metric = local_utm(srs, *_centre([f[1] for f in feats]))
    props, warnings, not_written = _judge(_proposals(feats, srs, metric, shift), on_flagged,
                                          footprints)
    for line in warnings:
        emit(progress, ProgressEvent("export", 0.5, f"warning: {line}"))
    rings = [polygon_rings(p.geom, checks.TINY_M2) for p in props]  # pinholes are filled
    nodes = share_nodes([r for rs in rings for r in rs], NODE_TOLERANCE_M)
    buildings, kept, i = [], [], 0
    for p, rs in zip(props, rings):
        node_rings, i = nodes.rings[i:i + len(rs)], i + len(rs)
        if node_rings[0] is None:
            not_written["degenerate"] = not_written.get("degenerate", 0) + 1
            continue
        buildings.append([r for r in node_rings if r is not None])
        kept.append(p)
    used = np.unique(np.concatenate([r for b in buildings for r in b])) if buildings else []
    renumber = np.full(len(nodes.xy), -1)
    renumber[used] = np.arange(len(used))
    buildings = [[renumber[r].tolist() for r in b] for b in buildings]
    lonlat = to_lonlat(nodes.xy[used], metric) if len(used) else np.zeros((0, 2))
    tags = {"building": "yes", **({"source": source} if source else {})}
    with atomic_output(out) as tmp:
        if fmt == "osm":
            tmp.write_text(osm_document(lonlat, buildings, tags), encoding="utf-8")
        else:
            _write_geojson(tmp, lonlat, buildings, kept, tags)
    shared = int(np.sum(np.bincount(np.concatenate([np.unique(np.concatenate(b))
                                                    for b in buildings])) > 1)) if buildings else 0
    result = ExportResult(Path(out), len(buildings), len(lonlat), shared,
                          (float(shift[0]), float(shift[1])), warnings, not_written)
    emit(progress, ProgressEvent("export", 1.0, f"{len(buildings)} buildings to {out}"))
    return result
