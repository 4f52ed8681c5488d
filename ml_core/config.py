"""Every user-facing parameter and its default, declared once.

The CLI, the Processing algorithms and the dock build their options from these dataclasses
(``fields(TrainOptions)``: name, default, ``metadata["help"]``, optional ``metadata["choices"]``
and ``metadata["min"]``/``metadata["max"]``, ``metadata["odd"]``), so a default changes in exactly
one place. Values are checked on construction, so every front end reports a bad value the same
way. A whole run is one :class:`JobSpec` (an options object per step); every front end builds one
and hands its parts to the steps, so an option set anywhere reaches every step that uses it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Optional

from ml_core.errors import InputError


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


class _Checked:
    """Validates every field against its ``choices``, ``min``, ``max`` and ``odd`` metadata
    (a list, e.g. per-class values, element by element)."""

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
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(item, float) and not math.isfinite(item):  # NaN passes < and >
                    raise InputError(f"Option {flag} must be a finite number, not {value}.")
                if (low is not None and item < low) or (high is not None and item > high):
                    bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
                    raise InputError(f"Option {flag} must be {bounds}, not {value}.")
                if meta.get("odd") and item % 2 == 0:
                    raise InputError(f"Option {flag} must be an odd number, not {value}.")


DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")  # auto: CUDA, then Apple MPS, then the CPU


@dataclass
class RasterizeOptions(_Checked):
    """How polygons become a partial training mask (1 building, 0 background, 255 unknown)."""

    unknown_margin: int = _opt(
        0, "Pixels around each footprint marked unknown (absorbs misalignment).", min=0, max=100
    )
    all_touched: bool = _opt(False, "Burn every pixel a footprint touches, not only pixel centres.")
    instance: bool = _opt(True, "Write instance classes (building interior, edge, and contact "
                          "between close buildings) so that touching buildings can be separated; "
                          "off: building / background only.")
    edge_m: float = _opt(1.0, "Width of the building-edge ring in metres.", min=0.0, max=10.0)
    contact_m: float = _opt(2.0, "Background in a gap narrower than this many metres between two "
                            "buildings is marked as contact.", min=0.0, max=20.0)


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
        "sgd", "Optimiser: the paper's SGD (momentum 0.9, Nesterov) or AdamW (not measurably "
        "faster here; figures: docs/ARCHITECTURE.md, 'Why these defaults').",
        choices=("sgd", "adamw"))
    lr: Optional[float] = _opt(None, "Learning rate; default 3e-4 (AdamW), 0.002 (SGD, paper).",
                               min=0)
    weight_decay: float = _opt(1e-4, "Weight decay.", min=0)
    lr_halve_every: int = _opt(30, "Halve the learning rate every N epochs (paper: 30).", min=1)
    patience: int = _opt(8, "Stop when validation Dice has not improved for N epochs.", min=1)
    val_fraction: float = _opt(0.2, "Share of spatial blocks held out for validation.",
                               min=0.0, max=0.9)
    device: str = _opt("auto", "Compute device.", choices=DEVICE_CHOICES)
    seed: int = _opt(0, "Random seed (same seed, same result on CPU).", min=0)
    width: int = _opt(16, "U-Net base width (channels of the first level), for new models.",
                      min=2, max=256)
    depth: int = _opt(4, "U-Net depth (number of down-sampling steps), for new models.",
                      min=1, max=7)
    gsd_m: Optional[float] = _opt(None, "Resample the raster to this pixel size in metres; "
                                  "default: the base model's, else the raster's own.", min=0.01)
    ignore_confident: Optional[float] = _opt(
        0.5, "Treat as unknown (in training blocks; see clean_validation) the background pixels "
        "the base model calls building above this probability: likely unmapped buildings (0: "
        "off).",
        min=0.0, max=1.0)
    clean_validation: bool = _opt(
        False, "Apply ignore_confident to the held-out blocks as well. Off (default): they keep "
        "the labels as given, so keep_start does not score the starting model where its own "
        "confident predictions were made unknown, which no epoch could beat (figures: "
        "docs/experiments/base_alternatives).")
    keep_start: bool = _opt(True, "Score the starting model on the held-out blocks first and "
                            "return it, saying so, when no epoch beats it: a short fine-tune "
                            "dips before it improves, so it is never handed back worse than its "
                            "start (figures: docs/ARCHITECTURE.md, 'Why these defaults').")
    threshold_metric: str = _opt(
        "object_f1", "What the thresholds maximise on the held-out blocks: object_f1 extracts "
        "buildings as 'bfe extract' does and matches them one to one with the held-out labels "
        "(building and seed thresholds; buildings mostly on unknown pixels are not counted), f2 "
        "pixel F-score with recall counted twice, or dice (pixel accuracy).",
        choices=("object_f1", "f2", "dice"))
    scale_augment: bool = _opt(False, "Resample training crops to random pixel sizes across the "
                               "model's trained range (for base models that must work on any "
                               "imagery; a fine-tune learns its own raster's pixel size).")
    photometric: bool = _opt(False, "Strong colour, contrast, haze and blur augmentation (for "
                             "base models that must work on other sensors).")
    freeze_bn: bool = _opt(True, "Keep the base model's BatchNorm statistics fixed while "
                           "fine-tuning (batches of a few crops give noisy statistics).")
    align_labels: bool = _opt(
        True, "First move the building labels onto the imagery by their offset against the base "
        "model's probability (phase correlation, ml_core.osm.offset), when the estimate is "
        "confident and at least half a pixel; otherwise train on them unshifted. On the sample a "
        "known 2.1 m east, 1.4 m south shift was recovered within 0.2 m.")


# Per-class defaults by the model's number of classes: 2 (background, building) or 4
# (background, interior, edge, contact; see ml_core.labels.classes). The 2-class values are the
# paper's; the 4-class ones are a first choice (building classes share the building weight),
# not yet measured.
CLASS_DEFAULTS: dict[str, dict[int, tuple[float, ...]]] = {
    "lace_prior": {2: (0.9, 0.1), 4: (0.9, 0.06, 0.03, 0.01)},
    "dice_weights": {2: (0.1, 0.9), 4: (0.1, 0.45, 0.25, 0.2)},
}


@dataclass
class LossOptions(_Checked):
    """Parameters of the loss terms; each loss uses those of the terms it has (see
    ``ml_core.learn.losses.LOSSES``). Per-class lists hold one value per model class;
    None takes ``CLASS_DEFAULTS`` for the model's class count."""

    lace_tau: float = _opt(1.0, "LACE: strength of the logit adjustment tau (0: plain "
                           "cross-entropy).", min=0.0, max=10.0)
    lace_prior: Optional[tuple[float, ...]] = _opt(
        None, "LACE: class prior, one positive number per class, at any scale (also ELL's class "
        "frequency). Default: 0.9,0.1 for 2 classes; 0.9,0.06,0.03,0.01 for 4.",
        min=1e-6, per_class=True)
    dice_weights: Optional[tuple[float, ...]] = _opt(
        None, "Dice class weights, one per class. Default: equal for the plain Dice losses; "
        "for the weighted ones (wdice) 0.1,0.9 for 2 classes, 0.1,0.45,0.25,0.2 for 4.",
        min=1e-6, per_class=True)
    boundary_theta0: int = _opt(3, "Boundary loss: boundary width in pixels (odd).",
                                min=1, max=31, odd=True)
    boundary_theta: int = _opt(5, "Boundary loss: tolerance window in pixels (odd); a predicted "
                               "boundary this close to the true one still counts.",
                               min=1, max=63, odd=True)
    ce_weight: float = _opt(1.0, "Weight of the cross-entropy term in a sum of terms.",
                            min=0.0, max=100.0)
    lace_weight: float = _opt(1.0, "Weight of the LACE term in a sum of terms.",
                              min=0.0, max=100.0)
    dice_weight: float = _opt(1.0, "Weight of the Dice term in a sum of terms.",
                              min=0.0, max=100.0)
    boundary_weight: float = _opt(1.0, "Weight of the boundary term in a sum of terms.",
                                  min=0.0, max=100.0)

    def class_values(self, name: str, classes: int) -> tuple[float, ...]:
        """The per-class option ``name`` for a model with ``classes`` outputs: as given (its
        length checked) or the default for that class count."""
        value = getattr(self, name)
        flag = "--" + name.replace("_", "-")
        if value is None:
            if classes not in CLASS_DEFAULTS[name]:
                raise InputError(f"Option {flag} has no default for {classes} classes; give "
                                 f"{classes} comma-separated values.")
            return CLASS_DEFAULTS[name][classes]
        if len(value) != classes:
            raise InputError(f"Option {flag} needs one value per class ({classes}), "
                             f"not {len(value)}: {list(value)}.")
        return tuple(float(v) for v in value)


@dataclass
class PredictOptions(_Checked):
    """Tiled prediction settings."""

    tile_size: int = _opt(512, "Tile size in pixels.", min=32, max=8192)
    overlap: int = _opt(64, "Overlap between neighbouring tiles in pixels (blended).",
                        min=0, max=1024)
    batch_size: int = _opt(4, "Tiles per forward pass.", min=1, max=512)
    device: str = _opt("auto", "Compute device.", choices=DEVICE_CHOICES)
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
    seed_threshold: Optional[float] = _opt(
        None, "Interior probability above which a region seeds a building of its own when "
        "touching buildings are separated (instance models; default: the model's).",
        min=0.0, max=1.0)
    min_seed_m2: float = _opt(1.0, "Smallest interior region, in square metres, that seeds a "
                              "building of its own (smaller ones join their neighbour).",
                              min=0.0, max=100.0)
    min_area: float = _opt(15.0, "Drop polygons smaller than this many square metres.", min=0.0)
    simplify: float = _opt(1.0, "Simplification tolerance in pixels of ground distance.", min=0.0)
    regularize: bool = _opt(False, "Right angles for nearly rectangular buildings (as JOSM's "
                            "orthogonalise); other shapes are kept.")
    existing_overlap: float = _opt(
        0.3, "A footprint overlapping existing buildings by more than this share is not new.",
        min=0.0, max=1.0,
    )


@dataclass
class ClusterOptions(_Checked):
    """Where prediction runs: in this process (the default), on a local Dask cluster of
    ``workers`` processes, or on the running Dask scheduler at ``scheduler``
    (``ml_core.infer.cluster``); the result is the same probability raster either way."""

    workers: int = _opt(0, "Predict on a local Dask cluster of this many worker processes "
                        "(0: no local cluster: in this process, or on the scheduler when its "
                        "address is given).", min=0, max=256)
    scheduler: str = _opt("", "Address of a running Dask scheduler, tcp://HOST:PORT (instead of "
                          "a local cluster). Its workers need bfe installed and must read the "
                          "raster at the same path. Dask runs pickled tasks: use only a "
                          "scheduler you trust.")
    torch_threads: int = _opt(1, "Torch threads in each worker process.", min=1, max=256)
    windows_per_task: int = _opt(8, "Tiles one cluster task predicts (reads, runs, returns).",
                                 min=1, max=4096)

    @property
    def enabled(self) -> bool:
        """True when prediction goes to a Dask cluster."""
        return bool(self.workers or self.scheduler)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.scheduler and not self.scheduler.startswith(("tcp://", "tls://", "inproc://")):
            raise InputError(f"The Dask scheduler address (--scheduler, or 'Scheduler' in "
                             f"QGIS) must be like tcp://HOST:PORT, not {self.scheduler!r}.")


@dataclass
class JobSpec:
    """A whole run: the options of every step. The CLI, the Processing algorithms and the dock
    each build one (``from_sections``) and pass its parts to the steps, so rasterising, loss and
    training options reach training from every front end alike."""

    rasterize: RasterizeOptions = field(default_factory=RasterizeOptions)
    train: TrainOptions = field(default_factory=TrainOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    predict: PredictOptions = field(default_factory=PredictOptions)
    extract: ExtractOptions = field(default_factory=ExtractOptions)
    cluster: ClusterOptions = field(default_factory=ClusterOptions)

    @classmethod
    def from_sections(cls, sections: Sequence[Any]) -> JobSpec:
        """A job from options objects of any of the step types (the others default)."""
        by_type = {type(f.default_factory()): f.name for f in fields(cls)}
        job = cls()
        for section in sections:
            job = replace(job, **{by_type[type(section)]: section})
        return job

    def for_review_round(self) -> JobSpec:
        """This job as a review round trains it: ``ignore_confident`` off, since the current
        model calls the rejected proposals building and would turn exactly the reviewer's
        background answers back into unknown; ``keep_start`` on, since the held-out blocks now
        hold the reviewer's answers (not cleaned by the model's own predictions), so they can
        fairly decide whether the retrained model beats the one the reviewer worked with."""
        return replace(self, train=replace(self.train, ignore_confident=None, keep_start=True))

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Every option by step, for reports and logs."""
        return asdict(self)


SECTIONS = (RasterizeOptions, TrainOptions, LossOptions, PredictOptions, ExtractOptions,
            ClusterOptions)
"""The options classes of a :class:`JobSpec`, in pipeline order."""


__all__ = [
    "CLASS_DEFAULTS",
    "DEFAULT_THRESHOLD",
    "DEVICE_CHOICES",
    "SECTIONS",
    "THRESHOLD_KEY",
    "ClusterOptions",
    "ExtractOptions",
    "JobSpec",
    "LossOptions",
    "PredictOptions",
    "RasterizeOptions",
    "TrainOptions",
    "replace",
]
