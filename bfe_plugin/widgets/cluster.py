""""Run prediction on": this process, a local Dask cluster of N workers, or a scheduler address.

The values are those of ``ml_core.config.ClusterOptions`` (an :class:`OptionsForm` holds the
editors, their tooltips and their saved values); the choice above them only says which of
them apply, and is read back from them: an address means the scheduler, workers above 0 a
local cluster. Without Dask the cluster choices are disabled and a note names the install
command; saved values are kept (for when Dask is installed) but do not apply. Dask is
imported when a cluster is chosen, on the UI thread (``bfe_plugin.cluster``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ml_core.config import ClusterOptions
from ml_core.errors import BfeError, InputError

from ..cluster import dask_missing_text, default_workers, preload_dask
from .options import OptionsForm

RUN_ON = ("this process", "a local Dask cluster", "a Dask scheduler")
HERE, LOCAL, SCHEDULER = range(len(RUN_ON))


class ClusterForm(QWidget):
    """Where the dock's prediction runs; ``options()`` is the job's ``ClusterOptions``."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.form = OptionsForm(ClusterOptions, primary=("workers", "scheduler"))
        self.run_on = QComboBox()
        self.run_on.addItems(RUN_ON)
        self.run_on.setToolTip("Where 'Extract buildings' and 'Find missing buildings' "
                               "predict: in QGIS's process, on the worker processes of a local "
                               "Dask cluster, or on the workers of a running Dask scheduler. "
                               "The result is the same.")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.missing = dask_missing_text()
        row = QFormLayout()
        row.addRow("Run prediction on", self.run_on)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.form)
        layout.addWidget(self.note)
        if self.missing:
            for index in (LOCAL, SCHEDULER):
                self.run_on.model().item(index).setEnabled(False)
            self.note.setText(self.missing)
        self.note.setVisible(bool(self.missing))
        self.restore()
        self.run_on.activated.connect(self._chosen)

    @property
    def workers(self) -> QSpinBox:
        """The editor of ``ClusterOptions.workers`` (0: this process)."""
        return self.form.editor("workers")

    @property
    def scheduler(self) -> QLineEdit:
        """The editor of ``ClusterOptions.scheduler`` (empty: no scheduler)."""
        return self.form.editor("scheduler")

    def mode(self) -> int:
        """The current choice: :data:`HERE`, :data:`LOCAL` or :data:`SCHEDULER`."""
        return self.run_on.currentIndex()

    def set_mode(self, mode: int) -> None:
        """Choose where to run (as the user does), filling in what the choice needs: a local
        cluster gets every core but one unless workers were set. Without Dask, or when it
        cannot be imported, the choice stays on this process, the note says why, and the values
        typed earlier stay for when it can."""
        if mode != HERE:
            try:
                preload_dask()
            except BfeError as exc:
                self.missing = self.missing or str(exc)
                self.note.setText(self.missing)
                self.note.setVisible(True)
                self._show(HERE)
                return
        if mode == LOCAL:
            if self.workers.value() == 0:
                self.workers.setValue(default_workers())
            self.workers.setMinimum(1)  # 0 would mean this process
        else:
            self.workers.setMinimum(0)
            self.workers.setValue(0)
        if mode != SCHEDULER:
            self.scheduler.clear()
        self._show(mode)

    def _chosen(self, mode: int) -> None:
        self.set_mode(mode)
        if mode == SCHEDULER:
            self.scheduler.setFocus()

    def _show(self, mode: int) -> None:
        self.run_on.setCurrentIndex(mode)
        self.workers.setEnabled(mode == LOCAL)
        self.scheduler.setEnabled(mode == SCHEDULER)
        self.scheduler.setPlaceholderText("tcp://HOST:PORT" if mode == SCHEDULER else "")

    def options(self, predicts: bool = True) -> ClusterOptions:
        """The job's cluster options; for a step that ``predicts``, InputError for a scheduler
        choice without an address (the other steps do not use them)."""
        if predicts and self.mode() == SCHEDULER and not self.scheduler.text().strip():
            raise InputError("Type the address of the Dask scheduler (tcp://HOST:PORT) under "
                             "'Run prediction on', or choose this process or a local cluster.")
        options = self.form.options()
        if self.mode() == HERE:  # values kept while Dask is missing do not apply
            return replace(options, workers=0, scheduler="")
        return options

    def set_options(self, options: ClusterOptions) -> None:
        """Show ``options``, and the choice they mean."""
        self.workers.setMinimum(0)  # a local choice's minimum of 1 would turn 0 into 1
        self.form.set_options(options)
        self._show_saved()

    def save(self) -> None:
        """Write the values to the project and to QgsSettings (the choice follows from them)."""
        self.form.save()

    def restore(self) -> None:
        """The saved values, and the choice they mean (this process when Dask is missing)."""
        self.workers.setMinimum(0)  # as in set_options: a saved 0 must stay 0
        self.form.restore()
        self._show_saved()

    def _show_saved(self) -> None:
        if self.missing:  # this process, the saved values kept as they are
            self._show(HERE)
        elif self.scheduler.text().strip():
            self.set_mode(SCHEDULER)
        else:
            self.set_mode(LOCAL if self.workers.value() > 0 else HERE)
