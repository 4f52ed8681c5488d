"""Every user-facing parameter and its default, declared once.

The CLI, the Processing algorithms and the dock build their options from these dataclasses
(``fields(TrainOptions)``: name, default, ``metadata["help"]``, optional ``metadata["choices"]``
and ``metadata["min"]``/``metadata["max"]``), so a default changes in exactly one place. Values
are checked on construction, so every front end reports a bad value the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Optional

from ml_core.errors import InputError


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


class _Checked:
    """Validates every field against its ``choices``, ``min`` and ``max`` metadata."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None or isinstance(value, bool):
                continue
            flag = "--" + f.name.replace("_", "-")
            if "choices" in meta and value not in meta["choices"]:
                raise InputError(f"Option {flag} must be one of {', '.join(meta['choices'])}, "
                                 f"not {value!r}.")
            low, high = meta.get("min"), meta.get("max")
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
                raise InputError(f"Option {flag} must be {bounds}, not {value}.")


@dataclass
class RasterizeOptions(_Checked):
    """How polygons become a partial training mask (1 building, 0 background, 255 unknown)."""

    unknown_margin: int = _opt(
        0, "Pixels around each footprint marked unknown (absorbs misalignment).", min=0, max=100
    )
    all_touched: bool = _opt(False, "Burn every pixel a footprint touches, not only pixel centres.")


@dataclass
class TrainOptions(_Checked):
    """Fine-tuning settings; the paper's loss and a CPU-friendly schedule by default."""

    loss: str = _opt("bd_lace_wdice", "Training loss (see ml_core.learn.losses.LOSSES).")
    epochs: int = _opt(30, "Maximum number of epochs.", min=1)
    minutes: Optional[float] = _opt(3.0, "Time budget in minutes (0: none); when reached, the "
                                    "current epoch is validated and training stops.", min=0)
    steps_per_epoch: int = _opt(25, "Optimiser steps per epoch.", min=1)
    batch_size: int = _opt(4, "Crops per batch (halved automatically on CUDA out-of-memory).",
                           min=1, max=512)
    crop_size: int = _opt(256, "Training crop size in pixels.", min=32, max=4096)
    optimizer: str = _opt(
        "sgd", "Optimiser: the paper's SGD (momentum 0.9, Nesterov) or AdamW. AdamW does not "
        "fine-tune measurably faster (best held-out Dice over 6 demo runs 0.860 vs 0.861 for SGD, "
        "docs/experiments/optimizer), so the paper's choice is the default.",
        choices=("sgd", "adamw"))
    lr: Optional[float] = _opt(None, "Learning rate; default 3e-4 (AdamW), 0.002 (SGD, paper).",
                               min=0)
    weight_decay: float = _opt(1e-4, "Weight decay.", min=0)
    lr_halve_every: int = _opt(30, "Halve the learning rate every N epochs (paper: 30).", min=1)
    patience: int = _opt(8, "Stop when validation Dice has not improved for N epochs.", min=1)
    val_fraction: float = _opt(0.2, "Share of spatial blocks held out for validation.",
                               min=0.0, max=0.9)
    device: str = _opt("auto", "Compute device.", choices=("auto", "cpu", "cuda", "mps"))
    seed: int = _opt(0, "Random seed (same seed, same result on CPU).", min=0)
    width: int = _opt(16, "U-Net base width (channels of the first level), for new models.",
                      min=2, max=256)
    depth: int = _opt(4, "U-Net depth (number of down-sampling steps), for new models.",
                      min=1, max=7)
    gsd_m: Optional[float] = _opt(None, "Resample the raster to this pixel size in metres; "
                                  "default: the base model's, else the raster's own.", min=0.01)
    ignore_confident: Optional[float] = _opt(
        0.5, "Treat as unknown (in training and validation blocks) the background pixels the "
        "base model calls building above this probability: likely unmapped buildings (0: off).",
        min=0.0, max=1.0)
    keep_start: bool = _opt(False, "Score the starting model on the held-out blocks first and "
                            "keep it if no epoch beats it. Off by default: on blocks cleaned by "
                            "ignore_confident the base model scores too well (measured: recall "
                            "of unmapped buildings 0.65 with it, 0.81 without, on the sample).")
    threshold_metric: str = _opt(
        "f2", "What the probability threshold maximises on the held-out blocks: f2 weights "
        "recall twice (their unmapped buildings count as false positives, and new buildings are "
        "proposals a mapper reviews; it raised the recall of unmapped buildings on each of the "
        "sample's three drops, see the README) or dice (pixel accuracy).",
        choices=("f2", "dice"))
    freeze_bn: bool = _opt(True, "Keep the base model's BatchNorm statistics fixed while "
                           "fine-tuning (batches of a few crops give noisy statistics).")


@dataclass
class PredictOptions(_Checked):
    """Tiled prediction settings."""

    tile_size: int = _opt(512, "Tile size in pixels.", min=32, max=8192)
    overlap: int = _opt(64, "Overlap between neighbouring tiles in pixels (blended).",
                        min=0, max=1024)
    batch_size: int = _opt(4, "Tiles per forward pass.", min=1, max=512)
    device: str = _opt("auto", "Compute device.", choices=("auto", "cpu", "cuda", "mps"))
    tta: bool = _opt(False, "Flip test-time augmentation (slower, slightly higher recall).")
    normalize: str = _opt("raster", "Normalise with this raster's own band statistics (as in "
                          "training) or the model card's.", choices=("raster", "model"))


DEFAULT_THRESHOLD = 0.5  # when neither the user nor a model chose one
THRESHOLD_KEY = "BFE_THRESHOLD"  # metadata item: the model's threshold, on its probability raster


@dataclass
class ExtractOptions(_Checked):
    """How a probability raster becomes footprint polygons."""

    threshold: Optional[float] = _opt(
        None, "Probability above which a pixel is building (default: the one the model chose on "
        "held-out blocks, stored with its probability raster; 0.5 without one).", min=0.0, max=1.0)
    min_area: float = _opt(15.0, "Drop polygons smaller than this many square metres.", min=0.0)
    simplify: float = _opt(1.0, "Simplification tolerance in pixels of ground distance.", min=0.0)
    regularize: bool = _opt(False, "Square corners where the area stays within ±30 %.")
    existing_overlap: float = _opt(
        0.3, "A footprint overlapping existing buildings by more than this share is not new.",
        min=0.0, max=1.0,
    )


__all__ = [
    "DEFAULT_THRESHOLD",
    "THRESHOLD_KEY",
    "ExtractOptions",
    "PredictOptions",
    "RasterizeOptions",
    "TrainOptions",
    "replace",
]
