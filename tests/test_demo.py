"""``bfe demo``: drop, recover and score, on the sample or another raster and layer."""

import json
from dataclasses import replace

import numpy as np
from osgeo import gdal, ogr

from ml_core.cli import main
from ml_core.config import JobSpec, TrainOptions
from ml_core.demo import run_demo
from ml_core.evaluate.metrics import object_metrics, visible_share
from ml_core.io.vector import envelope_polygon, read_polygons, srs_of
from ml_core.pipeline import SAMPLE_BUILDINGS, SAMPLE_RASTER

TINY = TrainOptions(loss="ce", epochs=1, steps_per_epoch=2, batch_size=2, crop_size=64, width=4,
                    depth=2, gsd_m=0.8, device="cpu")


def _count(path, layer=None) -> int:
    src = ogr.Open(str(path))
    return (src.GetLayerByName(layer) if layer else src.GetLayer(0)).GetFeatureCount()


def _extent(raster, west_share: float = 0.0) -> ogr.Geometry:
    """The raster's extent (EPSG:4326, as the sample), less its west ``west_share``."""
    ds = gdal.Open(str(raster))
    gt, w, h = ds.GetGeoTransform(), ds.RasterXSize, ds.RasterYSize
    return envelope_polygon((gt[0] + w * west_share * gt[1], gt[0] + w * gt[1],
                             gt[3] + h * gt[5], gt[3]))


def _check_off_imagery(outdir, scores: dict, imagery: ogr.Geometry) -> None:
    """The count of dropped buildings mostly off ``imagery``, against OGR geometry (allowing
    pixel rounding at the 50 % cut)."""
    dropped = read_polygons(f"{outdir / 'partial_buildings.gpkg'}|layername=dropped",
                            srs_of("EPSG:4326"))
    shown = np.array([g.Intersection(imagery).GetArea() / g.GetArea() for g in dropped.geoms])
    assert 0 < scores["dropped_off_imagery"] < scores["dropped"]
    assert (shown < 0.45).sum() <= scores["dropped_off_imagery"] <= (shown < 0.55).sum()
    # all buildings: at least the dropped ones off the imagery, and never a kept one on it
    kept = read_polygons(f"{outdir / 'partial_buildings.gpkg'}|layername=buildings",
                         srs_of("EPSG:4326"))
    kept_shown = np.array([g.Intersection(imagery).GetArea() / g.GetArea() for g in kept.geoms])
    off = scores["buildings_off_imagery"] - scores["dropped_off_imagery"]
    assert (kept_shown < 0.45).sum() <= off <= (kept_shown < 0.55).sum()


def test_demo_drops_half_and_scores_against_the_dropped(tmp_path):
    scores = run_demo(tmp_path, 0.5, 0, JobSpec(train=TINY), base=None)
    total = _count(SAMPLE_BUILDINGS)
    assert scores["buildings"] == total and scores["dropped"] == round(total * 0.5)
    assert _count(tmp_path / "partial_buildings.gpkg", "dropped") == scores["dropped"]
    assert scores["new_buildings"] == _count(tmp_path / "new_buildings.gpkg")
    assert scores["footprints"] == _count(tmp_path / "footprints.gpkg", "footprints")
    for key, n_pred, n_truth in (
            ("new_vs_dropped", scores["new_buildings"],
             scores["dropped"] - scores["dropped_off_imagery"]),
            ("footprints_vs_buildings", scores["footprints"],
             total - scores["buildings_off_imagery"])):
        m = scores[key]
        assert (m["n_pred"], m["n_truth"]) == (n_pred, n_truth)
        assert 0 <= m["matched"] <= min(n_pred, n_truth)
        assert m["f1"] == round(2 * m["matched"] / (n_pred + n_truth), 3)
        assert 0 <= m["merged_share"] <= 1 and (m["matched"] == 0) == (m["mean_iou"] == 0)
        # every unmatched polygon and building has one reason
        assert sum(m["errors"]["predictions"].values()) == n_pred - m["matched"]
        assert sum(m["errors"]["buildings"].values()) == n_truth - m["matched"]
    # the sample's imagery has no gaps, but OSM buildings at its edges reach beyond it
    _check_off_imagery(tmp_path, scores, _extent(SAMPLE_RASTER))
    dropped = read_polygons(f"{tmp_path / 'partial_buildings.gpkg'}|layername=dropped", None)
    shown = replace(dropped, geoms=[g for g, v in zip(dropped.geoms,
                                                      visible_share(SAMPLE_RASTER, dropped))
                                    if v >= 0.5])
    new = f"{tmp_path / 'footprints.gpkg'}|layername=new_buildings"
    assert scores["coverage_recall_of_dropped"] == round(
        object_metrics(new, shown)["coverage_recall"], 3)
    assert json.loads((tmp_path / "demo_scores.json").read_text()) == scores
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["demo"] == scores and "summary" in report
    assert (tmp_path / "preview.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_demo_on_another_raster_and_layer(tmp_path, capsys):
    flags = ["--loss=ce", "--epochs=1", "--steps-per-epoch=2", "--batch-size=2",
             "--crop-size=64", "--gsd-m=0.8", "--device=cpu"]
    assert main(["demo", "-o", str(tmp_path), "--fraction", "0.3", "--base", "none",
                 "--raster", str(SAMPLE_RASTER), "--buildings", str(SAMPLE_BUILDINGS),
                 *flags]) == 0
    scores = json.loads((tmp_path / "demo_scores.json").read_text())
    assert scores["dropped"] == round(_count(SAMPLE_BUILDINGS) * 0.3)
    out = capsys.readouterr().out
    assert "New buildings vs the dropped ones, one to one at IoU >= 0.5: F1 " in out
    assert out.index("one to one") < out.index("Of those, unmatched polygons: ") < out.index(
        "Coverage (secondary")


def test_dropped_buildings_off_the_imagery_are_not_scored(tmp_path):
    """Mask the sample's west half: dropped buildings mostly there cannot be found."""
    raster = tmp_path / "west_masked.tif"
    ds = gdal.Translate(str(raster), str(SAMPLE_RASTER), format="GTiff")
    ds.CreateMaskBand(gdal.GMF_PER_DATASET)
    mask = np.full((ds.RasterYSize, ds.RasterXSize), 255, np.uint8)
    mask[:, : ds.RasterXSize // 2] = 0
    ds.GetRasterBand(1).GetMaskBand().WriteArray(mask)
    ds = None
    scores = run_demo(tmp_path / "out", 0.5, 0, JobSpec(train=TINY), base=None, raster=raster,
                      buildings=SAMPLE_BUILDINGS)
    _check_off_imagery(tmp_path / "out", scores, _extent(raster, west_share=0.5))
