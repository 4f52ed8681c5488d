"""Plugin lifecycle: toolbar button and menu entry for the dock, Processing provider, deps."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QPushButton

from . import deps

ICON = Path(__file__).resolve().parent / "icon.png"
MENU = "&Building footprints (bfe)"


class BfePlugin:
    """What QGIS loads: one action (toolbar + Plugins menu) that shows the dock."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.action: Optional[QAction] = None
        self.dock = None
        self.provider = None
        self.missing: list[deps.Missing] = []
        self._install_task = None

    def initGui(self) -> None:  # noqa: N802 (QGIS API)
        self.action = QAction(QIcon(str(ICON)), "Building footprints (bfe)",
                              self.iface.mainWindow())
        self.action.setCheckable(True)
        self.action.setToolTip("Show the bfe dock: fine-tune a model on OSM buildings and "
                               "extract footprints")
        self.action.toggled.connect(self.set_dock_visible)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToMenu(MENU, self.action)
        self.missing = deps.check_dependencies()
        for missing in self.missing:
            self._show_missing(missing)
        if self.core_available:
            # Imported here: the provider needs ml_core, which may be the missing dependency.
            from .processing.provider import BfeProvider

            self.provider = BfeProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    @property
    def core_available(self) -> bool:
        """ml_core and GDAL import; torch may still be missing (the dock then says so)."""
        return not any(m.module in ("ml_core", "osgeo") for m in self.missing)

    def set_dock_visible(self, visible: bool) -> None:
        """Create the dock on first use (keeps QGIS start-up fast), then show or hide it."""
        if visible and self.dock is None:
            if not self.core_available:
                self.action.setChecked(False)
                return
            from .dock import BfeDock  # needs ml_core, see core_available

            self.dock = BfeDock(self.iface, install=self.install_dependencies,
                                missing=[m for m in self.missing if m.installable])
            self.dock.visibilityChanged.connect(self.action.setChecked)
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        if self.dock is not None:
            self.dock.setVisible(visible)

    def _show_missing(self, missing: deps.Missing) -> None:
        bar = self.iface.messageBar()
        item = bar.createMessage("bfe", deps.missing_text(missing))
        if missing.installable:
            button = QPushButton("Install")
            button.clicked.connect(self.install_dependencies)
            item.layout().addWidget(button)
        bar.pushWidget(item, Qgis.Warning)

    def install_dependencies(self) -> None:
        """pip-install torch into the profile's bfe_site folder, in the background."""
        if self._install_task is not None:
            return
        self.iface.messageBar().pushMessage("bfe", "Installing torch in the background; "
                                            "this can take several minutes.", Qgis.Info, 10)
        self._install_task = deps.install_in_background(self._installed)

    def _installed(self, ok: bool, output: str) -> None:
        self._install_task = None
        bar = self.iface.messageBar()
        if ok:
            self.missing = deps.check_dependencies()
            if self.dock is not None:
                self.dock.set_missing([m for m in self.missing if m.installable])
            bar.pushMessage("bfe", "torch installed.", Qgis.Success, 10)
        else:
            bar.pushMessage("bfe", "Installing torch failed; run the command shown before in a "
                            "terminal.", output, Qgis.Critical, 0)

    def unload(self) -> None:
        """Remove everything initGui added; running tasks are cancelled."""
        if self.dock is not None:
            self.dock.shutdown()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.action is not None:
            self.iface.removePluginMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
