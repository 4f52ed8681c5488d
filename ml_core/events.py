"""One progress and cancel protocol shared by the CLI, Processing and the QGIS tasks.

Long operations take ``progress: ProgressCallback | None`` and ``cancel: CancelToken | None``.
They call ``progress(ProgressEvent(...))`` now and then and ``cancel.raise_if_cancelled()`` at
least every ~0.5 s of work, so that a cancel request is honoured within about 2 s.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from ml_core.errors import Cancelled


@dataclass
class ProgressEvent:
    """A snapshot of a long operation, serialisable to JSON (for subprocess progress lines)."""

    stage: str  # e.g. "rasterize", "train", "validate", "predict", "extract"
    fraction: float  # 0..1 of the whole stage
    message: str = ""
    epoch: Optional[int] = None
    step: Optional[int] = None
    total_steps: Optional[int] = None
    loss: Optional[float] = None
    val_dice: Optional[float] = None
    eta_s: Optional[float] = None
    device: Optional[str] = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """A thread-safe cancel flag; QGIS tasks and the CLI's Ctrl-C handler set it."""

    def __init__(self, is_cancelled: Optional[Callable[[], bool]] = None) -> None:
        self._event = threading.Event()
        self._external = is_cancelled

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        if self._external is not None and self._external():
            self._event.set()
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled("Cancelled by the user.")


def emit(progress: Optional[ProgressCallback], event: ProgressEvent) -> None:
    """Send ``event`` to ``progress`` when a callback was given."""
    if progress is not None:
        progress(event)


def check_cancel(cancel: Optional[CancelToken]) -> None:
    """Raise :class:`Cancelled` when ``cancel`` was requested."""
    if cancel is not None:
        cancel.raise_if_cancelled()
