"""``bfe export``: new buildings of a footprints GeoPackage -> ``.osm`` (JOSM) or GeoJSON."""

from __future__ import annotations

import argparse
import sys

from ml_core.osm.export import NEW_LAYER, ON_FLAGGED


def _shift(text: str) -> tuple:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError("use EAST,NORTH in metres, e.g. 0,0")
    return float(parts[0]), float(parts[1])


def register(subparsers) -> None:
    """Add the ``export`` subcommand."""
    p = subparsers.add_parser("export", help="Write the new buildings for OSM editing: an .osm "
                                             "file for JOSM or GeoJSON in EPSG:4326.")
    p.add_argument("footprints", help="Footprints GeoPackage written by 'bfe extract'/'bfe run'.")
    p.add_argument("-o", "--output", required=True,
                   help="OUT.osm (JOSM: new objects, shared nodes) or OUT.geojson.")
    p.add_argument("--source", default=None,
                   help="Value of the source= tag, e.g. the imagery's name (default: none).")
    p.add_argument("--layer", default=NEW_LAYER, help=f"Layer to export (default: {NEW_LAYER}).")
    p.add_argument("--accepted-only", action="store_true",
                   help="Only the proposals accepted in review (default: all but rejected).")
    p.add_argument("--on-flagged", choices=ON_FLAGGED, default="warn",
                   help="Flagged geometry (crossing, unsquare, tiny, sliver, duplicate nodes): "
                        "warn per building and write, or refuse and write nothing "
                        "(default: warn). Proposals overlapping mapped buildings are never "
                        "written.")
    p.add_argument("--shift", type=_shift, default=None,
                   help="EAST,NORTH metres from OSM's frame to the imagery's; buildings are "
                        "moved back by it (default: the offset stored by extraction, 0,0 to "
                        "turn off).")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from ml_core.osm.export import export_buildings

    res = export_buildings(args.footprints, args.output, source=args.source, layer=args.layer,
                           accepted_only=args.accepted_only, on_flagged=args.on_flagged,
                           shift_m=args.shift)
    for line in res.warnings:
        print(f"bfe: warning: {line}", file=sys.stderr)
    print(res.summary())
    return 0
