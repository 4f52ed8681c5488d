"""User-facing errors: each names the offending input and how to fix it.

Front ends (CLI, Processing, dock) show ``str(error)`` as is and never a traceback.
"""


class BfeError(Exception):
    """An error the user can act on; the message names the input and the fix."""


class InputError(BfeError):
    """A raster, vector or model given by the user cannot be used as it is."""


class OutputError(BfeError):
    """An output path cannot be written."""


class Cancelled(BfeError):
    """The user cancelled the operation; partial outputs were discarded or kept as documented."""
