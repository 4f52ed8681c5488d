"""User messages: short text on the message bar, full tracebacks in the "bfe" log tab."""

from __future__ import annotations

import traceback
from typing import Optional

from qgis.core import Qgis, QgsMessageLog
from qgis.gui import QgsMessageBar

from ml_core.errors import BfeError, Cancelled

LOG_TAG = "bfe"
TITLE = "bfe"


def log(text: str, level: Qgis.MessageLevel = Qgis.Info) -> None:
    """Write to the "bfe" tab of the log panel."""
    QgsMessageLog.logMessage(text, LOG_TAG, level)


def format_traceback(exc: BaseException) -> str:
    """The full traceback of ``exc`` as text."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def report_error(bar: QgsMessageBar, exc: BaseException, details: Optional[str] = None) -> None:
    """Show ``exc`` on the message bar with a details button; log the traceback.

    ``BfeError`` messages already say what to fix; anything else is unexpected.
    """
    details = details or format_traceback(exc)
    if isinstance(exc, Cancelled):
        log(str(exc))
        bar.pushMessage(TITLE, str(exc), Qgis.Info, 5)
        return
    log(details, Qgis.Critical)
    if isinstance(exc, BfeError):
        bar.pushMessage(TITLE, str(exc), details, Qgis.Warning, 0)
    else:
        bar.pushMessage(TITLE, f"Unexpected error: {exc}. See the 'bfe' log tab.", details,
                        Qgis.Critical, 0)


def report_success(bar: QgsMessageBar, text: str) -> None:
    """A short success message; bfe's earlier success and info messages are closed first, so an
    old one never comes back on the bar once this one times out."""
    log(text)
    for item in bar.items():
        if item.title() == TITLE and item.level() in (Qgis.Success, Qgis.Info):
            bar.popWidget(item)
    bar.pushMessage(TITLE, text, Qgis.Success, 5)
