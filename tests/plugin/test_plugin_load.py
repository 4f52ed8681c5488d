"""The plugin loads and unloads cleanly, and names the fix for a missing dependency."""

from __future__ import annotations

import base64
import hashlib
import importlib
import sys
import zipfile
from pathlib import Path

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


def _tiny_wheel(folder: Path) -> None:
    """Write a pure-Python wheel of one module, ``bfe_tiny``, by hand (no build backend)."""
    info = "bfe_tiny-1.0.dist-info"
    files = {"bfe_tiny/__init__.py": "ANSWER = 42\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: bfe-tiny\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: bfe-tests\n"
                              "Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / "bfe_tiny-1.0-py3-none-any.whl", "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)


def test_install_packages_into_a_folder_on_sys_path(tmp_path, monkeypatch):
    """The "Install" action's pip run, offline: a local wheel instead of torch."""
    wheels, target = tmp_path / "wheels", tmp_path / "bfe_site"
    wheels.mkdir()
    _tiny_wheel(wheels)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the test's entry goes again afterwards
    result = deps.install_packages(target, packages=["bfe-tiny"],
                                   options=["--no-index", "--find-links", str(wheels)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "bfe_tiny" / "__init__.py").is_file()
    assert str(target) in sys.path
    try:
        module = importlib.import_module("bfe_tiny")
        assert module.ANSWER == 42
        assert Path(module.__file__).parent == target / "bfe_tiny"
    finally:
        sys.modules.pop("bfe_tiny", None)
