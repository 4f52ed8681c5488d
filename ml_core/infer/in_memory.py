"""Prediction on images already in memory (training and validation crops, whole regions), as
opposed to ``predict.py``'s streaming over a raster file; both give
``predict.probability_bands``."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ml_core.events import CancelToken, check_cancel
from ml_core.infer.predict import probability_bands
from ml_core.learn.device import amp_dtype


@torch.no_grad()
def predict_batches(net: torch.nn.Module, images: np.ndarray, device: torch.device,
                    batch_size: int, cancel: Optional[CancelToken] = None) -> np.ndarray:
    """Probability bands [N,B,H,W] (``infer.predict.probability_bands``: band 0 building) for
    images [N,C,H,W] (H, W multiples of the net's ``multiple``)."""
    net.eval()
    out = []
    for i in range(0, len(images), batch_size):
        check_cancel(cancel)
        x = torch.from_numpy(images[i:i + batch_size]).to(device)
        with torch.autocast(device.type, dtype=amp_dtype(device) or torch.float32,
                            enabled=amp_dtype(device) is not None):
            logits = net(x)
        out.append(probability_bands(logits.float()).cpu().numpy())
    return np.concatenate(out)


def predict_region(net: torch.nn.Module, image: np.ndarray, device: torch.device) -> np.ndarray:
    """Probability bands [B,H,W] of a whole in-memory image [C,H,W] in one padded pass."""
    _, H, W = image.shape
    padded = np.pad(image, ((0, 0), (0, -H % net.multiple), (0, -W % net.multiple)))
    return predict_batches(net, padded[None], device, 1)[0, :, :H, :W]
