"""Benchmark of ``ml_core.infer.predict``: throughput and peak memory (``make bench``).

What is measured, honestly:

* **Throughput** (MP/s of raster pixels): ``predict_raster`` end to end (GDAL reads, validity,
  normalisation, forward, blending, DEFLATE GeoTIFF writing) on a synthetic RGB GeoTIFF of
  ``--throughput-px``² pixels, versus the bare ``net(x)`` forward on the same number of tiles of the
  same size and batch, in the same process and run. Target: pipeline ≥ 0.75 of bare forward.
* **Peak RSS** for synthetic rasters of ``--sizes`` px² (default 1k, 5k, 20k): each size runs in
  its own subprocess (started before the parent loads a big net) that reports its own peak
  (``VmHWM``); the parent's ``getrusage(RUSAGE_CHILDREN)`` (max over children so far, which on
  Linux includes the parent's RSS at fork) is recorded as well. Prediction memory
  is bounded by tile x batch plus a strip one tile high and one raster wide, so it does not depend
  on the raster height: ``--rows`` limits the predicted rows (full width kept, via ``extent``)
  to make the 20k² CPU run feasible, and the result records it. The memory runs use the
  ``--memory-width`` U-Net (default 32, as the target) unless ``--tiny`` selects a width-4 net to
  save time; RSS then excludes the bigger net's activations (~tile² x width x 4 B x a few).
  GDAL's block cache is capped with ``GDAL_CACHEMAX=256`` (MB) in the children, the setting we
  recommend for large rasters; without it GDAL may cache up to 5 % of RAM.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from osgeo import gdal, osr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml_core.config import PredictOptions
from ml_core.infer.predict import predict_raster
from ml_core.infer.tiling import tile_windows
from ml_core.learn.model import UNet
from ml_core.learn.modelfile import LoadedModel, ModelCard

gdal.UseExceptions()
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "predict.json"


def synthetic_raster(path: Path, size: int) -> Path:
    """A smooth RGB uint8 GeoTIFF of ``size``² px (EPSG:32616, 0.5 m), written in strips."""
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 3, gdal.GDT_Byte,
                                              ["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=YES"])
    ds.SetGeoTransform((732786.0, 0.5, 0, 3730085.0, 0, -0.5))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32616)
    ds.SetSpatialRef(srs)
    cols = (np.arange(size) % 256).astype(np.uint8)
    for y0 in range(0, size, 1024):
        h = min(1024, size - y0)
        rows = (np.arange(y0, y0 + h) % 256).astype(np.uint8)[:, None]
        for b in range(3):
            ds.GetRasterBand(b + 1).WriteArray((cols[None, :] + rows * (b + 1)).astype(np.uint8),
                                               0, y0)
    ds = None
    return path


def model(width: int) -> LoadedModel:
    torch.manual_seed(0)
    net = UNet(3, width=width, depth=4 if width >= 16 else 2).eval()
    card = ModelCard(architecture=net.architecture(), bands=[1, 2, 3], mean=[128.0] * 3,
                     std=[64.0] * 3, gsd_m=0.5)
    return LoadedModel(net=net, card=card)


def throughput(size: int, width: int, opts: PredictOptions, tmp: Path) -> dict:
    """Pipeline vs bare-forward MP/s on the same tiles, same run."""
    raster = synthetic_raster(tmp / "tp.tif", size)
    loaded = model(width)
    t0 = time.perf_counter()
    predict_raster(raster, loaded, tmp / "tp_prob.tif", opts)
    t_pipe = time.perf_counter() - t0
    n_tiles = len(tile_windows(size, size, opts.tile_size, opts.overlap))
    x = torch.randn(opts.batch_size, 3, opts.tile_size, opts.tile_size)
    t0 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, n_tiles, opts.batch_size):
            loaded.net(x[: min(opts.batch_size, n_tiles - start)])
    t_fwd = time.perf_counter() - t0
    mp = size * size / 1e6
    return {"raster_px": size, "tiles": n_tiles, "width": width, "tile": opts.tile_size,
            "overlap": opts.overlap, "batch": opts.batch_size, "pipeline_s": t_pipe,
            "forward_s": t_fwd, "pipeline_mp_s": mp / t_pipe, "forward_mp_s": mp / t_fwd,
            "ratio": t_fwd / t_pipe, "torch_threads": torch.get_num_threads()}


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (reset at exec, unlike ``ru_maxrss`` which Linux carries
    over from the parent), else ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_memory(size: int, rows: int, width: int, opts: PredictOptions, tmp: Path) -> dict:
    """Runs in a subprocess: predict the first ``rows`` rows (full width) of a ``size``² raster."""
    raster = tmp / f"mem_{size}.tif"
    gt = gdal.Open(str(raster)).GetGeoTransform()
    rows = min(rows or size, size)
    extent = (gt[0], gt[3] + rows * gt[5], gt[0] + size * gt[1], gt[3])
    t0 = time.perf_counter()
    predict_raster(raster, model(width), tmp / f"mem_{size}_prob.tif", opts, extent=extent)
    return {"size": size, "rows_predicted": rows, "seconds": time.perf_counter() - t0,
            "peak_rss_mb": peak_rss_mb(),
            "gdal_cachemax_mb": gdal.GetCacheMax() / 2**20}


def run(sizes=(1000, 5000, 20000), throughput_px: int = 1024, width: int = 32,
        memory_width: int = 32, rows: int = 512, tile: int = 512, overlap: int = 64,
        batch: int = 4) -> dict:
    """Run the benchmark and return the results (see the module docstring)."""
    opts = PredictOptions(tile_size=tile, overlap=overlap, batch_size=batch, device="cpu")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result: dict = {"device": "cpu", "memory": []}
        env = {**os.environ, "GDAL_CACHEMAX": "256"}
        for size in sizes:
            synthetic_raster(tmp / f"mem_{size}.tif", size)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(size),
                   "--rows", str(rows), "--memory-width", str(memory_width), "--tile", str(tile),
                   "--overlap", str(overlap), "--batch", str(batch), "--tmp", str(tmp)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            entry = json.loads(out.strip().splitlines()[-1])
            entry["children_max_rss_mb"] = (
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
            entry["memory_width"] = memory_width
            result["memory"].append(entry)
            (tmp / f"mem_{size}.tif").unlink()
        result["throughput"] = throughput(throughput_px, width, opts, tmp)  # after the children
    tp = result["throughput"]
    result["targets"] = {
        "pipeline_ge_0.75_forward": tp["ratio"] >= 0.75,
        "rss_le_1.5GB": all(m["peak_rss_mb"] <= 1536 for m in result["memory"])}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=str(DEFAULT_JSON), help="Output JSON.")
    p.add_argument("--sizes", default="1000,5000,20000", help="Raster sizes (px) for memory.")
    p.add_argument("--rows", type=int, default=512,
                   help="Rows predicted per memory run, full width (0: all; hours at 20k² on CPU).")
    p.add_argument("--throughput-px", type=int, default=1024)
    p.add_argument("--width", type=int, default=32, help="U-Net width for throughput.")
    p.add_argument("--memory-width", type=int, default=32, help="U-Net width for memory runs.")
    p.add_argument("--tiny", action="store_true", help="Width-4 net for the memory runs.")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    opts = PredictOptions(tile_size=a.tile, overlap=a.overlap, batch_size=a.batch, device="cpu")
    if a.child is not None:
        print(json.dumps(child_memory(a.child, a.rows, a.memory_width, opts, Path(a.tmp))))
        return
    result = run(tuple(int(s) for s in a.sizes.split(",")), a.throughput_px, a.width,
                 4 if a.tiny else a.memory_width, a.rows, a.tile, a.overlap, a.batch)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
