"""Diagnose extraction on a scored area: object figures of one probability raster over a grid
of building and seed thresholds, against the true polygons burned on its grid.

For understanding only (where the errors are: splits, merges, near misses), never for
choosing thresholds: those are chosen on held-out blocks (``ml_core.learn.threshold``). The
true buildings are the polygons themselves (one id each), so the figures do not depend on how
instances are recovered from label classes; ``--from-mask`` scores against the instances that
the threshold policy recovers from the 4-class label mask instead, to check that recovery.

    python scripts/extraction_grid.py PROB.tif BUILDINGS.gpkg [--building 0.3 0.5] \
        [--seed 0.3 0.5] [--min-area 15] [--errors]

``--errors`` adds, under each row, why the unmatched went unmatched (split pieces, merges, near
misses, polygons on no building).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from osgeo import gdal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml_core.config import ExtractOptions  # noqa: E402
from ml_core.evaluate.matching import describe_errors, match_labels  # noqa: E402
from ml_core.infer.extract import seed_pixels  # noqa: E402
from ml_core.infer.instances import drop_small, label_instances  # noqa: E402
from ml_core.infer.thresholds import Thresholds  # noqa: E402
from ml_core.io import raster as gdalio  # noqa: E402
from ml_core.io.grid import burn  # noqa: E402
from ml_core.io.vector import memory_layer, read_polygons  # noqa: E402
from ml_core.labels.classes import UNKNOWN  # noqa: E402
from ml_core.labels.rasterize import rasterize_labels, read_mask  # noqa: E402
from ml_core.learn.threshold import truth_instances  # noqa: E402

COLUMNS = ("precision", "recall", "f1", "mean_iou", "merged_share", "split_share")


def true_ids(prob, buildings: Path) -> np.ndarray:
    """One id per true polygon on the probability raster's grid (0: none)."""
    polys = read_polygons(buildings, prob.GetSpatialRef(), what="buildings")
    _src, layer = memory_layer(polys.geoms, polys.srs)
    return burn(layer, prob, 0, 0, prob.RasterXSize, prob.RasterYSize, value=None,
                dtype=gdal.GDT_Int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prob", type=Path)
    parser.add_argument("buildings", type=Path)
    parser.add_argument("--building", type=float, nargs="+", default=[0.3, 0.4, 0.5])
    parser.add_argument("--seed", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--min-area", type=float, default=ExtractOptions().min_area)
    parser.add_argument("--from-mask", action="store_true")
    parser.add_argument("--errors", action="store_true")
    args = parser.parse_args()
    prob = gdalio.open_raster(args.prob)
    building = prob.GetRasterBand(1).ReadAsArray()
    interior = prob.GetRasterBand(2).ReadAsArray() if prob.RasterCount > 1 else None
    valid = building >= 0
    truth = true_ids(prob, args.buildings)
    if args.from_mask:
        with tempfile.TemporaryDirectory() as tmp:
            mask = read_mask(rasterize_labels(args.prob, args.buildings, Path(tmp) / "m.tif"))
        found = truth_instances(np.where(mask == UNKNOWN, 0, mask))
        print("instances from the mask vs the polygons:",
              " ".join(f"{k} {v:.3f}" for k, v in match_labels(found, truth).summary().items()
                       if k in COLUMNS))
    px = gdalio.pixel_size_m(prob)
    min_seed = seed_pixels(ExtractOptions().min_seed_m2, px)
    print("building seed " + " ".join(COLUMNS))
    for t in args.building:
        for s in args.seed:
            pred, _ = label_instances(building, interior, valid, Thresholds(t, s), min_seed)
            m = match_labels(drop_small(pred, args.min_area / px / px), truth, valid)
            figures = m.summary()
            print(f"{t:8.2f} {s:4.2f} " + " ".join(f"{figures[k]:.3f}" for k in COLUMNS),
                  flush=True)
            if args.errors:
                print("    " + describe_errors(m.errors()), flush=True)


if __name__ == "__main__":
    main()
