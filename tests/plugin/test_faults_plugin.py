"""Processing goes through the same checks as the CLI: an output that is an input, a full disk
and a corrupt model give one clear message, and the user's files stay as they were."""

from __future__ import annotations

import hashlib

import pytest
from conftest import fill, write_tiny_model
from qgis.core import QgsProcessingException

from .conftest import engine_ready


@pytest.fixture
def run(qgis_processing, plugin):
    import processing

    return processing.run


@pytest.fixture
def tiny_model(tmp_path):
    engine_ready("ml_core.learn.modelfile")
    return write_tiny_model(tmp_path / "m.safetensors", gsd_m=0.3)


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_predict_onto_its_input_raster_is_refused(run, layers, tiny_model):
    raster, _ = layers
    before = _sha(raster.source())
    with pytest.raises(QgsProcessingException, match="also an input"):
        run("bfe:predict_probability", {"INPUT": raster, "MODEL": str(tiny_model),
                                        "OUTPUT": raster.source()})
    assert _sha(raster.source()) == before


def test_drop_onto_its_input_layer_is_refused(run, layers, tmp_path):
    """The buildings reach ml_core as a temporary copy: the algorithm checks the layer's file."""
    from osgeo import gdal

    _, buildings = layers
    own = tmp_path / "own.gpkg"
    gdal.VectorTranslate(str(own), buildings.source().split("|")[0])
    before = _sha(own)
    with pytest.raises(QgsProcessingException, match="also an input"):
        run("bfe:drop_labels", {"BUILDINGS": str(own), "FRACTION": 0.5, "SEED": 0,
                                "OUTPUT": str(own)})
    assert _sha(own) == before


def test_corrupt_model_is_a_clear_message(run, layers, tmp_path, tiny_model):
    raster, _ = layers
    tiny_model.write_bytes(b"\x80\x04 pickled, or cut short")
    with pytest.raises(QgsProcessingException, match="corrupt or not a safetensors"):
        run("bfe:predict_probability", {"INPUT": raster, "MODEL": str(tiny_model),
                                        "OUTPUT": str(tmp_path / "p.tif")})
    assert not (tmp_path / "p.tif").exists()


def test_disk_full_in_processing(run, layers, small_disk):
    _, buildings = layers
    filler = fill(small_disk, 32 << 10)
    with pytest.raises(QgsProcessingException, match=r"No space left on .* while writing"):
        run("bfe:drop_labels", {"BUILDINGS": buildings, "FRACTION": 0.5, "SEED": 0,
                                "OUTPUT": str(small_disk / "d.gpkg")})
    assert sorted(small_disk.iterdir()) == [filler]


def _finetune_message(dock, layers) -> str:
    from qgis.core import Qgis

    from .conftest import wait_for
    from .test_dock import _quick_training, _select

    _select(dock, *layers)
    _quick_training(dock)
    bar = dock.iface.messageBar()
    bar.clear_messages()
    dock.finetune_button.click()
    wait_for(lambda: dock.task is None, timeout=300)
    return " ".join(bar.get_messages(Qgis.Warning) + bar.get_messages(Qgis.Critical))


def test_dock_corrupt_base_model_is_a_message(dock, layers, tiny_model):
    tiny_model.write_bytes(b"\x80\x04 pickled, or cut short")
    dock.base_model.setFilePath(str(tiny_model))
    assert "corrupt or not a safetensors" in _finetune_message(dock, layers)


def test_dock_model_output_onto_the_base_model_is_refused(dock, layers, tiny_model):
    before = _sha(tiny_model)
    dock.base_model.setFilePath(str(tiny_model))
    dock.model_out.setFilePath(str(tiny_model))
    assert "also an input" in _finetune_message(dock, layers)
    assert _sha(tiny_model) == before
