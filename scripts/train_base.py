"""Train the shipped base model on the shared real data, holding Kampala out for evaluation.

Run with (from the repository root, about 15 min on 2 busy CPU cores):
    python scripts/train_base.py --minutes 12 --loss ce
A time budget depends on the machine's load; the card's ``metrics.reproduce`` gives the same
run as a fixed number of epochs, which is deterministic on CPU.

Areas: hotosm banepa, nairobi and zanzibar at z19 (0.3 m) and banepa_osm (0.13 m, resampled to
0.3 m). The demo's sample (``data/sample``, a crop of banepa_osm) is labelled unknown there, so
the demo scores buildings the base model never saw labelled. Each area is normalised with its
own band statistics, as fine-tuning does. Kampala (z19 at 0.3 m, and z20 at 0.15 m both
resampled to 0.3 m and at its native pixel size) is scored afterwards with the Dice of the best
checkpoint; the figures go into the model card.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from osgeo import gdal

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml_core.config import TrainOptions  # noqa: E402
from ml_core.evaluate.metrics import pixel_counts, pixel_metrics_from_counts  # noqa: E402
from ml_core.io import raster as gdalio  # noqa: E402
from ml_core.labels.rasterize import UNKNOWN, rasterize_labels  # noqa: E402
from ml_core.learn.dataset import Region, load_regions, split_blocks  # noqa: E402
from ml_core.learn.model import UNet  # noqa: E402
from ml_core.learn.modelfile import ModelCard, load_model, save_model  # noqa: E402
from ml_core.learn.train import fit, predict_region  # noqa: E402
from ml_core.pipeline import SAMPLE_RASTER  # noqa: E402

GSD = 0.3
TRAIN_AREAS = (
    ("hotosm/banepa/banepa_z19.tif", "hotosm/banepa/banepa_buildings.gpkg"),
    ("hotosm/nairobi/nairobi_z19.tif", "hotosm/nairobi/nairobi_buildings.gpkg"),
    ("hotosm/zanzibar/zanzibar_z19.tif", "hotosm/zanzibar/zanzibar_buildings.gpkg"),
    ("banepa_osm/banepa_osm_z19_wgs84.tif", "banepa_osm/banepa_osm_buildings.gpkg"),
)
HELD_OUT = {  # name: (raster, buildings, gsd the network sees)
    "kampala_z19_0.3m": ("hotosm/kampala/kampala_z19.tif",
                         "hotosm/kampala/kampala_buildings.gpkg", 0.3),
    "kampala_z20_resampled_0.3m": ("hotosm/kampala/kampala_z20.tif",
                                   "hotosm/kampala/kampala_buildings.gpkg", 0.3),
    "kampala_z20_native_0.15m": ("hotosm/kampala/kampala_z20.tif",
                                 "hotosm/kampala/kampala_buildings.gpkg", 0.15),
}


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
    mask = None


def area_regions(data: Path, raster: str, buildings: str, gsd: float, tmp: Path,
                 window_m: float = 300.0) -> tuple[list[Region], list, list]:
    """Rasterise one area's buildings and read it at ``gsd`` with its own statistics."""
    ds = gdalio.open_raster(data / raster)
    bands = gdalio.default_bands(ds)
    mean, std = gdalio.band_statistics(ds, bands)
    mask = rasterize_labels(data / raster, data / buildings, tmp / (Path(raster).stem + ".tif"))
    hide_sample(mask)
    return load_regions(data / raster, mask, bands, gsd, mean, std, window_m), mean, std


def dice(net: UNet, regions: list[Region], threshold: float) -> float:
    """Pixel Dice of the network on labelled pixels of whole regions."""
    counts = np.zeros(3, np.int64)
    for reg in regions:
        pred = predict_region(net, reg.image, torch.device("cpu")) > threshold
        counts += pixel_counts(pred, reg.mask == 1, reg.mask != UNKNOWN)
    return pixel_metrics_from_counts(*counts)["dice"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path,
                        default=REPO / "ml_core" / "models" / "base_unet.safetensors")
    parser.add_argument("--minutes", type=float, default=12.0, help="0: no time budget.")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--loss", default="ce_dice")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    options = TrainOptions(loss=args.loss, epochs=args.epochs, minutes=args.minutes or None,
                           lr=args.lr, optimizer="adamw",
                           width=args.width, patience=1000, val_fraction=0.1, seed=args.seed,
                           device="cpu", lr_halve_every=1000, freeze_bn=False)
    with tempfile.TemporaryDirectory(prefix="bfe_base_") as tmp:
        regions, means, stds = [], [], []
        for raster, buildings in TRAIN_AREAS:
            regs, mean, std = area_regions(args.data, raster, buildings, GSD, Path(tmp))
            regions += regs
            means.append(mean)
            stds.append(std)
            print(f"{raster}: {len(regs)} windows, {sum((r.mask == 1).sum() for r in regs)} "
                  "building pixels", flush=True)
        split = split_blocks(regions, options.crop_size // 2, options.val_fraction, args.seed)
        net = UNet(3, 2, options.width, options.depth)
        card = ModelCard(architecture=net.architecture(), bands=[1, 2, 3],
                         mean=np.mean(means, 0).tolist(), std=np.mean(stds, 0).tolist(),
                         gsd_m=GSD, tile_size=options.crop_size, loss=args.loss,
                         training_data=[r for r, _ in TRAIN_AREAS],
                         command="python scripts/train_base.py " + shlex.join(sys.argv[1:]))
        result = fit(net, split, card, Path(tmp) / "base.safetensors", options,
                     progress=lambda e: e.stage == "validate" and print(
                         f"epoch {e.epoch}: val Dice {e.val_dice}", flush=True))
        best = load_model(result.model_path)
        held = {}
        for name, (raster, buildings, gsd) in HELD_OUT.items():
            regs, _, _ = area_regions(args.data, raster, buildings, gsd, Path(tmp), 150.0)
            held[name] = round(dice(best.net, regs, best.card.threshold), 4)
            print(f"held-out {name}: Dice {held[name]}", flush=True)
    metrics = {**best.card.metrics, "held_out_dice": held, "epochs": result.epochs_run,
               "train_seconds": result.seconds, "device": result.device,
               "reproduce": f"python scripts/train_base.py --loss {args.loss} --lr {args.lr} "
                            f"--width {args.width} --seed {args.seed} --minutes 0 "
                            f"--epochs {result.best_epoch}"}
    save_model(args.out, best.net, replace(best.card, metrics=metrics))
    print(metrics)


if __name__ == "__main__":
    main()
