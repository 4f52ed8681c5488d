"""Train the shipped base model (4 instance classes) on the shared real data, across pixel sizes.

Run from the repository root (the shipped model: about 65 min on 2 busy CPU cores):
    python scripts/train_base.py --minutes 60
A time budget depends on the machine's load; the card's ``metrics.reproduce`` gives the same
run as a fixed number of epochs, which is deterministic on CPU.

Training areas, each read at its own pixel size (clamped to the trained range) and normalised
with its own band statistics, as fine-tuning does:
- drone/aerial: hotosm banepa, nairobi and zanzibar at z19 (0.3 m) and z20 (0.15 m), and
  banepa_osm (0.13 m, read at 0.15 m);
- satellite: the Cox's Bazar Maxar chips (about 0.43 m).
Crops are resampled to random pixel sizes in ``GSD_RANGE`` (scale augmentation) with strong
colour, haze and blur augmentation, so that one model serves 0.15-1.2 m imagery without large
resampling. The demo's sample (``data/sample``, a crop of banepa_osm) is labelled unknown, so
the demo scores buildings the base model never saw labelled.

Held out for evaluation (``scripts/evaluate_base.py``): Kampala (drone, 0.3 and 0.15 m), Dhaka
(dense drone, 0.3 m) and SpaceNet Atlanta (satellite, 0.5 m).

For the measured alternatives: ``--fixed-gsd M`` reads every area at M metres without scale
augmentation (a one-pixel-size model; prediction resamples to M), ``--no-photometric`` keeps
only the mild colour jitter, ``--width`` and ``--depth`` set the U-Net's size
(``docs/experiments/base_alternatives``). ``--leave-out extra/coxsbazar_ramp`` trains without
the satellite chips, so that ``evaluate_base.py`` can score them as a left-out area
(``docs/experiments/leave_one_area_out``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from osgeo import gdal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml_core.config import TrainOptions  # noqa: E402
from ml_core.io import raster as gdalio  # noqa: E402
from ml_core.labels.classes import UNKNOWN, is_building  # noqa: E402
from ml_core.labels.rasterize import rasterize_labels  # noqa: E402
from ml_core.learn.dataset import Region, load_regions, split_blocks  # noqa: E402
from ml_core.learn.model import UNet  # noqa: E402
from ml_core.learn.modelfile import ModelCard, load_model, save_model  # noqa: E402
from ml_core.learn.train import DEFAULT_BASE, fit  # noqa: E402
from ml_core.pipeline import SAMPLE_RASTER  # noqa: E402

GSD_RANGE = (0.15, 1.2)
NOMINAL_GSD = 0.3
TRAIN_AREAS = (
    ("hotosm/banepa/banepa_z19.tif", "hotosm/banepa/banepa_buildings.gpkg"),
    ("hotosm/banepa/banepa_z20.tif", "hotosm/banepa/banepa_buildings.gpkg"),
    ("hotosm/nairobi/nairobi_z19.tif", "hotosm/nairobi/nairobi_buildings.gpkg"),
    ("hotosm/nairobi/nairobi_z20.tif", "hotosm/nairobi/nairobi_buildings.gpkg"),
    ("hotosm/zanzibar/zanzibar_z19.tif", "hotosm/zanzibar/zanzibar_buildings.gpkg"),
    ("hotosm/zanzibar/zanzibar_z20.tif", "hotosm/zanzibar/zanzibar_buildings.gpkg"),
    ("banepa_osm/banepa_osm_z19_wgs84.tif", "banepa_osm/banepa_osm_buildings.gpkg"),
)
SATELLITE_CHIPS = "extra/coxsbazar_ramp"


def hide_sample(mask_path: Path) -> None:
    """Mark the demo sample's footprint unknown in a label mask that covers it."""
    mask = gdal.Open(str(mask_path), gdal.GA_Update)
    sample = gdal.Open(str(SAMPLE_RASTER))
    inverse = gdal.InvGeoTransform(mask.GetGeoTransform())
    gt = sample.GetGeoTransform()
    corners = [gdal.ApplyGeoTransform(inverse, gt[0] + i * sample.RasterXSize * gt[1],
                                      gt[3] + j * sample.RasterYSize * gt[5])
               for i, j in ((0, 0), (1, 1))]
    (x0, y0), (x1, y1) = corners
    x0, y0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    x1, y1 = min(int(np.ceil(x1)), mask.RasterXSize), min(int(np.ceil(y1)), mask.RasterYSize)
    if x1 > x0 and y1 > y0:
        block = np.full((y1 - y0, x1 - x0), UNKNOWN, np.uint8)
        mask.GetRasterBand(1).WriteArray(block, x0, y0)
    mask.FlushCache()
    mask = None


def area_regions(raster: Path, buildings: Path, tmp: Path,
                 fixed_gsd: Optional[float] = None) -> tuple[list[Region], list, list]:
    """Rasterise one area's buildings and read it at its own pixel size (within GSD_RANGE), or
    at ``fixed_gsd``."""
    ds = gdalio.open_raster(raster)
    bands = gdalio.default_bands(ds)[:3]
    mean, std = gdalio.band_statistics(ds, bands)
    gsd = fixed_gsd or min(max(gdalio.pixel_size_m(ds), GSD_RANGE[0]), GSD_RANGE[1])
    mask = rasterize_labels(raster, buildings, tmp / (raster.stem + ".tif"))
    hide_sample(mask)
    return load_regions(raster, mask, bands, gsd, mean, std, num_classes=4), mean, std


def training_sources(data: Path, leave_out: tuple[str, ...] = ()) -> list[tuple[Path, Path]]:
    """(raster, buildings) of every training area whose path under ``data`` starts with none
    of ``leave_out`` (a leave-one-area-out run); satellite chips without buildings are left
    out (rasterising needs at least one)."""
    sources = [(data / r, data / b) for r, b in TRAIN_AREAS]
    chips = data / SATELLITE_CHIPS
    for chip in sorted((chips / "chips").glob("*.tif")):
        label = chips / "labels" / (chip.stem + ".geojson")
        if label.exists() and _feature_count(label):
            sources.append((chip, label))
    return [(r, b) for r, b in sources
            if not str(r.relative_to(data)).startswith(tuple(leave_out))]


def _feature_count(path: Path) -> int:
    src = gdal.OpenEx(str(path), gdal.OF_VECTOR)
    return src.GetLayer(0).GetFeatureCount()


def balance_areas(groups: list[list[Region]], satellite: list[bool],
                  satellite_share: float) -> list[Region]:
    """Weight each area's regions so that crops come from every drone area equally often and
    from the satellite chips together ``satellite_share`` of the time (by labelled pixels;
    unweighted, the largest mosaics would supply almost every crop)."""
    n_drone = max(len(groups) - sum(satellite), 1)
    share_sat = satellite_share if any(satellite) else 0.0
    n_sat = max(sum(satellite), 1)
    weighted = []
    for regions, is_sat in zip(groups, satellite):
        labelled = sum(int((r.mask != UNKNOWN).sum()) for r in regions) or 1
        share = share_sat / n_sat if is_sat else (1 - share_sat) / n_drone
        weighted += [replace(r, weight=share * 1e6 / labelled) for r in regions]
    return weighted


def warm_start(net: UNet, base: Path) -> None:
    """Start from an earlier base model: a 4-class one as it is; of a 2-class one every layer
    but the head is copied, and the head's background/building filters seed
    background+contact and interior+edge."""
    old = load_model(base).net.state_dict()
    state = net.state_dict()
    for key, value in old.items():
        if state[key].shape == value.shape:
            state[key] = value
    if old["head.weight"].shape != state["head.weight"].shape:
        rows = [0, 1, 1, 0]  # background, interior, edge, contact
        state["head.weight"] = old["head.weight"][rows].clone()
        state["head.bias"] = old["head.bias"][rows].clone()
    net.load_state_dict(state)


def command_line() -> argparse.ArgumentParser:
    """The options of this script (``evaluate_base.py`` reads a card's command with them)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=DEFAULT_BASE)
    parser.add_argument("--minutes", type=float, default=60.0, help="0: no time budget.")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--loss", default="bd_lace_wdice")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4, help="down-sampling steps of the U-Net")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=50, help="optimiser steps per epoch")
    parser.add_argument("--lr-halve-every", type=int, default=1000, help="epochs")
    parser.add_argument("--satellite-share", type=float, default=0.25,
                        help="share of crops drawn from the satellite chips")
    parser.add_argument("--init", type=Path, default=None,
                        help="an earlier base model to start from (2 or 4 classes)")
    parser.add_argument("--fixed-gsd", type=float, default=None,
                        help="the alternative to multi-scale training: every area read at this "
                        "pixel size, no scale augmentation; prediction resamples to it")
    parser.add_argument("--no-photometric", action="store_true",
                        help="only the mild colour jitter of fine-tuning (to measure the strong "
                        "colour, haze and blur augmentation)")
    parser.add_argument("--leave-out", action="append", default=[], metavar="PATH",
                        help="leave out the training areas under this path of --data, e.g. "
                        f"{SATELLITE_CHIPS} (repeatable)")
    return parser


def main() -> None:
    args = command_line().parse_args()
    options = TrainOptions(loss=args.loss, epochs=args.epochs, minutes=args.minutes or None,
                           lr=args.lr, optimizer="adamw", steps_per_epoch=args.steps,
                           width=args.width, depth=args.depth, patience=1000, val_fraction=0.1,
                           seed=args.seed,
                           device="auto", lr_halve_every=args.lr_halve_every, freeze_bn=False,
                           scale_augment=args.fixed_gsd is None,
                           photometric=not args.no_photometric,
                           threshold_metric="dice")  # chosen again by evaluate_base.py
    with tempfile.TemporaryDirectory(prefix="bfe_base_") as tmp:
        groups, means, stds = [], [], []
        sources = training_sources(args.data, tuple(args.leave_out))
        for raster, buildings in sources:
            regs, mean, std = area_regions(raster, buildings, Path(tmp), args.fixed_gsd)
            groups.append(regs)
            means.append(mean)
            stds.append(std)
        regions = balance_areas(groups, ["chips" in r.parts for r, _ in sources],
                                args.satellite_share)
        print(f"{len(sources)} rasters, {len(regions)} windows, "
              f"{sum(int(is_building(r.mask).sum()) for r in regions)} building pixels",
              flush=True)
        split = split_blocks(regions, options.crop_size // 2, options.val_fraction, args.seed)
        torch.manual_seed(args.seed)
        net = UNet(3, 4, options.width, options.depth)
        if args.init is not None:
            warm_start(net, args.init)
        command = "python scripts/train_base.py " + shlex.join(sys.argv[1:])
        card = ModelCard(architecture=net.architecture(), bands=[1, 2, 3],
                         mean=np.mean(means, 0).tolist(), std=np.mean(stds, 0).tolist(),
                         gsd_m=args.fixed_gsd or NOMINAL_GSD,
                         gsd_range_m=None if args.fixed_gsd else list(GSD_RANGE), loss=args.loss,
                         training_data=sorted({str(r.relative_to(args.data).parent)
                                               if "chips" in r.parts
                                               else str(r.relative_to(args.data))
                                               for r, _ in sources}),
                         command=command)
        result = fit(net, split, card, Path(tmp) / "base.safetensors", options,
                     progress=lambda e: e.stage == "validate" and print(
                         f"epoch {e.epoch}: loss {e.loss:.4f} val Dice {e.val_dice}",
                         flush=True))
        best = load_model(result.model_path)
    metrics = {**best.card.metrics, "epochs": result.epochs_run,
               "train_seconds": result.seconds, "device": result.device,
               "reproduce": f"{command} --minutes 0 --epochs {result.best_epoch}"}
    save_model(args.out, best.net, replace(best.card, metrics=metrics))
    print(metrics, flush=True)


if __name__ == "__main__":
    main()
