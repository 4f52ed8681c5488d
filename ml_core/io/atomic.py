"""Write outputs under a unique temporary name and rename them only when complete.

Every writer goes through :func:`atomic_output`: the data is written into a private temporary
folder beside the output (unique per run, so concurrent runs never share a temporary file),
GDAL datasets are closed explicitly and checked (:func:`close_raster`, :func:`close_vector`),
and only then is the file renamed into place. A failed write (disk full included) raises one
:class:`OutputError` naming the final file and the real reason, and leaves no file behind.
:func:`check_not_input` refuses an output that is one of the inputs, so an input is never
overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Optional, Union

from osgeo import gdal

from ml_core.errors import OutputError

PathLike = Union[str, os.PathLike]

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK  # what a plainly created file gets: outputs all share it
_NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXT = ("no space left", "disk is full", "disk full", "free disk space")


def _flat(paths: Iterable) -> Iterator[str]:
    """File names of paths, lists of paths and open GDAL datasets (None and in-memory skipped)."""
    for p in paths:
        if isinstance(p, (list, tuple, set)):
            yield from _flat(p)
            continue
        name = p.GetDescription() if hasattr(p, "GetDescription") else p
        if name:
            yield str(name).split("|")[0]  # QGIS-style "file.gpkg|layername=x"


def check_not_input(output: PathLike, *inputs) -> None:
    """:class:`OutputError` when ``output`` is (through symlinks and hard links) an input.

    ``inputs``: paths, lists of paths or None; writing there would destroy the user's file.
    """
    out = os.path.realpath(str(output))
    for given in _flat(inputs):
        same = os.path.realpath(given) == out
        with contextlib.suppress(OSError):
            same = same or os.path.samefile(given, out)
        if same:
            raise OutputError(f"Output {output} is also an input ({given}); bfe never "
                              "overwrites an input. Choose another output name.")


def check_suffix(path: PathLike, suffixes: Iterable[str], what: str) -> Path:
    """:class:`OutputError` when ``path`` has an extension other than ``suffixes`` (any case).

    A writer that chose its format silently would leave e.g. a GeoPackage named ``.tif``."""
    path = Path(path)
    suffixes = tuple(suffixes)
    if path.suffix and path.suffix.lower() not in suffixes:
        raise OutputError(f"Output {path} must be a {what} ({' or '.join(suffixes)}); "
                          f"name it e.g. {path.with_suffix(suffixes[0]).name}.")
    return path


def check_writable(path: PathLike) -> Path:
    """Fail early, naming the path, when an output cannot be created there."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"Cannot create folder {parent} for output {path}: "
                              f"{exc.strerror}. Choose another output path.") from exc
    if not parent.is_dir():
        raise OutputError(f"Cannot write {path}: {parent} is not a folder. "
                          "Choose another output path.")
    if path.is_dir():
        raise OutputError(f"Output {path} is a folder; give a file name inside it instead.")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"Output folder {parent} is not writable. Choose another output path.")
    return path


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def is_no_space(exc: Union[BaseException, str]) -> bool:
    """True for a full disk or quota, whether raised by the OS, GDAL or SQLite (or its text)."""
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS:
        return True
    return any(t in str(exc).lower() for t in _NO_SPACE_TEXT)


def write_failed(final: PathLike, reason: Union[BaseException, str]) -> OutputError:
    """The one message a failed write gets: it names the final file and the real reason."""
    final = Path(final)
    if is_no_space(reason):
        return OutputError(f"No space left on {_mount_point(final.parent)} while writing "
                           f"{final}. Free some space or choose another folder.")
    if isinstance(reason, OutputError) and reason.__cause__ is not None:
        reason = reason.__cause__  # a writer's own message names the temporary file
    if isinstance(reason, OSError):
        reason = reason.strerror or reason.__class__.__name__
    return OutputError(f"Cannot write {final}: {str(reason).rstrip('.') or 'unknown error'}. "
                       "Choose another output path.")


class _GdalFailures:
    """Collects GDAL/OGR failure messages of this thread (warnings are dropped, not printed)."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __call__(self, cls: int, _no: int, msg: str) -> None:
        if cls >= gdal.CE_Failure:
            self.messages.append(msg)

    def __enter__(self) -> _GdalFailures:
        gdal.PushErrorHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        gdal.PopErrorHandler()


def _close(obj, final: PathLike) -> None:
    with _GdalFailures() as failures:
        try:
            obj.FlushCache()
        except RuntimeError as exc:
            raise write_failed(final, _reason(exc, failures.messages)) from exc
    if failures.messages:
        raise write_failed(final, _reason("", failures.messages))


def _reason(exc: Union[BaseException, str], messages: list) -> Union[BaseException, str]:
    """The real reason of a failed write: a full disk if any message says so (GDAL often
    raises a consequence, e.g. "Write error at scanline 0", after "No space left")."""
    for text in (exc, *messages):
        if is_no_space(text):
            return text
    return exc or (messages[-1] if messages else "")


def close_raster(ds: gdal.Dataset, final: PathLike) -> None:
    """Flush a GDAL raster being written (pixels and header) and raise :class:`OutputError`
    naming ``final`` when that failed; afterwards the caller drops its references."""
    _close(ds, final)


def close_vector(src, final: PathLike) -> None:
    """Flush an OGR data source being written (features, GeoPackage spatial index) and raise
    :class:`OutputError` naming ``final`` when that failed."""
    _close(src, final)


@contextlib.contextmanager
def atomic_output(path: PathLike, inputs: Optional[Iterable] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary file lives in a folder of its own (unique per call, in the output folder, so
    the rename stays on one file system). Any GDAL failure while the block runs (also one
    raised where Python cannot catch it, when a dataset is garbage-collected) fails the write.
    ``inputs``: refused as outputs, see :func:`check_not_input`.
    """
    path = check_writable(path)
    check_not_input(path, *(inputs or ()))
    try:
        folder = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=".part",
                                       dir=path.parent if str(path.parent) else None))
    except OSError as exc:
        raise write_failed(path, exc) from exc
    tmp = folder / path.name
    try:
        with _GdalFailures() as failures:
            try:
                yield tmp
            except Exception as exc:  # GDAL, SQLite, safetensors, the OS: all report a full disk
                reason = _reason(exc, failures.messages)
                if is_no_space(reason) or str(folder) in str(exc) + str(
                        getattr(exc, "filename", "")):  # it names the temporary file
                    raise write_failed(path, reason) from exc
                raise
        if failures.messages:
            raise write_failed(path, _reason("", failures.messages))
        if not tmp.is_file():
            raise write_failed(path, "the writer produced no file")
        try:
            _sync(tmp)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        except OSError as exc:
            raise write_failed(path, exc) from exc
    finally:
        # On Windows a file GDAL still holds open cannot be removed; never mask the real error.
        shutil.rmtree(folder, ignore_errors=True)


def _sync(path: Path) -> None:
    """Push the file to disk so that a delayed write error (full disk) surfaces here."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
