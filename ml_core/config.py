"""Every user-facing parameter and its default, declared once.

The CLI, the Processing algorithms and the dock build their options from these dataclasses
(``fields(TrainOptions)``: name, default, ``metadata["help"]``, optional ``metadata["choices"]``),
so a default changes in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class RasterizeOptions:
    """How polygons become a partial training mask (1 building, 0 background, 255 unknown)."""

    unknown_margin: int = _opt(
        0, "Pixels around each footprint marked unknown (absorbs misalignment)."
    )
    all_touched: bool = _opt(False, "Burn every pixel a footprint touches, not only pixel centres.")


@dataclass
class TrainOptions:
    """Fine-tuning settings; the paper's loss and a CPU-friendly schedule by default."""

    loss: str = _opt("bd_lace_wdice", "Training loss (see ml_core.losses.LOSSES).")
    epochs: int = _opt(30, "Maximum number of epochs.")
    minutes: Optional[float] = _opt(3.0, "Time budget in minutes (0: none); when reached, the "
                                    "current epoch is validated and training stops.")
    steps_per_epoch: int = _opt(25, "Optimiser steps per epoch.")
    batch_size: int = _opt(4, "Crops per batch (halved automatically on CUDA out-of-memory).")
    crop_size: int = _opt(256, "Training crop size in pixels.")
    optimizer: str = _opt("adamw", "Optimiser.", choices=("adamw", "sgd"))
    lr: Optional[float] = _opt(None, "Learning rate; default 3e-4 (AdamW), 0.002 (SGD, paper).")
    weight_decay: float = _opt(1e-4, "Weight decay.")
    lr_halve_every: int = _opt(30, "Halve the learning rate every N epochs (paper: 30).")
    patience: int = _opt(8, "Stop when validation Dice has not improved for N epochs.")
    val_fraction: float = _opt(0.2, "Share of spatial blocks held out for validation.")
    device: str = _opt("auto", "Compute device.", choices=("auto", "cpu", "cuda", "mps"))
    seed: int = _opt(0, "Random seed (same seed, same result on CPU).")
    width: int = _opt(16, "U-Net base width (channels of the first level), for new models.")
    depth: int = _opt(4, "U-Net depth (number of down-sampling steps), for new models.")
    gsd_m: Optional[float] = _opt(None, "Resample the raster to this pixel size in metres; "
                                  "default: the base model's, else the raster's own.")
    ignore_confident: Optional[float] = _opt(None, "Treat as unknown the background pixels the "
                                             "base model calls building above this probability.")


@dataclass
class PredictOptions:
    """Tiled prediction settings."""

    tile_size: int = _opt(512, "Tile size in pixels.")
    overlap: int = _opt(64, "Overlap between neighbouring tiles in pixels (blended).")
    batch_size: int = _opt(4, "Tiles per forward pass.")
    device: str = _opt("auto", "Compute device.", choices=("auto", "cpu", "cuda", "mps"))
    tta: bool = _opt(False, "Flip test-time augmentation (slower, slightly higher recall).")


@dataclass
class ExtractOptions:
    """How a probability raster becomes footprint polygons."""

    threshold: float = _opt(0.5, "Probability above which a pixel is building.")
    min_area: float = _opt(15.0, "Drop polygons smaller than this many square metres.")
    simplify: float = _opt(1.0, "Simplification tolerance in pixels of ground distance.")
    regularize: bool = _opt(False, "Square corners where the area stays within ±30 %.")
    existing_overlap: float = _opt(
        0.3, "A footprint overlapping existing buildings by more than this share is not new."
    )


def option_help(options_cls: type) -> dict[str, str]:
    """Map field name to help text, for front ends that list options."""
    return {f.name: f.metadata.get("help", "") for f in fields(options_cls)}


__all__ = [
    "ExtractOptions",
    "PredictOptions",
    "RasterizeOptions",
    "TrainOptions",
    "option_help",
    "replace",
]
