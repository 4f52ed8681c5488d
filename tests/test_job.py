"""One job description: every front end builds a JobSpec and its options reach the steps."""

from __future__ import annotations

import pytest

from ml_core.cli import build_parser, job_from_args
from ml_core.cli.train import TRAIN_SECTIONS
from ml_core.config import JobSpec, LossOptions, RasterizeOptions, TrainOptions
from ml_core.errors import InputError
from ml_core.learn.modelfile import read_card
from ml_core.learn.train import finetune
from ml_core.pipeline import SAMPLE_BUILDINGS, SAMPLE_RASTER

TINY = TrainOptions(loss="bd_lace_wdice", epochs=1, steps_per_epoch=2, batch_size=2,
                    crop_size=64, width=4, depth=2, gsd_m=0.8, device="cpu")


def test_sections_and_the_review_round_are_explicit():
    job = JobSpec.from_sections([RasterizeOptions(unknown_margin=2), TINY])
    assert job.rasterize.unknown_margin == 2 and job.train == TINY
    assert job.loss == LossOptions() and job.train.ignore_confident == 0.5
    rnd = job.for_review_round()
    assert (rnd.train.ignore_confident, rnd.train.keep_start) == (None, True)
    assert rnd.rasterize == job.rasterize and job.train.ignore_confident == 0.5  # unchanged
    assert job.as_dict()["loss"]["lace_tau"] == 1.0


def test_cli_flags_of_every_section_reach_the_job():
    args = build_parser().parse_args(
        ["finetune", "r.tif", "b.gpkg", "-o", "m", "--unknown-margin", "3", "--lace-tau", "0.5",
         "--lace-prior", "0.8,0.2", "--boundary-theta", "7", "--device", "cpu"])
    job = job_from_args(args, TRAIN_SECTIONS)
    assert job.rasterize.unknown_margin == 3
    assert (job.loss.lace_tau, job.loss.lace_prior, job.loss.boundary_theta) == (0.5, (0.8, 0.2), 7)
    assert job.train.device == job.predict.device == "cpu"  # bfe run predicts where it trained


def test_per_class_values_are_checked():
    assert LossOptions().class_values("lace_prior", 2) == (0.9, 0.1)
    assert len(LossOptions().class_values("dice_weights", 4)) == 4
    with pytest.raises(InputError, match="--lace-prior needs one value per class"):
        LossOptions(lace_prior=(0.8, 0.2)).class_values("lace_prior", 4)
    with pytest.raises(InputError, match="--dice-weights must be at least"):
        LossOptions(dice_weights=(0.5, -1.0))
    with pytest.raises(InputError, match="no default for 3 classes"):
        LossOptions().class_values("lace_prior", 3)


def test_loss_and_rasterize_options_reach_training(tmp_path):
    loss = LossOptions(lace_tau=0.5, lace_prior=(0.8, 0.2), dice_weights=(0.3, 0.7),
                       boundary_theta0=5, boundary_weight=2.0)
    result = finetune(SAMPLE_RASTER, SAMPLE_BUILDINGS, tmp_path / "m.safetensors", TINY,
                      base=None, rasterize=RasterizeOptions(instance=False), loss_options=loss)
    params = read_card(result.model_path).loss_params
    assert (params["tau"], params["theta0"], params["boundary_weight"]) == (0.5, 5, 2.0)
    assert tuple(params["prior"]) == (0.8, 0.2) and tuple(params["class_weights"]) == (0.3, 0.7)


def test_loss_options_that_do_not_fit_the_model_fail_before_any_work(tmp_path):
    four = RasterizeOptions(instance=True)  # a new model of 4 classes
    with pytest.raises(InputError, match="--lace-prior needs one value per class"):
        finetune(SAMPLE_RASTER, SAMPLE_BUILDINGS, tmp_path / "m.safetensors", TINY, base=None,
                 rasterize=four, loss_options=LossOptions(lace_prior=(0.8, 0.2)))
    assert not list(tmp_path.iterdir())  # nothing written
