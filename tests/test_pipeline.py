"""``bfe run``: the whole chain on the shipped sample with a tiny model."""

import json
from pathlib import Path

from osgeo import ogr

from ml_core.cli import main
from ml_core.config import JobSpec, TrainOptions
from ml_core.pipeline import SAMPLE_BUILDINGS, SAMPLE_RASTER, run

TINY = TrainOptions(loss="ce", epochs=1, steps_per_epoch=3, batch_size=2, crop_size=64, width=4,
                    depth=2, gsd_m=0.8, device="cpu")


def test_run_writes_footprints_new_buildings_and_report(tmp_path):
    report = run(SAMPLE_RASTER, SAMPLE_BUILDINGS, tmp_path, JobSpec(train=TINY), base=None)
    for name in ("footprints.gpkg", "new_buildings.gpkg", "report.json", "model.safetensors"):
        assert (tmp_path / name).exists(), name
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"] == report["summary"]
    assert set(saved["timings_s"]) == {"rasterize", "train", "predict", "extract"}
    ds = ogr.Open(str(tmp_path / "new_buildings.gpkg"))
    count = ds.GetLayerByName("new_buildings").GetFeatureCount()
    assert count == report["summary"]["new_buildings"]


def test_cli_run_defaults_to_the_sample(tmp_path, capsys):
    flags = [f"--{'' if v else 'no-'}{k.replace('_', '-')}" if isinstance(v, bool)
             else f"--{k.replace('_', '-')}={v}" for k, v in vars(TINY).items() if v is not None]
    assert main(["run", "-o", str(tmp_path), "--base", "none", *flags]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert Path(summary["outdir"]) == tmp_path and summary["epochs"] == 1
