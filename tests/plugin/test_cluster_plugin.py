"""Prediction on a Dask cluster from QGIS: footprints through Processing, the dock's "Run
prediction on" option (a real task on a real local cluster), and the message without Dask.

Each cluster test starts its own LocalCluster of one worker process on 127.0.0.1 (the
algorithm and the dock start and close it themselves; that is what they are tested for). The
model is the seeded width-4 U-Net of ``conftest.write_tiny_model``; footprints are compared with
the single-process extraction of the same raster at the median probability.
"""

from __future__ import annotations

import json
import os
import subprocess  # nosec B404
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import write_raster, write_tiny_model
from osgeo import gdal, ogr
from qgis.core import Qgis, QgsProcessingFeedback, QgsProject, QgsRasterLayer

from ml_core.config import DEVICE_CHOICES, ClusterOptions, ExtractOptions, PredictOptions
from ml_core.errors import InputError

from .conftest import REPO, wait_for
from .test_dock import Heartbeat

pytest.importorskip("distributed", reason="Dask not installed (extra 'cluster')")

PREDICT = PredictOptions(tile_size=32, overlap=8, batch_size=2, device="cpu")
WINDOWS_PER_TASK = 2  # 120 x 100 px in 32 px windows every 24 px: 5 x 4 windows, 10 tasks


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    """A raster with bright blocks, the tiny model, and the single-process footprints."""
    from ml_core.infer.extract import extract_footprints
    from ml_core.infer.predict import NODATA, predict_raster

    folder = tmp_path_factory.mktemp("cluster_case")
    rng = np.random.default_rng(1)
    data = rng.integers(40, 90, (3, 100, 120))
    for x, y in rng.integers(0, 90, (14, 2)):
        data[:, y:y + 12, x:x + 16] += 120
    raster = write_raster(folder / "r.tif", width=120, height=100, data=data.astype(np.uint8))
    model = write_tiny_model(folder / "m.safetensors")
    probability = predict_raster(raster, model, folder / "single.tif", PREDICT)
    opened = gdal.Open(str(probability))  # held while its band is read
    values = opened.GetRasterBand(1).ReadAsArray()
    opened = None
    median = round(float(np.median(values[values != NODATA])), 2)  # as the dock's editor shows
    extract = ExtractOptions(threshold=median, min_area=0.0, simplify=0.0)
    single = extract_footprints(probability, folder / "single.gpkg", extract).path
    return {"raster": raster, "model": model, "extract": extract,
            "footprints": footprints(single)}


def footprints(gpkg) -> list[str]:
    """The footprints of a GeoPackage as sorted WKT."""
    src = ogr.Open(str(gpkg))
    wkts = sorted(f.GetGeometryRef().ExportToWkt() for f in src.GetLayer("footprints"))
    src = None
    return wkts


def extract_params(case: dict, out: Path, workers: int) -> dict:
    """The parameters of 'Extract footprints on a Dask cluster' for ``case``."""
    return {"INPUT": str(case["raster"]), "MODEL": str(case["model"]), "workers": workers,
            "windows_per_task": WINDOWS_PER_TASK, "tile_size": PREDICT.tile_size,
            "overlap": PREDICT.overlap, "batch_size": PREDICT.batch_size,
            "device": DEVICE_CHOICES.index("cpu"), "threshold": case["extract"].threshold,
            "min_area": 0.0, "simplify": 0.0, "OUTPUT": str(out)}


def test_processing_extracts_the_same_footprints_on_a_local_cluster(qgis_processing, plugin,
                                                                     case, tmp_path):
    import processing

    out = tmp_path / "cluster.gpkg"
    feedback = QgsProcessingFeedback()
    result = processing.run("bfe:extract_cluster", extract_params(case, out, 1),
                            feedback=feedback)
    assert result["OUTPUT"] == str(out)
    assert footprints(out) == case["footprints"] and len(case["footprints"]) > 3
    log = feedback.textLog()
    assert "Cluster: 1 local workers" in log and "task 10/10 on 1 worker thread(s)" in log
    assert feedback.progress() == 100.0
    src = ogr.Open(str(out))
    assert {src.GetLayer(i).GetName() for i in range(src.GetLayerCount())} == {
        "footprints", "new_buildings"}
    src = None


def test_processing_workers_mean_what_the_cli_option_says(qgis_processing, plugin, case,
                                                          tmp_path):
    """One meaning of ``workers`` (ClusterOptions' help, the parameter's help): 0 is no local
    cluster, so with no scheduler either the algorithm predicts in this process, as the CLI
    does; by default it gets every core but one."""
    import processing
    from qgis.core import QgsApplication

    from bfe_plugin.cluster import default_workers

    algorithm = QgsApplication.processingRegistry().algorithmById("bfe:extract_cluster")
    workers = algorithm.parameterDefinition("workers")
    assert workers.help() == ClusterOptions.__dataclass_fields__["workers"].metadata["help"]
    assert "0: no local cluster" in workers.help()
    assert workers.defaultValue() == default_workers()
    out = tmp_path / "here.gpkg"
    feedback = QgsProcessingFeedback()
    processing.run("bfe:extract_cluster", extract_params(case, out, 0), feedback=feedback)
    assert footprints(out) == case["footprints"]
    log = feedback.textLog()
    assert "In this process (0 workers, no scheduler)" in log and "Cluster:" not in log


def _dock_on_case(dock, case) -> QgsRasterLayer:
    layer = QgsRasterLayer(str(case["raster"]), "blocks")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    dock.inputs.raster_combo.setLayer(layer)
    dock.model.set_model(case["model"])
    dock.predict_form.set_options(PREDICT)
    dock.extract_form.set_options(case["extract"])
    return layer


def test_dock_extracts_on_a_local_cluster_without_blocking_the_ui(dock, case):
    from bfe_plugin.widgets.cluster import HERE, LOCAL

    _dock_on_case(dock, case)
    form = dock.cluster_form
    assert form.mode() == HERE and not dock.job().cluster.enabled  # the default
    form.set_mode(LOCAL)
    assert form.workers.value() >= 1 and form.workers.isEnabled()
    assert not form.scheduler.isEnabled()
    form.workers.setValue(1)
    form.form.editor("windows_per_task").setValue(WINDOWS_PER_TASK)
    assert dock.job().cluster == ClusterOptions(workers=1, windows_per_task=WINDOWS_PER_TASK)
    values: list = []
    dock.progress.valueChanged.connect(values.append)
    beat = Heartbeat()
    beat.phase = "extract"  # click, cluster start, prediction on it, polygonising, layers
    dock.extract_button.click()
    task = dock.task
    assert task is not None and task.job.cluster.workers == 1
    wait_for(lambda: dock.task is None, timeout=300)
    beat.stop()
    assert task.error is None, dock.iface.messageBar().get_messages(Qgis.Warning)
    assert footprints(task.job.footprints) == case["footprints"]
    # progress from the cluster's task counts: each finished task moves the bar
    assert len({v for v in values if 0 < v < 85}) >= 5 and values[-1] == 100
    assert beat.longest("extract") < 0.2, f"UI blocked {beat.longest('extract'):.2f} s"
    # the choice is saved with the options and comes back
    dock.save_settings()
    form.set_mode(HERE)
    form.restore()
    assert form.mode() == LOCAL and form.options().workers == 1


def test_dock_cancel_on_a_local_cluster_leaves_no_output(dock, case):
    from bfe_plugin.widgets.cluster import LOCAL

    _dock_on_case(dock, case)
    dock.predict_form.set_options(PredictOptions(tile_size=32, overlap=24, batch_size=1,
                                                 device="cpu"))  # windows every 8 px: 120
    dock.cluster_form.set_mode(LOCAL)
    dock.cluster_form.workers.setValue(1)
    dock.cluster_form.form.editor("windows_per_task").setValue(1)
    bar = dock.iface.messageBar()
    bar.clear_messages()
    dock.extract_button.click()
    job = dock.task.job
    wait_for(lambda: dock.progress.value() > 0 or dock.task is None, timeout=120)
    assert dock.task is not None, "finished before it could be cancelled"
    dock.cancel_button.click()
    assert wait_for(lambda: dock.task is None, timeout=60) < 15  # cancel, close the cluster
    assert any("ancel" in m for m in bar.get_messages(Qgis.Info))
    left = [p.name for p in job.probability.parent.iterdir()
            if p.name.startswith((".probability", "probability", ".footprints", "footprints"))]
    assert left == []


def test_a_scheduler_choice_needs_an_address(dock):
    from bfe_plugin.widgets.cluster import SCHEDULER

    form = dock.cluster_form
    form.set_mode(SCHEDULER)
    assert form.scheduler.isEnabled() and not form.workers.isEnabled()
    with pytest.raises(InputError, match="address of the Dask scheduler"):
        dock.job()
    form.scheduler.setText("tcp://127.0.0.1:8786")
    assert dock.job().cluster == ClusterOptions(scheduler="tcp://127.0.0.1:8786")


def test_only_steps_that_predict_need_the_scheduler_address(dock, layers):
    """A scheduler chosen, its address not typed yet: rasterising and fine-tuning start (they
    do not predict); extracting stops with the address message."""
    from bfe_plugin.tasks import FinetuneTask
    from bfe_plugin.widgets.cluster import SCHEDULER

    from .conftest import engine_ready
    from .test_dock import _select

    engine_ready("ml_core.learn.train")
    _select(dock, *layers)
    dock.cluster_form.set_mode(SCHEDULER)
    bar = dock.iface.messageBar()
    bar.clear_messages()
    dock.rasterize_button.click()
    wait_for(lambda: dock.task is None)
    assert any("Labels rasterised" in m for m in bar.get_messages(Qgis.Success)), \
        bar.get_messages(Qgis.Warning)
    dock.finetune_button.click()
    assert isinstance(dock.task, FinetuneTask), bar.get_messages(Qgis.Warning)
    dock.cancel_button.click()
    wait_for(lambda: dock.task is None)
    assert not any("scheduler" in m for m in bar.get_messages(Qgis.Warning))
    dock.extract_button.click()
    assert dock.task is None
    assert any("address of the Dask scheduler" in m for m in bar.get_messages(Qgis.Warning))


HIDE_DASK = textwrap.dedent("""
    import sys

    class HideDask:
        '''As if Dask were not installed: 'import distributed' fails, find_spec finds nothing.'''

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("dask", "distributed"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, HideDask())
""")

BREAK_DASK = textwrap.dedent("""
    import sys

    sys.path.insert(0, sys.argv[2])  # holds a distributed/__init__.py that raises RuntimeError
""")

CLUSTER_CHOICES = textwrap.dedent("""
    import json, sys

    sys.path.insert(0, sys.argv[1])
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException
    from qgis.core import QgsProcessingFeedback

    app = QgsApplication([], False)
    app.initQgis()
    ADDRESS = "tcp://10.0.0.5:8786"
    from ml_core.config import ClusterOptions
    from ml_core.errors import InputError
    from ml_core.infer.cluster import require_dask

    from bfe_plugin import deps
    from bfe_plugin.cluster import prepare_cluster
    from bfe_plugin.processing.extract_cluster import ExtractCluster
    from bfe_plugin.widgets.cluster import LOCAL, SCHEDULER, ClusterForm

    form = ClusterForm()
    form.form.set_options(ClusterOptions(workers=2))  # saved by an earlier session
    form.form.save()
    form.restore()
    items = form.run_on.model()
    missing = deps.dask_missing()
    report = {"note": form.note.text(), "note_shown": not form.note.isHidden(),
              "cluster_items_enabled": [items.item(i).isEnabled() for i in (LOCAL, SCHEDULER)],
              "mode": form.mode(), "options": form.options().workers,
              "missing": missing.command if missing else None}
    form.set_mode(LOCAL)  # as if chosen: stays on this process
    report["mode_after_choice"] = form.mode()
    report["workers_kept"] = form.workers.value()
    form.form.set_options(ClusterOptions(scheduler=ADDRESS))  # another earlier session
    form.form.save()
    form.restore()
    form.save()  # the dock saves its settings when QGIS closes
    form.form.set_options(ClusterOptions())
    form.form.restore()
    report["scheduler"] = {"mode": form.mode(), "applies": form.options().scheduler,
                           "saved": form.scheduler.text()}
    try:
        require_dask()
    except InputError as exc:
        report["cause"] = type(exc.__cause__).__name__
    try:
        prepare_cluster(ClusterOptions(workers=1))  # what the dock's extract task runs first
    except InputError as exc:
        report["task"] = str(exc)
    try:
        ExtractCluster().prepareAlgorithm({}, QgsProcessingContext(), QgsProcessingFeedback())
    except QgsProcessingException as exc:
        report["processing"] = str(exc)
    print(json.dumps(report))
    app.exitQgis()
""")


def cluster_choices(setup: str, tmp_path: Path, *args: str) -> dict:
    """What the cluster form, the dock's task and Processing say in a real QGIS Python
    subprocess after ``setup`` (a script that hides or breaks Dask), as a dict."""
    from ml_core.infer.cluster import DASK_REQUIREMENT

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "profile")}
    run = subprocess.run([sys.executable, "-c", setup + CLUSTER_CHOICES, str(REPO), *args],
                         capture_output=True, text=True, env=env, timeout=120,  # nosec B603
                         check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["note_shown"] and DASK_REQUIREMENT in report["note"]
    assert report["mode"] == report["mode_after_choice"] == 0 and report["options"] == 0
    # the values saved by earlier sessions stay, unused, for when Dask works again
    assert report["workers_kept"] == 2
    assert report["scheduler"] == {"mode": 0, "applies": "", "saved": "tcp://10.0.0.5:8786"}
    for key in ("task", "processing"):
        assert f"pip install '{DASK_REQUIREMENT}'" in report[key], report
        assert "Traceback" not in report[key]
    return report


def test_without_dask_the_option_is_off_and_names_the_fix(tmp_path):
    """A real QGIS Python without Dask (a subprocess in which Dask cannot be found)."""
    report = cluster_choices(HIDE_DASK, tmp_path)
    assert report["cluster_items_enabled"] == [False, False]
    assert "restart QGIS" in report["note"] and report["cause"] == "ModuleNotFoundError"
    assert str(Path(sys.executable)) in report["missing"] or "PYTHON" in report["missing"]


def test_a_broken_dask_install_names_the_fix_too(tmp_path):
    """Dask found but failing on import (a broken install): the form keeps this process and
    shows why, the task and Processing stop with the install command, nothing raises."""
    broken = tmp_path / "site" / "distributed"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise RuntimeError("half-upgraded install")\n')
    report = cluster_choices(BREAK_DASK, tmp_path, str(broken.parent))
    assert report["missing"] is None  # found, so the choices are offered...
    assert report["cause"] == "RuntimeError"  # ...and importing it fails with the fix named
    assert "half-upgraded install" in report["note"] and "half-upgraded" in report["task"]


def test_this_process_saved_or_set_comes_back_over_a_local_choice(dock):
    from bfe_plugin.widgets.cluster import HERE, LOCAL

    form = dock.cluster_form
    form.set_mode(HERE)
    dock.save_settings()  # the project says: this process
    form.set_mode(LOCAL)
    form.restore()  # e.g. that project opened again
    assert form.mode() == HERE and form.options() == ClusterOptions()
    form.set_mode(LOCAL)
    form.set_options(ClusterOptions())
    assert form.mode() == HERE and form.options() == ClusterOptions()
