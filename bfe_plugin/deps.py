"""Where ml_core and torch come from, what is missing, and the exact command that fixes it.

Lookup order for ``ml_core``: the copy vendored into the plugin ZIP (``_vendor/``), then an
installed package (``pip install -e .`` in a checkout), then the checkout the plugin folder
lives in (a symlinked working tree). Python packages installed by the "Install" action go to a
user-writable folder inside the QGIS profile, which is added to ``sys.path``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import platform
import shutil
import subprocess  # nosec B404
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from qgis.core import QgsApplication, QgsTask

PLUGIN_DIR = Path(__file__).resolve().parent
VENDOR_DIR = PLUGIN_DIR / "_vendor"
CHECKOUT = PLUGIN_DIR.parent
PIP_PACKAGES = ("torch==2.13.0", "safetensors==0.8.0")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Modules that come with QGIS's Python (compiled against its numpy), not from pip: the package
# that provides each.
SYSTEM_PACKAGES = {"osgeo": "python3-gdal", "scipy": "python3-scipy"}


class PythonNotFound(RuntimeError):
    """No interpreter of the version QGIS runs was found; the message says where bfe looked."""


@dataclass
class Missing:
    """A dependency that cannot be imported, and the command that installs it."""

    module: str
    command: str
    installable: bool  # the "Install" action can fix it (pip packages)


def user_site_dir() -> Path:
    """The user-writable folder that the "Install" action pip-installs into."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "python" / "bfe_site"


def _add_path(path: Path, front: bool = False) -> None:
    entry = str(path)
    if entry in sys.path:
        return
    if front:
        sys.path.insert(0, entry)
    else:
        sys.path.append(entry)
    importlib.invalidate_caches()


def ensure_import_paths() -> None:
    """Make ml_core (vendored, installed or from the checkout) and installed extras importable."""
    if (VENDOR_DIR / "ml_core" / "__init__.py").is_file():
        _add_path(VENDOR_DIR, front=True)
    elif not module_available("ml_core") and (CHECKOUT / "ml_core" / "__init__.py").is_file():
        _add_path(CHECKOUT)
    if user_site_dir().is_dir():
        _add_path(user_site_dir())


def module_available(name: str) -> bool:
    """True when ``name`` can be imported (found without importing it, so QGIS starts fast)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _version_of(executable: Path) -> Optional[tuple[int, int]]:
    """(major, minor) that ``executable`` reports when run, or None if it does not run."""
    try:
        result = subprocess.run(  # nosec B603
            [str(executable), "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True, text=True, timeout=20, check=False)
        major, minor = (int(v) for v in result.stdout.split())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return (major, minor) if result.returncode == 0 else None


def python_candidates() -> list[Path]:
    """Where QGIS's own interpreter can be, most likely first: ``sys.executable`` (when it is a
    Python, not QGIS itself), then the ``sys.exec_prefix`` and ``sys.prefix`` installations,
    then ``pythonX.Y`` / ``python3`` on PATH (e.g. a pyenv or conda shim: checked like the rest)."""
    major, minor = sys.version_info[:2]
    names = [f"python{major}.{minor}", f"python{major}", "python"]
    found = [Path(sys.executable)] if Path(sys.executable).name.lower().startswith("python") else []
    for prefix in dict.fromkeys((sys.exec_prefix, sys.prefix)):
        if platform.system() == "Windows":
            found += [Path(prefix) / "python.exe", Path(prefix) / f"python{major}.exe"]
        else:
            found += [Path(prefix) / "bin" / name for name in names]
    found += [Path(exe) for exe in map(shutil.which, names[:2]) if exe]
    return [p for p in dict.fromkeys(found) if p.is_file()]


@functools.lru_cache(maxsize=1)
def python_executable() -> str:
    """QGIS's own Python interpreter: the first candidate that reports the running version.

    Raises :class:`PythonNotFound` naming the places looked at when none does: pip run by
    another Python (e.g. the first ``python3`` on PATH) installs wheels QGIS cannot import.
    """
    wanted = tuple(sys.version_info[:2])
    candidates = python_candidates()
    for candidate in candidates:
        if _version_of(candidate) == wanted:
            return str(candidate)
    looked = ", ".join(str(c) for c in candidates) or "none found"
    raise PythonNotFound(
        f"bfe found no Python {wanted[0]}.{wanted[1]} interpreter, the version QGIS runs (looked "
        f"at: {looked}). Run 'PYTHON -m pip install --user {' '.join(PIP_PACKAGES)}' in a "
        f"terminal, with PYTHON the Python {wanted[0]}.{wanted[1]} that QGIS uses (Linux: "
        f"/usr/bin/python{wanted[0]}.{wanted[1]}; Windows: 'python' in the OSGeo4W Shell; "
        "macOS: the python3 inside QGIS.app).")


def pip_args(target: Path | None = None, packages: Sequence[str] = PIP_PACKAGES,
             options: Sequence[str] = ()) -> list[str]:
    """The pip command (argument list) that installs ``packages`` (by default torch and
    safetensors) for this QGIS; ``options`` are extra pip options, e.g. ``--no-index``."""
    args = [python_executable(), "-m", "pip", "install", "--upgrade"]
    if target is not None:
        args += ["--target", str(target)]
    if platform.system() != "Darwin":
        # Only PyTorch's index (CPU wheels; README for CUDA): with --extra-index-url a package
        # of the same name on another index could win (dependency confusion).
        args += ["--index-url", TORCH_CPU_INDEX]
    return [*args, *options, *packages]


def pip_command(target: Path | None = None) -> str:
    """``pip_args`` as one line a user can paste into a terminal."""
    return " ".join(f'"{a}"' if " " in a else a for a in pip_args(target))


def _fix_command(module: str) -> Missing:
    if module in ("torch", "safetensors"):
        try:
            return Missing(module, pip_command(user_site_dir()), installable=True)
        except PythonNotFound as exc:
            return Missing(module, str(exc), installable=False)
    if module in SYSTEM_PACKAGES:
        name = SYSTEM_PACKAGES[module]
        fix = (f"sudo apt install {name}" if platform.system() == "Linux"
               else f"install {name} with QGIS (OSGeo4W setup: {name}; QGIS.app bundles it)")
        return Missing(module, fix, installable=False)
    return Missing(module, "reinstall the bfe plugin from its ZIP "
                           "(or run 'pip install -e .' in a bfe checkout)", installable=False)


def check_dependencies() -> list[Missing]:
    """Every dependency of the plugin that cannot be imported, with its fix."""
    return [_fix_command(m) for m in ("ml_core", *SYSTEM_PACKAGES, "torch", "safetensors")
            if not module_available(m)]


def dask_missing() -> Optional[Missing]:
    """Dask (``distributed``, optional: prediction on a cluster) when QGIS cannot import it,
    with the pip command that installs it where the plugin looks (not PyTorch's index, which
    :func:`pip_args` uses: Dask is not on it); None when it is there."""
    if module_available("distributed"):
        return None
    from ml_core.infer.cluster import DASK_REQUIREMENT

    try:
        python = python_executable()
    except PythonNotFound:
        python = "PYTHON"  # not found: the user puts in the Python that QGIS runs
    command = (f"{python} -m pip install --target \"{user_site_dir()}\" \"{DASK_REQUIREMENT}\" "
               "(or pip install -e '.[cluster]' in a bfe checkout), then restart QGIS")
    return Missing("distributed", command, installable=False)


def install_packages(target: Path | None = None, packages: Sequence[str] = PIP_PACKAGES,
                     options: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """pip-install ``packages`` (torch and safetensors) into ``target`` and put it on sys.path
    (blocking; run it in a task). ``packages`` and ``options`` as for :func:`pip_args`."""
    target = target or user_site_dir()
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(pip_args(target, packages, options),  # nosec B603
                            capture_output=True, text=True, check=False)
    if result.returncode == 0:
        _add_path(target)
    return result


def missing_text(missing: Missing) -> str:
    """One sentence naming the missing module and the exact command that fixes it."""
    return (f"bfe needs the Python module '{missing.module}', which QGIS cannot import. "
            f"Fix: {missing.command}")


def install_in_background(on_done: Callable[[bool, str], None]) -> QgsTask:
    """Run :func:`install_packages` in a QGIS task; ``on_done(ok, pip_output)`` on the UI thread."""

    def work(_task: QgsTask) -> subprocess.CompletedProcess:
        return install_packages()

    def finished(exception: Optional[BaseException], result=None) -> None:
        if exception is not None:
            on_done(False, str(exception))
        else:
            on_done(result.returncode == 0, result.stdout + result.stderr)

    task = QgsTask.fromFunction("Installing torch for bfe", work, on_finished=finished)
    QgsApplication.taskManager().addTask(task)
    return task
