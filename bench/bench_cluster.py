"""Benchmark of prediction on a Dask cluster (``ml_core.infer.cluster``), ``make bench``.

In one run, on the same synthetic RGB GeoTIFF (``--size``² px at 0.5 m) and the same U-Net:

* the single-process path (``predict_raster``, torch limited to one thread);
* the cluster path on a ``LocalCluster`` of 1, then 2 worker processes (one thread each, one
  torch thread each), after a warm-up job on a small raster (workers import torch and build the
  model once; that start-up is reported apart, as ``startup_s``).

Figures: windows (tiles) per second, end to end (reads, forward, client-side blending, DEFLATE
writing); peak RSS per worker (``VmHWM``) and of this process; the scaling ratio (2 workers /
1 worker) and the cluster-at-1-worker / single-process ratio; the largest difference between the
cluster's and the single-process probability rasters. The machine's load average before and
after is recorded: on a shared machine the ratios are only as good as that.
Targets: 2 workers >= 1.6x one worker; the cluster at 1 worker >= 0.9x the single process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from osgeo import gdal

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_predict import model, peak_rss_mb, synthetic_raster  # noqa: E402

from ml_core.config import ClusterOptions, PredictOptions  # noqa: E402
from ml_core.infer.cluster.predict import predict_on_cluster  # noqa: E402
from ml_core.infer.cluster.session import cluster_client  # noqa: E402
from ml_core.infer.cluster.worker import peak_rss_mb as worker_peak_rss_mb  # noqa: E402
from ml_core.infer.predict import predict_raster  # noqa: E402
from ml_core.infer.tiling import tile_windows  # noqa: E402

DEFAULT_JSON = HERE / "results" / "cluster.json"


def _load() -> list:
    return [round(v, 2) for v in os.getloadavg()]


def _cluster_run(workers: int, raster: Path, warm: Path, tmp: Path, opts: PredictOptions,
                 width: int, per_task: int, n_windows: int) -> dict:
    cluster = ClusterOptions(workers=workers, windows_per_task=per_task)
    t0 = time.perf_counter()
    with cluster_client(cluster, memory_limit="3GiB") as client:
        client.wait_for_workers(workers)
        predict_on_cluster(warm, model(width), tmp / "warm_prob.tif", opts, cluster, client)
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        predict_on_cluster(raster, model(width), tmp / f"c{workers}.tif", opts, cluster, client)
        seconds = time.perf_counter() - t0
        rss = sorted(client.run(worker_peak_rss_mb).values())
    return {"workers": workers, "seconds": round(seconds, 2),
            "windows_s": round(n_windows / seconds, 3), "startup_s": round(startup, 1),
            "peak_rss_mb_per_worker": [round(v) for v in rss]}


def run(size: int = 2048, width: int = 16, tile: int = 256, overlap: int = 32, batch: int = 4,
        per_task: int = 8) -> dict:
    """Run the benchmark and return its figures (see the module docstring)."""
    torch.set_num_threads(1)
    opts = PredictOptions(tile_size=tile, overlap=overlap, batch_size=batch, device="cpu")
    n_windows = len(tile_windows(size, size, tile, overlap))
    result: dict = {"raster_px": size, "pixel_m": 0.5, "windows": n_windows, "tile": tile,
                    "overlap": overlap, "batch": batch, "windows_per_task": per_task,
                    "unet_width": width, "cpu_count": os.cpu_count(), "load_before": _load()}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        raster = synthetic_raster(tmp / "r.tif", size)
        warm = synthetic_raster(tmp / "warm.tif", 2 * tile)
        t0 = time.perf_counter()
        predict_raster(raster, model(width), tmp / "single.tif", opts)
        seconds = time.perf_counter() - t0
        result["single"] = {"seconds": round(seconds, 2),
                            "windows_s": round(n_windows / seconds, 3), "torch_threads": 1}
        for workers in (1, 2):
            result[f"cluster_{workers}"] = _cluster_run(workers, raster, warm, tmp, opts, width,
                                                        per_task, n_windows)
        single = gdal.Open(str(tmp / "single.tif")).ReadAsArray()
        result["max_abs_diff_vs_single"] = float(max(
            np.abs(gdal.Open(str(tmp / f"c{w}.tif")).ReadAsArray() - single).max()
            for w in (1, 2)))
    result["client_peak_rss_mb"] = round(peak_rss_mb())
    result["load_after"] = _load()
    one, two = result["cluster_1"]["windows_s"], result["cluster_2"]["windows_s"]
    result["scaling_2_vs_1"] = round(two / one, 3)
    result["cluster_1_vs_single"] = round(one / result["single"]["windows_s"], 3)
    result["targets"] = {"scaling_ge_1.6": result["scaling_2_vs_1"] >= 1.6,
                         "cluster_1_loses_le_10pct": result["cluster_1_vs_single"] >= 0.9}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=str(DEFAULT_JSON), help="Output JSON.")
    p.add_argument("--size", type=int, default=2048, help="Raster side in pixels.")
    p.add_argument("--width", type=int, default=16, help="U-Net width.")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--per-task", type=int, default=8, help="Windows per cluster task.")
    a = p.parse_args()
    result = run(a.size, a.width, a.tile, a.overlap, a.batch, a.per_task)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
