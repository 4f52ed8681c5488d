"""The plugin loads and unloads cleanly, and names the fix for a missing dependency."""

from __future__ import annotations

from qgis.core import QgsApplication

from bfe_plugin import classFactory, deps


def test_load_open_dock_unload(qgis_iface, qgis_new_project):
    plugin = classFactory(qgis_iface)
    plugin.initGui()
    registry = QgsApplication.processingRegistry()
    assert registry.providerById("bfe") is not None
    plugin.action.trigger()
    assert plugin.dock is not None
    assert not plugin.dock.isHidden()
    plugin.unload()
    assert plugin.dock is None
    assert registry.providerById("bfe") is None


def test_missing_torch_shows_the_fix(qgis_iface, qgis_new_project, monkeypatch):
    monkeypatch.setattr(deps, "module_available", lambda name: name != "torch")
    bar = qgis_iface.messageBar()
    bar.clearWidgets()
    plugin = classFactory(qgis_iface)
    plugin.initGui()
    try:
        texts = [item.text() for item in bar.items()]
        hint = [t for t in texts if "'torch'" in t]
        assert hint, texts
        assert "pip install" in hint[0] and "torch==" in hint[0] and "--target" in hint[0]
        plugin.action.trigger()  # QGIS stays usable: the dock opens and says what is missing
        assert "pip install" in plugin.dock.missing_banner.text()
    finally:
        plugin.unload()
        bar.clearWidgets()


def test_pip_command_is_an_argument_list():
    args = deps.pip_args(deps.user_site_dir())
    assert args[1:4] == ["-m", "pip", "install"]
    assert "torch==2.13.0" in args and str(deps.user_site_dir()) in args
