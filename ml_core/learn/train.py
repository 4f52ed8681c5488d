"""Fine-tuning: the training loop with validation on held-out blocks, checkpoints and resume.

``finetune`` prepares one raster (rasterise labels, read at the model's GSD, split into
training and held-out blocks) and calls ``fit``, which the base-model script also uses with
several areas. Every epoch writes the last checkpoint (weights, card, and the training state of
``learn.checkpoint``) and, when validation Dice improves, the best one with the probability
threshold chosen on the held-out blocks. The optimiser and its schedule: ``learn.optim``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from ml_core.config import LossOptions, RasterizeOptions, TrainOptions
from ml_core.errors import InputError
from ml_core.events import CancelToken, ProgressCallback, ProgressEvent, check_cancel, emit
from ml_core.infer.in_memory import predict_batches
from ml_core.io import raster as gdalio
from ml_core.io.atomic import check_not_input, check_writable
from ml_core.labels.rasterize import rasterize_labels
from ml_core.learn.checkpoint import last_path, load_state, save_state, state_paths
from ml_core.learn.confident import ignore_confident
from ml_core.learn.dataset import (
    UNKNOWN,
    CropSampler,
    Split,
    load_regions,
    split_blocks,
    val_crops,
)
from ml_core.learn.device import amp_dtype, describe_device, select_device
from ml_core.learn.losses import LOSSES, get_loss
from ml_core.learn.losses.registry import loss_params
from ml_core.learn.model import UNet
from ml_core.learn.modelfile import ModelCard, load_model, save_model, working_gsd
from ml_core.learn.optim import make_optimizer, make_scheduler
from ml_core.learn.threshold import (
    best_pixel_dice,
    choose_thresholds,
    extraction_sizes,
    pixel_counts_by_threshold,
)
from ml_core.osm.offset import align_labels

PathLike = Union[str, os.PathLike]
DEFAULT_BASE = Path(__file__).resolve().parents[1] / "models" / "base_unet.safetensors"


@dataclass
class TrainResult:
    """What a training run produced and why it stopped."""

    model_path: Path
    best_epoch: int
    best_val_dice: Optional[float]
    threshold: float
    epochs_run: int
    stopped: str  # "epochs", "early_stop" or "time"
    seconds: float
    device: str
    history: list = field(default_factory=list)

    @property
    def kept_start(self) -> bool:
        """True when no epoch beat the starting model (scored as epoch 0 with ``keep_start``),
        so the model written is the starting one, with its own thresholds."""
        return self.best_epoch == 0

    def describe(self) -> str:
        """One line for terminals, logs and message bars: what was kept, and why it stopped."""
        dice = "-" if self.best_val_dice is None else f"{self.best_val_dice:.3f}"
        kept = ("no epoch beat the starting model on the held-out blocks, so the starting "
                f"model is kept (held-out Dice {dice})" if self.kept_start else
                f"best epoch {self.best_epoch} (held-out Dice {dice})")
        return (f"{kept}; {self.epochs_run} epoch(s), stopped: {self.stopped}, "
                f"{self.seconds:.0f} s on {self.device}")


@dataclass
class _Run:
    """Mutable loop state that a checkpoint must restore."""

    epoch: int = 0
    best_epoch: int = 0
    best_dice: Optional[float] = None
    threshold: float = 0.5
    seed_threshold: float = 0.5
    bad_epochs: int = 0
    elapsed: float = 0.0
    batch_size: int = 4
    history: list = field(default_factory=list)
    np_rng: dict = field(default_factory=dict)


def _train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, loss_fn: torch.nn.Module, imgs: np.ndarray,
                masks: np.ndarray, device: torch.device, amp: Optional[torch.dtype]) -> float:
    """One optimiser step on a batch of crops [N,C,H,W] and masks [N,H,W]; the loss."""
    x = torch.from_numpy(imgs).to(device)
    y = torch.from_numpy(masks.astype(np.int64)).to(device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
        logits = net(x)
    loss = loss_fn(logits.float(), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.detach())


def _validate(net: UNet, val: list, device: torch.device, batch: int,
              cancel: Optional[CancelToken]) -> tuple[Optional[np.ndarray], np.ndarray,
                                                      Optional[float]]:
    """(probability bands, masks, best pixel Dice) of the held-out crops; Dice None without
    any."""
    if not val:
        return None, np.zeros((0, 1, 1), np.uint8), None
    bands = predict_batches(net, np.stack([v[0] for v in val]), device, batch, cancel)
    masks = np.stack([v[1] for v in val])
    return bands, masks, best_pixel_dice(pixel_counts_by_threshold(bands[:, 0], masks))


def _keep_thresholds(run: _Run, bands: Optional[np.ndarray], masks: np.ndarray,
                     options: TrainOptions, gsd_m: float) -> None:
    """Choose the thresholds on the held-out crops (the policy of ``threshold_metric``)."""
    if bands is None:
        return
    chosen = choose_thresholds(bands, masks, options.threshold_metric, *extraction_sizes(gsd_m))
    run.threshold, run.seed_threshold = chosen.building, chosen.seed


def _with_thresholds(card: ModelCard, run: _Run, **metrics) -> ModelCard:
    return replace(card, threshold=run.threshold, seed_threshold=run.seed_threshold,
                   metrics=metrics)


def _progress(run: _Run, step: int, loss: float, elapsed: float, left: float,
              options: TrainOptions, device: str) -> ProgressEvent:
    """A per-step event; fraction and ETA follow whichever limit (epochs, minutes) comes first.

    ``left``: seconds left of the time budget (infinite without one)."""
    total = options.epochs * options.steps_per_epoch
    done = run.epoch * options.steps_per_epoch + step
    fraction, eta = done / total, elapsed / done * (total - done)
    if left < eta:
        fraction, eta = max(fraction, 1 - left / (options.minutes * 60)), max(left, 0.0)
    return ProgressEvent("train", min(fraction, 1.0), f"epoch {run.epoch + 1}/{options.epochs}",
                         epoch=run.epoch + 1, step=step, total_steps=options.steps_per_epoch,
                         loss=loss, val_dice=run.best_dice, eta_s=eta, device=device)


def _train_mode(net: torch.nn.Module, freeze_bn: bool) -> None:
    """Training mode, with BatchNorm layers left in eval mode (fixed statistics) if asked."""
    net.train()
    if freeze_bn:
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()


@dataclass
class _Stepper:
    """What an optimiser step needs, fixed for a run."""

    net: UNet
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loss_fn: torch.nn.Module
    device: torch.device
    amp: Optional[torch.dtype]


def _loss(options: TrainOptions, loss_options: Optional[LossOptions],
          num_classes: int) -> tuple[torch.nn.Module, dict]:
    """The loss module of ``options.loss`` set by ``loss_options``, and its parameters."""
    if options.loss not in LOSSES:
        raise InputError(f"Unknown loss {options.loss!r}; choose one of {', '.join(LOSSES)}.")
    params = loss_params(options.loss, loss_options or LossOptions(), num_classes)
    return get_loss(options.loss, num_classes, **params), params


def _epoch_steps(step: _Stepper, sampler: CropSampler, rng: np.random.Generator, run: _Run,
                 options: TrainOptions, clock: tuple[float, float], dev_name: str,
                 progress: Optional[ProgressCallback], cancel: Optional[CancelToken],
                 ) -> tuple[list[float], Optional[ProgressEvent], bool]:
    """One epoch's optimiser steps, halving the batch on CUDA out-of-memory: the losses, the
    last progress event and whether the time budget ran out. ``clock``: (start, deadline)."""
    start, deadline = clock
    losses: list[float] = []
    event = None
    _train_mode(step.net, options.freeze_bn)
    while len(losses) < options.steps_per_epoch:
        check_cancel(cancel)
        if time.monotonic() > deadline:
            return losses, event, True
        imgs, masks = sampler.batch(run.batch_size, rng)
        try:
            losses.append(_train_step(step.net, step.optimizer, step.scaler, step.loss_fn, imgs,
                                      masks, step.device, step.amp))
        except torch.cuda.OutOfMemoryError:
            if run.batch_size == 1:
                raise InputError("Out of GPU memory with a batch of 1; use a smaller "
                                 "--crop-size or --device cpu.") from None
            run.batch_size //= 2
            torch.cuda.empty_cache()
            continue
        event = _progress(run, len(losses), losses[-1], time.monotonic() - start,
                          deadline - time.monotonic(), options, dev_name)
        emit(progress, event)
    return losses, event, False


def _score_start(net: UNet, val: list, run: _Run, card: ModelCard, out_model: Path,
                 options: TrainOptions, device: torch.device,
                 cancel: Optional[CancelToken]) -> None:
    """Score the starting weights as epoch 0 and write them as the best so far (keep_start).

    The start keeps the thresholds ``card`` holds (for a fine-tune, those its base model chose on
    its own, completely labelled held-out blocks): these held-out blocks miss labels, which
    biases their choice (on the sample with half the buildings dropped, 0.5 / 0.7 instead of
    0.3 / 0.3, and object F1 0.32 instead of 0.40 for the same model)."""
    _, _, run.best_dice = _validate(net, val, device, run.batch_size, cancel)
    run.threshold, run.seed_threshold = card.threshold, card.seed_threshold
    run.history.append({"epoch": 0, "loss": None, "val_dice": run.best_dice,
                        "threshold": run.threshold, "seconds": 0.0})
    save_model(out_model, net, _with_thresholds(card, run, val_dice=run.best_dice, epoch=0))


def _end_epoch(net: UNet, val: list, run: _Run, losses: list[float], card: ModelCard,
               out_model: Path, options: TrainOptions, device: torch.device, start: float,
               cancel: Optional[CancelToken]) -> tuple[float, Optional[float]]:
    """Validate the epoch just trained, log it, write the best checkpoint (when Dice improved)
    and the last one; (mean training loss, validation Dice)."""
    bands, masks, dice = _validate(net, val, device, run.batch_size, cancel)
    loss = float(np.mean(losses))
    improved = dice is None or run.best_dice is None or dice > run.best_dice
    if improved:  # thresholds are chosen for the checkpoint that is kept
        _keep_thresholds(run, bands, masks, options, card.gsd_m)
    run.history.append({"epoch": run.epoch, "loss": loss, "val_dice": dice,
                        "threshold": run.threshold,
                        "seconds": round(time.monotonic() - start, 1)})
    card_now = _with_thresholds(card, run, val_dice=dice, epoch=run.epoch, train_loss=loss)
    if improved:
        run.best_dice, run.best_epoch = dice, run.epoch
        run.bad_epochs = 0
        save_model(out_model, net, card_now)
    else:
        run.bad_epochs += 1
    save_model(last_path(out_model), net, card_now)
    return loss, dice


def fit(net: UNet, split: Split, card: ModelCard, out_model: PathLike,
        options: Optional[TrainOptions] = None, progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None, resume: bool = False,
        loss_options: Optional[LossOptions] = None) -> TrainResult:
    """Train ``net`` on ``split`` with the loss ``options.loss`` set by ``loss_options``; write
    best (``out_model``) and last checkpoints every epoch.

    With ``options.keep_start`` the starting weights are scored first (epoch 0), so a fine-tune
    that never beats its base model returns the base model rather than a worse one."""
    options = options or TrainOptions()
    out_model = check_writable(Path(out_model).with_suffix(".safetensors"))
    device = select_device(options.device)
    dev_name, amp = describe_device(device), amp_dtype(device)
    torch.manual_seed(options.seed)
    run = _Run(batch_size=options.batch_size)
    rng = np.random.default_rng(options.seed)
    net.to(device)
    if device.type == "cuda":
        net.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(net, options)
    if resume:
        net.load_state_dict(load_model(last_path(out_model), device).net.state_dict())
        run = _Run(**load_state(out_model, optimizer))
        rng.bit_generator.state = run.np_rng
    scheduler = make_scheduler(optimizer, options, run.epoch)
    loss_fn, params = _loss(options, loss_options, net.num_classes)
    card = replace(card, loss=options.loss, loss_params=params)
    step = _Stepper(net, optimizer, torch.amp.GradScaler(device.type, enabled=amp == torch.float16),
                    loss_fn, device, amp)
    sampler = CropSampler(split.train, options.crop_size, photometric=options.photometric,
                          gsd_range_m=card.gsd_range_m if options.scale_augment else None)
    val = val_crops(split, options.crop_size)
    stopped = "epochs"
    start = time.monotonic() - run.elapsed
    deadline = time.monotonic() + (options.minutes * 60 if options.minutes else float("inf"))
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
    try:
        if not resume and options.keep_start:
            _score_start(net, val, run, card, out_model, options, device, cancel)
        while run.epoch < options.epochs:
            losses, event, timed_out = _epoch_steps(step, sampler, rng, run, options,
                                                    (start, deadline), dev_name, progress, cancel)
            stopped = "time" if timed_out else stopped
            if not losses:
                break
            run.epoch += 1
            scheduler.step()
            loss, dice = _end_epoch(net, val, run, losses, card, out_model, options, device,
                                    start, cancel)
            run.elapsed, run.np_rng = time.monotonic() - start, rng.bit_generator.state
            save_state(out_model, optimizer, run.__dict__)
            emit(progress, replace(event, stage="validate", message=f"epoch {run.epoch} done",
                                   step=None, loss=loss, val_dice=dice, eta_s=None))
            if timed_out:
                break
            if run.bad_epochs >= options.patience:
                stopped = "early_stop"
                break
    finally:
        torch.use_deterministic_algorithms(deterministic)
    if run.epoch == 0:
        raise InputError("Training stopped before the first epoch finished; allow more --minutes.")
    return TrainResult(out_model, run.best_epoch, run.best_dice, run.threshold, run.epoch, stopped,
                       round(time.monotonic() - start, 1), dev_name, run.history)


def finetune(raster: PathLike, labels: Union[PathLike, Sequence[PathLike], None],
             out_model: PathLike, options: Optional[TrainOptions] = None,
             base: Optional[PathLike] = DEFAULT_BASE, bands: Optional[Sequence[int]] = None,
             mask: Optional[PathLike] = None, progress: Optional[ProgressCallback] = None,
             cancel: Optional[CancelToken] = None, resume: bool = False,
             rasterize: Optional[RasterizeOptions] = None,
             loss_options: Optional[LossOptions] = None) -> TrainResult:
    """Fine-tune (from ``base``, or from scratch when None) on ``raster`` and building
    polygons ``labels`` (rasterised here with ``rasterize``) or a ready label ``mask``
    (0/1/255, same grid); the loss is set by ``loss_options``."""
    options = options or TrainOptions()
    weights = Path(out_model).with_suffix(".safetensors")
    for out in (weights, last_path(weights), *state_paths(weights)):
        check_not_input(out, raster, labels, mask, base)
        check_not_input(out.with_suffix(".json"), raster, labels, mask, base,
                        base and Path(base).with_suffix(".json"))
    ds = gdalio.open_raster(raster)
    start = load_model(base) if base is not None else None
    bands = list(bands or (start.card.bands if start else gdalio.default_bands(ds)))
    if start is not None and len(bands) != len(start.card.bands):
        raise InputError(f"The base model {base} expects {len(start.card.bands)} bands but "
                         f"{len(bands)} were chosen. Choose {len(start.card.bands)} bands or "
                         "train from scratch (no base model).")
    gdalio.check_band_list(ds, bands)
    native = gdalio.pixel_size_m(ds)
    gsd = options.gsd_m or (working_gsd(start.card, native)[0] if start else native)
    mean, std = gdalio.band_statistics(ds, bands)
    ds = None  # not held open for the whole training
    rasterize = rasterize or RasterizeOptions()
    net = start.net if start else UNet(len(bands), 4 if rasterize.instance else 2,
                                       options.width, options.depth)
    _loss(options, loss_options, net.num_classes)  # bad loss options fail now, not later
    with tempfile.TemporaryDirectory(prefix="bfe_train_") as tmp:
        label_mask = mask
        if label_mask is None:
            if labels is None:
                raise InputError("Give building polygons or a label mask to fine-tune on.")
            aligned, _ = align_labels(raster, labels, start, tmp, options.align_labels,
                                      options.device, bands, progress, cancel)
            label_mask = rasterize_labels(raster, aligned, Path(tmp) / "labels.tif", rasterize,
                                          progress=progress, cancel=cancel)
        regions = load_regions(raster, label_mask, bands, gsd, mean, std, cancel=cancel,
                               num_classes=net.num_classes)
    if not regions:
        raise InputError(f"No labelled pixel of {mask or labels} falls inside {raster}. "
                         "Check that the buildings overlap the raster.")
    if not any((reg.mask == 0).any() for reg in regions):  # nothing to tell buildings from
        raise InputError(f"The labels {mask or labels} cover every labelled pixel of {raster} "
                         "with buildings: there is no background to learn from. Use a larger "
                         "raster or one with unbuilt ground.")
    if not any(((reg.mask != 0) & (reg.mask != UNKNOWN)).any() for reg in regions):
        raise InputError(f"No building of {mask or labels} covers a pixel centre of {raster}: "
                         "there is no building to learn from. Use larger buildings or a raster "
                         "with more of them.")
    split = split_blocks(regions, options.crop_size // 2, options.val_fraction, options.seed)
    if start is None:  # a new network must learn its BatchNorm statistics; no start to keep
        options = replace(options, freeze_bn=False, keep_start=False)
    if start is not None and options.ignore_confident:
        ignore_confident(net, split, options.ignore_confident, select_device(options.device),
                         validation=options.clean_validation)
    given = [labels] if isinstance(labels, (str, os.PathLike)) else list(labels or [])
    sources = [str(p) for p in [raster, *(given or [mask])]]
    card = ModelCard(architecture=net.architecture(), bands=bands, mean=[float(v) for v in mean],
                     std=[float(v) for v in std], gsd_m=float(gsd), loss=options.loss,
                     training_data=sources,
                     base_model=Path(base).name if base is not None else None,
                     gsd_range_m=start.card.gsd_range_m if start else None,
                     **({"threshold": start.card.threshold,
                         "seed_threshold": start.card.seed_threshold} if start else {}))
    return fit(net, split, card, out_model, options, progress, cancel, resume, loss_options)


__all__ = ["DEFAULT_BASE", "TrainResult", "finetune", "fit"]
