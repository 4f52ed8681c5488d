"""What runs on a Dask worker: open the raster, get the model, predict a list of windows.

Datasets and models are cached per worker process, so the model crosses the network once (as
safetensors bytes scattered to every worker) and is built once per worker, and each raster is
opened once per worker thread (GDAL datasets are not thread-safe). Nothing here imports Dask.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass

import torch
from osgeo import gdal
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ml_core.infer.predict import WindowJob, predict_windows
from ml_core.infer.tiling import Window
from ml_core.io import raster as gdalio
from ml_core.learn.device import select_device
from ml_core.learn.modelfile import LoadedModel, ModelCard, build_network

gdal.UseExceptions()

_CACHE_SIZE = 4
_DATASETS: dict = {}
_MODELS: dict = {}


@dataclass(frozen=True)
class ModelBlob:
    """A model as plain data: its card (JSON) and safetensors weights (no pickled tensors)."""

    card_json: str
    weights: bytes
    key: str  # content hash: the per-worker cache key


def model_blob(loaded: LoadedModel) -> ModelBlob:
    """The bytes that rebuild ``loaded`` on a worker."""
    state = {k: v.detach().cpu().contiguous() for k, v in loaded.net.state_dict().items()}
    card, weights = loaded.card.to_json(), save_safetensors(state)
    return ModelBlob(card, weights, hashlib.sha256(weights + card.encode()).hexdigest()[:16])


def _remember(cache: dict, key, make):
    if key not in cache:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def _build(blob: ModelBlob, device: torch.device) -> torch.nn.Module:
    card = ModelCard.from_dict(json.loads(blob.card_json), source="model sent to the worker")
    net = build_network(card.architecture)
    net.load_state_dict(load_safetensors(blob.weights), strict=True)
    return net.to(device).eval()


def predict_task(path: str, blob: ModelBlob, job: WindowJob, windows: list[Window],
                 device_name: str, threads: int) -> list[tuple]:
    """``(window, probability, valid)`` of each window with a valid pixel, as in one process."""
    torch.set_num_threads(threads)
    device = select_device(device_name)
    version = os.stat(path) if os.path.exists(path) else None  # a rewritten file is reopened
    key = (path, version and (version.st_mtime_ns, version.st_size), threading.get_ident())
    ds = _remember(_DATASETS, key, lambda: gdalio.open_raster(path))
    net = _remember(_MODELS, (blob.key, str(device)), lambda: _build(blob, device))
    return list(predict_windows(ds, net, job, windows, device))


def peak_rss_mb() -> float:
    """This worker process's peak resident memory (``VmHWM``), for the benchmark."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")

