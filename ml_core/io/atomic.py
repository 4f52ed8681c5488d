"""Write outputs under a temporary name and rename them only when complete."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Union

from ml_core.errors import OutputError

PathLike = Union[str, os.PathLike]


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
    if not os.access(parent, os.W_OK):
        raise OutputError(f"Output folder {parent} is not writable. Choose another output path.")
    return path


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = check_writable(path)
    tmp = path.with_name(f".{path.stem}.part{path.suffix}")
    if tmp.exists():
        tmp.unlink()
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        # On Windows a file GDAL still holds open cannot be removed; never mask the real error.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
