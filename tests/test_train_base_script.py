"""The base-model scripts' bookkeeping: which areas a run trains on, and what a card says of it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from osgeo import ogr, osr

from ml_core.learn.modelfile import ModelCard

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def train_base(monkeypatch):
    """``scripts/train_base.py`` as a module, imported when a test needs it."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("train_base")


@pytest.fixture
def evaluate_base(train_base):
    return importlib.import_module("evaluate_base")


def _labels(path: Path, n: int) -> None:
    """A GeoJSON of ``n`` small squares (none when ``n`` is 0)."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    src = ogr.GetDriverByName("GeoJSON").CreateDataSource(str(path))
    layer = src.CreateLayer("labels", srs, ogr.wkbPolygon)
    for i in range(n):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(
            f"POLYGON(({i} 0,{i} 1e-4,{i}.0001 1e-4,{i}.0001 0,{i} 0))"))
        layer.CreateFeature(feature)
    src = None


def _chips(data: Path, train_base) -> None:
    """Two satellite chips, one of them without buildings."""
    chips = data / train_base.SATELLITE_CHIPS
    (chips / "chips").mkdir(parents=True)
    (chips / "labels").mkdir()
    for name, n in (("a", 2), ("b", 0)):
        (chips / "chips" / f"{name}.tif").write_bytes(b"")
        _labels(chips / "labels" / f"{name}.geojson", n)


def test_training_sources_leave_out_drops_only_the_named_areas(tmp_path: Path,
                                                               train_base) -> None:
    _chips(tmp_path, train_base)
    everything = train_base.training_sources(tmp_path)
    assert len(everything) == len(train_base.TRAIN_AREAS) + 1  # the chip without buildings is out
    assert everything[-1][0].name == "a.tif"
    no_chips = train_base.training_sources(tmp_path, (train_base.SATELLITE_CHIPS,))
    assert no_chips == everything[:-1]
    no_nairobi = train_base.training_sources(tmp_path, ("hotosm/nairobi",))
    assert len(no_nairobi) == len(everything) - 2
    assert not any("nairobi" in str(r) for r, _ in no_nairobi)


def _card(command: str | None) -> ModelCard:
    return ModelCard(architecture={}, bands=[1, 2, 3], mean=[0.0] * 3, std=[1.0] * 3, gsd_m=0.3,
                     command=command)


def test_training_run_reads_seed_and_left_out_areas_from_the_card(train_base,
                                                                  evaluate_base) -> None:
    card = _card("python scripts/train_base.py --minutes 85 --seed 5 "
                     f"--leave-out {train_base.SATELLITE_CHIPS} --width 24")
    run = evaluate_base.training_run(card)
    assert (run.seed, run.leave_out, run.width, run.minutes) == (
        5, [train_base.SATELLITE_CHIPS], 24, 85.0)
    defaults = evaluate_base.training_run(_card(None))
    assert (defaults.seed, defaults.leave_out) == (0, [])
