"""Benchmark of prediction on a Dask cluster (``ml_core.infer.cluster``), ``make bench``.

In one run, on the same synthetic RGB GeoTIFF (``--size``² px at 0.5 m) and the same U-Net:

* the single-process path (``predict_raster``, torch limited to one thread);
* the cluster path on a ``LocalCluster`` of 1 and one of 2 worker processes (one thread each,
  one torch thread each), both started first and warmed up on a small raster (workers import
  torch and build the model once; that start-up is reported apart, ``cluster_N_startup_s``).

The three paths run in ``--repeat`` interleaved rounds and the best time of each is kept, so a
change of load on a shared machine hits every path alike. Dask's task stream gives the share of
the run the workers spent computing (``worker_busy_share``): the rest is waiting for work.

Figures: windows (tiles) per second, end to end (reads, forward, client-side blending, DEFLATE
writing); peak RSS per worker (``VmHWM``) and of this process; the scaling ratio (2 workers /
1 worker) and the cluster-at-1-worker / single-process ratio; the largest difference between the
cluster's and the single-process probability rasters. The machine's load average before and
after is recorded: on a shared machine the ratios are only as good as that.
Targets: 2 workers >= 1.6x one worker; the cluster at 1 worker >= 0.9x the single process.
"""

from __future__ import annotations

import argparse
import contextlib
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
from ml_core.infer.cluster import require_dask  # noqa: E402
from ml_core.infer.cluster.predict import predict_on_cluster  # noqa: E402
from ml_core.infer.cluster.session import cluster_client  # noqa: E402
from ml_core.infer.cluster.worker import peak_rss_mb as worker_peak_rss_mb  # noqa: E402
from ml_core.infer.predict import predict_raster  # noqa: E402
from ml_core.infer.tiling import tile_windows  # noqa: E402

DEFAULT_JSON = HERE / "results" / "cluster.json"


def _load() -> list:
    return [round(v, 2) for v in os.getloadavg()]


def _worker_busy(stream: list, workers: int, seconds: float) -> float:
    """Share of the run the workers spent computing tasks (from Dask's task stream)."""
    busy = sum(ss["stop"] - ss["start"] for task in stream for ss in task["startstops"]
               if ss["action"] == "compute")
    return round(busy / (workers * seconds), 3)


def _timed(label: str, job, n_windows: int, times: dict) -> None:
    t0 = time.perf_counter()
    extra = job()
    extra = extra if isinstance(extra, dict) else {}
    seconds = time.perf_counter() - t0
    entry = times.setdefault(label, {"runs_s": []})
    entry["runs_s"].append(round(seconds, 2))
    for key, value in extra.items():
        entry.setdefault(key, []).append(value)


def run(size: int = 2048, width: int = 16, tile: int = 256, overlap: int = 32, batch: int = 4,
        per_task: int = 8, repeat: int = 2) -> dict:
    """Run the benchmark and return its figures (see the module docstring)."""
    distributed = require_dask()
    torch.set_num_threads(1)
    opts = PredictOptions(tile_size=tile, overlap=overlap, batch_size=batch, device="cpu")
    n_windows = len(tile_windows(size, size, tile, overlap))
    result: dict = {"raster_px": size, "pixel_m": 0.5, "windows": n_windows, "tile": tile,
                    "overlap": overlap, "batch": batch, "windows_per_task": per_task,
                    "unet_width": width, "repeat": repeat, "cpu_count": os.cpu_count(),
                    "load_before": _load()}
    times: dict = {}
    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        tmp = Path(d)
        raster = synthetic_raster(tmp / "r.tif", size)
        warm = synthetic_raster(tmp / "warm.tif", 2 * tile)
        clients = {}
        for workers in (1, 2):
            cluster = ClusterOptions(workers=workers, windows_per_task=per_task)
            t0 = time.perf_counter()
            client = stack.enter_context(cluster_client(cluster, memory_limit="3GiB"))
            client.wait_for_workers(workers)
            predict_on_cluster(warm, model(width), tmp / "warm_prob.tif", opts, cluster, client)
            clients[workers] = (client, cluster)
            result[f"cluster_{workers}_startup_s"] = round(time.perf_counter() - t0, 1)

        def on_cluster(workers: int):
            client, cluster = clients[workers]
            with distributed.get_task_stream(client) as stream:
                t0 = time.perf_counter()
                predict_on_cluster(raster, model(width), tmp / f"c{workers}.tif", opts, cluster,
                                   client)
                seconds = time.perf_counter() - t0
            return {"worker_busy_share": _worker_busy(stream.data, workers, seconds)}

        for _ in range(repeat):  # interleaved, so that a load change hits every path alike
            _timed("single", lambda: predict_raster(raster, model(width), tmp / "single.tif",
                                                    opts), n_windows, times)
            for workers in (1, 2):
                _timed(f"cluster_{workers}", lambda w=workers: on_cluster(w), n_windows, times)
        for workers, (client, _) in clients.items():
            times[f"cluster_{workers}"]["peak_rss_mb_per_worker"] = sorted(
                round(v) for v in client.run(worker_peak_rss_mb).values())
        single = gdal.Open(str(tmp / "single.tif")).ReadAsArray()
        result["max_abs_diff_vs_single"] = float(max(
            np.abs(gdal.Open(str(tmp / f"c{w}.tif")).ReadAsArray() - single).max()
            for w in (1, 2)))
    for label, entry in times.items():
        entry["best_s"] = min(entry["runs_s"])
        entry["windows_s"] = round(n_windows / entry["best_s"], 3)
        result[label] = entry
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
    p.add_argument("--size", type=int, default=3072, help="Raster side in pixels.")
    p.add_argument("--width", type=int, default=16, help="U-Net width.")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlap", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--per-task", type=int, default=8, help="Windows per cluster task.")
    p.add_argument("--repeat", type=int, default=3, help="Interleaved rounds; best time kept.")
    a = p.parse_args()
    result = run(a.size, a.width, a.tile, a.overlap, a.batch, a.per_task, a.repeat)
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
