"""``bfe rasterize``, ``drop``, ``predict``, ``extract``, ``evaluate``: the geo pipeline steps."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ml_core.cli import add_options, bounded_int, csv_list, finite_float, options_from_args
from ml_core.cli.train import ProgressBar, ctrl_c_cancels
from ml_core.config import ClusterOptions, ExtractOptions, PredictOptions, RasterizeOptions
from ml_core.io.atomic import check_not_input, check_suffix


def _extent(text: str) -> list:
    """``xmin,ymin,xmax,ymax[,CRS]`` (CRS like EPSG:4326; default the raster's)."""
    parts = text.split(",")
    if len(parts) not in (4, 5):
        raise argparse.ArgumentTypeError("use xmin,ymin,xmax,ymax[,EPSG:code]")
    return [float(v) for v in parts[:4]] + parts[4:]


GEOTIFF, GPKG = (".tif", ".tiff"), (".gpkg",)


def _output(suffixes: tuple):
    """An argparse type for an output path whose extension, if any, is one of ``suffixes`` (the
    format written), so that e.g. a GeoTIFF never ends up named ``.gpkg``."""
    def parse(text: str) -> str:
        if Path(text).suffix and Path(text).suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(
                f"{text}: the output is written as {' or '.join(suffixes)}; name it so")
        return text
    parse.__name__ = "output"
    return parse


def _add_predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bands", type=csv_list(int), default=None,
                   help="Comma-separated 1-based raster bands (default: the model card's).")
    p.add_argument("--extent", type=_extent, default=None,
                   help="Only predict xmin,ymin,xmax,ymax[,EPSG:code] (e.g. the map canvas).")
    p.add_argument("--aoi", default=None, help="Only predict inside these polygons.")
    add_options(p, PredictOptions)
    add_options(p, ClusterOptions)


def register(subparsers) -> None:
    """Add the geo subcommands."""
    p = subparsers.add_parser("rasterize", help="Burn buildings into a partial label mask "
                                                "(1 building, 0 background, 255 unknown).")
    p.add_argument("raster")
    p.add_argument("buildings", nargs="+", help="Building polygon file(s), any CRS.")
    p.add_argument("-o", "--output", required=True, type=_output(GEOTIFF),
                   help="Output mask GeoTIFF.")
    p.add_argument("--complete-area", nargs="+", default=None,
                   help="Polygons where labels are complete: unlabelled = background there.")
    p.add_argument("--background", nargs="+", default=None,
                   help="Polygons forced to background (e.g. rejected proposals).")
    add_options(p, RasterizeOptions)
    p.set_defaults(func=_cmd_rasterize)

    p = subparsers.add_parser("drop", help="Remove a seeded random fraction of buildings "
                                           "(simulated missing labels).")
    p.add_argument("buildings", help="Building polygons, or a label mask GeoTIFF (then whole "
                                     "connected building components are dropped).")
    p.add_argument("--fraction", type=finite_float, default=0.5,
                   help="Share to drop (default: 0.5).")
    p.add_argument("--seed", type=bounded_int(0), default=0, help="Random seed (default: 0).")
    p.add_argument("-o", "--output", required=True,
                   help="Output GeoPackage (layers 'buildings' and 'dropped'), or GeoTIFF mask.")
    p.add_argument("--dropped-mask", default=None,
                   help="For a mask input: also write the dropped pixels (1) here.")
    p.set_defaults(func=_cmd_drop)

    p = subparsers.add_parser("predict", help="Building probability GeoTIFF from a raster.")
    p.add_argument("raster", help="Raster, VRT, or folder of GeoTIFFs (mosaicked, reprojected "
                                  "to the first file's CRS where CRSs differ).")
    p.add_argument("-m", "--model", required=True, help="Model (.safetensors with its .json card).")
    p.add_argument("-o", "--output", required=True, type=_output(GEOTIFF),
                   help="Output probability GeoTIFF.")
    _add_predict_args(p)
    p.set_defaults(func=_cmd_predict)

    p = subparsers.add_parser("extract", help="Footprint polygons (GeoPackage) from a raster "
                                              "and a model, or from a probability raster.")
    p.add_argument("raster", help="Image raster (with -m) or probability raster (without -m).")
    p.add_argument("-m", "--model", default=None, help="Model; omit when RASTER is a probability "
                                                      "raster written by 'bfe predict'.")
    p.add_argument("-o", "--output", required=True, type=_output(GPKG),
                   help="Output GeoPackage.")
    p.add_argument("--existing", nargs="+", default=None,
                   help="Existing building footprints (e.g. OSM) for the new_buildings layer.")
    p.add_argument("--crs", default=None, help="Output CRS, e.g. EPSG:4326 (default: raster's).")
    p.add_argument("--prob", default=None, type=_output(GEOTIFF),
                   help="Also keep the probability GeoTIFF here.")
    _add_predict_args(p)
    add_options(p, ExtractOptions)
    p.set_defaults(func=_cmd_extract)

    p = subparsers.add_parser("evaluate", help="Pixel and object metrics against true buildings.")
    p.add_argument("prediction", help="Mask/probability GeoTIFF or footprints GeoPackage.")
    p.add_argument("--truth", required=True, help="True building polygons.")
    p.add_argument("--raster", default=None, help="Grid for pixel metrics of a vector prediction.")
    p.add_argument("--dropped", default=None, help="Dropped buildings (from 'bfe drop').")
    p.add_argument("--threshold", type=finite_float, default=0.5,
                   help="For probability rasters.")
    p.add_argument("--tile", type=bounded_int(1), default=256,
                   help="Tile size of the per-tile mean.")
    p.add_argument("--json", dest="json_out", default=None, help="Write the metrics here.")
    p.set_defaults(func=_cmd_evaluate)


def _cmd_rasterize(args: argparse.Namespace) -> int:
    from ml_core.labels.rasterize import rasterize_labels

    with ctrl_c_cancels() as cancel:
        out = rasterize_labels(args.raster, args.buildings, args.output,
                               options_from_args(args, RasterizeOptions),
                               complete_area=args.complete_area, background=args.background,
                               progress=ProgressBar(), cancel=cancel)
    print(f"Mask written to {out}.")
    return 0


def _cmd_drop(args: argparse.Namespace) -> int:
    from ml_core.labels.rasterize import (
        drop_buildings,
        drop_mask_components,
        read_mask,
        write_mask,
    )

    is_mask = Path(args.buildings).suffix.lower() in (*GEOTIFF, ".vrt")
    check_suffix(args.output, GEOTIFF if is_mask else GPKG,
                 "GeoTIFF mask" if is_mask else "GeoPackage")
    check_not_input(args.output, args.buildings)
    if args.dropped_mask:
        check_not_input(args.dropped_mask, args.buildings)
    if is_mask:
        partial, dropped = drop_mask_components(read_mask(args.buildings), args.fraction,
                                                args.seed)
        write_mask(args.buildings, partial, args.output)
        if args.dropped_mask:
            write_mask(args.buildings, dropped.astype("uint8"), args.dropped_mask)
        print(f"Dropped {int(dropped.sum())} building pixels: {args.output}.")
        return 0
    res = drop_buildings(args.buildings, args.fraction, args.seed, args.output)
    print(f"Kept {res.kept}, dropped {res.dropped} buildings: {res.path}.")
    return 0


def _predict(args: argparse.Namespace, out: str, cancel):
    from ml_core.infer.cluster.predict import predict_anywhere
    from ml_core.infer.cluster.sources import raster_source
    from ml_core.learn.device import select_device
    from ml_core.learn.modelfile import load_model

    options = options_from_args(args, PredictOptions)
    cluster = options_from_args(args, ClusterOptions)
    model = load_model(args.model, select_device(options.device))
    kwargs = {"bands": args.bands, "extent": args.extent, "aoi": args.aoi,
              "progress": ProgressBar(), "cancel": cancel}
    with raster_source(args.raster, Path(out).resolve().parent) as raster:
        predict_anywhere(raster, model, out, options, cluster, **kwargs)
    return model


def _cmd_predict(args: argparse.Namespace) -> int:
    with ctrl_c_cancels() as cancel:
        _predict(args, args.output, cancel)
    print(f"Probability raster written to {args.output}.")
    return 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from ml_core.infer.extract import extract_footprints

    options = options_from_args(args, ExtractOptions)
    with ctrl_c_cancels() as cancel, tempfile.TemporaryDirectory() as tmp:
        prob = args.raster
        if args.model:
            if args.prob:
                check_not_input(args.prob, args.raster, args.model, args.existing)
            prob = args.prob or str(Path(tmp) / "probability.tif")
            _predict(args, prob, cancel)
        res = extract_footprints(prob, args.output, options, existing=args.existing,
                                 crs=args.crs, progress=ProgressBar(), cancel=cancel)
    print(f"{res.footprints} footprints ({res.new} new) written to {res.path}.")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ml_core.evaluate.metrics import evaluate

    if args.json_out:
        check_not_input(args.json_out, args.prediction, args.truth, args.raster, args.dropped)
    result = evaluate(args.prediction, args.truth, raster=args.raster, dropped=args.dropped,
                      json_out=args.json_out, threshold=args.threshold, tile=args.tile)
    print(_evaluate_summary(result))
    print(json.dumps(result, indent=2))
    return 0


def _evaluate_summary(result: dict) -> str:
    """The one-to-one object figures first, then coverage and pixel figures."""
    from ml_core.evaluate.matching import describe, describe_errors

    obj = result["object"]
    lines = [f"Objects, one to one at IoU >= 0.5: {describe(obj)}; "
             f"{describe_errors(obj['errors'])}"]
    if "dropped_f1" in obj:
        lines.append(f"Against the dropped buildings ({obj['dropped_scored']}): "
                     f"{describe(obj, 'dropped_')}; {describe_errors(obj['dropped_errors'])}")
    lines.append(f"Coverage (secondary; found = predictions cover >= 50 %): recall "
                 f"{obj['coverage_recall']:.2f}, precision {obj['coverage_precision']:.2f}"
                 + (f", recall of dropped {obj['dropped_coverage_recall']:.2f}"
                    if "dropped_coverage_recall" in obj else ""))
    if "pixel" in result:
        pixel = result["pixel"]
        lines.append(f"Pixels: Dice {pixel['dice']:.3f}, IoU {pixel['iou']:.3f}")
    return "\n".join(lines)
