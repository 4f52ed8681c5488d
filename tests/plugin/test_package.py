"""The packaged ZIP installs into a fresh QGIS profile and loads without a pip-installed ml_core.

A child pytest run (pytest-qgis, headless) uses the venv's packages without processing its .pth
files, so the editable ``ml_core`` of this checkout is not importable there; it unpacks the ZIP
into its own profile's python/plugins folder and loads the plugin the way QGIS does (qgis.utils).
"""

from __future__ import annotations

import os
import subprocess  # nosec B404
import sys
import sysconfig
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

INNER_TEST = textwrap.dedent('''
    import importlib.util
    import zipfile
    from pathlib import Path

    import qgis.utils
    from qgis.core import QgsApplication

    def test_zip_plugin_loads(qgis_iface):
        assert importlib.util.find_spec("ml_core") is None, "ml_core must not be importable here"
        plugins = Path(QgsApplication.qgisSettingsDirPath()) / "python" / "plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        zipfile.ZipFile(ZIP).extractall(plugins)
        qgis.utils.plugin_paths = [str(plugins)]
        qgis.utils.sys.path.insert(0, str(plugins))
        qgis.utils.updateAvailablePlugins()
        assert "bfe_plugin" in qgis.utils.available_plugins
        assert qgis.utils.pluginMetadata("bfe_plugin", "qgisMinimumVersion") == "3.22"
        assert qgis.utils.loadPlugin("bfe_plugin")
        assert qgis.utils.startPlugin("bfe_plugin")
        import ml_core
        assert Path(ml_core.__file__).is_relative_to(plugins / "bfe_plugin" / "_vendor")
        plugin = qgis.utils.plugins["bfe_plugin"]
        plugin.action.trigger()
        assert plugin.dock is not None
        assert QgsApplication.processingRegistry().providerById("bfe") is not None
        assert qgis.utils.unloadPlugin("bfe_plugin")
''')

BOOTSTRAP = textwrap.dedent('''
    import sys
    sys.path += {paths!r}  # no site.addsitedir: the venv's .pth (editable ml_core) stays inactive
    import pytest
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "test_zip.py"]))
''')


def test_zip_installs_and_loads_in_a_clean_profile(tmp_path):
    zip_path = tmp_path / "bfe_plugin.zip"
    subprocess.run([sys.executable, str(REPO / "scripts" / "package_plugin.py"),  # nosec B603
                    "--out", str(zip_path)], check=True)
    work = tmp_path / "run"
    work.mkdir()
    (work / "pytest.ini").write_text("[pytest]\nqgis_qui_enabled = false\n")
    (work / "test_zip.py").write_text(f"ZIP = {str(zip_path)!r}\n{INNER_TEST}")
    paths = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))
             and "__editable__" not in p]
    paths.append(sysconfig.get_paths()["purelib"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QGIS"))}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path),
               XDG_CONFIG_HOME=str(tmp_path))
    result = subprocess.run(  # nosec B603
        ["/usr/bin/python3", "-I", "-S", "-c", BOOTSTRAP.format(paths=sorted(set(paths)))],
        cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
