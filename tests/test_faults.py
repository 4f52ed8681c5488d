"""The fault matrix (docs/RELIABILITY.md): bad input and faults given to ``bfe`` commands.

Each case runs the command in this process and checks: a non-zero exit status, one clear message
(no traceback), no file written, and every input byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import pixel_box, write_raster, write_tiny_model, write_vector
from osgeo import gdal

from ml_core.cli import main
from ml_core.learn.model import UNet
from ml_core.learn.modelfile import ModelCard, card_path, save_model


@pytest.fixture
def files(tmp_path) -> dict:
    """A small raster, buildings, a label mask, a probability raster and a tiny model."""
    d = {"r": write_raster(tmp_path / "r.tif", width=48, height=48),
         "b": write_vector(tmp_path / "b.gpkg", [pixel_box(2, 2, 12, 12),
                                                  pixel_box(20, 20, 30, 30)])}
    mask = np.zeros((48, 48), np.uint8)
    mask[2:12, 2:12] = mask[20:30, 20:30] = 1
    d["mask"] = write_raster(tmp_path / "mask.tif", width=48, height=48, data=mask[None])
    prob = np.where(mask, 0.9, 0.1).astype(np.float32)
    d["prob"] = write_raster(tmp_path / "prob.tif", width=48, height=48, data=prob[None])
    d["m"] = write_tiny_model(tmp_path / "m.safetensors")
    d["dir"] = tmp_path
    return d


def _snapshot(folder: Path) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


def run_fault(argv: list, folder: Path, capsys) -> tuple[int, str]:
    """Run ``bfe argv``; assert nothing was written or changed in ``folder``; (status, stderr)."""
    before = _snapshot(folder)
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse rejects the value
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert _snapshot(folder) == before, "a file was written, changed or removed"
    return code, err


def _card(files, **changes) -> None:
    path = card_path(files["m"])
    data = json.loads(path.read_text())
    arch = changes.pop("architecture", None)
    if arch is not None:
        data["architecture"] = arch if not isinstance(arch, dict) else {**data["architecture"],
                                                                        **arch}
    data.update(changes)
    path.write_text(json.dumps(data))


PREDICT = ["predict", "{r}", "-m", "{m}", "--device", "cpu", "--tile-size", "32"]
TRAIN = ["finetune", "{r}", "{b}", "--base", "none", "--width", "4", "--depth", "2",
         "--epochs", "1", "--steps-per-epoch", "1", "--crop-size", "32", "--device", "cpu"]

# kind, argv ({name} = a file of the fixture), expected message, optional setup
CASES = [
    ("output = input raster (predict)", [*PREDICT, "-o", "{r}"], "also an input"),
    ("output = input buildings (drop)", ["drop", "{b}", "-o", "{b}"], "also an input"),
    ("output = input mask (drop)", ["drop", "{mask}", "-o", "{mask}"], "also an input"),
    ("output = input raster (rasterize)", ["rasterize", "{r}", "{b}", "-o", "{r}"],
     "also an input"),
    ("output = base model (finetune)", [*TRAIN[:3], "--base", "{m}", *TRAIN[5:], "-o", "{m}"],
     "also an input"),
    ("output = model (predict)", [*PREDICT, "-o", "{m}"], "written as .tif"),
    ("output = truth (evaluate --json)", ["evaluate", "{mask}", "--truth", "{b}", "--json", "{b}"],
     "also an input"),
    ("output = existing (extract)", ["extract", "{prob}", "--existing", "{b}", "-o", "{b}"],
     "also an input"),
    ("output = input through a symlink (predict)", [*PREDICT, "-o", "{dir}/link.tif"],
     "also an input", lambda f: os.symlink(f["r"], f["dir"] / "link.tif")),
    ("output is a folder (predict)", [*PREDICT, "-o", "{dir}/out.tif"], "is a folder",
     lambda f: (f["dir"] / "out.tif").mkdir()),
    ("truncated GeoTIFF (predict)", [*PREDICT[:1], "{dir}/cut.tif", *PREDICT[2:], "-o",
                                     "{dir}/p.tif"], "cut.tif", lambda f: _truncated(f)),
    ("VRT with a missing source (predict)", [*PREDICT[:1], "{dir}/v.vrt", *PREDICT[2:], "-o",
                                             "{dir}/p.tif"], "v.vrt", lambda f: _vrt(f)),
    ("unknown CRS in --extent (predict)", [*PREDICT, "--extent", "0,0,1,1,EPSG:99999", "-o",
                                           "{dir}/p.tif"], "coordinate reference system"),
    ("negative seed (drop)", ["drop", "{b}", "--seed", "-1", "-o", "{dir}/d.gpkg"],
     "at least 0"),
    ("tile 0 (evaluate)", ["evaluate", "{mask}", "--truth", "{b}", "--tile", "0"], "at least 1"),
    ("all-building labels (finetune)", [*TRAIN[:2], "{dir}/all.gpkg", *TRAIN[3:], "-o",
                                        "{dir}/n.safetensors"], "no background",
     lambda f: write_vector(f["dir"] / "all.gpkg", [pixel_box(-4, -4, 52, 52)])),
    ("no building pixel on a 10 x 10 raster (finetune)",
     [*TRAIN[:1], "{dir}/r10.tif", "{dir}/speck.gpkg", *TRAIN[3:], "-o", "{dir}/n.safetensors"],
     "no building to learn from", lambda f: _speck(f)),
    ("corrupt --resume state (finetune)", [*TRAIN, "--resume", "-o", "{dir}/n.safetensors"],
     "Cannot resume", lambda f: _torn_state(f)),
    ("--lr nan (finetune)", [*TRAIN, "--lr", "nan", "-o", "{dir}/n.safetensors"], "finite"),
    ("--minutes nan (finetune)", [*TRAIN, "--minutes", "nan", "-o", "{dir}/n.safetensors"],
     "finite"),
    ("--threshold nan (extract)", ["extract", "{prob}", "--threshold", "nan", "-o",
                                   "{dir}/f.gpkg"], "finite"),
    ("--min-area nan (extract)", ["extract", "{prob}", "--min-area", "nan", "-o",
                                  "{dir}/f.gpkg"], "finite"),
    ("--threshold inf (evaluate)", ["evaluate", "{prob}", "--truth", "{b}", "--threshold",
                                    "inf"], "finite"),
    ("card: architecture a string", [*PREDICT, "-o", "{dir}/p.tif"], "architecture must be",
     lambda f: _card(f, architecture="unet")),
    ("card: std a string", [*PREDICT, "-o", "{dir}/p.tif"], "std must be",
     lambda f: _card(f, std="1,1,1")),
    ("card: bands a string", [*PREDICT, "-o", "{dir}/p.tif"], "bands must be",
     lambda f: _card(f, bands="1,2,3")),
    ("card: gsd_m a string", [*PREDICT, "-o", "{dir}/p.tif"], "gsd_m must be",
     lambda f: _card(f, gsd_m="0.3")),
    ("card: depth -1", [*PREDICT, "-o", "{dir}/p.tif"], "depth must be",
     lambda f: _card(f, architecture={"depth": -1})),
    ("card: threshold 'high'", [*PREDICT, "-o", "{dir}/p.tif"], "threshold must be",
     lambda f: _card(f, threshold="high")),
    ("card: gsd_range_m a string", [*PREDICT, "-o", "{dir}/p.tif"], "gsd_range_m must be",
     lambda f: _card(f, gsd_range_m="0.1-1")),
    ("card: width 100000", [*PREDICT, "-o", "{dir}/p.tif"], "width must be",
     lambda f: _card(f, architecture={"width": 100000})),
    ("card: width 8, weights width 4", [*PREDICT, "-o", "{dir}/p.tif"], "does not match",
     lambda f: _card(f, architecture={"width": 8})),
    ("weights truncated", [*PREDICT, "-o", "{dir}/p.tif"], "corrupt",
     lambda f: f["m"].write_bytes(f["m"].read_bytes()[:-100])),
    ("weights and card of different saves", [*PREDICT, "-o", "{dir}/p.tif"],
     "different saves", lambda f: _torn_pair(f)),
    ("vector output named .tif (drop)", ["drop", "{b}", "-o", "{dir}/x.tif"], "GeoPackage"),
    ("raster output named .gpkg (rasterize)", ["rasterize", "{r}", "{b}", "-o", "{dir}/x.gpkg"],
     "written as .tif"),
    ("buildings named like an output of run", ["run", "{r}", "{dir}/new_buildings.gpkg",
                                                "--base", "none", "-o", "{dir}"],
     "also an input", lambda f: f["b"].rename(f["dir"] / "new_buildings.gpkg")),
    ("bad --base before any output (run)", ["run", "{r}", "{b}", "--base", "{dir}/none.json",
                                            "-o", "{dir}/out"], "not found"),
]


def _truncated(f) -> None:
    big = write_raster(f["dir"] / "big.tif", width=600, height=600)
    gdal.Translate(str(f["dir"] / "cut.tif"), str(big),
                   creationOptions=["TILED=YES", "COMPRESS=DEFLATE"])  # closed: result dropped
    data = (f["dir"] / "cut.tif").read_bytes()
    (f["dir"] / "cut.tif").write_bytes(data[: len(data) // 2])
    big.unlink()


def _vrt(f) -> None:
    src = write_raster(f["dir"] / "src.tif", width=48, height=48)
    gdal.BuildVRT(str(f["dir"] / "v.vrt"), [str(src)])  # closed at once (returned value dropped)
    src.unlink()


def _speck(f) -> None:
    """A 10 x 10 raster whose one building is smaller than a pixel: no building pixel."""
    write_raster(f["dir"] / "r10.tif", width=10, height=10)
    write_vector(f["dir"] / "speck.gpkg", [pixel_box(2.1, 2.1, 2.4, 2.4)])


def _torn_state(f) -> None:
    out = f["dir"] / "n.safetensors"
    args = [a.format(**f) for a in TRAIN] + ["--minutes", "0", "-o", str(out)]
    assert main(args) == 0
    state = f["dir"] / "n.last.state.json"
    data = json.loads(state.read_text())
    del data["param_groups"]
    state.write_text(json.dumps(data))


def _torn_pair(f) -> None:
    torch.manual_seed(1)
    net = UNet(3, 2, width=4, depth=2)
    card = ModelCard(architecture=net.architecture(), bands=[1, 2, 3], mean=[100.0] * 3,
                     std=[50.0] * 3, gsd_m=1.0)
    other = save_model(f["dir"] / "other.safetensors", net, card)
    card_path(f["m"]).write_text(card_path(other).read_text())  # new card, old weights
    other.unlink()
    card_path(other).unlink()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fault_is_refused_cleanly(case, files, capsys):
    kind, argv, message, *setup = case
    for step in setup:
        step(files)
    capsys.readouterr()
    code, err = run_fault([a.format(**files) for a in argv], files["dir"], capsys)
    assert code not in (0, None), f"{kind}: exit status {code}"
    assert message.lower() in err.lower(), err
    assert err.strip().splitlines()[-1].startswith("bfe"), err  # one message, last


def test_model_files_have_the_mode_of_other_outputs(files):
    mode = files["mask"].stat().st_mode & 0o777
    assert files["m"].stat().st_mode & 0o777 == mode
    assert card_path(files["m"]).stat().st_mode & 0o777 == mode


def test_ctrl_c_in_the_last_predict_batch_cancels(files):
    from ml_core.errors import Cancelled
    from ml_core.events import CancelToken
    from ml_core.infer.predict import predict_raster

    token = CancelToken()

    def progress(ev) -> None:
        if ev.fraction >= 1.0:
            token.cancel()  # the signal arrives while the last batch runs

    out = files["dir"] / "p.tif"
    with pytest.raises(Cancelled):
        predict_raster(files["r"], files["m"], out, progress=progress, cancel=token)
    assert not out.exists()
    assert not list(files["dir"].glob(".p.*"))


def test_gdal_warnings_are_not_printed(tmp_path, capfd):
    """GDAL warns when a polygon goes into a MultiPolygon GeoPackage layer; bfe prints one line."""
    from osgeo import ogr

    multi = write_vector(tmp_path / "multi.gpkg", [pixel_box(2, 2, 12, 12)],
                         geom_type=ogr.wkbMultiPolygon)
    capfd.readouterr()
    assert main(["drop", str(multi), "-o", str(tmp_path / "d.gpkg")]) == 0
    err = capfd.readouterr().err
    assert "Warning" not in err, err
