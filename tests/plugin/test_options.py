"""Dock options persist in the project and in QgsSettings; an opened project's values win."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from qgis.core import QgsProject, QgsSettings


@pytest.fixture
def forms(dock) -> Iterator[tuple]:
    """The train and extract forms; back to the defaults afterwards, which the dock then saves
    to QgsSettings on unload, so that no value set here leaks into the other tests."""
    yield dock.train_form, dock.extract_form
    for form in (dock.train_form, dock.extract_form):
        form.set_options(form.options_cls())


def _shown(train, extract) -> tuple:
    return (train.editor("epochs").value(), train.editor("optimizer").currentText(),
            extract.editor("threshold").value(), extract.editor("regularize").isChecked())


def test_project_values_win_over_qgssettings(dock, forms, tmp_path):
    train, extract = forms
    project, settings = QgsProject.instance(), QgsSettings()
    project.setDirty(False)
    train.editor("epochs").setValue(7)
    train.editor("optimizer").setCurrentText("sgd")
    extract.editor("threshold").setValue(0.35)
    extract.editor("regularize").setChecked(True)
    dock.save_settings()
    assert project.isDirty()  # the QGIS convention: a changed project entry asks to be saved
    assert project.readEntry("bfe", "TrainOptions/epochs") == ("7", True)
    assert settings.value("bfe/TrainOptions/epochs") == "7"
    project.write(str(tmp_path / "with_bfe.qgz"))

    plain = QgsProject()  # not the current project: the dock does not write into it
    plain.write(str(tmp_path / "without_bfe.qgz"))
    del plain

    settings.setValue("bfe/TrainOptions/epochs", "3")
    settings.setValue("bfe/ExtractOptions/regularize", "false")
    train.editor("epochs").setValue(5)
    train.editor("optimizer").setCurrentText("adamw")

    project.clear()
    assert project.read(str(tmp_path / "with_bfe.qgz"))
    assert _shown(train, extract) == (7, "sgd", 0.35, True)

    project.clear()
    assert project.read(str(tmp_path / "without_bfe.qgz"))
    # no bfe entries in this project: the QgsSettings values (saved above, two changed since)
    assert _shown(train, extract) == (3, "sgd", 0.35, False)


def test_the_dock_builds_one_job_with_the_loss_options(dock):
    from ml_core.errors import InputError

    prior = dock.loss_form.editor("lace_prior")
    try:
        dock.loss_form.editor("lace_tau").setValue(0.5)
        prior.setText("0.8, 0.2")
        dock.rasterize_form.editor("unknown_margin").setValue(2)
        job = dock.job()
        assert (job.loss.lace_tau, job.loss.lace_prior) == (0.5, (0.8, 0.2))
        assert job.rasterize.unknown_margin == 2
        assert job.train == dock.train_form.options()
        prior.setText("0.8; x")
        with pytest.raises(InputError, match="one per class"):
            dock.job()
    finally:
        for form in (dock.loss_form, dock.rasterize_form):
            form.set_options(form.options_cls())


def test_labels_spell_acronyms_and_numbers_show_few_decimals(forms):
    from bfe_plugin.optionspec import option_specs
    from ml_core.config import PredictOptions, TrainOptions

    labels = {s.name: s.label for s in option_specs(PredictOptions) + option_specs(TrainOptions)}
    assert labels["tta"] == "TTA" and labels["gsd_m"] == "GSD (m)"
    train, _extract = forms
    train.set_options(TrainOptions(minutes=2.5))
    assert train.editor("minutes").text() == "2.50"  # not "2.5000"
