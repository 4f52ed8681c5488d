"""Compute device selection: ``auto`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch

from ml_core.config import DEVICE_CHOICES
from ml_core.errors import InputError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(name: str = "auto") -> torch.device:
    """Resolve a device name; an unavailable explicit choice is an :class:`InputError`."""
    if name not in DEVICE_CHOICES:
        raise InputError(f"Unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}.")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("Device 'cuda' was requested but no CUDA GPU is usable by this PyTorch "
                         "build. Use --device auto or cpu.")
    if name == "mps" and not _mps_available():
        raise InputError("Device 'mps' was requested but Apple MPS is not available. "
                         "Use --device auto or cpu.")
    return torch.device(name)


def describe_device(device: torch.device | str | None = None) -> str:
    """A short human description, e.g. ``CUDA: NVIDIA H100`` or ``CPU (2 threads)``."""
    dev = select_device("auto") if device is None else torch.device(device)
    if dev.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(dev)}"
    if dev.type == "mps":
        return "MPS: Apple GPU"
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'' if threads == 1 else 's'})"


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype: bf16 where CUDA supports it, else fp16; None on CPU and MPS."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
