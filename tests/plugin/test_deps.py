"""The Install action's Python: QGIS's own interpreter, never the first ``python3`` on PATH."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from bfe_plugin import deps

RUNNING = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _decoy(folder: Path, names=("python3", f"python{RUNNING}")) -> Path:
    """Executables that answer like Python 3.7 (a pyenv or conda shim of another version)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        script = folder / name
        script.write_text("#!/bin/sh\necho 3 7\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


@pytest.fixture
def fresh_lookup():
    deps.python_executable.cache_clear()
    yield
    deps.python_executable.cache_clear()


REAL = Path(os.path.realpath(sys.executable))


def _inside_qgis(monkeypatch, prefix: Path, path: str) -> None:
    """As inside QGIS: ``sys.executable`` is QGIS itself, its Python lives under ``prefix``."""
    monkeypatch.setenv("PATH", path)
    monkeypatch.setattr(sys, "executable", "/usr/bin/qgis")
    monkeypatch.setattr(sys, "exec_prefix", str(prefix))
    monkeypatch.setattr(sys, "prefix", str(prefix))


@pytest.mark.skipif(sys.platform == "win32", reason="shell-script decoys")
def test_decoy_python3_first_on_path_is_not_used(tmp_path, monkeypatch, fresh_lookup):
    """QGIS's interpreter is ``<prefix>/bin/pythonX.Y`` (no ``python3`` beside it); the first
    ``python3`` on PATH is a shim of another version and must not be used."""
    (tmp_path / "prefix" / "bin").mkdir(parents=True)
    own = tmp_path / "prefix" / "bin" / f"python{RUNNING}"
    own.symlink_to(REAL)
    decoy = _decoy(tmp_path / "shims")
    _inside_qgis(monkeypatch, tmp_path / "prefix", f"{decoy}{os.pathsep}{os.environ['PATH']}")
    assert deps.python_executable() == str(own)
    assert deps.pip_args()[0] == str(own)
    assert str(decoy) not in deps.pip_command(deps.user_site_dir())


@pytest.mark.skipif(sys.platform == "win32", reason="shell-script decoys")
def test_a_candidate_of_another_version_is_skipped(tmp_path, monkeypatch, fresh_lookup):
    """Names prove nothing: ``pythonX.Y`` under the prefix answers 3.7 and is passed over."""
    prefix = tmp_path / "prefix"
    _decoy(prefix / "bin", names=(f"python{RUNNING}",))
    (prefix / "bin" / "python3").symlink_to(REAL)
    _inside_qgis(monkeypatch, prefix, str(_decoy(tmp_path / "shims")))
    assert deps.python_executable() == str(prefix / "bin" / "python3")


@pytest.mark.skipif(sys.platform == "win32", reason="shell-script decoys")
def test_no_interpreter_of_the_running_version_is_a_clear_message(tmp_path, monkeypatch,
                                                                  fresh_lookup):
    prefix = tmp_path / "prefix"
    _decoy(prefix / "bin", names=(f"python{RUNNING}", "python3", "python"))
    _inside_qgis(monkeypatch, prefix, str(_decoy(tmp_path / "shims")))  # only decoys anywhere
    with pytest.raises(deps.PythonNotFound) as err:
        deps.python_executable()
    message = str(err.value)
    assert f"Python {RUNNING}" in message and str(prefix / "bin" / "python3") in message
    assert "torch==" in message
    missing = deps._fix_command("torch")  # what the dock and the message bar show
    assert not missing.installable and missing.command == message


def test_the_interpreter_found_runs_the_version_qgis_runs(fresh_lookup):
    found = Path(deps.python_executable())
    assert deps._version_of(found) == tuple(sys.version_info[:2])


def test_scipy_is_checked_and_its_fix_named(monkeypatch):
    """scipy (label classes, connected components) comes with QGIS's Python like GDAL's
    bindings: missing, it is reported with the package to install, not pip-installed."""
    real = deps.module_available
    monkeypatch.setattr(deps, "module_available", lambda m: m != "scipy" and real(m))
    (missing,) = [m for m in deps.check_dependencies() if m.module == "scipy"]
    assert "python3-scipy" in missing.command and not missing.installable
