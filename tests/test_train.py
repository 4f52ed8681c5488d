"""Fine-tuning loop on a tiny real crop: learning, checkpoints, resume, cancel, determinism."""

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ml_core.config import TrainOptions
from ml_core.errors import Cancelled, InputError
from ml_core.events import CancelToken
from ml_core.io import raster as gdalio
from ml_core.labels.rasterize import rasterize_labels
from ml_core.learn import train as train_module
from ml_core.learn.checkpoint import last_path, load_state, save_state
from ml_core.learn.confident import ignore_confident
from ml_core.learn.dataset import CropSampler, load_regions, split_blocks
from ml_core.learn.model import UNet
from ml_core.learn.modelfile import ModelCard, load_model, save_model
from ml_core.learn.optim import make_optimizer
from ml_core.learn.train import finetune, fit

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "banepa_sample.tif"
SAMPLE_BUILDINGS = REPO / "data" / "sample" / "banepa_sample_buildings.gpkg"
# keep_start off: these tests follow the loop's own epochs (the start's scoring has its test)
TINY = TrainOptions(loss="ce", epochs=1, steps_per_epoch=4, batch_size=2, crop_size=64, width=4,
                    depth=2, lr=0.01, gsd_m=0.8, device="cpu", keep_start=False)


@pytest.fixture(scope="module")
def sample_mask(tmp_path_factory) -> Path:
    return rasterize_labels(SAMPLE, SAMPLE_BUILDINGS, tmp_path_factory.mktemp("mask") / "m.tif")


@pytest.fixture(scope="module")
def tiny(sample_mask):
    """The shipped sample at 0.8 m (about 250 x 250 px) with its card."""
    ds = gdalio.open_raster(SAMPLE)
    mean, std = gdalio.band_statistics(ds, [1, 2, 3])
    regions = load_regions(SAMPLE, sample_mask, [1, 2, 3], TINY.gsd_m, mean, std, num_classes=2)
    net = UNet(3, 2, TINY.width, TINY.depth)
    card = ModelCard(architecture=net.architecture(), bands=[1, 2, 3], mean=mean, std=std,
                     gsd_m=TINY.gsd_m, loss=TINY.loss)
    return regions, card


def _fit(tiny, out, options=TINY, **kwargs):
    regions, card = tiny
    torch.manual_seed(options.seed)
    net = UNet(3, 2, options.width, options.depth)
    split = split_blocks(regions, options.crop_size // 2, options.val_fraction, options.seed)
    return fit(net, split, card, out, options, **kwargs), split


def _weights(path) -> dict:
    return load_model(path).net.state_dict()


def test_one_epoch_lowers_the_loss(tiny, tmp_path):
    regions, _ = tiny
    batch = CropSampler(regions, 64).batch(8, np.random.default_rng(1))
    x, y = torch.from_numpy(batch[0]), torch.from_numpy(batch[1].astype(np.int64))

    def loss_of(net):
        net.eval()
        with torch.no_grad():
            return float(torch.nn.functional.cross_entropy(net(x), y, ignore_index=255))

    torch.manual_seed(0)
    before = loss_of(UNet(3, 2, TINY.width, TINY.depth))
    result, _ = _fit(tiny, tmp_path / "m.safetensors", replace(TINY, steps_per_epoch=12))
    assert loss_of(load_model(last_path(result.model_path)).net) < before


def test_checkpoints_card_and_resume_continue_exactly(tiny, tmp_path):
    two = replace(TINY, epochs=2)
    straight, _ = _fit(tiny, tmp_path / "a.safetensors", two)
    first, _ = _fit(tiny, tmp_path / "b.safetensors")
    for path in (first.model_path, last_path(first.model_path)):
        assert path.exists() and path.with_suffix(".json").exists()
    state = json.loads(last_path(first.model_path).with_name("b.last.state.json").read_text())
    assert state["epoch"] == 1
    resumed, _ = _fit(tiny, tmp_path / "b.safetensors", two, resume=True)
    assert resumed.epochs_run == 2 and len(resumed.history) == 2
    a, b = _weights(last_path(straight.model_path)), _weights(last_path(resumed.model_path))
    assert all(torch.equal(a[k], b[k]) for k in a)
    card = load_model(resumed.model_path).card
    assert 0.3 <= card.threshold <= 0.7 and card.gsd_m == TINY.gsd_m
    assert card.metrics["epoch"] == resumed.best_epoch
    assert not resumed.kept_start
    assert resumed.describe().startswith(f"best epoch {resumed.best_epoch} ")


def test_same_seed_same_weights(tiny, tmp_path):
    r1, _ = _fit(tiny, tmp_path / "1.safetensors")
    r2, _ = _fit(tiny, tmp_path / "2.safetensors")
    a, b = _weights(r1.model_path), _weights(r2.model_path)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cancel_stops_quickly_and_keeps_the_best_checkpoint(tiny, tmp_path):
    token = CancelToken()
    events = []

    def progress(ev):
        events.append(ev)
        if ev.stage == "validate":
            token.cancel()
            events.append(time.monotonic())

    with pytest.raises(Cancelled):
        _fit(tiny, tmp_path / "c.safetensors", replace(TINY, epochs=5), progress=progress,
             cancel=token)
    assert time.monotonic() - events[-1] < 2.0
    assert load_model(tmp_path / "c.safetensors").card.metrics["epoch"] == 1
    devices = {e.device for e in events if hasattr(e, "device")}
    n = torch.get_num_threads()
    assert devices == {f"CPU ({n} thread{'' if n == 1 else 's'})"}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_optimizer_state_round_trips_without_pickle(tmp_path, optimizer):
    net = UNet(3, 2, 4, 2)
    opt = make_optimizer(net, replace(TINY, optimizer=optimizer))
    net(torch.randn(1, 3, 16, 16)).sum().backward()
    opt.step()
    save_state(tmp_path / "m.safetensors", opt, {"epoch": 3})
    opt2 = make_optimizer(net, replace(TINY, optimizer=optimizer))
    assert load_state(tmp_path / "m.safetensors", opt2) == {"epoch": 3}
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for idx, st in s1["state"].items():
        assert all(torch.equal(torch.as_tensor(v), torch.as_tensor(s2["state"][idx][k]))
                   for k, v in st.items())


def test_finetune_from_a_base_model_writes_a_complete_card(tmp_path, sample_mask):
    net = UNet(3, 2, TINY.width, TINY.depth)
    base = save_model(tmp_path / "base.safetensors", net, ModelCard(
        architecture=net.architecture(), bands=[1, 2, 3], mean=[0, 0, 0], std=[1, 1, 1],
        gsd_m=0.8))
    result = finetune(SAMPLE, SAMPLE_BUILDINGS, tmp_path / "ft.safetensors",
                      replace(TINY, gsd_m=None, ignore_confident=0.9), base=base)
    card = load_model(result.model_path).card
    assert card.gsd_m == 0.8 and card.base_model == "base.safetensors"
    assert card.mean != [0, 0, 0] and card.bands == [1, 2, 3]
    assert str(SAMPLE) in card.training_data and card.metrics["val_dice"] is not None


def test_base_model_band_mismatch_is_a_clear_error(tmp_path):
    net = UNet(3, 2, 4, 2)
    base = save_model(tmp_path / "base.safetensors", net, ModelCard(
        architecture=net.architecture(), bands=[1, 2, 3], mean=[0, 0, 0], std=[1, 1, 1],
        gsd_m=0.8))
    with pytest.raises(InputError, match="expects 3 bands"):
        finetune(SAMPLE, SAMPLE_BUILDINGS, tmp_path / "x.safetensors", TINY, base=base, bands=[1])


def test_resume_without_checkpoint_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(InputError):
        _fit(tiny, tmp_path / "none.safetensors", resume=True)


def _bn_means(net: torch.nn.Module) -> list:
    return [m.running_mean.clone() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_keeps_the_batchnorm_statistics(tiny, tmp_path, freeze):
    result, _ = _fit(tiny, tmp_path / "m.safetensors", replace(TINY, freeze_bn=freeze))
    torch.manual_seed(TINY.seed)
    start = _bn_means(UNet(3, 2, TINY.width, TINY.depth))
    after = _bn_means(load_model(last_path(result.model_path)).net)
    same = [torch.equal(a, b) for a, b in zip(start, after)]
    assert all(same) if freeze else not any(same)


def test_a_new_network_learns_its_batchnorm_statistics(tmp_path):
    result = finetune(SAMPLE, SAMPLE_BUILDINGS, tmp_path / "new.safetensors", TINY, base=None)
    torch.manual_seed(TINY.seed)
    start = _bn_means(UNet(3, 2, TINY.width, TINY.depth))
    after = _bn_means(load_model(result.model_path).net)
    assert TINY.freeze_bn and not any(torch.equal(a, b) for a, b in zip(start, after))


def test_a_fine_tune_that_never_beats_its_start_returns_the_start(tiny, tmp_path):
    """Weights and thresholds both: the start's own thresholds (its card's), not ones chosen
    on these held-out blocks."""
    regions, card = tiny
    card = replace(card, threshold=0.42, seed_threshold=0.37)
    torch.manual_seed(0)
    net = UNet(3, 2, TINY.width, TINY.depth)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    split = split_blocks(regions, TINY.crop_size // 2, TINY.val_fraction, TINY.seed)
    frozen = replace(TINY, lr=0.0, weight_decay=0.0, freeze_bn=True, epochs=2, keep_start=True)
    result = fit(net, split, card, tmp_path / "m.safetensors", frozen)
    assert result.best_epoch == 0 and [h["epoch"] for h in result.history] == [0, 1, 2]
    assert result.history[1]["val_dice"] == result.history[0]["val_dice"]
    best = _weights(result.model_path)
    assert all(torch.equal(best[k], v) for k, v in start.items())
    assert result.kept_start and "starting model is kept" in result.describe()
    kept = load_model(result.model_path).card
    assert (kept.threshold, kept.seed_threshold, result.threshold) == (0.42, 0.37, 0.42)


def test_ignore_confident_unlabels_background_in_training_and_validation(tiny):
    regions, _ = tiny
    split = split_blocks(regions, TINY.crop_size // 2, TINY.val_fraction, TINY.seed)
    before = [(r.mask.copy(), v.mask.copy()) for r, v in zip(split.train, split.val)]
    net = UNet(3, 2, TINY.width, TINY.depth)
    with torch.no_grad():  # a model that calls every pixel building
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([-5.0, 5.0]))
    changed = ignore_confident(net, split, 0.5, torch.device("cpu"), validation=True)
    assert changed == sum(int((t == 0).sum()) for t, _ in before) > 0
    for (t0, v0), reg, val in zip(before, split.train, split.val):
        assert not (reg.mask == 0).any() and not (val.mask == 0).any()
        assert np.array_equal(reg.mask == 1, t0 == 1) and np.array_equal(val.mask == 1, v0 == 1)
    # without the held-out blocks: only the training blocks change
    split = split_blocks(regions, TINY.crop_size // 2, TINY.val_fraction, TINY.seed)
    assert ignore_confident(net, split, 0.5, torch.device("cpu"), validation=False) == changed
    for (_, v0), reg, val in zip(before, split.train, split.val):
        assert not (reg.mask == 0).any() and np.array_equal(val.mask, v0)


def test_the_experiment_keeps_the_settings_of_its_committed_grids():
    """Table I scores Dice; its committed runs chose thresholds by Dice, trained with AdamW and
    kept their best epoch over the start, while the product defaults are object F1, SGD and
    keep_start."""
    from ml_core.evaluate.experiment import ExperimentConfig

    product = TrainOptions()
    assert (product.threshold_metric, product.optimizer, product.keep_start) == (
        "object_f1", "sgd", True)
    for config in (ExperimentConfig(), ExperimentConfig.preset(quick=True)):
        assert (config.train.threshold_metric, config.train.optimizer,
                config.train.keep_start) == ("dice", "adamw", False)


def test_out_of_memory_halves_the_batch_and_gives_up_clearly_at_one(tiny, tmp_path, monkeypatch):
    """CUDA's out-of-memory error, raised for batches above ``fits`` (no GPU here): the loop
    halves the batch until it fits, keeps training, and remembers the size in its state."""
    real_step, seen = train_module._train_step, []

    def step_with_memory(fits):
        def step(net, optimizer, scaler, loss_fn, imgs, *rest):
            seen.append(len(imgs))
            if len(imgs) > fits:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
            return real_step(net, optimizer, scaler, loss_fn, imgs, *rest)
        return step

    monkeypatch.setattr(train_module, "_train_step", step_with_memory(1))
    result, _ = _fit(tiny, tmp_path / "o.safetensors", replace(TINY, batch_size=4))
    assert seen[:3] == [4, 2, 1] and set(seen[3:]) == {1}
    assert seen.count(1) == TINY.steps_per_epoch and result.epochs_run == 1
    state = json.loads((tmp_path / "o.last.state.json").read_text())
    assert state["batch_size"] == 1
    monkeypatch.setattr(train_module, "_train_step", step_with_memory(0))
    with pytest.raises(InputError, match="batch of 1"):
        _fit(tiny, tmp_path / "p.safetensors", replace(TINY, batch_size=2))
